//! The runtime (Failover + instance loop) against a simulated segment, under
//! paused tokio time: deterministic task order on a current-thread runtime,
//! no root, no sleeping. Each test places `set_ready` at one moment of the
//! start-up — before start, during the interface open, after the task was
//! spawned but before it first ran, long after — and checks that the
//! instance then behaves as the machine's rules say (issue 11: a node that
//! became ready between the machine's construction and the loop's first
//! look at the channel stayed Backup forever).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_healthcheck::checker::HealthView;
use tokio::sync::{Notify, mpsc, watch};

use super::edge::{Edge, Opened, Opener};
use super::*;
use crate::config::Config;
use crate::vrrp::packet::{self, Advert, MULTICAST_GROUP};
use crate::vrrp::{AdvertInterval, Priority, Version, Vrid};

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 11);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 12);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 7, 100);
const INTERVAL: Duration = Duration::from_millis(100);

/// What the instance did to the simulated interface.
#[derive(Default)]
struct Seen {
    vips: BTreeSet<Ipv4Addr>,
    /// Priorities of the adverts it sent, in order.
    sent: Vec<u8>,
    /// Neighbour flushes (one per link that came back).
    flushes: usize,
}

struct FakeEdge {
    seen: Arc<Mutex<Seen>>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<u8>>>,
}

impl Edge for FakeEdge {
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.rx.lock().await.recv().await {
            Some(p) => {
                buf[..p.len()].copy_from_slice(&p);
                Ok(p.len())
            }
            None => std::future::pending().await,
        }
    }
    async fn send(&self, payload: &[u8], _dst: Ipv4Addr) -> std::io::Result<()> {
        // The priority byte of a VRRP header (RFC 5798 §5.1).
        self.seen.lock().unwrap().sent.push(payload[2]);
        Ok(())
    }
    async fn add_vip(&self, ip: Ipv4Addr, _prefix: u8) -> std::io::Result<()> {
        self.seen.lock().unwrap().vips.insert(ip);
        Ok(())
    }
    async fn del_vip(&self, ip: Ipv4Addr, _prefix: u8) -> std::io::Result<()> {
        self.seen.lock().unwrap().vips.remove(&ip);
        Ok(())
    }
    async fn flush_neighbours(&self) -> std::io::Result<usize> {
        self.seen.lock().unwrap().flushes += 1;
        Ok(0)
    }
    fn can_garp(&self) -> bool {
        false
    }
    fn garp(&self, _vip: Ipv4Addr) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens one [`FakeEdge`]; the open waits for `gate` when there is one.
struct FakeOpener {
    seen: Arc<Mutex<Seen>>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<u8>>>>,
    gate: Option<Arc<Notify>>,
    opened: Arc<Notify>,
    /// The carrier of the simulated interface, for the test to cut.
    link: Arc<Mutex<Option<watch::Sender<bool>>>>,
    /// The carrier when the instance opens.
    link_at_open: bool,
}

impl Opener for FakeOpener {
    type Edge = FakeEdge;
    async fn open(&self, _cfg: &VrrpConfig) -> Result<Opened<FakeEdge>, FailoverError> {
        self.opened.notify_one();
        if let Some(g) = &self.gate {
            g.notified().await;
        }
        let rx = self
            .rx
            .lock()
            .unwrap()
            .take()
            .expect("one instance per test");
        let (link_tx, link) = watch::channel(self.link_at_open);
        *self.link.lock().unwrap() = Some(link_tx);
        Ok(Opened {
            edge: FakeEdge {
                seen: self.seen.clone(),
                rx: tokio::sync::Mutex::new(rx),
            },
            primary: US,
            link,
            iface_tracks: Vec::new(),
        })
    }
}

struct Bed {
    seen: Arc<Mutex<Seen>>,
    peer: mpsc::UnboundedSender<Vec<u8>>,
    gate: Arc<Notify>,
    opened: Arc<Notify>,
    opener: Option<FakeOpener>,
    link: Arc<Mutex<Option<watch::Sender<bool>>>>,
    health_tx: watch::Sender<Arc<HealthView>>,
    health: watch::Receiver<Arc<HealthView>>,
    cfg: VrrpConfig,
}

