//! `tandem worker run|check`: the command line, called by the `tandem`
//! binary, which owns tracing setup.
//!
//! `run` builds its own tokio runtime, installs the Prometheus recorder,
//! binds, and serves until SIGTERM or SIGINT. Then it stops accepting and
//! gives in-flight runs `limits.shutdown_grace` to finish: exit status 0 if
//! they did, 1 if the grace ran out (systemd would SIGKILL soon anyway).
//!
//! Under systemd (`Type=notify`, see systemd/tandem-worker@.service) it
//! reports `READY=1` once the listener is bound, `WATCHDOG=1` at half the
//! `WatchdogSec` the manager passes in `WATCHDOG_USEC`, and `STOPPING=1`
//! when a signal starts the shutdown (`tandem_service::runner`). Without
//! `NOTIFY_SOCKET` these are no-ops.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tandem_service::runner::{Runner, Served};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Kind};
use crate::server::{AppState, serve};

/// `tandem worker ...`
#[derive(Debug, clap::Subcommand)]
pub enum WorkerCommand {
    /// Serve one job kind over HTTP until SIGTERM or SIGINT.
    Run {
        /// The worker's TOML config file.
        #[arg(short, long, default_value = "/etc/tandem/worker.toml")]
        config: PathBuf,
        /// The kind this instance serves: thumbnail, text or exec.
        #[arg(long)]
        kind: Kind,
    },
    /// Validate a config file and exit: 0 if it is usable, 1 if not.
    Check {
        /// The worker's TOML config file.
        #[arg(short, long, default_value = "/etc/tandem/worker.toml")]
        config: PathBuf,
        /// Also check that the file can run this kind (exec needs [exec]).
        #[arg(long)]
        kind: Option<Kind>,
    },
}

/// Runs a `tandem worker` subcommand.
pub fn main(cmd: WorkerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkerCommand::Check { config, kind } => Ok(check(&config, kind)),
        WorkerCommand::Run { config, kind } => run(&config, kind),
    }
}

fn check(path: &Path, kind: Option<Kind>) -> ExitCode {
    match validate(path, kind) {
        Ok(config) => {
            let kinds: Vec<&str> = Kind::ALL
                .into_iter()
                .filter(|k| config.check_kind(*k).is_ok())
                .map(Kind::as_str)
                .collect();
            println!("{}: ok (can run: {})", path.display(), kinds.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the file and checks what can only be checked on this machine: the
/// exec program exists and is executable.
fn validate(path: &Path, kind: Option<Kind>) -> anyhow::Result<Config> {
    let config = Config::load(path)?;
    if let Some(kind) = kind {
        config
            .check_kind(kind)
            .with_context(|| path.display().to_string())?;
    }
    if let Some(exec) = &config.exec {
        let program = &exec.command.program;
        let meta = std::fs::metadata(program).with_context(|| {
            format!(
                "{}: exec.command: program {}",
                path.display(),
                program.display()
            )
        })?;
        anyhow::ensure!(
            meta.is_file() && meta.permissions().mode() & 0o111 != 0,
            "{}: exec.command: program {} is not an executable file",
            path.display(),
            program.display()
        );
    }
    Ok(config)
}

fn run(path: &Path, kind: Kind) -> anyhow::Result<ExitCode> {
    let config = validate(path, Some(kind))?;
    let grace = config.limits.shutdown_grace;
    let listen = config.listen;
    // One descriptor per connection (and per exec run's pipes): the soft
    // limit (1,024 by default) goes up to the hard one (the unit's
    // LimitNOFILE=) before anything is opened. Not fatal if it cannot.
    match tandem_service::rlimit::raise_nofile() {
        Ok(n) => tracing::info!(nofile = n, "descriptor limit"),
        Err(e) => {
            tracing::warn!(error = %e, "descriptor limit: cannot raise the soft limit to the hard one")
        }
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tandem-worker")
        .build()
        .context("cannot start the tokio runtime")?;
    let code = runtime.block_on(async move {
        // Before binding: a SIGTERM during start-up is not lost to the
        // default action.
        let mut runner = Runner::systemd(false, grace).context("hooking SIGTERM and SIGINT")?;
        let handle = match crate::metrics::install() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "no /metrics: cannot install the Prometheus recorder");
                None
            }
        };
        let state = AppState::new(config, kind, handle)?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;

        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, shutdown.clone()));
        let (ended, code) = match runner.serve(server, &shutdown).await {
            // The server stopped without being asked: an accept error.
            Served::Unasked(ended) => (ended, ExitCode::FAILURE),
            Served::Drained(ended) => (ended, ExitCode::SUCCESS),
            Served::GraceRanOut => {
                tracing::warn!(?grace, "shutdown grace ran out with runs still in flight");
                return Ok(ExitCode::FAILURE);
            }
        };
        ended
            .context("server task panicked")?
            .context("server failed")?;
        if code == ExitCode::SUCCESS {
            tracing::info!("all in-flight runs finished; exiting");
        }
        Ok::<_, anyhow::Error>(code)
    })?;
    // A decode that outlived its timeout is a blocking thread tokio cannot
    // cancel; do not let it hold the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(code)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// Stands in for the `tandem` binary's `worker` subcommand.
    #[derive(Debug, Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: WorkerCommand,
    }

    #[test]
    fn command_line_parses_as_documented() {
        Top::command().debug_assert();
        let t = Top::try_parse_from(["tandem-worker", "run", "--kind", "thumbnail"]).unwrap();
        match t.cmd {
            WorkerCommand::Run { config, kind } => {
                assert_eq!(config, PathBuf::from("/etc/tandem/worker.toml"));
                assert_eq!(kind, Kind::Thumbnail);
            }
            other => panic!("{other:?}"),
        }
        let t = Top::try_parse_from(["tandem-worker", "check", "-c", "w.toml"]).unwrap();
        assert!(matches!(t.cmd, WorkerCommand::Check { kind: None, .. }));
        let err = Top::try_parse_from(["tandem-worker", "run", "--kind", "resize"]).unwrap_err();
        assert!(err.to_string().contains("thumbnail, text, exec"), "{err}");
        assert!(
            Top::try_parse_from(["tandem-worker", "run"]).is_err(),
            "--kind is required"
        );
    }
}
