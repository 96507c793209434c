//! `api.toml` → validated [`Config`].
//!
//! The file is walked by hand with `tandem_service::config`'s walker, like
//! `lb.toml`, so `tandem api check` reports *every* mistake, each as
//! `api.toml:7:15: kinds.text.concurrency = 0: out of range; valid: ...`
//! (file:line:column, field path, the value as written, what is valid).
//! Durations follow the grammar shared by all three config files
//! (`"250ms"`, `"1.5s"`, `"1m30s"`, `"7d"`). Defaults are applied here and
//! nowhere else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_service::config::ErrorKind;

use crate::cidr::{self, Cidr};
use tandem_service::config::values::{bind_addr, duration, integer, one_of, string};
use tandem_service::config::walk::{self, Reported, Table, Walker};
use toml::de::DeValue;

pub use tandem_service::config::{ConfigError, ConfigErrors};

mod http;
mod lifecycle;

pub use http::HttpTimeouts;

pub use lifecycle::Lifecycle;

mod webhooks;
pub use webhooks::WebhookConfig;

/// Whether connections start with a PROXY protocol header (v1 or v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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

impl ProxyProtocol {
    /// Every value with its name in the file, in the order the docs list them.
    const NAMES: [(&'static str, ProxyProtocol); 3] = [
        ("off", ProxyProtocol::Off),
        ("optional", ProxyProtocol::Optional),
        ("required", ProxyProtocol::Required),
    ];
}

/// One job kind: where its workers are and how hard to push them.
#[derive(Debug, Clone)]
pub struct KindConfig {
    /// Base URL of the kind's worker pool (the balancer's VIP and port);
    /// the dispatcher posts to `{url}/v1/run`.
    pub url: String,
    /// Safety cap on the jobs of this kind in flight from one replica at
    /// once. The limit itself adapts to the pool (`crate::limit`); this
    /// only bounds it.
    pub max_concurrency: u32,
    /// A pooled connection to the kind's pool is not reused past this age,
    /// so new connections (which the balancer may send to a worker that
    /// joined) replace old ones under steady load.
    pub connection_lifetime: Duration,
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

/// `PRAGMA synchronous` for the SQLite file (always in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    /// The WAL is fsynced at every commit: a committed job survives a
    /// process crash and a power loss or kernel crash.
    #[default]
    Full,
    /// The WAL is fsynced only at checkpoints: a committed job survives a
    /// process crash (SIGKILL), but the last commits before a power loss or
    /// kernel crash may be lost (the file stays consistent).
    Normal,
}

impl SqliteSync {
    /// Every value with its name in the file.
    const NAMES: [(&'static str, SqliteSync); 2] =
        [("full", SqliteSync::Full), ("normal", SqliteSync::Normal)];

    /// The PRAGMA value.
    pub fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        }
    }
}

/// How the database is driven: SQLite settings and the group commit of
/// submissions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DbSettings {
    /// `PRAGMA synchronous` (SQLite only).
    pub sqlite_synchronous: SqliteSync,
    /// How long a SQLite writer waits for another process's write lock
    /// before failing with SQLITE_BUSY (SQLite only).
    pub sqlite_busy_timeout: Duration,
    /// Most submissions committed in one transaction.
    pub submit_batch: usize,
    /// Longest a submission waits for others to join its batch, counted
    /// from its arrival; zero commits what has arrived at once.
    pub submit_window: Duration,
    /// Submissions that may wait for the batcher; past this, 503.
    pub submit_queue: usize,
}

impl Default for DbSettings {
    fn default() -> Self {
        DbSettings {
            sqlite_synchronous: SqliteSync::Full,
            sqlite_busy_timeout: Duration::from_secs(10),
            submit_batch: 256,
            submit_window: Duration::from_millis(2),
            submit_queue: 4096,
        }
    }
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
    /// Peers whose PROXY header is believed; one from any other peer
    /// closes the connection (see `conn`).
    pub proxy_protocol_from: Vec<Cidr>,
    /// How long a new connection may take to send its PROXY header.
    pub proxy_header_timeout: Duration,
    /// How long a connection may wait for, send or hold a request.
    pub http: HttpTimeouts,
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
    /// SQLite settings and the submission batcher.
    pub db: DbSettings,
    /// Retention of finished jobs, and waits for them.
    pub lifecycle: Lifecycle,
    /// Job kinds by name.
    pub kinds: BTreeMap<String, KindConfig>,
    /// `[webhooks]`: the callback policy and delivery settings.
    pub webhooks: WebhookConfig,
}

