//! The workspace's allowed dependencies (docs/architecture.md, "Crates"):
//! the API and the workers are backends like any other and never depend on
//! the balancer; the health checker and the PROXY protocol codec depend on no
//! other Tandem crate. Read from `cargo metadata`'s resolved graph, so a
//! dependency that arrives transitively counts too.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Every workspace package's name → the names of all Tandem packages it
/// depends on, directly or not (normal dependencies only: dev-dependencies
/// may use anything).
fn tandem_closure() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    // id → ids of its normal dependencies.
    let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap())
            .collect();
        edges.insert(node["id"].as_str().unwrap(), deps);
    }
    let mut closure = BTreeMap::new();
    for m in &members {
        let mut seen = BTreeSet::new();
        let mut todo = edges[m].clone();
        while let Some(id) = todo.pop() {
            if seen.insert(id) {
                todo.extend(edges[id].iter().copied());
            }
        }
        let tandem: BTreeSet<String> = seen
            .into_iter()
            .filter(|id| members.contains(id))
            .map(|id| name_of[id].to_string())
            .collect();
        closure.insert(name_of[m].to_string(), tandem);
    }
    closure
}

#[test]
fn crates_depend_only_as_the_architecture_allows() {
    let c = tandem_closure();
    for (krate, allowed) in [
        ("tandem-proxy-protocol", &[][..]),
        ("tandem-healthcheck", &[][..]),
        ("tandem-worker", &[][..]),
        ("tandem-api", &["tandem-proxy-protocol"][..]),
        (
            "tandem-lb",
            &["tandem-healthcheck", "tandem-proxy-protocol"][..],
        ),
    ] {
        let deps = c
            .get(krate)
            .unwrap_or_else(|| panic!("{krate} is not a workspace member: {c:?}"));
        let extra: Vec<_> = deps
            .iter()
            .filter(|d| !allowed.contains(&d.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{krate} depends on {extra:?}; allowed: {allowed:?} (docs/architecture.md, Crates)"
        );
    }
}
