//! A connection's whole path, from the listening socket to the last byte.
//!
//! - [`listener`]: the VIP listening sockets (`IP_FREEBIND`, backlog, a
//!   `SO_REUSEPORT` group per address) and the descriptor limit.
//! - [`accept`]: the set of listeners and their accept loops (the shared
//!   [`tandem_service::accept::Acceptor`]), handing each client to `conn`.
//! - [`conn`]: one client: admit → pick → connect (retrying) → PROXY header →
//!   forward → log line.
//! - [`proxy_protocol`]: PROXY protocol v1/v2 headers (the
//!   `tandem-proxy-protocol` crate, shared with the API, re-exported here).
//! - `sticky`: a connection's use of its service's persistence table
//!   ([`crate::persist`]): the pinned backend first, the entry held open.
//! - [`forward`]: moves bytes both ways between a client and a backend, with
//!   half-close, idle timeout, a fairness budget and per-chunk byte counts.
//!   It uses `splice` (socket → pipe → socket, zero-copy) and falls back to
//!   `copy` (a small userspace buffer).
//! - [`pipe_pool`]: the bounded, process-wide pool of pipes splice(2) moves
//!   bytes through; connections lease pipes only while data flows.
//! - [`workers`]: the data-plane threads, one tokio runtime each; every
//!   listening address has one socket per worker.
pub mod accept;
pub mod conn;
mod copy;
pub mod forward;
pub mod listener;
pub mod pipe_pool;
pub use tandem_proxy_protocol as proxy_protocol;
mod splice;
mod sticky;
pub mod workers;

pub use forward::{
    ByteMeter, EndReason, ForwardOpts, NoMeter, Outcome, forward, forward_with_pool,
};
pub use pipe_pool::{PipePool, PipePoolStats, configure_pipe_pool, global_pipe_pool};
