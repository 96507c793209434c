//! `tandem lb ...`: the balancer's subcommands.
//!
//! Every subcommand takes `-c FILE` (default `/etc/tandem/lb.toml`). For the
//! client subcommands (`status`, `reload`, `drain`, `enable`) the file only
//! says where the admin socket is.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::admin::{self, Request};
use crate::config::Config;

pub const DEFAULT_CONFIG: &str = "/etc/tandem/lb.toml";

#[derive(Debug, Subcommand)]
pub enum LbCommand {
    /// Run the balancer in the foreground.
    Run {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file; print every error; exit 1 if there is any.
    Check {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show services and backends of the running balancer (like `ipvsadm -Ln --stats`).
    Status {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running balancer to reload its config file (same as SIGHUP).
    Reload {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Stop sending new connections to a backend; open ones finish.
    Drain {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        service: String,
        /// Backend name or address.
        backend: String,
    },
    /// Undo `drain`.
    Enable {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        service: String,
        /// Backend name or address.
        backend: String,
    },
}

pub fn main(cmd: LbCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LbCommand::Run { config } => run(&config),
        LbCommand::Check { config } => Ok(check(&config)),
        LbCommand::Status { config, json } => status(&config, json),
        LbCommand::Reload { config } => reload(&config),
        LbCommand::Drain {
            config,
            service,
            backend,
        } => set_drain(&config, service, backend, true),
        LbCommand::Enable {
            config,
            service,
            backend,
        } => set_drain(&config, service, backend, false),
    }
}

/// `tandem lb run`: a config with errors is reported and not started.
fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: {} error(s); not started", config.display(), e.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    crate::run::run(cfg)?;
    Ok(ExitCode::SUCCESS)
}

/// `tandem lb check`: every error, or a one-line summary.
fn check(config: &Path) -> ExitCode {
    match Config::load(config) {
        Ok(c) => {
            let backends: usize = c.services.iter().map(|s| s.backends.len()).sum();
            println!(
                "{}: ok ({} services, {} backends)",
                config.display(),
                c.services.len(),
                backends
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: {} error(s)", config.display(), e.len());
            ExitCode::FAILURE
        }
    }
}

/// `tandem lb status [--json]`.
fn status(config: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let resp = call(config, &Request::Status)?;
    let status = resp
        .status
        .context("the balancer answered without a status")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// `tandem lb drain|enable SERVICE BACKEND`.
fn set_drain(
    config: &Path,
    service: String,
    backend: String,
    drain: bool,
) -> anyhow::Result<ExitCode> {
    let done = if drain {
        "drained (no new connections; open ones finish)"
    } else {
        "enabled"
    };
    let line = format!("{service}/{backend}: {done}");
    let req = if drain {
        Request::Drain { service, backend }
    } else {
        Request::Enable { service, backend }
    };
    call(config, &req)?;
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

/// `tandem lb reload`: what changed, and what needs a restart.
fn reload(config: &Path) -> anyhow::Result<ExitCode> {
    let resp = call(config, &Request::Reload)?;
    let s = resp.reload.unwrap_or_default();
    println!(
        "reloaded: {} services; listeners kept {}, added {}, removed {}",
        s.services, s.listeners_kept, s.listeners_added, s.listeners_removed
    );
    for what in s.restart_needed {
        println!("note: {what} changed; it takes effect after a restart");
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends one admin request to the balancer that `config` describes; an
/// error answer becomes an error (exit 1).
fn call(config: &Path, req: &Request) -> anyhow::Result<admin::Response> {
    let socket = admin_socket_of(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let resp = rt.block_on(admin::request(&socket, req))?;
    if !resp.ok {
        anyhow::bail!(
            "{}",
            resp.error.unwrap_or_else(|| "the balancer refused".into())
        );
    }
    Ok(resp)
}

/// The admin socket named by a config file, read leniently: a file being
/// edited may have errors elsewhere, and `tandem lb reload` must still reach
/// the running balancer to hear *its* verdict on them.
fn admin_socket_of(config: &Path) -> anyhow::Result<PathBuf> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let socket = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("admin")?.get("socket")?.as_str().map(PathBuf::from));
    Ok(socket.unwrap_or_else(|| PathBuf::from(crate::config::AdminConfig::DEFAULT_SOCKET)))
}
