//! tandem-lb: the balancer.
//!
//! Module map:
//! - [`config`]: the TOML file, parsed into toml's spanned document and walked
//!   by hand into a validated [`config::Config`], collecting every error with
//!   file:line:column, the field, the value and what is valid.
//! - [`sched`]: the schedulers (`rr`, `wrr`, `lc`, `wlc`, `sh`, `maglev`, `p2c`),
//!   pure functions of backends, weights, live counts and a client key.
//! - [`proxy`]: a connection's whole path: the VIP listeners, the accept loops,
//!   pick → connect (retrying) → PROXY header → forward (splice(2) with a copy
//!   fallback, half-close, idle timeout).
//! - [`persist`]: client persistence (IPVS's persistent services): the
//!   sharded, bounded table of which backend a client is pinned to.
//! - [`runtime`]: the atomically swapped snapshot that reload replaces, the
//!   registry of counters, drain and health state, reload, drain, status.
//! - [`cli`]: the `tandem lb` subcommands.
//! - [`admin`]: the Unix control socket (`status`, `reload`, `drain`) and its client.
//! - [`net`]: the kernel edge of VRRP: netlink (links, VIPs), raw socket, gratuitous ARP.
//! - [`failover`]: the VRRP runtime: one task per `[[vrrp]]` instance running the
//!   state machine over the raw socket, VIPs, gratuitous ARPs, tracking, notify;
//!   publishes each instance's status on a watch channel. It and [`runtime`]
//!   never import each other: [`run`] wires the channels between them.
//! - [`vrrp`]: VRRP packets and the RFC 5798 state machine (sans-I/O), and the
//!   status record an instance publishes.
//! - [`statuspage`]: the read-only HTML status page on the metrics listener.
//! - [`telemetry`]: metric names and descriptions, the recorder, and the status
//!   page's routes on `tandem_service`'s `/metrics` endpoint.
//! - [`run`]: `tandem lb run`: wires all of the above into a process with
//!   `tandem_service`'s runner (SIGHUP reload, SIGTERM graceful stop, systemd).

pub mod admin;
pub mod cli;
pub mod config;
pub mod failover;
pub mod net;
pub mod persist;
pub mod proxy;
pub mod run;
pub mod runtime;
pub mod sched;
pub mod statuspage;
pub mod telemetry;
pub mod vrrp;
