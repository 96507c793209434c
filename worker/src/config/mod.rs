//! The worker's TOML configuration: `RawConfig` (what serde reads) turns into
//! `Config` (validated, defaults applied) through `TryFrom`.
//!
//! Every value that has a rule is a newtype that checks it in its constructor
//! and is read through `#[serde(try_from = ...)]`, so a bad value is reported
//! by the TOML deserializer itself, with the byte span of the offending value;
//! [`ConfigError`] turns that span into `file:line:column` and adds the key
//! path (`exec.command`) from `serde_path_to_error`. The few rules that tie
//! two keys together are checked after deserialization on `toml::Spanned`
//! values, so they can point at a line too.
//!
//! One file serves every kind: `tandem worker run --kind K` picks the section
//! it needs, and only `exec` has no usable default (its command).

mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use values::{
    ConfigDuration, ContentType, EnvName, ExecCommand, Kind, ListenAddr, Positive, Side,
    UnknownKind,
};

// ---------------------------------------------------------------------------
// What serde reads.

/// The file as written. Every key is documented here; `worker.example.toml`
/// repeats the text.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Address and port the HTTP server binds, e.g. `"0.0.0.0:9101"`.
    listen: ListenAddr,
    /// Limits shared by every kind.
    #[serde(default)]
    limits: RawLimits,
    /// Settings of the `thumbnail` kind.
    #[serde(default)]
    thumbnail: RawThumbnail,
    /// Settings of the `text` kind.
    #[serde(default)]
    text: RawText,
    /// Settings of the `exec` kind; required to run `--kind exec`.
    exec: Option<RawExec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    /// Runs at once on this instance; one more is answered 503 at once.
    concurrency: Option<Positive>,
    /// `Retry-After` sent with that 503 (rounded up to whole seconds).
    retry_after: Option<ConfigDuration>,
    /// After SIGTERM: how long in-flight runs may take before the process
    /// exits anyway (with a non-zero status).
    shutdown_grace: Option<ConfigDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThumbnail {
    /// Longest a run may take (decode, resize, encode).
    timeout: Option<ConfigDuration>,
    /// Largest request body, bytes; larger is answered 413.
    max_input_bytes: Option<Positive>,
    /// Largest width × height accepted, read from the header before decoding.
    max_pixels: Option<Positive>,
    /// Largest width or height accepted, read from the header.
    max_side: Option<Side>,
    /// Box used when the request names none.
    default_width: Option<Spanned<Side>>,
    default_height: Option<Spanned<Side>>,
    /// Largest box a request may ask for.
    max_width: Option<Side>,
    max_height: Option<Side>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawText {
    /// Longest a run may take.
    timeout: Option<ConfigDuration>,
    /// Largest request body, bytes; larger is answered 413.
    max_input_bytes: Option<Positive>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    /// The program (absolute path) and its arguments; never from the request.
    command: ExecCommand,
    /// Longest a run may take; then the whole process group is killed.
    timeout: Option<ConfigDuration>,
    /// Largest request body, bytes; larger is answered 413.
    max_input_bytes: Option<Positive>,
    /// Largest stdout accepted; past it the group is killed and the run fails.
    max_output_bytes: Option<Positive>,
    /// How much of the end of stderr a failure reports.
    stderr_tail_bytes: Option<Positive>,
    /// Variables copied from the worker's own environment, if set there.
    #[serde(default)]
    pass_env: Vec<EnvName>,
    /// Variables set for the child (after `pass_env`, so these win).
    #[serde(default)]
    env: BTreeMap<EnvName, String>,
    /// Content type of the result.
    content_type: Option<ContentType>,
}

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
    /// Runs at once on this instance.
    pub concurrency: u32,
    /// `Retry-After` of a 503, whole seconds (at least 1).
    pub retry_after_secs: u64,
    /// Time in-flight runs get after a shutdown signal.
    pub shutdown_grace: Duration,
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

const MIB: u64 = 1024 * 1024;

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
        Config::try_from(raw).map_err(
            |CrossFieldError {
                 span,
                 path,
                 message,
             }| { located(Some(span), path.to_owned(), message) },
        )
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

/// A rule between two keys, found after deserialization.
struct CrossFieldError {
    span: Range<usize>,
    path: &'static str,
    message: String,
}

impl TryFrom<RawConfig> for Config {
    type Error = CrossFieldError;

    fn try_from(raw: RawConfig) -> Result<Self, Self::Error> {
        let dur = |d: Option<ConfigDuration>, default: u64| {
            d.map_or(Duration::from_secs(default), ConfigDuration::get)
        };
        let bytes = |b: Option<Positive>, default: u64| b.map_or(default, Positive::get);
        let side = |s: Option<Side>, default: u32| s.map_or(default, Side::get);

        let t = raw.thumbnail;
        let max_box = (side(t.max_width, 2048), side(t.max_height, 2048));
        let mut default_box = (256, 256);
        for (value, default, max, path, axis) in [
            (
                &t.default_width,
                &mut default_box.0,
                max_box.0,
                "thumbnail.default_width",
                "max_width",
            ),
            (
                &t.default_height,
                &mut default_box.1,
                max_box.1,
                "thumbnail.default_height",
                "max_height",
            ),
        ] {
            if let Some(v) = value {
                if v.get_ref().get() > max {
                    return Err(CrossFieldError {
                        span: v.span(),
                        path,
                        message: format!(
                            "{} is larger than thumbnail.{axis} ({max}): a default box must be \
                             one a request could ask for",
                            v.get_ref().get()
                        ),
                    });
                }
                *default = v.get_ref().get();
            }
        }
        let retry_after = dur(raw.limits.retry_after, 1);
        Ok(Config {
            listen: raw.listen.0,
            limits: Limits {
                concurrency: u32::try_from(bytes(raw.limits.concurrency, 4)).unwrap_or(u32::MAX),
                retry_after_secs: retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0),
                shutdown_grace: dur(raw.limits.shutdown_grace, 30),
            },
            thumbnail: ThumbnailConfig {
                timeout: dur(t.timeout, 10),
                max_input_bytes: bytes(t.max_input_bytes, 20 * MIB),
                max_pixels: bytes(t.max_pixels, 40_000_000),
                max_side: side(t.max_side, 16_384),
                default_box,
                max_box,
            },
            text: TextConfig {
                timeout: dur(raw.text.timeout, 5),
                max_input_bytes: bytes(raw.text.max_input_bytes, 8 * MIB),
            },
            exec: raw.exec.map(|e| ExecConfig {
                command: e.command,
                timeout: dur(e.timeout, 30),
                max_input_bytes: bytes(e.max_input_bytes, 8 * MIB),
                max_output_bytes: bytes(e.max_output_bytes, 8 * MIB),
                stderr_tail_bytes: usize::try_from(bytes(e.stderr_tail_bytes, 2048))
                    .unwrap_or(usize::MAX),
                pass_env: e.pass_env,
                env: e.env,
                content_type: e
                    .content_type
                    .unwrap_or_else(|| ContentType("application/octet-stream".to_owned())),
            }),
        })
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Why a configuration cannot be used.
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
        /// 1-based line of the offending value (0 if unknown).
        line: usize,
        /// 1-based column of the offending value (0 if unknown).
        column: usize,
        /// Key path, e.g. `exec.command`.
        path: String,
        /// What is wrong and what would be valid.
        message: String,
    },
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
        let ms = |s: &str| s.parse::<ConfigDuration>().map(|d| d.get().as_millis());
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("2m"), Ok(120_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        for bad in ["", "0s", "30", "s", "1.5s", "-1s", "10 s", "3d"] {
            assert!(ms(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bad_duration_names_file_line_column_and_key() {
        let err = parse("listen = \"127.0.0.1:1\"\n[text]\ntimeout = \"soon\"\n").unwrap_err();
        assert!(
            err.starts_with("w.toml:3:11: text.timeout: invalid duration \"soon\""),
            "{err}"
        );
        assert!(err.contains("ms, s, m or h"), "{err}");
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
            err.starts_with("w.toml:3:11: exec.command: program \"sh\" is not an absolute"),
            "{err}"
        );
        let err = parse("listen = \"127.0.0.1:1\"\n[exec]\ncommand = []\n").unwrap_err();
        assert!(err.contains("exec.command: empty command"), "{err}");
    }

    #[test]
    fn zero_limits_and_bad_env_names_are_refused() {
        let err = parse("listen = \"127.0.0.1:1\"\n[limits]\nconcurrency = 0\n").unwrap_err();
        assert!(
            err.starts_with("w.toml:3:15: limits.concurrency: invalid value 0"),
            "{err}"
        );
        let err = parse(
            "listen = \"127.0.0.1:1\"\n[exec]\ncommand = [\"/bin/cat\"]\npass_env = [\"A=B\"]\n",
        )
        .unwrap_err();
        assert!(
            err.contains("exec.pass_env[0]: invalid environment variable name"),
            "{err}"
        );
    }

    #[test]
    fn default_box_larger_than_max_box_points_at_the_default() {
        let err =
            parse("listen = \"127.0.0.1:1\"\n[thumbnail]\nmax_width = 100\ndefault_width = 200\n")
                .unwrap_err();
        assert!(
            err.starts_with("w.toml:4:17: thumbnail.default_width: 200 is larger"),
            "{err}"
        );
    }

    #[test]
    fn missing_or_bad_listen() {
        let err = parse("[text]\n").unwrap_err();
        assert!(err.contains("listen"), "{err}");
        let err = parse("listen = \"localhost\"\n").unwrap_err();
        assert!(
            err.starts_with("w.toml:1:10: listen: invalid listen address"),
            "{err}"
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
