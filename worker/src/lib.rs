//! tandem-worker: the stateless HTTP worker service hosting job kinds.
//!
//! One instance serves one kind; many instances of a kind sit behind the
//! balancer's pool for that kind. The API's dispatcher sends the raw job input
//! as the body of `POST /v1/run` and gets the raw result back.
//!
//! Modules:
//! - [`config`]: TOML file → validated [`config::Config`], durations, kinds.
//! - [`server`]: the axum router, concurrency limit, health, shutdown.
//! - [`kinds`]: the work itself: [`kinds::thumbnail`], [`kinds::text`],
//!   [`kinds::exec`], each a pure-ish function from input bytes to output.
//! - [`metrics`]: metric names, descriptions and the Prometheus recorder.
//! - [`cli`]: `tandem worker run|check`, called by the `tandem` binary.

pub mod cli;
pub mod config;
pub mod kinds;
pub mod metrics;
pub mod server;
