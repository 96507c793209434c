//! One client connection: HTTP/1.1 served by hyper, with the two timeouts
//! that keep a slow or silent client from holding a socket (and graceful
//! shutdown) open for ever.
//!
//! - `header_read_timeout`: from the first byte of a request to the end of
//!   its head. A client that sends half a request line and stalls
//!   (slowloris) is closed then.
//! - `idle_timeout`: no request in flight and no byte moving either way: a
//!   kept-alive connection waiting for its next request, or a client that
//!   stopped reading its answer.
//!
//! While a request is in flight (from its complete head until the handler
//! returns its answer) neither applies: the handler bounds itself (the
//! kind's timeout covers both the body upload and the run).
//!
//! hyper's own `header_read_timeout` is not used: its clock starts when the
//! connection starts waiting for a head, so on a kept-alive connection it
//! also cuts the idle wait, and the two limits could not differ. Instead a
//! [`Watched`] stream notes every read and write, a counting service notes
//! when a request starts and ends, and [`Activity::deadline`] (pure, on
//! those facts) says when the connection is due to close.
//!
//! On shutdown (the `draining` token) hyper closes an idle kept-alive
//! connection at once and a busy one after its answer, but it waits for a
//! first request whose head has started to arrive. No answer can be lost on
//! such a connection (none was asked for yet), so it is closed at once.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The two connection timeouts, from `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// First byte of a request to the end of its head.
    pub header_read: Duration,
    /// No request in flight and no byte moving.
    pub idle: Duration,
}

/// `u64::MAX` in a millisecond field: not set.
const UNSET: u64 = u64::MAX;

/// What one connection has been doing, in milliseconds since it opened.
/// Written by the stream and the service, read by the connection task.
#[derive(Debug)]
struct Activity {
    /// When the connection was accepted: the zero of every field below.
    opened: Instant,
    /// Requests whose head is read and whose answer is not yet returned.
    in_flight: AtomicU32,
    /// Requests started on this connection, ever.
    started: AtomicU32,
    /// Last read or write that moved at least one byte.
    last_io_ms: AtomicU64,
    /// First byte of a head not yet complete, or [`UNSET`].
    head_since_ms: AtomicU64,
    /// Woken when a deadline may have moved earlier (a request ended, a
    /// head began), so the connection task re-reads it.
    changed: Notify,
}

