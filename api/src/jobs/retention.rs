//! Retention: finished jobs (done, failed, cancelled), their results and
//! their inputs are deleted after a while, so the database stays bounded.
//!
//! - A job finished more than `retention` ago (the key's own
//!   `retention_ms` if it has one) is deleted with its result. Each key
//!   is one indexed range (`jobs_expiry`: `key_id = ? AND finished_ms <
//!   ?`), so a pass costs one probe per key plus the rows it deletes, never
//!   a scan of the history.
//! - A job finished more than `input_retention` ago keeps its row and
//!   result but its input is emptied (`input_kept = 0`; `jobs_inputs`
//!   finds them). Such a job can no longer be retried.
//! - Rows go in batches of at most [`BATCH`], each in its own short write
//!   transaction, with a pause between batches: the submission batcher and
//!   the finisher never wait behind a long delete.
//! - SQLite: deleted rows leave free pages in the file. The database is
//!   kept in `auto_vacuum = INCREMENTAL` mode (see `crate::db`), and after
//!   a pass that deleted anything the free pages are given back to the
//!   file system [`VACUUM_PAGES`] at a time, each step a short write. So
//!   the file shrinks with the history, without a `VACUUM` that would
//!   rewrite the whole file and hold the write lock meanwhile.
//!
//! Every replica runs a pass every `prune_interval`; two replicas pruning
//! at once delete the same ids, which is harmless.

use std::time::Duration;

use metrics::{counter, gauge};
use sqlx::AssertSqlSafe;
use tokio_util::sync::CancellationToken;

use crate::db::{Backend, Ctx, Db, DbError, now_ms};
use crate::metrics as m;

/// Rows deleted (or inputs emptied) per transaction, at most.
pub const BATCH: usize = 500;

/// Free pages given back per step of the incremental vacuum.
pub const VACUUM_PAGES: i64 = 2_000;

/// Pause between two batches of one pass.
const BATCH_PAUSE: Duration = Duration::from_millis(5);

/// What a pass deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Finished jobs older than this are deleted (unless their key says
    /// otherwise).
    pub retention: Duration,
    /// Inputs of finished jobs older than this are emptied; `None`: kept
    /// as long as the job.
    pub input_retention: Option<Duration>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Jobs deleted, with their results.
    pub jobs: u64,
    /// Inputs emptied.
    pub inputs: u64,
    /// SQLite pages given back to the file system.
    pub pages: u64,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// One pass at time `now` (epoch ms): every key's expired jobs, then old
/// inputs, then (SQLite) the free pages.
pub async fn prune(db: &Db, policy: &Policy, now: i64) -> Result<Pruned, DbError> {
    let mut out = Pruned::default();
    let keys: Vec<(String, Option<i64>)> = sqlx::query_as("SELECT id, retention_ms FROM api_keys")
        .fetch_all(&db.pool)
        .await
        .ctx("retention: keys")?;
    let default = ms(policy.retention);
    for (key, own) in keys {
        let cutoff = now.saturating_sub(own.unwrap_or(default));
        out.jobs += batches(|| delete_jobs(db, &key, cutoff)).await?;
    }
    if let Some(inputs) = policy.input_retention {
        let cutoff = now.saturating_sub(ms(inputs));
        out.inputs += batches(|| drop_inputs(db, cutoff)).await?;
    }
    if db.backend == Backend::Sqlite && out.jobs + out.inputs > 0 {
        out.pages = vacuum(db).await?;
    }
    counter!(m::PRUNED, "what" => "jobs").increment(out.jobs);
    counter!(m::PRUNED, "what" => "inputs").increment(out.inputs);
    Ok(out)
}

/// Runs `step` until a batch comes back short; the rows it handled.
async fn batches<F, Fut>(mut step: F) -> Result<u64, DbError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, DbError>>,
{
    let mut total = 0;
    loop {
        let n = step().await?;
        total += n as u64;
        if n < BATCH {
            return Ok(total);
        }
        tokio::time::sleep(BATCH_PAUSE).await;
    }
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Deletes up to [`BATCH`] of `key`'s jobs finished before `cutoff`, and
/// their results and webhook deliveries. The ids are read first (an indexed range), then deleted
/// by id, still checking they are finished before `cutoff`: a job retried
/// in between (no longer finished) stays.
async fn delete_jobs(db: &Db, key: &str, cutoff: i64) -> Result<usize, DbError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE key_id = ? AND finished_ms < ? ORDER BY finished_ms LIMIT ?",
    )
    .bind(key)
    .bind(cutoff)
    .bind(BATCH as i64)
    .fetch_all(&db.pool)
    .await
    .ctx("retention: expired jobs")?;
    if ids.is_empty() {
        return Ok(0);
    }
    let mut tx = db.begin_write().await.ctx("retention: delete")?;
    // Results and webhook deliveries (`webhook_job` index) first, then the
    // jobs. A delivery still pending for a job this old is past any
    // `[webhooks] max_age` worth keeping, and its document is gone with
    // the job.
    let of_expired = |table: &str| {
        format!(
            "DELETE FROM {table} WHERE job_id IN (SELECT id FROM jobs WHERE id IN ({}) AND finished_ms < ?)",
            marks(ids.len())
        )
    };
    let statements = [
        (of_expired("results"), "retention: delete results"),
        (
            of_expired("webhook_deliveries"),
            "retention: delete webhook deliveries",
        ),
        (
            format!(
                "DELETE FROM jobs WHERE id IN ({}) AND finished_ms < ?",
                marks(ids.len())
            ),
            "retention: delete jobs",
        ),
    ];
    for (sql, what) in statements {
        // Only placeholders are added to the texts; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(id.as_str());
        }
        q.bind(cutoff).execute(&mut *tx).await.ctx(what)?;
    }
    tx.commit().await.ctx("retention: delete")?;
    Ok(ids.len())
}

