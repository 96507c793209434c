//! The hand walk of a config file's spanned TOML document, collecting every
//! error instead of stopping at the first.
//!
//! serde-derive stops at the first bad field, and an operator fixing a file
//! one error per `check` run learns to hate the tool. So the text is parsed
//! into toml's spanned document (`DeTable`: every key and value keeps its
//! byte span) and walked by hand: each field is read, converted and checked,
//! failures are pushed to a list and the walk goes on. Only a TOML syntax
//! error stops early, because after it there is no document to walk.
//!
//! Every field reader answers `Ok(Some(v))`, `Ok(None)` (absent: the caller
//! applies the default) or `Err(Reported)` (an error was recorded). A
//! service assembles its `Config` only when no error was recorded
//! ([`Walker::finish`]).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::duration::DURATION_EXAMPLES;
use super::error::{ConfigError, ConfigErrors, ErrorKind, LineIndex};
use super::values;

/// A value of the document with its byte span.
pub type Value<'i> = Spanned<DeValue<'i>>;

/// Marker: the problem was already pushed to the error list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reported;

/// What a field reader answers: the value, `None` when the key is absent,
/// or [`Reported`].
pub type Field<T> = Result<Option<T>, Reported>;

/// Parses `text` into toml's spanned document; a syntax error is the one
/// error of the file, at the offending character. `file` names the file in
/// the message.
pub fn document<'i>(text: &'i str, file: &Path) -> Result<Spanned<DeTable<'i>>, ConfigErrors> {
    DeTable::parse(text).map_err(|e| {
        // Keep toml's own position: it points at the offending character.
        let lines = LineIndex::new(text);
        let (line, column) = e.span().map_or((0, 0), |s| lines.position(s.start));
        ConfigErrors::from(ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            path: String::new(),
            value: None,
            kind: ErrorKind::Syntax(e.message().trim().to_string()),
            valid: String::new(),
        })
    })
}

/// A table of the document with its header span (for "missing key" errors)
/// and field path prefix.
pub struct Table<'t, 'i> {
    pub entries: &'t DeTable<'i>,
    /// Where a missing key is reported: the table's header, or `0..0` for
    /// the top level and absent tables.
    pub header: Range<usize>,
    /// `""` for the root, `node`, `service[0]`, `service[0].backend[1]`.
    pub path: String,
}

impl<'t, 'i> Table<'t, 'i> {
    /// The top level of a document.
    pub fn root(doc: &'t Spanned<DeTable<'i>>) -> Self {
        Table {
            entries: doc.get_ref(),
            header: 0..0,
            path: String::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.entries.get(key)
    }

    /// The field path of `key` in this table.
    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// Walks one file's document, recording errors with their positions.
pub struct Walker<'a> {
    pub file: &'a Path,
    pub lines: LineIndex<'a>,
    /// Every error so far, in the order found ([`ConfigErrors::new`] sorts).
    pub errors: Vec<ConfigError>,
}

impl<'a> Walker<'a> {
    /// A walker over `text`, the contents of `file`.
    pub fn new(text: &'a str, file: &'a Path) -> Self {
        Walker {
            file,
            lines: LineIndex::new(text),
            errors: Vec::new(),
        }
    }

    /// `config` if no error was recorded, else every error in file order.
    pub fn finish<T>(self, config: Result<T, Reported>) -> Result<T, ConfigErrors> {
        match config {
            Ok(config) if self.errors.is_empty() => Ok(config),
            _ => Err(ConfigErrors::new(self.errors)),
        }
    }

