//! Config errors: each names the file, the line and column, the field path,
//! the value as written and what would be valid, so an operator can fix the
//! file without reading our code.
//!
//! One error renders on one line, compiler style, so editors and `grep` can
//! jump to it:
//!
//! ```text
//! lb.toml:14:10: service[0].backend[1].weight = 300: out of range; valid: an integer from 0 to 256
//! ```
//!
//! [`ConfigErrors`] holds every error found in a file (in file order) and
//! renders them one per line: that is exactly what `tandem lb check`,
//! `tandem api check` and `tandem worker check` print.
//!
//! [`LineIndex`] is the one place a byte offset becomes a line and column.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What is wrong, independent of where. Stable enough to match on (tests,
/// metric labels); the rendered text comes from `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The file could not be read; carries the OS error text.
    Read(String),
    /// The text is not TOML; carries the toml crate's message.
    Syntax(String),
    /// A key this table does not have (`valid` lists the keys it has).
    UnknownKey {
        /// The table, as written in the file: `[node]`, `[[service]]`, ...
        table: &'static str,
    },
    /// A value of the wrong TOML type.
    WrongType {
        /// TOML type name of the value found: `string`, `integer`, `table`, ...
        found: &'static str,
    },
    /// A required key is absent (the position is the table's header).
    Missing,
    /// A number outside its range.
    OutOfRange,
    /// A value of the right type that does not parse or is not allowed;
    /// carries the specific problem (`unknown unit "x"`, `port 0`, ...).
    Invalid(String),
    /// The value is already used where it must be unique.
    Duplicate {
        /// What the first use was (`service[0].listen`).
        first: String,
        /// Line of the first use.
        first_line: usize,
    },
    /// A health-check key that the check's kind does not use (`path` with
    /// `kind = "tcp"`).
    NotForKind {
        /// The kinds the key belongs to, quoted: `"http"`, `"tcp" or "http"`.
        used_by: &'static str,
        /// The check's kind, quoted, and where it comes from when not from
        /// this table: `"tcp" (the default)`.
        kind: String,
    },
    /// A value that contradicts another key's (`sorry` with `all_down`,
    /// `auth_pass` with version 3, `jitter` not less than `interval`).
    Conflict {
        /// The other key, its value and where: `all_down = "all" at line 7`.
        with: String,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Read(os) => write!(f, "cannot read the file: {os}"),
            ErrorKind::Syntax(msg) => write!(f, "TOML syntax error: {msg}"),
            ErrorKind::UnknownKey { table } => write!(f, "unknown key in {table}"),
            ErrorKind::WrongType { found } => write!(f, "wrong type: found {found}"),
            ErrorKind::Missing => f.write_str("missing required key"),
            ErrorKind::OutOfRange => f.write_str("out of range"),
            ErrorKind::Invalid(problem) => f.write_str(problem),
            ErrorKind::Duplicate { first, first_line } => {
                write!(f, "duplicate: already used by {first} at line {first_line}")
            }
            ErrorKind::NotForKind { used_by, kind } => {
                write!(
                    f,
                    "only used by kind {used_by}, and this check's kind is {kind}"
                )
            }
            ErrorKind::Conflict { with } => write!(f, "conflicts with {with}"),
        }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file, as it was named to the service's `Config::load` /
    /// `parse`.
    pub file: PathBuf,
    /// 1-based line; 0 when the error has no position (unreadable file).
    pub line: usize,
    /// 1-based column, in characters; 0 when `line` is 0.
    pub column: usize,
    /// Field path such as `service[0].backend[1].weight`; empty when the
    /// error is about the whole file.
    pub path: String,
    /// The offending value exactly as written in the file (quotes included
    /// for strings), shortened if long; None for missing keys and file-level
    /// errors.
    pub value: Option<String>,
    pub kind: ErrorKind,
    /// What would be valid, in words; empty when nothing useful can be said.
    pub valid: String,
}

