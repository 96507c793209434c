//! Claiming jobs with a lease, and renewing it.

use sqlx::AssertSqlSafe;

use crate::db::{Backend, Ctx, Db, DbError, now_ms, random_hex};

/// A job a dispatcher holds the lease of.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Public id.
    pub id: String,
    /// The key that submitted it.
    pub key_id: String,
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
    /// The parameters to send (`crate::params`).
    pub params: Option<String>,
}

/// Queued jobs whose time has come, and running jobs whose lease expired.
///
/// Taking over an expired lease does not count an attempt: the replica
/// that held it died or stalled, which says nothing about the job, and it
/// may have held the job without ever sending it (a replica claims ahead
/// of its calls). Counting it would let replica crashes fail jobs that
/// never ran. What a worker does with a job is counted where it happens:
/// every answer or error of a call is an attempt.
const CLAIMABLE: &str = "kind = ? AND \
     ((state = 'queued' AND run_at_ms <= ? AND attempts < max_attempts) \
      OR (state = 'running' AND lease_until_ms < ?))";

/// API keys taken per claim, at most: the walk over keys is one indexed
/// step per key, and a claim for `n` jobs has no use for more than `n`.
const MAX_KEYS: u32 = 64;

/// Claims up to `n` runnable jobs of `kind` for `lease_ms`.
///
/// Which jobs, in this order:
/// 1. running jobs whose lease expired (their replica died), oldest
///    expiry first: they have waited longest;
/// 2. queued jobs whose time has come, by `priority` (0 first), and
///    within a priority **round-robin over the API keys** that have such
///    jobs: each key's first job, then each key's second, and so on, each
///    key's own jobs in `run_at_ms`, `seq` order. One key's burst of ten
///    thousand jobs does not delay another key's one job by more than one
///    turn. The keys are found by a walk over the `jobs_ready` index (one
///    step per distinct key, not a scan of the queue); the walk starts
///    after `after_key` and wraps around, so that with more than
///    [`MAX_KEYS`] keys every key gets its turn.
///
/// The candidates are read first, then taken with one statement that
/// checks again that each is still claimable (another replica may have
/// taken it): on SQLite that `UPDATE` is atomic under its single writer;
/// on MySQL/MariaDB the rows are locked first with `FOR UPDATE SKIP
/// LOCKED` in a short transaction, so replicas claiming at once take
/// disjoint rows without waiting on each other.
pub async fn claim(
    db: &Db,
    kind: &str,
    owner: &str,
    n: u32,
    lease_ms: i64,
    after_key: &str,
) -> Result<Vec<Claimed>, DbError> {
    let now = now_ms();
    let lease = Lease {
        token: random_hex(16),
        owner,
        until: now + lease_ms,
        now,
    };
    let ids = candidates(db, kind, n, now, after_key).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let any = match db.backend {
        Backend::Sqlite => take_sqlite(db, kind, &ids, &lease).await?,
        Backend::Mysql => take_mysql(db, kind, &ids, &lease).await?,
    };
    if !any {
        return Ok(Vec::new());
    }
    leased(db, &ids, lease.token).await
}

/// One candidate job: its key and its place in the claim order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    id: String,
    key_id: String,
    priority: i64,
    run_at_ms: i64,
    seq: i64,
}

