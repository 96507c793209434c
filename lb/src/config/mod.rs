//! The balancer's configuration: one TOML file (see `lb/lb.example.toml`).
//!
//! [`Config::parse`] / [`Config::load`] turn the text into the validated
//! [`Config`] the runtime uses: defaults applied, addresses parsed, names
//! unique, every number in range. Validation collects *every* error in the
//! file, each naming file:line:column, the field path
//! (`service[0].backend[1].address`), the value as written and what would be
//! valid (see [`ConfigErrors`]). Instead of a serde mirror, which stops at the
//! first bad field, `parse` walks toml's spanned document by hand with
//! `tandem_service::config`'s walker, which also holds the error types and
//! the duration grammar shared with `api.toml` and `worker.toml` (re-exported
//! here).
//!
//! Files:
//! - `parse`: the walk, one reader per table, uniqueness checks.
//! - `values`: one TOML value to one typed balancer value (IPv4 prefixes,
//!   interface names, commands).
//! - `health`: [`HealthConfig`] and [`AllDown`], the checks' plain data.
//! - `vrrp`: [`VrrpConfig`] and its parts, the VRRP instances' plain data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sched::SchedulerKind;

mod health;
mod parse;
mod values;
mod vrrp;

pub use health::{
    AllDown, ExecCheck, HealthCheck, HealthConfig, HealthKind, HttpCheck, StatusRange,
};
pub use tandem_service::config::{
    ConfigError, ConfigErrors, DURATION_EXAMPLES, DurationError, DurationProblem, ErrorKind,
    format_duration, parse_duration,
};
pub use vrrp::{GarpConfig, Track, TrackTarget, VrrpConfig};

impl Config {
    /// Parses and validates a config file's text. `source` is the file's
    /// name, used in error messages and kept in [`Config::source`].
    ///
    /// Returns every error found, in file order; a TOML syntax error is
    /// reported alone since nothing after it can be read.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
        parse::parse(text, source)
    }

    /// Reads `path` and [`Config::parse`]s it. An unreadable file is one
    /// [`ConfigError`] naming the path and the OS error.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        tandem_service::config::load(path, Config::parse)
    }

    /// The service named `name`, if any.
    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Validated balancer configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file this came from (for messages and reload).
    pub source: PathBuf,
    /// `[node]`; the whole table is optional.
    pub node: NodeConfig,
    /// `[admin]`; the whole table is optional.
    pub admin: AdminConfig,
    /// `[metrics]`; absent means no exporter.
    pub metrics: MetricsConfig,
    /// `[[service]]`, in file order; zero is valid (a node that only holds
    /// VRRP addresses). Names and listen addresses are unique.
    pub services: Vec<ServiceConfig>,
    /// `[[vrrp]]`, in file order; zero or more. Names are unique, and so is
    /// (interface, virtual_router_id).
    pub vrrp: Vec<VrrpConfig>,
}

/// `[node]`: process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// `name`: this balancer node in logs and as a metric label.
    /// Default: the kernel hostname, or `"tandem"` if it is not a valid name.
    /// Valid: 1 to 64 characters from `A-Z a-z 0-9 _ . -`.
    pub name: String,
    /// `workers`: data-plane threads. Default `0`, meaning one per core
    /// (`std::thread::available_parallelism`); this field holds the resolved
    /// count, always >= 1. Valid: 0 to [`NodeConfig::MAX_WORKERS`].
    pub workers: usize,
    /// `shutdown_grace`: how long SIGTERM waits for established connections
    /// before closing them. Default `"30s"`; `"0s"` closes them at once.
    pub shutdown_grace: Duration,
    /// `connection_log`: level of the one line logged per closed connection
    /// (None = `"off"`). Default `"info"`; valid `"off"`, `"error"`, `"warn"`,
    /// `"info"`, `"debug"`, `"trace"`.
    pub connection_log: Option<tracing::Level>,
}

