//! One delivery attempt on the wire: resolve, check every address, connect
//! to a checked address, POST, read the status.
//!
//! - The host name is resolved here, and every address it resolves to is
//!   judged by the policy before any connection is made; the connection
//!   goes to one of those addresses, so DNS cannot answer differently
//!   between the check and the connect (no rebinding). A name with any
//!   refused address is refused whole.
//! - Bounded: `connect_timeout` per address tried, `timeout` for the
//!   whole attempt up to the response's head; the body of a non-2xx
//!   answer is read for its first bytes only (at most
//!   `max_response_bytes`, within the same deadline), then the connection
//!   is dropped. A 2xx answer's body is not read at all.
//! - No redirect is followed: a 3xx is an answer like any non-2xx.
//! - One connection per attempt (`Connection: close`): nothing pooled
//!   outlives the check that let it be opened.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

use super::policy::Policy;
use super::sign;
use super::target::{Target, TargetHost};
use crate::config::WebhookConfig;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempted {
    /// The receiver answered 2xx.
    Delivered(u16),
    /// It answered something else (3xx included); the start of its body.
    Status(u16, String),
    /// No answer.
    Failed(Failure, String),
}

/// Why an attempt got no answer. The names label the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The policy refused an address: nothing was sent. Final.
    Refused,
    /// The name did not resolve.
    Dns,
    /// No address took the connection in time.
    Connect,
    /// No response head within `timeout`.
    Timeout,
    /// The exchange broke (closed early, not HTTP).
    Protocol,
}

impl Attempted {
    /// The metric label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Attempted::Delivered(_) => "delivered",
            Attempted::Status(..) => "status",
            Attempted::Failed(Failure::Refused, _) => "refused",
            Attempted::Failed(Failure::Dns, _) => "dns",
            Attempted::Failed(Failure::Connect, _) => "connect",
            Attempted::Failed(Failure::Timeout, _) => "timeout",
            Attempted::Failed(Failure::Protocol, _) => "protocol",
        }
    }
}

/// One delivery's request.
pub struct Outgoing<'a> {
    /// Where to.
    pub target: &'a Target,
    /// The JSON document.
    pub body: Bytes,
    /// The secrets to sign with, current first.
    pub secrets: &'a [String],
    /// Unix seconds to sign with.
    pub t: i64,
    /// `Tandem-Delivery`.
    pub delivery_id: &'a str,
    /// `Tandem-Event`, e.g. `job.done`.
    pub event: &'a str,
}

/// Bytes of a non-2xx body kept for the delivery's `last_error`.
const SNIPPET: usize = 200;

/// Runs one attempt within the config's limits (see the module doc).
pub async fn attempt(out: &Outgoing<'_>, cfg: &WebhookConfig) -> Attempted {
    let deadline = Instant::now() + cfg.timeout;
    let exchange = async {
        let addrs = resolve(out.target, &cfg.policy).await?;
        let stream = connect(&addrs, cfg.connect_timeout).await?;
        request(stream, out).await
    };
    let (resp, conn) = match timeout_at(deadline, exchange).await {
        Err(_) => {
            let t = cfg.timeout;
            return Attempted::Failed(Failure::Timeout, format!("no answer within {t:?}"));
        }
        Ok(Err(failed)) => return failed,
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if status.is_success() {
        conn.abort();
        return Attempted::Delivered(status.as_u16());
    }
    let head = timeout_at(deadline, capped(resp.into_body(), cfg.max_response_bytes))
        .await
        .unwrap_or_default();
    conn.abort();
    let text: String = String::from_utf8_lossy(&head)
        .chars()
        .filter(|c| !c.is_control())
        .take(SNIPPET)
        .collect();
    Attempted::Status(status.as_u16(), text)
}

/// The addresses to try, every one allowed by `policy`.
async fn resolve(target: &Target, policy: &Policy) -> Result<Vec<SocketAddr>, Attempted> {
    let port = target.port();
    let refused = |e: super::policy::Refused| Attempted::Failed(Failure::Refused, e.to_string());
    let name = match target.host() {
        TargetHost::Ip(ip) => {
            policy.check(ip).map_err(refused)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        TargetHost::Name(n) => n,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
        .await
        .map_err(|e| Attempted::Failed(Failure::Dns, format!("cannot resolve {name:?}: {e}")))?
        .collect();
    if addrs.is_empty() {
        let e = format!("{name:?} resolved to no address");
        return Err(Attempted::Failed(Failure::Dns, e));
    }
    if !policy.host_listed(&name) {
        for a in &addrs {
            policy.check(a.ip()).map_err(|e| {
                Attempted::Failed(Failure::Refused, format!("{name:?} resolves to {e}"))
            })?;
        }
    }
    Ok(addrs)
}

/// A connection to the first of `addrs` that takes one within `each`.
async fn connect(addrs: &[SocketAddr], each: Duration) -> Result<TcpStream, Attempted> {
    let mut errors = Vec::new();
    for a in addrs {
        match timeout(each, TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => errors.push(format!("{a}: {e}")),
            Err(_) => errors.push(format!("{a}: no connection within {each:?}")),
        }
    }
    Err(Attempted::Failed(
        Failure::Connect,
        format!("cannot connect: {}", errors.join("; ")),
    ))
}

/// The connection's driver task, aborted (closing the socket) when the
/// attempt is done with it.
struct Driver(tokio::task::JoinHandle<()>);

impl Driver {
    fn abort(self) {
        self.0.abort();
    }
}

/// Sends the POST on `stream`; the response head and the connection.
async fn request(
    stream: TcpStream,
    out: &Outgoing<'_>,
) -> Result<(hyper::Response<hyper::body::Incoming>, Driver), Attempted> {
    let broke =
        |what: &str, e: hyper::Error| Attempted::Failed(Failure::Protocol, format!("{what}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| broke("handshake", e))?;
    let driver = Driver(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let secrets: Vec<&str> = out.secrets.iter().map(String::as_str).collect();
    let signature = sign::header(&secrets, out.t, &out.body);
    let req = Request::post(out.target.path_and_query())
        .header(HOST, out.target.authority())
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("tandem-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header(CONNECTION, "close")
        .header(sign::HEADER, signature)
        .header("tandem-delivery", out.delivery_id)
        .header("tandem-event", out.event)
        .body(Full::new(out.body.clone()))
        .map_err(|e| {
            Attempted::Failed(Failure::Protocol, format!("cannot build the request: {e}"))
        })?;
    match sender.send_request(req).await {
        Ok(resp) => Ok((resp, driver)),
        Err(e) => {
            driver.abort();
            Err(broke("the receiver broke the exchange", e))
        }
    }
}

/// The first `max` bytes of `body` (or fewer if it ends or breaks first);
/// the rest is never read.
async fn capped(mut body: hyper::body::Incoming, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < max {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = max - out.len();
                    out.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            _ => break,
        }
    }
    out
}
