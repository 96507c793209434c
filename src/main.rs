//! `tandem`: one binary for the balancer, the job API and the workers.
//! This file only parses the command line, installs logging and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "Layer-4 load balancer and failover appliance"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Start a complete local stack on loopback (balancer, 2 API replicas,
    /// 2 workers per kind, SQLite) and print how to use it; Ctrl-C stops it.
    Up(tandem_up::UpArgs),
    /// The load balancer: run, check, status, reload, drain, enable.
    #[command(subcommand)]
    Lb(tandem_lb::cli::LbCommand),
    /// The job API: run, check, keys.
    #[command(subcommand)]
    Api(tandem_api::cli::ApiCommand),
    /// Worker service for one job kind: run, check.
    #[command(subcommand)]
    Worker(tandem_worker::cli::WorkerCommand),
    /// A client of the job API: submit, get, result, list, cancel, retry.
    Jobs(tandem_client::JobsArgs),
}

fn init_logging() {
    // RUST_LOG picks levels (default info); TANDEM_LOG_FORMAT=json for
    // machine-readable lines. Logs go to stderr, which systemd's journal takes.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: journald and log files get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if std::env::var("TANDEM_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.cmd {
        Cmd::Lb(cmd) => tandem_lb::cli::main(cmd),
        Cmd::Up(args) => tandem_up::main(args),
        Cmd::Api(cmd) => tandem_api::cli::main(cmd),
        Cmd::Worker(cmd) => tandem_worker::cli::main(cmd),
        Cmd::Jobs(args) => tandem_client::main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
