//! The HTTP/1.1 client of the tests: one request on a fresh TCP connection,
//! spoken by hyper (so framing, chunked bodies and closes are handled as a
//! real client would), with status, headers and the whole body back.
//!
//! ```no_run
//! # async fn f(addr: std::net::SocketAddr) {
//! use tandem_test_support::http::Request;
//! let r = Request::get("/readyz").send(addr).await.unwrap();
//! assert_eq!(r.status, 200);
//! # }
//! ```
//!
//! [`Request::send_blocking`] runs the same exchange on a private
//! current-thread runtime, for tests without one (it panics inside a
//! runtime, as any nested `block_on` would).
//!
//! Failures say where the exchange broke ([`HttpError`]): a refused or
//! timed-out connect is not the same event as a reset mid-answer, and the
//! failover tests count them apart.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connect timeout unless set: far above a loopback connect, short enough
/// that a black-holed address fails the test quickly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-exchange timeout (request written, answer read) unless set.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How an exchange failed.
#[derive(Debug)]
pub enum HttpError {
    /// The TCP connect failed: refused, unreachable or timed out.
    Connect(std::io::Error),
    /// Connected, then the exchange failed: reset, closed early, malformed
    /// or timed out.
    Exchange(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "connect: {e}"),
            HttpError::Exchange(e) => write!(f, "exchange: {e}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// One request to send.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    /// Origin-form target: path and query.
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    connect_timeout: Duration,
    timeout: Duration,
}

impl Request {
    /// `method target` with no body.
    pub fn new(method: &str, target: &str) -> Request {
        Request {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            connect_timeout: CONNECT_TIMEOUT,
            timeout: TIMEOUT,
        }
    }

    /// `GET target`.
    pub fn get(target: &str) -> Request {
        Request::new("GET", target)
    }

    /// `POST target`.
    pub fn post(target: &str) -> Request {
        Request::new("POST", target)
    }

    /// Adds a header (sent in order; `Host` defaults to the address).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds the headers of `pairs`.
    pub fn headers(mut self, pairs: &[(&str, &str)]) -> Request {
        for (k, v) in pairs {
            self = self.header(k, v);
        }
        self
    }

    /// `Authorization: Bearer token`.
    pub fn bearer(self, token: &str) -> Request {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// The body (sent with its `Content-Length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// A JSON body with `Content-Type: application/json`.
    pub fn json(self, value: &serde_json::Value) -> Request {
        self.header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Bounds the TCP connect.
    pub fn connect_timeout(mut self, d: Duration) -> Request {
        self.connect_timeout = d;
        self
    }

    /// Bounds the exchange after the connect.
    pub fn timeout(mut self, d: Duration) -> Request {
        self.timeout = d;
        self
    }

    /// Sends it to `addr` on a fresh connection; the connection is closed
    /// once the body is read.
    pub async fn send(self, addr: SocketAddr) -> Result<Response, HttpError> {
        let stream =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(HttpError::Connect(e)),
                Err(_) => {
                    return Err(HttpError::Connect(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "connect to {addr} timed out after {:?}",
                            self.connect_timeout
                        ),
                    )));
                }
            };
        let _ = stream.set_nodelay(true);
        let within = self.timeout;
        tokio::time::timeout(within, self.exchange(addr, stream))
            .await
            .unwrap_or_else(|_| Err(HttpError::Exchange(format!("no answer within {within:?}"))))
    }

    /// [`Request::send`] from a thread without a runtime.
    pub fn send_blocking(self, addr: SocketAddr) -> Result<Response, HttpError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(self.send(addr))
    }

    /// Sends it to the `http://host:port` origin of `url` (whose path and
    /// query replace this request's target).
    pub async fn send_url(mut self, url: &str) -> Result<Response, HttpError> {
        let (addr, target) = split_url(url);
        self.target = target;
        self.send(addr).await
    }

    async fn exchange(self, addr: SocketAddr, stream: TcpStream) -> Result<Response, HttpError> {
        let ex = |e: &dyn std::fmt::Display| HttpError::Exchange(e.to_string());
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ex(&e))?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(self.method.as_str())
            .uri(self.target.as_str());
        if !self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            req = req.header("host", addr.to_string());
        }
        for (k, v) in &self.headers {
            let name = HeaderName::try_from(k.as_str()).map_err(|e| ex(&e))?;
            let value = HeaderValue::try_from(v.as_str()).map_err(|e| ex(&e))?;
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(self.body)))
            .map_err(|e| ex(&e))?;
        let answer = async {
            let resp = sender.send_request(req).await.map_err(|e| ex(&e))?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.into_body().collect().await.map_err(|e| ex(&e))?;
            Ok(Response {
                status,
                headers,
                body: body.to_bytes(),
            })
        }
        .await;
        // Closes the connection, whatever the server meant to keep.
        driver.abort();
        answer
    }
}

/// `http://host:port/path?query` → (address, `/path?query`). Test URLs
/// name an IP address, never a host name.
pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {url}"));
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr = authority
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {authority:?} is not IP:port ({e})"));
    (addr, path.to_owned())
}

/// An answer: status, headers and the whole body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header's value as text (the first, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `Content-Type`, or "" without one.
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics, showing the body, when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that reads one request head (and `body` bytes) and writes
    /// `answer`, then closes; returns its address and the request it read.
    async fn one_shot(answer: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn reads_a_chunked_answer_and_sends_host_and_headers() {
        let (addr, seen) = one_shot(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let r = Request::get("/x?y=1").bearer("k").send(addr).await.unwrap();
        assert_eq!((r.status, r.text().as_str()), (201, "abcde"));
        assert_eq!(r.header("x-a"), Some("1"));
        let req = seen.await.unwrap().to_ascii_lowercase();
        assert!(req.starts_with("get /x?y=1 http/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("host: {addr}\r\n")), "{req}");
        assert!(req.contains("authorization: bearer k\r\n"), "{req}");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_exchange_error_and_a_refusal_a_connect_error() {
        let (addr, _seen) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
        let e = Request::get("/").send(addr).await.unwrap_err();
        assert!(matches!(e, HttpError::Exchange(_)), "{e}");
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = free.local_addr().unwrap();
        drop(free);
        let e = Request::get("/").send(refused).await.unwrap_err();
        assert!(matches!(e, HttpError::Connect(_)), "{e}");
    }

    #[test]
    fn the_blocking_flavour_reads_to_the_close() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (addr, _seen) = rt.block_on(one_shot(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
        ));
        let r = Request::post("/p").body("x").send_blocking(addr).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "until close"));
    }

    #[test]
    fn splits_a_url_into_address_and_target() {
        let (a, t) = split_url("http://127.0.0.1:8080/v1/jobs?x=1");
        assert_eq!(
            (a.to_string().as_str(), t.as_str()),
            ("127.0.0.1:8080", "/v1/jobs?x=1")
        );
        assert_eq!(split_url("http://127.0.0.1:1").1, "/");
    }
}
