//! The dispatcher against pools of slots: the limit follows the pool, one
//! key's burst does not starve another key, priority goes first, and a
//! kind of long jobs does not slow a kind of short ones.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;
use support::pool::FakePool;
use support::*;
use tandem_api::db::Db;
use tandem_api::jobs::{self, Created, NewJob};
use tandem_api::keys;
use tandem_test_support::eventually;

/// An API config with one kind per `(name, url)`, every dispatch setting at
/// its default.
fn config(db_url: &str, kinds: &[(&str, &str)]) -> String {
    let mut s = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{db_url}\"\nlease = \"30s\"\npoll_interval = \"50ms\"\n"
    );
    for (name, url) in kinds {
        s.push_str(&format!(
            "[kinds.{name}]\nurl = \"{url}\"\nmax_attempts = 3\n"
        ));
    }
    s
}

/// Stores `n` jobs of `kind` for `key_id` straight into the database.
async fn insert(db: &Db, key_id: &str, kind: &str, n: usize) -> Vec<String> {
    insert_at(db, key_id, kind, n, 0).await
}

/// [`insert`] with a `priority`.
async fn insert_at(db: &Db, key_id: &str, kind: &str, n: usize, priority: u8) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let job = NewJob {
            key_id: key_id.to_owned(),
            kind: kind.to_owned(),
            input: format!("job {i}").into_bytes(),
            input_type: "text/plain".into(),
            idem_key: None,
            body_hash: vec![0; 32],
            max_attempts: 3,
            priority: priority.into(),
            params: None,
            callback_url: None,
        };
        match jobs::create(db, job).await.unwrap() {
            Created::New(v) => ids.push(v.id),
            other => panic!("{other:?}"),
        }
    }
    ids
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn key_id(token: &str) -> String {
    // Tokens are `tandem_{id}_{secret}`.
    token.split('_').nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_limit_follows_the_pool_when_slots_are_added() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let pool = FakePool::spawn(4, Duration::from_millis(100)).await;
    let r = Replica::start(&config(&url, &[("upper", &pool.url)])).await;
    let (_, token) = keys::create(&r.db, "a", 1000.0, 1000).await.unwrap();
    insert(&r.db, &key_id(&token), "upper", 600).await;

    // Four slots: the dispatcher fills them.
    eventually(Duration::from_secs(10), "4 slots in use", || async {
        pool.peak() >= 4
    })
    .await;
    assert!(pool.peak() <= 4, "the pool never runs more than its slots");

    // The pool grows to 16 slots (workers joined): with no change to the
    // API, the dispatcher fills them.
    pool.state.slots.store(16, Ordering::SeqCst);
    eventually(Duration::from_secs(10), "16 slots in use", || async {
        pool.peak() >= 15
    })
    .await;

    eventually(Duration::from_secs(60), "every job done", || async {
        count(&r.db, "SELECT COUNT(*) FROM jobs WHERE state = 'done'").await == 600
    })
    .await;
    // A 503 costs no attempt, and no job ran twice.
    let n = count(&r.db, "SELECT COUNT(*) FROM jobs WHERE attempts != 1").await;
    assert_eq!(n, 0, "jobs with other than one attempt");
    assert_eq!(pool.finished().len(), 600);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_keys_burst_does_not_starve_another_keys_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let pool = FakePool::spawn(8, Duration::from_millis(2)).await;
    pool.gate.send_replace(false);
    let r = Replica::start(&config(&url, &[("upper", &pool.url)])).await;
    let (_, a) = keys::create(&r.db, "bulk", 1000.0, 1000).await.unwrap();
    let (_, b) = keys::create(&r.db, "small", 1000.0, 1000).await.unwrap();
    insert(&r.db, &key_id(&a), "upper", 5_000).await;
    let small = insert(&r.db, &key_id(&b), "upper", 10).await;
    pool.gate.send_replace(true);

    eventually(
        Duration::from_secs(30),
        "the small key's 10 jobs done",
        || async {
            count(
                &r.db,
                &format!(
                    "SELECT COUNT(*) FROM jobs WHERE key_id = '{}' AND state = 'done'",
                    key_id(&b)
                ),
            )
            .await
                == 10
        },
    )
    .await;
    let order = pool.finished();
    let last = small
        .iter()
        .map(|id| order.iter().position(|f| f == id).expect("ran"))
        .max()
        .unwrap();
    // First come, first served would run them after the 5,000. Taking
    // keys in turn runs them among the first: behind what was claimed
    // before they were queued (at most the limit and half again) and one
    // job of the other key each.
    assert!(
        last < 100,
        "the small key's last job finished {last}th of {}",
        order.len()
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_runs_first_within_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let pool = FakePool::spawn(4, Duration::from_millis(2)).await;
    pool.gate.send_replace(false);
    let r = Replica::start(&config(&url, &[("upper", &pool.url)])).await;
    let (_, a) = keys::create(&r.db, "a", 1000.0, 1000).await.unwrap();
    let low = insert_at(&r.db, &key_id(&a), "upper", 300, 9).await;
    let urgent = insert(&r.db, &key_id(&a), "upper", 5).await;
    pool.gate.send_replace(true);
    eventually(Duration::from_secs(30), "all done", || async {
        count(&r.db, "SELECT COUNT(*) FROM jobs WHERE state = 'done'").await == 305
    })
    .await;
    let order = pool.finished();
    let last = urgent
        .iter()
        .map(|id| order.iter().position(|f| f == id).unwrap())
        .max()
        .unwrap();
    assert!(last < 30, "the last urgent job finished {last}th");
    assert_eq!(order.len(), low.len() + urgent.len());
    r.stop().await;
}

/// p99 of submit-to-done of the `kind` jobs `ids`, from the rows.
async fn p99_ms(db: &Db, ids: &[String]) -> i64 {
    let mut lat = Vec::new();
    for id in ids {
        let (c, f): (i64, i64) =
            sqlx::query_as("SELECT created_ms, finished_ms FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        lat.push(f - c);
    }
    lat.sort_unstable();
    // Nearest rank: the ceil(0.99 n)-th smallest.
    let p99 = lat[(lat.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "submit-to-done ms: p50 {} p99 {p99} max {}",
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
    p99
}

/// Submits 200 short jobs through the API, one every 5 ms; waits for them.
async fn short_stream(r: &Replica, token: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..200 {
        let a = post_job(
            &r.url(),
            token,
            json!({"kind": "upper", "input": format!("s{i}")}),
        )
        .await;
        assert_eq!(a.status, 202);
        ids.push(a.json()["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually(Duration::from_secs(30), "the short jobs done", || async {
        let mut done = 0;
        for id in &ids {
            let s: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_one(&r.db.pool)
                .await
                .unwrap();
            done += usize::from(s == "done");
        }
        done == ids.len()
    })
    .await;
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_jobs_do_not_wait_behind_long_ones() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let short = FakePool::spawn(8, Duration::from_millis(5)).await;
    let long = FakePool::spawn(8, Duration::from_secs(2)).await;
    let r = Replica::start(&config(&url, &[("upper", &short.url), ("long", &long.url)])).await;
    let (_, token) = keys::create(&r.db, "a", 10_000.0, 10_000).await.unwrap();

    let alone = short_stream(&r, &token).await;
    let alone = p99_ms(&r.db, &alone).await;
    for i in 0..100 {
        let a = post_job(
            &r.url(),
            &token,
            json!({"kind": "long", "input": format!("l{i}")}),
        )
        .await;
        assert_eq!(a.status, 202);
    }
    eventually(Duration::from_secs(10), "the long pool full", || async {
        long.peak() >= 8
    })
    .await;
    // Within 2× of alone; alone is counted as at least 10 ms, since on
    // loopback it can be a few ms, where scheduling noise alone doubles it.
    // A machine shared with other tests stalls now and then for hundreds of
    // ms, which lands in a p99 of 200: up to three streams are measured
    // while the long jobs run (they keep the long pool full for 25 s), and
    // one within the bound passes. Short jobs queued behind long ones would
    // miss it in every stream.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let beside = short_stream(&r, &token).await;
        let beside = p99_ms(&r.db, &beside).await;
        seen.push(beside);
        if beside <= 2 * alone.max(10) {
            break;
        }
    }
    assert!(
        seen.iter().any(|&b| b <= 2 * alone.max(10)),
        "short jobs' p99: {seen:?} ms in streams beside 100 long jobs, {alone} ms alone"
    );
    assert_eq!(long.peak(), 8, "the long jobs ran meanwhile, 8 at a time");
    r.stop().await;
}
