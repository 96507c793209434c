//! `tandem api run|check|keys`: the command line, called by the `tandem`
//! binary, which owns tracing setup.
//!
//! Every subcommand takes `-c FILE`: `keys` uses it to find the database.
//! `keys create` prints the token once, on stdout, and nowhere else: it is
//! not logged and only its SHA-256 is stored. The key's webhook signing
//! secret is printed with it, once, on stderr (stdout stays the token
//! alone, which scripts capture); `keys rotate-webhook-secret` prints a
//! new one on stdout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tandem_service::runner::{Runner, Stop};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{Db, redact};

const DEFAULT_CONFIG: &str = "/etc/tandem/api.toml";

/// `tandem api ...`
#[derive(Debug, clap::Subcommand)]
pub enum ApiCommand {
    /// Serve the job API and run the dispatcher until SIGTERM or SIGINT
    /// (SIGHUP checks the config file again and names the changed keys).
    Run {
        /// The API's TOML config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file and exit: 0 if it is usable, 1 if not.
    Check {
        /// The API's TOML config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `tandem api keys ...`
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its token (shown this once).
    Create {
        /// The API's TOML config file (for the database).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// A name for the key, e.g. the client's.
        #[arg(long)]
        name: String,
        /// Steady rate: requests per second, e.g. `5` or `5/s`.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// Requests allowed at once above the steady rate.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        burst: Option<u32>,
        /// Default webhook URL of the key's jobs (an http:// URL the
        /// config's [webhooks] policy allows).
        #[arg(long)]
        callback_url: Option<String>,
    },
    /// Give a key a new webhook signing secret and print it (shown this
    /// once); the old one keeps signing, as a second v1, for --grace.
    RotateWebhookSecret {
        /// The API's TOML config file (for the database).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long the old secret keeps signing, e.g. `24h`; `0s` stops
        /// it at once.
        #[arg(long, default_value = "24h", value_parser = parse_grace)]
        grace: std::time::Duration,
        /// Key id or name.
        key: String,
    },
    /// Set a key's default webhook URL (for jobs submitted from now on),
    /// or clear it when no URL is given.
    SetCallbackUrl {
        /// The API's TOML config file (for the database and the policy).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Key id or name.
        key: String,
        /// An http:// URL the config's [webhooks] policy allows.
        url: Option<String>,
    },
    /// List keys (never tokens).
    List {
        /// The API's TOML config file (for the database).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Set how long a key's finished jobs are kept, overriding the config's
    /// `retention` (`default` goes back to it).
    Retention {
        /// The API's TOML config file (for the database).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Key id or name.
        key: String,
        /// A duration such as `30d` or `12h`, or `default`.
        #[arg(value_parser = parse_retention)]
        retention: Retention,
    },
    /// Revoke a key by id or name: its requests get 401 from then on.
    Revoke {
        /// The API's TOML config file (for the database).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Key id or name.
        key: String,
    },
}

/// A key's retention: its own, or the config's.
#[derive(Debug, Clone, Copy)]
pub enum Retention {
    /// The config's `retention`.
    Default,
    /// This long.
    For(std::time::Duration),
}

/// `default`, or a duration above zero in the config grammar (`30d`).
fn parse_retention(s: &str) -> Result<Retention, String> {
    if s == "default" {
        return Ok(Retention::Default);
    }
    match tandem_service::config::duration::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(Retention::For(d)),
        _ => Err(format!(
            "{s:?}: give a duration above zero such as \"30d\" or \"12h\", or \"default\""
        )),
    }
}

/// `5`, `5/s`, `0.5/s`, `300/m`.
fn parse_rate(s: &str) -> Result<f64, String> {
    let (n, per) = match s.split_once('/') {
        Some((n, unit)) => (
            n,
            match unit {
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(format!("{s:?}: unit is /s, /m or /h")),
            },
        ),
        None => (s, 1.0),
    };
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: expected a number, e.g. 5/s"))?;
    let rate = n / per;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!("{s:?}: must be positive"))
    }
}

