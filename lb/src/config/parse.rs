//! From TOML text to a validated [`Config`], collecting every error.
//!
//! The walk itself (spanned document, field readers answering `Ok(Some(v))`,
//! `Ok(None)` or `Err(Reported)`, the error list) is
//! `tandem_service::config::Walker`'s; [`Walker`] here wraps it so that the
//! balancer's table readers can be its methods. The `Config` is assembled
//! only when no error was recorded.
//!
//! One submodule per table: [`service`] (`[[service]]`, its backends),
//! [`health`] (`[service.health]` layers), [`all_down`], [`vrrp`]; this
//! file holds the walker, the root, `[node]`, `[admin]` and `[metrics]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use super::values::{
    command_word, duration, integer, is_name_char, join_names, names_of_schedulers, one_of,
    parse_name, socket_addr, string,
};
use super::{
    AdminConfig, BackendConfig, Config, MetricsConfig, NodeConfig, ProxyProtocol, ServiceConfig,
};
use crate::sched::SchedulerKind;
use tandem_service::config::walk::{self, Field, Reported, Table, Value};
use tandem_service::config::{ConfigErrors, DURATION_EXAMPLES, ErrorKind};
use toml::de::{DeTable, DeValue};

mod all_down;
mod health;
mod persistence;
mod service;
mod vrrp;

use health::HealthLayer;

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
    "persistence_timeout",
    "persistence_granularity",
    "persistence_granularity_v6",
    "persistence_max_entries",
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
    let doc = walk::document(text, source)?;
    let mut w = Walker(walk::Walker::new(text, source));
    let root = Table::root(&doc);
    w.check_keys(&root, ROOT_KEYS, "the top level");
    let node = w.node(&root);
    let admin = w.admin(&root);
    let metrics = w.metrics(&root);
    let services = w.services(&root);
    if let (Ok(services), Ok(metrics)) = (&services, &metrics) {
        w.metrics_port_is_free(&root, metrics, services);
    }
    let vrrp = w.vrrp(&root, &vrrp::service_names(&root));
    let config = (|| {
        Ok(Config {
            source: source.to_path_buf(),
            node: node?,
            admin: admin?,
            metrics: metrics?,
            services: services?.into_iter().map(|(s, _)| s).collect(),
            vrrp: vrrp?,
        })
    })();
    w.0.finish(config)
}

/// The shared walker, with the balancer's table readers as methods (here
/// and in the submodules).
struct Walker<'a>(walk::Walker<'a>);

impl<'a> Deref for Walker<'a> {
    type Target = walk::Walker<'a>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Walker<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Walker<'_> {
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
