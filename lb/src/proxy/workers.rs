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
//! - **Dropping the [`Workers`] stops threads 1 to N − 1**: each leaves its
//!   runtime, which drops (and so closes) the listeners and connections it
//!   still holds. Worker 0's tasks belong to the caller's runtime.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

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

/// The runtimes of the data plane, worker 0 first.
#[derive(Debug)]
pub struct Workers {
    handles: Vec<Handle>,
    /// Per worker, in the same order; shared with the accept tasks.
    accepted: Arc<[Accepted]>,
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
        std::thread::Builder::new()
            .name(format!("tandem-lb-{i}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle().clone()));
                        rt.block_on(stop.cancelled());
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
}
