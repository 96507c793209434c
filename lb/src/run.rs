//! `tandem lb run`: one balancer process.
//!
//! Order at start: raise the descriptor limit, build the runtime with the
//! configured number of worker threads, install metrics, bind every listener
//! and the admin socket (any failure exits non-zero before serving), then
//! serve. SIGHUP reloads; SIGTERM/SIGINT stop accepting, let open
//! connections finish for `node.shutdown_grace`, and exit 0.

use std::sync::Arc;

use anyhow::Context;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::runtime::{Balancer, Options};
use crate::{admin, telemetry};

/// Size of each splice pipe. 256 KiB moves bulk at about a third less CPU
/// per byte than 64 KiB copies (measured on loopback); 1 MiB is faster still
/// but would exhaust an unprivileged user's pipe budget
/// (`pipe-user-pages-soft`, 64 MiB) at 64 busy directions.
const PIPE_SIZE: usize = 256 * 1024;

/// Runs the balancer until SIGTERM/SIGINT. Blocks the calling thread.
pub fn run(config: Config) -> anyhow::Result<()> {
    let nofile = match crate::runtime::listener::raise_nofile_limit() {
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
    let workers = if config.node.workers == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        config.node.workers
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("tandem-lb")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(config, workers))
}

async fn serve(config: Config, workers: usize) -> anyhow::Result<()> {
    let handle = telemetry::install().context("installing the metrics recorder")?;
    let shutdown = CancellationToken::new();
    let grace = config.node.shutdown_grace;
    let admin_path = config.admin.socket.clone();
    let metrics_listen = config.metrics.listen;
    let source = config.source.clone();

    // Signals are hooked before anything binds, so a SIGTERM that arrives
    // during start-up is not lost to the default action.
    let mut hup = signal(SignalKind::hangup()).context("hooking SIGHUP")?;
    let mut term = signal(SignalKind::terminate()).context("hooking SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("hooking SIGINT")?;

    let bal = Balancer::start(config, Options::default()).await?;
    let metrics_task = match metrics_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics.listen = {addr}: cannot listen"))?;
            tracing::info!(listen = %addr, "metrics listening");
            let status: telemetry::StatusFn = {
                let bal = bal.clone();
                Arc::new(move || serde_json::to_string(&bal.status()).unwrap_or_default())
            };
            Some(tokio::spawn(telemetry::serve_with_status(
                l,
                handle,
                Some(status),
                shutdown.clone(),
            )))
        }
        None => None,
    };
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
    // admin socket bound. Outside systemd NOTIFY_SOCKET is unset and these
    // are no-ops.
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
    let watchdog = sd_notify::watchdog_enabled().map(|every| {
        // Pinged from a task on the data-plane runtime, so a wedged runtime
        // stops the pings and systemd restarts us.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tick.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        })
    });

    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading {}", source.display());
                notify_reloading();
                let r = Arc::clone(&bal).reload().await;
                notify(&[
                    NotifyState::Ready,
                    NotifyState::Status(if r.is_ok() { "serving" } else { "serving; last reload refused" }),
                ]);
            }
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
        }
    }
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("draining connections"),
    ]);
    if let Some(w) = watchdog {
        w.abort();
    }
    let cut = bal.shutdown(grace).await;
    shutdown.cancel();
    let _ = admin_task.await;
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    tracing::info!(cut, "balancer stopped");
    Ok(())
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// RELOADING=1 must carry MONOTONIC_USEC for systemd >= 253 (Type=notify-reload).
fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}
