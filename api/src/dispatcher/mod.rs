//! The dispatcher: in every replica, one loop per job kind claims runnable
//! jobs, calls the kind's worker pool, and records what happened.
//!
//! - Per-kind queues: each kind has its own loop, its own limit and its own
//!   connections, so a kind of long jobs never delays another kind.
//! - **The limit follows the pool** (`crate::limit`): the number of calls in
//!   flight starts at 4, grows while workers take them and shrinks on
//!   their fast 503 "busy" answers, so adding a worker raises throughput
//!   with no change to the API. `max_concurrency` only caps it.
//! - Claims ask for what the limit has room for plus a little more, so the
//!   next calls are ready when answers come back; a claim runs beside the
//!   calls, never in their way. A job refused with 503 stays in this
//!   replica and goes again after the limiter's pause: no database write,
//!   no attempt counted. A job that waited here longer than a third of its
//!   lease is given back to the queue.
//! - Connections to the pool live at most `connection_lifetime`
//!   (`client`), so a worker that joins gets connections, hence calls,
//!   within a few seconds.
//! - Leases: a claim holds a job for `lease`; while the worker call runs, a
//!   heartbeat renews it every third of the lease. If a renewal finds the
//!   lease gone (this replica stalled past it and another one took the job),
//!   the call is abandoned: the fencing token would refuse its result anyway.
//! - A replica that dies leaves leases that expire; any replica's next claim
//!   takes those jobs again (a new attempt, a new token).
//! - Outcomes are written in batches by the replica's `jobs::Finisher`:
//!   2xx stores the result; other 4xx mean the input is bad and retrying
//!   cannot help: failed now; 5xx, timeouts and connection errors are
//!   retried with exponential backoff and jitter until `max_attempts`,
//!   then the job fails with the last error.
//! - Shutdown: stop claiming, abandon in-flight calls, give back every
//!   lease held (in flight or waiting here) so another replica runs those
//!   jobs at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::jobs::Finisher;
use crate::wait::Waiters;
use crate::webhook;

mod attempt;
mod client;
mod kind;

use kind::KindLoop;

/// Largest worker answer stored as a result.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// Wakes a kind's loop when this replica accepted a job, so a new job does
/// not wait for the next poll. Other replicas find it by polling.
#[derive(Clone, Default)]
pub struct Wakers(Arc<HashMap<String, Arc<Notify>>>);

impl Wakers {
    /// One waker per configured kind.
    pub fn new(config: &Config) -> Wakers {
        Wakers(Arc::new(
            config
                .kinds
                .keys()
                .map(|k| (k.clone(), Arc::new(Notify::new())))
                .collect(),
        ))
    }

    /// A job of `kind` was queued.
    pub fn wake(&self, kind: &str) {
        if let Some(n) = self.0.get(kind) {
            n.notify_one();
        }
    }
}

/// The worker calls in flight in this replica, by job id, so that
/// cancelling a job here abandons its call at once; a call in another
/// replica is abandoned at its next heartbeat, which finds the lease gone.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Cancels(Arc<std::sync::Mutex<HashMap<String, CancellationToken>>>);

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        // Every change is one insert or remove: a poisoned map is whole.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers the call for `id`; its token is cancelled by [`Cancels::cancel`].
    fn start(&self, id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.lock().insert(id.to_owned(), token.clone());
        token
    }

    fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Abandons the call for job `id`, if this replica has one in flight.
    pub fn cancel(&self, id: &str) {
        if let Some(t) = self.lock().get(id) {
            t.cancel();
        }
    }
}

/// The delay before retry number `attempt` (1 = the first retry): the base
/// doubled each time, capped, and "equal jitter" (uniform in the upper half)
/// so replicas that failed together do not retry together.
pub fn backoff(attempt: i64, base: Duration, max: Duration, unit_random: f64) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    full / 2 + full.mul_f64(unit_random.clamp(0.0, 1.0) / 2.0)
}

/// What the HTTP side and the dispatcher tell each other in process.
#[derive(Clone, Default)]
pub struct Signals {
    /// A job of a kind was queued here.
    pub wakers: Wakers,
    /// A job was cancelled here.
    pub cancels: Cancels,
    /// Requests waiting for jobs to finish.
    pub waiters: Waiters,
    /// Webhook deliveries were queued here.
    pub webhooks: webhook::Waker,
}

/// Runs every kind's loop until `shutdown`; returns when every lease held
/// has been given back and every outcome written.
pub async fn run(
    db: Db,
    config: Arc<Config>,
    owner: String,
    signals: Signals,
    shutdown: CancellationToken,
) {
    let (finisher, writer) = Finisher::spawn(
        db.clone(),
        signals.waiters.clone(),
        signals.webhooks.clone(),
    );
    let mut loops = JoinSet::new();
    for (name, kind) in &config.kinds {
        let waker = signals.wakers.0.get(name).cloned().unwrap_or_default();
        let kind_loop = KindLoop::new(&db, &config, name, kind, &owner, finisher.clone())
            .cancelled_by(signals.cancels.clone());
        loops.spawn(kind_loop.run(waker, shutdown.clone()));
    }
    drop(finisher);
    while loops.join_next().await.is_some() {}
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_in_the_upper_half() {
        let (b, max) = (Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(backoff(1, b, max, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, b, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, b, max, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(10, b, max, 1.0), max);
        assert_eq!(backoff(1000, b, max, 0.0), max / 2);
    }
}
