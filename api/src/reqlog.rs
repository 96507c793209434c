//! The request log: one row per HTTP request, written in batches.
//!
//! Handlers never wait for the database to log: they hand an [`Entry`] to a
//! bounded channel (`try_send`; when the writer has fallen that far behind,
//! the row is dropped and counted rather than slowing requests down). One
//! task drains it, inserting up to [`BATCH`] rows per statement at most
//! [`FLUSH_EVERY`] after the first of them arrived, and deletes rows older
//! than the retention once a minute, a bounded chunk per statement. Both go
//! through the database's writer. At shutdown it writes what it holds.

use std::time::Duration;

use metrics::counter;
use sqlx::AssertSqlSafe;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::db::{Backend, Ctx, Db, DbError, now_ms};
use crate::metrics as m;

/// Rows per INSERT.
pub const BATCH: usize = 200;
/// Longest a row waits in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Rows that may wait; past this, rows are dropped (and counted).
const QUEUE: usize = 10_000;

/// One request.
#[derive(Debug, Clone)]
pub struct Entry {
    /// When it arrived, epoch ms.
    pub ts_ms: i64,
    /// The key's public id, when authenticated.
    pub key_id: Option<String>,
    /// Client address: from the PROXY header, else the peer.
    pub client: String,
    /// HTTP method.
    pub method: String,
    /// Route template (`/v1/jobs/{id}`), never the raw path.
    pub route: String,
    /// Status sent.
    pub status: u16,
    /// Time to answer, µs.
    pub latency_us: i64,
    /// Request body bytes.
    pub bytes_in: i64,
    /// Response body bytes.
    pub bytes_out: i64,
}

/// The sending side, cheap to clone.
#[derive(Clone, Debug)]
pub struct RequestLog(mpsc::Sender<Entry>);

impl RequestLog {
    /// Queues a row without waiting.
    pub fn log(&self, e: Entry) {
        if self.0.try_send(e).is_err() {
            counter!(m::LOG_DROPPED).increment(1);
        }
    }
}

/// Starts the writer. It ends, after a last flush, when every
/// [`RequestLog`] clone has been dropped.
pub fn spawn(db: Db, retention: Duration) -> (RequestLog, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (RequestLog(tx), tokio::spawn(writer(db, retention, rx)))
}

async fn writer(db: Db, retention: Duration, mut rx: mpsc::Receiver<Entry>) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(3600);
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let prune_in = Duration::from_secs(60).saturating_sub(last_prune.elapsed());
        let first = tokio::select! {
            e = rx.recv() => e,
            () = tokio::time::sleep(prune_in) => {
                prune(&db, retention_ms).await;
                last_prune = tokio::time::Instant::now();
                continue;
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = insert(&db, &batch).await {
            tracing::warn!(error = %e, rows = batch.len(), "request log rows lost");
        }
        batch.clear();
    }
}

/// Rows deleted per prune statement: each holds the writer (on SQLite the
/// only one, which submissions share) for a bounded time.
const PRUNE_CHUNK: i64 = 5_000;

async fn prune(db: &Db, retention_ms: i64) {
    let cutoff = now_ms().saturating_sub(retention_ms);
    // SQLite has no DELETE ... LIMIT (without a compile option), MySQL no
    // LIMIT in an IN subquery: one statement each.
    let sql = match db.backend {
        Backend::Sqlite => {
            "DELETE FROM request_log WHERE id IN \
             (SELECT id FROM request_log WHERE ts_ms < ? ORDER BY id LIMIT ?)"
        }
        Backend::Mysql => "DELETE FROM request_log WHERE ts_ms < ? ORDER BY id LIMIT ?",
    };
    loop {
        match sqlx::query(sql)
            .bind(cutoff)
            .bind(PRUNE_CHUNK)
            .execute(&db.writer)
            .await
        {
            Ok(done) if done.rows_affected() < PRUNE_CHUNK as u64 => return,
            Ok(_) => tokio::task::yield_now().await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prune the request log");
                return;
            }
        }
    }
}

/// Inserts rows with one multi-row statement.
pub async fn insert(db: &Db, rows: &[Entry]) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO request_log (ts_ms, key_id, client, method, route, status, latency_us, bytes_in, bytes_out) VALUES ",
    );
    for i in 0..rows.len() {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        });
    }
    // Only placeholders were added to the text; every value is bound.
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for r in rows {
        q = q
            .bind(r.ts_ms)
            .bind(r.key_id.clone())
            .bind(r.client.clone())
            .bind(r.method.clone())
            .bind(r.route.clone())
            .bind(i64::from(r.status))
            .bind(r.latency_us)
            .bind(r.bytes_in)
            .bind(r.bytes_out);
    }
    // Log rows need no fsync of their own (see `Db::relaxed`).
    let mut writer = db.relaxed().await.ctx("request log")?;
    q.execute(&mut *writer.conn).await.ctx("request log")?;
    writer.done().await;
    Ok(())
}
