//! What every long-running Tandem process (balancer, API, worker) does the
//! same way, written once:
//!
//! - [`accept`]: the accept loop, with backoff when the OS runs out of
//!   descriptors, that stops when its token is cancelled.
//!
//! This crate knows nothing of the balancer, the API or the workers; they
//! depend on it, never the other way (docs/architecture.md, "Crates").

pub mod accept;
