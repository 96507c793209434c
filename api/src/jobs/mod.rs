//! Durable jobs: the rows, and every statement that moves a job between
//! states.
//!
//! ```text
//! queued --claim--> running --complete(token)--> done
//!   ^                  |  \--fail(token), attempts left--> queued (run_at = backoff)
//!   |                  |   \-fail(token), none left-----> failed (last error)
//!   +--lease expired---+  (claimable again by any replica)
//!
//! queued or running --cancel--> cancelled
//! failed or cancelled --retry--> queued (attempts from 0, same id)
//! ```
//!
//! Cancelling a running job clears its lease token, so the attempt's
//! heartbeat, result and failure are all refused by the fence below; the
//! dispatcher holding it abandons the call at its next heartbeat, or at
//! once when the cancel reached the replica running it.
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

use crate::db::{Ctx, Db, DbError};
use crate::webhook::{self, WebhookView};

mod create;
mod finish;
mod lease;
mod lifecycle;
pub mod retention;

pub use create::{Created, NewJob, create, create_batch};
pub use finish::{Finish, Finisher};
pub use lease::{Claimed, claim, heartbeat};
pub use lifecycle::{Cancel, Redrive, cancel, redrive, states};

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
    /// Cancelled by its key before it finished.
    Cancelled,
}

impl State {
    /// Every state, for metrics.
    pub const ALL: [State; 5] = [
        State::Queued,
        State::Running,
        State::Done,
        State::Failed,
        State::Cancelled,
    ];

    /// The states a job never leaves by itself (done, failed, cancelled).
    pub fn is_final(self) -> bool {
        matches!(self, State::Done | State::Failed | State::Cancelled)
    }

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
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
    /// Claim order within the kind: 0 first, 9 last.
    pub priority: i64,
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
    /// The submission's parameters, forwarded to the worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// Whether the input is still stored (`input_retention` empties the
    /// inputs of finished jobs; such a job cannot be retried).
    pub input_available: bool,
    /// Present when the job has a callback URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
    #[serde(skip)]
    seq: i64,
}

impl JobView {
    /// The view of a job just inserted as `queued`, built from what was
    /// inserted rather than read back. Its `seq` is unknown and unused: the
    /// view is answered, never paged from.
    pub(crate) fn queued(
        id: String,
        kind: String,
        priority: i64,
        max_attempts: i64,
        created_at_ms: i64,
        params: Option<serde_json::Value>,
    ) -> JobView {
        JobView {
            id,
            kind,
            status: State::Queued,
            priority,
            attempts: 0,
            max_attempts,
            created_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            last_error: None,
            result: None,
            params,
            input_available: true,
            webhook: None,
            seq: 0,
        }
    }
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

const VIEW_COLS: &str = "j.seq, j.id, j.kind, j.state, j.priority, j.attempts, j.max_attempts, j.created_ms, j.started_ms, \
     j.finished_ms, j.last_error, j.params, j.input_kept, r.content_type, LENGTH(r.body) AS result_len, \
     j.callback_url, w.id AS wh_id, w.url AS wh_url, w.state AS wh_state, w.attempts AS wh_attempts, \
     w.last_status AS wh_status, w.last_error AS wh_error, w.next_at_ms AS wh_next, \
     w.delivered_ms AS wh_delivered";

/// What [`VIEW_COLS`] reads from: the job `j`, its result `r`, and its
/// latest webhook delivery `w` (an index lookup on `webhook_job`).
const VIEW_FROM: &str = "jobs j LEFT JOIN results r ON r.job_id = j.id \
     LEFT JOIN webhook_deliveries w ON w.id = \
     (SELECT MAX(w2.id) FROM webhook_deliveries w2 WHERE w2.job_id = j.id)";

fn view(row: &sqlx::any::AnyRow) -> Result<JobView, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let ctype: Option<String> = row.try_get("content_type")?;
    let len: Option<i64> = row.try_get("result_len")?;
    let params: Option<String> = row.try_get("params")?;
    // Stored by us from a parsed object: it parses back.
    let params = params.and_then(|p| serde_json::from_str(&p).ok());
    let input_kept: i64 = row.try_get("input_kept")?;
    Ok(JobView {
        result: ctype.map(|content_type| ResultMeta {
            content_type,
            bytes: len.unwrap_or(0),
            url: format!("/v1/jobs/{id}/result"),
        }),
        status: State::parse(&state)
            .ok_or_else(|| sqlx::Error::Protocol(format!("bad state {state:?}")))?,
        kind: row.try_get("kind")?,
        priority: row.try_get("priority")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        created_at_ms: row.try_get("created_ms")?,
        started_at_ms: row.try_get("started_ms")?,
        finished_at_ms: row.try_get("finished_ms")?,
        last_error: row.try_get("last_error")?,
        params,
        input_available: input_kept != 0,
        webhook: webhook::view(row)?,
        seq: row.try_get("seq")?,
        id,
    })
}

pub(crate) async fn get_by(
    db: &Db,
    key_id: &str,
    column: &'static str,
    value: &str,
) -> Result<Option<(JobView, Vec<u8>)>, DbError> {
    let sql = format!(
        "SELECT {VIEW_COLS}, j.body_hash FROM {VIEW_FROM} WHERE j.key_id = ? AND j.{column} = ?"
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

/// The job `id` if `key_id` created it.
pub async fn get(db: &Db, key_id: &str, id: &str) -> Result<Option<JobView>, DbError> {
    Ok(get_by(db, key_id, "id", id).await?.map(|(v, _)| v))
}

/// The views of the jobs `ids` that exist, whoever owns them (for webhook
/// documents), in no particular order.
pub(crate) async fn views(db: &Db, ids: &[&str]) -> Result<Vec<JobView>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!("SELECT {VIEW_COLS} FROM {VIEW_FROM} WHERE j.id IN ({marks})");
    // Only placeholders were added to the text; every value is bound.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await.ctx("read jobs")?;
    rows.iter()
        .map(view)
        .collect::<Result<Vec<_>, _>>()
        .ctx("read jobs")
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
    let mut sql = format!("SELECT {VIEW_COLS} FROM {VIEW_FROM} WHERE j.key_id = ?");
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

/// Queued and running jobs of each of `kinds`, for the metrics: one
/// indexed count per kind and state (`jobs_ready` starts with kind,
/// state), so a scrape costs what is in flight, not the whole history.
/// Finished jobs are counted as they finish (`tandem_api_jobs_finished_total`).
pub async fn counts(db: &Db, kinds: &[&str]) -> Result<Vec<(String, State, i64)>, DbError> {
    if kinds.is_empty() {
        return Ok(Vec::new());
    }
    // A kind and state with no jobs gives no row.
    let part =
        "SELECT kind, state, COUNT(*) FROM jobs WHERE kind = ? AND state = ? GROUP BY kind, state";
    let sql = vec![part; kinds.len() * 2].join(" UNION ALL ");
    // Only fixed text is repeated; every value is bound.
    let mut q = sqlx::query_as::<_, (String, String, i64)>(AssertSqlSafe(sql));
    for kind in kinds {
        q = q.bind(*kind).bind("queued").bind(*kind).bind("running");
    }
    let rows = q.fetch_all(&db.pool).await.ctx("count jobs")?;
    let n = |k: &str, s: State| {
        rows.iter()
            .find(|r| r.0 == k && r.1 == s.as_str())
            .map_or(0, |r| r.2)
    };
    Ok(kinds
        .iter()
        .flat_map(|k| [State::Queued, State::Running].map(|s| (k.to_string(), s, n(k, s))))
        .collect())
}
