//! Passive detection: what real traffic tells about a backend.
//!
//! The data plane reports every connect attempt's outcome here. Health
//! checking (tandem-healthcheck) implements [`PassiveSink`] to take a backend
//! out of rotation after consecutive failures, before the next probe would
//! notice. The balancer itself only counts.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::state::BackendState;

/// Why a connect attempt to a backend failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The backend answered with a reset (ECONNREFUSED): nothing listens.
    Refused,
    /// No answer within `connect_timeout`.
    Timeout(Duration),
    /// Anything else (unreachable network, no route, resources).
    Other(io::ErrorKind),
}

impl ConnectFailure {
    pub fn from_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            k => ConnectFailure::Other(k),
        }
    }

    /// The tcplog-style termination reason when this ends a connection.
    pub fn as_str(&self) -> &'static str {
        match self {
            ConnectFailure::Refused => "connect-refused",
            ConnectFailure::Timeout(_) => "connect-timeout",
            ConnectFailure::Other(_) => "connect-error",
        }
    }
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectFailure::Refused => f.write_str("connection refused"),
            ConnectFailure::Timeout(d) => write!(f, "timeout after {}ms", d.as_millis()),
            ConnectFailure::Other(k) => write!(f, "{k}"),
        }
    }
}

/// Receives the outcome of every backend connect attempt.
pub trait PassiveSink: Send + Sync + 'static {
    fn connect_failed(&self, backend: &Arc<BackendState>, why: ConnectFailure);
    fn connect_succeeded(&self, backend: &Arc<BackendState>);
}

/// The sink used when no health checker is attached: counting is done by the
/// data plane itself, so there is nothing more to do.
#[derive(Debug, Default)]
pub struct NoPassive;

impl PassiveSink for NoPassive {
    fn connect_failed(&self, _: &Arc<BackendState>, _: ConnectFailure) {}
    fn connect_succeeded(&self, _: &Arc<BackendState>) {}
}
