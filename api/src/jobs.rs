//! Durable jobs: the rows, and every statement that moves a job between
//! states.
//!
//! ```text
//! queued --claim--> running --complete(token)--> done
//!   ^                  |  \--fail(token), attempts left--> queued (run_at = backoff)
//!   |                  |   \-fail(token), none left-----> failed (last error)
//!   +--lease expired---+  (claimable again by any replica)
//! ```
//!
//! A claim writes a fresh random lease token. Completing, failing and
//! heartbeating all say `WHERE id = ? AND lease_token = ?`, so an attempt
//! whose lease expired (its replica stalled or died and another replica
//! claimed the job) can no longer change the job: its result is dropped.
//! The result row is inserted in the same transaction as the `done` update
//! and keyed by job id, so there is exactly one per job.
//!
//! Claiming: on MySQL/MariaDB, `SELECT ... FOR UPDATE SKIP LOCKED` in a short
//! transaction, so replicas claiming at once take disjoint rows without
//! waiting on each other. SQLite has one writer at a time, so one
//! `UPDATE ... WHERE id IN (SELECT ... LIMIT n)` is already atomic.

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use crate::db::{Backend, Ctx, Db, DbError, now_ms, random_hex};

/// A job's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for a dispatcher (or for its retry time).
    Queued,
    /// Claimed by a dispatcher that holds the lease.
    Running,
    /// Finished with a result.
    Done,
    /// Gave up after `max_attempts`, with the last error.
    Failed,
}

impl State {
    /// Every state, for metrics.
    pub const ALL: [State; 4] = [State::Queued, State::Running, State::Done, State::Failed];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    /// Parses a stored or queried state.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A job as `GET /v1/jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    /// Public id.
    pub id: String,
    /// Job kind.
    pub kind: String,
    /// Current state.
    pub status: State,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Epoch ms.
    pub created_at_ms: i64,
    /// First claim, epoch ms.
    pub started_at_ms: Option<i64>,
    /// Done or failed, epoch ms.
    pub finished_at_ms: Option<i64>,
    /// The latest attempt's error.
    pub last_error: Option<String>,
    /// Present when done.
    pub result: Option<ResultMeta>,
    #[serde(skip)]
    seq: i64,
}

/// What is known about a result without its body.
#[derive(Debug, Clone, Serialize)]
pub struct ResultMeta {
    /// The worker's content type.
    pub content_type: String,
    /// Body length.
    pub bytes: i64,
    /// Where to fetch it.
    pub url: String,
}

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
}

/// What `create` did.
#[derive(Debug)]
pub enum Created {
    /// A new job.
    New(JobView),
    /// The same idempotency key and body: the job made the first time.
    Replayed(JobView),
    /// The same idempotency key with a different body.
    Conflict,
}

const VIEW_COLS: &str = "j.seq, j.id, j.kind, j.state, j.attempts, j.max_attempts, j.created_ms, j.started_ms, \
     j.finished_ms, j.last_error, r.content_type, LENGTH(r.body) AS result_len";

fn view(row: &sqlx::any::AnyRow) -> Result<JobView, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let ctype: Option<String> = row.try_get("content_type")?;
    let len: Option<i64> = row.try_get("result_len")?;
    Ok(JobView {
        result: ctype.map(|content_type| ResultMeta {
            content_type,
            bytes: len.unwrap_or(0),
            url: format!("/v1/jobs/{id}/result"),
        }),
        status: State::parse(&state)
            .ok_or_else(|| sqlx::Error::Protocol(format!("bad state {state:?}")))?,
        kind: row.try_get("kind")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        created_at_ms: row.try_get("created_ms")?,
        started_at_ms: row.try_get("started_ms")?,
        finished_at_ms: row.try_get("finished_ms")?,
        last_error: row.try_get("last_error")?,
        seq: row.try_get("seq")?,
        id,
    })
}

