//! More VRRP scenarios on network namespaces (issue 4, the parts
//! tests/vrrp.rs does not cover): reloads that must not disturb an
//! instance, unicast peers, tracked interfaces, the start-up race, readiness
//! of an address owner, and 1 s adverts. Root only: see [`support::netns`].
//!
//! Same test bed and patterns as tests/vrrp.rs (shared with it in
//! tests/support/vrrp_bed.rs): each test builds its own
//! [`Topology`]; backends, clients and small tools run as this executable
//! re-run inside a namespace (`helper_process`, selected by
//! `TANDEM_VRRP_HELPER`).
//!
//! VIP holding is observed with `ip -o -4 monitor address` in each node's
//! namespace ([`VipWatch`], in the bed): every add and delete is seen and
//! time-stamped as the kernel reports it, so a window shorter than any
//! polling period (two masters for a millisecond) is still caught.

#[path = "support/vrrp_bed.rs"]
mod vrrp_bed;

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tandem_test_support::eventually_blocking;
use tandem_test_support::netns::{Topology, require_root};
use vrrp_bed::watch::{VipWatch, log_times_us, overlaps};
use vrrp_bed::{
    ADVERT, BACKEND_PORT, BIN, Helper, LB_PORT, Node, Spec, bed, metric_sum, metrics,
    notify_script, now_us, skew, vip, wait_master,
};

/// Not a test: the body of helper processes run inside namespaces.
#[test]
#[ignore = "helper process for the scenarios below; does nothing on its own"]
fn helper_process() {
    vrrp_bed::helper_main();
}

// ---------------------------------------------------------------- tests

