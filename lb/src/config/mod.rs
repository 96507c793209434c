//! The balancer's configuration: one TOML file.
//!
//! `raw` holds the serde mirror of the file (`deny_unknown_fields`, spans);
//! [`Config`] is the validated form the runtime uses. Conversion collects
//! *every* error, each naming file:line:column, the field path
//! (`service[0].backend[1].address`), the bad value and what would be valid.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::sched::SchedulerKind;

/// Validated balancer configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from (for messages and reload).
    pub source: PathBuf,
    pub node: NodeConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub services: Vec<ServiceConfig>,
}

/// `[node]`: process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Name of this balancer node (logs, metrics label). Default: hostname.
    pub name: String,
    /// Data-plane worker threads; default: one per core.
    pub workers: usize,
    /// How long SIGTERM waits for established connections before closing them.
    pub shutdown_grace: Duration,
    /// Level at which one line per closed connection is logged (None = off).
    pub connection_log: Option<tracing::Level>,
}

/// `[admin]`: the Unix control socket.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Path of the socket (created mode 0600). Default `/run/tandem/lb.sock`.
    pub socket: PathBuf,
}

/// `[metrics]`: the Prometheus exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Address of the HTTP listener serving `/metrics`; None = no exporter.
    pub listen: Option<SocketAddr>,
}

/// PROXY protocol header sent to backends before any client byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    #[default]
    Off,
    V1,
    V2,
}

/// `[[service]]`: one listener and its pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// Unique name; used by `drain`, status and metric labels.
    pub name: String,
    /// Address to accept on (may be a VIP this node does not hold: IP_FREEBIND).
    pub listen: SocketAddr,
    pub scheduler: SchedulerKind,
    /// Upper bound on one backend connect attempt.
    pub connect_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed.
    pub idle_timeout: Duration,
    /// Further backends tried after a refused or timed-out connect.
    pub retries: u32,
    /// Concurrent client connections; excess is refused at once and counted.
    pub max_connections: u32,
    pub proxy_protocol: ProxyProtocol,
    pub backends: Vec<BackendConfig>,
}

/// `[[service.backend]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Name used by `drain` and status; default: the address as text.
    pub name: String,
    pub address: SocketAddr,
    /// Relative share, 0..=256 (0 = drained: no new connections).
    pub weight: u32,
    /// Concurrent connections to this backend; None = only the service limit.
    pub max_connections: Option<u32>,
}
