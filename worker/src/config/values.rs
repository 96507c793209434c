//! The value types of the config, each checking its rule in its
//! constructor, and their converters from one TOML value for the walk
//! (`super::parse`). A constructor's error is the problem alone; the walk
//! adds file:line:column, the field path, the value and what is valid.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tandem_service::config::ErrorKind;
use tandem_service::config::values::string;
use toml::de::DeValue;

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

/// The exec command: an absolute program path and its arguments.
///
/// Absolute because the child's environment is cleared, so there is no PATH
/// to search; and so `check` can say at once that the program is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    /// The program, an absolute path.
    pub program: PathBuf,
    /// Its arguments, passed as they are (no shell).
    pub args: Vec<String>,
}

impl ExecCommand {
    /// What a valid command looks like.
    pub const VALID: &str = r#"["/absolute/program", "arg", ...], no NUL byte"#;

    /// One word of the command, `first` being the program.
    pub fn word(v: &DeValue<'_>, first: bool) -> Result<String, ErrorKind> {
        let s = string(v)?;
        if s.contains('\0') {
            Err(ErrorKind::Invalid("contains a NUL byte".into()))
        } else if first && !s.starts_with('/') {
            Err(ErrorKind::Invalid(
                "the program is not an absolute path: the child's environment is cleared, \
                 so there is no PATH to search"
                    .into(),
            ))
        } else {
            Ok(s.to_owned())
        }
    }

    /// A command from words that [`ExecCommand::word`] checked; None if empty.
    pub fn from_words(mut words: Vec<String>) -> Option<Self> {
        if words.is_empty() {
            return None;
        }
        let program = PathBuf::from(words.remove(0));
        Some(ExecCommand {
            program,
            args: words,
        })
    }
}

/// An environment variable name: non-empty, no `=` and no NUL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EnvName(String);

impl EnvName {
    /// What a valid name looks like.
    pub const VALID: &str = "a non-empty environment variable name without '=' or NUL";

    /// Checks the rule.
    pub fn new(s: &str) -> Result<Self, ErrorKind> {
        if s.is_empty() || s.contains(['=', '\0']) {
            Err(ErrorKind::Invalid(
                "invalid environment variable name".into(),
            ))
        } else {
            Ok(EnvName(s.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A MIME type for the exec result: `type/subtype`, printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(pub(super) String);

impl ContentType {
    /// What a valid content type looks like.
    pub const VALID: &str =
        r#"a MIME type such as "application/octet-stream" or "text/plain; charset=utf-8""#;

    /// Reads and checks one from the file.
    pub fn from_value(v: &DeValue<'_>) -> Result<Self, ErrorKind> {
        let s = string(v)?;
        let printable = s.bytes().all(|b| (0x20..0x7f).contains(&b));
        let shaped = s
            .split(';')
            .next()
            .and_then(|t| t.trim().split_once('/'))
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
        if printable && shaped {
            Ok(ContentType(s.to_owned()))
        } else {
            Err(ErrorKind::Invalid("invalid content type".into()))
        }
    }

    /// The header value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
