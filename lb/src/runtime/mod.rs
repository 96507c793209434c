//! The running balancer: the current [`Snapshot`], reload, drain and
//! shutdown. The connection path itself (listeners, accept, pick → connect
//! → forward) is [`crate::proxy`]'s; reload tells it which addresses to
//! listen on.
//!
//! Rules this module keeps:
//! - A reload is all or nothing: the new file is parsed and validated and
//!   every new listener bound *before* the snapshot is swapped. Any error
//!   leaves the old config running and is returned to the caller.
//! - Listeners whose address is unchanged are kept (the socket is never
//!   closed, so no SYN is refused during a reload); listeners of removed
//!   services stop accepting; established connections are never touched.
//!   An address is a group of sockets, one per data-plane worker
//!   ([`crate::proxy::workers`]); a group is kept or stopped whole.
//! - Drain, health and counters live in the [`state::Registry`] and carry
//!   across reloads.
//! - VRRP is not this module's: with `[[vrrp]]` instances, [`Options::vrrp`]
//!   carries the two channels `run` wires to the failover runtime: its
//!   published states (shown by [`Balancer::status`]) and the requests by
//!   which a reload applies `[[vrrp]]` changes.

pub mod drainfile;
pub mod health;
pub mod key;
pub mod passive;
pub mod snapshot;
pub mod state;
pub mod status;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use tandem_healthcheck::checker::{Checker, HealthHandle};

use crate::config::{Config, ConfigErrors, VrrpConfig};
use crate::proxy::accept::{Bound, Dispatch, Listeners};
use crate::proxy::workers::Workers;
use crate::telemetry::names;
use crate::vrrp::status::VrrpStatus;

pub use key::BackendKey;
pub use passive::ConnectFailure;
pub use snapshot::{BackendRt, ServiceRt, Snapshot};
pub use state::{BackendState, Registry, ServiceState};

/// Why a reload (or the initial start) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("health check: {0}")]
    Health(#[from] tandem_healthcheck::checker::TargetError),
    #[error("cannot start the data-plane worker threads: {0}")]
    Workers(#[source] std::io::Error),
    #[error("service {service:?}: cannot listen on {addr}: {source}")]
    Bind {
        service: String,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why `drain`/`enable` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("no service named {0:?}; services: {1}")]
    NoService(String, String),
    #[error("service {service:?} has no backend named or addressed {backend:?}; backends: {valid}")]
    NoBackend {
        service: String,
        backend: String,
        valid: String,
    },
}

/// What a successful reload changed.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ReloadSummary {
    pub listeners_kept: usize,
    pub listeners_added: usize,
    pub listeners_removed: usize,
    pub services: usize,
    /// Settings that changed in the file but only take effect on restart.
    pub restart_needed: Vec<String>,
}

/// A reload's request to VRRP: apply these `[[vrrp]]` instances, and say
/// when that is done (failures are logged by the side that applies them).
#[derive(Debug)]
pub struct VrrpReload {
    pub configs: Vec<VrrpConfig>,
    pub done: tokio::sync::oneshot::Sender<()>,
}

/// The balancer's two channels to the VRRP runtime, wired by `run`.
#[derive(Clone, Debug)]
pub struct VrrpLink {
    /// Every instance's state, in configuration order, as VRRP publishes it.
    pub status: tokio::sync::watch::Receiver<Vec<VrrpStatus>>,
    /// Where a successful reload sends the new `[[vrrp]]` instances; the
    /// reload returns once they are applied.
    pub reload: tokio::sync::mpsc::Sender<VrrpReload>,
}

/// Options fixed for the life of the process.
#[derive(Clone, Debug)]
pub struct Options {
    /// Use splice(2) for forwarding (false: plain copy).
    pub splice: bool,
    /// Where drain flags are kept across restarts (see [`drainfile`]);
    /// None: in memory only.
    pub drain_file: Option<std::path::PathBuf>,
    /// VRRP, when the config has `[[vrrp]]` instances: reloads apply to it
    /// and status shows it.
    pub vrrp: Option<VrrpLink>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // TANDEM_NO_SPLICE=1 forces the copy path (benchmarks, debugging).
            splice: std::env::var_os("TANDEM_NO_SPLICE").is_none_or(|v| v.is_empty() || v == "0"),
            drain_file: None,
            vrrp: None,
        }
    }
}

