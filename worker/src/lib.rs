//! tandem-worker: the stateless HTTP worker service hosting job kinds.
//!
//! One instance serves one kind; many instances of a kind sit behind the
//! balancer's pool for that kind. The API's dispatcher sends the raw job input
//! as the body of `POST /v1/run` (with its `Content-Type`) and gets the raw
//! result back (`image/png`, `application/json`, or the exec command's type).
//! Nothing is kept between requests.
//!
//! Modules:
//! - [`config`]: TOML file → validated [`config::Config`], walked with
//!   `tandem_service::config` so every error is reported with
//!   `file:line:column`, the key, the value and what is valid; kinds.
//! - [`kinds`]: the work itself, free of HTTP: [`kinds::thumbnail`],
//!   [`kinds::text`], [`kinds::exec`], and [`kinds::RunError`], which says who
//!   failed.
//! - [`params`]: the job parameters of a run (`X-Tandem-Params`, a JSON
//!   object the API forwards), checked per kind with messages that name the
//!   parameter, the value and what is valid.
//! - [`server`]: the axum routes, admission (concurrency limit → 503),
//!   status mapping, the slot and instance headers, the accept loop and
//!   graceful shutdown (idle connections closed, the last answer on a busy
//!   one says `Connection: close`); [`server::serve`] takes a bound
//!   listener and a `CancellationToken`.
//! - [`conn`]: one HTTP/1.1 connection, with its header-read and idle
//!   timeouts and the close of a half-sent first request on shutdown.
//! - [`metrics`]: metric names, descriptions and the Prometheus recorder.
//! - [`cli`]: `tandem worker run|check`, called by the `tandem` binary.

pub mod cli;
pub mod config;
pub mod conn;
pub mod kinds;
pub mod metrics;
pub mod params;
pub mod server;
