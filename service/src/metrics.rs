//! The Prometheus recorder and the `/metrics` endpoint every Tandem process
//! exports.
//!
//! [`install`] sets the process-wide recorder once, with recommended naming
//! (counters end in `_total`, units become suffixes such as `_bytes` at
//! render time), and starts the exporter's upkeep: without the exporter's
//! own HTTP listener, nothing else drains histogram samples between scrapes.
//!
//! [`serve`] is the endpoint for a process whose main listener is not HTTP
//! (the balancer): HTTP/1.1 through hyper on its own listener, accepted by
//! [`crate::accept::Acceptor`]. It answers `GET`/`HEAD /metrics` and
//! `/healthz`; any other path goes to the caller's [`Pages`] (the
//! balancer's status page), else 404; methods other than GET and HEAD get
//! 405 with `Allow`. Connections are kept alive; a connection that sends no
//! complete request head within [`REQUEST_TIMEOUT`] (a stalled client, or
//! an idle kept-alive one) is closed. The endpoint takes no input and
//! changes nothing.
//!
//! The API and the workers answer `/metrics` on their own axum routers with
//! [`CONTENT_TYPE`] and the handle [`install`] returns.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accept::Acceptor;

/// Content type of the Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a connection may take to send a complete request head, and how
/// long a kept-alive connection may stay idle between requests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the exporter's upkeep runs (histogram draining, idle series).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder once and returns its handle;
/// later calls return the same handle and ignore their arguments (so tests
/// may call it freely).
///
/// `configure` adds what the process needs on top of recommended naming
/// (histogram buckets); `describe` registers every metric's HELP line and
/// unit once the recorder is in place. Called inside a tokio runtime, it
/// also starts the upkeep task on it (every [`UPKEEP_INTERVAL`]).
pub fn install(
    configure: impl FnOnce(PrometheusBuilder) -> Result<PrometheusBuilder, BuildError>,
    describe: impl FnOnce(),
) -> Result<PrometheusHandle, BuildError> {
    static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
    let mut slot = HANDLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = slot.as_ref() {
        return Ok(handle.clone());
    }
    let handle =
        configure(PrometheusBuilder::new().with_recommended_naming(true))?.install_recorder()?;
    describe();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(upkeep(handle.clone()));
    }
    *slot = Some(handle.clone());
    Ok(handle)
}

/// Runs the exporter's upkeep forever.
async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

/// One page the caller serves beside `/metrics`.
#[derive(Debug, Clone)]
pub struct Page {
    content_type: &'static str,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Page {
    /// A page with this content type and body.
    pub fn new(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Page {
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header (e.g. `content-security-policy`).
    ///
    /// # Panics
    /// If `name` is not a lowercase header name or `value` not a visible
    /// ASCII header value: both are constants of the caller's.
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }
}

/// The caller's hook for paths other than `/metrics` and `/healthz`.
pub trait Pages: Send + Sync + 'static {
    /// The page at `path` (the query string removed), or `None` for 404.
    /// Called for GET and HEAD alike; HEAD's body is not sent.
    fn get(&self, path: &str) -> Option<Page>;
}

/// Serves the endpoint on `listener` until `stop` is cancelled; then open
/// connections finish the request they are answering and close (for at
/// most [`REQUEST_TIMEOUT`]), and it returns.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    pages: Option<Arc<dyn Pages>>,
    stop: CancellationToken,
) {
    let mut acceptor = Acceptor::new(listener, stop.clone(), "metrics");
    let conns = TaskTracker::new();
    while let Some((stream, _peer)) = acceptor.next().await {
        conns.spawn(serve_connection(
            stream,
            handle.clone(),
            pages.clone(),
            stop.clone(),
        ));
    }
    conns.close();
    // A client that stopped reading its response must not hold up the
    // process's exit: past the request timeout its connection is left to
    // be dropped with the runtime.
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, conns.wait()).await;
}

/// Serves HTTP/1.1 on one connection until the client is done, the request
/// timeout closes it, or `stop` (after the response in progress).
pub async fn serve_connection<S>(
    io: S,
    handle: PrometheusHandle,
    pages: Option<Arc<dyn Pages>>,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let reply = respond(req.method(), req.uri().path(), &handle, pages.as_deref());
        async move { Ok::<_, Infallible>(reply) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let ended = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "metrics connection ended with an error");
    }
}

/// The answer to one request.
fn respond(
    method: &Method,
    path: &str,
    handle: &PrometheusHandle,
    pages: Option<&dyn Pages>,
) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let page = match path {
        "/metrics" => Page::new(CONTENT_TYPE, handle.render()),
        "/healthz" => Page::new("text/plain; charset=utf-8", "ok\n"),
        _ => match pages.and_then(|p| p.get(path)) {
            Some(page) => page,
            None => return plain(StatusCode::NOT_FOUND, "not found\n"),
        },
    };
    // hyper sends Content-Length from the full body, and none of it for HEAD.
    let mut r = Response::new(Full::new(page.body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(page.content_type),
    );
    common_headers(h);
    for (name, value) in page.headers {
        h.insert(name, value);
    }
    r
}

fn plain(code: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    common_headers(r.headers_mut());
    r
}

/// Every answer is live data: never cached, never content-sniffed.
fn common_headers(h: &mut hyper::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests;
