//! What every long-running Tandem process (balancer, API, worker) does the
//! same way, written once:
//!
//! - [`accept`]: the accept loop, with backoff when the OS runs out of
//!   descriptors, that stops when its token is cancelled.
//! - [`config`]: located config errors (file:line:column, field path, value,
//!   what is valid; every error of a file), the walk of a TOML document that
//!   collects them, and the one duration grammar.
//!
//! This crate knows nothing of the balancer, the API or the workers; they
//! depend on it, never the other way (docs/architecture.md, "Crates").

pub mod accept;
pub mod config;