impl NodeConfig {
    /// Node name used when the hostname cannot be read or is not a valid name.
    pub const DEFAULT_NAME_FALLBACK: &'static str = "tandem";
    /// Largest `workers` accepted.
    pub const MAX_WORKERS: usize = 1024;
    pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    pub const DEFAULT_CONNECTION_LOG: Option<tracing::Level> = Some(tracing::Level::INFO);
}

/// `[admin]`: the Unix control socket.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// `socket`: path of the control socket (created mode 0600). Default
    /// `"/run/tandem/lb.sock"`. Valid: an absolute path of at most
    /// [`AdminConfig::MAX_SOCKET_PATH`] bytes.
    pub socket: PathBuf,
}

impl AdminConfig {
    pub const DEFAULT_SOCKET: &'static str = "/run/tandem/lb.sock";
    /// `sun_path` holds 108 bytes including the terminating NUL (unix(7)).
    pub const MAX_SOCKET_PATH: usize = 107;
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            socket: PathBuf::from(Self::DEFAULT_SOCKET),
        }
    }
}

/// `[metrics]`: the Prometheus exporter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsConfig {
    /// `listen`: address of the HTTP listener serving `/metrics`. Required
    /// when `[metrics]` is present; no `[metrics]` table = None = no exporter.
    /// Valid: IP:port, port 1 to 65535, not a service's listen address.
    pub listen: Option<SocketAddr>,
}

/// `proxy_protocol`: PROXY protocol header sent to backends before any client byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProxyProtocol {
    /// `"off"` (default): no header.
    #[default]
    Off,
    /// `"v1"`: the text header (`PROXY TCP4 ...\r\n`).
    V1,
    /// `"v2"`: the binary header.
    V2,
}

impl ProxyProtocol {
    /// Every value, in the order the docs list them.
    pub const ALL: [ProxyProtocol; 3] = [ProxyProtocol::Off, ProxyProtocol::V1, ProxyProtocol::V2];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
        }
    }

    /// Inverse of [`ProxyProtocol::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl std::fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `[[service]]`: one listener and its pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// `name` (required): used by `drain`, status and metric labels. Valid:
    /// 1 to 64 characters from `A-Z a-z 0-9 _ . -`, unique among services.
    pub name: String,
    /// `listen` (required): address to accept on, IPv4 `"198.18.0.100:80"` or
    /// IPv6 `"[2001:db8::1]:443"`; port 1 to 65535, unique among services. May
    /// be a VIP this node does not hold yet (IP_FREEBIND).
    pub listen: SocketAddr,
    /// `scheduler`: how a backend is picked. Default `"wlc"`; valid `"rr"`,
    /// `"wrr"`, `"lc"`, `"wlc"`, `"sh"`, `"maglev"`, `"p2c"`.
    pub scheduler: SchedulerKind,
    /// `connect_timeout`: upper bound on one backend connect attempt.
    /// Default `"2s"`; valid: a duration greater than zero.
    pub connect_timeout: Duration,
    /// `idle_timeout`: a connection with no byte in either direction for this
    /// long is closed. Default `"5m"`; valid: a duration greater than zero.
    pub idle_timeout: Duration,
    /// `retries`: further backends tried after a refused or timed-out
    /// connect. Default `2`; valid 0 to [`ServiceConfig::MAX_RETRIES`].
    pub retries: u32,
    /// `max_connections`: concurrent client connections; excess is refused at
    /// once and counted. Default `10000`; valid 1 to 4294967295.
    pub max_connections: u32,
    /// `proxy_protocol`: header sent to backends. Default `"off"`; valid
    /// `"off"`, `"v1"`, `"v2"`.
    pub proxy_protocol: ProxyProtocol,
    /// `[[service.backend]]`: the pool, in file order; at least one.
    pub backends: Vec<BackendConfig>,
    /// `all_down` and `sorry`: what happens when no backend is up. Default
    /// [`AllDown::Refuse`]; `all_down = "all"` is [`AllDown::All`], `sorry =
    /// "IP:port"` is [`AllDown::Sorry`] (setting both is an error).
    pub all_down: AllDown,
    /// `persistence_timeout` and its companions: client affinity as IPVS's
    /// persistent services have it. None (the default, also
    /// `persistence_timeout = "0s"`) = off.
    pub persistence: Option<Persistence>,
}

