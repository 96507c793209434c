//! Concurrency limit, readiness, graceful shutdown and metrics, driven by an
//! exec script that blocks until the test opens a gate (a file appearing), so
//! "a run is in flight" is a fact the test controls, not a timing guess.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::ErrorBody;
use common::{KeptAlive, Worker, eventually, request};
use tandem_worker::config::{Config, Kind};
use tandem_worker::server::{AppState, router};
use tower::ServiceExt;

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

#[tokio::test]
async fn every_run_answer_advertises_slots_and_instance() {
    let w = Worker::start(
        Kind::Text,
        "[limits]\nconcurrency = 3\n[text]\nmax_input_bytes = 10\n",
    )
    .await;
    let health = w.get("/healthz").await.json();
    assert_eq!(
        (health["slots"].as_u64(), health["in_flight"].as_u64()),
        (Some(3), Some(0))
    );
    let instance = health["instance"]
        .as_str()
        .expect("instance in healthz")
        .to_owned();
    assert_eq!(instance.len(), 16, "{instance}");
    assert!(
        instance.bytes().all(|b| b.is_ascii_hexdigit()),
        "{instance}"
    );

    let answers = [
        w.post("/v1/run", None, b"hi".to_vec()).await,
        w.post("/v1/run", None, b"\xff".to_vec()).await,
        w.post("/v1/run", None, vec![b'a'; 11]).await,
        w.get("/v1/run").await,
    ];
    let seen: Vec<_> = answers
        .iter()
        .map(|r| {
            (
                r.status,
                r.header("x-tandem-slots"),
                r.header("x-tandem-instance"),
            )
        })
        .collect();
    let want = |status| (status, Some("3"), Some(instance.as_str()));
    assert_eq!(seen, [want(200), want(422), want(413), want(405)]);
    // Only the run route advertises.
    assert_eq!(w.get("/readyz").await.header("x-tandem-slots"), None);

    // Another process (here: another state) is another instance.
    let other = Worker::start(Kind::Text, "").await;
    let r = other.post("/v1/run", None, b"hi".to_vec()).await;
    assert_eq!(r.header("x-tandem-slots"), Some("4"));
    assert_ne!(r.header("x-tandem-instance"), Some(instance.as_str()));
}

#[tokio::test]
async fn busy_503_advertises_slots_and_keeps_the_connection_open() {
    let dir = tempfile::tempdir().unwrap();
    let w = gated_worker(&dir, 1).await;
    let held = tokio::spawn(request(w.addr, "POST", "/v1/run", None, b"x".to_vec()));
    eventually(Duration::from_secs(10), "the slot taken", || {
        let up = started(&dir).exists();
        async move { up }
    })
    .await;
    let health = w.get("/healthz").await.json();
    assert_eq!(
        (health["slots"].as_u64(), health["in_flight"].as_u64()),
        (Some(1), Some(1))
    );

    let mut conn = KeptAlive::open(w.addr).await;
    conn.send("POST", "/v1/run", b"x").await;
    let r = conn.reply().await;
    assert_eq!(
        (r.status, r.header("x-tandem-slots")),
        (503, Some("1")),
        "{r:?}"
    );
    assert_eq!(r.header("retry-after"), Some("2"));
    assert!(r.header("x-tandem-instance").is_some(), "{r:?}");
    assert!(!r.closes(), "a busy 503 keeps the connection: {r:?}");
    // The same connection still serves.
    conn.send("GET", "/healthz", b"").await;
    assert_eq!(conn.reply().await.status, 200);

    std::fs::write(gate(&dir), b"").unwrap();
    assert_eq!(held.await.unwrap().unwrap().status, 200);
}

#[tokio::test]
async fn shutdown_closes_idle_kept_alive_connections_and_busy_ones_after_their_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = gated_worker(&dir, 2).await;
    let mut idle = KeptAlive::open(w.addr).await;
    idle.send("GET", "/healthz", b"").await;
    let r = idle.reply().await;
    assert!(r.status == 200 && !r.closes(), "{r:?}");
    let mut busy = KeptAlive::open(w.addr).await;
    busy.send("POST", "/v1/run", b"x").await;
    eventually(Duration::from_secs(10), "run in flight", || {
        let up = started(&dir).exists();
        async move { up }
    })
    .await;

    w.shutdown.cancel();
    // The idle connection is closed by the server while a run is still in
    // flight elsewhere (serve has not returned).
    assert!(
        idle.closed_by_server().await,
        "idle kept-alive connection left open"
    );
    let task = w.task.take().unwrap();
    assert!(!task.is_finished(), "serve returned with a run in flight");

    // The run in flight is answered, told the connection closes, and it does.
    std::fs::write(gate(&dir), b"").unwrap();
    let r = busy.reply().await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, b"released\n".as_slice())
    );
    assert!(r.closes(), "the last answer says Connection: close: {r:?}");
    assert_eq!(r.header("x-tandem-slots"), Some("2"));
    assert!(
        busy.closed_by_server().await,
        "connection left open after its last run"
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("serve returns after the last connection closes")
        .unwrap()
        .unwrap();
}

/// A run whose head was read before its connection heard of the shutdown
/// reaches the handler after draining started: it is refused, and told the
/// connection closes. (On a socket this is a race hyper usually wins by
/// closing the idle connection first, hence the router alone.)
#[tokio::test]
async fn a_run_after_shutdown_started_gets_503_with_connection_close() {
    let config =
        Config::parse("listen = \"127.0.0.1:0\"\n", std::path::Path::new("t.toml")).unwrap();
    let state = AppState::new(config, Kind::Text, None).unwrap();
    state.start_draining();
    let req = axum::http::Request::post("/v1/run")
        .body(axum::body::Body::from("hi"))
        .unwrap();
    let r = router(state.clone()).oneshot(req).await.unwrap();
    let h = r.headers();
    assert_eq!(r.status(), 503);
    assert_eq!(h["connection"], "close");
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-tandem-slots"], "4");
    assert_eq!(h["x-tandem-instance"], state.instance());
}
