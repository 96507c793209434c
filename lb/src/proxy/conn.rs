//! One client connection: admit → pick → connect (retrying) → PROXY header →
//! forward → log.
//!
//! The upstream connection is opened as soon as the client is accepted (no
//! waiting for client bytes), as HAProxy does in `mode tcp`, so servers that
//! speak first work and connect latency overlaps the client's first send.
//!
//! Syscalls per connection, and why no more (tcp(7), connect(2), epoll(7)):
//! - `TCP_NODELAY` on the client socket is inherited from the listener
//!   (Linux copies the listener's `nonagle` into every accepted socket), so
//!   it is set once per listener ([`super::listener`]), not per client.
//! - The backend socket is made by socket(2) with `SOCK_NONBLOCK |
//!   SOCK_CLOEXEC` (no fcntl), gets `TCP_NODELAY` before connect(2), and its
//!   connect is complete when epoll reports it writable: epoll reports no
//!   `EPOLLOUT` while a socket is in SYN-SENT, and a failed connect raises
//!   `EPOLLERR`. So `SO_ERROR` is read (getsockopt) only when the readiness
//!   carries an error or a hang-up, never after a successful connect.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::forward::{ByteMeter, ForwardOpts, Outcome, forward};
use super::proxy_protocol;
use super::sticky::Sticky;
use crate::config::{AllDown, ProxyProtocol};
use crate::sched::{BackendView, Pick};

use crate::runtime::passive::ConnectFailure;
use crate::runtime::snapshot::{BackendRt, ServiceRt};
use crate::runtime::state::BackendState;

/// How a connection ended, for the per-connection log line.
#[derive(Debug)]
enum End {
    Forwarded(Outcome),
    /// Refused at accept: the service was at max_connections.
    MaxConns,
    /// Every attempt failed; the last failure is the reason.
    ConnectFailed(ConnectFailure),
    /// No backend had weight > 0 and room.
    NoBackend,
    /// Every backend is down and the policy is `refuse`.
    AllDown,
    /// Writing the PROXY header failed.
    HeaderFailed,
    /// Closed by shutdown after the grace period.
    Shutdown,
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Forwarded(o) => o.end.as_str(),
            End::MaxConns => "max-connections",
            End::ConnectFailed(f) => f.as_str(),
            End::NoBackend => "no-backend",
            End::AllDown => "all-down",
            End::HeaderFailed => "server-error",
            End::Shutdown => "shutdown",
        }
    }
}

/// Per-connection inputs that do not come from the snapshot.
pub struct ConnCtx {
    pub splice: bool,
    pub hard_stop: CancellationToken,
    pub log_level: Option<tracing::Level>,
}

struct Meter<'a>(&'a BackendState);

impl ByteMeter for Meter<'_> {
    fn to_backend(&self, n: u64) {
        self.0.bytes_to_backend.add(n);
    }
    fn to_client(&self, n: u64) {
        self.0.bytes_to_client.add(n);
    }
}

/// Releases a backend slot when the connection ends, however it ends.
struct Slot<'a>(&'a BackendState);
impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

pub async fn handle(client: TcpStream, peer: SocketAddr, svc: Arc<ServiceRt>, ctx: Arc<ConnCtx>) {
    let started = Instant::now();
    if !svc.state.try_admit(svc.cfg.max_connections) {
        // Refuse at once with a reset so the client fails fast instead of
        // waiting in a queue we do not have.
        reset(&client);
        drop(client);
        log(&ctx, &svc, peer, None, &End::MaxConns, started, 0);
        return;
    }
    let (backend, end, attempts) = run(client, peer, &svc, &ctx).await;
    svc.state.release();
    log(&ctx, &svc, peer, backend, &end, started, attempts);
}

