//! The workspace's allowed dependencies (docs/architecture.md, "Crates"):
//! the API and the workers are backends like any other and never depend on
//! the balancer; the health checker and the PROXY protocol codec depend on no
//! other Tandem crate. Read from `cargo tree` (normal dependencies, this
//! platform), so a dependency that arrives transitively counts too.

use std::collections::BTreeSet;
use std::process::Command;

/// The Tandem packages `krate` depends on, directly or not (normal
/// dependencies only: dev-dependencies may use anything).
fn tandem_deps(krate: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-q", "--offline", "--locked", "-e", "normal"])
        .args(["--prefix", "none", "-p", krate])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {krate} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with("tandem") && *name != krate)
        .map(str::to_owned)
        .collect()
}

/// The "Crates" table of docs/architecture.md: crate name → the Tandem
/// crates it may depend on (`None` for "any").
fn allowed_by_docs() -> Vec<(String, Option<Vec<String>>)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/architecture.md"))
        .expect("docs/architecture.md is readable");
    let table = doc
        .split("### Crates")
        .nth(1)
        .expect("docs/architecture.md has a \"### Crates\" section");
    let names = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| n.starts_with("tandem"))
            .map(str::to_owned)
            .collect()
    };
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let krate = names(cells[1]).into_iter().next().expect("a crate name");
            let deps = match cells[3] {
                "any" => None,
                "none" => Some(vec![]),
                other => Some(names(other)),
            };
            (krate, deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_as_the_architecture_allows() {
    let table = allowed_by_docs();
    for (krate, allowed) in &table {
        let Some(allowed) = allowed else { continue };
        let deps = tandem_deps(krate);
        let extra: Vec<_> = deps.iter().filter(|d| !allowed.contains(d)).collect();
        assert!(
            extra.is_empty(),
            "{krate} depends on {extra:?}; allowed: {allowed:?} (docs/architecture.md, Crates)"
        );
    }
    // The rules the issue set, whatever the table says.
    for backend in ["tandem-api", "tandem-worker"] {
        assert!(
            !tandem_deps(backend).contains("tandem-lb"),
            "{backend} depends on tandem-lb"
        );
    }
    assert!(
        tandem_deps("tandem-healthcheck").is_empty(),
        "tandem-healthcheck depends on another Tandem crate"
    );
}

#[test]
fn every_workspace_crate_is_in_the_architecture_table() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "-q",
            "--offline",
            "--locked",
            "--no-deps",
            "--format-version",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: BTreeSet<String> = allowed_by_docs().into_iter().map(|(k, _)| k).collect();
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        members, listed,
        "the workspace's crates and docs/architecture.md's Crates table differ"
    );
}

/// The `.rs` files under `dir` (relative to the workspace), recursively.
fn rust_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Lines of code (comments left out) in `dir` that name `crate::MODULE`,
/// either as a path or inside a grouped `use crate::{...}`.
fn uses_of(dir: &str, module: &str) -> Vec<String> {
    let path = format!("crate::{module}");
    let mut hits = Vec::new();
    for file in rust_files(dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let grouped = code.contains("crate::{") && code.contains(module);
            if code.contains(&path) || grouped {
                hits.push(format!("{}:{}: {}", file.display(), n + 1, code));
            }
        }
    }
    hits
}

/// failover publishes its status on a channel and reload reaches it through
/// a channel wired in `run`, so neither module names the other (issue 12:
/// the two used to import each other).
#[test]
fn failover_and_runtime_do_not_import_each_other() {
    let f = uses_of("lb/src/failover", "runtime");
    assert!(
        f.is_empty(),
        "lb/src/failover imports crate::runtime:\n{}",
        f.join("\n")
    );
    let r = uses_of("lb/src/runtime", "failover");
    assert!(
        r.is_empty(),
        "lb/src/runtime imports crate::failover:\n{}",
        r.join("\n")
    );
}