async fn get_by(
    db: &Db,
    key_id: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<(JobView, Vec<u8>)>, DbError> {
    let sql = format!(
        "SELECT {VIEW_COLS}, j.body_hash FROM jobs j LEFT JOIN results r ON r.job_id = j.id \
         WHERE j.key_id = ? AND j.{column} = ?"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(key_id)
        .bind(value)
        .fetch_optional(&db.pool)
        .await
        .ctx("get job")?;
    row.map(|r| Ok((view(&r)?, r.try_get("body_hash")?)))
        .transpose()
        .ctx("get job")
}

/// Stores a job, or finds the one its idempotency key already made.
pub async fn create(db: &Db, job: NewJob) -> Result<Created, DbError> {
    if let Some(idem) = &job.idem_key
        && let Some((existing, hash)) = get_by(db, &job.key_id, "idem_key", idem).await?
    {
        return Ok(if hash == job.body_hash {
            Created::Replayed(existing)
        } else {
            Created::Conflict
        });
    }
    let id = format!("j_{}", random_hex(12));
    let now = now_ms();
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, key_id, kind, state, input, input_type, idem_key, body_hash, attempts, \
         max_attempts, run_at_ms, created_ms) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, 0, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&job.key_id)
    .bind(&job.kind)
    .bind(job.input)
    .bind(&job.input_type)
    .bind(job.idem_key.clone())
    .bind(job.body_hash.clone())
    .bind(i64::from(job.max_attempts))
    .bind(now)
    .bind(now)
    .execute(&db.pool)
    .await;
    match inserted {
        Ok(_) => {}
        // Two requests with the same idempotency key raced; the other won.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() && job.idem_key.is_some() => {
            let idem = job.idem_key.as_deref().unwrap_or_default();
            return Ok(match get_by(db, &job.key_id, "idem_key", idem).await? {
                Some((existing, hash)) if hash == job.body_hash => Created::Replayed(existing),
                _ => Created::Conflict,
            });
        }
        Err(e) => {
            return Err(DbError {
                what: "create job",
                source: e,
            });
        }
    }
    let (view, _) = get_by(db, &job.key_id, "id", &id)
        .await?
        .ok_or_else(|| DbError {
            what: "create job",
            source: sqlx::Error::RowNotFound,
        })?;
    Ok(Created::New(view))
}

/// The job `id` if `key_id` created it.
pub async fn get(db: &Db, key_id: &str, id: &str) -> Result<Option<JobView>, DbError> {
    Ok(get_by(db, key_id, "id", id).await?.map(|(v, _)| v))
}

/// A page of `key_id`'s jobs, newest first, and the cursor of the next page.
pub async fn list(
    db: &Db,
    key_id: &str,
    status: Option<State>,
    kind: Option<&str>,
    limit: u32,
    before_seq: Option<i64>,
) -> Result<(Vec<JobView>, Option<String>), DbError> {
    let mut sql = format!(
        "SELECT {VIEW_COLS} FROM jobs j LEFT JOIN results r ON r.job_id = j.id WHERE j.key_id = ?"
    );
    if status.is_some() {
        sql.push_str(" AND j.state = ?");
    }
    if kind.is_some() {
        sql.push_str(" AND j.kind = ?");
    }
    if before_seq.is_some() {
        sql.push_str(" AND j.seq < ?");
    }
    sql.push_str(" ORDER BY j.seq DESC LIMIT ?");
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(key_id);
    if let Some(s) = status {
        q = q.bind(s.as_str());
    }
    if let Some(k) = kind {
        q = q.bind(k);
    }
    if let Some(c) = before_seq {
        q = q.bind(c);
    }
    // One more than asked: tells whether a next page exists.
    let rows = q
        .bind(i64::from(limit) + 1)
        .fetch_all(&db.pool)
        .await
        .ctx("list jobs")?;
    let mut jobs = rows
        .iter()
        .map(view)
        .collect::<Result<Vec<_>, _>>()
        .ctx("list jobs")?;
    let next = if jobs.len() > limit as usize {
        jobs.truncate(limit as usize);
        jobs.last().map(|j| j.seq.to_string())
    } else {
        None
    };
    Ok((jobs, next))
}

/// The result body of `key_id`'s job `id`: `None` if no such job, else its
/// state and, when done, `(content_type, body)`.
pub async fn result(
    db: &Db,
    key_id: &str,
    id: &str,
) -> Result<Option<(State, Option<(String, Vec<u8>)>)>, DbError> {
    let row: Option<(String, Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT j.state, r.content_type, r.body FROM jobs j LEFT JOIN results r ON r.job_id = j.id \
         WHERE j.key_id = ? AND j.id = ?",
    )
    .bind(key_id)
    .bind(id)
    .fetch_optional(&db.pool)
    .await
    .ctx("get result")?;
    Ok(row.map(|(state, ct, body)| {
        let state = State::parse(&state).unwrap_or(State::Queued);
        (state, ct.zip(body))
    }))
}

