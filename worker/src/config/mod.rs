//! The worker's TOML configuration: `worker.toml` → validated [`Config`].
//!
//! The file is walked by hand with `tandem_service::config`'s walker, like
//! `lb.toml` and `api.toml` (`parse`), so `tandem worker check` reports every
//! mistake, each as `worker.toml:3:15: limits.concurrency = 0: out of range;
//! valid: ...`. The value types and their rules are in `values`.
//!
//! One file serves every kind: `tandem worker run --kind K` picks the section
//! it needs, and only `exec` has no usable default (its command).

mod parse;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tandem_service::config::walk::{self, Table, Walker};

pub use tandem_service::config::ConfigErrors;
pub use values::{ContentType, EnvName, ExecCommand, Kind, UnknownKind};

// ---------------------------------------------------------------------------
// What the program uses.

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Limits shared by every kind.
    pub limits: Limits,
    /// The `thumbnail` kind.
    pub thumbnail: ThumbnailConfig,
    /// The `text` kind.
    pub text: TextConfig,
    /// The `exec` kind, if configured.
    pub exec: Option<ExecConfig>,
}

/// Limits shared by every kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Runs at once on this instance; advertised as `X-Tandem-Slots`.
    pub concurrency: u32,
    /// `Retry-After` of a 503, whole seconds (at least 1).
    pub retry_after_secs: u64,
    /// Time in-flight runs get after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Longest from the first byte of a request to the end of its head
    /// (request line and headers); then the connection is closed.
    pub header_read_timeout: Duration,
    /// Longest a connection may sit with no request in flight and no byte
    /// moving either way (a kept-alive connection between requests, or a
    /// client that stopped reading its answer); then it is closed.
    pub idle_timeout: Duration,
}

/// The `thumbnail` kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailConfig {
    /// Longest a run may take.
    pub timeout: Duration,
    /// Largest request body, bytes.
    pub max_input_bytes: u64,
    /// Largest width × height, checked on the header before decoding.
    pub max_pixels: u64,
    /// Largest width or height, checked on the header before decoding.
    pub max_side: u32,
    /// Box used when the request names none, `(width, height)`.
    pub default_box: (u32, u32),
    /// Largest box a request may ask for, `(width, height)`.
    pub max_box: (u32, u32),
}

/// The `text` kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextConfig {
    /// Longest a run may take.
    pub timeout: Duration,
    /// Largest request body, bytes.
    pub max_input_bytes: u64,
}