impl Bed {
    fn new(priority: u8, gated: bool) -> Bed {
        let text = format!(
            "[[vrrp]]\nname = \"vi1\"\ninterface = \"sim0\"\nvirtual_router_id = 51\n\
             priority = {priority}\nvirtual_ips = [\"{VIP}/24\"]\n"
        );
        let cfg = Config::parse(&text, Path::new("sim.toml")).unwrap().vrrp[0].clone();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (peer, rx) = mpsc::unbounded_channel();
        let gate = Arc::new(Notify::new());
        let opened = Arc::new(Notify::new());
        let (htx, health) = watch::channel(Arc::new(HealthView::default()));
        let link = Arc::new(Mutex::new(None));
        Bed {
            opener: Some(FakeOpener {
                seen: seen.clone(),
                rx: Mutex::new(Some(rx)),
                gate: gated.then(|| gate.clone()),
                opened: opened.clone(),
                link: link.clone(),
                link_at_open: true,
            }),
            link,
            seen,
            peer,
            gate,
            opened,
            health_tx: htx,
            health,
            cfg,
        }
    }

    async fn start(&mut self) -> Arc<Failover<FakeOpener>> {
        let cfgs = [self.cfg.clone()];
        self.start_with(&cfgs).await
    }

    /// Starts the failover with `cfgs` (none: instances come by `apply`).
    async fn start_with(&mut self, cfgs: &[VrrpConfig]) -> Arc<Failover<FakeOpener>> {
        let opener = self.opener.take().unwrap();
        let status = watch::channel(Vec::new()).0;
        Failover::start_with(opener, cfgs, self.health.clone(), status)
            .await
            .unwrap()
    }

    /// A VRRPv3 advert from the peer, as the raw socket would deliver it.
    fn peer_advert(&self, priority: u8) {
        let adv = Advert {
            version: Version::V3,
            vrid: Vrid::new(51).unwrap(),
            priority: Priority(priority),
            max_advert_int: AdvertInterval::for_version(Version::V3, INTERVAL).unwrap(),
            addresses: vec![VIP],
            auth: None,
        };
        let payload = packet::encode(&adv, PEER, MULTICAST_GROUP);
        let mut ip =
            packet::ip_header(PEER, MULTICAST_GROUP, 255, 0, payload.len() as u16).to_vec();
        ip.extend_from_slice(&payload);
        self.peer.send(ip).unwrap();
    }

    fn set_link(&self, up: bool) {
        self.link.lock().unwrap().as_ref().unwrap().send_replace(up);
    }

    /// Publishes one actively checked backend whose last probe finished
    /// now, steady (`transitioning` false) or half-way through a rise.
    fn probed_now(&self, up: bool, transitioning: bool) {
        use tandem_healthcheck::checker::{BackendHealth, ProbeRecord, TargetId};
        let mut v = HealthView::default();
        v.set(
            TargetId::new("web", "a"),
            BackendHealth {
                up,
                since: std::time::SystemTime::UNIX_EPOCH,
                reason: "test".into(),
                last_probe: Some(ProbeRecord {
                    ok: up,
                    outcome: tandem_healthcheck::Outcome::Ok,
                    detail: String::new(),
                    at: std::time::SystemTime::now(),
                    duration: Duration::ZERO,
                }),
                weight_factor_permille: if up { 1000 } else { 0 },
                transitioning,
            },
        );
        self.health_tx.send_replace(Arc::new(v));
    }

    /// Started, ready, master over an up backend; then the link is cut and
    /// the backend's probe fails during the cut.
    async fn master_then_cut(&mut self) -> Arc<Failover<FakeOpener>> {
        let f = self.start().await;
        f.set_ready();
        self.probed_now(true, false);
        tokio::time::sleep(CLAIM_BOUND).await;
        assert_eq!(state(&f), "master");
        self.set_link(false);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(state(&f), "fault");
        assert!(!self.holds_vip());
        self.probed_now(false, false);
        f
    }

