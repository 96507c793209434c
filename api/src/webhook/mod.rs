//! Webhooks: when a job ends, its callback URL gets a signed POST of the
//! job's status document.
//!
//! - **Where from**: a job's `callback_url` (given on submit), else its
//!   key's default (`tandem api keys create --callback-url`, copied into
//!   the job when it is submitted). Checked on the way in ([`target`]) and
//!   again, address by address, at each connect ([`policy`]).
//! - **Outbox** ([`enqueue`]): the transaction that ends a job (done,
//!   failed, cancelled) also inserts its delivery row, one statement for
//!   the whole batch of ended jobs. A committed end therefore always has
//!   its delivery pending, whatever happens to the replica right after:
//!   at least once.
//! - **Delivery** ([`deliver`]): one task per replica claims due rows with a
//!   lease (SKIP LOCKED on MySQL; the one writer on SQLite), so two
//!   replicas never send the same attempt at once, and POSTs each
//!   ([`send`]): the job's JSON as `GET /v1/jobs/{id}` shows it plus
//!   `"event": "job.<state>"`, signed ([`sign`]), with the delivery's id in
//!   `Tandem-Delivery` for receivers to dedupe. 2xx is delivered; anything
//!   else, a timeout or a connection error is retried with exponential
//!   backoff and jitter until `max_attempts` or `max_age`, then the row is
//!   `failed` (kept, and shown on the job). An address the policy refuses
//!   fails the delivery at once: nothing was sent.
//! - **Wake-up**: the finisher wakes this replica's delivery task after a
//!   commit that queued deliveries ([`Waker`]); other replicas' rows,
//!   retries and expired leases are found by polling.
//! - **Visible**: the job's JSON has a `webhook` object (the URL's host
//!   only: its path or query may hold the receiver's token) with the state,
//!   attempts, the last status or error and the delivery time.

use std::sync::Arc;

use serde::Serialize;
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use tokio::sync::Notify;

pub mod deliver;
pub mod policy;
pub mod send;
pub mod sign;
mod store;
pub mod target;

pub use deliver::run;
pub use target::Target;

/// Wakes this replica's delivery task: deliveries were just committed.
#[derive(Clone, Debug, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    /// A new waker (one per replica).
    pub fn new() -> Waker {
        Waker::default()
    }

    /// Call after the commit that inserted delivery rows.
    pub fn wake(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Job ids per `INSERT ... SELECT` at most (one bound value each, far
/// below SQLite's 32,766).
const ENQUEUE_CHUNK: usize = 4096;

/// Inserts, in the caller's transaction on `conn`, a pending delivery for
/// each of `job_ids` that has a callback URL, with the job's state as its
/// event. Call it in the transaction that moved the jobs to their final
/// state, after the updates; then [`Waker::wake`] after the commit. One
/// statement for the batch (per [`ENQUEUE_CHUNK`] ids): the jobs without a
/// URL cost nothing but their index lookup. Returns the rows inserted.
pub async fn enqueue(
    conn: &mut AnyConnection,
    job_ids: &[&str],
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for chunk in job_ids.chunks(ENQUEUE_CHUNK) {
        let sql = format!(
            "INSERT INTO webhook_deliveries (job_id, key_id, url, event, state, attempts, next_at_ms, created_ms) \
             SELECT id, key_id, callback_url, state, 'pending', 0, ?, ? FROM jobs \
             WHERE id IN ({}) AND callback_url IS NOT NULL",
            vec!["?"; chunk.len()].join(", ")
        );
        // Only placeholders were added to the text; every value is bound.
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now_ms).bind(now_ms);
        for id in chunk {
            q = q.bind(*id);
        }
        inserted += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

/// A job's webhook as its JSON shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookView {
    /// `host[:port]` of the callback URL.
    pub host: String,
    /// `waiting` (the job has not ended), `pending`, `delivered`, `failed`.
    pub state: String,
    /// `Tandem-Delivery` of the latest delivery, once there is one.
    pub delivery_id: Option<String>,
    /// Attempts started.
    pub attempts: i64,
    /// The receiver's HTTP status on the last attempt that got one.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only), epoch ms.
    pub next_attempt_at_ms: Option<i64>,
    /// When the receiver answered 2xx, epoch ms.
    pub delivered_at_ms: Option<i64>,
}

impl WebhookView {
    /// The view of a job that has a URL and has not ended.
    pub fn waiting(url: &str) -> WebhookView {
        WebhookView {
            host: host_of(url),
            state: "waiting".into(),
            delivery_id: None,
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_at_ms: None,
            delivered_at_ms: None,
        }
    }
}

/// The webhook of a job row read with the jobs module's view columns
/// (`j.callback_url` and its latest delivery's `wh_*`): `None` when the
/// job has no callback URL.
pub fn view(row: &sqlx::any::AnyRow) -> Result<Option<WebhookView>, sqlx::Error> {
    let job_url: Option<String> = row.try_get("callback_url")?;
    let id: Option<i64> = row.try_get("wh_id")?;
    let Some(id) = id else {
        return Ok(job_url.as_deref().map(WebhookView::waiting));
    };
    let url: String = row.try_get("wh_url")?;
    let state: String = row.try_get("wh_state")?;
    let next: i64 = row.try_get("wh_next")?;
    Ok(Some(WebhookView {
        host: host_of(&url),
        next_attempt_at_ms: (state == "pending").then_some(next),
        state,
        delivery_id: Some(delivery_id(id)),
        attempts: row.try_get("wh_attempts")?,
        last_status: row.try_get("wh_status")?,
        last_error: row.try_get("wh_error")?,
        delivered_at_ms: row.try_get("wh_delivered")?,
    }))
}

/// The `Tandem-Delivery` id of delivery row `id`.
pub fn delivery_id(id: i64) -> String {
    format!("wh_{id}")
}

fn host_of(url: &str) -> String {
    Target::parse_unchecked(url).map_or_else(|_| "?".into(), |t| t.authority())
}
