//! The end of an attempt: its result, its failure, or its lease given back.
//!
//! Every statement is fenced by the attempt's lease token (`WHERE id = ?
//! AND lease_token = ? AND state = 'running'`): an attempt whose lease was
//! lost cannot write. The result row is inserted in the same transaction
//! as the `done` update and keyed by job id, so there is exactly one per
//! job.
//!
//! Writes are batched by one [`Finisher`] task per replica: it takes every
//! outcome waiting when it wakes (at most [`MAX_BATCH`]) and writes them in
//! one transaction, so a thousand completions cost one commit (one fsync
//! on SQLite with `synchronous = FULL`, one redo-log flush on InnoDB), not
//! a thousand. There is no timer: while a batch commits the next one
//! gathers, so the batch grows with the load and a lone outcome is written
//! at once. An outcome not yet written when the process dies is lost with
//! it, and the job's lease expires and it runs again: the at-least-once
//! side of the fence, never a job lost.
//!
//! A job that ends here (done, or failed for good) gets its webhook
//! delivery row in the same transaction ([`webhook::enqueue`], one
//! statement per batch), and the replica's delivery task is woken after
//! the commit.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::AnyConnection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Claimed;
use crate::db::{Backend, Ctx, Db, DbError, now_ms};
use crate::metrics as m;
use crate::wait::Waiters;
use crate::webhook::{self, Waker};

/// Outcomes written in one transaction, at most.
pub const MAX_BATCH: usize = 512;

/// What to write for an attempt.
#[derive(Debug)]
pub enum Finish {
    /// Done with this result.
    Complete {
        /// The worker's content type.
        content_type: String,
        /// The result body.
        body: Vec<u8>,
    },
    /// Failed: queued again at `retry_at_ms`, or `failed` when `None`.
    Fail {
        /// The error, cut to 2,000 characters.
        error: String,
        /// When to run it again.
        retry_at_ms: Option<i64>,
    },
    /// The lease given back: queued again after `delay_ms`, the attempt
    /// not counted.
    Release {
        /// How long until it may run again.
        delay_ms: i64,
    },
}

/// Sends outcomes to the finisher task. Cheap to clone.
#[derive(Clone)]
pub struct Finisher {
    tx: mpsc::UnboundedSender<(Claimed, Finish)>,
}

impl Finisher {
    /// Starts the task; it ends once every `Finisher` is dropped and what
    /// it holds is written. `hooks` is woken after a commit that queued
    /// webhook deliveries.
    pub fn spawn(db: Db, waiters: Waiters, hooks: Waker) -> (Finisher, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Finisher { tx },
            tokio::spawn(writer(db, rx, waiters, hooks)),
        )
    }

    /// Queues `what` for `job`. Unbounded, but bounded in practice: at
    /// most one outcome per job in flight.
    pub fn finish(&self, job: Claimed, what: Finish) {
        if self.tx.send((job, what)).is_err() {
            tracing::warn!("finisher stopped; the lease will expire");
        }
    }
}

async fn writer(
    db: Db,
    mut rx: mpsc::UnboundedReceiver<(Claimed, Finish)>,
    waiters: Waiters,
    hooks: Waker,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = std::time::Instant::now();
        let mut tries = 0u32;
        loop {
            match write(&db, &batch, &hooks).await {
                Ok(lost) => {
                    m::finish_batch(batch.len(), lost, started.elapsed());
                    if lost > 0 {
                        tracing::warn!(lost, "leases lost before the outcome was stored; dropped");
                    }
                    break;
                }
                Err(e) if tries < 2 => {
                    tries += 1;
                    tracing::warn!(error = %e, tries, jobs = batch.len(), "cannot store outcomes; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << tries)).await;
                }
                Err(e) => {
                    // One bad outcome (a result the database refuses) must
                    // not take the others with it: one transaction each.
                    tracing::warn!(error = %e, jobs = batch.len(), "cannot store outcomes as a batch; one by one");
                    one_by_one(&db, &mut batch, &hooks).await;
                    break;
                }
            }
        }
        // Committed (or, for some, given up on): whoever waits on these
        // jobs reads them again.
        waiters.finished(batch.iter().map(|(job, _)| job.id.as_str()));
        batch.clear();
    }
}

