//! The end of an attempt: its result, its failure, or its lease given back.
//! Each statement is fenced by the attempt's lease token.

use super::Claimed;
use crate::db::{Ctx, Db, DbError, now_ms};

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
