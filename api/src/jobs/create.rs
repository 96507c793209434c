//! Storing submitted jobs, with their idempotency keys: many in one
//! transaction ([`create_batch`], what the submission batcher calls), or
//! one ([`create`], its fallback).
//!
//! A batch, in one write transaction:
//! 1. read the rows that already hold the batch's idempotency keys;
//! 2. decide each submission in arrival order: an existing row or an
//!    earlier submission of the same batch with the same key and body is a
//!    replay of that job, with another body a conflict; anything else is a
//!    new row;
//! 3. insert the new rows with multi-row `INSERT`s and commit.
//!
//! Views are built from what was inserted, not read back. The `INSERT`s
//! are cut into chunks of power-of-two sizes (37 rows: 32 + 4 + 1), so a
//! connection's statement cache holds at most nine insert statements and
//! reuses them instead of preparing a new text for every batch size.
//!
//! On SQLite the transaction is `BEGIN IMMEDIATE`, so nobody can insert an
//! idempotency key between steps 1 and 3. On MySQL another replica can: its
//! row makes our `INSERT` fail with a unique violation, and the whole batch
//! is redone one submission at a time with [`create`], which turns that
//! violation into a replay or a conflict. Two such batches can also
//! deadlock on the keys' record locks; the server rolls one back (1213),
//! and that one is run again after a jittered backoff
//! ([`crate::db::is_conflict`]), up to [`RETRIES`] times, before its
//! submissions are answered 503. Inserting rows in key order makes the
//! deadlock rare in the first place.

use std::collections::HashMap;

use metrics::counter;
use sqlx::{AssertSqlSafe, Row};

use super::{JobView, VIEW_COLS, VIEW_FROM, get_by, view};
use crate::db::{Ctx, Db, DbError, RETRIES, conflict_backoff, is_conflict, now_ms, random_hex};
use crate::metrics as m;

/// A job to store.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Creating key.
    pub key_id: String,
    /// Kind (known to the config).
    pub kind: String,
    /// Raw input bytes.
    pub input: Vec<u8>,
    /// Their content type.
    pub input_type: String,
    /// Client's `Idempotency-Key`.
    pub idem_key: Option<String>,
    /// SHA-256 of the request body, to tell a replay from a reuse.
    pub body_hash: Vec<u8>,
    /// From the kind's config.
    pub max_attempts: u32,
    /// Claim order within the kind, 0 (first) to 9.
    pub priority: i64,
    /// The parameters as sent to the worker (`crate::params::encode`).
    pub params: Option<String>,
    /// Where to POST the job when it ends (checked by
    /// [`crate::webhook::Target`]): the request's, else the key's default.
    pub callback_url: Option<String>,
}

/// What `create` did.
#[derive(Debug, Clone)]
pub enum Created {
    /// A new job.
    New(JobView),
    /// The same idempotency key and body: the job made the first time.
    Replayed(JobView),
    /// The same idempotency key with a different body.
    Conflict,
}

/// Most rows in one `INSERT` (a power of two): 13 placeholders a row stays
/// far below SQLite's 32,766 and MySQL's 65,535.
pub const MAX_CHUNK: usize = 256;

