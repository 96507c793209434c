//! The delivery rows: claiming due ones with a lease, and writing what
//! their attempts did, every write fenced by the claim's lease token.
//!
//! These writes go through the writer relaxed ([`Db::relaxed`]): on SQLite
//! with `synchronous = full` their commits skip the fsync. Losing one to a
//! power cut loses nothing that matters: a lost claim leaves the row
//! claimable, a lost outcome sends the delivery again (at least once).

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row};

use crate::db::{Backend, Ctx, Db, DbError, random_hex};

/// A delivery this replica holds the lease of.
#[derive(Debug, Clone)]
pub(super) struct Claimed {
    /// Row id (the `Tandem-Delivery` id's number).
    pub id: i64,
    pub job_id: String,
    pub key_id: String,
    pub url: String,
    /// The job's state when it ended.
    pub event: String,
    /// Attempts started, this one included.
    pub attempts: i64,
    /// When the job ended, epoch ms.
    pub created_ms: i64,
    /// The claim's fencing token.
    pub token: String,
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// Claims up to `n` due deliveries (pending, `next_at_ms` passed, no live
/// lease) for `lease_ms`, oldest due first, in one write transaction: on
/// MySQL the rows are taken `FOR UPDATE SKIP LOCKED`, so replicas
/// claiming at once take disjoint rows; on SQLite the transaction holds
/// the write lock (`BEGIN IMMEDIATE`) from the select to the update.
pub(super) async fn claim(
    db: &Db,
    n: usize,
    lease_ms: i64,
    now: i64,
) -> Result<Vec<Claimed>, DbError> {
    let lock = match db.backend {
        Backend::Mysql => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let mut relaxed = db.relaxed().await.ctx("claim deliveries")?;
    let mut tx = db
        .begin_on(&mut relaxed.conn)
        .await
        .ctx("claim deliveries")?;
    let sql = format!(
        "SELECT id, job_id, key_id, url, event, attempts, created_ms FROM webhook_deliveries \
         WHERE state = 'pending' AND next_at_ms <= ? AND (lease_until_ms IS NULL OR lease_until_ms <= ?) \
         ORDER BY next_at_ms LIMIT ?{lock}"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(now)
        .bind(now)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .ctx("claim deliveries")?;
    if rows.is_empty() {
        tx.commit().await.ctx("claim deliveries")?;
        relaxed.done().await;
        return Ok(Vec::new());
    }
    let token = random_hex(16);
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(Claimed {
            id: r.try_get("id").ctx("claim deliveries")?,
            job_id: r.try_get("job_id").ctx("claim deliveries")?,
            key_id: r.try_get("key_id").ctx("claim deliveries")?,
            url: r.try_get("url").ctx("claim deliveries")?,
            event: r.try_get("event").ctx("claim deliveries")?,
            attempts: r.try_get::<i64, _>("attempts").ctx("claim deliveries")? + 1,
            created_ms: r.try_get("created_ms").ctx("claim deliveries")?,
            token: token.clone(),
        });
    }
    let sql = format!(
        "UPDATE webhook_deliveries SET lease_token = ?, lease_until_ms = ?, attempts = attempts + 1 \
         WHERE id IN ({})",
        marks(out.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql))
        .bind(&token)
        .bind(now.saturating_add(lease_ms));
    for c in &out {
        q = q.bind(c.id);
    }
    q.execute(&mut *tx).await.ctx("claim deliveries")?;
    tx.commit().await.ctx("claim deliveries")?;
    relaxed.done().await;
    Ok(out)
}

/// The secrets to sign with, per key id: the current one, and the previous
/// one while its grace period lasts (at `now`). A key without a secret is
/// absent.
pub(super) async fn secrets(
    db: &Db,
    key_ids: &[&str],
    now: i64,
) -> Result<HashMap<String, Vec<String>>, DbError> {
    if key_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT id, webhook_secret, webhook_secret_prev, webhook_secret_prev_until_ms FROM api_keys \
         WHERE id IN ({})",
        marks(key_ids.len())
    );
    let mut q = sqlx::query_as::<_, (String, Option<String>, Option<String>, Option<i64>)>(
        AssertSqlSafe(sql),
    );
    for k in key_ids {
        q = q.bind(*k);
    }
    let rows = q.fetch_all(&db.pool).await.ctx("read webhook secrets")?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, current, prev, until)| {
            let mut s = vec![current?];
            if let (Some(p), Some(u)) = (prev, until)
                && u > now
            {
                s.push(p);
            }
            Some((id, s))
        })
        .collect())
}