/// Writes each outcome of `batch` alone. A result that cannot be stored
/// fails its job with the reason instead: left `running`, the job would
/// run again after its lease, fail to store again, and never stop.
async fn one_by_one(db: &Db, batch: &mut [(Claimed, Finish)], hooks: &Waker) {
    for item in batch.iter_mut() {
        let single = std::slice::from_ref(&*item);
        let Err(e) = write(db, single, hooks).await else {
            continue;
        };
        let (job, what) = &*item;
        if matches!(what, Finish::Complete { .. }) {
            let error = format!("the worker's result could not be stored: {e}");
            tracing::warn!(job = %job.id, %error, "failing the job");
            let failed = [(
                job.clone(),
                Finish::Fail {
                    error,
                    retry_at_ms: None,
                },
            )];
            if let Err(e) = write(db, &failed, hooks).await {
                tracing::error!(job = %job.id, error = %e, "cannot store the outcome; the lease will expire");
            }
        } else {
            tracing::error!(job = %job.id, error = %e, "cannot store the outcome; the lease will expire");
        }
    }
}

/// Results stored per statement, at most (5 placeholders each, well under
/// SQLite's 32,766 and MySQL's 65,535).
const COMPLETE_CHUNK: usize = 256;

/// Writes `batch` in one transaction; returns how many were fenced off.
/// Results go three statements per chunk of [`COMPLETE_CHUNK`], not two per
/// job: every statement is a round trip (to sqlx's SQLite thread, or to the
/// MySQL server) on the one writer, and at thousands of jobs a second the
/// round trips, not the rows, are what the writer spends its time on.
/// The jobs that ended get their webhook rows in one more statement.
async fn write(db: &Db, batch: &[(Claimed, Finish)], hooks: &Waker) -> Result<usize, DbError> {
    let now = now_ms();
    let mut tx = db.begin_write().await.ctx("store outcomes")?;
    let (done, rest): (Vec<_>, Vec<_>) = batch
        .iter()
        .partition(|(_, what)| matches!(what, Finish::Complete { .. }));
    let mut lost = 0;
    // The jobs that reached a final state in this transaction.
    let mut ended: Vec<&str> = Vec::new();
    for chunk in chunks(&done) {
        lost += complete_many(&mut tx, db.backend, chunk, now, &mut ended)
            .await
            .ctx("store results")?;
    }
    for (job, what) in rest {
        if !one(&mut tx, job, what, now).await.ctx("store outcomes")? {
            lost += 1;
        } else if matches!(
            what,
            Finish::Fail {
                retry_at_ms: None,
                ..
            }
        ) {
            ended.push(&job.id);
        }
    }
    let queued = webhook::enqueue(&mut tx, &ended, now)
        .await
        .ctx("queue webhooks")?;
    tx.commit().await.ctx("store outcomes")?;
    if queued > 0 {
        hooks.wake();
    }
    Ok(lost)
}