/// Issue 4 item 5: a reload (SIGHUP, or `tandem lb reload` over the admin
/// socket) that leaves a `[[vrrp]]` instance unchanged leaves its state and
/// VIPs alone; one that changes it (priority) is applied.
#[test]
fn reload_leaves_unchanged_instance_alone_and_applies_a_change() {
    if !require_root("reload_leaves_unchanged_instance_alone_and_applies_a_change") {
        return;
    }
    let t = bed();
    let be = t.get("be").ip;
    let _b = Helper::backend(&t, "be", "b");
    let notes = tempfile::tempdir().unwrap();
    let (script, notify_log) = notify_script(notes.path());
    let mut s1 = Spec::new(150, be);
    s1.metrics = true;
    s1.vrrp_extra = format!("notify = [\"{}\"]", script.display());
    let mut lb1 = Node::start(&t, "lb1", &s1);
    let _lb2 = Node::start(&t, "lb2", &Spec::new(100, be));
    wait_master(&t, "lb1", &["lb1", "lb2"], Duration::from_secs(10));
    // The MASTER notify has run (it follows the VIPs).
    eventually_blocking(Duration::from_secs(2), "notify MASTER", || {
        std::fs::read_to_string(&notify_log).is_ok_and(|s| s.contains("MASTER"))
    });
    let w1 = VipWatch::start(&t, "lb1", vip(&t));
    let w2 = VipWatch::start(&t, "lb2", vip(&t));
    let notes_before = std::fs::read_to_string(&notify_log).unwrap();
    let m = metrics(&t, "lb1");
    let transitions = metric_sum(&m, "tandem_lb_vrrp_transitions_total");
    let sent = metric_sum(&m, "tandem_lb_vrrp_adverts_sent_total");
    assert!(transitions >= 2.0, "no transitions counted:\n{m}");
    let reloads = |n: &Node| n.log().matches("configuration reloaded").count();

    // 1. SIGHUP with the same file.
    let r0 = reloads(&lb1);
    lb1.signal(Signal::SIGHUP);
    eventually_blocking(Duration::from_secs(5), "the SIGHUP reload", || {
        reloads(&lb1) > r0
    });
    // 2. The admin socket, after a change to the service only (a slower
    //    health check): still nothing VRRP may react to.
    let mut s1b = s1.clone();
    s1b.health = s1b
        .health
        .replace("interval = \"100ms\"", "interval = \"200ms\"");
    lb1.write(&t, &s1b);
    let out = Command::new(BIN)
        .args(["lb", "reload", "-c"])
        .arg(&lb1.config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tandem lb reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Long enough for a restarted instance to have resigned, waited a
    // master-down interval and come back: any of that would show.
    std::thread::sleep(6 * ADVERT);
    let m = metrics(&t, "lb1");
    let (e1, e2) = (w1.events(), w2.events());
    println!(
        "unchanged reloads: lb1 VIP events {e1:?}, lb2 VIP events {e2:?}, transitions {transitions} -> {}, adverts sent {sent} -> {}",
        metric_sum(&m, "tandem_lb_vrrp_transitions_total"),
        metric_sum(&m, "tandem_lb_vrrp_adverts_sent_total"),
    );
    assert_eq!(reloads(&lb1), r0 + 2, "both reloads done");
    assert!(e1.is_empty(), "lb1's VIP moved during the reloads: {e1:?}");
    assert!(e2.is_empty(), "lb2 took the VIP during the reloads: {e2:?}");
    assert!(t.has_addr("lb1", vip(&t)));
    assert_eq!(
        metric_sum(&m, "tandem_lb_vrrp_transitions_total"),
        transitions,
        "a transition was counted"
    );
    assert!(
        metric_sum(&m, "tandem_lb_vrrp_adverts_sent_total") > sent,
        "the master kept advertising"
    );
    assert_eq!(
        std::fs::read_to_string(&notify_log).unwrap(),
        notes_before,
        "notify ran"
    );

    // 3. A change to the instance is applied: priority 150 -> 50 makes lb2
    //    (100, preempting) the master.
    let mut s1c = s1b.clone();
    s1c.priority = 50;
    lb1.write(&t, &s1c);
    let t0 = Instant::now();
    lb1.signal(Signal::SIGHUP);
    wait_master(&t, "lb2", &["lb1", "lb2"], Duration::from_secs(5));
    println!(
        "changed priority applied: lb2 master after {:?}",
        t0.elapsed()
    );
    eventually_blocking(Duration::from_secs(2), "priority 50 in metrics", || {
        metric_sum(&metrics(&t, "lb1"), "tandem_lb_vrrp_priority") == 50.0
    });
}

/// tc filter counters on one host's eth0: multicast VRRP arriving is
/// stolen (redirected to a dead-end veth, i.e. dropped before the IP
/// stack), VRRP arriving otherwise is counted (mirrored, and passed on),
/// multicast VRRP leaving is counted. `tc` (iproute2) with the u32
/// classifier and the mirred action: no nft or tcpdump needed.
fn tc_vrrp_filters(t: &Topology, host: &str) {
    let tc = |args: &[&str]| {
        let out = t.exec(host, args);
        assert!(
            out.status.success(),
            "{args:?} in {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tc(&[
        "ip", "link", "add", "sink0", "type", "veth", "peer", "name", "sink1",
    ]);
    tc(&["ip", "link", "set", "sink0", "up"]);
    tc(&["ip", "link", "set", "sink1", "up"]);
    tc(&["tc", "qdisc", "add", "dev", "eth0", "clsact"]);
    let redirect = ["action", "mirred", "egress", "redirect", "dev", "sink0"];
    let mirror = ["action", "mirred", "egress", "mirror", "dev", "sink0"];
    let mut f = vec![
        "tc",
        "filter",
        "add",
        "dev",
        "eth0",
        "ingress",
        "protocol",
        "ip",
        "pref",
        "1",
        "u32",
        "match",
        "ip",
        "dst",
        "224.0.0.18/32",
    ];
    f.extend_from_slice(&redirect);
    tc(&f);
    let mut f = vec![
        "tc", "filter", "add", "dev", "eth0", "ingress", "protocol", "ip", "pref", "2", "u32",
        "match", "ip", "protocol", "112", "0xff",
    ];
    f.extend_from_slice(&mirror);
    tc(&f);
    let mut f = vec![
        "tc",
        "filter",
        "add",
        "dev",
        "eth0",
        "egress",
        "protocol",
        "ip",
        "pref",
        "1",
        "u32",
        "match",
        "ip",
        "dst",
        "224.0.0.18/32",
    ];
    f.extend_from_slice(&mirror);
    tc(&f);
}

/// Packets through the filter at `pref` on eth0's `dir` (ingress|egress).
fn tc_hits(t: &Topology, host: &str, dir: &str, pref: &str) -> u64 {
    let out = t.exec(
        host,
        &[
            "tc", "-s", "filter", "show", "dev", "eth0", dir, "pref", pref,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // "Sent 1234 bytes 21 pkt (dropped 0, ...)"
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&"Sent") && f.get(4) == Some(&"pkt")).then(|| f[3].parse().ok())?
        })
        .unwrap_or_else(|| panic!("no counter in tc output of {host}:\n{text}"))
}

