//! Test harness: a worker on 127.0.0.1:0 and a tiny HTTP/1.1 client.
#![allow(dead_code)] // each test file uses a different part

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request};
use hyper_util::rt::TokioIo;
use tandem_worker::config::{Config, Kind};
use tandem_worker::server::{AppState, serve};
use tokio::net::TcpStream;
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
        eventually("readyz 200", Duration::from_secs(10), || async {
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

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// `error.code` of a JSON error answer.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {}", self.text()))
            .to_owned()
    }

    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
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
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    driver.abort();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Waits until `cond` holds, polling every 20 ms, failing after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
