//! tandem-lb: the balancer.
//!
//! Module map:
//! - [`config`]: the TOML file, `RawConfig` (serde) → validated [`config::Config`],
//!   errors that name file:line:column, the field, the value and what is valid.
//! - [`sched`]: the schedulers (`rr`, `wrr`, `lc`, `wlc`, `sh`, `maglev`, `p2c`),
//!   pure functions of backends, weights, live counts and a client key.
//! - [`proxy`]: wire formats and byte moving at the edge: PROXY protocol headers,
//!   splice(2) forwarding with a copy fallback, half-close and idle timeout.
//! - [`runtime`]: listeners, the accept → pick → connect → forward path, the
//!   atomically swapped snapshot that reload replaces, drain, counters.
//! - [`cli`]: the `tandem lb` subcommands.
//! - [`admin`]: the Unix control socket (`status`, `reload`, `drain`) and its client.
//! - [`vrrp`]: VRRP packets and the RFC 5798 state machine (sans-I/O), and the raw-socket edge.
//! - [`telemetry`]: Prometheus exporter and metric descriptions.
//! - [`run`]: `tandem lb run`: wires all of the above into a process with
//!   signals (SIGHUP reload, SIGTERM graceful stop).

// pub mod admin; (enabled once config::load, proxy::forward and sched::new_scheduler land)
// pub mod cli; (enabled once config::load, proxy::forward and sched::new_scheduler land)
pub mod config;
pub mod proxy;
// pub mod run; (enabled once config::load, proxy::forward and sched::new_scheduler land)
// pub mod runtime; (enabled once config::load, proxy::forward and sched::new_scheduler land)
pub mod sched;
pub mod telemetry;
pub mod vrrp;
