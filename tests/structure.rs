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

#[test]
fn crates_depend_only_as_the_architecture_allows() {
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
        let deps = tandem_deps(krate);
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