impl Activity {
    fn new(opened: Instant) -> Self {
        Activity {
            opened,
            in_flight: AtomicU32::new(0),
            started: AtomicU32::new(0),
            last_io_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(UNSET),
            changed: Notify::new(),
        }
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.opened).as_millis()).unwrap_or(UNSET - 1)
    }

    /// `n` bytes read at `now`. Bytes with no request in flight begin a
    /// head (if none has begun); a complete head ends it in [`Self::start`].
    fn read(&self, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        let ms = self.ms(now);
        self.last_io_ms.store(ms, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0
            && self
                .head_since_ms
                .compare_exchange(UNSET, ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn wrote(&self, n: usize, now: Instant) {
        if n > 0 {
            self.last_io_ms.store(self.ms(now), Ordering::Relaxed);
        }
    }

    /// A request's head is complete and its handler starts.
    fn start(&self) {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since_ms.store(UNSET, Ordering::Release);
    }

    /// A handler returned (or was dropped) at `now`.
    fn end(&self, now: Instant) {
        self.last_io_ms.store(self.ms(now), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// When the connection is due to close, or `None` while a request is
    /// in flight. The rule of the module doc, on the recorded facts.
    fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let at = |ms: u64, d: Duration| self.opened + Duration::from_millis(ms) + d;
        Some(match self.head_since_ms.load(Ordering::Acquire) {
            UNSET => at(self.last_io_ms.load(Ordering::Relaxed), t.idle),
            since => at(since, t.header_read),
        })
    }

    /// A head has begun and no request was ever started: closing loses no
    /// answer.
    fn only_a_first_partial_head(&self) -> bool {
        self.started.load(Ordering::Relaxed) == 0
            && self.head_since_ms.load(Ordering::Acquire) != UNSET
    }
}

/// Serves one connection until the client is done, a timeout closes it,
/// or, once `draining`, its in-flight request is answered (at once when it
/// is idle or has only part of a first head).
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    draining: CancellationToken,
    timeouts: Timeouts,
) {
    // Answers are small and written whole; do not wait for an ACK to send them.
    let _ = stream.set_nodelay(true);
    let act = Arc::new(Activity::new(Instant::now()));
    let io = Watched {
        inner: stream,
        act: Arc::clone(&act),
    };
    let service = Counted {
        inner: TowerToHyperService::new(app),
        act: Arc::clone(&act),
    };
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut told = false;
    let result = loop {
        // Registered before the deadline is read, so a change in between
        // still wakes this loop.
        let changed = act.changed.notified();
        let deadline = act.deadline(&timeouts);
        tokio::select! {
            biased;
            r = conn.as_mut() => break r,
            () = draining.cancelled(), if !told => {
                told = true;
                conn.as_mut().graceful_shutdown();
                if act.only_a_first_partial_head() {
                    tracing::debug!(%peer, "shutdown: closing a connection with a partial first request");
                    return;
                }
            }
            () = changed => {}
            () = sleep_until(deadline) => {
                if act.deadline(&timeouts).is_some_and(|d| d <= Instant::now()) {
                    let what = if act.head_since_ms.load(Ordering::Acquire) == UNSET {
                        "idle"
                    } else {
                        "header_read"
                    };
                    crate::metrics::connection_timeout(what);
                    tracing::debug!(%peer, timeout = what, "closing a connection that timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Sleeps until `deadline`, or for ever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The TCP stream, noting in [`Activity`] every read and write that moves
/// bytes.
struct Watched {
    inner: TcpStream,
    act: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if poll.is_ready() {
            self.act.read(buf.filled().len() - before, Instant::now());
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.act.wrote(n, Instant::now());
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            self.act.wrote(n, Instant::now());
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The app, noting in [`Activity`] when each request starts and ends.
struct Counted {
    inner: TowerToHyperService<Router>,
    act: Arc<Activity>,
}

/// Ends its request in [`Activity`] when dropped: when the handler
/// returns, or when hyper drops the handler because the connection ended.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end(Instant::now());
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for Counted {
    type Response = <TowerToHyperService<Router> as hyper::service::Service<
        hyper::Request<Incoming>,
    >>::Response;
    type Error =
        <TowerToHyperService<Router> as hyper::service::Service<hyper::Request<Incoming>>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.act.start();
        let guard = InFlight(Arc::clone(&self.act));
        let answer = self.inner.call(req);
        Box::pin(async move {
            let r = answer.await;
            drop(guard);
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(30),
    };

    fn at(a: &Activity, secs: u64) -> Instant {
        a.opened + Duration::from_secs(secs)
    }

    #[test]
    fn a_new_connection_is_idle_until_its_first_byte() {
        let a = Activity::new(Instant::now());
        assert_eq!(a.deadline(&T), Some(at(&a, 30)));
        a.read(1, at(&a, 5));
        assert_eq!(a.deadline(&T), Some(at(&a, 15)), "header clock from byte 1");
        a.read(1, at(&a, 8));
        assert_eq!(
            a.deadline(&T),
            Some(at(&a, 15)),
            "more head bytes do not extend it"
        );
        assert!(a.only_a_first_partial_head());
    }

    #[test]
    fn no_deadline_in_flight_then_idle_from_the_last_byte() {
        let a = Activity::new(Instant::now());
        a.read(100, at(&a, 1));
        a.start();
        assert_eq!(a.deadline(&T), None);
        a.read(100, at(&a, 4)); // body bytes
        assert_eq!(a.deadline(&T), None);
        a.end(at(&a, 6));
        a.wrote(100, at(&a, 7));
        assert_eq!(a.deadline(&T), Some(at(&a, 37)));
        assert!(!a.only_a_first_partial_head());
        a.read(1, at(&a, 50));
        assert_eq!(a.deadline(&T), Some(at(&a, 60)), "the next head's clock");
        assert!(!a.only_a_first_partial_head(), "an answer was given here");
    }
}