    /// Records an error positioned at `at`, quoting `value` as written.
    pub fn push(
        &mut self,
        at: &Range<usize>,
        path: String,
        value: Option<&Range<usize>>,
        kind: ErrorKind,
        valid: impl Into<String>,
    ) -> Reported {
        let (line, column) = self.lines.position(at.start);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            path,
            value: value.map(|v| self.lines.written(v)),
            kind,
            valid: valid.into(),
        });
        Reported
    }

    /// An error about a value: positioned at it, quoting it.
    pub fn bad_value(
        &mut self,
        v: &Value<'_>,
        path: String,
        kind: ErrorKind,
        valid: &str,
    ) -> Reported {
        let span = v.span();
        // An implicit table (made by `[a.b]` or `a.b = 1`) spans just a key
        // name: quoting it as the value would mislead.
        let implicit = matches!(v.get_ref(), DeValue::Table(_))
            && !self.lines.written(&span).starts_with(['[', '{']);
        let value = (!implicit).then_some(&span);
        self.push(&span, path, value, kind, valid)
    }

    /// Reports every key of `table` not in `keys`.
    pub fn check_keys(&mut self, table: &Table<'_, '_>, keys: &[&str], name: &'static str) {
        for (key, value) in table.entries.iter() {
            if !keys.contains(&key.get_ref().as_ref()) {
                let path = table.field(key.get_ref());
                let value_span = value.span();
                self.push(
                    &key.span(),
                    path,
                    Some(&value_span),
                    ErrorKind::UnknownKey { table: name },
                    keys.join(", "),
                );
            }
        }
    }

    /// Reads an optional key with `convert`; a conversion error is reported
    /// at the value with `valid` as the hint.
    pub fn field<T>(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        valid: &str,
        convert: impl FnOnce(&DeValue<'_>) -> Result<T, ErrorKind>,
    ) -> Field<T> {
        let Some(v) = table.get(key) else {
            return Ok(None);
        };
        match convert(v.get_ref()) {
            Ok(t) => Ok(Some(t)),
            Err(kind) => Err(self.bad_value(v, table.field(key), kind, valid)),
        }
    }

    /// Like [`Walker::field`] for a key that must be present.
    pub fn required<T>(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        valid: &str,
        convert: impl FnOnce(&DeValue<'_>) -> Result<T, ErrorKind>,
    ) -> Result<T, Reported> {
        match self.field(table, key, valid, convert)? {
            Some(t) => Ok(t),
            None => Err(self.push(
                &table.header,
                table.field(key),
                None,
                ErrorKind::Missing,
                valid,
            )),
        }
    }

    /// A duration greater than zero at `key`, or `default` when absent.
    pub fn positive_duration(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        default: Duration,
    ) -> Result<Duration, Reported> {
        let valid = format!("{DURATION_EXAMPLES}, greater than zero");
        let d = self.field(table, key, &valid, |v| values::duration(v, true))?;
        Ok(d.unwrap_or(default))
    }

    /// An integer from `min` to `max` at `key`, or `default` when absent.
    pub fn integer_or(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        (min, max): (i64, i64),
        default: i64,
    ) -> Result<i64, Reported> {
        let valid = format!("an integer from {min} to {max}");
        let n = self.field(table, key, &valid, |v| values::integer(v, min, max))?;
        Ok(n.unwrap_or(default))
    }

    /// An optional sub-table of `parent`, its keys checked.
    pub fn sub_table<'t, 'i>(
        &mut self,
        parent: &Table<'t, 'i>,
        key: &str,
        keys: &[&str],
        name: &'static str,
    ) -> Field<Table<'t, 'i>> {
        let Some(v) = parent.get(key) else {
            return Ok(None);
        };
        let table = self.as_table(v, parent.field(key), name)?;
        self.check_keys(&table, keys, name);
        Ok(Some(table))
    }

    /// `v` as a table at `path`; `name` is how the file writes it (`[node]`).
    pub fn as_table<'t, 'i>(
        &mut self,
        v: &'t Value<'i>,
        path: String,
        name: &'static str,
    ) -> Result<Table<'t, 'i>, Reported> {
        match v.get_ref() {
            DeValue::Table(entries) => Ok(Table {
                entries,
                header: v.span(),
                path,
            }),
            other => Err(self.bad_value(
                v,
                path,
                ErrorKind::WrongType {
                    found: other.type_str(),
                },
                &format!("a table, written {name}"),
            )),
        }
    }

    /// `[[key]]` in `parent`: each element as a table (keys checked).
    #[allow(clippy::type_complexity)]
    pub fn array_of_tables<'t, 'i>(
        &mut self,
        parent: &Table<'t, 'i>,
        key: &str,
        keys: &[&str],
        name: &'static str,
    ) -> Field<Vec<Result<Table<'t, 'i>, Reported>>> {
        let Some(v) = parent.get(key) else {
            return Ok(None);
        };
        let path = parent.field(key);
        let DeValue::Array(items) = v.get_ref() else {
            let found = v.get_ref().type_str();
            return Err(self.bad_value(
                v,
                path,
                ErrorKind::WrongType { found },
                &format!("an array of tables, written {name}"),
            ));
        };
        let tables = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let table = self.as_table(item, format!("{path}[{i}]"), name)?;
                self.check_keys(&table, keys, name);
                Ok(table)
            })
            .collect();
        Ok(Some(tables))
    }

    /// An array at `key` whose elements convert one by one (`convert` gets
    /// each element's index); each bad element is reported at itself as
    /// `key[i]`. An empty array is refused with `empty` as the problem when
    /// `empty` is given.
    pub fn array<'t, 'i, T>(
        &mut self,
        table: &Table<'t, 'i>,
        key: &str,
        valid: &str,
        empty: Option<&str>,
        mut convert: impl FnMut(usize, &DeValue<'_>) -> Result<T, ErrorKind>,
    ) -> Field<Vec<(T, &'t Value<'i>)>> {
        let Some(v) = table.get(key) else {
            return Ok(None);
        };
        let path = table.field(key);
        let DeValue::Array(items) = v.get_ref() else {
            let found = v.get_ref().type_str();
            return Err(self.bad_value(v, path, ErrorKind::WrongType { found }, valid));
        };
        if let (Some(problem), true) = (empty, items.is_empty()) {
            let kind = ErrorKind::Invalid(problem.into());
            return Err(self.bad_value(v, path, kind, valid));
        }
        let mut out = Ok(Vec::new());
        for (i, item) in items.iter().enumerate() {
            match convert(i, item.get_ref()) {
                Ok(t) => {
                    if let Ok(list) = &mut out {
                        list.push((t, item));
                    }
                }
                Err(kind) => out = Err(self.bad_value(item, format!("{path}[{i}]"), kind, valid)),
            }
        }
        out.map(Some)
    }

    /// Records `key` as used by `path`; if it was already, reports the
    /// second use and names the first.
    pub fn unique<K: std::hash::Hash + Eq>(
        &mut self,
        seen: &mut HashMap<K, (String, usize)>,
        key: K,
        v: &Value<'_>,
        path: String,
        valid: &str,
    ) {
        let line = self.lines.line(v.span().start);
        match seen.get(&key) {
            Some((first, first_line)) => {
                let kind = ErrorKind::Duplicate {
                    first: first.clone(),
                    first_line: *first_line,
                };
                self.bad_value(v, path, kind, valid);
            }
            None => {
                seen.insert(key, (path, line));
            }
        }
    }
}
