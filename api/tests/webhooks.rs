//! Webhooks end to end: a replica runs jobs whose callback URL points at a
//! receiver on 127.0.0.1 (allowed by the test config), and the receiver's
//! view is checked: signed, retried, bounded, refused where the policy
//! says, at least once across a replica kill, never twice at once.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::receiver::{Receiver, Reply};
use support::*;
use tandem_api::db::{Db, now_ms};
use tandem_api::jobs::{self, NewJob};
use tandem_api::keys;
use tandem_api::webhook::sign;

/// Not a test by itself: the body of a child replica process.
#[test]
fn replica_child() {
    child_main();
}

/// The test config with a `[webhooks]` table that lets deliveries reach
/// loopback, fast retries, and `extra` lines.
fn config(db_url: &str, worker: &str, extra: &str) -> String {
    format!(
        "{}\n[webhooks]\nallow = [\"127.0.0.0/8\"]\ntimeout = \"1s\"\nconnect_timeout = \"500ms\"\n\
         retry_base = \"50ms\"\nretry_max = \"100ms\"\npoll_interval = \"100ms\"\n{extra}\n",
        config_text(db_url, worker, "2s")
    )
}

/// A key and its webhook secret.
async fn key(db: &Db, callback: Option<&str>) -> (String, String) {
    let target = callback.map(|u| {
        let open = tandem_api::webhook::policy::Policy {
            allow: vec![tandem_api::webhook::policy::Allow::parse("127.0.0.0/8").unwrap()],
            allow_public: true,
        };
        tandem_api::webhook::Target::parse(u, &open).unwrap()
    });
    let made = keys::create_with(db, "hooks", 1e6, 1_000_000, target.as_ref())
        .await
        .unwrap();
    (made.token, made.webhook_secret)
}

/// Submits a job; its id.
async fn submit(base: &str, token: &str, input: &str, callback: Option<&str>) -> String {
    let mut body = json!({"kind": "upper", "input": input});
    if let Some(u) = callback {
        body["callback_url"] = json!(u);
    }
    let a = post_job(base, token, body).await;
    assert_eq!(a.status, 202, "{}", a.text());
    a.json()["id"].as_str().unwrap().to_owned()
}

/// Waits until job `id`'s webhook is delivered or failed; the job's JSON.
async fn webhook_settled(base: &str, token: &str, id: &str) -> Value {
    let what = format!("job {id}'s webhook settled");
    eventually(Duration::from_secs(30), &what, || async {
        let a = call("GET", &format!("{base}/v1/jobs/{id}"), Some(token), &[], "").await;
        assert_eq!(a.status, 200, "{}", a.text());
        let j = a.json();
        match j["webhook"]["state"].as_str() {
            Some("delivered" | "failed") => Ok(j),
            _ => Err(j),
        }
    })
    .await
}