/// The ids of up to `n` jobs to claim, in claim order.
async fn candidates(
    db: &Db,
    kind: &str,
    n: u32,
    now: i64,
    after_key: &str,
) -> Result<Vec<String>, DbError> {
    let mut ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE kind = ? AND state = 'running' AND lease_until_ms < ? \
         ORDER BY lease_until_ms LIMIT ?",
    )
    .bind(kind)
    .bind(now)
    .bind(i64::from(n))
    .fetch_all(&db.pool)
    .await
    .ctx("claim: expired leases")?;
    let want = n.saturating_sub(ids.len() as u32);
    if want == 0 {
        return Ok(ids);
    }
    let mut keys = queued_keys(db, kind, after_key, true).await?;
    if (keys.len() as u32) < MAX_KEYS && !after_key.is_empty() {
        let mut first = queued_keys(db, kind, "", false).await?;
        first.retain(|k| k.as_str() <= after_key);
        keys.extend(first);
    }
    keys.truncate(MAX_KEYS as usize);
    if keys.is_empty() {
        return Ok(ids);
    }
    // Each key's first `per_key` runnable jobs, in its own claim order.
    let per_key = i64::from(want);
    let part = "SELECT * FROM (SELECT id, key_id, priority, run_at_ms, seq FROM jobs \
         WHERE kind = ? AND state = 'queued' AND key_id = ? AND run_at_ms <= ? \
         AND attempts < max_attempts ORDER BY priority, run_at_ms, seq LIMIT ?) AS k";
    let sql = vec![part; keys.len()].join(" UNION ALL ");
    let mut q = sqlx::query_as::<_, (String, String, i64, i64, i64)>(AssertSqlSafe(sql));
    for key in &keys {
        q = q.bind(kind).bind(key.as_str()).bind(now).bind(per_key);
    }
    let rows = q.fetch_all(&db.pool).await.ctx("claim: queued jobs")?;
    let found = rows
        .into_iter()
        .map(|(id, key_id, priority, run_at_ms, seq)| Candidate {
            id,
            key_id,
            priority,
            run_at_ms,
            seq,
        })
        .collect();
    ids.extend(fair_order(found, &keys, want as usize));
    Ok(ids)
}

/// Up to `MAX_KEYS` distinct keys with queued jobs of `kind`, in key
/// order, after `after` (or from the first when `after` is empty and
/// `strict` is false), by a loose index scan: each step asks the index
/// for the next key.
async fn queued_keys(
    db: &Db,
    kind: &str,
    after: &str,
    strict: bool,
) -> Result<Vec<String>, DbError> {
    let op = if strict { ">" } else { ">=" };
    let sql = format!(
        "WITH RECURSIVE k(key_id, n) AS (\
           SELECT (SELECT MIN(key_id) FROM jobs WHERE kind = ? AND state = 'queued' AND key_id {op} ?), 1 \
           UNION ALL \
           SELECT (SELECT MIN(j.key_id) FROM jobs j WHERE j.kind = ? AND j.state = 'queued' AND j.key_id > k.key_id), n + 1 \
           FROM k WHERE k.key_id IS NOT NULL AND n < ?) \
         SELECT key_id FROM k WHERE key_id IS NOT NULL"
    );
    sqlx::query_scalar(AssertSqlSafe(sql))
        .bind(kind)
        .bind(after)
        .bind(kind)
        .bind(i64::from(MAX_KEYS))
        .fetch_all(&db.pool)
        .await
        .ctx("claim: keys")
}