/// A job a dispatcher holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Public id.
    pub id: String,
    /// Raw input.
    pub input: Vec<u8>,
    /// Its content type.
    pub input_type: String,
    /// This attempt's number (1-based).
    pub attempt: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// The fencing token: must match to complete, fail or heartbeat.
    pub token: String,
}

const CLAIMABLE: &str = "kind = ? AND attempts < max_attempts AND \
     ((state = 'queued' AND run_at_ms <= ?) OR (state = 'running' AND lease_until_ms < ?))";

/// Claims up to `n` runnable jobs of `kind` for `lease_ms`: queued ones whose
/// time has come, and running ones whose lease expired (their replica died).
pub async fn claim(
    db: &Db,
    kind: &str,
    owner: &str,
    n: u32,
    lease_ms: i64,
) -> Result<Vec<Claimed>, DbError> {
    let now = now_ms();
    let lease = Lease {
        token: random_hex(16),
        owner,
        until: now + lease_ms,
        now,
    };
    let any = match db.backend {
        Backend::Sqlite => lease_sqlite(db, kind, n, &lease).await?,
        Backend::Mysql => lease_mysql(db, kind, n, &lease).await?,
    };
    if !any {
        return Ok(Vec::new());
    }
    leased(db, lease.token).await
}

/// One claim's lease, written on every job it takes.
struct Lease<'a> {
    /// The fencing token, fresh for this claim.
    token: String,
    owner: &'a str,
    /// Expiry, epoch milliseconds.
    until: i64,
    /// The claim's time, epoch milliseconds: what is runnable, and
    /// `started_ms` of a first attempt.
    now: i64,
}

/// SQLite: one `UPDATE ... WHERE id IN (SELECT ...)`, atomic under its
/// single writer. Whether any job was taken.
async fn lease_sqlite(db: &Db, kind: &str, n: u32, lease: &Lease<'_>) -> Result<bool, DbError> {
    let sql = format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ?, lease_owner = ?, \
         lease_until_ms = ?, started_ms = COALESCE(started_ms, ?) WHERE id IN \
         (SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY run_at_ms, seq LIMIT ?)"
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(&lease.token)
        .bind(lease.owner)
        .bind(lease.until)
        .bind(lease.now)
        .bind(kind)
        .bind(lease.now)
        .bind(lease.now)
        .bind(i64::from(n))
        .execute(&db.pool)
        .await
        .ctx("claim")?;
    Ok(done.rows_affected() > 0)
}

/// MySQL/MariaDB: `SELECT ... FOR UPDATE SKIP LOCKED` then one `UPDATE`
/// per row, in one transaction, so replicas take disjoint rows. Whether
/// any job was taken.
async fn lease_mysql(db: &Db, kind: &str, n: u32, lease: &Lease<'_>) -> Result<bool, DbError> {
    let mut tx = db.pool.begin().await.ctx("claim")?;
    let sql = format!(
        "SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY run_at_ms, seq LIMIT ? FOR UPDATE SKIP LOCKED"
    );
    let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(kind)
        .bind(lease.now)
        .bind(lease.now)
        .bind(i64::from(n))
        .fetch_all(&mut *tx)
        .await
        .ctx("claim")?;
    if ids.is_empty() {
        tx.rollback().await.ctx("claim")?;
        return Ok(false);
    }
    for id in &ids {
        sqlx::query(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_token = ?, lease_owner = ?, \
             lease_until_ms = ?, started_ms = COALESCE(started_ms, ?) WHERE id = ?",
        )
        .bind(&lease.token)
        .bind(lease.owner)
        .bind(lease.until)
        .bind(lease.now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("claim")?;
    }
    tx.commit().await.ctx("claim")?;
    Ok(true)
}

/// The running jobs that hold lease `token`.
async fn leased(db: &Db, token: String) -> Result<Vec<Claimed>, DbError> {
    let rows: Vec<(String, Vec<u8>, String, i64, i64)> = sqlx::query_as(
        "SELECT id, input, input_type, attempts, max_attempts FROM jobs WHERE lease_token = ? AND state = 'running'",
    )
    .bind(&token)
    .fetch_all(&db.pool)
    .await
    .ctx("claim")?;
    Ok(rows
        .into_iter()
        .map(|(id, input, input_type, attempt, max_attempts)| Claimed {
            id,
            input,
            input_type,
            attempt,
            max_attempts,
            token: token.clone(),
        })
        .collect())
}

/// Jobs whose lease expired on their last allowed attempt: fail them.
pub async fn fail_exhausted(db: &Db, kind: &str) -> Result<u64, DbError> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE jobs SET state = 'failed', finished_ms = ?, lease_token = NULL, lease_owner = NULL, \
         lease_until_ms = NULL, last_error = COALESCE(last_error, 'lease expired on the last attempt') \
         WHERE kind = ? AND state = 'running' AND lease_until_ms < ? AND attempts >= max_attempts",
    )
    .bind(now)
    .bind(kind)
    .bind(now)
    .execute(&db.pool)
    .await
    .ctx("fail exhausted")?;
    Ok(done.rows_affected())
}