/// The value of one Prometheus sample line `name{labels} value`, or 0.
async fn metric(base: &str, series: &str) -> f64 {
    let a = call("GET", &format!("{base}/metrics"), None, &[], "").await;
    a.text()
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn delivered_signed_and_visible(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config(&url, &worker.url, "")).await;
    let hook = Receiver::spawn(|_| Reply::Status(204)).await;
    let default = Receiver::spawn(|_| Reply::Status(200)).await;
    let (token, secret) = key(&r.db, Some(&format!("{}/default", default.url))).await;
    let base = r.url();

    let own = format!("{}/hook?token=abc", hook.url);
    let done = submit(&base, &token, "hello", Some(&own)).await;
    let failed = submit(&base, &token, "reject me", Some(&own)).await;
    let by_default = submit(&base, &token, "x", None).await;
    let j = webhook_settled(&base, &token, &done).await;
    let w = &j["webhook"];
    assert_eq!(w["state"], "delivered", "{j}");
    assert_eq!(w["attempts"], 1, "{j}");
    assert_eq!(w["last_status"], 204, "{j}");
    assert!(w["delivered_at_ms"].as_i64().unwrap() >= j["finished_at_ms"].as_i64().unwrap());
    // The host only: the query may hold the receiver's token.
    assert_eq!(w["host"], hook.url.trim_start_matches("http://"), "{j}");
    assert!(!j.to_string().contains("token=abc"), "{j}");
    let jf = webhook_settled(&base, &token, &failed).await;
    assert_eq!(jf["status"], "failed");
    webhook_settled(&base, &token, &by_default).await;

    let seen = hook.requests();
    assert_eq!(seen.len(), 2, "one request per job");
    for s in &seen {
        assert_eq!(s.header("content-type"), "application/json");
        let sig = s.header("tandem-signature");
        assert!(
            sign::verify(&secret, &sig, &s.body, now_ms() / 1000, 300),
            "{sig} does not verify with the key's secret"
        );
        assert!(!sign::verify(
            "whsec_other",
            &sig,
            &s.body,
            now_ms() / 1000,
            300
        ));
        let doc = s.json();
        let id = doc["id"].as_str().unwrap();
        let expected = if id == done { "job.done" } else { "job.failed" };
        assert_eq!(doc["event"], expected, "{doc}");
        assert_eq!(s.header("tandem-event"), expected);
        let view = if id == done { &j } else { &jf };
        assert_eq!(s.header("tandem-delivery"), view["webhook"]["delivery_id"]);
        assert_eq!(doc["status"], view["status"]);
    }
    let d = seen
        .iter()
        .find(|s| s.json()["id"] == done.as_str())
        .unwrap();
    assert_eq!(d.json()["result"]["url"], format!("/v1/jobs/{done}/result"));
    // The key's default URL served the job submitted without one.
    let dflt = default.requests();
    assert_eq!(dflt.len(), 1);
    assert_eq!(dflt[0].json()["id"], by_default.as_str());
    let delivered = "tandem_api_webhook_deliveries_total{outcome=\"delivered\"}";
    assert!(metric(&base, delivered).await >= 3.0);
    // The pending gauge is sampled (on both databases) and comes back to 0.
    eventually(
        Duration::from_secs(10),
        "the pending gauge at 0",
        || async {
            let a = call("GET", &format!("{base}/metrics"), None, &[], "").await;
            a.text()
                .lines()
                .any(|l| l == "tandem_api_webhook_pending 0")
        },
    )
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_delivered_signed_and_visible() {
    delivered_signed_and_visible("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_delivered_signed_and_visible() {
    delivered_signed_and_visible("mariadb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_after_500s_then_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config(&url, &worker.url, "")).await;
    let hook = Receiver::spawn(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let (token, secret) = key(&r.db, None).await;
    let id = submit(&r.url(), &token, "a", Some(&hook.url)).await;
    let j = webhook_settled(&r.url(), &token, &id).await;
    assert_eq!(j["webhook"]["state"], "delivered", "{j}");
    assert_eq!(j["webhook"]["attempts"], 3, "{j}");
    assert_eq!(j["webhook"]["last_status"], 200, "{j}");
    let seen = hook.requests();
    assert_eq!(seen.len(), 3);
    let ids: Vec<String> = seen.iter().map(|s| s.header("tandem-delivery")).collect();
    assert!(ids.iter().all(|d| *d == ids[0]), "one delivery id: {ids:?}");
    for s in &seen {
        let sig = s.header("tandem-signature");
        assert!(sign::verify(&secret, &sig, &s.body, now_ms() / 1000, 300));
    }
    assert_eq!(
        metric(
            &r.url(),
            "tandem_api_webhook_attempts_total{outcome=\"status\"}"
        )
        .await,
        2.0
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config(&url, &worker.url, "")).await;
    let hook = Receiver::spawn(|n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let (token, _) = key(&r.db, None).await;
    let id = submit(&r.url(), &token, "a", Some(&hook.url)).await;
    let j = webhook_settled(&r.url(), &token, &id).await;
    assert_eq!(j["webhook"]["state"], "delivered", "{j}");
    assert_eq!(j["webhook"]["attempts"], 2, "{j}");
    assert_eq!(hook.count(), 2);
    assert_eq!(
        metric(
            &r.url(),
            "tandem_api_webhook_attempts_total{outcome=\"timeout\"}"
        )
        .await,
        1.0
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config(&url, &worker.url, "max_attempts = 2")).await;
    let elsewhere = Receiver::spawn(|_| Reply::Status(200)).await;
    let to = format!("{}/elsewhere", elsewhere.url);
    let hook = Receiver::spawn(move |_| Reply::Redirect(to.clone())).await;
    let (token, _) = key(&r.db, None).await;
    let id = submit(&r.url(), &token, "a", Some(&hook.url)).await;
    let j = webhook_settled(&r.url(), &token, &id).await;
    let w = &j["webhook"];
    assert_eq!(w["state"], "failed", "{j}");
    assert_eq!(w["attempts"], 2, "{j}");
    assert_eq!(w["last_status"], 302, "{j}");
    let e = w["last_error"].as_str().unwrap();
    assert!(e.contains("redirects are not followed"), "{e}");
    assert_eq!(hook.count(), 2);
    assert_eq!(elsewhere.count(), 0, "the redirect was followed");
    assert_eq!(
        metric(
            &r.url(),
            "tandem_api_webhook_deliveries_total{outcome=\"failed\"}"
        )
        .await,
        1.0
    );
    r.stop().await;
}

/// An endless 500 body is read only up to `max_response_bytes` and then
/// dropped; an endless 200 body is not read at all. Uncapped, the first
/// attempt would read until its 3 s deadline: hundreds of MiB over
/// loopback, not the few MiB the socket buffers hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let extra = "max_response_bytes = 65536\ntimeout = \"3s\"";
    let cfg = config(&url, &worker.url, extra).replace("timeout = \"1s\"\n", "");
    let r = Replica::start(&cfg).await;
    let hook = Receiver::spawn(|n| Reply::Endless(if n == 0 { 500 } else { 200 })).await;
    let (token, _) = key(&r.db, None).await;
    let id = submit(&r.url(), &token, "a", Some(&hook.url)).await;
    let j = webhook_settled(&r.url(), &token, &id).await;
    assert_eq!(j["webhook"]["state"], "delivered", "{j}");
    assert_eq!(j["webhook"]["attempts"], 2, "{j}");
    let streamed = hook.streamed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        streamed < 32 << 20,
        "{streamed} bytes were taken from the receiver"
    );
    assert_eq!(
        metric(
            &r.url(),
            "tandem_api_webhook_attempts_total{outcome=\"status\"}"
        )
        .await,
        1.0
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callback_urls_are_refused_at_submit() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    // No [webhooks] table: the default policy refuses loopback.
    let r = Replica::start(&config_text(&url, &worker.url, "2s")).await;
    let (token, _) = key(&r.db, None).await;
    let long = format!("http://hooks.example.com/{}", "x".repeat(2048));
    let cases = [
        (json!("http://127.0.0.1:9/hook"), "127.0.0.0/8"),
        (json!("http://localhost:9/hook"), "loopback"),
        (json!("http://[::1]:9/"), "::1/128"),
        (json!("http://10.1.2.3/"), "10.0.0.0/8"),
        (
            json!("http://169.254.169.254/latest/meta-data"),
            "link-local",
        ),
        (
            json!("https://hooks.example.com/x"),
            "https:// is not supported",
        ),
        (json!("ftp://hooks.example.com/x"), "scheme \"ftp\""),
        (json!(long), "at most 2048"),
        (json!(42), "must be a string"),
    ];
    for (u, says) in cases {
        let body = json!({"kind": "upper", "input": "a", "callback_url": u});
        let a = post_job(&r.url(), &token, body).await;
        assert_eq!(a.status, 422, "{u}: {}", a.text());
        assert_eq!(a.code(), "bad_callback_url", "{u}");
        let msg = a.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            msg.starts_with("callback_url ") && msg.contains(says),
            "{u}: {msg}"
        );
    }
    // A key made before webhooks has no secret: it cannot sign.
    sqlx::query("UPDATE api_keys SET webhook_secret = NULL")
        .execute(&r.db.writer)
        .await
        .unwrap();
    tokio::time::sleep(keys::AUTH_CACHE_TTL).await;
    let body = json!({"kind": "upper", "input": "a", "callback_url": "http://hooks.example.com/"});
    let a = post_job(&r.url(), &token, body).await;
    assert_eq!(
        (a.status, a.code()),
        (422, "no_webhook_secret".into()),
        "{}",
        a.text()
    );
    assert_eq!(count(&r.db, "SELECT COUNT(*) FROM jobs").await, 0);
    r.stop().await;
}

/// URLs stored under a policy that allowed them (the operator has since
/// removed the allow entry): the connect-time check refuses both a literal
/// loopback address and a name that resolves to one, before connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_refused_at_connect_without_allow() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config_text(&url, &worker.url, "2s")).await;
    let (token, _) = key(&r.db, None).await;
    let key_id = token.split('_').nth(1).unwrap().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a2 = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            a2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut ids = Vec::new();
    for host in ["127.0.0.1", "localhost"] {
        let job = NewJob {
            key_id: key_id.clone(),
            kind: "upper".into(),
            input: b"a".to_vec(),
            input_type: "text/plain".into(),
            idem_key: None,
            body_hash: vec![0; 32],
            max_attempts: 3,
            priority: 0,
            params: None,
            callback_url: Some(format!("http://{host}:{port}/hook")),
        };
        match jobs::create(&r.db, job).await.unwrap() {
            jobs::Created::New(v) => ids.push(v.id),
            other => panic!("{other:?}"),
        }
    }
    for id in &ids {
        let j = webhook_settled(&r.url(), &token, id).await;
        let w = &j["webhook"];
        assert_eq!(w["state"], "failed", "{j}");
        assert_eq!(w["attempts"], 1, "refused at once, not retried: {j}");
        let e = w["last_error"].as_str().unwrap();
        assert!(
            e.contains("refused by the webhook policy") && e.contains("loopback"),
            "{e}"
        );
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a connection was made"
    );
    assert_eq!(
        metric(
            &r.url(),
            "tandem_api_webhook_attempts_total{outcome=\"refused\"}"
        )
        .await,
        2.0
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_with_both_during_its_grace() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config(&url, &worker.url, "")).await;
    let hook = Receiver::spawn(|_| Reply::Status(200)).await;
    let (token, old) = key(&r.db, None).await;
    let (_, new) = keys::rotate_webhook_secret(&r.db, "hooks", Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    let id = submit(&r.url(), &token, "a", Some(&hook.url)).await;
    webhook_settled(&r.url(), &token, &id).await;
    let s = &hook.requests()[0];
    let sig = s.header("tandem-signature");
    assert_eq!(sig.matches("v1=").count(), 2, "{sig}");
    let now = now_ms() / 1000;
    assert!(sign::verify(&new, &sig, &s.body, now, 300));
    assert!(sign::verify(&old, &sig, &s.body, now, 300));
    // Without a grace period the old secret stops at once.
    let (_, newer) = keys::rotate_webhook_secret(&r.db, "hooks", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let id = submit(&r.url(), &token, "b", Some(&hook.url)).await;
    webhook_settled(&r.url(), &token, &id).await;
    let s = &hook.requests()[1];
    let sig = s.header("tandem-signature");
    assert_eq!(sig.matches("v1=").count(), 1, "{sig}");
    assert!(sign::verify(&newer, &sig, &s.body, now_ms() / 1000, 300));
    r.stop().await;
}

/// The delivery is claimed and in flight at the receiver (which does not
/// answer) when the replica is SIGKILLed; the outbox row survives, and a
/// replica started on the same database delivers it after the lease, with
/// the same delivery id.
async fn at_least_once_across_a_replica_kill(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    let cfg = config(&url, &worker.url, "").replace("timeout = \"1s\"", "timeout = \"3s\"");
    let db = Db::open(&url, 2).await.unwrap();
    let (token, secret) = key(&db, None).await;
    let hook = Receiver::spawn(|_| Reply::Hang).await;
    let child = ChildReplica::spawn("replica_child", &cfg, dir.path(), "a");
    let id = submit(&child.url(), &token, "a", Some(&hook.url)).await;
    eventually(
        Duration::from_secs(30),
        "the delivery reached the receiver",
        || async { hook.count() >= 1 },
    )
    .await;
    drop(child); // SIGKILL, mid-attempt.
    hook.set(|_| Reply::Status(200));
    let pending = count(
        &db,
        "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'",
    )
    .await;
    assert_eq!(pending, 1, "the outbox row survived");
    let r = Replica::start(&cfg).await;
    let j = webhook_settled(&r.url(), &token, &id).await;
    assert_eq!(j["webhook"]["state"], "delivered", "{j}");
    assert!(j["webhook"]["attempts"].as_i64().unwrap() >= 2, "{j}");
    let seen = hook.requests();
    assert!(seen.len() >= 2);
    for s in &seen {
        assert_eq!(s.header("tandem-delivery"), j["webhook"]["delivery_id"]);
        assert!(sign::verify(
            &secret,
            &s.header("tandem-signature"),
            &s.body,
            now_ms() / 1000,
            300
        ));
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_at_least_once_across_a_replica_kill() {
    at_least_once_across_a_replica_kill("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_at_least_once_across_a_replica_kill() {
    at_least_once_across_a_replica_kill("mariadb").await;
}

/// Two replicas on one database deliver 60 webhooks to a receiver that
/// takes 100 ms each: every delivery arrives exactly once (no lease
/// expires: 5 s attempts), never two requests of one delivery at once.
async fn no_duplicate_concurrent_delivery(backend: &str) {
    const JOBS: usize = 60;
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    let cfg = config(&url, &worker.url, "concurrency = 8")
        .replace("timeout = \"1s\"", "timeout = \"5s\"");
    let r1 = Replica::start(&cfg).await;
    let r2 = Replica::start(&cfg).await;
    let hook = Receiver::spawn(|_| Reply::Slow(200, Duration::from_millis(100))).await;
    let (token, _) = key(&r1.db, None).await;
    for i in 0..JOBS {
        let base = if i % 2 == 0 { r1.url() } else { r2.url() };
        submit(&base, &token, &format!("j{i}"), Some(&hook.url)).await;
    }
    eventually(
        Duration::from_secs(60),
        "every webhook delivered",
        || async {
            count(
                &r1.db,
                "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'delivered'",
            )
            .await
                == JOBS as i64
        },
    )
    .await;
    let mut ids: Vec<String> = hook
        .requests()
        .iter()
        .map(|s| s.header("tandem-delivery"))
        .collect();
    assert_eq!(ids.len(), JOBS, "requests: {ids:?}");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), JOBS, "a delivery was sent twice");
    assert_eq!(hook.max_concurrent_per_delivery(), 1);
    r1.stop().await;
    r2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_no_duplicate_concurrent_delivery_from_two_replicas() {
    no_duplicate_concurrent_delivery("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mariadb_no_duplicate_concurrent_delivery_from_two_replicas() {
    no_duplicate_concurrent_delivery("mariadb").await;
}

/// `DELETE /v1/jobs/{id}` ends the job in its own transaction, which
/// queues the webhook too: `job.cancelled`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_gets_its_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config(&url, &worker.url, "")).await;
    let hook = Receiver::spawn(|_| Reply::Status(200)).await;
    let (token, secret) = key(&r.db, None).await;
    let id = submit(&r.url(), &token, "slow:20000", Some(&hook.url)).await;
    let job_url = format!("{}/v1/jobs/{id}", r.url());
    let a = call("DELETE", &job_url, Some(&token), &[], "").await;
    assert_eq!(a.status, 200, "{}", a.text());
    let j = webhook_settled(&r.url(), &token, &id).await;
    assert_eq!(j["status"], "cancelled");
    assert_eq!(j["webhook"]["state"], "delivered", "{j}");
    let seen = hook.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].json()["event"], "job.cancelled");
    assert_eq!(seen[0].header("tandem-event"), "job.cancelled");
    let sig = seen[0].header("tandem-signature");
    assert!(sign::verify(
        &secret,
        &sig,
        &seen[0].body,
        now_ms() / 1000,
        300
    ));
    r.stop().await;
}
