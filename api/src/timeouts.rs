//! One HTTP/1.1 connection under the timeouts of `[http]` keys
//! (`crate::config::HttpTimeouts`), so a slow or silent client cannot hold
//! a descriptor and a task for as long as it likes, nor hold up shutdown:
//!
//! - `header_read_timeout`: hyper's own header timer, which needs a timer
//!   (`http1::Builder::timer`) or it is silently off. hyper starts it when
//!   it is ready for a request head (the connection is new, or the previous
//!   response went out) and the head must be complete by then; on expiry
//!   hyper closes the connection.
//! - `keepalive_timeout`: here. A connection with no request in flight on
//!   which no byte has arrived since it became idle is closed after this.
//!   A request in flight includes its response body, so a held `?wait=`
//!   or a large result being written is never idle.
//! - `request_timeout`: here. From the head's arrival to the response's
//!   head (the body upload included); on expiry the client gets 408 and
//!   `Connection: close`.
//! - Shutdown: a connection with no request in flight is closed at once
//!   (nothing is owed on it: it is idle or in the middle of a head); one
//!   with a request gets hyper's graceful shutdown (the response, then
//!   close).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpTimeouts;
use crate::server::ClientAddr;

/// What the connection task knows of the requests hyper is serving.
#[derive(Debug, Default)]
struct Activity {
    /// Requests dispatched whose response body has not been sent.
    in_flight: AtomicUsize,
    /// Whether a byte arrived since the connection last became idle.
    read: AtomicBool,
    /// Woken when `in_flight` drops to zero (the idle clock restarts).
    idle: Notify,
}

/// Holds a request in flight until dropped, with its response body.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.read.store(false, Ordering::SeqCst);
            self.0.idle.notify_one();
        }
    }
}

/// A response body that keeps its request in flight until it is done.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's stream, noting when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read.store(true, Ordering::SeqCst);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// 408 with `Connection: close`, in the API's error shape.
fn timed_out(limit: Duration) -> hyper::Response<Body> {
    let body = serde_json::json!({"error": {
        "code": "request_timeout",
        "message": format!("the request took longer than request_timeout ({limit:?})"),
    }});
    let mut r = hyper::Response::new(Body::from(body.to_string()));
    *r.status_mut() = hyper::StatusCode::REQUEST_TIMEOUT;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    h.insert(hyper::header::CONNECTION, "close".parse().unwrap());
    r
}

/// Serves HTTP/1.1 on `io` for `client` until the client is done, a
/// timeout closes it, or `shutdown` (see the module doc).
pub async fn serve<S>(
    io: S,
    client: std::net::SocketAddr,
    app: Router,
    limits: HttpTimeouts,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let act = Arc::clone(&activity);
    let service = tower::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = InFlight::enter(&act);
        let app = app.clone();
        async move {
            req.extensions_mut().insert(ClientAddr(client));
            let resp = match tokio::time::timeout(limits.request, app.oneshot(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    metrics::counter!(crate::metrics::HTTP_TIMEOUTS, "kind" => "request")
                        .increment(1);
                    timed_out(limits.request)
                }
            };
            Ok::<_, std::convert::Infallible>(resp.map(|inner| Guarded {
                inner,
                _guard: guard,
            }))
        }
    });
    let io = TokioIo::new(Watched {
        inner: io,
        activity: Arc::clone(&activity),
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    loop {
        // The idle clock runs while nothing is in flight and nothing has
        // arrived; bytes of a head hand the connection to
        // header_read_timeout until the next response is sent.
        let idle = async {
            if activity.in_flight.load(Ordering::SeqCst) > 0 || activity.read.load(Ordering::SeqCst)
            {
                return std::future::pending().await;
            }
            tokio::time::sleep(limits.keepalive).await;
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    if e.is_timeout() {
                        metrics::counter!(crate::metrics::HTTP_TIMEOUTS, "kind" => "header_read")
                            .increment(1);
                    }
                    tracing::debug!(%client, error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.idle.notified() => {}
            () = idle => {
                if activity.in_flight.load(Ordering::SeqCst) == 0
                    && !activity.read.load(Ordering::SeqCst)
                {
                    metrics::counter!(crate::metrics::HTTP_TIMEOUTS, "kind" => "keepalive")
                        .increment(1);
                    tracing::debug!(%client, "idle connection closed (keepalive_timeout)");
                    return;
                }
            }
            () = shutdown.cancelled() => break,
        }
    }
    if activity.in_flight.load(Ordering::SeqCst) == 0 {
        // Idle or mid-head: nothing is owed on it.
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
