//! `tandem lb run`: one balancer process.
//!
//! Order at start: raise the descriptor limit, build the main thread's
//! runtime, install metrics, start the data-plane workers and bind every
//! listener (one socket per worker, see [`crate::proxy::workers`]) and the
//! admin socket (any failure exits non-zero before serving), then serve.
//! The main thread is data-plane worker 0 and also runs the control side:
//! health checks, VRRP, the admin socket, metrics, signals and the systemd
//! watchdog, which therefore stops pinging if that thread stalls, and
//! withholds its pings while another data-plane thread has not run for
//! [`STALL_LIMIT`]. SIGHUP reloads; SIGTERM/SIGINT stop accepting, let open
//! connections finish for `node.shutdown_grace`, and exit 0.
//!
//! VRRP ([`failover`]) starts after the listeners are bound and may claim
//! the VIPs only once health checks have settled (every actively checked
//! backend has a first probe result, or [`SETTLE_MAX`] passed): a node must
//! not attract clients before it can serve them. On SIGTERM VRRP resigns
//! first (priority-0 advert, VIPs removed) so the peer takes over at once,
//! and only then are connections drained.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tandem_service::runner::Runner;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::failover::Failover;
use crate::runtime::{Balancer, Options, VrrpLink, VrrpReload};
use crate::{admin, telemetry};
use tandem_healthcheck::checker::TargetId;

pub use crate::failover::SETTLE_MAX;

/// A data-plane thread whose runtime has not run for this long is wedged:
/// the watchdog ping is withheld, so with the unit's `WatchdogSec=10s`
/// (pings every 5 s) systemd restarts a balancer whose thread stays stuck
/// for about 8 to 13 s. Far above any scheduling delay of a busy thread
/// (a current-thread runtime runs its beat between two task polls).
pub const STALL_LIMIT: Duration = Duration::from_secs(3);

/// Size of each splice pipe. 256 KiB moves bulk at about a third less CPU
/// per byte than 64 KiB copies (measured on loopback); 1 MiB is faster still
/// but would exhaust an unprivileged user's pipe budget
/// (`pipe-user-pages-soft`, 64 MiB) at 64 busy directions.
const PIPE_SIZE: usize = 256 * 1024;

/// Runs the balancer until SIGTERM/SIGINT. Blocks the calling thread.
pub fn run(config: Config) -> anyhow::Result<()> {
    let nofile = match crate::proxy::listener::raise_nofile_limit() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the descriptor limit");
            1024
        }
    };
    // Pipes are leased only while data flows, two descriptors each. Leave
    // at least half the descriptors to sockets: with a quarter of the limit
    // in pipes, every connection can still splice both ways while half of
    // them are busy at once; past that, directions fall back to copying.
    let max_pipes = (nofile / 4).clamp(16, 65_536) as usize;
    crate::proxy::pipe_pool::configure_pipe_pool(max_pipes, PIPE_SIZE);
    tracing::info!(
        nofile,
        max_pipes,
        pipe_size = PIPE_SIZE,
        "descriptor limit and splice pipe pool"
    );
    // Resolved by the config (0 = one per core); never 0 here.
    let workers = config.node.workers.max(1);
    // Worker 0: a current-thread runtime, as every other worker's (one
    // epoll instance, timers and task queue per thread, nothing shared).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(config, workers))
}

async fn serve(config: Config, workers: usize) -> anyhow::Result<()> {
    let handle = telemetry::install().context("installing the metrics recorder")?;
    let shutdown = CancellationToken::new();
    let admin_path = config.admin.socket.clone();
    let metrics_listen = config.metrics.listen;
    let source = config.source.clone();

    // Signals are hooked before anything binds, so a SIGTERM that arrives
    // during start-up is not lost to the default action.
    let mut runner = Runner::systemd(true, config.node.shutdown_grace)
        .context("hooking SIGHUP, SIGTERM and SIGINT")?;

    let vrrp = config.vrrp.clone();
    let probed = probed_targets(&config);
    let (vrrp_status, vrrp_status_rx) = tokio::sync::watch::channel(Vec::new());
    let (vrrp_reload, vrrp_reloads) = tokio::sync::mpsc::channel(1);
    let opts = Options {
        drain_file: Some(drain_file(&admin_path)),
        vrrp: (!vrrp.is_empty()).then_some(VrrpLink {
            status: vrrp_status_rx,
            reload: vrrp_reload,
        }),
        ..Options::default()
    };
    // Before anything binds or probes: a VIP left by a crashed run goes.
    crate::failover::remove_stale_vips(&config.vrrp).await;
    let bal = Balancer::start(config, opts).await?;
    let failover = start_failover(&vrrp, &bal, probed, vrrp_status, vrrp_reloads).await?;
    let metrics_task = start_metrics(metrics_listen, handle, &bal, &shutdown).await?;
    // The admin socket last: its appearance means everything else is bound.
    let admin_listener = admin::bind(&admin_path).await?;
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        admin_path.clone(),
        bal.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        config = %source.display(),
        workers,
        services = bal.snapshot().services.len(),
        admin = %admin_path.display(),
        "balancer running"
    );

    // systemd (Type=notify): ready only now, with every listener and the
    // admin socket bound; the watchdog pings run on worker 0's runtime and
    // ask after the other workers' threads.
    let beats = Arc::clone(&bal);
    runner.gate_pings(Arc::new(move || {
        beats
            .stalled_worker(STALL_LIMIT)
            .map(|(i, age)| format!("data-plane worker {i} has not run for {age:?}"))
    }));
    runner.ready(Some("serving"));
    let reload = || {
        let (bal, source) = (Arc::clone(&bal), source.clone());
        async move {
            tracing::info!("SIGHUP: reloading {}", source.display());
            // Applies [[vrrp]] changes too (see apply_vrrp_reloads).
            match bal.reload().await {
                Ok(_) => "serving",
                Err(_) => "serving; last reload refused",
            }
        }
    };
    runner
        .wait(
            std::future::pending::<()>(),
            reload,
            Some("draining connections"),
        )
        .await;

    // Hand the VIPs over before draining: the peer takes new connections
    // while ours finish.
    if let Some(f) = &failover {
        f.shutdown().await;
    }
    let cut = bal.shutdown(runner.grace()).await;
    shutdown.cancel();
    let _ = admin_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    tracing::info!(cut, "balancer stopped");
    Ok(())
}