pub struct Balancer {
    snapshot: Arc<ArcSwap<Snapshot>>,
    registry: Registry,
    listeners: Listeners,
    /// Serialises reloads so two cannot interleave their listener changes.
    reload_lock: tokio::sync::Mutex<()>,
    conns: TaskTracker,
    /// Cancelled when the shutdown grace period is over: open connections close.
    hard_stop: CancellationToken,
    /// The health checker: one target per backend.
    checker: HealthHandle,
    /// Cancelled when the balancer has stopped: probes and the persistence
    /// sweep end.
    checks_stop: CancellationToken,
    opts: Options,
    /// The data-plane runtimes (`node.workers`), where accepts and
    /// connections run. Last field: dropped after everything above.
    workers: Workers,
}

impl Balancer {
    /// Starts the data-plane workers (`node.workers`; worker 0 is the
    /// calling runtime), binds every service's listeners and starts
    /// accepting.
    pub async fn start(config: Config, opts: Options) -> Result<Arc<Balancer>, ReloadError> {
        let config = Arc::new(config);
        let registry = Registry::default();
        let targets = health::targets(&config)?;
        let workers = Workers::start(config.node.workers).map_err(ReloadError::Workers)?;
        let mut bound = Vec::new();
        for svc in &config.services {
            bound.push((svc.listen, bind(&workers, &svc.name, svc.listen)?));
        }
        let checks_stop = CancellationToken::new();
        let checker = Checker::spawn(targets, checks_stop.clone());
        let snapshot = Snapshot::build(config.clone(), &registry, Some(&checker));
        let bal = Arc::new(Balancer {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            registry,
            listeners: Listeners::default(),
            reload_lock: tokio::sync::Mutex::new(()),
            conns: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            checker,
            checks_stop,
            opts,
            workers,
        });
        // Before the first accept, so a drained backend never sees a client.
        bal.load_drained();
        tokio::spawn(persist_sweep(bal.snapshot.clone(), bal.checks_stop.clone()));
        for (addr, l) in bound {
            bal.spawn_accept(addr, l);
        }
        metrics::gauge!(names::CONFIG_LOADED).set(unix_now());
        Ok(bal)
    }

    /// A data-plane thread (other than the caller's, worker 0) that has not
    /// run for more than `limit`, and for how long; see
    /// [`Workers::stalled`].
    pub fn stalled_worker(&self, limit: Duration) -> Option<(usize, Duration)> {
        self.workers.stalled(limit)
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The address actually bound for a service (port 0 in the config resolved).
    pub fn bound_addr(&self, service: &str) -> Option<SocketAddr> {
        let listen = self.snapshot.load().service(service)?.cfg.listen;
        self.listeners.local(&listen)
    }

    fn spawn_accept(&self, addr: SocketAddr, group: Vec<Bound>) {
        let d = Dispatch {
            snapshot: self.snapshot.clone(),
            conns: self.conns.clone(),
            splice: self.opts.splice,
            hard_stop: self.hard_stop.clone(),
            accepted: self.workers.accepted().clone(),
        };
        self.listeners.spawn(addr, group, d);
    }

    /// Reads the config file the running config came from and applies it.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadSummary, ReloadError> {
        let path = self.snapshot.load().config.source.clone();
        let result = match Config::load(&path) {
            Ok(cfg) => self.apply(cfg).await,
            Err(e) => Err(e.into()),
        };
        if result.is_ok()
            && let Some(link) = &self.opts.vrrp
        {
            let (done, applied) = tokio::sync::oneshot::channel();
            let configs = self.snapshot().config.vrrp.clone();
            // Gone only when VRRP has shut down: nothing left to apply.
            if link.reload.send(VrrpReload { configs, done }).await.is_ok() {
                let _ = applied.await;
            }
        }
        match &result {
            Ok(s) => {
                metrics::counter!(names::RELOADS, "result" => "ok").increment(1);
                metrics::gauge!(names::CONFIG_LOADED).set(unix_now());
                tracing::info!(
                    kept = s.listeners_kept,
                    added = s.listeners_added,
                    removed = s.listeners_removed,
                    services = s.services,
                    "configuration reloaded"
                );
                for what in &s.restart_needed {
                    tracing::warn!(setting = %what, "changed setting takes effect only after a restart");
                }
            }
            Err(e) => {
                metrics::counter!(names::RELOADS, "result" => "error").increment(1);
                tracing::error!("reload refused, the running configuration is kept:\n{e}");
            }
        }
        result
    }

