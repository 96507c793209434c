//! `[service.health]` and `[service.backend.health]`.
//!
//! A health table is read into a [`HealthLayer`]: only the keys it sets.
//! A backend's layer is then laid over its service's, key by key, and the
//! defaults fill the rest. Two rules make the layering predictable:
//!
//! - The kind-specific keys (`path`, `command`, ...) of the service are
//!   inherited only while the backend keeps the service's kind: a backend that
//!   switches to `kind = "tcp"` does not inherit an http `path`.
//! - Defaults that derive from another key (`fastinter`, `downinter` and
//!   `jitter` from `interval`) derive from the *resolved* interval, so a
//!   backend that only shortens `interval` gets a matching jitter.
//!
//! A check on the combination (exec without `command`, `jitter` not less
//! than `interval`) is reported once, at the table whose keys caused it.

use std::time::Duration;

use super::super::health::{
    ExecCheck, HealthCheck, HealthConfig, HealthKind, HttpCheck, StatusRange,
};
use super::super::values::{boolean, http_host, http_path, status_range};
use super::{
    DURATION_EXAMPLES, DeValue, ErrorKind, Field, Reported, Table, Walker, command_word, duration,
    integer, join_names, one_of, string,
};
use tandem_service::config::format_duration;

/// Keys every kind has.
const COMMON_KEYS: &[&str] = &[
    "kind",
    "interval",
    "fastinter",
    "downinter",
    "timeout",
    "rise",
    "fall",
    "alpha",
    "jitter",
    "slow_start",
    "passive_fall",
];

/// Keys of one kind only (or two), with the kinds that use them.
const KIND_KEYS: &[(&str, &[HealthKind])] = &[
    ("port", &[HealthKind::Tcp, HealthKind::Http]),
    ("path", &[HealthKind::Http]),
    ("host", &[HealthKind::Http]),
    ("expect_status", &[HealthKind::Http]),
    ("expect_body", &[HealthKind::Http]),
    ("command", &[HealthKind::Exec]),
];

const VALID_COMMAND: &str = r#"a non-empty array of strings: the program's absolute path, then its arguments, such as ["/usr/local/bin/check", "--quiet"]"#;
const VALID_STATUS: &str =
    r#"a status from 100 to 599 (200), a range ("200-299"), or an array of those"#;

/// The keys one health table sets, before inheritance and defaults.
pub(super) struct HealthLayer<'t, 'i> {
    table: Table<'t, 'i>,
    kind: Option<HealthKind>,
    /// True when `kind` is written but invalid: kind-specific keys are then
    /// not judged, to report one mistake once.
    kind_unknown: bool,
    /// True when any key of this table was reported: the layer is then not
    /// resolved (its defaults would hide the mistake or add errors).
    reported: bool,
    interval: Option<Duration>,
    fastinter: Option<Duration>,
    downinter: Option<Duration>,
    timeout: Option<Duration>,
    rise: Option<u32>,
    fall: Option<u32>,
    alpha: Option<bool>,
    jitter: Option<Duration>,
    port: Option<u16>,
    slow_start: Option<Duration>,
    passive_fall: Option<u32>,
    path: Option<String>,
    host: Option<String>,
    expect_status: Option<Vec<StatusRange>>,
    expect_body: Option<String>,
    command: Option<Vec<String>>,
}

/// A health table's resolved checks (None when there are no active probes)
/// and its `passive_fall`.
pub(super) type Resolved = (Option<HealthConfig>, u32);

/// Every key a health table may have, for the unknown-key check.
pub(super) fn all_keys() -> Vec<&'static str> {
    COMMON_KEYS
        .iter()
        .copied()
        .chain(KIND_KEYS.iter().map(|(k, _)| *k))
        .collect()
}

/// The keys `kind` accepts, for the "valid:" hint.
fn keys_of(kind: HealthKind) -> String {
    let specific = KIND_KEYS
        .iter()
        .filter(|(_, kinds)| kinds.contains(&kind))
        .map(|(k, _)| *k);
    join_names(COMMON_KEYS.iter().copied().chain(specific))
}