/// Backends with active probes; the others have no first probe to wait for.
fn probed_targets(config: &Config) -> Vec<TargetId> {
    config
        .services
        .iter()
        .flat_map(|s| {
            s.backends
                .iter()
                .filter(|b| b.health.is_some())
                .map(|b| crate::runtime::health::target_id(&s.name, b))
        })
        .collect()
}

/// Starts VRRP (if configured), attached to the balancer, and lets it claim
/// the VIPs once the `probed` backends have settled.
async fn start_failover(
    vrrp: &[crate::config::VrrpConfig],
    bal: &Arc<Balancer>,
    probed: Vec<TargetId>,
    status: tokio::sync::watch::Sender<Vec<crate::vrrp::status::VrrpStatus>>,
    reloads: tokio::sync::mpsc::Receiver<VrrpReload>,
) -> anyhow::Result<Option<Arc<Failover>>> {
    if vrrp.is_empty() {
        return Ok(None);
    }
    let f = Failover::start(vrrp, bal.health().subscribe(), status).await?;
    tokio::spawn(apply_vrrp_reloads(f.clone(), reloads));
    let (f2, bal2) = (f.clone(), bal.clone());
    tokio::spawn(async move {
        let t0 = std::time::Instant::now();
        let settled = wait_settled(&bal2, &probed).await;
        let ms = t0.elapsed().as_millis() as u64;
        if settled {
            tracing::info!(
                probed = probed.len(),
                wait_ms = ms,
                "health checks settled: VRRP may claim the VIPs"
            );
        } else {
            tracing::warn!(
                probed = probed.len(),
                wait_ms = ms,
                "health checks not settled in time: VRRP may claim the VIPs anyway"
            );
        }
        f2.set_ready();
    });
    Ok(Some(f))
}

/// Applies each reload's `[[vrrp]]` instances (SIGHUP and the admin socket
/// alike), until the balancer is gone.
async fn apply_vrrp_reloads(
    f: Arc<Failover>,
    mut reloads: tokio::sync::mpsc::Receiver<VrrpReload>,
) {
    while let Some(r) = reloads.recv().await {
        if let Err(e) = f.apply(&r.configs).await {
            // The services were reloaded; the VRRP instances that could not
            // be (re)started keep their previous state where they have one.
            tracing::error!(error = %e, "reload: VRRP change not applied");
        }
        let _ = r.done.send(());
    }
}

/// Binds `[metrics] listen` (if set) and serves `/metrics` and the status
/// page there until `shutdown`.
async fn start_metrics(
    listen: Option<std::net::SocketAddr>,
    handle: PrometheusHandle,
    bal: &Arc<Balancer>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    let Some(addr) = listen else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics.listen = {addr}: cannot listen"))?;
    tracing::info!(listen = %addr, "metrics listening");
    let status: telemetry::StatusFn = {
        let bal = bal.clone();
        Arc::new(move || serde_json::to_string(&bal.status()).unwrap_or_default())
    };
    Ok(Some(tokio::spawn(telemetry::serve_with_status(
        l,
        handle,
        Some(status),
        shutdown.clone(),
    ))))
}

/// True once every id in `probed` has a first probe result; false after
/// [`SETTLE_MAX`]. A result, not a change of state: `fall` (with `alpha`,
/// `rise`) results in a row are needed to change one, so a first result
/// usually changes nothing, and a healthy backend never changes at all.
async fn wait_settled(bal: &Balancer, probed: &[TargetId]) -> bool {
    let mut rx = bal.health().subscribe();
    let done = |rx: &tokio::sync::watch::Receiver<Arc<tandem_healthcheck::checker::HealthView>>| {
        let v = rx.borrow();
        probed
            .iter()
            .all(|id| v.get(id).is_some_and(|h| h.last_probe.is_some()))
    };
    let wait = async {
        while !done(&rx) {
            if rx.changed().await.is_err() {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(SETTLE_MAX, wait)
        .await
        .unwrap_or(false)
}

/// Where drain flags survive restarts: systemd's `StateDirectory` when the
/// unit has one (`$STATE_DIRECTORY`, kept across restarts and reboots),
/// else beside the admin socket.
fn drain_file(admin_socket: &std::path::Path) -> std::path::PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        // systemd may pass several, colon-separated: take the first.
        Some(dirs) => {
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_string();
            std::path::Path::new(&first).join("lb.drained")
        }
        None => admin_socket.with_file_name("lb.drained"),
    }
}
