//! One replica: the HTTP server, the dispatcher, the webhook deliveries,
//! the request log writer, the waiters' checker and the retention pass,
//! started together and stopped together.
//!
//! Shutdown order, when the token is cancelled: the listener stops
//! accepting and `/readyz` turns 503; open connections finish their
//! in-flight request and close; the dispatcher stops claiming and releases
//! the leases it holds (so another replica runs those jobs at once instead
//! of after the lease); the webhook task gives back the deliveries it was
//! sending, likewise; the request log writes what it holds; then
//! [`serve`] returns.
//!
//! A connection's HTTP is served under the timeouts of `crate::timeouts`
//! (header read, keep-alive idle, whole request), and at shutdown one with
//! no request in flight is closed at once.
//!
//! Connections are accepted by `tandem_service::accept::Acceptor`: running
//! out of descriptors backs off and accepts again, it never ends the server.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tandem_service::accept::Acceptor;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::conn::{Prefixed, read_header};
use crate::db::{Db, random_hex};
use crate::dispatcher::{self, Signals, Wakers};
use crate::jobs::retention;
use crate::ratewarn::RateWarn;
use crate::reqlog;
use crate::server::{AppState, router};
use crate::wait;

/// Serves on an already bound `listener` until `shutdown` is cancelled,
/// then drains as described in the module doc.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    db: Db,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let signals = Signals {
        wakers: Wakers::new(&config),
        ..Signals::default()
    };
    let (log, log_writer) = reqlog::spawn(db.clone(), config.request_log_retention);
    let owner = format!("{}-{}", std::process::id(), random_hex(4));
    let dispatcher = tokio::spawn(dispatcher::run(
        db.clone(),
        Arc::clone(&config),
        owner.clone(),
        signals.clone(),
        shutdown.clone(),
    ));
    let life = config.lifecycle;
    let checker = tokio::spawn(wait::check(
        db.clone(),
        signals.waiters.clone(),
        life.wait_check_interval,
        shutdown.clone(),
    ));
    let policy = retention::Policy {
        retention: life.retention,
        input_retention: life.input_retention,
    };
    let pruner = tokio::spawn(retention::run(
        db.clone(),
        policy,
        life.prune_interval,
        shutdown.clone(),
    ));
    let webhooks = tokio::spawn(crate::webhook::run(
        db.clone(),
        Arc::new(config.webhooks.clone()),
        signals.webhooks.clone(),
        shutdown.clone(),
    ));
    let state = AppState::new(
        db,
        Arc::clone(&config),
        signals,
        log,
        metrics,
        shutdown.clone(),
    );
    let app = router(state);
    tracing::info!(addr = %listener.local_addr()?, owner, kinds = config.kinds.len(), "api listening");

    let conns = TaskTracker::new();
    let mut acceptor = Acceptor::new(listener, shutdown.clone(), "api");
    while let Some((stream, peer)) = acceptor.next().await {
        conns.spawn(connection(
            stream,
            peer,
            app.clone(),
            Arc::clone(&config),
            shutdown.clone(),
        ));
    }
    drop(acceptor);
    conns.close();
    conns.wait().await;
    let _ = dispatcher.await;
    let _ = checker.await;
    let _ = pruner.await;
    let _ = webhooks.await;
    drop(app);
    let _ = log_writer.await;
    tracing::info!("api stopped");
    Ok(())
}

/// The last untrusted-header warning.
static UNTRUSTED_WARNED: RateWarn = RateWarn::new();

/// One client connection: the PROXY header if configured, then HTTP/1.1
/// until the client is done, a timeout closes it or, on `shutdown`, after
/// its in-flight request.
async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    config: Arc<Config>,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let trusted = crate::cidr::any_contains(&config.proxy_protocol_from, peer.ip());
    let mode = (config.proxy_protocol, trusted);
    // Shutdown does not wait for a header (or the first bytes) either.
    let header = tokio::select! {
        h = read_header(&mut stream, peer, mode, config.proxy_header_timeout) => h,
        () = shutdown.cancelled() => return,
    };
    let (client, rest) = match header {
        Ok(r) => r,
        Err(e) => {
            metrics::counter!(crate::metrics::PROXY_REFUSED, "reason" => e.reason()).increment(1);
            // A forged header is worth an operator's eye (at most one warning
            // in 10 s, so a flood of them cannot flood the log; the counter
            // has them all); the rest is noise.
            if matches!(e, crate::conn::AcceptError::Untrusted) && UNTRUSTED_WARNED.now() {
                tracing::warn!(%peer, "connection closed: {e} (further ones in the next 10 s at debug)");
            } else {
                tracing::debug!(%peer, error = %e, "connection closed before HTTP");
            }
            return;
        }
    };
    let io = Prefixed::new(rest, stream);
    crate::timeouts::serve(io, client, app, config.http, shutdown).await;
}
