//! The VRRP runtime: one task per `[[vrrp]]` instance running the pure
//! [`crate::vrrp::machine::Machine`] against the kernel edge ([`crate::net`]).
//!
//! - [`instance`]: the per-instance task (socket, timers, link, tracking,
//!   actions).
//! - [`settle`]: when the health view has caught up after a fault (pure).
//! - `garp`: a new master's gratuitous ARP bursts, in their own task.
//! - [`edge`]: what an instance touches outside the process (the kernel, or
//!   a simulated segment in tests).
//! - [`track`]: tracked targets to effective priority / fault (pure).
//! - [`notify`]: the ordered, one-at-a-time notify queue.
//!
//! Life cycle, as `run` drives it:
//! 1. [`Failover::start`] after the balancer's listeners are bound. Each
//!    instance first removes its VIPs if a crashed predecessor left them on
//!    the interface, then starts in Backup — never Master, even as address
//!    owner, until [`Failover::set_ready`] (issue 4 item 7: keepalived at
//!    priority 255 took the VIP before its service listened, so clients got
//!    resets).
//! 2. [`Failover::set_ready`] once health checks have settled. After a
//!    fault clears, each instance is also held back until its health view
//!    has caught up again ([`settle`]).
//! 3. [`Failover::apply`] on reload: an unchanged instance is untouched (its
//!    state and VIPs stay), a changed one is stopped (resigning) and started
//!    again, a removed one resigns, a new one starts.
//! 4. [`Failover::shutdown`] on SIGTERM, before connections are drained: a
//!    master sends a priority-0 advert (the backup takes over after its skew
//!    time, well under one interval) and removes its VIPs.
//!
//! ## The default advert interval: 100 ms (VRRPv3)
//!
//! A backup declares the master dead after Master_Down_Interval = 3 ×
//! interval + skew (RFC 5798 §6.1), so at 100 ms a crashed master's VIP
//! moves after 300–400 ms (plus gratuitous ARP propagation), against 3–4 s
//! at keepalived's default of 1 s. A clean stop does not wait for that:
//! the priority-0 advert hands over after the skew time (< 100 ms).
//!
//! What it costs: 10 adverts per second per instance from the master (54
//! bytes each on the wire for one VIP: negligible bandwidth and CPU), and a
//! tighter tolerance for stalls: if the master cannot send for about 300 ms
//! (a CPU-starved or paused VM, a saturated link dropping multicast), the
//! backup takes over. That is a takeover of at most one advert interval's
//! duration, resolved to one master by the next advert (the loser hears a
//! higher or equal-and-higher-address master and steps down), not an
//! outage, but it shows as `tandem_lb_vrrp_transitions` and moves
//! connections' ARP entries twice. Where pauses of that size are normal, use
//! `advert_interval = "1s"` (works with v2 and v3). VRRPv2 cannot go below
//! 1 s (its field is whole seconds).

pub mod edge;
mod garp;
mod instance;
pub mod notify;
pub mod settle;
#[cfg(test)]
mod tests;
pub mod track;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge};
use tandem_healthcheck::checker::HealthView;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::VrrpConfig;
use crate::vrrp::RangeError;
use crate::vrrp::machine::State;
use crate::vrrp::packet::Reject;
use crate::vrrp::status::VrrpStatus;
use edge::{Kernel, Opener};
use instance::{CONFIG_REJECT_LABELS, Ctx, Instance};

/// Metric name stems (the exporter adds `_total` to counters).
pub mod names {
    pub const STATE: &str = "tandem_lb_vrrp_state";
    pub const PRIORITY: &str = "tandem_lb_vrrp_priority";
    pub const TRANSITIONS: &str = "tandem_lb_vrrp_transitions";
    pub const ADVERTS_SENT: &str = "tandem_lb_vrrp_adverts_sent";
    pub const ADVERTS_RECEIVED: &str = "tandem_lb_vrrp_adverts_received";
    pub const REJECTED: &str = "tandem_lb_vrrp_rejected";
    pub const OTHER_MASTER_SEEN: &str = "tandem_lb_vrrp_other_master_seen";
}

/// Every state, for the one-hot state gauge.
const STATES: [State; 4] = [
    State::Initialize,
    State::Backup,
    State::Master,
    State::Fault,
];

/// Longest wait for health checks to settle before VRRP may claim the VIPs,
/// at start-up (`run::wait_settled`) and after a fault ([`settle`]).
pub const SETTLE_MAX: Duration = Duration::from_secs(5);

/// How long [`Failover::shutdown`] and a reload wait for one instance to
/// resign before giving up on it.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error("vrrp {instance:?}: interface {interface:?}: {source}")]
    Interface {
        instance: String,
        interface: String,
        source: io::Error,
    },
    #[error(
        "vrrp {instance:?}: interface {interface:?} has no IPv4 address other than the VIPs \
         (set unicast_src_ip or add an address)"
    )]
    NoAddress { instance: String, interface: String },
    #[error("vrrp {instance:?}: VRRP socket: {source}")]
    Socket { instance: String, source: io::Error },
    #[error("vrrp {instance:?}: {source}")]
    Params {
        instance: String,
        source: RangeError,
    },
}

