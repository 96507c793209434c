//! Probes: one check of one backend, bounded by a timeout.
//!
//! - [`Probe::Tcp`]: a TCP connect; success means something accepts on the port
//!   (the kernel completes the handshake for a listening socket even before the
//!   application calls `accept`, so this proves a listener, not a working one).
//! - [`Probe::Http`]: an HTTP/1.1 GET written by hand ([`http`]).
//! - [`Probe::Exec`]: a command's exit status, in its own process group that is
//!   killed at the timeout ([`exec`]).
//!
//! Every run yields a [`ProbeOutcome`]: success or not, a short human detail
//! that becomes the transition reason ("HTTP 503", "connection refused",
//! "timeout after 500ms", "exit 3"), an [`Outcome`] kind for metric labels (so
//! labels never come from parsing a message), and how long it took.

pub mod exec;
pub mod http;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::TcpStream;

pub use exec::ExecProbe;
pub use http::{HttpProbe, StatusRange};

/// How to check one backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Connect to `addr`, then close.
    Tcp {
        addr: SocketAddr,
    },
    Http(HttpProbe),
    Exec(ExecProbe),
}

/// A probe definition that cannot be run as given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProbeError {
    #[error(
        "http path must start with '/' and contain no whitespace or control characters, got {0:?}"
    )]
    BadPath(String),
    #[error("http host must contain no whitespace or control characters, got {0:?}")]
    BadHost(String),
    #[error("http max_response_bytes must be at least 64, got {0}")]
    TooSmallResponseBound(usize),
    #[error("expect_status must be a range within 100..=599 with low <= high, got {0}..={1}")]
    BadStatusRange(u16, u16),
    #[error("expect_status must list at least one status or range")]
    NoExpectedStatus,
    #[error("exec program must not be empty")]
    EmptyProgram,
}

/// What kind of result a probe had; the `outcome` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The backend passed.
    Ok,
    /// TCP connect refused (RST): nothing listens.
    Refused,
    /// The probe did not finish within its timeout.
    Timeout,
    /// Connect failed otherwise (unreachable, no route, resources).
    ConnectError,
    /// Reading or writing failed after connecting (e.g. reset by peer).
    IoError,
    /// HTTP status outside the expected range.
    BadStatus,
    /// HTTP body did not contain the expected substring.
    BadBody,
    /// Not an HTTP/1.x response.
    BadResponse,
    /// The command exited non-zero or was killed by a signal.
    ExitFailure,
    /// The command could not be started.
    SpawnError,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Timeout => "timeout",
            Outcome::ConnectError => "connect_error",
            Outcome::IoError => "io_error",
            Outcome::BadStatus => "bad_status",
            Outcome::BadBody => "bad_body",
            Outcome::BadResponse => "bad_response",
            Outcome::ExitFailure => "exit_failure",
            Outcome::SpawnError => "spawn_error",
        }
    }
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// True exactly when `outcome` is [`Outcome::Ok`].
    pub ok: bool,
    pub outcome: Outcome,
    /// Short human text, used as the transition reason.
    pub detail: String,
    /// Wall time the probe took (at most about the timeout).
    pub duration: Duration,
}

impl Probe {
    /// The `kind` metric label and config spelling.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp { .. } => "tcp",
            Probe::Http(_) => "http",
            Probe::Exec(_) => "exec",
        }
    }

    /// Checks the definition once, at config time.
    pub fn validate(&self) -> Result<(), ProbeError> {
        match self {
            Probe::Tcp { .. } => Ok(()),
            Probe::Http(h) => h.validate(),
            Probe::Exec(e) => e.validate(),
        }
    }

    /// Runs the probe once, never for much longer than `timeout`.
    pub async fn run(&self, timeout: Duration) -> ProbeOutcome {
        let start = Instant::now();
        let (outcome, detail) = match self {
            Probe::Tcp { addr } => bounded(timeout, tcp(*addr)).await,
            Probe::Http(h) => bounded(timeout, h.exchange()).await,
            // Exec handles its own timeout: it must kill the process group.
            Probe::Exec(e) => e.run(timeout).await,
        };
        ProbeOutcome {
            ok: outcome == Outcome::Ok,
            outcome,
            detail,
            duration: start.elapsed(),
        }
    }
}

/// Runs `f` under `timeout`; dropping it on expiry closes any socket it holds.
async fn bounded(
    timeout: Duration,
    f: impl Future<Output = (Outcome, String)>,
) -> (Outcome, String) {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => (Outcome::Timeout, timeout_detail(timeout)),
    }
}

/// "timeout after 500ms": the wording the reason and logs use.
pub(crate) fn timeout_detail(timeout: Duration) -> String {
    format!("timeout after {}ms", timeout.as_millis())
}

/// Connects to `addr`, classifying a failure.
pub(crate) async fn connect(addr: SocketAddr) -> Result<TcpStream, (Outcome, String)> {
    TcpStream::connect(addr)
        .await
        .map_err(|e| connect_error(&e))
}

fn connect_error(e: &io::Error) -> (Outcome, String) {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => (Outcome::Refused, "connection refused".to_string()),
        _ => (Outcome::ConnectError, format!("connect: {e}")),
    }
}

async fn tcp(addr: SocketAddr) -> (Outcome, String) {
    match connect(addr).await {
        // Dropping the stream closes it at once; the backend sees a connect
        // and an EOF, as with HAProxy's plain `check`.
        Ok(_) => (Outcome::Ok, "connected".to_string()),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[tokio::test]
    async fn tcp_connects_to_a_listener() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Probe::Tcp {
            addr: l.local_addr().unwrap(),
        };
        let out = p.run(Duration::from_secs(2)).await;
        assert!(out.ok, "{out:?}");
        assert_eq!(
            (out.outcome, out.detail.as_str()),
            (Outcome::Ok, "connected")
        );
    }

    #[tokio::test]
    async fn tcp_reports_connection_refused() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        }; // closed: the port now answers with RST
        let out = Probe::Tcp { addr }.run(Duration::from_secs(2)).await;
        assert!(!out.ok);
        assert_eq!(out.outcome, Outcome::Refused);
        assert_eq!(out.detail, "connection refused");
    }

    /// A listener whose accept queue is full drops further SYNs, so a connect
    /// hangs: the probe must give up at its timeout.
    #[tokio::test]
    async fn tcp_times_out_when_the_accept_queue_is_full() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Re-listen with backlog 0: Linux then queues one connection at most.
        nix::sys::socket::listen(&l.as_fd(), nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        // Fill the queue (never accepted); bounded attempts.
        let mut held = Vec::new();
        for _ in 0..4 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => held.push(s),
                _ => break,
            }
        }
        let out = Probe::Tcp { addr }.run(Duration::from_millis(300)).await;
        assert_eq!(out.outcome, Outcome::Timeout, "{out:?}");
        assert_eq!(out.detail, "timeout after 300ms");
        assert!(out.duration < Duration::from_secs(2), "{:?}", out.duration);
    }

    #[test]
    fn kinds_and_labels() {
        let p = Probe::Tcp {
            addr: "127.0.0.1:1".parse().unwrap(),
        };
        assert_eq!(p.kind(), "tcp");
        assert!(p.validate().is_ok());
        assert_eq!(Outcome::BadStatus.as_str(), "bad_status");
    }
}
