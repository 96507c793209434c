//! SIGHUP (`systemctl reload tandem-api`): the config file is read and
//! validated again, and the keys that differ from the running config are
//! logged. Nothing the API runs on can change under it yet (the listener,
//! the pool, the kinds, the timeouts are all fixed at start; the API has
//! no log level of its own, `RUST_LOG` sets it), so every changed key
//! needs a restart, and the log says which. A file that does not validate
//! is refused with its errors; either way the running config is kept and
//! the process never exits over a reload. Without a handler, SIGHUP's
//! default action would end the process.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// What a reload found.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The file is valid and equal to the running one, key for key.
    Unchanged,
    /// The file is valid; these keys (dotted paths) differ from the running
    /// config and need a restart.
    NeedsRestart(Vec<String>),
    /// The file does not validate (the errors, located).
    Refused(String),
}

/// The running config file and its text at start, for comparison.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    running: toml::Table,
}

impl Reloader {
    /// `running` is the text the process started with.
    pub fn new(path: &Path, running: &str) -> Reloader {
        Reloader {
            path: path.to_owned(),
            running: running.parse().unwrap_or_default(),
        }
    }

    /// Reads and checks the file again, and logs the outcome.
    pub fn reload(&self) -> Outcome {
        tracing::info!("SIGHUP: reloading {}", self.path.display());
        let outcome = self.check();
        match &outcome {
            Outcome::Unchanged => tracing::info!("reload: {} unchanged", self.path.display()),
            Outcome::NeedsRestart(keys) => tracing::warn!(
                keys = %keys.join(", "),
                "reload: changed keys need a restart (systemctl restart tandem-api); the running configuration is kept"
            ),
            Outcome::Refused(e) => {
                tracing::error!("reload refused, the running configuration is kept:\n{e}")
            }
        }
        outcome
    }

    fn check(&self) -> Outcome {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) => return Outcome::Refused(format!("{}: {e}", self.path.display())),
        };
        if let Err(e) = Config::parse(&text, &self.path) {
            return Outcome::Refused(e.to_string());
        }
        // Config::parse accepted it, so it is TOML.
        let new: toml::Table = text.parse().unwrap_or_default();
        let mut changed = Vec::new();
        diff("", &self.running, &new, &mut changed);
        if changed.is_empty() {
            Outcome::Unchanged
        } else {
            Outcome::NeedsRestart(changed)
        }
    }

    /// The `STATUS=` text after `outcome`.
    pub fn status(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Unchanged => "serving",
            Outcome::NeedsRestart(_) => "serving; restart to apply changed keys",
            Outcome::Refused(_) => "serving; last reload refused",
        }
    }
}

/// The dotted paths where `a` and `b` differ (added, removed or changed),
/// in key order; tables are compared key by key, anything else as a whole.
fn diff(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (a.get(k), b.get(k)) {
            (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => diff(&path, x, y, out),
            (x, y) if x != y => out.push(path),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(a: &str, b: &str) -> Vec<String> {
        let mut out = Vec::new();
        diff("", &a.parse().unwrap(), &b.parse().unwrap(), &mut out);
        out
    }

    #[test]
    fn diff_names_each_changed_key() {
        let a = "lease = \"30s\"\nlisten = \"127.0.0.1:1\"\n[kinds.text]\nurl = \"http://a:1\"\n";
        assert!(changed(a, a).is_empty());
        let b = "lease = \"10s\"\nlisten = \"127.0.0.1:1\"\nretention = \"1d\"\n[kinds.text]\nurl = \"http://b:1\"\n[kinds.new]\nurl = \"http://c:1\"\n";
        assert_eq!(
            changed(a, b),
            ["kinds.new", "kinds.text.url", "lease", "retention"]
        );
        assert_eq!(
            changed(b, a),
            ["kinds.new", "kinds.text.url", "lease", "retention"]
        );
    }

    #[test]
    fn a_bad_file_is_refused_and_an_equal_one_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.toml");
        let good = "lease = \"30s\"\n";
        std::fs::write(&path, good).unwrap();
        let r = Reloader::new(&path, good);
        assert_eq!(r.reload(), Outcome::Unchanged);
        std::fs::write(&path, "lease = \"30 parsecs\"\n").unwrap();
        match r.reload() {
            Outcome::Refused(e) => assert!(e.contains("api.toml:1:9: lease"), "{e}"),
            o => panic!("{o:?}"),
        }
        std::fs::write(&path, "lease = \"5s\"\n").unwrap();
        assert_eq!(r.reload(), Outcome::NeedsRestart(vec!["lease".into()]));
    }
}
