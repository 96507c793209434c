//! A fake worker pool with slots, as a kind's pool looks through the
//! balancer: `slots` runs at once (changeable while it runs, as when a
//! worker joins), a 503 at once when they are taken, `X-Tandem-Slots` on
//! every answer. Each run holds its slot for `hold` (or until the gate
//! opens), then answers the input uppercased. It counts what the tests
//! look at: the most runs at once, and the order jobs finished in.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the pool shares with its handlers.
#[derive(Default)]
pub struct PoolState {
    /// Runs allowed at once.
    pub slots: AtomicU32,
    /// Runs now.
    pub running: AtomicU32,
    /// The most runs seen at once.
    pub peak: AtomicU32,
    /// 503s answered.
    pub refused: AtomicUsize,
    /// Job ids in the order their runs finished.
    pub finished: Mutex<Vec<String>>,
    /// How long a run holds its slot, ms.
    pub hold_ms: AtomicU32,
}

/// The pool; stops when dropped.
pub struct FakePool {
    /// Base URL.
    pub url: String,
    /// Counters and knobs.
    pub state: Arc<PoolState>,
    /// Runs wait until this is true.
    pub gate: watch::Sender<bool>,
    stop: CancellationToken,
}

impl Drop for FakePool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakePool {
    /// Starts one on 127.0.0.1:0 with `slots` slots, runs of `hold`, gate open.
    pub async fn spawn(slots: u32, hold: Duration) -> FakePool {
        use axum::routing::post;
        let state = Arc::new(PoolState::default());
        state.slots.store(slots, Ordering::SeqCst);
        state
            .hold_ms
            .store(hold.as_millis() as u32, Ordering::SeqCst);
        let (gate, gate_rx) = watch::channel(true);
        let s2 = Arc::clone(&state);
        let app = axum::Router::new().route(
            "/v1/run",
            post(move |headers: HeaderMap, body: Bytes| {
                let s = Arc::clone(&s2);
                let mut gate = gate_rx.clone();
                async move { run(&s, &mut gate, &headers, &body).await }
            }),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let stop = CancellationToken::new();
        let s3 = stop.clone();
        tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(s3.cancelled_owned())
                .await
        });
        FakePool {
            url,
            state,
            gate,
            stop,
        }
    }

    /// The most runs seen at once.
    pub fn peak(&self) -> u32 {
        self.state.peak.load(Ordering::SeqCst)
    }

    /// Job ids in the order they finished.
    pub fn finished(&self) -> Vec<String> {
        self.state.finished.lock().unwrap().clone()
    }
}

async fn run(
    s: &PoolState,
    gate: &mut watch::Receiver<bool>,
    headers: &HeaderMap,
    body: &Bytes,
) -> (StatusCode, [(&'static str, String); 3], String) {
    let slots = s.slots.load(Ordering::SeqCst);
    let advert = |ct: &str| {
        [
            ("content-type", ct.to_owned()),
            ("x-tandem-slots", slots.to_string()),
            ("x-tandem-instance", "fake-pool".to_owned()),
        ]
    };
    // Take a slot, or 503 at once, as a worker does.
    let took = s
        .running
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
            (r < slots).then_some(r + 1)
        });
    let Ok(before) = took else {
        s.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            advert("text/plain"),
            "busy".into(),
        );
    };
    s.peak.fetch_max(before + 1, Ordering::SeqCst);
    let _ = gate.wait_for(|open| *open).await;
    let hold = s.hold_ms.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(u64::from(hold))).await;
    let job = headers
        .get("x-tandem-job")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    s.finished.lock().unwrap().push(job);
    s.running.fetch_sub(1, Ordering::SeqCst);
    let text = String::from_utf8_lossy(body).to_uppercase();
    (StatusCode::OK, advert("text/x-upper"), text)
}
