//! What the VRRP tests observe besides the client: VIP adds and deletes on
//! a node's interface ([`VipWatch`]), adverts on the wire ([`Adverts`]), and
//! times of lines in a node's log ([`log_times_us`]). Part of the bed
//! (tests/support/vrrp_bed.rs, as its `watch` module).
//!
//! VIP holding is followed with `ip -o -4 monitor address` in the node's
//! namespace: every add and delete is seen and time-stamped as the kernel
//! reports it, so a window shorter than any polling period (two holders for
//! a millisecond) is still caught, at the cost of one idle process per
//! node. Adverts are heard by a helper process (role `adverts`) in another
//! host's namespace, on the same raw socket code the balancer uses.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Helper, now_us};
use tandem_test_support::netns::Topology;
use tandem_test_support::wait::Wait;

// ---------------------------------------------------------------- VIP events

/// Follows one address on one host's eth0 through `ip monitor`: every add
/// and delete, time-stamped on arrival.
pub struct VipWatch {
    child: Child,
    /// (unix µs, true = added / false = deleted).
    events: Arc<Mutex<Vec<(u64, bool)>>>,
}

impl VipWatch {
    pub fn start(t: &Topology, host: &str, vip: Ipv4Addr) -> VipWatch {
        let mut child = t
            .cmd(host, "ip")
            .args(["-o", "-4", "monitor", "address"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let marker_seen = Arc::new(AtomicBool::new(false));
        let out = child.stdout.take().unwrap();
        let (ev, seen) = (events.clone(), marker_seen.clone());
        let needle = format!(" {vip}/");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let at = now_us();
                if line.contains(" lo ") && line.contains(" 127.0.0.99/") {
                    seen.store(true, Ordering::SeqCst);
                } else if line.contains(" eth0 ") && line.contains(&needle) {
                    ev.lock().unwrap().push((at, !line.starts_with("Deleted")));
                }
            }
        });
        // The monitor subscribes some time after it starts: toggle a marker
        // address on lo until it reports one, so no event is missed after.
        // No extra pause between checks: each toggle already takes 5 ms.
        Wait::new(
            Duration::from_secs(5),
            format!("ip monitor in {host} ready"),
        )
        .every(Duration::ZERO)
        .until_blocking(|| {
            if marker_seen.load(Ordering::SeqCst) {
                return true;
            }
            t.exec(host, &["ip", "addr", "add", "127.0.0.99/32", "dev", "lo"]);
            std::thread::sleep(Duration::from_millis(5));
            t.exec(host, &["ip", "addr", "del", "127.0.0.99/32", "dev", "lo"]);
            false
        });
        VipWatch { child, events }
    }

    pub fn events(&self) -> Vec<(u64, bool)> {
        self.events.lock().unwrap().clone()
    }
}

impl Drop for VipWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Merges the watches' events in time order and returns, for the stretch
/// after the first add anywhere: the total time during which two or more
/// hosts held the address at once (µs), and how many such windows there were.
/// `initial` says which hosts held the address when the watches started.
pub fn overlaps(watches: &[&VipWatch], initial: &[bool]) -> (u64, usize) {
    let mut all: Vec<(u64, usize, bool)> = watches
        .iter()
        .enumerate()
        .flat_map(|(i, w)| w.events().into_iter().map(move |(t, a)| (t, i, a)))
        .collect();
    all.sort_by_key(|e| e.0);
    let mut held = initial.to_vec();
    let mut total = 0;
    let mut windows = 0;
    let mut since: Option<u64> = None;
    for (t, i, added) in all {
        held[i] = added;
        let n = held.iter().filter(|h| **h).count();
        match (n >= 2, since) {
            (true, None) => {
                since = Some(t);
                windows += 1;
            }
            (false, Some(s)) => {
                total += t - s;
                since = None;
            }
            _ => {}
        }
    }
    if let Some(s) = since {
        total += now_us() - s;
    }
    (total, windows)
}

// ---------------------------------------------------------------- adverts

