//! tandem-api: the job API that clients reach through the balancer's VIP.
//!
//! Modules:
//! - [`config`]: `api.toml` → validated [`config::Config`], every error
//!   located (file:line:column, key, value, what is valid).
//! - [`db`]: the sqlx Any pool (SQLite or MySQL/MariaDB) and migrations.
//! - [`keys`]: API keys, hashed tokens, authentication.
//! - [`ratelimit`]: GCRA per key, state in the database, checks coalesced
//!   per batch.
//! - [`submit`]: the submission batcher (group commit of `POST /v1/jobs`).
//! - [`batch`]: how both take batches off their queues.
//! - [`jobs`]: job rows and their state transitions (leases, fencing).
//! - [`dispatcher`]: per-kind loops that call the workers.
//! - [`params`]: job parameters, as stored and sent to workers.
//! - [`reload`]: SIGHUP: the config file checked again, changed keys
//!   named.
//! - [`timeouts`]: one HTTP connection under the header-read, keep-alive
//!   and request timeouts.
//! - [`wait`]: `?wait=` requests held until their job is final.
//! - [`metrics`]: metric names and the Prometheus recorder.
//! - [`ratewarn`]: warnings that could repeat per request, at most one
//!   in 10 s.
//! - [`webhook`]: callbacks when jobs end: the outbox, signing, the
//!   address policy and the delivery task.
pub mod batch;
pub mod cidr;
pub mod cli;
pub mod config;
pub mod conn;
pub mod db;
pub mod dispatcher;
pub mod jobs;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod params;
pub mod ratelimit;
pub mod ratewarn;
pub mod reload;
pub mod reqlog;
pub mod run;
pub mod server;
pub mod submit;
pub mod timeouts;
pub mod wait;
pub mod webhook;