async fn run<'s>(
    client: TcpStream,
    peer: SocketAddr,
    svc: &'s ServiceRt,
    ctx: &ConnCtx,
) -> (Option<&'s BackendRt>, End, u32) {
    // The all-down policy (issue 3): refuse, spread over all anyway (panic
    // mode), or send to the sorry server.
    let mut panic = false;
    if svc.all_down() {
        match (&svc.cfg.all_down, &svc.sorry) {
            (AllDown::All, _) => panic = true,
            (AllDown::Sorry(_), Some(sorry)) => {
                return (
                    Some(sorry),
                    to_sorry(client, peer, sorry, svc, ctx).await,
                    1,
                );
            }
            _ => {
                no_backend(svc, &client);
                return (None, End::AllDown, 0);
            }
        }
    }
    let mut sticky = Sticky::start(svc, peer, panic, |i| has_room(&svc.backends[i]));
    let mut tried: u64 = 0; // bitmask of backends already tried (first 64)
    let mut tried_more: Vec<usize> = Vec::new(); // beyond 64 backends
    let mut last_failure: Option<(usize, ConnectFailure)> = None;
    let mut attempts = 0u32;
    let connected = loop {
        if attempts > svc.cfg.retries {
            break None;
        }
        let first = sticky.as_mut().and_then(|s| s.first.take());
        let Some(i) = first.or_else(|| choose(svc, peer, tried, &tried_more, panic)) else {
            break None;
        };
        if i < 64 {
            tried |= 1u64 << i;
        } else {
            tried_more.push(i);
        }
        let b = &svc.backends[i];
        attempts += 1;
        if attempts > 1
            && let Some((j, _)) = last_failure
        {
            // This attempt is a retry caused by the backend that failed last.
            svc.backends[j].state.retries.add(1);
        }
        match connect_to(b, svc).await {
            Ok(stream) => {
                if let Some(s) = sticky.as_mut() {
                    s.connected(i, b.cfg.address);
                }
                break Some((b, stream));
            }
            Err(None) => {
                // Lost a race for the backend's last slot: try another,
                // without counting it as a connect attempt.
                attempts -= 1;
            }
            Err(Some(why)) => last_failure = Some((i, why)),
        }
    };
    let Some((b, upstream)) = connected else {
        no_backend(svc, &client);
        return match last_failure {
            Some((j, why)) => (Some(&svc.backends[j]), End::ConnectFailed(why), attempts),
            None => (None, End::NoBackend, attempts),
        };
    };
    let end = proxy(client, upstream, peer, b, svc, ctx).await;
    // The entry is held until here: its timer starts when this closes.
    drop(sticky);
    (Some(b), end, attempts)
}

/// Every backend is down and the policy is the sorry server: one attempt
/// there, no retry, no persistence.
async fn to_sorry(
    client: TcpStream,
    peer: SocketAddr,
    sorry: &BackendRt,
    svc: &ServiceRt,
    ctx: &ConnCtx,
) -> End {
    match connect_to(sorry, svc).await {
        Ok(upstream) => proxy(client, upstream, peer, sorry, svc, ctx).await,
        Err(why) => {
            no_backend(svc, &client);
            why.map_or(End::NoBackend, End::ConnectFailed)
        }
    }
}

/// Counts a client that got no backend and resets it.
fn no_backend(svc: &ServiceRt, client: &TcpStream) {
    svc.state.no_backend.add(1);
    reset(client);
}

/// Reserves a slot on `b` and connects. `Err(None)`: no slot (max_connections
/// reached meanwhile); `Err(Some(why))`: the connect failed (counted and
/// reported to passive health detection).
async fn connect_to(b: &BackendRt, svc: &ServiceRt) -> Result<TcpStream, Option<ConnectFailure>> {
    if !b.state.try_reserve(b.cfg.max_connections) {
        return Err(None);
    }
    match connect(b.cfg.address, svc.cfg.connect_timeout).await {
        Ok(stream) => {
            b.health.report(true);
            b.state.total.add(1);
            Ok(stream)
        }
        Err(why) => {
            b.state.release();
            b.state.connect_failures.add(1);
            b.health.report(false);
            tracing::debug!(service = %svc.cfg.name, backend = %b.cfg.name, error = %why, "backend connect failed");
            Err(Some(why))
        }
    }
}

/// Sends the PROXY header if configured, then moves bytes until the
/// connection ends. Owns the backend slot reserved by [`connect_to`].
async fn proxy(
    client: TcpStream,
    mut upstream: TcpStream,
    peer: SocketAddr,
    b: &BackendRt,
    svc: &ServiceRt,
    ctx: &ConnCtx,
) -> End {
    let _slot = Slot(&b.state);
    let header = match svc.cfg.proxy_protocol {
        ProxyProtocol::Off => None,
        ProxyProtocol::V1 => Some(proxy_protocol::encode_v1(
            peer,
            local_or(&client, svc.cfg.listen),
        )),
        ProxyProtocol::V2 => Some(proxy_protocol::encode_v2(
            peer,
            local_or(&client, svc.cfg.listen),
        )),
    };
    if let Some(h) = header
        && upstream.write_all(&h).await.is_err()
    {
        return End::HeaderFailed;
    }
    let opts = ForwardOpts {
        idle_timeout: svc.cfg.idle_timeout,
        splice: ctx.splice,
    };
    let meter = Meter(&b.state);
    tokio::select! {
        o = forward(client, upstream, &opts, &meter) => End::Forwarded(o),
        _ = ctx.hard_stop.cancelled() => End::Shutdown,
    }
}

