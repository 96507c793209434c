//! Retention: finished jobs, their results and inputs go after their
//! time, per key, in batches; SQLite gives the pages back.

mod support;

use std::time::Duration;

use support::*;
use tandem_api::db::{Db, now_ms};
use tandem_api::jobs::retention::{self, BATCH, Policy};
use tandem_api::jobs::{self, NewJob};
use tandem_api::keys;

const DAY: i64 = 86_400_000;

fn job(key: &str, n: usize) -> NewJob {
    NewJob {
        key_id: key.to_owned(),
        kind: "upper".to_owned(),
        // 8 KiB each: enough rows and bytes that pages are freed.
        input: vec![b'a' + (n % 26) as u8; 8192],
        input_type: "text/plain".to_owned(),
        idem_key: None,
        body_hash: vec![0; 32],
        max_attempts: 3,
        priority: 0,
        params: None,
        callback_url: None,
    }
}

/// `n` jobs of `key`, stored, then marked `state` and finished `age_ms`
/// ago (with an 8 KiB result when done). Returns their ids.
async fn finished(db: &Db, key: &str, n: usize, state: &str, age_ms: i64) -> Vec<String> {
    let batch: Vec<NewJob> = (0..n).map(|i| job(key, i)).collect();
    let mut ids = Vec::new();
    for chunk in batch.chunks(200) {
        for c in jobs::create_batch(db, chunk).await {
            match c.unwrap() {
                jobs::Created::New(v) => ids.push(v.id),
                other => panic!("{other:?}"),
            }
        }
    }
    let at = now_ms() - age_ms;
    for id in &ids {
        sqlx::query("UPDATE jobs SET state = ?, finished_ms = ? WHERE id = ?")
            .bind(state)
            .bind(at)
            .bind(id)
            .execute(&db.writer)
            .await
            .unwrap();
        if state == "done" {
            sqlx::query("INSERT INTO results (job_id, content_type, body, attempt, created_ms) VALUES (?, 'text/plain', ?, 1, ?)")
                .bind(id)
                .bind(vec![b'r'; 8192])
                .bind(at)
                .execute(&db.writer)
                .await
                .unwrap();
        }
    }
    ids
}

async fn n(db: &Db, sql: &str, key: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(key)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn prunes_per_key_and_inputs_first(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else {
        return;
    };
    let db = Db::open(&url, 4).await.unwrap();
    let (old, _) = keys::create(&db, "old", 1.0, 1).await.unwrap();
    let (kept, _) = keys::create(&db, "kept", 1.0, 1).await.unwrap();
    keys::set_retention(&db, "kept", Some(Duration::from_secs(30 * 86_400)))
        .await
        .unwrap();
    // More than one batch of each, so the loop over batches is exercised.
    let count = BATCH + 150;
    finished(&db, &old.id, count, "done", 8 * DAY).await;
    finished(&db, &old.id, 40, "failed", 8 * DAY).await;
    finished(&db, &old.id, 40, "cancelled", 8 * DAY).await;
    let young = finished(&db, &old.id, 30, "done", DAY / 2).await;
    finished(&db, &kept.id, count, "done", 8 * DAY).await;
    // Never finished: never pruned, however old.
    let queued = finished(&db, &old.id, 20, "queued", 0).await;
    sqlx::query("UPDATE jobs SET finished_ms = NULL, created_ms = 0 WHERE state = 'queued'")
        .execute(&db.writer)
        .await
        .unwrap();
    let size_before = retention::sizes(&db).await.unwrap();

    let policy = Policy {
        retention: Duration::from_secs(7 * 86_400),
        input_retention: Some(Duration::from_secs(86_400)),
    };
    // Seven and a half days earlier, nothing was old yet.
    let early = retention::prune(&db, &policy, now_ms() - 7 * DAY - DAY / 2)
        .await
        .unwrap();
    assert_eq!((early.jobs, early.inputs), (0, 0));
    let p = retention::prune(&db, &policy, now_ms()).await.unwrap();
    assert_eq!(p.jobs as usize, count + 80, "old's expired jobs");
    // kept's are past input_retention (not its retention): inputs only.
    assert_eq!(p.inputs as usize, count);
    let jobs_of = "SELECT COUNT(*) FROM jobs WHERE key_id = ?";
    assert_eq!(
        n(&db, jobs_of, &old.id).await as usize,
        young.len() + queued.len()
    );
    assert_eq!(n(&db, jobs_of, &kept.id).await as usize, count);
    let results_of =
        "SELECT COUNT(*) FROM results r JOIN jobs j ON j.id = r.job_id WHERE j.key_id = ?";
    assert_eq!(n(&db, results_of, &old.id).await as usize, young.len());
    assert_eq!(
        n(&db, results_of, &kept.id).await as usize,
        count,
        "results stay"
    );
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM results WHERE job_id NOT IN (SELECT id FROM jobs)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
    let emptied =
        "SELECT COUNT(*) FROM jobs WHERE key_id = ? AND input_kept = 0 AND LENGTH(input) = 0";
    assert_eq!(n(&db, emptied, &kept.id).await as usize, count);
    assert_eq!(
        n(&db, emptied, &old.id).await,
        0,
        "young and queued inputs stay"
    );
    // A second pass has nothing left to do.
    let again = retention::prune(&db, &policy, now_ms()).await.unwrap();
    assert_eq!((again.jobs, again.inputs), (0, 0));

    if backend == "sqlite" {
        // About 20 MB of rows went; the file gave the pages back.
        let (_, bytes_before, _) = size_before[0].clone();
        let (_, bytes_after, free_after) = retention::sizes(&db).await.unwrap()[0].clone();
        assert!(p.pages > 0);
        assert_eq!(free_after, 0, "no free pages left in the file");
        assert!(
            bytes_after < bytes_before / 2,
            "file {bytes_before} → {bytes_after} bytes"
        );
        let on_disk = std::fs::metadata(dir.path().join("api.db")).unwrap().len() as i64;
        assert!(
            on_disk <= bytes_after,
            "{on_disk} on disk, {bytes_after} in pages"
        );
    } else {
        assert!(
            retention::sizes(&db)
                .await
                .unwrap()
                .iter()
                .any(|(t, b, _)| t == "jobs" && *b > 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_go_after_their_key_s_retention_and_inputs_earlier_sqlite() {
    prunes_per_key_and_inputs_first("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_go_after_their_key_s_retention_and_inputs_earlier_mariadb() {
    prunes_per_key_and_inputs_first("mariadb").await;
}

/// A file made before incremental auto-vacuum is converted once at open.
#[tokio::test]
async fn an_old_sqlite_file_is_converted_to_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.db");
    {
        use sqlx::{Connection, Executor};
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        c.execute("CREATE TABLE before_us (x INTEGER)")
            .await
            .unwrap();
        let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(mode, 0);
    }
    let db = Db::open(&format!("sqlite://{}?mode=rwc", path.display()), 2)
        .await
        .unwrap();
    let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(&db.writer)
        .await
        .unwrap();
    assert_eq!(mode, 2, "incremental");
}
