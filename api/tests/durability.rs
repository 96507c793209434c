//! A 202 means committed: SIGKILL the replica (SQLite) or the database
//! server (MariaDB) while many submissions are in flight, so that kills
//! land inside batch windows and commits, and check that every job
//! answered 202 is in the database afterwards; then that every one of
//! them runs to `done` exactly once.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use support::*;
use tandem_api::db::Db;
use tandem_api::keys;
use tandem_test_support::http::Request;

/// Not a test by itself: the body of a child replica process.
#[test]
fn replica_child() {
    child_main();
}

/// Clients posting at once: enough that a batch is always forming.
const CLIENTS: usize = 24;
/// Kills per test.
const KILLS: usize = 20;
/// Posts per client per round at most (the load is bounded).
const MAX_POSTS: usize = 400;

/// `CLIENTS` clients posting jobs to `base` until `stop` or `MAX_POSTS`
/// each; the ids answered 202 go to `accepted`. A transport error or a 503
/// is not a 202 and claims nothing.
fn load(
    base: String,
    token: String,
    accepted: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    round: usize,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|c| {
            let (base, token) = (base.clone(), token.clone());
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            tokio::spawn(async move {
                for n in 0..MAX_POSTS {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let body = json!({"kind": "upper", "input": format!("r{round} c{c} n{n}")});
                    let answer = Request::post("/v1/jobs")
                        .bearer(&token)
                        .json(&body)
                        .timeout(Duration::from_secs(10))
                        .send_url(&format!("{base}/v1/jobs"))
                        .await;
                    match answer {
                        Ok(a) if a.status == 202 => {
                            let id = a.json()["id"].as_str().unwrap().to_owned();
                            accepted.lock().unwrap().push(id);
                        }
                        Ok(a) => assert_eq!(a.status, 503, "{}", a.text()),
                        // The replica is gone (SQLite) or restarting.
                        Err(_) => tokio::task::yield_now().await,
                    }
                }
            })
        })
        .collect()
}

/// Ids of `accepted` that are not rows of `jobs`.
async fn missing(db: &Db, accepted: &[String]) -> Vec<String> {
    let stored: HashSet<String> = sqlx::query_scalar("SELECT id FROM jobs")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    accepted
        .iter()
        .filter(|id| !stored.contains(*id))
        .cloned()
        .collect()
}

/// Waits until `n` more jobs were accepted than `from` (a random point of
/// the load), bounded.
async fn until_accepted(accepted: &Arc<Mutex<Vec<String>>>, from: usize, n: usize) {
    eventually(Duration::from_secs(30), "submissions accepted", || async {
        accepted.lock().unwrap().len() >= from + n
    })
    .await;
}

/// Every job is done, with exactly one result each.
async fn all_done_once(db: &Db, accepted: usize) {
    let mut last = std::time::Instant::now();
    eventually(Duration::from_secs(120), "every job done", || {
        let show = last.elapsed() > Duration::from_secs(5);
        if show {
            last = std::time::Instant::now();
        }
        async move {
            if show {
                let by: Vec<(String, i64)> =
                    sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                        .fetch_all(&db.pool)
                        .await
                        .unwrap();
                eprintln!("jobs by state: {by:?}");
            }
            count(db, "SELECT COUNT(*) FROM jobs WHERE state <> 'done'").await == 0
        }
    })
    .await;
    let jobs = count(db, "SELECT COUNT(*) FROM jobs").await;
    assert!(
        jobs as usize >= accepted,
        "{jobs} jobs < {accepted} accepted"
    );
    assert_eq!(count(db, "SELECT COUNT(*) FROM results").await, jobs);
    assert_eq!(
        count(db, "SELECT COUNT(DISTINCT job_id) FROM results").await,
        jobs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_sigkill_of_the_replica_loses_no_accepted_job() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let cfg = config_text(&url, &worker.url, "1s");
    let db = Db::open(&url, 2).await.unwrap();
    let (_, token) = keys::create(&db, "load", 1e6, 1_000_000).await.unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let mut failures = 0;
    for round in 0..KILLS {
        let mut child = ChildReplica::spawn("replica_child", &cfg, dir.path(), "a");
        let stop = Arc::new(AtomicBool::new(false));
        let from = accepted.lock().unwrap().len();
        let clients = load(
            child.url(),
            token.clone(),
            Arc::clone(&accepted),
            Arc::clone(&stop),
            round,
        );
        // A random moment of the load: after 1 to 150 accepted jobs.
        until_accepted(&accepted, from, rand::random_range(1..150)).await;
        child.child.kill().unwrap();
        child.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let snapshot = accepted.lock().unwrap().clone();
        let lost = missing(&db, &snapshot).await;
        if !lost.is_empty() {
            eprintln!("round {round}: {} accepted jobs lost: {lost:?}", lost.len());
            failures += 1;
        }
    }
    let accepted = accepted.lock().unwrap().clone();
    eprintln!("{KILLS} kills, {} jobs accepted", accepted.len());
    assert_eq!(failures, 0, "rounds that lost an accepted job");
    // Then a replica runs all of them, each to done exactly once.
    let r = Replica::start(&cfg).await;
    all_done_once(&r.db, accepted.len()).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_sigkill_of_the_server_loses_no_accepted_job() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database("mariadb", dir.path()).await else {
        return;
    };
    let server = mariadb().unwrap();
    let worker = FakeWorker::spawn().await;
    let cfg = config_text(&url, &worker.url, "1s");
    let r = Replica::start(&cfg).await;
    let (_, token) = keys::create(&r.db, "load", 1e6, 1_000_000).await.unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let mut failures = 0;
    for round in 0..KILLS {
        let stop = Arc::new(AtomicBool::new(false));
        let from = accepted.lock().unwrap().len();
        let clients = load(
            r.url(),
            token.clone(),
            Arc::clone(&accepted),
            Arc::clone(&stop),
            round,
        );
        until_accepted(&accepted, from, rand::random_range(1..150)).await;
        server.kill9().await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let snapshot = accepted.lock().unwrap().clone();
        eventually(Duration::from_secs(30), "the database answers", || async {
            // The pool reconnects on its own; a first query may still fail.
            sqlx::query("SELECT 1").execute(&r.db.pool).await.is_ok()
        })
        .await;
        let lost = missing(&r.db, &snapshot).await;
        if !lost.is_empty() {
            eprintln!("round {round}: {} accepted jobs lost: {lost:?}", lost.len());
            failures += 1;
        }
    }
    let accepted = accepted.lock().unwrap().clone();
    eprintln!(
        "{KILLS} kills of mariadbd, {} jobs accepted",
        accepted.len()
    );
    assert_eq!(failures, 0, "rounds that lost an accepted job");
    all_done_once(&r.db, accepted.len()).await;
    r.stop().await;
}
