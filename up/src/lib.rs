//! `tandem up`: a complete local stack on loopback for a first look.
//!
//! It starts, as child processes of this same binary: two workers of each
//! kind (thumbnail, text, exec), one API replica on its SQLite file (see
//! [`API_REPLICAS`] on why one), and the balancer fronting the API and one
//! pool per worker kind.
//! The dispatchers reach the workers through the balancer, as in production.
//! It creates an API key, waits until every piece answers and every backend
//! is healthy, prints the URLs, the key and a `curl` example, and on Ctrl-C
//! (or SIGTERM) stops everything: the balancer first, so no new request
//! lands on a stopping replica, then the API, then the workers.
//!
//! Everything lives in one directory (`--dir`, default `./tandem-up`):
//! generated configs, the database, and one log file per process.
//!
//! Modules:
//! - [`ports`]: the port plan, 40 ports on 127.0.0.1 from `--port`.
//! - [`configs`]: the generated worker, API and balancer configs.
//! - [`procs`]: the child processes: start, wait until ready, stop in
//!   reverse order.
//! - [`http`]: the one-request HTTP/1.1 client the readiness waits use.
//! - [`stack`]: `tandem up` itself, from the free ports to Ctrl-C.
//!
//! It depends on no other Tandem crate: the pieces are child processes of
//! the `tandem` binary, started by their subcommands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

pub mod configs;
pub mod http;
pub mod ports;
pub mod procs;
pub mod stack;

/// `tandem up`'s command line.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Directory for configs, the SQLite database and logs.
    #[arg(long, default_value = "tandem-up")]
    pub dir: PathBuf,
    /// First port of the range used on 127.0.0.1 (the API is served here;
    /// the stack uses this port and the next 39).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

/// How many API replicas the stack runs, all on one SQLite file in
/// `--dir`, as `api-1`, `api-2`, ... behind the balancer's `api` service.
///
/// One: replicas on one SQLite file contend for its write lock, and two
/// accepted 10-30 % fewer submissions than one, with a worse p99
/// (docs/operations.md, "The API's database"). A second replica would only
/// survive a crash of one process, which a first look does not need.
pub const API_REPLICAS: usize = 1;

/// The job kinds the stack runs two workers of, each behind its own
/// balancer service.
pub const KINDS: [&str; 3] = ["thumbnail", "text", "exec"];

/// Runs `tandem up` to the end: Ok(SUCCESS) after Ctrl-C or SIGTERM,
/// Ok(FAILURE) when start-up fails or a process dies.
pub fn main(args: UpArgs) -> anyhow::Result<ExitCode> {
    if args.port > u16::MAX - ports::SPAN {
        bail!(
            "--port {}: the stack needs 40 ports from there; valid: 1024 to {}",
            args.port,
            u16::MAX - ports::SPAN
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(stack::run(args))
}