/// The `adverts` helper role: joins 224.0.0.18 on this namespace's eth0 and
/// prints `@adv RECV_US SRC PRIORITY` for every valid advert heard (any
/// VRID), after `@ready`. Runs until killed.
pub fn adverts_main() {
    use tandem_lb::net::netlink::Netlink;
    use tandem_lb::net::vrrp_socket::VrrpSocket;
    use tandem_lb::vrrp::packet;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let nl = Netlink::connect().unwrap();
        let link = nl.link("eth0").await.unwrap();
        let (src, _) = nl.ipv4_addrs(link.index).await.unwrap()[0];
        // Only listens: the source address it would send from is irrelevant.
        let sock = VrrpSocket::open("eth0", link.index, src, true).unwrap();
        println!("@ready");
        let mut buf = vec![0u8; 2048];
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            let at = now_us();
            if let Ok(rx) = packet::decode(&buf[..n]) {
                println!("@adv {at} {} {}", rx.src, rx.advert.priority.get());
            }
        }
    });
}

/// The adverts heard on the segment, from a helper (role `adverts`) in
/// `host`'s namespace; killed on drop.
pub struct Adverts(Helper);

impl Adverts {
    pub fn start(t: &Topology, host: &str) -> Adverts {
        Adverts(Helper::ready(t, host, "adverts"))
    }

    /// Every advert so far: (receive time µs, source, priority), oldest first.
    pub fn all(&self) -> Vec<(u64, Ipv4Addr, u8)> {
        self.0
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| parse_advert(l))
            .collect()
    }

    /// The first advert from `src` received at or after `t_us`, looking
    /// back from the newest only as far as `t_us` (cheap on a long run).
    pub fn first_from_after(&self, src: Ipv4Addr, t_us: u64) -> Option<u64> {
        let lines = self.0.lines.lock().unwrap();
        let mut found = None;
        for l in lines.iter().rev() {
            let Some((at, s, _)) = parse_advert(l) else {
                continue;
            };
            if at < t_us {
                break;
            }
            if s == src {
                found = Some(at);
            }
        }
        found
    }
}

fn parse_advert(line: &str) -> Option<(u64, Ipv4Addr, u8)> {
    let mut f = line.strip_prefix("adv ")?.split(' ');
    Some((
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
    ))
}

// ---------------------------------------------------------------- node logs

/// Unix times (µs) of the log lines containing `needle`, oldest first. A
/// line starts with its RFC 3339 UTC time, `2026-11-25T15:10:31.275255Z`
/// (tracing's plain format; ANSI colour codes before it are skipped).
pub fn log_times_us(log: &str, needle: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(needle))
        .filter_map(line_time_us)
        .collect()
}

fn line_time_us(line: &str) -> Option<u64> {
    let t = line.find('T')?;
    let date = line.get(t.checked_sub(10)?..t)?;
    let time = line.get(t + 1..t + 16)?;
    let n = |x: &str| x.parse::<u64>().ok();
    let (y, md) = date.split_once('-')?;
    let (mo, d) = md.split_once('-')?;
    let (h, rest) = time.split_once(':')?;
    let (mi, sec) = rest.split_once(':')?;
    let (s, us) = sec.split_once('.')?;
    let days = days_from_civil(n(y)?, n(mo)?, n(d)?)?;
    let secs = ((days * 24 + n(h)?) * 60 + n(mi)?) * 60 + n(s)?;
    Some(secs * 1_000_000 + n(us)?)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`, for dates from 1970 on).
fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[test]
fn log_times_read_tracing_timestamps() {
    let log = "2026-11-25T15:10:31.275255Z  INFO tandem_lb::failover::instance: vrrp instance starting instance=vip\n\
               \x1b[2m1970-01-02T00:00:01.000002Z\x1b[0m INFO vrrp instance starting\n\
               2026-11-25T15:10:31.275255Z  INFO something else\n";
    assert_eq!(
        log_times_us(log, "vrrp instance starting"),
        [1_795_619_431_275_255, 86_401_000_002]
    );
}
