//! The dispatcher's HTTP/1.1 client for one kind's pool: pooled keep-alive
//! connections with a bounded lifetime.
//!
//! The balancer spreads *connections*, not requests. A client that kept
//! its connections forever would keep sending every request to the
//! workers it first reached, and a worker that joined the pool would get
//! nothing. So a connection is reused only while it is younger than the
//! kind's `connection_lifetime`: under steady load old connections are
//! replaced by new ones at that pace, and each new one is placed by the
//! balancer's scheduler (least connections prefers the newcomer). A
//! worker that answers with `Connection: close` (it is shutting down)
//! closes its connection at once.
//!
//! A request that fails on a *reused* connection before any answer came
//! back (the worker closed it while it sat idle) is sent once more on a
//! fresh connection, as browsers and hyper's pooled client do; the worker
//! never started that run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept per kind, at most.
const MAX_IDLE: usize = 1024;

/// What a worker answered.
#[derive(Debug)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its content type (`application/octet-stream` when it named none).
    pub content_type: String,
    /// The body, at most the caller's limit.
    pub body: Bytes,
    /// `X-Tandem-Instance` and `X-Tandem-Slots`, when it advertised them.
    pub slots: Option<(String, u32)>,
}

/// What one call sends besides its body.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The input's content type.
    pub content_type: &'a str,
    /// `X-Tandem-Job`.
    pub job_id: &'a str,
    /// `X-Tandem-Params`, when the job has parameters (`crate::params`).
    pub params: Option<&'a str>,
}

/// A pool of connections to one `host:port`.
pub struct Client {
    authority: String,
    lifetime: Duration,
    idle: Mutex<Vec<Conn>>,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    born: Instant,
}

impl Client {
    /// A client for `url` (`http://HOST:PORT`, as the config checked).
    pub fn new(url: &str, lifetime: Duration) -> Client {
        Client {
            authority: url.trim_start_matches("http://").to_owned(),
            lifetime,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Closes pooled connections past their lifetime. A connection left
    /// idle is otherwise only looked at when the next call takes one, and
    /// an idle one kept open holds a balancer that is draining or stopping
    /// (it waits for open connections) for no call at all.
    pub fn prune(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|c| c.born.elapsed() < self.lifetime && !c.sender.is_closed());
        }
    }

    /// `POST /v1/run` with `body`; reads at most `max_body` bytes of the
    /// answer. The caller bounds the time.
    pub async fn run(
        &self,
        call: Call<'_>,
        body: Bytes,
        max_body: usize,
    ) -> Result<Answer, String> {
        let (mut conn, reused) = match self.take() {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let req = self.request(call, body.clone())?;
        let resp = match conn.sender.send_request(req).await {
            Ok(r) => r,
            Err(e) if reused && (e.is_canceled() || e.is_incomplete_message() || e.is_closed()) => {
                conn = self.connect().await?;
                let req = self.request(call, body)?;
                conn.sender
                    .send_request(req)
                    .await
                    .map_err(|e| format!("worker call failed: {e}"))?
            }
            Err(e) => return Err(format!("worker call failed: {e}")),
        };
        let status = resp.status();
        let headers = resp.headers();
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_owned();
        let slots = advertised(headers);
        let closing = headers
            .get(CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| format!("reading the worker's answer: {e}"))?
            .to_bytes();
        if !closing {
            self.give_back(conn);
        }
        Ok(Answer {
            status,
            content_type,
            body,
            slots,
        })
    }

    fn request(&self, call: Call<'_>, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let mut req = Request::post("/v1/run")
            .header(HOST, self.authority.as_str())
            .header(CONTENT_TYPE, call.content_type)
            .header("x-tandem-job", call.job_id);
        if let Some(p) = call.params {
            req = req.header(crate::params::HEADER, p);
        }
        req.body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    /// A pooled connection young enough and still open, newest first.
    fn take(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(c) = idle.pop() {
            if c.born.elapsed() < self.lifetime && !c.sender.is_closed() && c.sender.is_ready() {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, conn: Conn) {
        if conn.born.elapsed() >= self.lifetime || conn.sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let stream = TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| format!("worker call failed: connect to {}: {e}", self.authority))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("worker call failed: handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "worker connection ended with an error");
            }
        });
        Ok(Conn {
            sender,
            born: Instant::now(),
        })
    }
}

/// `X-Tandem-Instance` and `X-Tandem-Slots` of an answer.
fn advertised(headers: &hyper::HeaderMap) -> Option<(String, u32)> {
    let instance = headers.get("x-tandem-instance")?.to_str().ok()?;
    let slots = headers.get("x-tandem-slots")?.to_str().ok()?.parse().ok()?;
    Some((instance.to_owned(), slots))
}
