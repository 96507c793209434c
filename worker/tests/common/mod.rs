//! Test harness: a worker on 127.0.0.1:0, and the shared HTTP client and
//! bounded wait (tandem-test-support) in the shapes these tests use.
#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tandem_test_support::http::Request;
use tandem_worker::config::{Config, Kind};
use tandem_worker::server::{AppState, serve};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running worker; shut down (and joined) on `stop`, cancelled on drop.
pub struct Worker {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Worker {
    /// Starts a worker of `kind` whose config is `listen = ...` plus `toml`.
    pub async fn start(kind: Kind, toml: &str) -> Worker {
        let text = format!("listen = \"127.0.0.1:0\"\n{toml}");
        let config = Config::parse(&text, Path::new("test.toml")).expect("test config");
        let handle = tandem_worker::metrics::install().expect("recorder");
        let state = AppState::new(config, kind, Some(handle)).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, state, shutdown.clone()));
        Worker {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    pub async fn post(&self, path: &str, content_type: Option<&str>, body: Vec<u8>) -> Reply {
        request(self.addr, "POST", path, content_type, body)
            .await
            .expect("request")
    }

    /// `POST /v1/run` with the job parameters `params` in `X-Tandem-Params`.
    pub async fn run_with_params(
        &self,
        params: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        self.run_with_headers(
            "/v1/run",
            &[("x-tandem-params", params)],
            content_type,
            body,
        )
        .await
    }

    /// `POST path` with extra request headers.
    pub async fn run_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::new("POST", path).headers(headers).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        req.send(self.addr).await.expect("request")
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, None, Vec::new())
            .await
            .expect("request")
    }

    /// Asserts the process still answers health and a trivial probe.
    pub async fn assert_healthy(&self) {
        let r = self.get("/healthz").await;
        assert_eq!(r.status, 200, "healthz: {}", r.text());
        eventually(Duration::from_secs(10), "readyz 200", || async {
            self.get("/readyz").await.status == 200
        })
        .await;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The bounded wait of every Tandem test: `(within, what, condition)`.
pub use tandem_test_support::eventually;
/// An HTTP answer: the shared test client's.
pub use tandem_test_support::http::Response as Reply;

/// The worker's JSON error shape, `{"error": {"code", "message"}}`.
pub trait ErrorBody {
    /// `error.code`; panics, showing the body, without one.
    fn error_code(&self) -> String;
    /// `error.message`, or "".
    fn error_message(&self) -> String;
}

impl ErrorBody for Reply {
    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {}", self.text()))
            .to_owned()
    }

    fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// One request on a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<Reply> {
    let mut req = Request::new(method, path).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    Ok(req.send(addr).await?)
}

/// One kept-alive HTTP/1.1 connection driven by hand, so a test sees what
/// the server does to the connection itself (keeps it, or closes it).
pub struct KeptAlive {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

/// An answer read off a [`KeptAlive`] connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    /// The first value of header `name` (lowercase), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server said it closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

impl KeptAlive {
    pub async fn open(addr: SocketAddr) -> KeptAlive {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        KeptAlive {
            stream: tokio::io::BufReader::new(stream),
        }
    }

    /// Writes `bytes` as they are: part of a request, say.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.get_mut().write_all(bytes).await.expect("write");
    }

    /// This end's address (the server sees it as the peer).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.get_ref().local_addr().expect("local address")
    }

    /// Writes one request (HTTP/1.1 keeps the connection by default).
    pub async fn send(&mut self, method: &str, path: &str, body: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: worker\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes()).await.expect("write head");
        s.write_all(body).await.expect("write body");
    }

    /// Reads one answer (its body framed by `content-length`), within 20 s.
    pub async fn reply(&mut self) -> RawReply {
        tokio::time::timeout(Duration::from_secs(20), self.read_reply())
            .await
            .expect("an answer within 20 s")
    }

    async fn read_reply(&mut self) -> RawReply {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut line = String::new();
        self.stream.read_line(&mut line).await.expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.expect("header line");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("header has a colon");
            headers.push((n.to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().expect("content-length"));
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).await.expect("body");
        RawReply {
            status,
            headers,
            body,
        }
    }

    /// Waits (at most 10 s) for the server to close the connection: a read
    /// returns end of file (or a reset) with nothing more sent.
    pub async fn closed_by_server(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => panic!("the server sent more bytes instead of closing"),
            Err(_) => false,
        }
    }
}