/// Issue 4 item 3: `unicast_peers` for networks without multicast. Both
/// namespaces drop multicast VRRP on arrival, yet the backup stays backup
/// (the master's adverts reach it by unicast), no multicast advert is ever
/// sent, and SIGKILL of the master still moves the VIP in time.
#[test]
fn unicast_peers_without_multicast() {
    if !require_root("unicast_peers_without_multicast") {
        return;
    }
    let t = bed();
    let be = t.get("be").ip;
    let (ip1, ip2) = (t.get("lb1").ip, t.get("lb2").ip);
    let _b = Helper::backend(&t, "be", "b");
    tc_vrrp_filters(&t, "lb1");
    tc_vrrp_filters(&t, "lb2");
    let mut s1 = Spec::new(150, be);
    s1.vrrp_extra = format!("unicast_src_ip = \"{ip1}\"\nunicast_peers = [\"{ip2}\"]");
    let mut s2 = Spec::new(100, be);
    s2.vrrp_extra = format!("unicast_src_ip = \"{ip2}\"\nunicast_peers = [\"{ip1}\"]");
    let mut lb1 = Node::start(&t, "lb1", &s1);
    let _lb2 = Node::start(&t, "lb2", &s2);
    wait_master(&t, "lb1", &["lb1", "lb2"], Duration::from_secs(10));
    // Stable for ten intervals: lb2 hears lb1 although multicast is dropped.
    let w2 = VipWatch::start(&t, "lb2", vip(&t));
    let before = tc_hits(&t, "lb2", "ingress", "2");
    std::thread::sleep(10 * ADVERT);
    let unicast_in = tc_hits(&t, "lb2", "ingress", "2") - before;
    assert!(
        w2.events().is_empty(),
        "lb2 claimed the VIP: unicast adverts not heard"
    );
    assert!(t.has_addr("lb1", vip(&t)));
    assert!(
        unicast_in >= 7,
        "lb2 received {unicast_in} unicast adverts in 10 intervals"
    );

    let cl = Helper::spawn(&t, "cl", &format!("probe {}:{LB_PORT}", vip(&t)));
    cl.outage_after(now_us(), Duration::from_secs(5));
    let t_kill = now_us();
    lb1.signal(Signal::SIGKILL);
    let bound = 3 * ADVERT + skew(ADVERT, 100) + Duration::from_millis(200);
    let (gap, _) = cl.outage_after(t_kill, Duration::from_secs(5));
    lb1.reap(Duration::from_secs(2));
    eventually_blocking(Duration::from_secs(1), "lb2 holds the VIP", || {
        t.has_addr("lb2", vip(&t))
    });
    // lb2 as master advertises to lb1 by unicast too.
    let before = tc_hits(&t, "lb1", "ingress", "2");
    eventually_blocking(Duration::from_secs(2), "lb2's adverts reach lb1", || {
        tc_hits(&t, "lb1", "ingress", "2") >= before + 3
    });
    let (mc_in1, mc_in2) = (
        tc_hits(&t, "lb1", "ingress", "1"),
        tc_hits(&t, "lb2", "ingress", "1"),
    );
    let (mc_out1, mc_out2) = (
        tc_hits(&t, "lb1", "egress", "1"),
        tc_hits(&t, "lb2", "egress", "1"),
    );
    println!(
        "unicast: lb2 heard {unicast_in} adverts in 10 intervals; multicast sent lb1 {mc_out1} lb2 {mc_out2}, \
         arrived lb1 {mc_in1} lb2 {mc_in2}; SIGKILL outage {gap:.0} ms (bound {bound:?})"
    );
    assert_eq!(
        (mc_out1, mc_out2, mc_in1, mc_in2),
        (0, 0, 0, 0),
        "multicast to 224.0.0.18 seen"
    );
    assert!(
        gap <= bound.as_secs_f64() * 1000.0,
        "outage {gap:.0} ms > {bound:?}"
    );
}