/// Describes the VRRP metrics (HELP lines).
pub fn describe() {
    use names::*;
    describe_gauge!(
        STATE,
        "VRRP state per instance: 1 for the current state, 0 for the others."
    );
    describe_gauge!(
        PRIORITY,
        "Effective VRRP priority per instance (configured, adjusted by tracking)."
    );
    describe_counter!(
        TRANSITIONS,
        Unit::Count,
        "VRRP state transitions per instance, by the state entered."
    );
    describe_counter!(ADVERTS_SENT, Unit::Count, "VRRP adverts sent per instance.");
    describe_counter!(
        ADVERTS_RECEIVED,
        Unit::Count,
        "Valid VRRP adverts received for this instance's virtual router."
    );
    describe_counter!(
        REJECTED,
        Unit::Count,
        "Received VRRP packets dropped, per instance and reason."
    );
    describe_counter!(
        OTHER_MASTER_SEEN,
        Unit::Count,
        "Adverts from another master heard while master (two masters: the split-brain alarm)."
    );
}

struct Running {
    cfg: VrrpConfig,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The running VRRP instances, opened by `O` (the kernel, but for tests).
pub struct Failover<O = Kernel> {
    opener: O,
    running: Mutex<Vec<Running>>,
    /// Serialises `apply` and `shutdown`.
    changing: tokio::sync::Mutex<()>,
    health: watch::Receiver<Arc<HealthView>>,
    ready: watch::Sender<bool>,
    /// Every running instance's state, in configuration order: each
    /// instance updates its own entry, `launch`, `apply` and `shutdown` the
    /// set. The balancer's status reads the receiving end.
    status: watch::Sender<Vec<VrrpStatus>>,
    notify: Mutex<Option<notify::Queue>>,
    notify_task: Mutex<Option<JoinHandle<()>>>,
}

fn initial_status(cfg: &VrrpConfig) -> VrrpStatus {
    VrrpStatus {
        instance: cfg.name.clone(),
        interface: cfg.interface.clone(),
        vrid: cfg.vrid.get(),
        version: cfg.version.number(),
        state: State::Initialize.as_str().into(),
        priority: cfg.priority.get(),
        configured_priority: cfg.priority.get(),
        master: None,
        vips: cfg
            .virtual_ips
            .iter()
            .map(|(ip, p)| format!("{ip}/{p}"))
            .collect(),
        tracks_down: Vec::new(),
    }
}

impl Failover {
    /// Starts every instance on the kernel's interfaces (not ready: none
    /// becomes master before [`Failover::set_ready`]), publishing their
    /// states on `status`. Fails if any instance cannot open its interface
    /// or sockets; those already started are stopped again.
    pub async fn start(
        configs: &[VrrpConfig],
        health: watch::Receiver<Arc<HealthView>>,
        status: watch::Sender<Vec<VrrpStatus>>,
    ) -> Result<Arc<Failover>, FailoverError> {
        Failover::start_with(Kernel, configs, health, status).await
    }
}

impl<O: Opener> Failover<O> {
    /// [`Failover::start`] with instances opened by `opener`.
    pub async fn start_with(
        opener: O,
        configs: &[VrrpConfig],
        health: watch::Receiver<Arc<HealthView>>,
        status: watch::Sender<Vec<VrrpStatus>>,
    ) -> Result<Arc<Failover<O>>, FailoverError> {
        describe();
        let (q, task) = notify::spawn();
        let (ready, _) = watch::channel(false);
        let f = Arc::new(Failover {
            opener,
            running: Mutex::new(Vec::new()),
            changing: tokio::sync::Mutex::new(()),
            health,
            ready,
            status,
            notify: Mutex::new(Some(q)),
            notify_task: Mutex::new(Some(task)),
        });
        for cfg in configs {
            match f.launch(cfg.clone()).await {
                Ok(r) => f.lock().push(r),
                Err(e) => {
                    f.shutdown().await;
                    return Err(e);
                }
            }
        }
        Ok(f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn launch(&self, cfg: VrrpConfig) -> Result<Running, FailoverError> {
        let name = cfg.name.clone();
        for r in Reject::LABELS.iter().chain(CONFIG_REJECT_LABELS) {
            metrics::counter!(names::REJECTED, "vrrp_instance" => name.clone(), "reason" => *r)
                .absolute(0);
        }
        for s in STATES {
            metrics::gauge!(names::STATE, "vrrp_instance" => name.clone(), "state" => s.as_str())
                .set(0.0);
        }
        // Readiness is not read here: the instance reads the channel's
        // current value itself, each turn of its loop (see
        // `Instance::sync_ready`), so a `set_ready` at any moment of the
        // open below, or before the task first runs, cannot be missed.
        let opened = self.opener.open(&cfg).await?;
        let inst = Instance::new(cfg.clone(), opened)?;
        let q = self
            .notify
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .expect("launch is never called after shutdown dropped the queue");
        // A restarted instance's entry starts afresh, at the end until
        // `apply` restores configuration order.
        self.status.send_modify(|all| {
            all.retain(|s| s.instance != cfg.name);
            all.push(initial_status(&cfg));
        });
        let stop = CancellationToken::new();
        let ctx = Ctx {
            health: self.health.clone(),
            ready: self.ready.subscribe(),
            stop: stop.clone(),
            notify: q,
            status: self.status.clone(),
        };
        let task = tokio::spawn(inst.run(ctx));
        Ok(Running { cfg, stop, task })
    }

    /// Listeners bound and health checks settled: instances may become master.
    pub fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Every instance's state, in configuration order.
    pub fn status(&self) -> Vec<VrrpStatus> {
        self.status.borrow().clone()
    }

    /// Applies a reloaded configuration. Unchanged instances keep running
    /// untouched; changed ones restart; removed ones resign. Returns the
    /// first instance that failed to start (the others are applied).
    pub async fn apply(&self, configs: &[VrrpConfig]) -> Result<(), FailoverError> {
        let _g = self.changing.lock().await;
        let old: Vec<Running> = std::mem::take(&mut *self.lock());
        let mut by_name: HashMap<String, Running> =
            old.into_iter().map(|r| (r.cfg.name.clone(), r)).collect();
        let mut keep = Vec::new();
        let mut to_start = Vec::new();
        for cfg in configs {
            match by_name.remove(&cfg.name) {
                Some(r) if r.cfg == *cfg => keep.push(r),
                Some(r) => {
                    tracing::info!(instance = %cfg.name, "vrrp instance changed: restarting");
                    stop(r).await;
                    to_start.push(cfg.clone());
                }
                None => to_start.push(cfg.clone()),
            }
        }
        for (name, r) in by_name {
            tracing::info!(instance = %name, "vrrp instance removed: resigning");
            stop(r).await;
        }
        let mut first_err = None;
        for cfg in to_start {
            match self.launch(cfg).await {
                Ok(r) => keep.push(r),
                Err(e) => {
                    tracing::error!("{e}");
                    first_err.get_or_insert(e);
                }
            }
        }
        // Configuration order for status.
        keep.sort_by_key(|r| configs.iter().position(|c| c.name == r.cfg.name));
        self.status.send_modify(|all| {
            all.retain(|s| keep.iter().any(|r| r.cfg.name == s.instance));
            all.sort_by_key(|s| configs.iter().position(|c| c.name == s.instance));
        });
        *self.lock() = keep;
        first_err.map_or(Ok(()), Err)
    }

    /// Resigns every instance (priority 0 advert, VIPs removed) and waits
    /// for queued notify commands (bounded by their timeouts).
    pub async fn shutdown(&self) {
        let _g = self.changing.lock().await;
        let all: Vec<Running> = std::mem::take(&mut *self.lock());
        let notify_wait = all
            .iter()
            .map(|r| r.cfg.notify_timeout)
            .max()
            .unwrap_or_default()
            + Duration::from_millis(500);
        for r in &all {
            r.stop.cancel();
        }
        for r in all {
            wait(r).await;
        }
        self.status.send_modify(Vec::clear);
        self.notify.lock().unwrap_or_else(|e| e.into_inner()).take();
        let task = self
            .notify_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = task
            && tokio::time::timeout(notify_wait, t).await.is_err()
        {
            tracing::warn!("notify commands still queued at exit");
        }
    }
}

async fn stop(r: Running) {
    r.stop.cancel();
    wait(r).await;
}

async fn wait(r: Running) {
    let name = r.cfg.name.clone();
    let mut task = r.task;
    if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
        tracing::warn!(instance = %name, "vrrp instance did not stop in time: aborted");
        task.abort();
    }
}

/// Removes every configured VIP still on its interface (issue 4 item 7: a
/// node restarted after a crash must not answer for a VIP before VRRP says
/// it may). Run first thing at start, before listeners and health checks;
/// each instance checks again when it opens. Errors are logged, not fatal:
/// the instance's own start reports a missing interface clearly.
pub async fn remove_stale_vips(configs: &[VrrpConfig]) {
    if configs.is_empty() {
        return;
    }
    let nl = match crate::net::netlink::Netlink::connect() {
        Ok(nl) => nl,
        Err(e) => {
            tracing::warn!(error = %e, "netlink: cannot check for VIPs left by a previous run");
            return;
        }
    };
    for cfg in configs {
        let Ok(link) = nl.link(&cfg.interface).await else {
            continue;
        };
        let Ok(addrs) = nl.ipv4_addrs(link.index).await else {
            continue;
        };
        // Each failure is logged there; the instance's own start retries.
        let _ = edge::remove_stale_vips(&nl, link.index, &addrs, cfg).await;
    }
}