/// What to write for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Next {
    /// 2xx.
    Delivered {
        /// The receiver's status.
        status: u16,
    },
    /// Failed; try again at `at_ms`.
    Retry {
        at_ms: i64,
        status: Option<u16>,
        error: String,
    },
    /// Failed for good.
    Failed { status: Option<u16>, error: String },
    /// Not attempted after all (shutdown): the lease and the attempt given
    /// back.
    Release,
}

/// Writes `outcomes` ((row id, lease token, next)) in one transaction;
/// each statement is fenced by the token, so an outcome whose lease was
/// taken over is dropped. Deliveries sharing a token and a status (most
/// of a busy replica's successes) are one statement.
pub(super) async fn record(
    db: &Db,
    outcomes: &[(i64, String, Next)],
    now: i64,
) -> Result<(), DbError> {
    let what = "store delivery outcomes";
    let mut relaxed = db.relaxed().await.ctx(what)?;
    let mut tx = db.begin_on(&mut relaxed.conn).await.ctx(what)?;
    let mut delivered: HashMap<(&str, u16), Vec<i64>> = HashMap::new();
    for (id, token, next) in outcomes {
        let error = |e: &str| e.chars().take(1000).collect::<String>();
        let q = match next {
            Next::Delivered { status } => {
                delivered.entry((token, *status)).or_default().push(*id);
                continue;
            }
            Next::Retry {
                at_ms,
                status,
                error: e,
            } => sqlx::query(
                "UPDATE webhook_deliveries SET next_at_ms = ?, last_status = ?, last_error = ?, \
                 lease_token = NULL, lease_until_ms = NULL WHERE id = ? AND lease_token = ?",
            )
            .bind(*at_ms)
            .bind(status.map(i64::from))
            .bind(error(e)),
            Next::Failed { status, error: e } => sqlx::query(
                "UPDATE webhook_deliveries SET state = 'failed', finished_ms = ?, last_status = ?, \
                 last_error = ?, lease_token = NULL, lease_until_ms = NULL WHERE id = ? AND lease_token = ?",
            )
            .bind(now)
            .bind(status.map(i64::from))
            .bind(error(e)),
            Next::Release => sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts - 1, lease_token = NULL, \
                 lease_until_ms = NULL WHERE id = ? AND lease_token = ?",
            ),
        };
        q.bind(*id)
            .bind(token.as_str())
            .execute(&mut *tx)
            .await
            .ctx(what)?;
    }
    for ((token, status), ids) in delivered {
        let sql = format!(
            "UPDATE webhook_deliveries SET state = 'delivered', delivered_ms = ?, finished_ms = ?, \
             last_status = ?, last_error = NULL, lease_token = NULL, lease_until_ms = NULL \
             WHERE lease_token = ? AND id IN ({})",
            marks(ids.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(now)
            .bind(i64::from(status))
            .bind(token);
        for id in ids {
            q = q.bind(id);
        }
        q.execute(&mut *tx).await.ctx(what)?;
    }
    tx.commit().await.ctx(what)?;
    relaxed.done().await;
    Ok(())
}

/// Pending deliveries counted up to this many: the gauge saturates there
/// rather than count a backlog of millions every poll.
pub(super) const PENDING_CAP: i64 = 100_000;

/// Pending deliveries (all replicas'), at most [`PENDING_CAP`]: a range of
/// the `webhook_due` index, never the delivered history.
pub(super) async fn pending(db: &Db) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT 1 AS one FROM webhook_deliveries WHERE state = 'pending' LIMIT ?) p",
    )
    .bind(PENDING_CAP)
    .fetch_one(&db.pool)
    .await
    .ctx("count pending deliveries")
}
