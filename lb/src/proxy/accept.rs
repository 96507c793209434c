//! The VIP listeners and their accept loops: where a connection's path
//! begins.
//!
//! Every listening address has one socket per data-plane worker (a
//! `SO_REUSEPORT` group, see [`super::listener`] and [`super::workers`]), and
//! each socket its accept task on its worker's runtime, running
//! [`tandem_service::accept::Acceptor`] (backoff when descriptors run out,
//! skip errors that concern only the connection being accepted, stop at once
//! when told). It hands every accepted client to [`super::conn::handle`],
//! on the same worker, with the service the *current* snapshot maps the
//! address to. The set of listeners is changed by reload
//! ([`crate::runtime`]): an address kept across a reload keeps its sockets
//! and their tasks, so no SYN is refused while the config changes, and a
//! group is only ever stopped whole (a socket closed out of a group would
//! reset the connections queued on it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tandem_service::accept::Acceptor;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::conn::{self, ConnCtx};
use super::workers::Accepted;
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
    /// Accept counts, per worker.
    pub accepted: Arc<[Accepted]>,
}

/// One address's sockets, as seen from here.
struct Group {
    /// Stops the accept task of every socket of the group.
    stop: CancellationToken,
    /// The address actually bound (differs from the config's for port 0).
    local: SocketAddr,
}

/// One listening socket of a group, registered with its worker's runtime
/// (see `runtime::Balancer`), and that runtime.
pub type Bound = (Handle, TcpListener);

/// The listening addresses and their accept tasks.
pub struct Listeners {
    open: Mutex<HashMap<SocketAddr, Group>>,
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Group>> {
        self.open.lock().expect("listeners lock poisoned")
    }

    /// Starts accepting on every socket of `group`, bound for the config
    /// address `addr`, each on its own worker's runtime.
    pub fn spawn(&self, addr: SocketAddr, group: Vec<Bound>, d: Dispatch) {
        let stop = self.stop_accepting.child_token();
        let local = group
            .first()
            .and_then(|(_, l)| l.local_addr().ok())
            .unwrap_or(addr);
        self.lock().insert(
            addr,
            Group {
                stop: stop.clone(),
                local,
            },
        );
        for (worker, (rt, listener)) in group.into_iter().enumerate() {
            let span = tracing::info_span!("listener", listen = %addr, worker);
            let task = accept_loop(addr, listener, stop.clone(), d.clone(), worker);
            self.accepts.spawn_on(task.instrument(span), &rt);
        }
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
    worker: usize,
) {
    tracing::info!(listen = %addr, "listening");
    let accepted = &d.accepted[worker];
    let ctx = Arc::new(ConnCtx {
        splice: d.splice,
        // A child per accept task: every connection waits on it, and the
        // waiters of one token share a lock, so each worker gets its own.
        hard_stop: d.hard_stop.child_token(),
        log_level: d.snapshot.load().config.node.connection_log,
    });
    let mut acceptor = Acceptor::new(listener, stop, "service");
    while let Some((stream, peer)) = acceptor.next().await {
        accepted.add();
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