    /// The end of every settle scenario: a fresh, steady but down result
    /// keeps the node Backup past the claim bound (the backend was up before
    /// the fault and is not back); its coming up lets it claim at once.
    async fn claims_once_the_backend_is_back(&self, f: &Failover<FakeOpener>) {
        self.probed_now(false, false);
        tokio::time::sleep(CLAIM_BOUND).await;
        assert_eq!(state(f), "backup");
        self.probed_now(true, false);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(state(f), "master");
        assert!(self.holds_vip());
    }

    fn holds_vip(&self) -> bool {
        self.seen.lock().unwrap().vips.contains(&VIP)
    }
}

fn state(f: &Failover<FakeOpener>) -> String {
    f.status()[0].state.clone()
}

/// Master_Down_Interval at priority 150 with 100 ms adverts, plus one
/// interval: the RFC bound for a claim with no master.
const CLAIM_BOUND: Duration = Duration::from_millis(300 + 41 + 100);

/// Runs the test body on a current-thread runtime with paused time, so a
/// spawned task runs only when the test awaits, in a fixed order.
fn paused(body: impl AsyncFnOnce()) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(body());
}

/// The outage of issue 11, exactly: ready set after the instance task was
/// spawned but before it first ran (a node with no health checks does
/// this at once), while the peer at priority 100 is master. Before the fix
/// the loop took the channel's `true` as delivered, the machine (built not
/// ready) never heard it, and the node stayed Backup forever, hearing the
/// peer's adverts.
#[test]
fn ready_before_the_task_first_runs_is_not_lost() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.start().await;
        f.set_ready();
        // The peer is a running master: an advert every interval for 3 s.
        for _ in 0..30 {
            bed.peer_advert(100);
            tokio::time::sleep(INTERVAL).await;
        }
        assert_eq!(state(&f), "master", "preempts the lower master");
        assert!(bed.holds_vip());
        f.shutdown().await;
        assert!(!bed.holds_vip(), "resigned");
        assert_eq!(bed.seen.lock().unwrap().sent.last(), Some(&0));
    });
}

/// Ready set while the interface is being opened: a reload that adds an
/// instance before the health checks have settled (the await in `launch`,
/// where the old code read readiness before and subscribed after).
#[test]
fn ready_during_the_open_is_not_lost() {
    paused(async || {
        let mut bed = Bed::new(150, true);
        let f = bed.start_with(&[]).await;
        let cfgs = [bed.cfg.clone()];
        let apply = f.apply(&cfgs);
        tokio::pin!(apply);
        tokio::select! {
            _ = &mut apply => panic!("the open waits for the gate"),
            _ = bed.opened.notified() => {}
        }
        f.set_ready();
        bed.gate.notify_one();
        apply.await.unwrap();
        tokio::time::sleep(CLAIM_BOUND).await;
        assert_eq!(state(&f), "master");
        assert!(bed.holds_vip());
        f.shutdown().await;
    });
}

/// Ready before anything starts (a reload's new instance): the machine is
/// told before its start-up, so it goes straight on as a ready Backup.
#[test]
fn ready_before_start_claims_after_master_down_interval() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.start_with(&[]).await;
        f.set_ready();
        f.apply(std::slice::from_ref(&bed.cfg)).await.unwrap();
        tokio::time::sleep(CLAIM_BOUND - Duration::from_millis(150)).await;
        assert_eq!(state(&f), "backup", "waits a full Master_Down_Interval");
        assert!(!bed.holds_vip());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(state(&f), "master");
        f.shutdown().await;
    });
}

/// Ready long after the Master_Down_Timer expired with no master heard:
/// the owed claim is paid the moment readiness arrives, and not before.
#[test]
fn late_ready_claims_at_once_and_not_before() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.start().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(state(&f), "backup", "never master before ready");
        assert!(!bed.holds_vip());
        f.set_ready();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(state(&f), "master");
        assert!(bed.holds_vip());
        f.shutdown().await;
    });
}

/// A higher-priority peer stays master: ready, we never claim while it
/// advertises (and do not announce to it), and we take over within the
/// bound once it goes silent.
#[test]
fn higher_master_keeps_the_vip_until_it_goes_silent() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.start().await;
        f.set_ready();
        for _ in 0..20 {
            bed.peer_advert(200);
            tokio::time::sleep(INTERVAL).await;
        }
        assert_eq!(state(&f), "backup");
        assert!(!bed.holds_vip());
        assert!(
            bed.seen.lock().unwrap().sent.is_empty(),
            "no announcement to a running master"
        );
        // Silence: Master_Down_Interval with the learned interval.
        tokio::time::sleep(CLAIM_BOUND).await;
        assert_eq!(state(&f), "master");
        f.shutdown().await;
    });
}