/// A duration in the config files' grammar (`0s` allowed).
fn parse_grace(s: &str) -> Result<std::time::Duration, String> {
    tandem_service::config::duration::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// A callback URL for a key, checked against the config's policy.
fn key_callback_url(config: &Config, url: &str) -> anyhow::Result<crate::webhook::Target> {
    crate::webhook::Target::parse(url, &config.webhooks.policy)
        .map_err(|e| anyhow::anyhow!("--callback-url {e}"))
}

/// Runs a `tandem api` subcommand.
pub fn main(cmd: ApiCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApiCommand::Check { config } => Ok(check(&config)),
        ApiCommand::Run { config } => run(&config),
        ApiCommand::Keys(k) => keys(k),
    }
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) => {
            let kinds: Vec<&str> = c.kinds.keys().map(String::as_str).collect();
            println!(
                "{}: ok (database {}, kinds: {})",
                path.display(),
                redact(&c.database_url),
                kinds.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tandem-api")
        .build()
        .context("cannot start the tokio runtime")
}

fn keys(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let path = match &cmd {
        KeysCommand::Create { config, .. }
        | KeysCommand::List { config, .. }
        | KeysCommand::Retention { config, .. }
        | KeysCommand::Revoke { config, .. }
        | KeysCommand::RotateWebhookSecret { config, .. }
        | KeysCommand::SetCallbackUrl { config, .. } => config.clone(),
    };
    let config = Config::load(&path)?;
    // Checked before the database is touched.
    let target = match &cmd {
        KeysCommand::Create {
            callback_url: Some(u),
            ..
        }
        | KeysCommand::SetCallbackUrl { url: Some(u), .. } => Some(key_callback_url(&config, u)?),
        _ => None,
    };
    runtime()?.block_on(async move {
        let db = Db::open_with(&config.database_url, 2, &config.db).await?;
        match cmd {
            cmd @ (KeysCommand::Create { .. }
            | KeysCommand::RotateWebhookSecret { .. }
            | KeysCommand::SetCallbackUrl { .. }) => {
                let code = webhook_keys(&db, &config, cmd, target.as_ref()).await?;
                if code != ExitCode::SUCCESS {
                    return Ok(code);
                }
            }
            KeysCommand::List { json, .. } => {
                for k in crate::keys::list(&db).await? {
                    if json {
                        println!("{}", serde_json::to_string(&k)?);
                    } else {
                        let state = if k.revoked_ms.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!(
                            "{}  {:<20} {:>8.2}/s burst {:<5} {}",
                            k.id, k.name, k.rate, k.burst, state
                        );
                    }
                }
            }
            KeysCommand::Retention { key, retention, .. } => {
                let own = match retention {
                    Retention::Default => None,
                    Retention::For(d) => Some(d),
                };
                if crate::keys::set_retention(&db, &key, own).await? == 0 {
                    eprintln!("no key with id or name {key:?}");
                    return Ok(ExitCode::FAILURE);
                }
                match own {
                    Some(d) => eprintln!(
                        "finished jobs of {key} are kept {}",
                        tandem_service::config::duration::format_duration(d)
                    ),
                    None => {
                        eprintln!("finished jobs of {key} are kept as the config's retention says")
                    }
                }
            }
            KeysCommand::Revoke { key, .. } => {
                let n = crate::keys::revoke(&db, &key).await?;
                if n == 0 {
                    eprintln!("no active key with id or name {key:?}");
                    return Ok(ExitCode::FAILURE);
                }
                eprintln!("revoked {n} key(s)");
            }
        }
        db.pool.close().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// `keys create`, `keys rotate-webhook-secret` and `keys set-callback-url`:
/// the commands that show a secret or take a callback URL (`target`: the
/// checked URL, if one was given).
async fn webhook_keys(
    db: &Db,
    config: &Config,
    cmd: KeysCommand,
    target: Option<&crate::webhook::Target>,
) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Create {
            name, rate, burst, ..
        } => {
            let rate = rate.unwrap_or(config.default_rate);
            let burst = burst.unwrap_or(config.default_burst);
            let made = crate::keys::create_with(db, &name, rate, burst, target).await?;
            let info = &made.info;
            eprintln!(
                "created key {} ({}), {} req/s, burst {}; the token and the webhook secret \
                 are shown only now\nwebhook signing secret: {}\ntoken:",
                info.id, info.name, info.rate, info.burst, made.webhook_secret
            );
            println!("{}", made.token);
        }
        KeysCommand::RotateWebhookSecret { key, grace, .. } => {
            let Some((id, secret)) = crate::keys::rotate_webhook_secret(db, &key, grace).await?
            else {
                eprintln!("no active key with id or name {key:?}");
                return Ok(ExitCode::FAILURE);
            };
            eprintln!(
                "key {id}: new webhook secret (shown only now); the old one signs too for {}:",
                tandem_service::config::duration::format_duration(grace)
            );
            println!("{secret}");
        }
        KeysCommand::SetCallbackUrl { key, .. } => {
            let Some(id) = crate::keys::set_callback_url(db, &key, target).await? else {
                eprintln!("no active key with id or name {key:?}");
                return Ok(ExitCode::FAILURE);
            };
            match target {
                Some(t) => eprintln!("key {id}: jobs submitted from now on call {}", t.as_str()),
                None => eprintln!("key {id}: no default callback URL"),
            }
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = Arc::new(Config::load(path)?);
    // What the running config was read from, for SIGHUP to compare with.
    let reloader = crate::reload::Reloader::new(path, &std::fs::read_to_string(path)?);
    raise_nofile();
    runtime()?.block_on(async move {
        // Before the database and the listener: a SIGTERM (or SIGHUP)
        // during start-up is not lost to the default action.
        let mut runner = Runner::systemd(true, config.shutdown_grace)
            .context("hooking SIGHUP, SIGTERM and SIGINT")?;
        let handle = match crate::metrics::install() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "no /metrics: cannot install the Prometheus recorder");
                None
            }
        };
        // Writes are batched (claims, completions): the pool serves reads and
        // the heartbeats of long jobs, not one connection per job in flight.
        let pool_size = 16 + 4 * config.kinds.len() as u32;
        let db = Db::open_with(&config.database_url, pool_size, &config.db)
            .await
            .with_context(|| format!("database {}", redact(&config.database_url)))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::run::serve(
            listener,
            Arc::clone(&config),
            db,
            handle,
            shutdown.clone(),
        ));
        // systemd Type=notify: ready once the database is open, migrations
        // applied and the listener bound. SIGHUP: RELOADING=1, the check of
        // crate::reload, READY=1.
        runner.ready(Some("serving"));
        let reload = || {
            let status = crate::reload::Reloader::status(&reloader.reload());
            std::future::ready(status)
        };
        let mut server = server;
        let (ended, code) = match runner.wait(&mut server, reload, None).await {
            Stop::Ended(ended) => (ended, ExitCode::FAILURE),
            Stop::Signal(_) => {
                shutdown.cancel();
                match runner.drain(server).await {
                    Some(ended) => (ended, ExitCode::SUCCESS),
                    None => {
                        tracing::warn!(grace = ?runner.grace(), "shutdown grace ran out");
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        };
        ended
            .context("server task panicked")?
            .context("server failed")?;
        Ok::<_, anyhow::Error>(code)
    })
}

/// Every connection holds a descriptor, and so does each database
/// connection: the soft limit (1,024 by default) goes up to the hard one
/// (systemd's `LimitNOFILE=`) before anything is opened. Not fatal if it
/// cannot: the API serves fewer connections, and says so.
fn raise_nofile() {
    match tandem_service::rlimit::raise_nofile() {
        Ok(n) => tracing::info!(nofile = n, "descriptor limit"),
        Err(e) => {
            let soft = tandem_service::rlimit::nofile().map_or(0, |(s, _)| s);
            tracing::warn!(error = %e, nofile = soft, "descriptor limit: cannot raise the soft limit to the hard one");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert_eq!(parse_rate("5/s"), Ok(5.0));
        assert_eq!(parse_rate("120/m"), Ok(2.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("5/fortnight").is_err());
    }
}
