//! `GET /v1/jobs/{id}?wait=30s`: requests held until their job reaches a
//! final state (done, failed, cancelled), whichever replica holds the
//! request and whichever ran the job.
//!
//! A held request registers its job id here, then reads the job, then
//! sleeps until it is woken or its time is up, and reads again. Registering
//! *before* reading is what makes it safe: a wake between the read and the
//! sleep is not lost, because the `Notified` future exists from before the
//! read (tokio's `notify_waiters` reaches every future already created,
//! polled or not).
//!
//! Who wakes it:
//! - this replica's own completions and cancels, in process, right after
//!   their commit (the finisher and the cancel route call
//!   [`Waiters::finished`]);
//! - for jobs another replica finished, one checker task per replica: every
//!   `wait_check_interval`, while anyone waits, it reads the states of all
//!   the ids waited on in batched `SELECT ... WHERE id IN (...)` by primary
//!   key ([`CHECK_BATCH`] ids each) and wakes those that are final. So two
//!   thousand waiters cost four small queries per interval, not two
//!   thousand, and a job finished elsewhere is seen within one interval.
//!
//! Many requests waiting on one job share one entry. What a waiter costs is
//! its connection and its handler's future, plus an entry here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::gauge;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::jobs;
use crate::metrics as m;

/// Ids per state check, at most.
pub const CHECK_BATCH: usize = 500;

/// The job ids waited on in this replica. Cheap to clone.
#[derive(Clone, Default)]
pub struct Waiters(Arc<Mutex<HashMap<String, Entry>>>);

struct Entry {
    notify: Arc<Notify>,
    /// Requests waiting on this id.
    count: usize,
}

/// One request's registration; dropping it deregisters.
pub struct Watch {
    waiters: Waiters,
    id: String,
    notify: Arc<Notify>,
}

impl Watch {
    /// A future that completes at the next wake for this job. Create it
    /// before reading the job's state.
    pub fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        if let Some(e) = map.get_mut(&self.id) {
            e.count -= 1;
            if e.count == 0 {
                map.remove(&self.id);
            }
        }
        gauge!(m::WAITERS).decrement(1.0);
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock leaves the map consistent
        // (every change is one insert, update or remove).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a request waiting on job `id`.
    pub fn watch(&self, id: &str) -> Watch {
        let notify = {
            let mut map = self.lock();
            let e = map.entry(id.to_owned()).or_insert_with(|| Entry {
                notify: Arc::new(Notify::new()),
                count: 0,
            });
            e.count += 1;
            Arc::clone(&e.notify)
        };
        gauge!(m::WAITERS).increment(1.0);
        Watch {
            waiters: self.clone(),
            id: id.to_owned(),
            notify,
        }
    }

    /// Jobs `ids` reached a final state (or may have): wakes their waiters,
    /// who read the job again.
    pub fn finished<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let map = self.lock();
        if map.is_empty() {
            return;
        }
        for id in ids {
            if let Some(e) = map.get(id) {
                e.notify.notify_waiters();
            }
        }
    }

    /// The ids waited on now.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// Requests waiting now.
    pub fn len(&self) -> usize {
        self.lock().values().map(|e| e.count).sum()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The checker: every `interval` while anyone waits, wakes the waiters of
/// jobs that are final in the database (finished by any replica).
pub async fn check(db: Db, waiters: Waiters, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if waiters.is_empty() {
            continue;
        }
        let ids = waiters.ids();
        for chunk in ids.chunks(CHECK_BATCH) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            match jobs::states(&db, &refs).await {
                Ok(states) => waiters.finished(
                    states
                        .iter()
                        .filter(|(_, s)| s.is_final())
                        .map(|(id, _)| id.as_str()),
                ),
                Err(e) => tracing::warn!(error = %e, "cannot check the jobs waited on"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wake_after_registering_is_not_lost_and_entries_are_shared() {
        let w = Waiters::default();
        let a = w.watch("j1");
        let b = w.watch("j1");
        assert_eq!((w.ids(), w.len()), (vec!["j1".to_owned()], 2));
        // Created before the wake, polled after: still woken.
        let na = a.notified();
        let nb = b.notified();
        w.finished(["j0", "j1"]);
        tokio::time::timeout(Duration::from_secs(5), async {
            na.await;
            nb.await;
        })
        .await
        .expect("both woken");
        drop(a);
        assert_eq!(w.len(), 1);
        drop(b);
        assert!(w.is_empty());
    }

    #[tokio::test]
    async fn a_wake_for_another_job_does_not_wake() {
        let w = Waiters::default();
        let a = w.watch("j1");
        let n = a.notified();
        w.finished(["j2"]);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), n)
                .await
                .is_err()
        );
    }
}
