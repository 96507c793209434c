//! `api.toml` → validated [`Config`].
//!
//! The file is deserialized strictly (`deny_unknown_fields`) through
//! `serde_path_to_error`, so a mistake is reported as
//! `file:line:column: kinds.thumbnail.timeout: invalid duration ...`.
//! Defaults are applied here and nowhere else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A strictly positive duration written as a whole number and a unit:
/// `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct ConfigDuration(Duration);

impl ConfigDuration {
    /// The duration itself.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl TryFrom<String> for ConfigDuration {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for ConfigDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid duration {s:?}: expected a positive whole number followed by \
                 ms, s, m, h or d, e.g. \"250ms\" or \"30s\""
            )
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let secs = |mul: u64| n.checked_mul(mul).map(Duration::from_secs).ok_or_else(bad);
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => secs(1)?,
            "m" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86400)?,
            _ => return Err(bad()),
        };
        if d.is_zero() {
            return Err(bad());
        }
        Ok(ConfigDuration(d))
    }
}

/// Whether connections start with a PROXY protocol header (v1 or v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// Never: the peer address is the client's.
    Off,
    /// A header is read when the first bytes are one; direct connections
    /// (`tandem up`, tests, a curl on the box) work too.
    #[default]
    Optional,
    /// Every connection must start with a header; others are closed. Use
    /// this when only the balancer can reach the API.
    Required,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<SocketAddr>,
    state_dir: Option<PathBuf>,
    database_url: Option<String>,
    proxy_protocol: Option<ProxyProtocol>,
    proxy_header_timeout: Option<ConfigDuration>,
    request_log_retention: Option<ConfigDuration>,
    lease: Option<ConfigDuration>,
    poll_interval: Option<ConfigDuration>,
    shutdown_grace: Option<ConfigDuration>,
    default_rate: Option<f64>,
    default_burst: Option<u32>,
    #[serde(default)]
    kinds: BTreeMap<String, RawKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKind {
    url: String,
    concurrency: Option<u32>,
    timeout: Option<ConfigDuration>,
    max_attempts: Option<u32>,
    max_input_bytes: Option<u64>,
    retry_base: Option<ConfigDuration>,
    retry_max: Option<ConfigDuration>,
}

/// One job kind: where its workers are and how hard to push them.
#[derive(Debug, Clone)]
pub struct KindConfig {
    /// Base URL of the kind's worker pool (the balancer's VIP and port);
    /// the dispatcher posts to `{url}/v1/run`.
    pub url: String,
    /// Jobs of this kind in flight from one replica at once.
    pub concurrency: u32,
    /// Longest one worker call may take before it counts as a failed attempt.
    pub timeout: Duration,
    /// Attempts before the job fails with its last error (≥ 1).
    pub max_attempts: u32,
    /// Largest accepted job input, bytes of the decoded input.
    pub max_input_bytes: u64,
    /// First retry delay; doubles each attempt, with full jitter.
    pub retry_base: Duration,
    /// Ceiling of the retry delay.
    pub retry_max: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// sqlx URL: `sqlite://PATH?mode=rwc` or `mysql://user:pass@host/db`.
    pub database_url: String,
    /// Whether connections carry a PROXY protocol header.
    pub proxy_protocol: ProxyProtocol,
    /// How long a new connection may take to send its PROXY header.
    pub proxy_header_timeout: Duration,
    /// Request log rows older than this are deleted.
    pub request_log_retention: Duration,
    /// A claimed job's lease; heartbeats renew it at a third of this.
    pub lease: Duration,
    /// How often an idle dispatcher looks for queued jobs.
    pub poll_interval: Duration,
    /// After SIGTERM: how long in-flight requests may take.
    pub shutdown_grace: Duration,
    /// Rate (requests per second) for keys created without `--rate`.
    pub default_rate: f64,
    /// Burst for keys created without `--burst`.
    pub default_burst: u32,
    /// Job kinds by name.
    pub kinds: BTreeMap<String, KindConfig>,
}

/// Why a config file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a value breaks a rule.
    #[error("{}:{line}:{column}: {}{message}", file.display(), if path.is_empty() || path == "." { String::new() } else { format!("{path}: ") })]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// Key path, e.g. `kinds.text.url`.
        path: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