impl ServiceConfig {
    pub const DEFAULT_SCHEDULER: SchedulerKind = SchedulerKind::Wlc;
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const MAX_RETRIES: u32 = 16;
    pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;
}

/// Client persistence of a service (IPVS `--persistent`, keepalived
/// `persistence_timeout`): a client, or every client of one network of
/// `granularity`, keeps the backend it was given while it has connections
/// open and for `timeout` after the last one closed. See
/// [`crate::persist`] for the table and its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// `persistence_timeout`: how long an entry outlives its client's last
    /// connection. Valid: a duration; `"0s"` or absent = persistence off.
    pub timeout: Duration,
    /// `persistence_granularity`: IPv4 clients are grouped by this prefix
    /// length, written as a netmask (`"255.255.255.0"` = 24). Default
    /// `"255.255.255.255"` (32: each client alone); valid: a netmask of
    /// contiguous ones, `"0.0.0.0"` to `"255.255.255.255"`.
    pub v4_prefix: u8,
    /// `persistence_granularity_v6`: the same for IPv6 clients, as a prefix
    /// length. Default `128`; valid 0 to 128.
    pub v6_prefix: u8,
    /// `persistence_max_entries`: most entries the service's table holds.
    /// Default [`Persistence::DEFAULT_MAX_ENTRIES`]; valid 1 to
    /// [`Persistence::MAX_MAX_ENTRIES`].
    pub max_entries: u32,
}

impl Persistence {
    pub const DEFAULT_MAX_ENTRIES: u32 = 65_536;
    /// 2^24 entries: under 2.5 GiB of table (see docs/operations.md).
    pub const MAX_MAX_ENTRIES: u32 = 1 << 24;

    /// The IPv4 prefix as the netmask it was written as (`"255.255.255.0"`).
    pub fn v4_netmask(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.v4_prefix))
                .unwrap_or(0),
        )
    }
}

/// `[[service.backend]]`: one server of a service's pool.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// `name`: used by `drain` and status. Default: the address as text
    /// (`"127.0.0.1:8081"`). Valid: 1 to 64 characters from
    /// `A-Z a-z 0-9 _ . - : [ ]`, unique within the service.
    pub name: String,
    /// `address` (required): IP:port to connect to; port 1 to 65535, IP not
    /// unspecified (`0.0.0.0`, `[::]`), unique within the service.
    pub address: SocketAddr,
    /// `weight`: relative share of new connections. Default `100`; valid 0
    /// to [`BackendConfig::MAX_WEIGHT`] (0 = drained: no new connections).
    pub weight: u32,
    /// `max_connections`: concurrent connections to this backend. Default:
    /// none (None: only the service limit applies); valid 1 to 4294967295.
    pub max_connections: Option<u32>,
    /// `[service.health]` with this backend's `[service.backend.health]`
    /// laid over it, defaults applied. None when neither table exists: no
    /// active probes, the backend is assumed up (passive detection still
    /// applies).
    pub health: Option<HealthConfig>,
    /// `passive_fall` of the resolved health table: consecutive refused or
    /// timed-out connects that mark the backend down at once; 0 disables
    /// passive detection. Default 3 (also when there is no health table);
    /// valid 0 to 100.
    pub passive_fall: u32,
}

impl BackendConfig {
    pub const DEFAULT_WEIGHT: u32 = 100;
    pub const MAX_WEIGHT: u32 = 256;
}

#[cfg(test)]
mod tests;
