use super::*;
use metrics_exporter_prometheus::PrometheusRecorder;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

/// A recorder of the test's own (not the global one) holding one counter.
fn recorder() -> PrometheusRecorder {
    let recorder = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .build_recorder();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("tandem_test_things").increment(3);
    });
    recorder
}

struct Status;
impl Pages for Status {
    fn get(&self, path: &str) -> Option<Page> {
        (path == "/status").then(|| {
            Page::new("text/html; charset=utf-8", "<p>hi</p>")
                .header("content-security-policy", "default-src 'self'")
        })
    }
}

/// A connection served in the background; the test holds the client end.
fn connect(pages: Option<Arc<dyn Pages>>) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let handle = recorder().handle();
    let task = tokio::spawn(serve_connection(
        server,
        handle,
        pages,
        CancellationToken::new(),
    ));
    (client, task)
}

/// Sends one request and reads one response: (head, lowercased; body).
/// HEAD responses carry a Content-Length but no body.
async fn exchange(c: &mut DuplexStream, request: &str) -> (String, String) {
    c.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the response head");
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("a content-length");
    let want = if request.starts_with("HEAD") { 0 } else { len };
    while raw.len() < head_end + want {
        let mut chunk = [0u8; 4096];
        let n = c.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the body ended");
        raw.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    (head, body)
}

#[tokio::test]
async fn get_and_head_of_metrics_on_one_kept_alive_connection() {
    let (mut c, _task) = connect(None);
    let (head, body) = exchange(&mut c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(body.contains("tandem_test_things_total 3"), "{body}");

    let (head2, body2) = exchange(&mut c, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head2.starts_with("http/1.1 200"), "{head2}");
    assert!(
        head2.contains(&format!("content-length: {}", body.len())),
        "{head2}"
    );
    assert_eq!(body2, "", "HEAD sends no body");

    let (head3, body3) = exchange(
        &mut c,
        "GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head3.starts_with("http/1.1 200"), "{head3}");
    assert_eq!(body3, body, "the query string is ignored");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed after Connection: close");
}

#[tokio::test]
async fn unknown_paths_are_404_and_other_methods_405() {
    let (mut c, _task) = connect(None);
    let (head, body) = exchange(&mut c, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert_eq!(body, "not found\n");
    let (head, _) = exchange(&mut c, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 404"), "no pages hook: {head}");
    let (head, _) = exchange(
        &mut c,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("allow: get, head"), "{head}");
    let (head, body) = exchange(&mut c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "ok\n");
}

#[tokio::test]
async fn the_pages_hook_serves_other_paths_with_its_headers() {
    let (mut c, _task) = connect(Some(Arc::new(Status)));
    let (head, body) = exchange(&mut c, "GET /status?refresh=2 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert_eq!(body, "<p>hi</p>");
    let (head, _) = exchange(&mut c, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_closed_after_the_request_timeout() {
    let (mut c, task) = connect(None);
    let t0 = Instant::now();
    c.write_all(b"GET /metr").await.unwrap();
    task.await.unwrap();
    assert_eq!(t0.elapsed(), REQUEST_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn an_idle_kept_alive_connection_is_closed_after_the_request_timeout() {
    let (mut c, task) = connect(None);
    exchange(&mut c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let t0 = Instant::now();
    task.await.unwrap();
    assert_eq!(t0.elapsed(), REQUEST_TIMEOUT);
}

#[tokio::test]
async fn serves_tcp_until_stopped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, recorder().handle(), None, stop.clone()));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("tandem_test_things_total 3"), "{out}");

    // An idle kept-alive connection does not hold the stop up.
    let _idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once stopped")
        .unwrap();
}
