//! A webhook receiver on 127.0.0.1:0 that records every request and
//! answers as its script says.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This status, empty body.
    Status(u16),
    /// This status after a pause.
    Slow(u16, Duration),
    /// Never answer (until the client goes away).
    Hang,
    /// 302 to this URL.
    Redirect(String),
    /// This status with a body that never ends (bounded at 1 GiB); the
    /// bytes handed to the connection are counted in `streamed`.
    Endless(u16),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

type Script = dyn Fn(usize) -> Reply + Send + Sync;

/// The receiver. Stops when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Every request, in arrival order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Bytes of endless bodies handed to the connection.
    pub streamed: Arc<AtomicU64>,
    /// Requests being answered now, by `Tandem-Delivery`, and the most
    /// ever at once for one delivery id.
    pub in_flight: Arc<Mutex<(HashMap<String, usize>, usize)>>,
    script: Arc<Mutex<Arc<Script>>>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Decrements a delivery's in-flight count when the answer is done or
/// dropped (the client went away).
struct InFlight(Arc<Mutex<(HashMap<String, usize>, usize)>>, String);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut g = self.0.lock().unwrap();
        if let Some(n) = g.0.get_mut(&self.1) {
            *n -= 1;
        }
    }
}

impl Receiver {
    /// Starts one answering `script(n)` to its `n`-th request (0-based).
    pub async fn spawn(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Receiver {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let streamed = Arc::new(AtomicU64::new(0));
        let in_flight: Arc<Mutex<(HashMap<String, usize>, usize)>> = Arc::default();
        let script: Arc<Mutex<Arc<Script>>> = Arc::new(Mutex::new(Arc::new(script)));
        let count = Arc::new(AtomicUsize::new(0));
        let (s2, st2, f2, sc2) = (
            Arc::clone(&seen),
            Arc::clone(&streamed),
            Arc::clone(&in_flight),
            Arc::clone(&script),
        );
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (seen, streamed, in_flight, script, count) = (
                Arc::clone(&s2),
                Arc::clone(&st2),
                Arc::clone(&f2),
                Arc::clone(&sc2),
                Arc::clone(&count),
            );
            async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let id = headers
                    .get("tandem-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let guard = {
                    let mut g = in_flight.lock().unwrap();
                    let now = {
                        let e = g.0.entry(id.clone()).or_insert(0);
                        *e += 1;
                        *e
                    };
                    g.1 = g.1.max(now);
                    InFlight(Arc::clone(&in_flight), id)
                };
                seen.lock().unwrap().push(Seen { headers, body });
                let reply = (script.lock().unwrap())(n);
                answer(reply, streamed, guard).await
            }
        });
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await
        });
        Receiver {
            url,
            seen,
            streamed,
            in_flight,
            script,
            stop,
        }
    }

    /// Answers from now on as `script` says.
    pub fn set(&self, script: impl Fn(usize) -> Reply + Send + Sync + 'static) {
        *self.script.lock().unwrap() = Arc::new(script);
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// A copy of the requests received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The most requests ever answered at once for one delivery id.
    pub fn max_concurrent_per_delivery(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }
}

async fn answer(reply: Reply, streamed: Arc<AtomicU64>, guard: InFlight) -> Response {
    match reply {
        Reply::Status(s) => {
            drop(guard);
            status(s).into_response()
        }
        Reply::Slow(s, d) => {
            tokio::time::sleep(d).await;
            drop(guard);
            status(s).into_response()
        }
        Reply::Hang => {
            let _guard = guard;
            // Bounded: the client's timeout drops this future.
            tokio::time::sleep(Duration::from_secs(120)).await;
            status(200).into_response()
        }
        Reply::Redirect(to) => {
            drop(guard);
            (StatusCode::FOUND, [("location", to)]).into_response()
        }
        Reply::Endless(s) => {
            drop(guard);
            let body = Endless {
                chunk: Bytes::from(vec![b'x'; 64 * 1024]),
                left: 1 << 30,
                streamed,
            };
            (status(s), Body::new(body)).into_response()
        }
    }
}

fn status(s: u16) -> StatusCode {
    StatusCode::from_u16(s).unwrap()
}

/// 64 KiB chunks, up to 1 GiB in all, each counted as it is taken.
struct Endless {
    chunk: Bytes,
    left: u64,
    streamed: Arc<AtomicU64>,
}

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.chunk.len() as u64;
        self.left = self.left.saturating_sub(n);
        self.streamed.fetch_add(n, Ordering::Relaxed);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.clone()))))
    }
}