/// Default state directory, where the SQLite file lives.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tandem";

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates `text`; `file` only names the source in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let located = |span: Option<Range<usize>>, path: String, message: String| {
            let (line, column) = span.map_or((0, 0), |s| line_column(text, s.start));
            ConfigError::Invalid {
                file: file.to_owned(),
                line,
                column,
                path,
                message,
            }
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| located(e.span(), String::new(), e.message().to_owned()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            located(inner.span(), path, inner.message().to_owned())
        })?;
        let invalid = |path: String, message: String| located(None, path, message);

        let state_dir = raw
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let database_url = match raw.database_url {
            Some(u)
                if u.starts_with("sqlite:")
                    || u.starts_with("mysql:")
                    || u.starts_with("mariadb:") =>
            {
                // sqlx knows MariaDB as mysql.
                u.replacen("mariadb:", "mysql:", 1)
            }
            Some(u) => {
                return Err(invalid(
                    "database_url".into(),
                    format!(
                        "unsupported database {u:?}: expected sqlite://PATH or mysql://USER:PASS@HOST/DB"
                    ),
                ));
            }
            None => format!("sqlite://{}?mode=rwc", state_dir.join("api.db").display()),
        };
        let default_rate = raw.default_rate.unwrap_or(10.0);
        if !(default_rate.is_finite() && default_rate > 0.0) {
            return Err(invalid(
                "default_rate".into(),
                "must be a positive number of requests per second".into(),
            ));
        }
        let default_burst = raw.default_burst.unwrap_or(20);
        if default_burst == 0 {
            return Err(invalid("default_burst".into(), "must be at least 1".into()));
        }
        let mut kinds = BTreeMap::new();
        for (name, k) in raw.kinds {
            let at = |field: &str| format!("kinds.{name}.{field}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                || name.len() > 64
            {
                return Err(invalid(
                    format!("kinds.{name}"),
                    "a kind name is 1-64 letters, digits, '_' or '-'".into(),
                ));
            }
            if !(k.url.starts_with("http://")) {
                return Err(invalid(
                    at("url"),
                    format!(
                        "{:?}: expected http://HOST:PORT (workers speak plain HTTP behind the balancer)",
                        k.url
                    ),
                ));
            }
            let concurrency = k.concurrency.unwrap_or(4);
            if concurrency == 0 {
                return Err(invalid(at("concurrency"), "must be at least 1".into()));
            }
            let max_attempts = k.max_attempts.unwrap_or(5);
            if max_attempts == 0 {
                return Err(invalid(at("max_attempts"), "must be at least 1".into()));
            }
            let max_input_bytes = k.max_input_bytes.unwrap_or(1024 * 1024);
            if max_input_bytes == 0 {
                return Err(invalid(at("max_input_bytes"), "must be at least 1".into()));
            }
            kinds.insert(
                name.clone(),
                KindConfig {
                    url: k.url.trim_end_matches('/').to_owned(),
                    concurrency,
                    timeout: k
                        .timeout
                        .map_or(Duration::from_secs(30), ConfigDuration::get),
                    max_attempts,
                    max_input_bytes,
                    retry_base: k
                        .retry_base
                        .map_or(Duration::from_secs(1), ConfigDuration::get),
                    retry_max: k
                        .retry_max
                        .map_or(Duration::from_secs(300), ConfigDuration::get),
                },
            );
        }
        Ok(Config {
            listen: raw
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            database_url,
            proxy_protocol: raw.proxy_protocol.unwrap_or_default(),
            proxy_header_timeout: raw
                .proxy_header_timeout
                .map_or(Duration::from_secs(3), ConfigDuration::get),
            request_log_retention: raw
                .request_log_retention
                .map_or(Duration::from_secs(7 * 86400), ConfigDuration::get),
            lease: raw
                .lease
                .map_or(Duration::from_secs(30), ConfigDuration::get),
            poll_interval: raw
                .poll_interval
                .map_or(Duration::from_millis(500), ConfigDuration::get),
            shutdown_grace: raw
                .shutdown_grace
                .map_or(Duration::from_secs(30), ConfigDuration::get),
            default_rate,
            default_burst,
            kinds,
        })
    }

    /// The largest body `POST /v1/jobs` may carry: the largest kind limit,
    /// doubled for JSON string escaping, plus room for the envelope.
    pub fn max_request_bytes(&self) -> usize {
        let largest = self
            .kinds
            .values()
            .map(|k| k.max_input_bytes)
            .max()
            .unwrap_or(0);
        usize::try_from(largest.saturating_mul(2).saturating_add(64 * 1024)).unwrap_or(usize::MAX)
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("api.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_use_sqlite_in_the_state_dir() {
        let c =
            parse("state_dir = \"/tmp/x\"\n[kinds.text]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
        assert_eq!(c.database_url, "sqlite:///tmp/x/api.db?mode=rwc");
        let k = &c.kinds["text"];
        assert_eq!((k.concurrency, k.max_attempts), (4, 5));
        assert_eq!(c.proxy_protocol, ProxyProtocol::Optional);
    }

    #[test]
    fn errors_name_line_and_path() {
        let e = parse("[kinds.text]\nurl = \"http://a:1\"\ntimeout = \"5 parsecs\"\n").unwrap_err();
        assert!(
            e.starts_with("api.toml:3:11: kinds.text.timeout: invalid duration"),
            "{e}"
        );
        let e = parse("lisen = \"1.2.3.4:5\"\n").unwrap_err();
        assert!(e.contains("unknown field `lisen`"), "{e}");
        let e = parse("[kinds.text]\nurl = \"ftp://a\"\n").unwrap_err();
        assert!(e.contains("kinds.text.url"), "{e}");
        let e = parse("database_url = \"postgres://x\"\n").unwrap_err();
        assert!(e.contains("unsupported database"), "{e}");
    }

    #[test]
    fn mariadb_scheme_is_mysql() {
        let c = parse("database_url = \"mariadb://u:p@127.0.0.1/t\"\n").unwrap();
        assert_eq!(c.database_url, "mysql://u:p@127.0.0.1/t");
    }
}

#[cfg(test)]
mod example {
    #[test]
    fn the_example_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api.example.toml");
        let c = super::Config::load(&path).unwrap();
        assert_eq!(c.kinds.len(), 2);
    }
}