    /// Applies an already validated config: binds new listeners, swaps the
    /// snapshot, stops listeners of removed services.
    pub async fn apply(self: &Arc<Self>, config: Config) -> Result<ReloadSummary, ReloadError> {
        let _guard = self.reload_lock.lock().await;
        let old = self.snapshot.load_full();
        let existing = self.listeners.addrs();
        let mut summary = ReloadSummary {
            services: config.services.len(),
            ..Default::default()
        };
        // Validate and bind first: a failure here must leave everything as
        // it was.
        let targets = health::targets(&config)?;
        let mut fresh = Vec::new();
        for svc in &config.services {
            if existing.contains(&svc.listen) {
                summary.listeners_kept += 1;
            } else {
                fresh.push((svc.listen, bind(&self.workers, &svc.name, svc.listen)?));
            }
        }
        let on = &old.config.node;
        let nn = &config.node;
        if on.workers != nn.workers {
            summary.restart_needed.push("node.workers".into());
        }
        if on.connection_log != nn.connection_log {
            summary.restart_needed.push("node.connection_log".into());
        }
        if old.config.admin != config.admin {
            summary.restart_needed.push("admin.socket".into());
        }
        if old.config.metrics != config.metrics {
            summary.restart_needed.push("metrics.listen".into());
        }
        let config = Arc::new(config);
        // Unchanged targets keep their state and counters; their handles
        // stay valid, so connections of the old snapshot keep reporting.
        let hs = self.checker.update_targets(targets);
        tracing::debug!(
            kept = hs.kept,
            replaced = hs.replaced,
            added = hs.added,
            removed = hs.removed,
            "health targets updated"
        );
        let snapshot = Snapshot::build(config.clone(), &self.registry, Some(&self.checker));
        self.snapshot.store(Arc::new(snapshot));
        summary.listeners_added = fresh.len();
        for (addr, l) in fresh {
            self.spawn_accept(addr, l);
        }
        summary.listeners_removed = self
            .listeners
            .retain(|addr| config.services.iter().any(|s| s.listen == *addr));
        let svc_names: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
        let backend_keys: Vec<BackendKey> = config
            .services
            .iter()
            .flat_map(|s| s.backends.iter().map(|b| BackendKey::of(&s.name, b)))
            .collect();
        self.registry.retain(&svc_names, &backend_keys);
        Ok(summary)
    }

    /// Sets (`drain = true`) or clears a backend's drain flag: a drained
    /// backend gets no new connection; open ones finish. Survives reloads.
    pub fn set_drain(&self, service: &str, backend: &str, drain: bool) -> Result<(), AdminError> {
        let snap = self.snapshot.load();
        let Some(svc) = snap.service(service) else {
            let valid = snap
                .services
                .iter()
                .map(|s| s.cfg.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(AdminError::NoService(service.to_string(), valid));
        };
        let Some(b) = svc.backend(backend) else {
            let valid = svc
                .backends
                .iter()
                .map(|b| b.cfg.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(AdminError::NoBackend {
                service: service.to_string(),
                backend: backend.to_string(),
                valid,
            });
        };
        b.state.drained.store(drain, Ordering::Release);
        self.save_drained(&snap);
        tracing::info!(
            service,
            backend = %b.cfg.name,
            active = b.state.active.get(),
            "{}",
            if drain { "backend drained" } else { "backend enabled" }
        );
        Ok(())
    }

    /// Writes every drained backend of `snap` to the drain file, if any.
    fn save_drained(&self, snap: &Snapshot) {
        let Some(path) = &self.opts.drain_file else {
            return;
        };
        let drained: Vec<(String, SocketAddr)> = snap
            .services
            .iter()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .filter(|b| b.state.is_drained())
                    .map(|b| (s.cfg.name.clone(), b.cfg.address))
            })
            .collect();
        if let Err(e) = drainfile::save(path, &drained) {
            tracing::warn!(file = %path.display(), error = %e, "cannot save drain state; it will not survive a restart");
        }
    }