/// Default cap on a kind's jobs in flight from one replica: high, since the
/// limit under it adapts; it bounds memory and connections if a pool
/// never says "full".
pub const DEFAULT_MAX_CONCURRENCY: u32 = 512;

/// Largest `max_concurrency`.
pub const MAX_CONCURRENCY: u32 = 16_384;

/// Whose PROXY header is believed when `proxy_protocol_from` is not set:
/// this host's own (a balancer on the same machine, as `tandem up` runs
/// it). A balancer elsewhere must be listed.
pub const DEFAULT_PROXY_FROM: &[Cidr] = &[
    cidr::v4(127, 0, 0, 0, 8),
    cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
];

/// Default state directory, where the SQLite file lives.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/tandem";

const ROOT_KEYS: &[&str] = &[
    "listen",
    "state_dir",
    "database_url",
    "proxy_protocol",
    "proxy_protocol_from",
    "proxy_header_timeout",
    "request_log_retention",
    "lease",
    "poll_interval",
    "shutdown_grace",
    "default_rate",
    "default_burst",
    "sqlite_synchronous",
    "sqlite_busy_timeout",
    "submit_batch",
    "submit_window",
    "submit_queue",
    "kinds",
    "webhooks",
];
const KIND_KEYS: &[&str] = &[
    "url",
    "max_concurrency",
    "concurrency",
    "connection_lifetime",
    "timeout",
    "max_attempts",
    "max_input_bytes",
    "retry_base",
    "retry_max",
];

const VALID_LISTEN: &str = r#"an IP:port such as "127.0.0.1:8080" or "[::1]:8080""#;
const VALID_DATABASE: &str =
    r#"a sqlx URL: "sqlite://PATH?mode=rwc", "mysql://USER:PASS@HOST/DB" or "mariadb://...""#;
const VALID_FROM: &str =
    r#"an array of CIDRs or addresses, such as ["198.18.0.10/32", "198.18.0.11"]"#;
const VALID_KIND_NAME: &str = "1 to 64 characters from A-Z a-z 0-9 _ -";
const VALID_URL: &str = r#"http://HOST:PORT, such as "http://198.18.0.100:8001" (workers speak plain HTTP behind the balancer)"#;

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        tandem_service::config::load(path, Config::parse)
    }

    /// Validates `text`; `file` only names the source in errors. Returns
    /// every error found, in file order; a TOML syntax error is reported
    /// alone since nothing after it can be read.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
        let doc = walk::document(text, file)?;
        let mut w = Walker::new(text, file);
        let root = Table::root(&doc);
        let keys: Vec<&str> = ROOT_KEYS
            .iter()
            .chain(lifecycle::KEYS)
            .chain(http::KEYS)
            .copied()
            .collect();
        w.check_keys(&root, &keys, "the top level");
        let config = parse_root(&mut w, &root);
        w.finish(config)
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