/// Stores a job, or finds the one its idempotency key already made.
pub async fn create(db: &Db, job: NewJob) -> Result<Created, DbError> {
    let mut attempt = 0;
    loop {
        match create_once(db, &job).await {
            Err(e) if attempt < RETRIES && is_conflict(&e.source) => {
                counter!(m::DB_CONFLICTS, "what" => "create job").increment(1);
                tokio::time::sleep(conflict_backoff(attempt)).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

async fn create_once(db: &Db, job: &NewJob) -> Result<Created, DbError> {
    if let Some(idem) = &job.idem_key
        && let Some((existing, hash)) = get_by(db, &job.key_id, "idem_key", idem).await?
    {
        return Ok(replay_or_conflict(existing, &hash, job));
    }
    let (id, now) = (new_id(), now_ms());
    let inserted = insert_sql(1)
        .bind_row(&id, now, job)
        .into_query()
        .execute(&db.writer)
        .await;
    match inserted {
        Ok(_) => Ok(Created::New(new_view(id, now, job))),
        // Two requests with the same idempotency key raced; the other won.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() && job.idem_key.is_some() => {
            let idem = job.idem_key.as_deref().unwrap_or_default();
            Ok(match get_by(db, &job.key_id, "idem_key", idem).await? {
                Some((existing, hash)) => replay_or_conflict(existing, &hash, job),
                None => Created::Conflict,
            })
        }
        Err(e) => Err(DbError {
            what: "create job",
            source: e,
        }),
    }
}

/// Stores `jobs` in one transaction (see the module doc); one outcome per
/// job, in order. An error means nothing of the batch was stored, except
/// in the one-by-one fallback, where each job has its own outcome.
pub async fn create_batch(db: &Db, jobs: &[NewJob]) -> Vec<Result<Created, DbError>> {
    let mut attempt = 0;
    let tried = loop {
        match try_batch(db, jobs).await {
            Err(Batch::Failed(e)) if attempt < RETRIES && is_conflict(&e.source) => {
                counter!(m::DB_CONFLICTS, "what" => "create jobs").increment(1);
                tokio::time::sleep(conflict_backoff(attempt)).await;
                attempt += 1;
            }
            tried => break tried,
        }
    };
    match tried {
        Ok(out) => out.into_iter().map(Ok).collect(),
        Err(Batch::Raced) => {
            tracing::debug!(
                jobs = jobs.len(),
                "idempotency race; batch redone one by one"
            );
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(create(db, job.clone()).await);
            }
            out
        }
        Err(Batch::Failed(e)) => {
            let mut out: Vec<_> = (1..jobs.len()).map(|_| Err(e.copy())).collect();
            out.push(Err(e));
            out
        }
    }
}

enum Batch {
    /// Another writer inserted one of our idempotency keys.
    Raced,
    Failed(DbError),
}

impl From<DbError> for Batch {
    fn from(e: DbError) -> Batch {
        Batch::Failed(e)
    }
}

async fn try_batch(db: &Db, jobs: &[NewJob]) -> Result<Vec<Created>, Batch> {
    let mut tx = db.begin_write().await.ctx("create jobs")?;
    let existing = existing(&mut tx, jobs).await?;
    let now = now_ms();
    // (key_id, idem_key) → the index in `out` of the batch's new job.
    let mut made: HashMap<(&str, &str), usize> = HashMap::new();
    let mut rows: Vec<(String, &NewJob)> = Vec::new();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let key = job.idem_key.as_deref().map(|i| (job.key_id.as_str(), i));
        let decided = match key {
            Some(k) => match (
                existing.get(&(k.0.to_owned(), k.1.to_owned())),
                made.get(&k),
            ) {
                (Some((view, hash)), _) => Some(replay_or_conflict(view.clone(), hash, job)),
                (None, Some(&first)) => Some(match &out[first] {
                    Created::New(view) if jobs[first].body_hash == job.body_hash => {
                        Created::Replayed(view.clone())
                    }
                    _ => Created::Conflict,
                }),
                (None, None) => None,
            },
            None => None,
        };
        out.push(decided.unwrap_or_else(|| {
            let id = new_id();
            if let Some(k) = key {
                made.insert(k, out.len());
            }
            rows.push((id.clone(), job));
            Created::New(new_view(id, now, job))
        }));
    }
    // Inserted in key order, so two batches that share keys lock them in
    // the same order and one waits for the other instead of deadlocking.
    rows.sort_by(|a, b| (&a.1.key_id, &a.1.idem_key).cmp(&(&b.1.key_id, &b.1.idem_key)));
    let mut rest = &rows[..];
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        let mut q = insert_sql(chunk.len());
        for (id, job) in chunk {
            q = q.bind_row(id, now, job);
        }
        match q.into_query().execute(&mut *tx).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Err(Batch::Raced),
            Err(e) => {
                return Err(Batch::Failed(DbError {
                    what: "create jobs",
                    source: e,
                }));
            }
        }
        rest = tail;
    }
    tx.commit().await.ctx("create jobs")?;
    Ok(out)
}

