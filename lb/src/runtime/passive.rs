//! Passive detection: what real traffic tells about a backend.
//!
//! The data plane reports every connect attempt's outcome to the health
//! checker ([`super::health::Health::report`], backed by the checker's
//! lock-free `TargetHandle`), which takes a backend out of rotation after
//! `passive_fall` consecutive failures, before the next probe would notice.
//! This module names the failures.

use std::io;
use std::time::Duration;

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