/// After a link cut the node's backends are down and coming back: leaving
/// Fault, it claims only once every backend probed during the cut has a
/// fresh, steady result (the soak saw 0.18-0.35 s of refused clients on
/// every restore when it claimed after one Master_Down_Interval).
#[test]
fn after_a_link_fault_it_claims_only_once_health_has_caught_up() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.master_then_cut().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        bed.set_link(true);
        // Well past Master_Down_Interval; the first good probe is half-way
        // through its rise: still Backup.
        tokio::time::sleep(CLAIM_BOUND).await;
        bed.probed_now(false, true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(state(&f), "backup");
        assert!(!bed.holds_vip());
        assert_eq!(
            bed.seen.lock().unwrap().flushes,
            1,
            "neighbours flushed on link up"
        );
        // Risen: claims at once.
        bed.probed_now(true, false);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(state(&f), "master");
        assert!(bed.holds_vip());
        f.shutdown().await;
    });
}

/// If the health view never catches up, the wait is bounded by SETTLE_MAX,
/// as at start-up.
#[test]
fn after_a_link_fault_the_health_wait_is_bounded() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.master_then_cut().await;
        bed.set_link(true);
        let up = tokio::time::Instant::now();
        tokio::time::sleep(SETTLE_MAX - Duration::from_millis(20)).await;
        assert_eq!(state(&f), "backup");
        tokio::time::sleep_until(up + SETTLE_MAX + Duration::from_millis(20)).await;
        assert_eq!(state(&f), "master");
        f.shutdown().await;
    });
}

/// A fault that clears before the balancer is ready, and a settle deadline
/// that passes before it is: the loop must not spin on the passed deadline
/// (under paused time a spinning task never lets the clock advance, so this
/// test would hang), and readiness then claims at once.
#[test]
fn a_settle_deadline_that_passes_before_ready_ends_the_wait() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.start().await;
        bed.probed_now(true, false);
        tokio::time::sleep(Duration::from_millis(10)).await;
        bed.set_link(false);
        tokio::time::sleep(Duration::from_millis(10)).await;
        bed.probed_now(false, false);
        bed.set_link(true);
        tokio::time::sleep(SETTLE_MAX + Duration::from_secs(1)).await;
        assert_eq!(state(&f), "backup", "not ready yet");
        f.set_ready();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(state(&f), "master");
        f.shutdown().await;
    });
}

/// A second cut while the first one's backends are still coming back: the
/// wait covers the backends up before the first cut.
#[test]
fn a_fault_during_the_settle_wait_keeps_waiting_for_the_first_ones_backends() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        let f = bed.master_then_cut().await;
        bed.set_link(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        bed.set_link(false);
        tokio::time::sleep(Duration::from_millis(10)).await;
        bed.probed_now(false, false);
        bed.set_link(true);
        tokio::time::sleep(Duration::from_millis(10)).await;
        // Fresh and steady, but down: the backend up before the first cut
        // is not back.
        bed.claims_once_the_backend_is_back(&f).await;
        f.shutdown().await;
    });
}

/// An interface already down when the instance starts is a fault like any
/// other: when it comes up, the claim waits for the backends that were up.
#[test]
fn a_fault_present_at_start_up_waits_for_health_too() {
    paused(async || {
        let mut bed = Bed::new(150, false);
        bed.opener.as_mut().unwrap().link_at_open = false;
        bed.probed_now(true, false);
        let f = bed.start().await;
        f.set_ready();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(state(&f), "fault");
        bed.probed_now(false, false);
        tokio::time::sleep(Duration::from_millis(10)).await;
        bed.set_link(true);
        tokio::time::sleep(Duration::from_millis(10)).await;
        bed.claims_once_the_backend_is_back(&f).await;
        f.shutdown().await;
    });
}