/// Extends the lease; `false` means it was lost (expired and re-claimed).
pub async fn heartbeat(db: &Db, id: &str, token: &str, lease_ms: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_until_ms = ? WHERE id = ? AND lease_token = ? AND state = 'running'",
    )
    .bind(now_ms() + lease_ms)
    .bind(id)
    .bind(token)
    .execute(&db.pool)
    .await
    .ctx("heartbeat")?;
    Ok(done.rows_affected() == 1)
}

/// Stores the result if the lease is still ours; `false` if it was lost.
pub async fn complete(
    db: &Db,
    c: &Claimed,
    content_type: &str,
    body: Vec<u8>,
) -> Result<bool, DbError> {
    let now = now_ms();
    let mut tx = db.pool.begin().await.ctx("complete")?;
    let done = sqlx::query(
        "UPDATE jobs SET state = 'done', finished_ms = ?, last_error = NULL, lease_token = NULL, \
         lease_owner = NULL, lease_until_ms = NULL WHERE id = ? AND lease_token = ? AND state = 'running'",
    )
    .bind(now)
    .bind(&c.id)
    .bind(&c.token)
    .execute(&mut *tx)
    .await
    .ctx("complete")?;
    if done.rows_affected() != 1 {
        tx.rollback().await.ctx("complete")?;
        return Ok(false);
    }
    sqlx::query("INSERT INTO results (job_id, content_type, body, attempt, created_ms) VALUES (?, ?, ?, ?, ?)")
        .bind(&c.id)
        .bind(content_type)
        .bind(body)
        .bind(c.attempt)
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("complete")?;
    tx.commit().await.ctx("complete")?;
    Ok(true)
}

/// Records a failed attempt: back to `queued` at `retry_at_ms`, or `failed`
/// when `retry_at_ms` is `None`. `false` if the lease was lost.
pub async fn fail(
    db: &Db,
    c: &Claimed,
    error: &str,
    retry_at_ms: Option<i64>,
) -> Result<bool, DbError> {
    let now = now_ms();
    let error: String = error.chars().take(2000).collect();
    let q = match retry_at_ms {
        Some(at) => sqlx::query(
            "UPDATE jobs SET state = 'queued', run_at_ms = ?, last_error = ?, lease_token = NULL, \
             lease_owner = NULL, lease_until_ms = NULL WHERE id = ? AND lease_token = ? AND state = 'running'",
        )
        .bind(at),
        None => sqlx::query(
            "UPDATE jobs SET state = 'failed', finished_ms = ?, last_error = ?, lease_token = NULL, \
             lease_owner = NULL, lease_until_ms = NULL WHERE id = ? AND lease_token = ? AND state = 'running'",
        )
        .bind(now),
    };
    let done = q
        .bind(error)
        .bind(&c.id)
        .bind(&c.token)
        .execute(&db.pool)
        .await
        .ctx("fail")?;
    Ok(done.rows_affected() == 1)
}

/// Gives back a lease (shutdown, or a busy worker): the job is queued again
/// after `delay_ms`, and the interrupted attempt is not counted against it.
pub async fn release(db: &Db, c: &Claimed, delay_ms: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE jobs SET state = 'queued', run_at_ms = ?, attempts = attempts - 1, lease_token = NULL, \
         lease_owner = NULL, lease_until_ms = NULL WHERE id = ? AND lease_token = ? AND state = 'running'",
    )
    .bind(now_ms() + delay_ms)
    .bind(&c.id)
    .bind(&c.token)
    .execute(&db.pool)
    .await
    .ctx("release")?;
    Ok(done.rows_affected() == 1)
}

/// Job counts by kind and state, for the metrics.
pub async fn counts(db: &Db) -> Result<Vec<(String, String, i64)>, DbError> {
    sqlx::query_as("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state")
        .fetch_all(&db.pool)
        .await
        .ctx("count jobs")
}
