//! Concurrency limit, readiness, graceful shutdown and metrics, driven by an
//! exec script that blocks until the test opens a gate (a file appearing), so
//! "a run is in flight" is a fact the test controls, not a timing guess.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::ErrorBody;
use common::{Worker, eventually, request};
use tandem_worker::config::Kind;

/// An exec worker whose runs create `started`, then wait for `gate` to
/// exist (at most ~20 s).
async fn gated_worker(dir: &tempfile::TempDir, concurrency: u32) -> Worker {
    let script = format!(
        "cat >/dev/null; touch {s}; i=0; while [ ! -e {g} ] && [ $i -lt 1000 ]; do sleep 0.02; i=$((i+1)); done; echo released",
        s = started(dir).display(),
        g = gate(dir).display()
    );
    Worker::start(
        Kind::Exec,
        &format!(
            "[limits]\nconcurrency = {concurrency}\nretry_after = \"2s\"\n\
             [exec]\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n\
             env = {{ PATH = \"/usr/bin:/bin\" }}\ntimeout = \"30s\"\n"
        ),
    )
    .await
}

fn gate(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("open")
}

fn started(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("started")
}

#[tokio::test]
async fn excess_runs_get_503_with_retry_after_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let w = gated_worker(&dir, 2).await;
    let addr = w.addr;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(request(addr, "POST", "/v1/run", None, b"x".to_vec())))
        .collect();
    eventually(Duration::from_secs(10), "both slots taken", || async {
        w.get("/readyz").await.status == 503
    })
    .await;
    assert_eq!(w.get("/readyz").await.json()["status"], "busy");

    let started = Instant::now();
    let r = w.post("/v1/run", None, b"x".to_vec()).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "busy");
    assert_eq!(r.headers["retry-after"], "2");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not queued"
    );
    // Health is about the process, not the load.
    assert_eq!(w.get("/healthz").await.status, 200);

    std::fs::write(gate(&dir), b"").unwrap();
    for h in held {
        let r = h.await.unwrap().unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "released\n"));
    }
    w.assert_healthy().await;
    let r = w.post("/v1/run", None, b"x".to_vec()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = gated_worker(&dir, 4).await;
    let addr = w.addr;
    let in_flight = tokio::spawn(request(addr, "POST", "/v1/run", None, b"x".to_vec()));
    eventually(Duration::from_secs(10), "run in flight", || {
        let up = started(&dir).exists();
        async move { up }
    })
    .await;

    w.shutdown.cancel();
    // New connections are refused once the listener is closed...
    eventually(Duration::from_secs(10), "listener closed", || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    // ...but the server waits for the run in flight.
    let task = w.task.take().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!task.is_finished(), "serve returned with a run in flight");

    std::fs::write(gate(&dir), b"").unwrap();
    let r = in_flight.await.unwrap().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "released\n"));
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns after the last run")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn metrics_count_runs_by_kind_and_outcome() {
    let w = Worker::start(Kind::Text, "[text]\nmax_input_bytes = 10\n").await;
    assert_eq!(w.post("/v1/run", None, b"hi".to_vec()).await.status, 200);
    assert_eq!(w.post("/v1/run", None, b"\xff".to_vec()).await.status, 422);
    assert_eq!(w.post("/v1/run", None, vec![b'a'; 11]).await.status, 413);
    let m = w.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.content_type().starts_with("text/plain"));
    let text = m.text();
    for line in [
        "# HELP tandem_worker_runs_total",
        "# TYPE tandem_worker_run_duration_seconds histogram",
        "# HELP tandem_worker_in_flight_runs",
        "tandem_worker_run_duration_seconds_bucket{kind=\"text\",outcome=\"ok\",le=\"0.005\"}",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Other tests in this process share the recorder: counts are at least ours.
    for outcome in ["ok", "invalid_utf8", "too_large"] {
        let prefix = format!("tandem_worker_runs_total{{kind=\"text\",outcome=\"{outcome}\"}} ");
        let n: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .parse()
            .unwrap();
        assert!(n >= 1, "{outcome}");
    }
}

#[tokio::test]
async fn health_readiness_and_unknown_routes() {
    let w = Worker::start(Kind::Thumbnail, "").await;
    let h = w.get("/healthz").await;
    assert_eq!(
        (h.status, h.json()["kind"].as_str()),
        (200, Some("thumbnail"))
    );
    assert_eq!(w.get("/readyz").await.json()["status"], "ready");
    let r = w.get("/nope").await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
}