/// `done` cut into statements of at most [`COMPLETE_CHUNK`] results and
/// [`CHUNK_BYTES`] of result bodies (a single larger result goes alone):
/// MySQL refuses a statement over its `max_allowed_packet` (16 MiB by
/// default).
fn chunks<'a>(done: &'a [&'a (Claimed, Finish)]) -> Vec<&'a [&'a (Claimed, Finish)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, (_, what)) in done.iter().enumerate() {
        let len = match what {
            Finish::Complete { body, .. } => body.len(),
            _ => 0,
        };
        if i > start && (i - start == COMPLETE_CHUNK || bytes + len > CHUNK_BYTES) {
            out.push(&done[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += len;
    }
    if start < done.len() {
        out.push(&done[start..]);
    }
    out
}

/// Result bytes per statement, at most (unless one result is larger).
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Stores the results of `chunk`, fenced: of the jobs named, those still
/// `running` under the attempt's own lease token are marked done (the
/// rows are locked first on MySQL, `FOR UPDATE`; SQLite's writer holds the
/// database), and only they get a result row, and their ids in `ended`.
/// Returns how many were not.
async fn complete_many<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    chunk: &[&'a (Claimed, Finish)],
    now: i64,
    ended: &mut Vec<&'a str>,
) -> Result<usize, sqlx::Error> {
    let marks = |n: usize| vec!["?"; n].join(", ");
    let lock = if backend == Backend::Mysql {
        " FOR UPDATE"
    } else {
        ""
    };
    let sql = format!(
        "SELECT id, lease_token FROM jobs WHERE id IN ({}) AND state = 'running'{lock}",
        marks(chunk.len())
    );
    let mut q = sqlx::query_as::<_, (String, Option<String>)>(sqlx::AssertSqlSafe(sql));
    for (job, _) in chunk {
        q = q.bind(job.id.as_str());
    }
    let held: HashMap<String, Option<String>> =
        q.fetch_all(&mut *conn).await?.into_iter().collect();
    let ours: Vec<&&'a (Claimed, Finish)> = chunk
        .iter()
        .filter(|(job, _)| {
            held.get(&job.id)
                .is_some_and(|t| t.as_deref() == Some(job.token.as_str()))
        })
        .collect();
    if ours.is_empty() {
        return Ok(chunk.len());
    }
    let sql = format!(
        "UPDATE jobs SET state = 'done', finished_ms = ?, last_error = NULL, lease_token = NULL, \
         lease_owner = NULL, lease_until_ms = NULL WHERE id IN ({})",
        marks(ours.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for (job, _) in &ours {
        q = q.bind(job.id.as_str());
    }
    q.execute(&mut *conn).await?;
    let sql = format!(
        "INSERT INTO results (job_id, content_type, body, attempt, created_ms) VALUES {}",
        vec!["(?, ?, ?, ?, ?)"; ours.len()].join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (job, what) in &ours {
        if let Finish::Complete { content_type, body } = what {
            q = q
                .bind(job.id.as_str())
                .bind(content_type.as_str())
                .bind(body.as_slice())
                .bind(job.attempt)
                .bind(now);
        }
    }
    q.execute(&mut *conn).await?;
    ended.extend(ours.iter().map(|(job, _)| job.id.as_str()));
    Ok(chunk.len() - ours.len())
}

/// One outcome's statements; `false` if the lease was no longer ours.
async fn one(
    conn: &mut AnyConnection,
    c: &Claimed,
    what: &Finish,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let fence = "WHERE id = ? AND lease_token = ? AND state = 'running'";
    let q = match what {
        Finish::Complete { .. } => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'done', finished_ms = ?, last_error = NULL, lease_token = NULL, \
             lease_owner = NULL, lease_until_ms = NULL {fence}"
        )))
        .bind(now),
        Finish::Fail { error, retry_at_ms } => {
            let error: String = error.chars().take(2000).collect();
            match retry_at_ms {
                Some(at) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE jobs SET state = 'queued', run_at_ms = ?, last_error = ?, lease_token = NULL, \
                     lease_owner = NULL, lease_until_ms = NULL {fence}"
                )))
                .bind(*at),
                None => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE jobs SET state = 'failed', finished_ms = ?, last_error = ?, lease_token = NULL, \
                     lease_owner = NULL, lease_until_ms = NULL {fence}"
                )))
                .bind(now),
            }
            .bind(error)
        }
        Finish::Release { delay_ms } => sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'queued', run_at_ms = ?, attempts = attempts - 1, lease_token = NULL, \
             lease_owner = NULL, lease_until_ms = NULL {fence}"
        )))
        .bind(now + delay_ms),
    };
    let done = q.bind(&c.id).bind(&c.token).execute(&mut *conn).await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    if let Finish::Complete { content_type, body } = what {
        sqlx::query(
            "INSERT INTO results (job_id, content_type, body, attempt, created_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(content_type)
        .bind(body.as_slice())
        .bind(c.attempt)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}
