//! Issue 15, items 6 and 7 (the API part): what a client or an operator
//! could do to a replica that it should not.

mod support;

use support::cli_child;
use support::*;

/// `/readyz` says ready or not ready with a fixed reason; the driver's
/// own error text (table names, SQL, addresses) stays in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_does_not_leak_database_errors() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config_text(&url, &worker.url, "5s")).await;
    let readyz = format!("{}/readyz", r.url());
    assert_eq!(call("GET", &readyz, None, &[], "").await.status, 200);

    // The readiness query now fails inside SQLite ("no such table: ...").
    sqlx::query("DROP TABLE _sqlx_migrations")
        .execute(&r.db.pool)
        .await
        .unwrap();
    let a = call("GET", &readyz, None, &[], "").await;
    assert_eq!(a.status, 503);
    let body = a.text();
    assert_eq!(a.json()["error"]["code"], "not_ready", "{body}");
    assert_eq!(
        a.json()["error"]["message"],
        "database unavailable",
        "{body}"
    );
    for leak in [
        "_sqlx_migrations",
        "no such table",
        "sqlite",
        "code:",
        "readiness",
    ] {
        assert!(
            !body.to_lowercase().contains(leak),
            "/readyz body carries {leak:?}: {body}"
        );
    }
    r.stop().await;
}

/// Not a test by itself: the body of a `CliReplica` child (`tandem api
/// run`); returns at once when not started as one.
#[test]
fn cli_child() {
    cli_child::cli_child_main();
}

/// The soft and hard "Max open files" of process `pid`.
fn nofile_of(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

/// A child replica config on SQLite in `dir`; returns its path.
fn cli_config(dir: &std::path::Path, worker: &str, extra: &str) -> std::path::PathBuf {
    let url = format!("sqlite://{}?mode=rwc", dir.join("api.db").display());
    let path = dir.join("api.toml");
    std::fs::write(&path, format!("{extra}{}", config_text(&url, worker, "5s"))).unwrap();
    path
}

/// Started with the usual soft limit of 1,024 descriptors (or lower), the
/// API raises it to the hard limit and says so in its log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_raises_its_descriptor_limit() {
    let (_, hard) = tandem_service::rlimit::nofile().unwrap();
    let soft = 256.min(hard);
    if soft == hard {
        eprintln!("skipped: the hard descriptor limit is {hard}, nothing to raise");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = cli_config(dir.path(), "http://127.0.0.1:9", "");
    let r = cli_child::CliReplica::spawn("cli_child", &cfg, Some(soft));
    assert_eq!(nofile_of(r.child.id()), (hard, hard));
    let line = r.logged(&["descriptor limit"]);
    assert!(
        line.iter().any(|l| l.contains(&format!("nofile={hard}"))),
        "logged: {line:?}"
    );
}