thread_local! {
    /// The backends' views for one pick, kept per thread so that a pick
    /// allocates nothing (it is filled and read within [`choose`], which
    /// never awaits, so no two picks of a thread share it).
    static VIEWS: std::cell::RefCell<Vec<BackendView>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Asks the scheduler for a backend not yet tried for this client and with
/// room under its max_connections. Synchronous, so nothing borrowed here
/// lives across an await.
fn choose(
    svc: &ServiceRt,
    peer: SocketAddr,
    tried: u64,
    tried_more: &[usize],
    panic: bool,
) -> Option<usize> {
    VIEWS.with_borrow_mut(|views| pick(svc, views, peer, tried, tried_more, panic))
}

fn pick(
    svc: &ServiceRt,
    views: &mut Vec<BackendView>,
    peer: SocketAddr,
    tried: u64,
    tried_more: &[usize],
    panic: bool,
) -> Option<usize> {
    views.clear();
    views.extend(svc.backends.iter().map(|b| b.view(panic)));
    let is_tried = |i: usize| {
        if i < 64 {
            tried & (1u64 << i) != 0
        } else {
            tried_more.contains(&i)
        }
    };
    let eligible = |i: usize| !is_tried(i) && has_room(&svc.backends[i]);
    let pick = Pick {
        client_ip: peer.ip(),
        eligible: &eligible,
    };
    svc.scheduler.pick(views, &pick)
}

/// Closes with a reset (SO_LINGER 0): the client learns at once that it was
/// refused. With a zero linger close(2) does not block.
fn reset(s: &TcpStream) {
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

fn has_room(b: &BackendRt) -> bool {
    match b.cfg.max_connections {
        Some(max) => b.state.active.get() < max,
        None => true,
    }
}

fn local_or(s: &TcpStream, fallback: SocketAddr) -> SocketAddr {
    s.local_addr().unwrap_or(fallback)
}

/// Connects to `addr` within `timeout` (see the module doc for the
/// syscalls this makes).
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectFailure> {
    let failed = |e: io::Error| ConnectFailure::from_io(&e);
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(failed)?;
    // Latency over batching, as on the client side; failure only costs that.
    let _ = sock.set_tcp_nodelay(true);
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(failed(e)),
    }
    let stream = TcpStream::from_std(sock.into()).map_err(failed)?;
    let ready = stream.ready(Interest::WRITABLE | Interest::ERROR);
    match tokio::time::timeout(timeout, ready).await {
        Err(_) => Err(ConnectFailure::Timeout(timeout)),
        Ok(Err(e)) => Err(failed(e)),
        Ok(Ok(r)) if r.is_error() || r.is_write_closed() => Err(match stream.take_error() {
            Ok(Some(e)) | Err(e) => failed(e),
            // A hang-up with no error recorded: the connection is gone.
            Ok(None) => ConnectFailure::Other(io::ErrorKind::NotConnected),
        }),
        Ok(Ok(_)) => Ok(stream),
    }
}

/// An address, or `-` when there is none (tcplog style).
struct OrDash(Option<SocketAddr>);

impl std::fmt::Display for OrDash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// One line per closed connection, like HAProxy's tcplog.
fn log(
    ctx: &ConnCtx,
    svc: &ServiceRt,
    client: SocketAddr,
    backend: Option<&BackendRt>,
    end: &End,
    started: Instant,
    attempts: u32,
) {
    let Some(level) = ctx.log_level else { return };
    let (to_backend, to_client) = match end {
        End::Forwarded(o) => (o.to_backend, o.to_client),
        _ => (0, 0),
    };
    let backend_name = backend.map(|b| b.cfg.name.as_str()).unwrap_or("-");
    // Formatted only if the event is enabled: no allocation per connection
    // when the configured level is filtered out.
    let backend_addr = OrDash(backend.map(|b| b.cfg.address));
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let reason = end.reason();
    macro_rules! at {
        ($lvl:expr) => {
            tracing::event!(
                target: "tandem::connection",
                $lvl,
                service = %svc.cfg.name,
                %client,
                backend = backend_name,
                backend_addr = %backend_addr,
                bytes_to_backend = to_backend,
                bytes_to_client = to_client,
                duration_ms = format_args!("{duration_ms:.1}"),
                attempts,
                termination = reason,
                "connection closed"
            )
        };
    }
    match level {
        tracing::Level::ERROR => at!(tracing::Level::ERROR),
        tracing::Level::WARN => at!(tracing::Level::WARN),
        tracing::Level::INFO => at!(tracing::Level::INFO),
        tracing::Level::DEBUG => at!(tracing::Level::DEBUG),
        tracing::Level::TRACE => at!(tracing::Level::TRACE),
    }
}
