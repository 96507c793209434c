//! A job's life after it is stored: cancel, re-drive, `?wait=`, and
//! parameters forwarded to the worker.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tandem_api::keys;

/// One SQLite replica dispatching to a fake worker, and a key for it.
struct Bed {
    _dir: tempfile::TempDir,
    url: String,
    worker: FakeWorker,
    replica: Replica,
    token: String,
}

impl Bed {
    async fn start(lease: &str) -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let url = database("sqlite", dir.path()).await.unwrap();
        let worker = FakeWorker::spawn().await;
        let replica = Replica::start(&config_text(&url, &worker.url, lease)).await;
        let (_, token) = keys::create(&replica.db, "k", 1e6, 1_000_000)
            .await
            .unwrap();
        Bed {
            _dir: dir,
            url,
            worker,
            replica,
            token,
        }
    }
}

async fn job_of(base: &str, token: &str, body: serde_json::Value) -> String {
    let a = post_job(base, token, body).await;
    assert_eq!(a.status, 202, "{}", a.text());
    a.json()["id"].as_str().unwrap().to_owned()
}

async fn get(base: &str, token: &str, path: &str) -> Answer {
    call("GET", &format!("{base}{path}"), Some(token), &[], "").await
}

async fn send(method: &str, base: &str, token: &str, path: &str) -> Answer {
    call(method, &format!("{base}{path}"), Some(token), &[], "").await
}

/// Waits until the fake worker has seen a call for `id`.
async fn called(worker: &FakeWorker, id: &str) {
    eventually(
        Duration::from_secs(10),
        "the worker got the call",
        || async { worker.calls.lock().unwrap().contains_key(id) },
    )
    .await;
}

/// A config whose only kind is `unused`: a replica that serves the API
/// but never dispatches `upper` or `other` jobs.
fn api_only(db_url: &str, lease: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{db_url}\"\nlease = \"{lease}\"\n\
         poll_interval = \"50ms\"\nwait_check_interval = \"50ms\"\n\
         [kinds.unused]\nurl = \"http://127.0.0.1:9\"\n"
    )
}