/// Adds a veth pair `eth1` / `eth1p`, both up, inside `host`'s namespace:
/// an interface to track whose state the test sets with `ip link`.
fn add_eth1(t: &Topology, host: &str) {
    for args in [
        &[
            "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
        ][..],
        &["ip", "link", "set", "eth1p", "up"],
        &["ip", "link", "set", "eth1", "up"],
    ] {
        let out = t.exec(host, args);
        assert!(out.status.success(), "{args:?} in {host}");
    }
}

fn set_eth1(t: &Topology, host: &str, up: bool) {
    let out = t.exec(
        host,
        &["ip", "link", "set", "eth1", if up { "up" } else { "down" }],
    );
    assert!(out.status.success());
}

/// Issue 4 item 4: a tracked interface going down lowers the priority by
/// its weight (below the backup's: the VIP moves); back up, the master
/// preempts again.
#[test]
fn tracked_interface_weight_moves_vip_and_back() {
    if !require_root("tracked_interface_weight_moves_vip_and_back") {
        return;
    }
    let t = bed();
    let be = t.get("be").ip;
    let _b = Helper::backend(&t, "be", "b");
    add_eth1(&t, "lb1");
    let mut s1 = Spec::new(150, be);
    s1.vrrp_extra = "track = [{ interface = \"eth1\", weight = -60 }]".into();
    let _lb1 = Node::start(&t, "lb1", &s1);
    let _lb2 = Node::start(&t, "lb2", &Spec::new(100, be));
    let both = ["lb1", "lb2"];
    wait_master(&t, "lb1", &both, Duration::from_secs(10));

    // 150 - 60 = 90 < 100: lb2 preempts after its master-down interval
    // (lb1's lower-priority adverts do not re-arm it).
    let t0 = Instant::now();
    set_eth1(&t, "lb1", false);
    wait_master(&t, "lb2", &both, Duration::from_secs(3));
    let moved = t0.elapsed();
    let t1 = Instant::now();
    set_eth1(&t, "lb1", true);
    wait_master(&t, "lb1", &both, Duration::from_secs(3));
    let back = t1.elapsed();
    println!(
        "track interface weight -60: VIP to lb2 {moved:?} after eth1 down, back to lb1 {back:?} after eth1 up"
    );
    // Preemption waits a master-down interval (3 x 100 ms + skew), no more.
    // Wall-clock bounds, measured from the `ip link` command to
    // `wait_master` seeing the sole holder: that interval plus 300 ms of
    // margin for the command, the sampling (`ip addr` in two namespaces
    // per check) and two loaded cores; the rule is proved in simulated
    // time in lb/src/vrrp/machine.rs.
    let bound = 3 * ADVERT + skew(ADVERT, 100) + Duration::from_millis(300);
    assert!(moved <= bound, "{moved:?} > {bound:?}");
    let bound = 3 * ADVERT + skew(ADVERT, 150) + Duration::from_millis(300);
    assert!(back <= bound, "{back:?} > {bound:?}");
}

