//! Byte moving and wire formats at the edge of the balancer.
//!
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers (the
//!   `tandem-proxy-protocol` crate, shared with the API, re-exported here).
//! - [`forward`]: moves bytes both ways between a client and a backend, with
//!   half-close, idle timeout, a fairness budget and per-chunk byte counts.
//!   It uses `splice` (socket → pipe → socket, zero-copy) and falls back to
//!   `copy` (a small userspace buffer).
//! - [`pipe_pool`]: the bounded, process-wide pool of pipes splice(2) moves
//!   bytes through; connections lease pipes only while data flows.
mod copy;
pub mod forward;
pub mod pipe_pool;
pub use tandem_proxy_protocol as proxy_protocol;
mod splice;

pub use forward::{
    ByteMeter, EndReason, ForwardOpts, NoMeter, Outcome, forward, forward_with_pool,
};
pub use pipe_pool::{PipePool, PipePoolStats, configure_pipe_pool, global_pipe_pool};
