//! The value types of the config: each checks its rule in its constructor
//! and is read through `#[serde(try_from = ...)]`, so the TOML deserializer
//! reports a bad value at its own line and column.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// The job kinds a worker instance can serve, one per instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Image in (PNG, JPEG, GIF, WebP), PNG thumbnail out.
    Thumbnail,
    /// UTF-8 text in, JSON statistics out.
    Text,
    /// The operator's command, input on stdin, result from stdout.
    Exec,
}

impl Kind {
    /// Every kind, in the order they are listed in messages.
    pub const ALL: [Kind; 3] = [Kind::Thumbnail, Kind::Text, Kind::Exec];

    /// The name used on the command line, in config section names and as the
    /// `kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Thumbnail => "thumbnail",
            Kind::Text => "text",
            Kind::Exec => "exec",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown `--kind` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kind {0:?}: valid kinds are thumbnail, text, exec")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// A strictly positive duration written as a whole number and a unit:
/// `"250ms"`, `"30s"`, `"5m"`, `"1h"`.
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
                 ms, s, m or h, e.g. \"250ms\" or \"30s\""
            )
        };
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        if d.is_zero() {
            return Err(bad());
        }
        Ok(ConfigDuration(d))
    }
}

/// A positive count or size, for limits where zero would mean "never works".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "i64")]
pub struct Positive(u64);

impl Positive {
    /// The value itself.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<i64> for Positive {
    type Error = String;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        if n > 0 {
            Ok(Positive(n as u64))
        } else {
            Err(format!(
                "invalid value {n}: expected a whole number of 1 or more"
            ))
        }
    }
}

/// One side of an image, in pixels: 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "i64")]
pub struct Side(u32);

impl Side {
    /// Largest side accepted anywhere: PNG allows more, but nothing we serve
    /// needs it and it keeps `w * h` products far from overflow.
    pub const MAX: u32 = 65_535;

    /// Checks `1..=MAX`.
    pub fn new(n: i64) -> Result<Self, String> {
        if (1..=i64::from(Self::MAX)).contains(&n) {
            Ok(Side(n as u32))
        } else {
            Err(format!(
                "invalid size {n}: expected a whole number of pixels from 1 to {}",
                Self::MAX
            ))
        }
    }

    /// The side in pixels.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Side {
    type Error = String;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        Side::new(n)
    }
}

/// The address to bind: an IP literal and a port (no host names: a worker
/// must not depend on DNS to start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ListenAddr(pub SocketAddr);

impl TryFrom<String> for ListenAddr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map(ListenAddr).map_err(|_| {
            format!(
                "invalid listen address {s:?}: expected IP:PORT such as \"0.0.0.0:9101\" \
                 or \"[::1]:9101\""
            )
        })
    }
}

/// The exec command: an absolute program path and its arguments.
///
/// Absolute because the child's environment is cleared, so there is no PATH
/// to search; and so `check` can say at once that the program is missing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct ExecCommand {
    /// The program, an absolute path.
    pub program: PathBuf,
    /// Its arguments, passed as they are (no shell).
    pub args: Vec<String>,
}

impl TryFrom<Vec<String>> for ExecCommand {
    type Error = String;

    fn try_from(mut argv: Vec<String>) -> Result<Self, Self::Error> {
        if argv.is_empty() {
            return Err("empty command: expected [\"/absolute/program\", \"arg\", ...]".into());
        }
        let program = PathBuf::from(argv.remove(0));
        if !program.is_absolute() {
            return Err(format!(
                "program {:?} is not an absolute path: the child's environment is cleared, \
                 so there is no PATH to search",
                program.display()
            ));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err("an argument contains a NUL byte".into());
        }
        Ok(ExecCommand {
            program,
            args: argv,
        })
    }
}

/// An environment variable name: non-empty, no `=` and no NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct EnvName(String);

impl EnvName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EnvName {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.is_empty() || s.contains(['=', '\0']) {
            Err(format!(
                "invalid environment variable name {s:?}: expected a non-empty name \
                 without '=' or NUL"
            ))
        } else {
            Ok(EnvName(s))
        }
    }
}

/// A MIME type for the exec result: `type/subtype`, printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ContentType(pub(super) String);

impl ContentType {
    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ContentType {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let printable = s.bytes().all(|b| (0x20..0x7f).contains(&b));
        let shaped = s
            .split(';')
            .next()
            .and_then(|t| t.trim().split_once('/'))
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
        if printable && shaped {
            Ok(ContentType(s))
        } else {
            Err(format!(
                "invalid content type {s:?}: expected a MIME type such as \
                 \"application/octet-stream\" or \"text/plain; charset=utf-8\""
            ))
        }
    }
}
