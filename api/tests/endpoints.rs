//! Every endpoint and error path, against SQLite and against MariaDB.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tandem_api::keys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoints_sqlite() {
    suite("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoints_mariadb() {
    suite("mariadb").await;
}

async fn suite(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(backend, dir.path()).await else {
        return;
    };
    let worker = FakeWorker::spawn().await;
    let r = Replica::start(&config_text(&url, &worker.url, "5s")).await;
    let base = r.url();
    let db = r.db.clone();
    let (_, token) = keys::create(&db, "alice", 1000.0, 1000).await.unwrap();
    let (_, other) = keys::create(&db, "bob", 1000.0, 1000).await.unwrap();

    // Probes.
    assert_eq!(
        call("GET", &format!("{base}/healthz"), None, &[], "")
            .await
            .status,
        200
    );
    assert_eq!(
        call("GET", &format!("{base}/readyz"), None, &[], "")
            .await
            .status,
        200
    );
    let nf = call("GET", &format!("{base}/nope"), None, &[], "").await;
    assert_eq!((nf.status, nf.code().as_str()), (404, "not_found"));

    // Bad input: the right 4xx, and nothing stored.
    let jobs_url = format!("{base}/v1/jobs");
    let a = call("POST", &jobs_url, None, &[], "{}").await;
    assert_eq!((a.status, a.code().as_str()), (401, "unauthorized"));
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    let fake = format!("tandem_{}_{}", "0".repeat(16), "0".repeat(64));
    assert_eq!(
        call("POST", &jobs_url, Some(&fake), &[], "{}").await.status,
        401
    );
    assert_eq!(
        call("POST", &jobs_url, Some("garbage"), &[], "{}")
            .await
            .status,
        401
    );
    // A real key id with a wrong secret.
    let wrong_secret = format!(
        "{}{}",
        &token[..token.len() - 1],
        if token.ends_with('0') { "1" } else { "0" }
    );
    assert_eq!(
        call("POST", &jobs_url, Some(&wrong_secret), &[], "{}")
            .await
            .status,
        401
    );
    let a = call("POST", &jobs_url, Some(&token), &[], "{\"kind\": ").await;
    assert_eq!((a.status, a.code().as_str()), (400, "bad_json"));
    let a = post_job(&base, &token, json!({"kind": "nope", "input": "x"})).await;
    assert_eq!((a.status, a.code().as_str()), (422, "unknown_kind"));
    let a = post_job(
        &base,
        &token,
        json!({"kind": "upper", "input": "x".repeat(1001)}),
    )
    .await;
    assert_eq!((a.status, a.code().as_str()), (413, "too_large"));
    // Over the whole-request limit: refused from Content-Length alone,
    // before the body is read. Only the head is sent, since a client that
    // writes the whole body races the server closing the connection.
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
    );
    let status = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = base.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("an answer before the body")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(
        status.starts_with("HTTP/1.1 413"),
        "over the whole-request limit: {status}"
    );
    let a = post_job(&base, &token, json!({"kind": "upper"})).await;
    assert_eq!((a.status, a.code().as_str()), (400, "missing_input"));
    let a = post_job(
        &base,
        &token,
        json!({"kind": "upper", "input_base64": "!!"}),
    )
    .await;
    assert_eq!((a.status, a.code().as_str()), (400, "bad_base64"));
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM jobs").await,
        0,
        "bad requests stored nothing"
    );

    // A job end to end.
    let a = post_job(&base, &token, json!({"kind": "upper", "input": "hello"})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        a.header("location"),
        Some(format!("/v1/jobs/{id}").as_str())
    );
    let j = wait_finished(&base, &token, &id).await;
    assert_eq!(j["status"], "done", "{j}");
    assert_eq!(j["attempts"], 1);
    assert_eq!(j["result"]["content_type"], "text/x-upper");
    assert_eq!(j["result"]["bytes"], 5);
    assert!(j["finished_at_ms"].as_i64().unwrap() >= j["created_at_ms"].as_i64().unwrap());
    let res = call(
        "GET",
        &format!("{jobs_url}/{id}/result"),
        Some(&token),
        &[],
        "",
    )
    .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/x-upper"));
    assert_eq!(&res.body[..], b"HELLO");
    assert!(res.header("ratelimit-limit").is_some() && res.header("ratelimit-remaining").is_some());

    // Binary input with its content type.
    let a = post_job(
        &base,
        &token,
        json!({"kind": "upper", "input_base64": "YWJj", "content_type": "application/x-abc"}),
    )
    .await;
    assert_eq!(a.status, 202);
    let bin = a.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(wait_finished(&base, &token, &bin).await["status"], "done");
    let t: String = sqlx::query_scalar("SELECT input_type FROM jobs WHERE id = ?")
        .bind(&bin)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(t, "application/x-abc");

    // Another key sees nothing.
    for path in [
        format!("{jobs_url}/{id}"),
        format!("{jobs_url}/{id}/result"),
        format!("{jobs_url}/j_missing"),
    ] {
        let a = call("GET", &path, Some(&other), &[], "").await;
        assert_eq!((a.status, a.code().as_str()), (404, "not_found"), "{path}");
    }
    let a = call("GET", &jobs_url, Some(&other), &[], "").await;
    assert_eq!(a.json()["jobs"].as_array().unwrap().len(), 0);

    // Idempotency.
    let idem = [
        ("idempotency-key", "abc-1"),
        ("content-type", "application/json"),
    ];
    let body = json!({"kind": "upper", "input": "once"}).to_string();
    let first = call("POST", &jobs_url, Some(&token), &idem, body.clone()).await;
    let again = call("POST", &jobs_url, Some(&token), &idem, body.clone()).await;
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(first.json()["id"], again.json()["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let changed = call(
        "POST",
        &jobs_url,
        Some(&token),
        &idem,
        json!({"kind": "upper", "input": "twice"}).to_string(),
    )
    .await;
    assert_eq!(
        (changed.status, changed.code().as_str()),
        (409, "idempotency_conflict")
    );
    // The same idempotency key under another API key is another job.
    let bobs = call("POST", &jobs_url, Some(&other), &idem, body.clone()).await;
    assert_eq!(bobs.status, 202);
    assert_ne!(bobs.json()["id"], first.json()["id"]);

    // Retries and failures.
    let once = post_job(
        &base,
        &token,
        json!({"kind": "upper", "input": "fail-once"}),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let rej = post_job(
        &base,
        &token,
        json!({"kind": "upper", "input": "reject me"}),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dead = post_job(
        &base,
        &token,
        json!({"kind": "other", "input": "always-500"}),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let busy = post_job(
        &base,
        &token,
        json!({"kind": "upper", "input": "busy-once"}),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let j = wait_finished(&base, &token, &once).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("done"), Some(2)),
        "{j}"
    );
    let j = wait_finished(&base, &token, &rej).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("failed"), Some(1)),
        "4xx is not retried: {j}"
    );
    assert!(j["last_error"].as_str().unwrap().contains("400"), "{j}");
    let j = wait_finished(&base, &token, &dead).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("failed"), Some(2)),
        "{j}"
    );
    assert!(j["last_error"].as_str().unwrap().contains("500"), "{j}");
    let j = wait_finished(&base, &token, &busy).await;
    assert_eq!(
        (j["status"].as_str(), j["attempts"].as_i64()),
        (Some("done"), Some(1)),
        "503 does not use an attempt: {j}"
    );
    let a = call(
        "GET",
        &format!("{jobs_url}/{dead}/result"),
        Some(&token),
        &[],
        "",
    )
    .await;
    assert_eq!((a.status, a.code().as_str()), (409, "no_result"));

    // Listing and paging.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let url = match &cursor {
            Some(c) => format!("{jobs_url}?limit=2&cursor={c}"),
            None => format!("{jobs_url}?limit=2"),
        };
        let page = call("GET", &url, Some(&token), &[], "").await.json();
        seen.extend(
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let total = count(
        &db,
        "SELECT COUNT(*) FROM jobs WHERE key_id IN (SELECT id FROM api_keys WHERE name = 'alice')",
    )
    .await;
    assert_eq!(seen.len() as i64, total);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len(), "pages do not overlap");
    let failed = call(
        "GET",
        &format!("{jobs_url}?status=failed"),
        Some(&token),
        &[],
        "",
    )
    .await
    .json();
    assert_eq!(failed["jobs"].as_array().unwrap().len(), 2);
    let other_kind = call(
        "GET",
        &format!("{jobs_url}?kind=other"),
        Some(&token),
        &[],
        "",
    )
    .await
    .json();
    assert_eq!(other_kind["jobs"].as_array().unwrap().len(), 1);
    for (q, code) in [
        ("status=sleeping", "bad_status"),
        ("limit=0", "bad_limit"),
        ("limit=x", "bad_limit"),
        ("cursor=zz", "bad_cursor"),
    ] {
        let a = call("GET", &format!("{jobs_url}?{q}"), Some(&token), &[], "").await;
        assert_eq!((a.status, a.code().as_str()), (400, code), "{q}");
    }

    // One result row per done job.
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM results").await,
        count(&db, "SELECT COUNT(*) FROM jobs WHERE state = 'done'").await
    );

    // Revocation.
    let (info, doomed) = keys::create(&db, "carol", 1000.0, 1000).await.unwrap();
    assert_eq!(
        call("GET", &jobs_url, Some(&doomed), &[], "").await.status,
        200
    );
    assert_eq!(keys::revoke(&db, &info.id).await.unwrap(), 1);
    // Authentications are cached for at most keys::AUTH_CACHE_TTL (1 s):
    // the revocation holds within that bound.
    let a = eventually(
        Duration::from_secs(5),
        "revocation takes effect",
        || async {
            let a = call("GET", &jobs_url, Some(&doomed), &[], "").await;
            if a.status == 401 {
                Ok(a)
            } else {
                Err(a.status)
            }
        },
    )
    .await;
    assert_eq!((a.status, a.code().as_str()), (401, "unauthorized"));
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );

    // Rate limit: burst 2 at 0.5/s: the third request at once is 429.
    let (_, slow) = keys::create(&db, "slow", 0.5, 2).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            call("GET", &jobs_url, Some(&slow), &[], "").await.status,
            200
        );
    }
    let a = call("GET", &jobs_url, Some(&slow), &[], "").await;
    assert_eq!((a.status, a.code().as_str()), (429, "rate_limited"));
    assert_eq!(a.header("retry-after"), Some("2"));
    assert_eq!(a.header("ratelimit-remaining"), Some("0"));
    assert_eq!(a.header("ratelimit-limit"), Some("2"));

    // The request log, with the client address from a PROXY v1 header.
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    let req = format!(
        "PROXY TCP4 203.0.113.9 127.0.0.1 40000 80\r\nGET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let key_id = token.split('_').nth(1).unwrap().to_owned();
    let db2 = db.clone();
    eventually(Duration::from_secs(5), "request log rows", || {
        let db = db2.clone();
        let key_id = key_id.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM request_log WHERE client LIKE '203.0.113.9:%' AND key_id = ? AND route = '/v1/jobs' AND status = 200 AND method = 'GET'",
            )
            .bind(key_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            n == 1
        }
    })
    .await;
    let unauth = count(&db, "SELECT COUNT(*) FROM request_log WHERE status = 401 AND key_id IS NULL AND client LIKE '127.0.0.1:%'").await;
    assert!(unauth >= 4, "401s are logged without a key: {unauth}");
    let logged_tokens: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM request_log WHERE key_id = ?")
            .bind(&token)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(logged_tokens, 0);

    // Metrics.
    let m = call("GET", &format!("{base}/metrics"), None, &[], "").await;
    let text = String::from_utf8_lossy(&m.body);
    for needle in [
        "tandem_api_requests_total",
        "tandem_api_request_duration_seconds",
        "tandem_api_rate_limited_total",
        "tandem_api_queue_depth",
        "tandem_api_jobs",
        "tandem_api_dispatch_duration_seconds",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics");
    }

    // Graceful stop, then readiness of a stopped replica is moot; a second
    // replica opens the same, migrated database.
    r.stop().await;
    let r2 = Replica::start(&config_text(&url, &worker.url, "5s")).await;
    assert_eq!(
        call("GET", &format!("{}/readyz", r2.url()), None, &[], "")
            .await
            .status,
        200
    );
    r2.stop().await;
}
