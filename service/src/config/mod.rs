//! Config scaffolding shared by `lb.toml`, `api.toml` and `worker.toml`:
//! every error in a file reported, each with file:line:column, the field
//! path, the value as written and what would be valid; one duration grammar.
//!
//! Files:
//! - `error`: [`ConfigError`], [`ConfigErrors`], [`ErrorKind`] and their
//!   one-line rendering; [`LineIndex`], the one byte-offset → line:column
//!   conversion (columns in characters, as editors count).
//! - `duration`: `"250ms"`, `"1m30s"`, `"7d"`: grammar, parser and formatter.
//! - `walk`: [`Walker`], the hand walk of toml's spanned document that
//!   collects every error instead of stopping at the first.
//! - `values`: one TOML value to one typed value (types, ranges, durations,
//!   names, addresses), answering the [`ErrorKind`] when it does not fit.

pub mod duration;
pub mod error;
pub mod values;
pub mod walk;

pub use duration::{
    DURATION_EXAMPLES, DurationError, DurationProblem, format_duration, parse_duration,
};
pub use error::{ConfigError, ConfigErrors, ErrorKind, LineIndex};
pub use walk::{Field, Reported, Table, Value, Walker, document};

/// Reads `path` and hands its text to `parse` (a service's `Config::parse`);
/// an unreadable file is one [`ConfigError`] naming the path and the OS
/// error.
pub fn load<T>(
    path: &std::path::Path,
    parse: impl FnOnce(&str, &std::path::Path) -> Result<T, ConfigErrors>,
) -> Result<T, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::read(path, &e))?;
    parse(&text, path)
}