impl ConfigError {
    /// The file could not be read.
    pub fn read(file: &Path, err: &std::io::Error) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            path: String::new(),
            value: None,
            kind: ErrorKind::Read(err.to_string()),
            valid: String::new(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            f.write_str(&self.path)?;
            if let Some(value) = &self.value {
                write!(f, " = {value}")?;
            }
            f.write_str(": ")?;
        }
        write!(f, "{}", self.kind)?;
        if !self.valid.is_empty() {
            write!(f, "; valid: {}", self.valid)?;
        }
        Ok(())
    }
}

/// Every error found in one config file, in file order (never empty when
/// returned by a service's `Config::parse` / `Config::load`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// Sorts by position so the rendering follows the file.
    pub fn new(mut errors: Vec<ConfigError>) -> Self {
        errors.sort_by_key(|e| (e.line, e.column));
        ConfigErrors(errors)
    }

    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Maps byte offsets of a text to 1-based (line, column), columns counted in
/// characters so a tab or a multi-byte letter counts as one, like editors do.
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { text, starts }
    }

    /// Position of byte `offset` (clamped to the text).
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        // A span never starts inside a character, but be safe if one does.
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// Line of byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.position(offset).0
    }

    /// The text of a span as written, shortened to its first line and at
    /// most [`MAX_VALUE_CHARS`] characters.
    pub fn written(&self, span: &Range<usize>) -> String {
        let raw = self.text.get(span.clone()).unwrap_or("");
        let first_line = raw.lines().next().unwrap_or("").trim_end();
        let short: String = first_line.chars().take(MAX_VALUE_CHARS).collect();
        if short.len() < raw.trim_end().len() {
            format!("{short}…")
        } else {
            short
        }
    }
}

/// Longest value quoted in an error message.
const MAX_VALUE_CHARS: usize = 60;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let idx = LineIndex::new("ab\ncé d\n\nx");
        assert_eq!(idx.position(0), (1, 1));
        assert_eq!(idx.position(1), (1, 2));
        assert_eq!(idx.position(3), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(idx.position(6), (2, 3));
        assert_eq!(idx.position(9), (3, 1));
        assert_eq!(idx.position(10), (4, 1));
        assert_eq!(idx.position(999), (4, 2));
    }

    #[test]
    fn written_values_are_shortened() {
        let long = format!("\"{}\"", "a".repeat(100));
        let text = format!("k = {long}\nt = [\n1,\n]\n");
        let idx = LineIndex::new(&text);
        let w = idx.written(&(4..4 + long.len()));
        assert_eq!(w.chars().count(), MAX_VALUE_CHARS + 1);
        assert!(w.ends_with('…'));
        let start = text.find('[').unwrap();
        assert_eq!(idx.written(&(start..text.len() - 1)), "[…");
        assert_eq!(idx.written(&(0..1)), "k");
    }

    #[test]
    fn renders_compiler_style() {
        let e = ConfigError {
            file: "lb.toml".into(),
            line: 14,
            column: 10,
            path: "service[0].backend[1].weight".into(),
            value: Some("300".into()),
            kind: ErrorKind::OutOfRange,
            valid: "an integer from 0 to 256".into(),
        };
        assert_eq!(
            e.to_string(),
            "lb.toml:14:10: service[0].backend[1].weight = 300: out of range; valid: an integer from 0 to 256"
        );
        let read = ConfigError::read(
            Path::new("/nope/lb.toml"),
            &std::io::Error::from_raw_os_error(2),
        );
        assert_eq!(
            read.to_string(),
            "/nope/lb.toml: cannot read the file: No such file or directory (os error 2)"
        );
        let all = ConfigErrors::new(vec![e.clone(), read.clone()]);
        assert_eq!(all.len(), 2);
        // Sorted by position: the position-less read error first.
        assert_eq!(all.to_string(), format!("{read}\n{e}"));
    }
}