/// A health table's `kind`, as [`Walker::health_kind`] read it.
struct HealthKindRead {
    /// As set in this table; None when absent or refused.
    kind: Option<HealthKind>,
    /// The key is present but its value was refused (and reported).
    kind_unknown: bool,
    /// The kind that applies: this table's, the inherited one, or the default.
    effective: HealthKind,
    /// `effective` quoted, with where it comes from, for errors.
    described: String,
}

/// The keys that only some kinds use, as read (absent when foreign).
struct KindFields {
    port: Field<i64>,
    path: Field<String>,
    host: Field<String>,
    expect_status: Field<Vec<StatusRange>>,
    expect_body: Field<String>,
    command: Field<Vec<String>>,
}

/// A probe period (`interval`, `fastinter`, `downinter`, `timeout`): at
/// least [`HealthConfig::MIN_PERIOD`].
fn at_least_1ms(v: &DeValue<'_>) -> Result<std::time::Duration, ErrorKind> {
    let d = duration(v, false)?;
    if d < HealthConfig::MIN_PERIOD {
        Err(ErrorKind::OutOfRange)
    } else {
        Ok(d)
    }
}

impl<'t, 'i> Walker<'_> {
    /// Reads `parent.health` if present. `inherited` is the service's layer
    /// when `parent` is a backend: its kind decides which keys belong here
    /// when this table sets none.
    pub(super) fn health_layer(
        &mut self,
        parent: &Table<'t, 'i>,
        inherited: Option<&HealthLayer<'_, '_>>,
        name: &'static str,
    ) -> Field<HealthLayer<'t, 'i>> {
        let keys = all_keys();
        let Some(table) = self.sub_table(parent, "health", &keys, name)? else {
            return Ok(None);
        };
        let kind = self.health_kind(&table, inherited);
        let foreign = self.foreign_keys(&table, &kind, inherited);
        let HealthKindRead {
            kind, kind_unknown, ..
        } = kind;

        let period = format!("{DURATION_EXAMPLES}, at least 1ms");
        let interval = self.field(&table, "interval", &period, at_least_1ms);
        let fastinter = self.field(&table, "fastinter", &period, at_least_1ms);
        let downinter = self.field(&table, "downinter", &period, at_least_1ms);
        let timeout = self.field(&table, "timeout", &period, at_least_1ms);
        let count_valid = format!("an integer from 1 to {}", HealthConfig::MAX_COUNT);
        let count = |v: &DeValue<'_>| integer(v, 1, i64::from(HealthConfig::MAX_COUNT));
        let rise = self.field(&table, "rise", &count_valid, count);
        let fall = self.field(&table, "fall", &count_valid, count);
        let alpha_valid = "true (start down until rise successes) or false (start up)";
        let alpha = self.field(&table, "alpha", alpha_valid, boolean);
        let jitter_valid = format!("{DURATION_EXAMPLES}, less than interval; \"0s\" = none");
        let jitter = self.field(&table, "jitter", &jitter_valid, |v| duration(v, false));
        let slow_valid = format!("{DURATION_EXAMPLES}, or \"0s\" for off");
        let slow_start = self.field(&table, "slow_start", &slow_valid, |v| duration(v, false));
        let passive_valid = format!("an integer from 0 (off) to {}", HealthConfig::MAX_COUNT);
        let passive_fall = self.field(&table, "passive_fall", &passive_valid, |v| {
            integer(v, 0, i64::from(HealthConfig::MAX_COUNT))
        });
        let KindFields {
            port,
            path,
            host,
            expect_status,
            expect_body,
            command,
        } = self.kind_fields(&table, &foreign);
        // A field that failed was reported and reads as absent; `reported`
        // keeps the layer out of resolution so no second error follows,
        // while its kind still decides which keys its backends may set.
        let mut reported = kind_unknown;
        let r = &mut reported;
        let count = |f: Field<i64>, r: &mut bool| take(f, r).map(|n| n as u32);
        let mut layer = HealthLayer {
            kind,
            kind_unknown,
            reported: false,
            interval: take(interval, r),
            fastinter: take(fastinter, r),
            downinter: take(downinter, r),
            timeout: take(timeout, r),
            rise: count(rise, r),
            fall: count(fall, r),
            alpha: take(alpha, r),
            jitter: take(jitter, r),
            port: count(port, r).map(|p| p as u16),
            slow_start: take(slow_start, r),
            passive_fall: count(passive_fall, r),
            path: take(path, r),
            host: take(host, r),
            expect_status: take(expect_status, r),
            expect_body: take(expect_body, r),
            command: take(command, r),
            table,
        };
        layer.reported = reported;
        Ok(Some(layer))
    }

    /// `kind` of a health table: as set here, else inherited from the
    /// service's layer, else the default; and how to name it in errors.
    fn health_kind(
        &mut self,
        table: &Table<'_, '_>,
        inherited: Option<&HealthLayer<'_, '_>>,
    ) -> HealthKindRead {
        let kind_valid = format!(
            "one of {}",
            join_names(HealthKind::ALL.iter().map(|k| k.name()))
        );
        let kind = self.field(table, "kind", &kind_valid, |v| {
            one_of(v, HealthKind::ALL.iter().map(|k| (k.name(), *k)), "kind")
        });
        let kind_unknown = kind.is_err();
        let kind = kind.unwrap_or(None);
        let effective = kind.or(inherited.and_then(|l| l.kind)).unwrap_or_default();
        let described = match (kind, inherited) {
            (Some(k), _) => format!("\"{k}\""),
            (None, Some(l)) if l.kind.is_some() => {
                format!("\"{effective}\" (from {})", l.table.field("kind"))
            }
            _ => format!("\"{effective}\" (the default)"),
        };
        HealthKindRead {
            kind,
            kind_unknown,
            effective,
            described,
        }
    }

    /// Kind-specific keys the kind does not use: one error each; the caller
    /// then does not read them (their value is beside the point).
    fn foreign_keys(
        &mut self,
        table: &Table<'_, '_>,
        read: &HealthKindRead,
        inherited: Option<&HealthLayer<'_, '_>>,
    ) -> Vec<&'static str> {
        let effective = read.effective;
        let mut foreign: Vec<&'static str> = Vec::new();
        for (key, kinds) in KIND_KEYS {
            let Some(v) = table.get(key) else { continue };
            let inherited_unknown =
                read.kind.is_none() && inherited.is_some_and(|l| l.kind_unknown);
            if read.kind_unknown || inherited_unknown || kinds.contains(&effective) {
                continue;
            }
            foreign.push(key);
            let used_by = match kinds {
                [HealthKind::Tcp, HealthKind::Http] => r#""tcp" or "http""#,
                [HealthKind::Http] => r#""http""#,
                _ => r#""exec""#,
            };
            let kind = ErrorKind::NotForKind {
                used_by,
                kind: read.described.clone(),
            };
            let valid = format!("the keys of kind \"{effective}\": {}", keys_of(effective));
            let key_span = table
                .entries
                .get_key_value(*key)
                .map_or_else(|| v.span(), |(k, _)| k.span());
            let value_span = v.span();
            self.push(&key_span, table.field(key), Some(&value_span), kind, &valid);
        }
        foreign
    }

    /// The kind-specific keys, each read unless it is `foreign`.
    fn kind_fields(&mut self, table: &Table<'_, '_>, foreign: &[&str]) -> KindFields {
        let keep = |key: &str| !foreign.contains(&key);
        let port = if keep("port") {
            self.field(table, "port", "an integer from 1 to 65535", |v| {
                integer(v, 1, 65535)
            })
        } else {
            Ok(None)
        };
        let path = if keep("path") {
            self.field(
                table,
                "path",
                r#"a path starting with "/", printable ASCII without spaces, such as "/healthz""#,
                http_path,
            )
        } else {
            Ok(None)
        };
        let host = if keep("host") {
            self.field(
                table,
                "host",
                r#"a host name or address, printable ASCII without spaces or "/", such as "api.example""#,
                http_host,
            )
        } else {
            Ok(None)
        };
        let expect_status = if keep("expect_status") {
            self.expect_status(table)
        } else {
            Ok(None)
        };
        let expect_body = if keep("expect_body") {
            self.field(table, "expect_body", "a non-empty string", |v| {
                let s = string(v)?;
                if s.is_empty() {
                    Err(ErrorKind::Invalid(
                        "empty: it would match every body".into(),
                    ))
                } else {
                    Ok(s.to_string())
                }
            })
        } else {
            Ok(None)
        };
        let command = if keep("command") {
            self.command_array(table, "command", VALID_COMMAND)
        } else {
            Ok(None)
        };
        KindFields {
            port,
            path,
            host,
            expect_status,
            expect_body,
            command,
        }
    }

    /// `expect_status`: one status, one range, or an array of those, each
    /// element reported at itself.
    fn expect_status(&mut self, table: &Table<'_, '_>) -> Field<Vec<StatusRange>> {
        let Some(v) = table.get("expect_status") else {
            return Ok(None);
        };
        let path = table.field("expect_status");
        let DeValue::Array(items) = v.get_ref() else {
            return match status_range(v.get_ref()) {
                Ok(r) => Ok(Some(vec![r])),
                Err(kind) => Err(self.bad_value(v, path, kind, VALID_STATUS)),
            };
        };
        if items.is_empty() {
            let kind = ErrorKind::Invalid("empty array: no status would do".into());
            return Err(self.bad_value(v, path, kind, VALID_STATUS));
        }
        let mut ranges = Ok(Vec::new());
        for (i, item) in items.iter().enumerate() {
            match status_range(item.get_ref()) {
                Ok(r) => {
                    if let Ok(list) = &mut ranges {
                        list.push(r);
                    }
                }
                Err(kind) => {
                    ranges = Err(self.bad_value(
                        item,
                        format!("{path}[{i}]"),
                        kind,
                        r#"a status from 100 to 599 (200) or a range ("200-299")"#,
                    ))
                }
            }
        }
        ranges.map(Some)
    }

    /// An array of command words: the first an absolute path. Shared with
    /// `[[vrrp]] notify`.
    pub(super) fn command_array(
        &mut self,
        table: &Table<'_, '_>,
        key: &str,
        valid: &str,
    ) -> Field<Vec<String>> {
        let words = self.array(
            table,
            key,
            valid,
            Some("empty array: no program"),
            |i, v| command_word(v, i == 0),
        )?;
        Ok(words.map(|w| w.into_iter().map(|(word, _)| word).collect()))
    }

    /// A backend's checks: `own` (its health table) over `service`'s, then
    /// defaults. With no table at either level: no active checks, and the
    /// default `passive_fall`.
    pub(super) fn resolve_health<'a, 'b>(
        &mut self,
        service: Option<&HealthLayer<'a, 'b>>,
        own: Option<&HealthLayer<'a, 'b>>,
    ) -> Result<Resolved, Reported> {
        let (own, parent) = match (own, service) {
            (Some(own), parent) => (own, parent),
            (None, Some(service)) => (service, None),
            (None, None) => return Ok((None, HealthConfig::DEFAULT_PASSIVE_FALL)),
        };
        if own.reported || parent.is_some_and(|p| p.reported) {
            return Err(Reported);
        }
        let parent_kind = parent.map(|p| p.kind.unwrap_or_default());
        let kind = own.kind.or(parent.and_then(|p| p.kind)).unwrap_or_default();
        // Kind-specific keys pass down only while the kind stays the same.
        let specific_parent = parent.filter(|_| parent_kind == Some(kind));
        fn pick<'a, 'b, T: Clone>(
            own: &HealthLayer<'a, 'b>,
            parent: Option<&HealthLayer<'a, 'b>>,
            f: impl for<'r> Fn(&'r HealthLayer<'a, 'b>) -> &'r Option<T>,
        ) -> Option<T> {
            f(own).clone().or_else(|| parent.and_then(|p| f(p).clone()))
        }
        let interval = pick(own, parent, |l| &l.interval).unwrap_or(HealthConfig::DEFAULT_INTERVAL);
        let jitter = pick(own, parent, |l| &l.jitter);
        // Both checks run, so a table with both mistakes shows both.
        let jitter_ok = match jitter {
            Some(jitter) if jitter >= interval => {
                Err(self.jitter_conflict(own, parent, jitter, interval))
            }
            _ => Ok(()),
        };
        let check = match kind {
            HealthKind::Tcp => HealthCheck::Tcp,
            HealthKind::Http => HealthCheck::Http(HttpCheck {
                path: pick(own, specific_parent, |l| &l.path)
                    .unwrap_or_else(|| HttpCheck::DEFAULT_PATH.to_string()),
                host: pick(own, specific_parent, |l| &l.host),
                expect_status: pick(own, specific_parent, |l| &l.expect_status)
                    .unwrap_or_else(|| vec![HttpCheck::DEFAULT_EXPECT_STATUS]),
                expect_body: pick(own, specific_parent, |l| &l.expect_body),
            }),
            HealthKind::Exec => match pick(own, specific_parent, |l| &l.command) {
                Some(command) => HealthCheck::Exec(ExecCheck { command }),
                // Reported where `kind = "exec"` is written; a backend that
                // inherits it shares the service's error.
                None if own.kind == Some(HealthKind::Exec) => {
                    return Err(self.push(
                        &own.table.header,
                        own.table.field("command"),
                        None,
                        ErrorKind::Missing,
                        VALID_COMMAND,
                    ));
                }
                None => return Err(Reported),
            },
        };
        jitter_ok?;
        let passive_fall =
            pick(own, parent, |l| &l.passive_fall).unwrap_or(HealthConfig::DEFAULT_PASSIVE_FALL);
        let health = HealthConfig {
            check,
            interval,
            fastinter: pick(own, parent, |l| &l.fastinter).unwrap_or(interval),
            downinter: pick(own, parent, |l| &l.downinter).unwrap_or(interval),
            timeout: pick(own, parent, |l| &l.timeout).unwrap_or(HealthConfig::DEFAULT_TIMEOUT),
            rise: pick(own, parent, |l| &l.rise).unwrap_or(HealthConfig::DEFAULT_RISE),
            fall: pick(own, parent, |l| &l.fall).unwrap_or(HealthConfig::DEFAULT_FALL),
            alpha: pick(own, parent, |l| &l.alpha).unwrap_or(false),
            jitter: jitter.unwrap_or_else(|| HealthConfig::default_jitter(interval)),
            // tcp and http share `port`; an exec layer never holds one.
            port: match kind {
                HealthKind::Exec => None,
                _ => pick(own, parent, |l| &l.port),
            },
            slow_start: pick(own, parent, |l| &l.slow_start).unwrap_or(Duration::ZERO),
        };
        Ok((Some(health), passive_fall))
    }

    /// `jitter >= interval`: reported at this table's `jitter`, else at its
    /// `interval`; when this table sets neither, the service's table already
    /// carries the error.
    fn jitter_conflict(
        &mut self,
        own: &HealthLayer<'_, '_>,
        parent: Option<&HealthLayer<'_, '_>>,
        jitter: Duration,
        interval: Duration,
    ) -> Reported {
        // Where the other value of the pair comes from, for the message.
        let source = |key: &str, value: Duration| -> String {
            let written = [Some(own), parent]
                .into_iter()
                .flatten()
                .find_map(|l| l.table.get(key).map(|v| (l, v)));
            match written {
                Some((l, v)) => format!(
                    "{} = \"{}\" at line {}",
                    l.table.field(key),
                    format_duration(value),
                    self.lines.line(v.span().start)
                ),
                None => format!("{key} \"{}\" (the default)", format_duration(value)),
            }
        };
        if let Some(v) = own.table.get("jitter") {
            let with = source("interval", interval);
            let valid = format!(
                "a duration less than interval, such as \"{}\" (the default: 10% of interval)",
                format_duration(HealthConfig::default_jitter(interval))
            );
            self.bad_value(
                v,
                own.table.field("jitter"),
                ErrorKind::Conflict { with },
                &valid,
            )
        } else if let Some(v) = own.table.get("interval") {
            let with = source("jitter", jitter);
            let valid = "a duration greater than jitter";
            self.bad_value(
                v,
                own.table.field("interval"),
                ErrorKind::Conflict { with },
                valid,
            )
        } else {
            Reported
        }
    }
}

/// The value of a field read for a layer; a reported failure reads as
/// absent and marks the layer.
fn take<T>(field: Field<T>, reported: &mut bool) -> Option<T> {
    field.unwrap_or_else(|Reported| {
        *reported = true;
        None
    })
}
