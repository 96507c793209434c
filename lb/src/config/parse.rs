//! From TOML text to a validated [`Config`], collecting every error.
//!
//! serde-derive stops at the first bad field, and an operator fixing a file
//! one error per `check` run learns to hate the tool. So the text is parsed
//! into toml's spanned document (`DeTable`: every key and value keeps its
//! byte span) and walked by hand: each field is read, converted and checked,
//! failures are pushed to a list and the walk goes on. Only a TOML syntax
//! error stops early, because after it there is no document to walk.
//!
//! Every field reader answers `Ok(Some(v))`, `Ok(None)` (absent: the caller
//! applies the default) or `Err(Reported)` (an error was recorded). The
//! `Config` is assembled only when no error was recorded.
//!
//! One submodule per table: [`service`] (`[[service]]`, its backends),
//! [`health`] (`[service.health]` layers), [`all_down`], [`vrrp`]; this
//! file holds the walker, the root, `[node]`, `[admin]` and `[metrics]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::duration::DURATION_EXAMPLES;
use super::error::{ConfigError, ConfigErrors, ErrorKind, LineIndex};
use super::values::{
    command_word, duration, integer, is_name_char, join_names, names_of_schedulers, one_of,
    parse_name, socket_addr, string,
};
use super::{
    AdminConfig, BackendConfig, Config, MetricsConfig, NodeConfig, ProxyProtocol, ServiceConfig,
};
use crate::sched::SchedulerKind;

mod all_down;
mod health;
mod service;
mod vrrp;

use health::HealthLayer;

type Value<'i> = Spanned<DeValue<'i>>;

/// Marker: the problem was already pushed to the error list.
struct Reported;

type Field<T> = Result<Option<T>, Reported>;

const ROOT_KEYS: &[&str] = &["node", "admin", "metrics", "service", "vrrp"];
const NODE_KEYS: &[&str] = &["name", "workers", "shutdown_grace", "connection_log"];
const ADMIN_KEYS: &[&str] = &["socket"];
const METRICS_KEYS: &[&str] = &["listen"];
const SERVICE_KEYS: &[&str] = &[
    "name",
    "listen",
    "scheduler",
    "connect_timeout",
    "idle_timeout",
    "retries",
    "max_connections",
    "proxy_protocol",
    "all_down",
    "sorry",
    "health",
    "backend",
];
const BACKEND_KEYS: &[&str] = &["name", "address", "weight", "max_connections", "health"];

const LOG_LEVELS: [(&str, Option<tracing::Level>); 6] = [
    ("off", None),
    ("error", Some(tracing::Level::ERROR)),
    ("warn", Some(tracing::Level::WARN)),
    ("info", Some(tracing::Level::INFO)),
    ("debug", Some(tracing::Level::DEBUG)),
    ("trace", Some(tracing::Level::TRACE)),
];

const VALID_NAME: &str = "a string of 1 to 64 characters from A-Z a-z 0-9 _ . -";
const VALID_BACKEND_NAME: &str = "a string of 1 to 64 characters from A-Z a-z 0-9 _ . - : [ ]";
const VALID_LISTEN: &str =
    r#"an IP:port such as "198.18.0.100:80" or "[2001:db8::1]:443", port 1 to 65535"#;
const VALID_ADDRESS: &str = r#"an IP:port such as "127.0.0.1:8081" or "[2001:db8::2]:8081", port 1 to 65535, IP not 0.0.0.0 or [::]"#;

/// Every key a value is written for (table-valued keys left out), so a test
/// can check that `lb.example.toml` documents them all.
#[cfg(test)]
pub(super) fn every_value_key() -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = [NODE_KEYS, ADMIN_KEYS, METRICS_KEYS, SERVICE_KEYS]
        .into_iter()
        .chain([BACKEND_KEYS, vrrp::VRRP_KEYS, vrrp::TRACK_KEYS])
        .flatten()
        .copied()
        .chain(health::all_keys())
        .filter(|k| !matches!(*k, "backend" | "health"))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Parses and validates `text`; `source` names the file in messages.