/// A tracked interface with weight 0 is a fault: down, the master releases
/// the VIP at once and the backup takes over; up, the master comes back.
#[test]
fn tracked_interface_weight_zero_is_fault() {
    if !require_root("tracked_interface_weight_zero_is_fault") {
        return;
    }
    let t = bed();
    let be = t.get("be").ip;
    let _b = Helper::backend(&t, "be", "b");
    add_eth1(&t, "lb1");
    let mut s1 = Spec::new(150, be);
    s1.vrrp_extra = "track = [{ interface = \"eth1\", weight = 0 }]".into();
    let _lb1 = Node::start(&t, "lb1", &s1);
    let _lb2 = Node::start(&t, "lb2", &Spec::new(100, be));
    let both = ["lb1", "lb2"];
    wait_master(&t, "lb1", &both, Duration::from_secs(10));
    let w1 = VipWatch::start(&t, "lb1", vip(&t));

    let t_down = now_us();
    set_eth1(&t, "lb1", false);
    wait_master(&t, "lb2", &both, Duration::from_secs(3));
    let took = (now_us() - t_down) as f64 / 1000.0;
    let released = w1
        .events()
        .iter()
        .find(|(_, added)| !added)
        .map(|(at, _)| (at.saturating_sub(t_down)) as f64 / 1000.0)
        .expect("lb1 removed the VIP");
    let t1 = Instant::now();
    set_eth1(&t, "lb1", true);
    wait_master(&t, "lb1", &both, Duration::from_secs(3));
    let back = t1.elapsed();
    println!(
        "track interface weight 0 (fault): VIP released {released:.1} ms after eth1 down \
         (command included), lb2 sole master after {took:.0} ms; lb1 back {back:?} after eth1 up"
    );
    // "At once": no advert interval is waited for; the bound only covers
    // running `ip link` and the netlink round trips. Wall-clock bound,
    // measured from before the command to the VIP's deletion as `ip
    // monitor` stamped it in lb1; all 100 ms are margin.
    assert!(released <= 100.0, "released after {released:.1} ms");
    // lb2 hears nothing more: master-down interval.
    let bound = 3 * ADVERT + skew(ADVERT, 100) + Duration::from_millis(300);
    assert!(
        took <= bound.as_secs_f64() * 1000.0,
        "{took:.0} ms > {bound:?}"
    );
}