/// The largest power of two ≤ `n` and ≤ [`MAX_CHUNK`].
pub(crate) fn chunk_len(n: usize) -> usize {
    let n = n.clamp(1, MAX_CHUNK);
    1 << (usize::BITS - 1 - n.leading_zeros())
}

/// The rows already holding the idempotency keys of `jobs`, with their
/// body hashes, read inside the batch's transaction.
async fn existing(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    jobs: &[NewJob],
) -> Result<HashMap<(String, String), (JobView, Vec<u8>)>, DbError> {
    let mut keys: Vec<(&str, &str)> = jobs
        .iter()
        .filter_map(|j| j.idem_key.as_deref().map(|i| (j.key_id.as_str(), i)))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut found = HashMap::new();
    let mut rest = &keys[..];
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        let cond = vec!["(j.key_id = ? AND j.idem_key = ?)"; chunk.len()].join(" OR ");
        let sql = format!(
            "SELECT {VIEW_COLS}, j.body_hash, j.key_id, j.idem_key FROM {VIEW_FROM} WHERE {cond}"
        );
        // Only placeholders were added to the text; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (key_id, idem) in chunk {
            q = q.bind(*key_id).bind(*idem);
        }
        for row in q.fetch_all(&mut **tx).await.ctx("create jobs")? {
            let key = (row.try_get("key_id"), row.try_get("idem_key"));
            let hash = row.try_get("body_hash");
            if let ((Ok(k), Ok(i)), Ok(h)) = (key, hash) {
                found.insert((k, i), (view(&row).ctx("create jobs")?, h));
            }
        }
        rest = tail;
    }
    Ok(found)
}

fn replay_or_conflict(existing: JobView, hash: &[u8], job: &NewJob) -> Created {
    if hash == job.body_hash.as_slice() {
        Created::Replayed(existing)
    } else {
        Created::Conflict
    }
}

fn new_id() -> String {
    format!("j_{}", random_hex(12))
}

fn new_view(id: String, now: i64, job: &NewJob) -> JobView {
    let mut view = JobView::queued(
        id,
        job.kind.clone(),
        job.priority,
        i64::from(job.max_attempts),
        now,
        // Encoded by us from an object: it parses back.
        job.params
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok()),
    );
    view.webhook = job
        .callback_url
        .as_deref()
        .map(crate::webhook::WebhookView::waiting);
    view
}

/// An `INSERT` of `rows` rows, being bound.
struct Insert<'q>(sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>);

fn insert_sql(rows: usize) -> Insert<'static> {
    let mut sql = String::from(
        "INSERT INTO jobs (id, key_id, kind, state, input, input_type, idem_key, body_hash, \
         attempts, max_attempts, run_at_ms, created_ms, priority, params, callback_url) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, 'queued', ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)");
    }
    // Only placeholders were added to the text; every value is bound.
    Insert(sqlx::query(AssertSqlSafe(sql)))
}

impl<'q> Insert<'q> {
    fn bind_row(self, id: &str, now: i64, job: &NewJob) -> Insert<'q> {
        Insert(
            self.0
                .bind(id.to_owned())
                .bind(job.key_id.clone())
                .bind(job.kind.clone())
                .bind(job.input.clone())
                .bind(job.input_type.clone())
                .bind(job.idem_key.clone())
                .bind(job.body_hash.clone())
                .bind(i64::from(job.max_attempts))
                .bind(now)
                .bind(now)
                .bind(job.priority)
                .bind(job.params.clone())
                .bind(job.callback_url.clone()),
        )
    }

    fn into_query(self) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_up_to_the_cap() {
        let cut = |mut n: usize| {
            let mut out = Vec::new();
            while n > 0 {
                let c = chunk_len(n);
                out.push(c);
                n -= c;
            }
            out
        };
        assert_eq!(cut(1), [1]);
        assert_eq!(cut(37), [32, 4, 1]);
        assert_eq!(cut(256), [256]);
        assert_eq!(cut(600), [256, 256, 64, 16, 8]);
    }
}
