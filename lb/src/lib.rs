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
//! - [`admin`]: the Unix control socket (`status`, `reload`, `drain`) and its client.
//! - [`telemetry`]: Prometheus exporter and metric descriptions.

pub mod config;
pub mod proxy;
pub mod sched;
