//! The accept loop every Tandem listener uses: the balancer's VIP
//! listeners, its admin socket and metrics endpoint, the API's and the
//! workers' HTTP listeners.
//!
//! Rules, after accept(2)'s ERRORS section and what HAProxy and hyper do:
//!
//! - An error that concerns only the connection being accepted
//!   (`ECONNABORTED`, `ECONNRESET`, `EINTR`, `EPROTO`, and `EPERM` from a
//!   firewall) is skipped at once: the next connection in the backlog is fine.
//! - Any other error (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, ...) means the
//!   process or the machine is out of something. The connection stays in the
//!   kernel's backlog, so accepting again at once would spin at full CPU on
//!   the same error. The loop sleeps instead, 10 ms first and doubling up to
//!   1 s, and goes back to 10 ms after the next successful accept. It never
//!   gives up: a balancer that stops listening because descriptors ran out
//!   for a moment would be an outage that outlives its cause.
//! - One warning when a streak of errors starts and one line when it ends
//!   (with the count), not one per failed call.
//! - Cancelling the stop token ends the loop at once, also in the middle of
//!   a backoff sleep; connections already accepted are the caller's.

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// First sleep after a resource error.
pub const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest sleep between two attempts while the error lasts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A listening socket: tokio's TCP and Unix listeners, or a scripted one in
/// tests.
pub trait Listen {
    /// The accepted connection.
    type Stream;
    /// The peer's address.
    type Peer;
    /// Polls for the next connection (tokio's `poll_accept`).
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Peer)>>;
}

impl Listen for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    type Peer = std::net::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Peer)>> {
        tokio::net::TcpListener::poll_accept(self, cx)
    }
}

impl Listen for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Peer = tokio::net::unix::SocketAddr;
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Self::Peer)>> {
        tokio::net::UnixListener::poll_accept(self, cx)
    }
}

/// Whether an accept error concerns only the connection being accepted
/// (skip it, accept the next at once) rather than the process or machine.
pub fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::PermissionDenied
    ) || e.raw_os_error() == Some(libc::EPROTO)
}

/// Accepts connections from one listener until a token is cancelled.
///
/// ```no_run
/// # async fn f(listener: tokio::net::TcpListener, stop: tokio_util::sync::CancellationToken) {
/// let mut acceptor = tandem_service::accept::Acceptor::new(listener, stop, "api");
/// while let Some((stream, peer)) = acceptor.next().await {
///     tokio::spawn(async move { /* serve `stream` from `peer` */ });
/// }
/// # }
/// ```
pub struct Acceptor<L> {
    listener: L,
    stop: CancellationToken,
    what: &'static str,
    delay: Duration,
    streak: u64,
}

impl<L: Listen> Acceptor<L> {
    /// `what` names the listener in log lines (`"api"`, `"admin"`, a VIP).
    pub fn new(listener: L, stop: CancellationToken, what: &'static str) -> Self {
        Acceptor {
            listener,
            stop,
            what,
            delay: BACKOFF_MIN,
            streak: 0,
        }
    }

    /// The listener (for its local address).
    pub fn listener(&self) -> &L {
        &self.listener
    }