async fn queued_then_cancelled_then_retried(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config_text(&url, &worker.url, "30s")).await;
    let (_, token) = keys::create(&r.db, "k", 1e6, 1_000_000).await.unwrap();
    let (_, stranger) = keys::create(&r.db, "s", 1e6, 1_000_000).await.unwrap();
    // `other` has one slot: while `busy` holds it, `id` stays queued, so
    // nothing races the cancel (no claim can come first).
    let busy = job_of(
        &r.url(),
        &token,
        json!({"kind": "other", "input": "slow:20000"}),
    )
    .await;
    called(&worker, &busy).await;
    let id = job_of(&r.url(), &token, json!({"kind": "other", "input": "later"})).await;
    let path = format!("/v1/jobs/{id}");
    let a = send("DELETE", &r.url(), &stranger, &path).await;
    assert_eq!((a.status, a.code().as_str()), (404, "not_found"));
    let a = send("DELETE", &r.url(), &token, &path).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["status"], "cancelled");
    assert!(a.json()["finished_at_ms"].is_i64());
    // Again: the same answer, nothing changes.
    let again = send("DELETE", &r.url(), &token, &path).await;
    assert_eq!(
        (again.status, again.json()["status"].clone()),
        (200, json!("cancelled"))
    );
    let a = send("POST", &r.url(), &stranger, &format!("{path}/retry")).await;
    assert_eq!(a.status, 404);
    let a = send("POST", &r.url(), &token, &format!("{path}/retry")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(
        (a.json()["status"].clone(), a.json()["attempts"].clone()),
        (json!("queued"), json!(0))
    );
    assert!(
        worker.calls.lock().unwrap().get(&id).is_none(),
        "never sent while cancelled"
    );
    // Free the slot: the retried job runs now.
    let a = send("DELETE", &r.url(), &token, &format!("/v1/jobs/{busy}")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let done = wait_finished(&r.url(), &token, &id).await;
    assert_eq!(done["status"], "done");
    let a = send("DELETE", &r.url(), &token, &path).await;
    assert_eq!((a.status, a.code().as_str()), (409, "already_finished"));
    let a = send("POST", &r.url(), &token, &format!("{path}/retry")).await;
    assert_eq!((a.status, a.code().as_str()), (409, "not_retryable"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_cancelled_at_once_and_can_be_retried_sqlite() {
    queued_then_cancelled_then_retried("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_cancelled_at_once_and_can_be_retried_mariadb() {
    queued_then_cancelled_then_retried("mariadb").await;
}

/// `other` has one slot (max_concurrency = 1): a second job runs only once
/// the first call is over, so a quick second job shows the first call was
/// abandoned long before its worker would have answered (20 s) or a
/// heartbeat found its lease gone (10 s at a 30 s lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_here_abandons_its_call_at_once() {
    let Bed {
        _dir,
        url: _,
        worker,
        replica: r,
        token,
    } = Bed::start("30s").await;
    let slow = job_of(
        &r.url(),
        &token,
        json!({"kind": "other", "input": "slow:20000"}),
    )
    .await;
    called(&worker, &slow).await;
    let a = send("DELETE", &r.url(), &token, &format!("/v1/jobs/{slow}")).await;
    assert_eq!(
        (a.status, a.json()["status"].clone()),
        (200, json!("cancelled"))
    );
    let started = Instant::now();
    let quick = job_of(&r.url(), &token, json!({"kind": "other", "input": "quick"})).await;
    let done = wait_finished(&r.url(), &token, &quick).await;
    assert_eq!(done["status"], "done");
    // Bound: well under the 10 s heartbeat, the only other way out.
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let j = get(&r.url(), &token, &format!("/v1/jobs/{slow}"))
        .await
        .json();
    assert_eq!(
        (j["status"].clone(), j["result"].clone()),
        (json!("cancelled"), json!(null))
    );
    r.stop().await;
}

/// Cancelled through a replica that does not run the job: the running
/// replica's heartbeat (every 500 ms at a 1.5 s lease) finds the lease gone
/// and abandons the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_another_replica_is_seen_at_the_next_heartbeat() {
    let Bed {
        _dir,
        url,
        worker,
        replica: runner,
        token,
    } = Bed::start("1500ms").await;
    let front = Replica::start(&api_only(&url, "1500ms")).await;
    let slow = job_of(
        &runner.url(),
        &token,
        json!({"kind": "other", "input": "slow:20000"}),
    )
    .await;
    called(&worker, &slow).await;
    let a = send("DELETE", &front.url(), &token, &format!("/v1/jobs/{slow}")).await;
    assert_eq!(
        (a.status, a.json()["status"].clone()),
        (200, json!("cancelled"))
    );
    let quick = job_of(
        &runner.url(),
        &token,
        json!({"kind": "other", "input": "quick"}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        wait_finished(&runner.url(), &token, &quick).await["status"],
        "done"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    front.stop().await;
    runner.stop().await;
}

/// A worker that answers after the cancel: its result is refused by the
/// fence, the job stays cancelled, with no result row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_late_result_of_a_cancelled_job_is_refused() {
    let Bed {
        _dir,
        url,
        worker,
        replica: runner,
        token,
    } = Bed::start("30s").await;
    let front = Replica::start(&api_only(&url, "30s")).await;
    let slow = job_of(
        &runner.url(),
        &token,
        json!({"kind": "other", "input": "slow:800"}),
    )
    .await;
    called(&worker, &slow).await;
    let a = send("DELETE", &front.url(), &token, &format!("/v1/jobs/{slow}")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    // One slot: this job is sent after the slow call's answer was handed
    // to the finisher, which writes in order; once it is done, the late
    // result has been refused or stored.
    let next = job_of(
        &runner.url(),
        &token,
        json!({"kind": "other", "input": "next"}),
    )
    .await;
    assert_eq!(
        wait_finished(&runner.url(), &token, &next).await["status"],
        "done"
    );
    let j = get(&runner.url(), &token, &format!("/v1/jobs/{slow}"))
        .await
        .json();
    assert_eq!(
        (j["status"].clone(), j["result"].clone()),
        (json!("cancelled"), json!(null))
    );
    let results: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM results WHERE job_id = ?")
        .bind(&slow)
        .fetch_one(&runner.db.pool)
        .await
        .unwrap();
    assert_eq!(results, 0);
    let a = get(&runner.url(), &token, &format!("/v1/jobs/{slow}/result")).await;
    assert_eq!((a.status, a.code().as_str()), (409, "no_result"));
    front.stop().await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_retried_with_fresh_attempts_and_the_same_id() {
    let Bed {
        _dir,
        url: _,
        worker,
        replica: r,
        token,
    } = Bed::start("30s").await;
    let id = job_of(
        &r.url(),
        &token,
        json!({"kind": "upper", "input": "always-500"}),
    )
    .await;
    let failed = wait_finished(&r.url(), &token, &id).await;
    assert_eq!(
        (failed["status"].clone(), failed["attempts"].clone()),
        (json!("failed"), json!(3))
    );
    let listed = get(&r.url(), &token, "/v1/jobs?status=failed").await.json();
    assert_eq!(listed["jobs"][0]["id"], id.as_str());
    assert!(
        listed["jobs"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    let a = send("POST", &r.url(), &token, &format!("/v1/jobs/{id}/retry")).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["id"], id.as_str());
    let again = wait_finished(&r.url(), &token, &id).await;
    assert_eq!(
        (again["status"].clone(), again["attempts"].clone()),
        (json!("failed"), json!(3))
    );
    assert_eq!(
        worker.calls.lock().unwrap()[&id],
        6,
        "three attempts, twice"
    );
    // Its input deleted by input_retention: it cannot run again.
    sqlx::query("UPDATE jobs SET input_kept = 0 WHERE id = ?")
        .bind(&id)
        .execute(&r.db.pool)
        .await
        .unwrap();
    let a = send("POST", &r.url(), &token, &format!("/v1/jobs/{id}/retry")).await;
    assert_eq!((a.status, a.code().as_str()), (409, "input_deleted"));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_reach_the_worker_as_ascii_json_and_bad_ones_are_refused() {
    let Bed {
        _dir,
        url: _,
        worker: _worker,
        replica: r,
        token,
    } = Bed::start("30s").await;
    let params = json!({"top": 3, "label": "café ☕"});
    let id = job_of(
        &r.url(),
        &token,
        json!({"kind": "upper", "input": "echo-params", "params": params}),
    )
    .await;
    let j = wait_finished(&r.url(), &token, &id).await;
    assert_eq!(j["params"], params);
    let sent = get(&r.url(), &token, &format!("/v1/jobs/{id}/result")).await;
    assert!(sent.text().is_ascii(), "{}", sent.text());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&sent.text()).unwrap(),
        params
    );
    let plain = job_of(
        &r.url(),
        &token,
        json!({"kind": "upper", "input": "echo-params"}),
    )
    .await;
    wait_finished(&r.url(), &token, &plain).await;
    assert_eq!(
        get(&r.url(), &token, &format!("/v1/jobs/{plain}/result"))
            .await
            .text(),
        "none"
    );
    for bad in [
        json!([1, 2]),
        json!("top=3"),
        json!({"s": "x".repeat(5000)}),
    ] {
        let a = post_job(
            &r.url(),
            &token,
            json!({"kind": "upper", "input": "x", "params": bad}),
        )
        .await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (422, "bad_params"),
            "{}",
            a.text()
        );
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("params")
        );
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_is_answered_when_the_job_finishes_on_another_replica() {
    let Bed {
        _dir,
        url,
        worker: _worker,
        replica: runner,
        token,
    } = Bed::start("30s").await;
    let front = Replica::start(&api_only(&url, "30s")).await;
    let id = job_of(
        &runner.url(),
        &token,
        json!({"kind": "upper", "input": "slow:300"}),
    )
    .await;
    let started = Instant::now();
    let a = get(&front.url(), &token, &format!("/v1/jobs/{id}?wait=20s")).await;
    assert_eq!(
        (a.status, a.json()["status"].clone()),
        (200, json!("done")),
        "{}",
        a.text()
    );
    // Answered by the checker, not by the end of the wait.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    front.stop().await;
    runner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_end_on_finish_cancel_or_time_and_are_bounded() {
    let Bed {
        _dir,
        url: _,
        worker: _worker,
        replica: r,
        token,
    } = Bed::start("30s").await;
    let (_, stranger) = keys::create(&r.db, "s", 1e6, 1_000_000).await.unwrap();
    // Finished here: woken in process.
    let id = job_of(
        &r.url(),
        &token,
        json!({"kind": "upper", "input": "slow:200"}),
    )
    .await;
    let a = get(&r.url(), &token, &format!("/v1/jobs/{id}?wait=20s")).await;
    assert_eq!(a.json()["status"], "done");
    // Already final: answered at once, with or without a wait.
    let a = get(&r.url(), &token, &format!("/v1/jobs/{id}?wait=20")).await;
    assert_eq!(a.json()["status"], "done");
    // The wait runs out: the job as it is.
    let slow = job_of(
        &r.url(),
        &token,
        json!({"kind": "other", "input": "slow:20000"}),
    )
    .await;
    let started = Instant::now();
    let a = get(&r.url(), &token, &format!("/v1/jobs/{slow}?wait=300ms")).await;
    assert_eq!(a.status, 200);
    assert!(["queued", "running"].contains(&a.json()["status"].as_str().unwrap()));
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A held wait is answered by a cancel.
    let held = {
        let (base, token, slow) = (r.url(), token.clone(), slow.clone());
        tokio::spawn(async move { get(&base, &token, &format!("/v1/jobs/{slow}?wait=20s")).await })
    };
    eventually(Duration::from_secs(10), "the wait is held", || async {
        r.db.pool.size() > 0 && !held.is_finished()
    })
    .await;
    let c = send("DELETE", &r.url(), &token, &format!("/v1/jobs/{slow}")).await;
    assert_eq!(c.status, 200);
    let a = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.json()["status"], "cancelled");
    // Bounds and strangers.
    for bad in ["2h", "abc", "-1s"] {
        let a = get(&r.url(), &token, &format!("/v1/jobs/{id}?wait={bad}")).await;
        assert_eq!((a.status, a.code().as_str()), (400, "bad_wait"), "{bad}");
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1m"),
            "{}",
            a.text()
        );
    }
    let a = get(&r.url(), &stranger, &format!("/v1/jobs/{id}?wait=1s")).await;
    assert_eq!(a.status, 404);
    r.stop().await;
}