pub(super) fn parse(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    let mut w = Walker {
        file: source,
        lines: LineIndex::new(text),
        errors: Vec::new(),
    };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            // Keep toml's own position: it points at the offending character.
            let (line, column) = e.span().map_or((0, 0), |s| w.lines.position(s.start));
            return Err(ConfigErrors::from(ConfigError {
                file: source.to_path_buf(),
                line,
                column,
                path: String::new(),
                value: None,
                kind: ErrorKind::Syntax(e.message().trim().to_string()),
                valid: String::new(),
            }));
        }
    };
    let root = Table {
        entries: doc.get_ref(),
        header: 0..0,
        path: String::new(),
    };
    w.check_keys(&root, ROOT_KEYS, "the top level");
    let node = w.node(&root);
    let admin = w.admin(&root);
    let metrics = w.metrics(&root);
    let services = w.services(&root);
    if let (Ok(services), Ok(metrics)) = (&services, &metrics) {
        w.metrics_port_is_free(&root, metrics, services);
    }
    let vrrp = w.vrrp(&root, &vrrp::service_names(&root));
    match (node, admin, metrics, services, vrrp) {
        (Ok(node), Ok(admin), Ok(metrics), Ok(services), Ok(vrrp)) if w.errors.is_empty() => {
            Ok(Config {
                source: source.to_path_buf(),
                node,
                admin,
                metrics,
                services: services.into_iter().map(|(s, _)| s).collect(),
                vrrp,
            })
        }
        _ => Err(ConfigErrors::new(w.errors)),
    }
}

/// A table of the document with its header span (for "missing key" errors)
/// and field path prefix.
struct Table<'t, 'i> {
    entries: &'t DeTable<'i>,
    header: Range<usize>,
    /// `""` for the root, `node`, `service[0]`, `service[0].backend[1]`.
    path: String,
}

