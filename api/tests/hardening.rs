//! Issue 15, items 6 and 7 (the API part): what a client or an operator
//! could do to a replica that it should not.

mod support;

use support::cli_child;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

// ------------------------------------------------------------ slow clients

/// A replica on SQLite whose config starts with `http_keys`.
async fn replica_with(dir: &std::path::Path, http_keys: &str) -> (Replica, FakeWorker) {
    let url = database("sqlite", dir).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let cfg = format!("{http_keys}\n{}", config_text(&url, &worker.url, "5s"));
    (Replica::start(&cfg).await, worker)
}

/// Connects to `r` and sends `bytes`.
async fn send_raw(r: &Replica, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(r.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    s
}

/// Reads until the replica closes `s`, at most `within`; what it sent.
async fn closed_within(s: &mut TcpStream, within: Duration, what: &str) -> String {
    let mut out = Vec::new();
    match tokio::time::timeout(within, s.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!("{what}: still open after {within:?}"),
    }
}

/// Half a request line, or a request line and half the headers: closed
/// by header_read_timeout, not held open (it stayed open 35 s before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_head_is_closed_after_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let keys = "header_read_timeout = \"500ms\"\nkeepalive_timeout = \"30s\"";
    let (r, _w) = replica_with(dir.path(), keys).await;
    for half in [
        &b"GET /hea"[..],
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    ] {
        let mut s = send_raw(&r, half).await;
        let what = format!("{:?}", String::from_utf8_lossy(half));
        let got = closed_within(&mut s, Duration::from_secs(5), &what).await;
        assert!(!got.contains("200 OK"), "{what}: {got}");
    }
    r.stop().await;
}

/// A connection that sends nothing, or nothing after its response, is
/// closed after keepalive_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_keepalive_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // No PROXY header is awaited: the silent connection is HTTP's at once.
    let keys =
        "proxy_protocol = \"off\"\nheader_read_timeout = \"30s\"\nkeepalive_timeout = \"500ms\"";
    let (r, _w) = replica_with(dir.path(), keys).await;
    let mut silent = send_raw(&r, b"").await;
    closed_within(&mut silent, Duration::from_secs(5), "a silent connection").await;
    let mut kept = send_raw(&r, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let got = closed_within(&mut kept, Duration::from_secs(5), "a kept-alive connection").await;
    assert!(got.starts_with("HTTP/1.1 200"), "answered first: {got}");
    r.stop().await;
}

/// A body that never finishes: 408 after request_timeout, then closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_gets_408_after_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let keys = "wait_max = \"1s\"\nrequest_timeout = \"2s\"";
    let (r, _w) = replica_with(dir.path(), keys).await;
    let (_, token) = tandem_api::keys::create(&r.db, "slow", 100.0, 100)
        .await
        .unwrap();
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"kind\":"
    );
    let mut s = send_raw(&r, head.as_bytes()).await;
    let got = closed_within(&mut s, Duration::from_secs(10), "a stalled body").await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("request_timeout"), "{got}");
    r.stop().await;
}

/// A held `?wait=` is a request in flight: neither the keep-alive nor the
/// header timer cuts it, and request_timeout is above wait_max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_wait_is_not_cut_by_the_connection_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let keys = "header_read_timeout = \"300ms\"\nkeepalive_timeout = \"300ms\"\n\
                wait_max = \"2s\"\nrequest_timeout = \"5s\"";
    let (r, _w) = replica_with(dir.path(), keys).await;
    let (_, token) = tandem_api::keys::create(&r.db, "waiter", 100.0, 100)
        .await
        .unwrap();
    let job = post_job(
        &r.url(),
        &token,
        serde_json::json!({"kind": "upper", "input": "slow:4000 x"}),
    )
    .await;
    assert_eq!(job.status, 202, "{:?}", job.text());
    let id = job.json()["id"].as_str().unwrap().to_owned();
    let url = format!("{}/v1/jobs/{id}?wait=2s", r.url());
    let a = call("GET", &url, Some(&token), &[], "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_ne!(a.json()["status"], "done", "the wait ran its course");
    r.stop().await;
}

/// SIGTERM (the shutdown token) with a half-sent head open: the replica
/// stops at once, it does not wait for the head or for header_read_timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_does_not_hold_up_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let keys = "header_read_timeout = \"5m\"\nkeepalive_timeout = \"10m\"";
    let (r, _w) = replica_with(dir.path(), keys).await;
    let mut half = send_raw(&r, b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
    let mut idle = send_raw(&r, b"").await;
    // Both are accepted and being served before the stop.
    let ok = call("GET", &format!("{}/healthz", r.url()), None, &[], "").await;
    assert_eq!(ok.status, 200);
    let Replica { shutdown, task, .. } = r;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the replica stops while a head is half sent")
        .unwrap()
        .unwrap();
    closed_within(&mut half, Duration::from_secs(5), "the half-sent head").await;
    closed_within(&mut idle, Duration::from_secs(5), "the idle connection").await;
}

// ------------------------------------------------------------------ SIGHUP

/// `systemctl reload tandem-api` sends SIGHUP: the replica keeps serving,
/// names the changed keys that need a restart, refuses a bad file with
/// its error, and stops on SIGTERM as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_without_exiting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cli_config(dir.path(), "http://127.0.0.1:9", "");
    let mut r = cli_child::CliReplica::spawn("cli_child", &cfg, None);
    let healthz = format!("{}/healthz", r.url());
    let text = std::fs::read_to_string(&cfg).unwrap();

    // A valid file with one key changed.
    std::fs::write(&cfg, text.replace("lease = \"5s\"", "lease = \"7s\"")).unwrap();
    r.signal("-HUP");
    eventually(
        Duration::from_secs(10),
        "the changed key logged",
        || async { !r.logged(&["need a restart", "keys=lease"]).is_empty() },
    )
    .await;
    assert_eq!(call("GET", &healthz, None, &[], "").await.status, 200);

    // A bad file: refused with its location, still serving.
    std::fs::write(
        &cfg,
        text.replace("lease = \"5s\"", "lease = \"5 parsecs\""),
    )
    .unwrap();
    r.signal("-HUP");
    eventually(Duration::from_secs(10), "the refusal logged", || async {
        !r.logged(&["reload refused"]).is_empty()
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the error's location logged",
        || async {
            !r.logged(&["kinds", "lease = \"5 parsecs\""]).is_empty()
                || !r.logged(&["lease = \"5 parsecs\""]).is_empty()
        },
    )
    .await;
    assert!(r.child.try_wait().unwrap().is_none(), "still running");
    assert_eq!(call("GET", &healthz, None, &[], "").await.status, 200);

    r.signal("-TERM");
    let status = tandem_test_support::eventually_blocking(
        Duration::from_secs(20),
        "the replica exits on SIGTERM",
        || r.child.try_wait().unwrap(),
    );
    assert!(status.success(), "{status:?}");
}