    /// The next connection, or `None` once the stop token is cancelled.
    /// Cancellation wins over a connection that is ready at the same time.
    pub async fn next(&mut self) -> Option<(L::Stream, L::Peer)> {
        loop {
            let result = tokio::select! {
                biased;
                () = self.stop.cancelled() => return None,
                r = poll_fn(|cx| self.listener.poll_accept(cx)) => r,
            };
            match result {
                Ok(conn) => {
                    if self.streak > 0 {
                        tracing::info!(
                            listener = self.what,
                            errors = self.streak,
                            "accepting again after accept errors"
                        );
                    }
                    self.streak = 0;
                    self.delay = BACKOFF_MIN;
                    return Some(conn);
                }
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(listener = self.what, error = %e, "accept: connection lost before it was accepted");
                }
                Err(e) => {
                    if self.streak == 0 {
                        tracing::warn!(
                            listener = self.what,
                            error = %e,
                            "accept failed; retrying with backoff (up to {BACKOFF_MAX:?}) until it succeeds"
                        );
                    }
                    self.streak += 1;
                    let delay = self.delay;
                    self.delay = (self.delay * 2).min(BACKOFF_MAX);
                    tokio::select! {
                        biased;
                        () = self.stop.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use tokio::time::Instant;

    /// A listener that answers from a script, one entry per poll.
    struct Scripted(RefCell<VecDeque<io::Result<u32>>>);

    impl Scripted {
        fn new(items: impl IntoIterator<Item = io::Result<u32>>) -> Self {
            Scripted(RefCell::new(items.into_iter().collect()))
        }
    }

    impl Listen for Scripted {
        type Stream = u32;
        type Peer = ();
        fn poll_accept(&self, _: &mut Context<'_>) -> Poll<io::Result<(u32, ())>> {
            match self.0.borrow_mut().pop_front() {
                Some(r) => Poll::Ready(r.map(|n| (n, ()))),
                None => Poll::Pending,
            }
        }
    }

    fn os(code: i32) -> io::Result<u32> {
        Err(io::Error::from_raw_os_error(code))
    }

    use libc::{ECONNABORTED, EMFILE};

    #[tokio::test(start_paused = true)]
    async fn resource_errors_back_off_doubling_to_the_cap_and_reset_after_success() {
        // 9 EMFILEs: 10+20+40+80+160+320+640+1000+1000 ms, then a connection;
        // then one more EMFILE sleeps the minimum again.
        let mut script: Vec<_> = (0..9).map(|_| os(EMFILE)).collect();
        script.push(Ok(1));
        script.push(os(EMFILE));
        script.push(Ok(2));
        let mut a = Acceptor::new(Scripted::new(script), CancellationToken::new(), "test");
        let t0 = Instant::now();
        assert_eq!(a.next().await.map(|c| c.0), Some(1));
        assert_eq!(t0.elapsed(), Duration::from_millis(3270));
        let t1 = Instant::now();
        assert_eq!(a.next().await.map(|c| c.0), Some(2));
        assert_eq!(t1.elapsed(), BACKOFF_MIN);
    }

    #[tokio::test(start_paused = true)]
    async fn per_connection_errors_are_skipped_without_sleeping() {
        let script = [os(ECONNABORTED), os(libc::EPROTO), Ok(7)];
        let mut a = Acceptor::new(Scripted::new(script), CancellationToken::new(), "test");
        let t0 = Instant::now();
        assert_eq!(a.next().await.map(|c| c.0), Some(7));
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_a_backoff_sleep_at_once() {
        let stop = CancellationToken::new();
        let script: Vec<_> = (0..20).map(|_| os(EMFILE)).collect();
        let mut a = Acceptor::new(Scripted::new(script), stop.clone(), "test");
        let t0 = Instant::now();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            stop.cancel();
        });
        assert!(a.next().await.is_none());
        assert_eq!(t0.elapsed(), Duration::from_millis(1500));
        canceller.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_wins_over_a_ready_connection() {
        let stop = CancellationToken::new();
        stop.cancel();
        let mut a = Acceptor::new(Scripted::new([Ok(1)]), stop, "test");
        assert!(a.next().await.is_none());
    }

    #[tokio::test]
    async fn accepts_real_tcp_and_unix_connections() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut a = Acceptor::new(tcp, CancellationToken::new(), "tcp");
        let client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, peer) = a.next().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());

        let dir = std::env::temp_dir().join(format!("tandem-accept-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = tokio::net::UnixListener::bind(&dir).unwrap();
        let mut a = Acceptor::new(unix, CancellationToken::new(), "unix");
        let _client = tokio::net::UnixStream::connect(&dir).await.unwrap();
        assert!(a.next().await.is_some());
        std::fs::remove_file(&dir).unwrap();
    }
}