/// Empties the inputs of up to [`BATCH`] jobs finished before `cutoff`.
async fn drop_inputs(db: &Db, cutoff: i64) -> Result<usize, DbError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE input_kept = 1 AND finished_ms < ? ORDER BY finished_ms LIMIT ?",
    )
    .bind(cutoff)
    .bind(BATCH as i64)
    .fetch_all(&db.pool)
    .await
    .ctx("retention: old inputs")?;
    if ids.is_empty() {
        return Ok(0);
    }
    let sql = format!(
        "UPDATE jobs SET input = ?, input_kept = 0 WHERE id IN ({}) AND finished_ms < ?",
        marks(ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(Vec::<u8>::new());
    for id in &ids {
        q = q.bind(id.as_str());
    }
    q.bind(cutoff)
        .execute(&db.writer)
        .await
        .ctx("retention: drop inputs")?;
    Ok(ids.len())
}

/// SQLite: gives the free pages back to the file system, a step at a
/// time. Returns the pages freed.
async fn vacuum(db: &Db) -> Result<u64, DbError> {
    let mut freed = 0u64;
    loop {
        let before: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&db.writer)
            .await
            .ctx("retention: freelist")?;
        if before == 0 {
            if freed > 0 {
                // In WAL mode the file shrinks when the vacuumed pages are
                // checkpointed; a passive checkpoint does it now, without
                // waiting for (or blocking) readers and writers.
                sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&db.writer)
                    .await
                    .ctx("retention: checkpoint")?;
            }
            return Ok(freed);
        }
        sqlx::query(AssertSqlSafe(format!(
            "PRAGMA incremental_vacuum({VACUUM_PAGES})"
        )))
        .execute(&db.writer)
        .await
        .ctx("retention: incremental vacuum")?;
        let after: i64 = sqlx::query_scalar("PRAGMA freelist_count")
            .fetch_one(&db.writer)
            .await
            .ctx("retention: freelist")?;
        if after >= before {
            // Not in incremental mode (nothing to give back this way).
            return Ok(freed);
        }
        freed += (before - after) as u64;
        tokio::time::sleep(BATCH_PAUSE).await;
    }
}

/// The database's size on disk and its free space, for the gauges.
/// SQLite: the file's pages and free pages. MySQL: the data and index
/// bytes of this schema's tables and their free space, as the server
/// estimates them (`information_schema.TABLES`, no table scan).
pub async fn sizes(db: &Db) -> Result<Vec<(String, i64, i64)>, DbError> {
    match db.backend {
        Backend::Sqlite => {
            let page: i64 = sqlx::query_scalar("PRAGMA page_size")
                .fetch_one(&db.pool)
                .await
                .ctx("db size")?;
            let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                .fetch_one(&db.pool)
                .await
                .ctx("db size")?;
            let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
                .fetch_one(&db.pool)
                .await
                .ctx("db size")?;
            Ok(vec![("all".to_owned(), pages * page, free * page)])
        }
        Backend::Mysql => sqlx::query_as(
            "SELECT CAST(TABLE_NAME AS CHAR), CAST(DATA_LENGTH + INDEX_LENGTH AS SIGNED), \
             CAST(DATA_FREE AS SIGNED) FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN ('jobs', 'results', 'request_log')",
        )
        .fetch_all(&db.pool)
        .await
        .ctx("db size"),
    }
}

/// Prunes every `interval` (with jitter, so replicas started together
/// spread out) until `shutdown`, and samples the size gauges.
pub async fn run(db: Db, policy: Policy, interval: Duration, shutdown: CancellationToken) {
    loop {
        match prune(&db, &policy, now_ms()).await {
            Ok(p) if p.jobs + p.inputs > 0 => {
                tracing::info!(
                    jobs = p.jobs,
                    inputs = p.inputs,
                    pages = p.pages,
                    "pruned finished jobs"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention pass failed; next pass retries"),
        }
        match sizes(&db).await {
            Ok(rows) => {
                for (table, bytes, free) in rows {
                    gauge!(m::DB_BYTES, "table" => table.clone()).set(bytes as f64);
                    gauge!(m::DB_FREE_BYTES, "table" => table).set(free as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot sample the database size"),
        }
        let jitter = interval.mul_f64(rand::random::<f64>() * 0.2);
        tokio::select! {
            () = tokio::time::sleep(interval + jitter) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
