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
