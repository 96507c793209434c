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
