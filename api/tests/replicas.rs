//! Several replicas on one MariaDB: crash safety of leases and the shared
//! rate limit.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tandem_api::keys;

/// Not a test by itself: the body of a child replica process (see
/// `ChildReplica`); returns at once when not started as one.
#[test]
fn replica_child() {
    child_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_while_holding_leases_loses_no_job_and_runs_none_twice_to_done() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database("mariadb", dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    // A 1 s lease: the killed replica's jobs are claimable again 1 s after
    // their last heartbeat.
    let cfg = config_text(&url, &worker.url, "1s");
    let mut a = ChildReplica::spawn("replica_child", &cfg, dir.path(), "a");
    let b = ChildReplica::spawn("replica_child", &cfg, dir.path(), "b");
    // A handle on the same database, for the assertions.
    let probe = Replica::start(
        &config_text(&url, "http://127.0.0.1:9", "1s")
            .replace("[kinds.upper]", "[kinds.unused]")
            .replace("[kinds.other]", "[kinds.unused2]"),
    )
    .await;
    let db = probe.db.clone();
    let (_, token) = keys::create(&db, "load", 10_000.0, 10_000).await.unwrap();

    let n = 40;
    let mut ids = Vec::new();
    for i in 0..n {
        let base = if i % 2 == 0 { a.url() } else { b.url() };
        let r = post_job(
            &base,
            &token,
            json!({"kind": "upper", "input": format!("slow:400 job {i}")}),
        )
        .await;
        assert_eq!(r.status, 202);
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    // Wait until A holds leases, then SIGKILL it.
    let a_pid = a.child.id();
    let owner_like = format!("{a_pid}-%");
    let held = |db: tandem_api::db::Db, like: String| async move {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE state = 'running' AND lease_owner LIKE ?",
        )
        .bind(like)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        n
    };
    eventually(Duration::from_secs(10), "replica A holds leases", || {
        held(db.clone(), owner_like.clone()).map_pos()
    })
    .await;
    let held_at_kill = held(db.clone(), owner_like.clone()).await;
    let held_ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running' AND lease_owner LIKE ?")
            .bind(&owner_like)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed_at = Instant::now();

    // Every job reaches done, through B alone.
    eventually(Duration::from_secs(60), "every job done", || {
        let db = db.clone();
        async move {
            let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'done'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
            done == 40
        }
    })
    .await;
    let recovered_in = killed_at.elapsed();
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM results").await,
        n,
        "exactly one result row per job"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(DISTINCT job_id) FROM results").await,
        n
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM jobs WHERE state <> 'done' OR lease_token IS NOT NULL"
        )
        .await,
        0
    );
    // B took over what A held, as the same attempt (A's death says
    // nothing about the jobs), and called the worker again for those A's
    // calls were in flight for.
    let retried = count(&db, "SELECT COUNT(*) FROM jobs WHERE attempts >= 2").await;
    assert_eq!(retried, 0, "a replica's death counted as an attempt");
    let called_again = {
        let calls = worker.calls.lock().unwrap();
        held_ids
            .iter()
            .filter(|id| calls.get(*id).is_some_and(|n| *n >= 2))
            .count()
    };
    assert!(
        held_at_kill == 0 || called_again >= 1,
        "no job A held was run again by B: held {held_at_kill}, called again {called_again}"
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM jobs WHERE attempts < 1").await,
        0,
        "attempts recorded"
    );
    // The stored result is the job's own output.
    for id in &ids {
        let r = call(
            "GET",
            &format!("{}/v1/jobs/{id}/result", b.url()),
            Some(&token),
            &[],
            "",
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(String::from_utf8_lossy(&r.body).starts_with("SLOW:400 JOB "));
    }
    eprintln!(
        "killed A holding {held_at_kill} leases; all {n} jobs done {recovered_in:?} later; {retried} jobs took 2+ attempts; worker saw {} calls",
        worker.total_calls()
    );
    drop(b);
    probe.stop().await;
}