/// The top level. Every field is read before any `?`, so one bad value does
/// not hide the next.
fn parse_root(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<Config, Reported> {
    let listen = w.field(root, "listen", VALID_LISTEN, bind_addr);
    let state_dir = w.field(root, "state_dir", "a directory path", |v| {
        string(v).map(PathBuf::from)
    });
    let database_url = w.field(root, "database_url", VALID_DATABASE, database_url);
    let names = ProxyProtocol::NAMES.map(|(n, _)| n).join(", ");
    let proxy_protocol = w.field(root, "proxy_protocol", &format!("one of {names}"), |v| {
        one_of(v, ProxyProtocol::NAMES.into_iter(), "PROXY protocol mode")
    });
    let proxy_protocol_from = w.array(root, "proxy_protocol_from", VALID_FROM, None, |_, v| {
        Cidr::parse(string(v)?).map_err(ErrorKind::Invalid)
    });
    let secs = Duration::from_secs;
    let proxy_header_timeout = w.positive_duration(root, "proxy_header_timeout", secs(3));
    let retention = w.positive_duration(root, "request_log_retention", secs(7 * 86_400));
    let lease = w.positive_duration(root, "lease", secs(30));
    let poll_interval = w.positive_duration(root, "poll_interval", Duration::from_millis(500));
    let shutdown_grace = w.positive_duration(root, "shutdown_grace", secs(30));
    let default_rate = w.field(
        root,
        "default_rate",
        "a number of requests per second greater than zero, such as 10.0",
        rate,
    );
    let default_burst = w.integer_or(root, "default_burst", (1, u32::MAX.into()), 20);
    let db = parse_db(w, root);
    let lifecycle = lifecycle::parse(w, root);
    let wait_max = lifecycle.as_ref().ok().map(|l| l.wait_max);
    let http = http::parse(w, root, wait_max);
    let kinds = parse_kinds(w, root);
    let webhooks = webhooks::parse(w, root);
    let state_dir = state_dir?.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    Ok(Config {
        listen: listen?.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        database_url: database_url?
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", state_dir.join("api.db").display())),
        proxy_protocol: proxy_protocol?.unwrap_or_default(),
        proxy_protocol_from: proxy_protocol_from?.map_or_else(
            || DEFAULT_PROXY_FROM.to_vec(),
            |list| list.into_iter().map(|(c, _)| c).collect(),
        ),
        proxy_header_timeout: proxy_header_timeout?,
        http: http?,
        request_log_retention: retention?,
        lease: lease?,
        poll_interval: poll_interval?,
        shutdown_grace: shutdown_grace?,
        default_rate: default_rate?.unwrap_or(10.0),
        // Cannot truncate: integer_or() checked the range.
        default_burst: default_burst? as u32,
        db: db?,
        lifecycle: lifecycle?,
        kinds: kinds?,
        webhooks: webhooks?,
    })
}

/// The database keys of the top level; every one read before any `?`.
fn parse_db(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<DbSettings, Reported> {
    let d = DbSettings::default();
    let names = SqliteSync::NAMES.map(|(n, _)| n).join(", ");
    let sync = w.field(
        root,
        "sqlite_synchronous",
        &format!("one of {names}"),
        |v| one_of(v, SqliteSync::NAMES.into_iter(), "synchronous mode"),
    );
    let busy = w.positive_duration(root, "sqlite_busy_timeout", d.sqlite_busy_timeout);
    let batch = w.integer_or(root, "submit_batch", (1, 1000), d.submit_batch as i64);
    let window = w.field(
        root,
        "submit_window",
        "a duration from \"0ms\" to \"100ms\", such as \"2ms\"",
        |v| match duration(v, false)? {
            d if d <= Duration::from_millis(100) => Ok(d),
            _ => Err(ErrorKind::OutOfRange),
        },
    );
    let queue = w.integer_or(root, "submit_queue", (1, 1_000_000), d.submit_queue as i64);
    // The casts cannot truncate: integer_or() checked the ranges.
    Ok(DbSettings {
        sqlite_synchronous: sync?.unwrap_or_default(),
        sqlite_busy_timeout: busy?,
        submit_batch: batch? as usize,
        submit_window: window?.unwrap_or(d.submit_window),
        submit_queue: queue? as usize,
    })
}

/// `sqlite:`, `mysql:` or `mariadb:` (which sqlx knows as mysql).
fn database_url(v: &DeValue<'_>) -> Result<String, ErrorKind> {
    let u = string(v)?;
    if u.starts_with("sqlite:") || u.starts_with("mysql:") || u.starts_with("mariadb:") {
        Ok(u.replacen("mariadb:", "mysql:", 1))
    } else {
        Err(ErrorKind::Invalid("unsupported database".into()))
    }
}

/// A finite number above zero; an integer is taken as a float.
fn rate(v: &DeValue<'_>) -> Result<f64, ErrorKind> {
    let r = match v {
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
        DeValue::Integer(_) => integer(v, i64::MIN, i64::MAX).ok().map(|i| i as f64),
        other => {
            return Err(ErrorKind::WrongType {
                found: other.type_str(),
            });
        }
    };
    match r {
        Some(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(ErrorKind::OutOfRange),
    }
}

/// `[kinds.NAME]`, in name order.
fn parse_kinds(
    w: &mut Walker<'_>,
    root: &Table<'_, '_>,
) -> Result<BTreeMap<String, KindConfig>, Reported> {
    let Some(v) = root.get("kinds") else {
        return Ok(BTreeMap::new());
    };
    let kinds = w.as_table(v, "kinds".into(), "[kinds.NAME]")?;
    let mut out = Ok(BTreeMap::new());
    for (name, v) in kinds.entries.iter() {
        let path = kinds.field(name.get_ref());
        let kind = kind_name(name.get_ref())
            .map_err(|kind| w.push(&name.span(), path.clone(), None, kind, VALID_KIND_NAME))
            .and_then(|()| w.as_table(v, path, "[kinds.NAME]"))
            .and_then(|table| {
                w.check_keys(&table, KIND_KEYS, "[kinds.NAME]");
                parse_kind(w, &table)
            });
        match (kind, &mut out) {
            (Ok(kind), Ok(map)) => {
                map.insert(name.get_ref().to_string(), kind);
            }
            (Ok(_), Err(_)) => {}
            (Err(r), _) => out = Err(r),
        }
    }
    out
}

fn kind_name(name: &str) -> Result<(), ErrorKind> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if name.is_empty() || name.len() > 64 || !name.bytes().all(allowed) {
        Err(ErrorKind::Invalid("not a kind name".into()))
    } else {
        Ok(())
    }
}

/// One `[kinds.NAME]` table.
fn parse_kind(w: &mut Walker<'_>, table: &Table<'_, '_>) -> Result<KindConfig, Reported> {
    let url = w.required(table, "url", VALID_URL, |v| {
        let u = string(v)?;
        if u.starts_with("http://") {
            Ok(u.trim_end_matches('/').to_owned())
        } else {
            Err(ErrorKind::Invalid("not an http:// URL".into()))
        }
    });
    let u32_max = i64::from(u32::MAX);
    // `concurrency` was a fixed number of jobs in flight per replica; the
    // limit adapts now, and the old key is read as the cap it has become.
    // At most 16,384: a claim names its jobs in one statement, and SQLite
    // binds at most 32,766 values.
    let cap = (1, i64::from(MAX_CONCURRENCY));
    let old = w.integer_or(table, "concurrency", cap, DEFAULT_MAX_CONCURRENCY.into());
    let max_concurrency = w.integer_or(
        table,
        "max_concurrency",
        cap,
        old.unwrap_or(DEFAULT_MAX_CONCURRENCY.into()),
    );
    let max_attempts = w.integer_or(table, "max_attempts", (1, u32_max), 5);
    let max_input_bytes = w.integer_or(table, "max_input_bytes", (1, i64::MAX), 1024 * 1024);
    let secs = Duration::from_secs;
    let timeout = w.positive_duration(table, "timeout", secs(30));
    let retry_base = w.positive_duration(table, "retry_base", secs(1));
    let retry_max = w.positive_duration(table, "retry_max", secs(300));
    let connection_lifetime = w.positive_duration(table, "connection_lifetime", secs(2));
    old?;
    // The casts cannot truncate: integer_or() checked the ranges.
    Ok(KindConfig {
        url: url?,
        max_concurrency: max_concurrency? as u32,
        connection_lifetime: connection_lifetime?,
        timeout: timeout?,
        max_attempts: max_attempts? as u32,
        max_input_bytes: max_input_bytes? as u64,
        retry_base: retry_base?,
        retry_max: retry_max?,
    })
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;

#[cfg(test)]
mod example {
    #[test]
    fn the_example_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api.example.toml");
        let c = super::Config::load(&path).unwrap();
        assert_eq!(c.kinds.len(), 2);
    }
}