impl<'t, 'i> Table<'t, 'i> {
    fn get(&self, key: &str) -> Option<&'t Value<'i>> {
        self.entries.get(key)
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

struct Walker<'a> {
    file: &'a Path,
    lines: LineIndex<'a>,
    errors: Vec<ConfigError>,
}

impl<'a> Walker<'a> {
    fn push(
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
    fn bad_value(&mut self, v: &Value<'_>, path: String, kind: ErrorKind, valid: &str) -> Reported {
        let span = v.span();
        // An implicit table (made by `[a.b]` or `a.b = 1`) spans just a key
        // name: quoting it as the value would mislead.
        let implicit = matches!(v.get_ref(), DeValue::Table(_))
            && !self.lines.written(&span).starts_with(['[', '{']);
        let value = (!implicit).then_some(&span);
        self.push(&span, path, value, kind, valid)
    }

    /// Reports every key of `table` not in `keys`.
    fn check_keys(&mut self, table: &Table<'_, '_>, keys: &[&str], name: &'static str) {
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
    fn field<T>(
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
    fn required<T>(
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

    /// An optional sub-table of `parent`, its keys checked.
    fn sub_table<'t, 'i>(
        &mut self,
        parent: &Table<'t, 'i>,
        key: &'static str,
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

    fn as_table<'t, 'i>(
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

    fn node(&mut self, root: &Table<'_, '_>) -> Result<NodeConfig, Reported> {
        let empty = DeTable::new();
        let table = self
            .sub_table(root, "node", NODE_KEYS, "[node]")?
            .unwrap_or(Table {
                entries: &empty,
                header: 0..0,
                path: "node".into(),
            });
        let name = self.field(&table, "name", VALID_NAME, |v| parse_name(v, is_name_char));
        let valid_workers = format!(
            "an integer from 0 (one per core) to {}",
            NodeConfig::MAX_WORKERS
        );
        let workers = self.field(&table, "workers", &valid_workers, |v| {
            integer(v, 0, NodeConfig::MAX_WORKERS as i64)
        });
        let grace_valid = format!(r#"{DURATION_EXAMPLES}, or "0s" to close at once"#);
        let grace = self.field(&table, "shutdown_grace", &grace_valid, |v| {
            duration(v, false)
        });
        let log_valid = format!("one of {}", join_names(LOG_LEVELS.iter().map(|(n, _)| *n)));
        let log = self.field(&table, "connection_log", &log_valid, |v| {
            one_of(v, LOG_LEVELS.iter().copied(), "level")
        });
        Ok(NodeConfig {
            name: name?.unwrap_or_else(default_node_name),
            workers: match workers?.unwrap_or(0) {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n as usize,
            },
            shutdown_grace: grace?.unwrap_or(NodeConfig::DEFAULT_SHUTDOWN_GRACE),
            connection_log: log?.unwrap_or(NodeConfig::DEFAULT_CONNECTION_LOG),
        })
    }

    fn admin(&mut self, root: &Table<'_, '_>) -> Result<AdminConfig, Reported> {
        let Some(table) = self.sub_table(root, "admin", ADMIN_KEYS, "[admin]")? else {
            return Ok(AdminConfig::default());
        };
        let valid = format!(
            r#"an absolute path of at most {} bytes, such as "{}""#,
            AdminConfig::MAX_SOCKET_PATH,
            AdminConfig::DEFAULT_SOCKET
        );
        let socket = self.field(&table, "socket", &valid, |v| {
            let s = string(v)?;
            if !s.starts_with('/') {
                Err(ErrorKind::Invalid("not an absolute path".into()))
            } else if s.len() > AdminConfig::MAX_SOCKET_PATH {
                // sun_path is 108 bytes including the terminating NUL.
                Err(ErrorKind::Invalid(
                    "too long for a Unix socket address".into(),
                ))
            } else {
                Ok(PathBuf::from(s))
            }
        })?;
        Ok(AdminConfig {
            socket: socket.unwrap_or_else(|| AdminConfig::default().socket),
        })
    }

    fn metrics(&mut self, root: &Table<'_, '_>) -> Result<MetricsConfig, Reported> {
        let Some(table) = self.sub_table(root, "metrics", METRICS_KEYS, "[metrics]")? else {
            return Ok(MetricsConfig::default());
        };
        let listen = self.required(&table, "listen", VALID_LISTEN, |v| socket_addr(v, false))?;
        Ok(MetricsConfig {
            listen: Some(listen),
        })
    }

    fn array_of_tables<'t, 'i>(
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
            if key == "service" && v.get_ref().get("backend").is_some() {
                // `[[service.backend]]` with no `[[service]]` above makes
                // `service` a plain table: say so rather than "wrong type".
                let kind = ErrorKind::Invalid("[[service.backend]] before any [[service]]".into());
                let valid = "a [[service]] table, then its [[service.backend]] tables";
                return Err(self.bad_value(v, path, kind, valid));
            }
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

    /// Records `key` as used by `path`; if it was already, reports the
    /// second use and names the first.
    fn unique<K: std::hash::Hash + Eq>(
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

    /// The exporter and a service cannot both bind one address.
    fn metrics_port_is_free(
        &mut self,
        root: &Table<'_, '_>,
        metrics: &MetricsConfig,
        services: &[(ServiceConfig, usize)],
    ) {
        let Some(listen) = metrics.listen else {
            return;
        };
        let Some((i, (_, line))) = services
            .iter()
            .enumerate()
            .find(|(_, (s, _))| s.listen == listen)
        else {
            return;
        };
        // Cannot fail: metrics.listen is Some only when [metrics] listen was read.
        let v = root
            .get("metrics")
            .and_then(|m| m.get_ref().get("listen"))
            .expect("metrics.listen was read from the file");
        let kind = ErrorKind::Duplicate {
            first: format!("service[{i}].listen"),
            first_line: *line,
        };
        self.bad_value(
            v,
            "metrics.listen".into(),
            kind,
            "an address no service listens on",
        );
    }
}

/// The kernel's hostname if it is a valid node name, else "tandem".
fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.len() <= 64 && h.chars().all(is_name_char))
        .unwrap_or_else(|| NodeConfig::DEFAULT_NAME_FALLBACK.to_string())
}
