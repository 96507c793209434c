//! The VIP listeners and their accept loops: where a connection's path
//! begins.
//!
//! One task per listening address runs [`tandem_service::accept::Acceptor`]
//! (backoff when descriptors run out, skip errors that concern only the
//! connection being accepted, stop at once when told) and hands every
//! accepted client to [`super::conn::handle`] with the service the *current*
//! snapshot maps the address to. The set of listeners is changed by reload
//! ([`crate::runtime`]): an address kept across a reload keeps its socket and
//! its task, so no SYN is refused while the config changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tandem_service::accept::Acceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::conn::{self, ConnCtx};
use crate::runtime::snapshot::Snapshot;

/// What every accept loop hands its connections to.
#[derive(Clone)]
pub struct Dispatch {
    /// The snapshot in force; each connection takes the one current when it
    /// was accepted.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Open connections, so shutdown can wait for them.
    pub conns: TaskTracker,
    /// Use splice(2) for forwarding (false: plain copy).
    pub splice: bool,
    /// Cancelled when the shutdown grace period is over: open connections close.
    pub hard_stop: CancellationToken,
}

struct Handle {
    stop: CancellationToken,
    /// The address actually bound (differs from the config's for port 0).
    local: SocketAddr,
}

/// The listening addresses and their accept tasks.
pub struct Listeners {
    open: Mutex<HashMap<SocketAddr, Handle>>,
    accepts: TaskTracker,
    /// Cancelled when shutdown begins: every listener stops accepting.
    stop_accepting: CancellationToken,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            open: Mutex::new(HashMap::new()),
            accepts: TaskTracker::new(),
            stop_accepting: CancellationToken::new(),
        }
    }
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Handle>> {
        self.open.lock().expect("listeners lock poisoned")
    }

    /// Starts accepting on `listener`, bound for the config address `addr`.
    pub fn spawn(&self, addr: SocketAddr, listener: TcpListener, d: Dispatch) {
        let stop = self.stop_accepting.child_token();
        let local = listener.local_addr().unwrap_or(addr);
        self.lock().insert(
            addr,
            Handle {
                stop: stop.clone(),
                local,
            },
        );
        let span = tracing::info_span!("listener", listen = %addr);
        self.accepts
            .spawn(accept_loop(addr, listener, stop, d).instrument(span));
    }

    /// The config addresses listened on now.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.lock().keys().copied().collect()
    }

    /// The address actually bound for the config address `addr`.
    pub fn local(&self, addr: &SocketAddr) -> Option<SocketAddr> {
        self.lock().get(addr).map(|h| h.local)
    }

    /// Stops the listeners whose address `keep` rejects; returns how many.
    /// Their connections are not touched.
    pub fn retain(&self, keep: impl Fn(&SocketAddr) -> bool) -> usize {
        let mut removed = 0;
        self.lock().retain(|addr, h| {
            let k = keep(addr);
            if !k {
                h.stop.cancel();
                removed += 1;
            }
            k
        });
        removed
    }

    /// Stops every listener and waits until no accept loop runs.
    pub async fn stop(&self) {
        self.stop_accepting.cancel();
        self.accepts.close();
        self.accepts.wait().await;
    }
}

async fn accept_loop(
    addr: SocketAddr,
    listener: TcpListener,
    stop: CancellationToken,
    d: Dispatch,
) {
    tracing::info!(listen = %addr, "listening");
    let ctx = Arc::new(ConnCtx {
        splice: d.splice,
        hard_stop: d.hard_stop.clone(),
        log_level: d.snapshot.load().config.node.connection_log,
    });
    let mut acceptor = Acceptor::new(listener, stop, "service");
    while let Some((stream, peer)) = acceptor.next().await {
        let snap = d.snapshot.load();
        let Some(svc) = snap.service_for(&addr) else {
            // Removed by a reload racing with this accept.
            continue;
        };
        d.conns
            .spawn(conn::handle(stream, peer, svc.clone(), ctx.clone()));
    }
    tracing::info!(listen = %addr, "stopped listening");
}
