//! Claiming jobs with a lease, renewing it, and failing jobs whose lease
//! ran out on their last attempt.

use sqlx::AssertSqlSafe;

use crate::db::{Backend, Ctx, Db, DbError, now_ms, random_hex};

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