/// Issue 4 item 7: no two-master window at start-up. Both nodes are
/// released at the same moment (file gates, 1 ms polls), 20 times, with
/// 100 ms adverts (one start in four with lb1 50 ms late); every VIP add and delete on both is recorded. Once a
/// first master holds the VIP, the other must never hold it too
/// (keepalived 2.2.7 did in 5 of 25 starts).
#[test]
fn no_two_masters_at_simultaneous_start() {
    if !require_root("no_two_masters_at_simultaneous_start") {
        return;
    }
    const STARTS: usize = 20;
    // The start-up announcement (lb/src/vrrp/announce.rs) goes out 2.5
    // intervals (250 ms) after lb1's VRRP start; lb2 claims at its
    // Master_Down_Interval, 361 ms after its own. So lb1 may start up to
    // 111 ms after lb2 and still be heard first; 100 ms leaves 11 ms for
    // the advert's scheduling and flight. A start where a loaded machine
    // stalls lb1 longer than that is not simultaneous, is reported, and
    // must stay rare.
    const LAG_TOLERATED_MS: i64 = 100;
    let t = bed();
    let be = t.get("be").ip;
    let v = vip(&t);
    let _b = Helper::backend(&t, "be", "b");
    let mut lb1 = Node::new(&t, "lb1", &Spec::new(150, be));
    let mut lb2 = Node::new(&t, "lb2", &Spec::new(100, be));
    let gates = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    let mut firsts = Vec::new();
    let mut lb2_held = 0;
    let mut skews = Vec::new();
    let mut too_late = Vec::new();
    for i in 0..STARTS {
        let w1 = VipWatch::start(&t, "lb1", v);
        let w2 = VipWatch::start(&t, "lb2", v);
        let gate = gates.path().join(format!("go{i}"));
        let gate1 = gates.path().join(format!("go{i}-lb1"));
        lb1.spawn_gated(&t, &gate1);
        lb2.spawn_gated(&t, &gate);
        // libtest prints "test helper_process ..." just before the gate
        // starts polling: wait until both are there.
        eventually_blocking(Duration::from_secs(10), "both nodes at the gate", || {
            [&lb1, &lb2]
                .iter()
                .all(|n| n.log().matches("test helper_process").count() > i)
        });
        let t0 = now_us();
        // Every fourth start, lb1 (the higher priority) is released 50 ms
        // late: more than the 20 ms skew difference that is all the RFC
        // orders them by, as a loaded machine does on its own now and then.
        if i % 4 == 3 {
            std::fs::write(&gate, b"").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            std::fs::write(&gate1, b"").unwrap();
        } else {
            std::fs::write(&gate, b"").unwrap();
            std::fs::write(&gate1, b"").unwrap();
        }
        eventually_blocking(Duration::from_secs(5), "a first master", || {
            !w1.events().is_empty() || !w2.events().is_empty()
        });
        let first = w1
            .events()
            .first()
            .map(|e| e.0)
            .unwrap_or(u64::MAX)
            .min(w2.events().first().map(|e| e.0).unwrap_or(u64::MAX));
        firsts.push((first - t0) / 1000);
        // Watch on past lb2's own master-down expiry (361 ms after its
        // start) with room to spare: that is when a second master would
        // appear.
        std::thread::sleep(Duration::from_millis(500));
        let (overlap_us, windows) = overlaps(&[&w1, &w2], &[false, false]);
        // How much later lb1's VRRP start was than lb2's (from their logs).
        let lag_ms = match (instance_start_us(&lb1.log()), instance_start_us(&lb2.log())) {
            (Some(a), Some(b)) => {
                skews.push(a.abs_diff(b) / 1000);
                (a as i64 - b as i64) / 1000
            }
            _ => 0,
        };
        if lag_ms > LAG_TOLERATED_MS {
            // Not a simultaneous start: lb2 claims at its Master_Down_Interval
            // before lb1's announcement can reach it, and lb1 preempts (RFC
            // behaviour, checked below by lb1 being the only master).
            too_late.push((i, lag_ms, windows));
        } else if windows > 0 {
            bad.push((i, lag_ms, windows, overlap_us, w1.events(), w2.events()));
        }
        if w2.events().iter().any(|e| e.1) {
            lb2_held += 1;
        }
        assert!(
            t.has_addr("lb1", v) && !t.has_addr("lb2", v),
            "start {i}: lb1 (150) is not the only master"
        );
        // SIGTERM: the VIP leaves with the process, so the next start
        // begins clean.
        lb1.signal(Signal::SIGTERM);
        lb2.signal(Signal::SIGTERM);
        lb1.reap(Duration::from_secs(5));
        lb2.reap(Duration::from_secs(5));
        assert!(!t.has_addr("lb1", v) && !t.has_addr("lb2", v));
    }
    firsts.sort_unstable();
    skews.sort_unstable();
    // The RFC alone orders these two starters by their skew difference,
    // 20 ms: starts further apart than that are the ones it gets wrong.
    println!(
        "simultaneous starts: VRRP start skew between the nodes (ms, sorted) {skews:?}; {} over 20 ms",
        skews.iter().filter(|s| **s > 20).count()
    );
    println!(
        "simultaneous starts: {} of {STARTS} with two VIP holders at once; lb2 ever held the VIP in {lb2_held}; \
         first master after {:?} ms (min/median/max of {:?})",
        bad.len(),
        [firsts[0], firsts[STARTS / 2], firsts[STARTS - 1]],
        firsts,
    );
    println!(
        "simultaneous starts: {} of {STARTS} not simultaneous (lb1's VRRP start more than \
         {LAG_TOLERATED_MS} ms after lb2's; start, lag ms, two-holder windows): {too_late:?}",
        too_late.len()
    );
    assert!(bad.is_empty(), "two masters at start-up: {bad:?}");
    assert!(
        too_late.len() <= STARTS / 4,
        "lb1 started more than {LAG_TOLERATED_MS} ms after lb2 in {} of {STARTS} starts: {too_late:?}",
        too_late.len()
    );
}

