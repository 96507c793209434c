//! The data-plane worker threads: where accept loops and connections run.
//!
//! `node.workers = N` gives N threads that each drive a tokio runtime of
//! their own (its own epoll instance, timers and task queue): worker 0 is
//! the runtime that started the balancer (in `tandem lb run`, the main
//! thread's, which also runs health checks, the admin socket and metrics,
//! as HAProxy's first thread does), and workers 1 to N − 1 are threads
//! started here, each with a current-thread runtime.
//!
//! Rules, and why:
//! - **One listening socket per worker and address** (a `SO_REUSEPORT`
//!   group, see `listener`): the kernel spreads new connections over the
//!   workers, no accept is shared, and a connection lives on the thread that
//!   accepted it. Nothing of a connection crosses threads (no wake-up, no
//!   task migration), so new connections per second grow with threads.
//! - **Whatever else a connection touches is shared and lock-free**: the
//!   snapshot (`ArcSwap`), counters and gauges (atomics), health reports.
//! - **Each thread proves it is alive**: threads 1 to N − 1 stamp a beat
//!   every [`BEAT`], and [`Workers::stalled`] names one whose last beat is
//!   older than a limit. systemd's watchdog pinger runs on worker 0, so
//!   `tandem lb run` gates its pings on the others' beats: a wedged data-plane
//!   thread stops the pings and systemd restarts the balancer, as it would
//!   for a wedged main thread.
//! - **Dropping the [`Workers`] stops threads 1 to N − 1**: each leaves its
//!   runtime, which drops (and so closes) the listeners and connections it
//!   still holds. Worker 0's tasks belong to the caller's runtime.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::telemetry::names;

/// Client connections one worker accepted: status reads the value, the
/// counter `tandem_lb_worker_connections_total{worker}` exports it.
#[derive(Debug)]
pub struct Accepted {
    n: AtomicU64,
    metric: metrics::Counter,
}

impl Accepted {
    fn new(worker: usize) -> Accepted {
        Accepted {
            n: AtomicU64::new(0),
            metric: metrics::counter!(names::WORKER_CONNECTIONS, "worker" => worker.to_string()),
        }
    }

    /// One more connection accepted.
    pub fn add(&self) {
        self.n.fetch_add(1, Ordering::Relaxed);
        self.metric.increment(1);
    }

    /// Connections accepted so far.
    pub fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
}

/// How often threads 1 to N − 1 stamp their beat: two wake-ups a second
/// per thread, nothing next to the traffic.
pub const BEAT: Duration = Duration::from_millis(500);

/// The last beat of each worker, as milliseconds since `origin` (worker 0's
/// entry stays 0 and is never read: its stalls stop the pinger itself).
#[derive(Debug)]
struct Beats {
    origin: Instant,
    last_ms: Vec<AtomicU64>,
}

impl Beats {
    fn stamp(&self, worker: usize) {
        let now = self.origin.elapsed().as_millis() as u64;
        self.last_ms[worker].store(now, Ordering::Relaxed);
    }
}

/// The runtimes of the data plane, worker 0 first.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Per worker, in the same order; shared with the accept tasks.
    accepted: Arc<[Accepted]>,
    beats: Arc<Beats>,
    /// Cancelled on drop: threads 1 to N − 1 leave their runtimes.
    stop: CancellationToken,
}

impl Workers {
    /// Worker 0 on the current runtime, and `n - 1` threads with a
    /// current-thread runtime each. Must be called within a tokio runtime.
    pub fn start(n: usize) -> io::Result<Workers> {
        let n = n.max(1);
        let mut workers = Workers {
            handles: vec![Handle::current()],
            accepted: (0..n).map(Accepted::new).collect(),
            beats: Arc::new(Beats {
                origin: Instant::now(),
                last_ms: (0..n).map(|_| AtomicU64::new(0)).collect(),
            }),
            stop: CancellationToken::new(),
        };
        for i in 1..n {
            // On an error, dropping `workers` stops the threads started so far.
            let handle = workers.spawn_thread(i)?;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    fn spawn_thread(&self, i: usize) -> io::Result<Handle> {
        let (tx, rx) = mpsc::sync_channel(1);
        let stop = self.stop.clone();
        let beats = Arc::clone(&self.beats);
        beats.stamp(i);
        std::thread::Builder::new()
            .name(format!("tandem-lb-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let mut tick = tokio::time::interval(BEAT);
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            loop {
                                tokio::select! {
                                    _ = stop.cancelled() => break,
                                    _ = tick.tick() => beats.stamp(i),
                                }
                            }
                        });
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })?;
        // The thread answers at once: a runtime is built in microseconds.
        rx.recv()
            .map_err(|_| io::Error::other("data-plane thread ended before its runtime started"))?
    }

    /// The runtimes, worker 0 first; as many as `node.workers`.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Accept counts, per worker (same order as [`Workers::handles`]).
    pub fn accepted(&self) -> &Arc<[Accepted]> {
        &self.accepted
    }

    /// The first of threads 1 to N − 1 whose last beat is older than
    /// `limit` (its runtime has been blocked that long), with the age of
    /// the beat; `None` when every thread is beating.
    pub fn stalled(&self, limit: Duration) -> Option<(usize, Duration)> {
        let now = self.beats.origin.elapsed().as_millis() as u64;
        (1..self.len()).find_map(|i| {
            let age = Duration::from_millis(
                now.saturating_sub(self.beats.last_ms[i].load(Ordering::Relaxed)),
            );
            (age > limit).then_some((i, age))
        })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never true: there is always worker 0.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn each_worker_runs_on_a_thread_of_its_own_until_dropped() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(workers.len(), 3);
        let here = std::thread::current().id();
        let mut threads = vec![here];
        for h in &workers.handles()[1..] {
            let id = h
                .spawn(async { std::thread::current().id() })
                .await
                .unwrap();
            assert!(!threads.contains(&id), "worker threads are distinct");
            threads.push(id);
        }
        // A task parked on a worker ends when the workers are dropped.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let parked = workers.handles()[1].spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(workers);
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the worker's runtime dropped its tasks")
            .unwrap_err();
        assert!(parked.await.unwrap_err().is_cancelled());
    }

    /// Waits up to 10 s for `f` to hold.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_blocked_worker_thread_is_reported_stalled_until_it_runs_again() {
        let workers = Workers::start(3).unwrap();
        let limit = BEAT * 3;
        assert_eq!(workers.stalled(limit), None, "fresh threads are beating");
        // Worker 2's only thread is blocked (not awaiting) for a while.
        let (release_tx, release_rx) = mpsc::channel::<()>();
        workers.handles()[2].spawn(async move {
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
        });
        until(
            "worker 2 reported stalled",
            || matches!(workers.stalled(limit), Some((2, age)) if age > limit),
        )
        .await;
        release_tx.send(()).unwrap();
        until("every worker beating again", || {
            workers.stalled(limit).is_none()
        })
        .await;
    }
}