/// The claim order over `found`: priority first; within a priority, each
/// key's first job (keys in `keys` order), then each key's second, ...;
/// at most `n`.
fn fair_order(mut found: Vec<Candidate>, keys: &[String], n: usize) -> Vec<String> {
    found.sort_by(|a, b| {
        (a.key_id.as_str(), a.priority, a.run_at_ms, a.seq).cmp(&(
            b.key_id.as_str(),
            b.priority,
            b.run_at_ms,
            b.seq,
        ))
    });
    // Rank of each job within its key and priority.
    let mut ranked = Vec::with_capacity(found.len());
    let mut rank = 0usize;
    for (i, c) in found.iter().enumerate() {
        let same = i > 0 && found[i - 1].key_id == c.key_id && found[i - 1].priority == c.priority;
        rank = if same { rank + 1 } else { 0 };
        let turn = keys
            .iter()
            .position(|k| *k == c.key_id)
            .unwrap_or(usize::MAX);
        ranked.push((c.priority, rank, turn, c.id.clone()));
    }
    ranked.sort();
    ranked.into_iter().take(n).map(|(_, _, _, id)| id).collect()
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

/// Taking a job: a new attempt from the queue, the same attempt when taking
/// over an expired lease (see [`CLAIMABLE`]). `attempts` is assigned first:
/// MySQL evaluates `SET` left to right with the new values.
const TAKE: &str = "UPDATE jobs SET attempts = CASE WHEN state = 'queued' THEN attempts + 1 ELSE attempts END, \
     state = 'running', lease_token = ?, lease_owner = ?, lease_until_ms = ?, \
     started_ms = COALESCE(started_ms, ?)";

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// SQLite: one `UPDATE ... WHERE id IN (...) AND <still claimable>`,
/// atomic under its single writer. Whether any job was taken.
async fn take_sqlite(
    db: &Db,
    kind: &str,
    ids: &[String],
    lease: &Lease<'_>,
) -> Result<bool, DbError> {
    let sql = format!(
        "{TAKE} WHERE id IN ({}) AND {CLAIMABLE}",
        placeholders(ids.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(&lease.token)
        .bind(lease.owner)
        .bind(lease.until)
        .bind(lease.now);
    for id in ids {
        q = q.bind(id.as_str());
    }
    let done = q
        .bind(kind)
        .bind(lease.now)
        .bind(lease.now)
        .execute(&db.writer)
        .await
        .ctx("claim")?;
    Ok(done.rows_affected() > 0)
}

/// MySQL/MariaDB: lock the candidates that are still claimable with
/// `FOR UPDATE SKIP LOCKED`, then take them, in one transaction.
async fn take_mysql(
    db: &Db,
    kind: &str,
    ids: &[String],
    lease: &Lease<'_>,
) -> Result<bool, DbError> {
    let mut tx = db.begin_write().await.ctx("claim")?;
    let sql = format!(
        "SELECT id FROM jobs WHERE id IN ({}) AND {CLAIMABLE} FOR UPDATE SKIP LOCKED",
        placeholders(ids.len())
    );
    let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(id.as_str());
    }
    let locked = q
        .bind(kind)
        .bind(lease.now)
        .bind(lease.now)
        .fetch_all(&mut *tx)
        .await
        .ctx("claim")?;
    if locked.is_empty() {
        tx.rollback().await.ctx("claim")?;
        return Ok(false);
    }
    let sql = format!("{TAKE} WHERE id IN ({})", placeholders(locked.len()));
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(&lease.token)
        .bind(lease.owner)
        .bind(lease.until)
        .bind(lease.now);
    for id in &locked {
        q = q.bind(id.as_str());
    }
    q.execute(&mut *tx).await.ctx("claim")?;
    tx.commit().await.ctx("claim")?;
    Ok(true)
}

/// Those of the candidates `ids` that now hold lease `token`, in claim
/// order. Looked up by id (the primary key), not by token, which has no
/// index: by token, every claim would read the whole table.
async fn leased(db: &Db, ids: &[String], token: String) -> Result<Vec<Claimed>, DbError> {
    let sql = format!(
        "SELECT id, key_id, input, input_type, attempts, max_attempts, params FROM jobs \
         WHERE id IN ({}) AND lease_token = ? AND state = 'running'",
        placeholders(ids.len())
    );
    type Row = (String, String, Vec<u8>, String, i64, i64, Option<String>);
    let mut q = sqlx::query_as::<_, Row>(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(id.as_str());
    }
    let mut rows = q.bind(&token).fetch_all(&db.pool).await.ctx("claim")?;
    let order: std::collections::HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    rows.sort_by_key(|r| order.get(r.0.as_str()).copied().unwrap_or(usize::MAX));
    Ok(rows
        .into_iter()
        .map(
            |(id, key_id, input, input_type, attempt, max_attempts, params)| Claimed {
                id,
                key_id,
                input,
                input_type,
                attempt,
                max_attempts,
                token: token.clone(),
                params,
            },
        )
        .collect())
}

/// Extends the lease; `false` means it was lost (expired and re-claimed).
pub async fn heartbeat(db: &Db, id: &str, token: &str, lease_ms: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_until_ms = ? WHERE id = ? AND lease_token = ? AND state = 'running'",
    )
    .bind(now_ms() + lease_ms)
    .bind(id)
    .bind(token)
    .execute(&db.writer)
    .await
    .ctx("heartbeat")?;
    Ok(done.rows_affected() == 1)
}
