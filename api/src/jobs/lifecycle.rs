//! A key's own moves of its jobs: cancelling one, re-driving a failed or
//! cancelled one, and the batched state check behind `?wait=`.
//!
//! Each move is one fenced `UPDATE` (`WHERE key_id = ? AND id = ? AND
//! state IN (...)`), so two moves racing, or a move racing the dispatcher,
//! cannot both win: whichever commits first changes the row, the other
//! matches nothing and reports the state it found.

use sqlx::AssertSqlSafe;

use super::{JobView, State, get};
use crate::db::{Ctx, Db, DbError, now_ms};

/// What [`cancel`] did.
#[derive(Debug)]
pub enum Cancel {
    /// The job was queued or running and is now cancelled. A dispatcher
    /// may still be calling a worker for it: its lease token is gone, so
    /// nothing that call reports is stored.
    Cancelled(JobView),
    /// It was already cancelled: nothing changed (a repeated `DELETE`).
    AlreadyCancelled(JobView),
    /// It had finished (done or failed): nothing changed.
    Finished(JobView),
    /// No such job for this key.
    NotFound,
}

/// Cancels `key_id`'s job `id` if it is queued or running, queueing its
/// webhook delivery (if it has a callback URL) in the same transaction:
/// wake the replica's delivery task after a `Cancelled`.
pub async fn cancel(db: &Db, key_id: &str, id: &str) -> Result<Cancel, DbError> {
    let now = now_ms();
    let mut tx = db.begin_write().await.ctx("cancel job")?;
    let changed = sqlx::query(
        "UPDATE jobs SET state = 'cancelled', finished_ms = ?, lease_token = NULL, \
         lease_owner = NULL, lease_until_ms = NULL \
         WHERE key_id = ? AND id = ? AND state IN ('queued', 'running')",
    )
    .bind(now)
    .bind(key_id)
    .bind(id)
    .execute(&mut *tx)
    .await
    .ctx("cancel job")?
    .rows_affected();
    if changed == 1 {
        // Its webhook, if it has a callback URL, in the same transaction.
        crate::webhook::enqueue(&mut tx, &[id], now)
            .await
            .ctx("cancel job")?;
    }
    tx.commit().await.ctx("cancel job")?;
    let Some(job) = get(db, key_id, id).await? else {
        return Ok(Cancel::NotFound);
    };
    Ok(match (changed, job.status) {
        (1, _) => Cancel::Cancelled(job),
        (_, State::Cancelled) => Cancel::AlreadyCancelled(job),
        _ => Cancel::Finished(job),
    })
}

/// What [`redrive`] did.
#[derive(Debug)]
pub enum Redrive {
    /// Queued again, attempts from 0.
    Queued(JobView),
    /// Not failed or cancelled (queued, running or done): nothing changed.
    NotRetryable(JobView),
    /// Its input was deleted by `input_retention`: it cannot run again.
    InputGone(JobView),
    /// No such job for this key.
    NotFound,
}

/// Queues `key_id`'s failed or cancelled job `id` again: same id, attempts
/// from 0, runnable now; its last error stays until the next attempt
/// writes its own.
pub async fn redrive(db: &Db, key_id: &str, id: &str) -> Result<Redrive, DbError> {
    let now = now_ms();
    let mut tx = db.begin_write().await.ctx("retry job")?;
    let changed = sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at_ms = ?, finished_ms = NULL \
         WHERE key_id = ? AND id = ? AND state IN ('failed', 'cancelled') AND input_kept = 1",
    )
    .bind(now)
    .bind(key_id)
    .bind(id)
    .execute(&mut *tx)
    .await
    .ctx("retry job")?
    .rows_affected();
    tx.commit().await.ctx("retry job")?;
    let Some(job) = get(db, key_id, id).await? else {
        return Ok(Redrive::NotFound);
    };
    Ok(if changed == 1 {
        Redrive::Queued(job)
    } else if matches!(job.status, State::Failed | State::Cancelled) && !job.input_available {
        Redrive::InputGone(job)
    } else {
        Redrive::NotRetryable(job)
    })
}

/// The states of those of `ids` that exist: one statement for many
/// waiters (by primary key), whatever replica changed them.
pub async fn states(db: &Db, ids: &[&str]) -> Result<Vec<(String, State)>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, state FROM jobs WHERE id IN ({})",
        vec!["?"; ids.len()].join(", ")
    );
    // Only placeholders were added to the text; every value is bound.
    let mut q = sqlx::query_as::<_, (String, String)>(AssertSqlSafe(sql));
    for id in ids {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await.ctx("job states")?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, st)| State::parse(&st).map(|s| (id, s)))
        .collect())
}
