//! What every long-running Tandem process (balancer, API, worker) does the
//! same way, written once:
//!
//! - [`accept`]: the accept loop, with backoff when the OS runs out of
//!   descriptors, that stops when its token is cancelled.
//! - [`config`]: located config errors (file:line:column, field path, value,
//!   what is valid; every error of a file), the walk of a TOML document that
//!   collects them, and the one duration grammar.
//! - [`metrics`]: the Prometheus recorder (recommended naming, upkeep) and
//!   the `/metrics` endpoint over hyper, with a hook for other pages.
//! - [`rlimit`]: the soft descriptor limit raised to the hard one.
//! - [`runner`]: sd-notify readiness, watchdog pings, SIGTERM/SIGINT stop,
//!   SIGHUP reload and the shutdown grace period.
//!
//! This crate knows nothing of the balancer, the API or the workers; they
//! depend on it, never the other way (docs/architecture.md, "Crates").

pub mod accept;
pub mod config;
pub mod metrics;
pub mod rlimit;
pub mod runner;