    /// Applies drain flags saved by a previous run.
    fn load_drained(&self) {
        let Some(path) = &self.opts.drain_file else {
            return;
        };
        match drainfile::load(path) {
            Ok(list) => {
                let snap = self.snapshot.load();
                for (svc, addr) in list {
                    if let Some(b) = snap
                        .service(&svc)
                        .and_then(|s| s.backends.iter().find(|b| b.cfg.address == addr))
                    {
                        b.state.drained.store(true, Ordering::Release);
                        tracing::info!(service = %svc, backend = %b.cfg.name, "backend still drained (from {})", path.display());
                    }
                }
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read saved drain state")
            }
        }
    }

    pub fn status(&self) -> status::Status {
        let vrrp = self
            .opts
            .vrrp
            .as_ref()
            .map(|l| l.status.borrow().clone())
            .unwrap_or_default();
        status::Status::of(&self.snapshot.load(), &self.checker.view(), vrrp)
    }

    /// The health checker: subscribe to its view for VRRP tracking.
    pub fn health(&self) -> &HealthHandle {
        &self.checker
    }

    /// Stops accepting, waits up to `grace` for open connections to finish,
    /// then closes the rest. Returns how many were cut by the deadline.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.listeners.stop().await;
        self.conns.close();
        let open = self.conns.len();
        tracing::info!(
            open,
            grace_ms = grace.as_millis() as u64,
            "shutting down: waiting for open connections"
        );
        if tokio::time::timeout(grace, self.conns.wait()).await.is_ok() {
            self.stop_checks().await;
            return 0;
        }
        let cut = self.conns.len();
        tracing::warn!(cut, "grace period over: closing open connections");
        self.hard_stop.cancel();
        self.conns.wait().await;
        self.stop_checks().await;
        cut
    }

    async fn stop_checks(&self) {
        self.checks_stop.cancel();
        self.checker.wait_stopped().await;
    }

    /// Connections currently being handled.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }

    /// Client connections each data-plane worker has accepted, worker 0
    /// first (`node.workers` entries).
    pub fn accepted_per_worker(&self) -> Vec<u64> {
        self.workers.accepted().iter().map(|a| a.get()).collect()
    }
}

/// How often the persistence sweep runs; each run visits a quarter of
/// every table's shards, so a shard is swept once a second.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);
const SWEEP_PARTS: usize = 4;

/// Drops expired persistence entries and those whose backend can no longer
/// take its clients (down, drained, removed by a reload), in the snapshot
/// in force at each run. Bounded work per run: a quarter of the shards of
/// each table, one shard lock at a time. Lookups drop expired entries
/// lazily too; the sweep is what frees entries of clients that never
/// return, and what keeps the status counts and the gauge current.
async fn persist_sweep(snapshot: Arc<ArcSwap<Snapshot>>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_part = crate::persist::SHARDS / SWEEP_PARTS;
    for part in (0..SWEEP_PARTS).cycle() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let snap = snapshot.load_full();
        let now = std::time::Instant::now();
        for svc in &snap.services {
            let Some(table) = &svc.persist else { continue };
            let panic = svc.panic_mode();
            let shards = part * per_part..(part + 1) * per_part;
            let dropped = table.sweep(shards, now, |b| svc.pinnable(b, panic).is_some());
            if dropped > 0 {
                tracing::debug!(service = %svc.cfg.name, dropped, left = table.len(), "persistence entries swept");
            }
        }
    }
}

/// Binds `addr`'s group, one socket per worker, each registered with its
/// worker's runtime (a registration is tied to the epoll instance of the
/// runtime it was made in).
fn bind(workers: &Workers, service: &str, addr: SocketAddr) -> Result<Vec<Bound>, ReloadError> {
    let error = |source| ReloadError::Bind {
        service: service.to_string(),
        addr,
        source,
    };
    let group = crate::proxy::listener::bind_group(addr, workers.len()).map_err(error)?;
    workers
        .handles()
        .iter()
        .zip(group)
        .map(|(rt, l)| {
            let _in = rt.enter();
            let l = tokio::net::TcpListener::from_std(l).map_err(error)?;
            Ok((rt.clone(), l))
        })
        .collect()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