/// The `exec` kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// What to run.
    pub command: ExecCommand,
    /// Longest a run may take.
    pub timeout: Duration,
    /// Largest request body, bytes.
    pub max_input_bytes: u64,
    /// Largest stdout, bytes.
    pub max_output_bytes: u64,
    /// Bytes of stderr's end quoted in a failure.
    pub stderr_tail_bytes: usize,
    /// Variables copied from the worker's environment.
    pub pass_env: Vec<EnvName>,
    /// Variables set for the child.
    pub env: BTreeMap<EnvName, String>,
    /// Content type of the result.
    pub content_type: ContentType,
}

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
        let config = parse::root(&mut w, &Table::root(&doc));
        w.finish(config)
    }

    /// The settings of `kind`, or why this file cannot run it.
    pub fn check_kind(&self, kind: Kind) -> Result<(), ConfigError> {
        match kind {
            Kind::Exec if self.exec.is_none() => Err(ConfigError::KindNotConfigured(kind)),
            _ => Ok(()),
        }
    }

    /// Largest request body for `kind`, bytes.
    pub fn max_input_bytes(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Thumbnail => self.thumbnail.max_input_bytes,
            Kind::Text => self.text.max_input_bytes,
            Kind::Exec => self.exec.as_ref().map_or(0, |e| e.max_input_bytes),
        }
    }

    /// Longest run of `kind`.
    pub fn timeout(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Thumbnail => self.thumbnail.timeout,
            Kind::Text => self.text.timeout,
            Kind::Exec => self
                .exec
                .as_ref()
                .map_or(Duration::from_secs(30), |e| e.timeout),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file has mistakes, every one of them located.
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
    /// `--kind` names a kind this file has no section for.
    #[error("kind {0} needs an [{0}] section in the config file")]
    KindNotConfigured(Kind),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("w.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_file_takes_defaults() {
        let c = parse("listen = \"127.0.0.1:9101\"\n").unwrap();
        assert_eq!(c.limits.concurrency, 4);
        assert_eq!(c.limits.retry_after_secs, 1);
        assert_eq!(c.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.thumbnail.default_box, (256, 256));
        assert_eq!(c.text.timeout, Duration::from_secs(5));
        assert!(c.exec.is_none());
        assert!(matches!(
            c.check_kind(Kind::Exec),
            Err(ConfigError::KindNotConfigured(Kind::Exec))
        ));
        assert!(c.check_kind(Kind::Text).is_ok());
    }

    #[test]
    fn durations_parse_with_units() {
        let ms = |s: &str| {
            parse(&format!(
                "listen = \"127.0.0.1:1\"\n[text]\ntimeout = \"{s}\"\n"
            ))
            .map(|c| c.text.timeout.as_millis())
        };
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        // The grammar shared with lb.toml and api.toml.
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("1m30s"), Ok(90_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        for bad in ["", "0s", "30", "s", "-1s", "10 s", "3w"] {
            assert!(ms(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bad_duration_names_file_line_column_and_key() {
        let err = parse("listen = \"127.0.0.1:1\"\n[text]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(
            err.starts_with("w.toml:3:11: text.timeout = \"soon\": not a duration"),
            "{err}"
        );
        assert!(err.contains("valid: a duration such as \"250ms\""), "{err}");
    }

    #[test]
    fn unknown_key_is_refused_with_the_valid_ones() {
        let err = parse("listen = \"127.0.0.1:1\"\n[limits]\nconcurency = 3\n").unwrap_err();
        assert!(err.starts_with("w.toml:3:1: limits"), "{err}");
        assert!(
            err.contains("concurency") && err.contains("concurrency"),
            "{err}"
        );
    }

    #[test]
    fn exec_command_must_be_absolute_and_non_empty() {
        let err =
            parse("listen = \"127.0.0.1:1\"\n[exec]\ncommand = [\"sh\", \"-c\"]\n").unwrap_err();
        assert!(
            err.starts_with(
                "w.toml:3:12: exec.command[0] = \"sh\": the program is not an absolute path"
            ),
            "{err}"
        );
        let err = parse("listen = \"127.0.0.1:1\"\n[exec]\ncommand = []\n").unwrap_err();
        assert!(err.contains("exec.command = []: empty command"), "{err}");
    }

    #[test]
    fn zero_limits_and_bad_env_names_are_refused() {
        let err = parse("listen = \"127.0.0.1:1\"\n[limits]\nconcurrency = 0\n").unwrap_err();
        assert!(
            err.starts_with("w.toml:3:15: limits.concurrency = 0: out of range"),
            "{err}"
        );
        let err = parse(
            "listen = \"127.0.0.1:1\"\n[exec]\ncommand = [\"/bin/cat\"]\npass_env = [\"A=B\"]\n",
        )
        .unwrap_err();
        assert!(
            err.contains("exec.pass_env[0] = \"A=B\": invalid environment variable name"),
            "{err}"
        );
    }

    #[test]
    fn default_box_larger_than_max_box_points_at_the_default() {
        let err =
            parse("listen = \"127.0.0.1:1\"\n[thumbnail]\nmax_width = 100\ndefault_width = 200\n")
                .unwrap_err();
        assert!(
            err.starts_with(
                "w.toml:4:17: thumbnail.default_width = 200: conflicts with thumbnail.max_width = 100"
            ),
            "{err}"
        );
    }

    #[test]
    fn missing_or_bad_listen() {
        let err = parse("[text]\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
        let err = parse("listen = \"localhost\"\n").unwrap_err();
        assert!(
            err.starts_with("w.toml:1:10: listen = \"localhost\": not an IP:port address"),
            "{err}"
        );
    }

    #[test]
    fn every_error_is_reported_with_its_location() {
        let err = parse(
            "listen = \"127.0.0.1:1\"\n[limits]\nconcurrency = 0\nretry_after = \"1x\"\n\
             [thumbnail]\nmax_width = 100\ndefault_width = 200\n\
             [exec]\ncommand = [\"/bin/cat\", \"a\\u0000b\"]\nenv = { \"A=B\" = \"c\" }\n",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "w.toml:3:15: limits.concurrency = 0: out of range; valid: an integer from 1 to 4294967295\n\
             w.toml:4:15: limits.retry_after = \"1x\": not a duration: unknown unit \"x\" \
             (units: ms, s, m, h, d); valid: a duration such as \"250ms\", \"2s\" or \"5m\", greater than zero\n\
             w.toml:7:17: thumbnail.default_width = 200: conflicts with thumbnail.max_width = 100; \
             valid: at most thumbnail.max_width: a default box must be one a request could ask for\n\
             w.toml:9:24: exec.command[1] = \"a\\u0000b\": contains a NUL byte; \
             valid: [\"/absolute/program\", \"arg\", ...], no NUL byte\n\
             w.toml:10:9: exec.env.A=B: invalid environment variable name; \
             valid: a non-empty environment variable name without '=' or NUL"
        );
        // A missing required key is located at its table.
        let err = parse("listen = \"127.0.0.1:1\"\n[exec]\ntimeout = \"1s\"\n").unwrap_err();
        assert_eq!(
            err,
            "w.toml:2:1: exec.command: missing required key; \
             valid: [\"/absolute/program\", \"arg\", ...], no NUL byte"
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_location() {
        let err = parse("listen = \n").unwrap_err();
        assert!(err.starts_with("w.toml:1:"), "{err}");
    }

    #[test]
    fn kinds_parse_by_name() {
        assert_eq!("exec".parse::<Kind>(), Ok(Kind::Exec));
        let err = "resize".parse::<Kind>().unwrap_err().to_string();
        assert!(err.contains("thumbnail, text, exec"), "{err}");
    }
}
