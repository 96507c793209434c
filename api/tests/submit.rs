//! Group commit of submissions: idempotency within a batch and across
//! replicas, priority, and the bounded queue.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use support::*;
use tandem_api::config::DbSettings;
use tandem_api::db::Db;
use tandem_api::dispatcher::Wakers;
use tandem_api::jobs::{self, Created, NewJob};
use tandem_api::keys;
use tandem_api::submit::{SubmitError, Submitter};

fn job(key: &str, idem: Option<&str>, body: &str) -> NewJob {
    NewJob {
        key_id: key.to_owned(),
        kind: "upper".to_owned(),
        input: body.as_bytes().to_vec(),
        input_type: "text/plain".to_owned(),
        idem_key: idem.map(str::to_owned),
        body_hash: body.as_bytes().to_vec(),
        max_attempts: 3,
        priority: 0,
        params: None,
        callback_url: None,
    }
}

fn id(c: &Created) -> &str {
    match c {
        Created::New(v) | Created::Replayed(v) => &v.id,
        Created::Conflict => "conflict",
    }
}

#[tokio::test]
async fn one_batch_keeps_every_idempotency_rule() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&database("sqlite", dir.path()).await.unwrap(), 2)
        .await
        .unwrap();
    let batch = [
        job("k1", Some("a"), "one"),
        job("k1", Some("a"), "one"),
        job("k1", Some("a"), "two"),
        job("k1", None, "one"),
        job("k2", Some("a"), "one"),
    ];
    let out: Vec<Created> = jobs::create_batch(&db, &batch)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(matches!(out[0], Created::New(_)));
    assert!(
        matches!(out[1], Created::Replayed(_)) && id(&out[1]) == id(&out[0]),
        "same key and body in one batch: the first one's job"
    );
    assert!(matches!(out[2], Created::Conflict), "same key, other body");
    assert!(
        matches!(out[3], Created::New(_)),
        "no key: a job of its own"
    );
    assert!(
        matches!(out[4], Created::New(_)) && id(&out[4]) != id(&out[0]),
        "the same key of another API key is another job"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, 3);
    // A later batch sees the stored rows.
    let again = jobs::create_batch(&db, &[job("k1", Some("a"), "two"), batch[0].clone()]).await;
    assert!(matches!(again[0], Ok(Created::Conflict)));
    assert!(matches!(&again[1], Ok(Created::Replayed(v)) if v.id == id(&out[0])));
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, 3);
}

/// 20 concurrent posts per idempotency key, half of them to each of two
/// replicas (on MariaDB their batches race on the unique index); for some
/// keys half the bodies differ. One job per key; every 202 names it.
async fn concurrent_same_key(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else {
        return;
    };
    let cfg = config_text(&url, "http://127.0.0.1:9", "10s");
    let r1 = Replica::start(&cfg).await;
    let r2 = Replica::start(&cfg).await;
    let (_, token) = keys::create(&r1.db, "k", 1e6, 1_000_000).await.unwrap();
    let keys = 10;
    let mut tasks = Vec::new();
    for k in 0..keys {
        for i in 0..20 {
            let base = if i % 2 == 0 { r1.url() } else { r2.url() };
            let token = token.clone();
            let input = if k % 2 == 1 && i >= 10 {
                "other"
            } else {
                "same"
            };
            tasks.push(tokio::spawn(async move {
                let a = call(
                    "POST",
                    &format!("{base}/v1/jobs"),
                    Some(&token),
                    &[("idempotency-key", &format!("key-{k}"))],
                    json!({"kind": "upper", "input": input}).to_string(),
                )
                .await;
                (k, input, a)
            }));
        }
    }
    let mut ids = vec![HashSet::new(); keys];
    let mut fresh = vec![0; keys];
    for t in tasks {
        let (k, input, a) = t.await.unwrap();
        match a.status {
            202 => {
                ids[k].insert(a.json()["id"].as_str().unwrap().to_owned());
                if a.header("idempotent-replayed").is_none() {
                    fresh[k] += 1;
                }
            }
            409 => assert_eq!(a.code(), "idempotency_conflict", "{input}"),
            s => panic!("unexpected {s}: {}", a.text()),
        }
    }
    for k in 0..keys {
        assert_eq!(ids[k].len(), 1, "key-{k}: one job");
        assert_eq!(fresh[k], 1, "key-{k}: one answer that is not a replay");
    }
    assert_eq!(
        count(&r1.db, "SELECT COUNT(*) FROM jobs").await,
        keys as i64
    );
    r1.stop().await;
    r2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_same_key_makes_one_job_sqlite() {
    concurrent_same_key("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_same_key_makes_one_job_mariadb() {
    concurrent_same_key("mariadb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_is_checked_stored_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let r = Replica::start(&config_text(&url, "http://127.0.0.1:9", "10s")).await;
    let (_, token) = keys::create(&r.db, "k", 1e6, 1_000_000).await.unwrap();
    for bad in [json!(10), json!(-1), json!("3"), json!(1.5), json!(true)] {
        let a = post_job(
            &r.url(),
            &token,
            json!({"kind": "upper", "input": "x", "priority": bad}),
        )
        .await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (422, "bad_priority"),
            "{bad}"
        );
        let msg = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("priority") && msg.contains("0") && msg.contains("9"),
            "{msg}"
        );
    }
    let a = post_job(&r.url(), &token, json!({"kind": "upper", "input": "x"})).await;
    assert_eq!((a.status, a.json()["priority"].as_i64()), (202, Some(0)));
    let a = post_job(
        &r.url(),
        &token,
        json!({"kind": "upper", "input": "x", "priority": 7}),
    )
    .await;
    assert_eq!((a.status, a.json()["priority"].as_i64()), (202, Some(7)));
    let id = a.json()["id"].as_str().unwrap().to_owned();
    let got = call(
        "GET",
        &format!("{}/v1/jobs/{id}", r.url()),
        Some(&token),
        &[],
        "",
    )
    .await;
    assert_eq!(got.json()["priority"], 7);
    let stored: i64 = sqlx::query_scalar("SELECT priority FROM jobs WHERE id = ?")
        .bind(&id)
        .fetch_one(&r.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 7);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_the_rest_commit() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let settings = DbSettings {
        submit_batch: 1,
        submit_queue: 2,
        ..DbSettings::default()
    };
    let db = Db::open_with(&url, 2, &settings).await.unwrap();
    let config = tandem_api::config::Config::parse(
        &config_text(&url, "http://127.0.0.1:9", "10s"),
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    let submitter = Submitter::spawn(db.clone(), &settings, Wakers::new(&config));
    // Hold SQLite's one writer connection: the batcher's first batch waits
    // for it, the queue fills behind it.
    let held = db.writer.acquire().await.unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = submitter.clone();
            tokio::spawn(async move { s.submit(job("k", None, &format!("j{i}"))).await })
        })
        .collect();
    // At most one batch of one in flight plus two queued: the others are
    // refused without waiting for the writer.
    let refused = eventually(Duration::from_secs(10), "refusals", || {
        let done = tasks.iter().filter(|t| t.is_finished()).count();
        async move { (done >= 7).then_some(done) }
    })
    .await;
    assert!(
        refused <= 8,
        "nothing is stored while the writer is held: {refused}"
    );
    drop(held);
    let (mut busy, mut stored) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Err(SubmitError::Busy) => busy += 1,
            Ok(Created::New(_)) => stored += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((7..=8).contains(&busy), "busy {busy}");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM jobs").await, stored);
}

