//! Issue 15, items 6 and 7 (the API part): what a client or an operator
//! could do to a replica that it should not.

mod support;

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