/// Issue 4 item 7: an address owner (priority 255) claims the VIP only
/// once its health checks have a first result (bounded by 5 s), not at
/// start-up: its backend's health endpoint takes 1 s to answer, and the VIP
/// must appear after that answer. (A crashed node removing the VIPs it left
/// behind is covered by tests/vrrp.rs, `nopreempt_restarted_node_stays_backup`.)
#[test]
fn owner_claims_vip_only_after_first_health_result() {
    if !require_root("owner_claims_vip_only_after_first_health_result") {
        return;
    }
    let t = bed();
    let be = t.get("be").ip;
    let slow = Helper::ready(&t, "be", &format!("slowhttp {BACKEND_PORT} 1000"));
    let mut s1 = Spec::new(255, be);
    s1.health = "kind = \"http\"\npath = \"/health\"\ninterval = \"2s\"\ntimeout = \"3s\"\n\
                 rise = 1\nfall = 1"
        .into();
    let w1 = VipWatch::start(&t, "lb1", vip(&t));
    let t_start = now_us();
    let _lb1 = Node::start(&t, "lb1", &s1);
    let mut added = 0;
    eventually_blocking(Duration::from_secs(8), "lb1 adds the VIP", || {
        added = w1.events().iter().find(|e| e.1).map_or(0, |e| e.0);
        added != 0
    });
    let answered: u64 = slow
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| l.strip_prefix("answered ")?.parse().ok())
        .min()
        .expect("the health endpoint answered");
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "owner readiness: first health answer {:.0} ms after start, VIP added {:.0} ms after start \
         ({:.1} ms after the answer)",
        ms(answered - t_start),
        ms(added - t_start),
        ms(added.saturating_sub(answered)),
    );
    assert!(
        added > answered,
        "VIP added {:.0} ms before the first health result",
        ms(answered - added)
    );
    assert!(
        added - t_start < 5_000_000 + 1_000_000,
        "VIP later than the 5 s settle bound"
    );
}

/// Issue 4 item 6: 1 s adverts with VRRPv3 work: SIGKILL of the master
/// moves the VIP within 3 x 1 s + skew + 200 ms.
#[test]
fn one_second_adverts_v3_sigkill_failover() {
    if !require_root("one_second_adverts_v3_sigkill_failover") {
        return;
    }
    let t = bed();
    let be = t.get("be").ip;
    let _b = Helper::backend(&t, "be", "b");
    let advert = Duration::from_secs(1);
    let mut s1 = Spec::new(150, be);
    s1.advert = "1s";
    let mut s2 = Spec::new(100, be);
    s2.advert = "1s";
    let mut lb1 = Node::start(&t, "lb1", &s1);
    let _lb2 = Node::start(&t, "lb2", &s2);
    wait_master(&t, "lb1", &["lb1", "lb2"], Duration::from_secs(10));
    let cl = Helper::spawn(&t, "cl", &format!("probe {}:{LB_PORT}", vip(&t)));
    cl.outage_after(now_us(), Duration::from_secs(5));

    let t_kill = now_us();
    lb1.signal(Signal::SIGKILL);
    // Wall-clock bound, measured by the client from the signal to its first
    // successful connect: lb2's Master_Down_Interval at 1 s adverts plus
    // the same 200 ms margin as at 100 ms (ARP, probe period, loaded
    // cores); the lower bound below is the rule itself (no margin: timers
    // never fire early).
    let bound = 3 * advert + skew(advert, 100) + Duration::from_millis(200);
    let (gap, _) = cl.outage_after(t_kill, Duration::from_secs(8));
    println!("1 s adverts (v3), SIGKILL of master: client outage {gap:.0} ms (bound {bound:?})");
    assert!(
        gap <= bound.as_secs_f64() * 1000.0,
        "outage {gap:.0} ms > {bound:?}"
    );
    // Not before the master could be declared dead either: at least two
    // intervals without adverts went by (the bound is not met by luck).
    assert!(gap >= 2_000.0, "outage {gap:.0} ms: takeover too early");
    assert!(t.has_addr("lb2", vip(&t)));
    lb1.reap(Duration::from_secs(2));
}

/// Unix time (µs) of the last "vrrp instance starting" in a node's log.
fn instance_start_us(log: &str) -> Option<u64> {
    log_times_us(log, "vrrp instance starting").last().copied()
}