/// Relaxed writes (rate limit, request log) never leave the writer relaxed
/// for a job's commit: `done` restores `synchronous = FULL`, and a relaxed
/// connection dropped without it is closed, not reused.
#[tokio::test]
async fn relaxed_writes_never_leak_into_job_commits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&database("sqlite", dir.path()).await.unwrap(), 2)
        .await
        .unwrap();
    let sync = |db: Db| async move {
        let n: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&db.writer)
            .await
            .unwrap();
        n
    };
    // SQLite's codes: 1 NORMAL, 2 FULL.
    assert_eq!(sync(db.clone()).await, 2);
    let mut w = db.relaxed().await.unwrap();
    let n: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *w.conn)
        .await
        .unwrap();
    assert_eq!(n, 1, "relaxed while held");
    w.done().await;
    assert_eq!(sync(db.clone()).await, 2, "restored by done");
    drop(db.relaxed().await.unwrap());
    assert_eq!(sync(db.clone()).await, 2, "dropped: a fresh connection");
}

/// A batch that InnoDB rolls back to break a deadlock is run again rather
/// than answered 503. The test makes the deadlock on purpose: another
/// transaction, heavier (so InnoDB picks the batch as the victim), holds
/// key `k2` while the batch holds `k1` and waits for `k2`; then it asks
/// for `k1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_rolled_back_by_a_deadlock_is_run_again() {
    use sqlx::{Connection, Executor};
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database("mariadb", dir.path()).await else {
        return;
    };
    let db = Db::open(&url, 4).await.unwrap();
    let (key, _) = keys::create(&db, "k", 1e6, 1_000_000).await.unwrap();
    let mut other = sqlx::MySqlConnection::connect(&url).await.unwrap();
    let insert = |idem: Option<&str>, id: String| {
        sqlx::query(
            "INSERT INTO jobs (id, key_id, kind, state, input, input_type, idem_key, \
             body_hash, max_attempts, run_at_ms, created_ms) \
             VALUES (?, ?, 'upper', 'queued', 'same', 'text/plain', ?, 'same', 3, 0, 0)",
        )
        .bind(id)
        .bind(key.id.clone())
        .bind(idem.map(str::to_owned))
    };
    other.execute("BEGIN").await.unwrap();
    for i in 0..50 {
        other
            .execute(insert(None, format!("j_heavy{i}")))
            .await
            .unwrap();
    }
    other
        .execute(insert(Some("k2"), "j_other2".into()))
        .await
        .unwrap();

    let batch = {
        let db = db.clone();
        let key = key.id.clone();
        tokio::spawn(async move {
            let jobs = [job(&key, Some("k1"), "same"), job(&key, Some("k2"), "same")];
            jobs::create_batch(&db, &jobs).await
        })
    };
    // INNODB_TRX lags on MariaDB; the engine status names the wait at once.
    eventually(
        Duration::from_secs(10),
        "the batch waits for k2",
        || async {
            let (_, _, status): (String, String, String) =
                sqlx::query_as("SHOW ENGINE INNODB STATUS")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            status.contains("LOCK WAIT") && status.contains("index jobs_idem")
        },
    )
    .await;
    // The deadlock: InnoDB rolls the lighter transaction, the batch, back.
    other
        .execute(insert(Some("k1"), "j_other1".into()))
        .await
        .expect("the heavier transaction is not the deadlock's victim");
    other.execute("COMMIT").await.unwrap();

    let outcomes = batch.await.unwrap();
    for (idem, outcome) in ["k1", "k2"].iter().zip(outcomes) {
        match outcome.unwrap_or_else(|e| panic!("{idem}: {e}")) {
            Created::Replayed(v) => assert_eq!(v.id, format!("j_other{}", &idem[1..])),
            other => panic!("{idem}: {other:?}"),
        }
    }
}