/// Helper to make `eventually` read `count > 0`.
trait MapPos {
    fn map_pos(self) -> impl std::future::Future<Output = bool>;
}
impl<F: std::future::Future<Output = i64>> MapPos for F {
    async fn map_pos(self) -> bool {
        self.await > 0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_holds_across_two_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database("mariadb", dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    let r1 = Replica::start(&config_text(&url, &worker.url, "5s")).await;
    let r2 = Replica::start(&config_text(&url, &worker.url, "5s")).await;
    let (rate, burst) = (5.0, 10);
    let (_, token) = keys::create(&r1.db, "limited", rate, burst).await.unwrap();

    // 8 concurrent clients, alternating replicas, for 2 s.
    let started = Instant::now();
    let window = Duration::from_secs(2);
    let mut tasks = Vec::new();
    for c in 0..8 {
        let base = if c % 2 == 0 { r1.url() } else { r2.url() };
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut limited, mut retry_afters) = (0u32, 0u32, HashSet::new());
            while started.elapsed() < window {
                let a = call(
                    "GET",
                    &format!("{base}/v1/jobs?limit=1"),
                    Some(&token),
                    &[],
                    "",
                )
                .await;
                match a.status {
                    200 => ok += 1,
                    429 => {
                        limited += 1;
                        retry_afters.insert(
                            a.header("retry-after")
                                .expect("Retry-After on 429")
                                .to_owned(),
                        );
                    }
                    s => panic!("unexpected {s}"),
                }
            }
            (ok, limited, retry_afters)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (o, l, _) = t.await.unwrap();
        ok += o;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = burst as f64 + rate * elapsed + 1.0;
    eprintln!("admitted {ok}, limited {limited} in {elapsed:.2}s; bound {bound:.1}");
    assert!(limited > 0, "the clients went over the limit");
    assert!(
        f64::from(ok) <= bound,
        "admitted {ok} > burst + rate·t = {bound}"
    );
    assert!(
        f64::from(ok) >= burst as f64,
        "at least the burst was admitted: {ok}"
    );
    r1.stop().await;
    r2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_on_mariadb_never_overlap() {
    // SKIP LOCKED: two replicas claiming the same queue take disjoint jobs;
    // with the worker counting calls per job, no job runs twice when no
    // replica dies.
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database("mariadb", dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    let r1 = Replica::start(&config_text(&url, &worker.url, "10s")).await;
    let r2 = Replica::start(&config_text(&url, &worker.url, "10s")).await;
    let (_, token) = keys::create(&r1.db, "k", 10_000.0, 10_000).await.unwrap();
    let n = 60;
    let started = Instant::now();
    for i in 0..n {
        let base = if i % 2 == 0 { r1.url() } else { r2.url() };
        assert_eq!(
            post_job(
                &base,
                &token,
                json!({"kind": "upper", "input": format!("slow:20 {i}")})
            )
            .await
            .status,
            202
        );
    }
    let posted = started.elapsed();
    let db = r1.db.clone();
    eventually(Duration::from_secs(60), "all done", || {
        let db = db.clone();
        async move { count(&db, "SELECT COUNT(*) FROM jobs WHERE state = 'done'").await == 60 }
    })
    .await;
    let took = started.elapsed();
    let calls = worker.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), n);
    // Every worker call is a claimed attempt of its own: two replicas never
    // hold the same job at once. (A call may be retried after a transport
    // error, which is a recorded second attempt, never a double claim.)
    let attempts: Vec<(String, i64)> = sqlx::query_as("SELECT id, attempts FROM jobs")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    for (id, att) in &attempts {
        assert_eq!(
            i64::from(calls[id]),
            *att,
            "job {id}: worker calls != attempts"
        );
    }
    let retried = attempts.iter().filter(|(_, a)| *a > 1).count();
    eprintln!(
        "{n} jobs of 20 ms through 2 replicas x 4 slots: posted in {posted:?}, all done after {took:?}; {retried} retried after transport errors"
    );
    r1.stop().await;
    r2.stop().await;
}
