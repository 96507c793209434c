//! The submission batcher: group commit of `POST /v1/jobs`.
//!
//! Each replica runs one batcher task. A handler queues its job with a
//! reply channel and waits; the batcher takes a batch off the queue (the
//! rule is in [`crate::batch`]), stores it with
//! [`jobs::create_batch`](crate::jobs::create_batch) in one transaction,
//! and only after the commit answers each handler. So a 202 always names a
//! committed row: if the process dies before the commit, none of the
//! batch's clients got an answer.
//!
//! One batch is in flight at a time: on SQLite there is one writer
//! connection anyway, and while a commit runs the next batch fills up by
//! itself. The queue is bounded ([`crate::config::DbSettings::submit_queue`]);
//! when it is full the handler answers 503 with `Retry-After` at once
//! rather than queue without bound. After a commit the dispatcher of each
//! kind in the batch is woken once.
//!
//! A batch's inputs are also bounded in bytes ([`BATCH_BYTES`]): one
//! statement stays under MySQL's `max_allowed_packet` (16 MiB by default)
//! unless a single job is larger, and then it goes alone.

use std::collections::BTreeSet;
use std::time::Instant;

use metrics::{gauge, histogram};
use tokio::sync::{mpsc, oneshot};

use crate::batch::{Collector, Limits, Queued};
use crate::config::DbSettings;
use crate::db::Db;
use crate::dispatcher::Wakers;
use crate::jobs::{self, Created, NewJob};
use crate::metrics as m;

/// Input bytes in one batch at most.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Why a submission was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: the database is not keeping up.
    #[error("the submission queue is full")]
    Busy,
    /// The batch's transaction failed (logged once by the batcher).
    #[error("the database failed the batch")]
    Database,
    /// The batcher has stopped (shutting down).
    #[error("the submission batcher has stopped")]
    Stopped,
}

struct Pending {
    job: NewJob,
    queued_at: tokio::time::Instant,
    reply: oneshot::Sender<Result<Created, SubmitError>>,
}

impl Queued for Pending {
    fn queued_at(&self) -> tokio::time::Instant {
        self.queued_at
    }
    fn weight(&self) -> usize {
        self.job.input.len()
    }
}

/// The handlers' side of the batcher. Cheap to clone; the batcher ends when
/// every clone is dropped, after answering what was queued.
#[derive(Clone, Debug)]
pub struct Submitter(mpsc::Sender<Pending>);

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("kind", &self.job.kind)
            .finish()
    }
}

impl Submitter {
    /// Starts the batcher task on `db`.
    pub fn spawn(db: Db, settings: &DbSettings, wakers: Wakers) -> Submitter {
        let (tx, rx) = mpsc::channel(settings.submit_queue);
        let limits = Limits {
            max: settings.submit_batch,
            window: settings.submit_window,
            max_weight: BATCH_BYTES,
        };
        tokio::spawn(run(db, Collector::new(rx, limits), wakers));
        Submitter(tx)
    }

    /// Stores `job` in the next batch; returns after its commit.
    pub async fn submit(&self, job: NewJob) -> Result<Created, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            job,
            queued_at: tokio::time::Instant::now(),
            reply,
        };
        self.0.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
            mpsc::error::TrySendError::Closed(_) => SubmitError::Stopped,
        })?;
        gauge!(m::SUBMIT_QUEUE).increment(1.0);
        // Dropped unanswered only if the batcher task died.
        answer.await.unwrap_or(Err(SubmitError::Stopped))
    }
}

async fn run(db: Db, mut batches: Collector<Pending>, wakers: Wakers) {
    while let Some(batch) = batches.next().await {
        gauge!(m::SUBMIT_QUEUE).set(batches.queued() as f64);
        histogram!(m::SUBMIT_BATCH).record(batch.len() as f64);
        let (jobs, replies): (Vec<NewJob>, Vec<_>) =
            batch.into_iter().map(|p| (p.job, p.reply)).unzip();
        let started = Instant::now();
        let outcomes = jobs::create_batch(&db, &jobs).await;
        histogram!(m::SUBMIT_COMMIT).record(started.elapsed().as_secs_f64());
        let mut kinds = BTreeSet::new();
        let mut failed = 0;
        for ((job, reply), outcome) in jobs.iter().zip(replies).zip(outcomes) {
            let answer = match outcome {
                Ok(created) => {
                    if matches!(created, Created::New(_)) {
                        kinds.insert(job.kind.as_str());
                    }
                    Ok(created)
                }
                Err(e) => {
                    if failed == 0 {
                        tracing::warn!(error = %e, jobs = jobs.len(), "cannot store submissions");
                    }
                    failed += 1;
                    Err(SubmitError::Database)
                }
            };
            // A client that went away has dropped its receiver: its job
            // is stored all the same.
            let _ = reply.send(answer);
        }
        for kind in kinds {
            wakers.wake(kind);
        }
    }
    tracing::debug!("submission batcher stopped");
}
