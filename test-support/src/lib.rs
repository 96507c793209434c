//! What Tandem's tests share, so that each is written once:
//!
//! | module | holds |
//! |---|---|
//! | [`wait`] | [`eventually`]: a condition polled until it holds or a deadline passes, in async, blocking and watch-channel flavours, with one panic message (what was awaited, for how long, what was last seen) |
//! | [`http`] | a small HTTP/1.1 client on hyper: one request on a fresh connection, async or blocking; status, headers and body back |
//! | [`netns`] | test hosts as Linux network namespaces on one bridge ([`netns::Topology`]), 198.18.0.0/15 only, no route out, removed on every exit path |
//!
//! A dev-dependency only: nothing here is part of a shipped crate.

pub mod http;
pub mod netns;
pub mod wait;

pub use wait::{Outcome, eventually, eventually_blocking, eventually_watch};
