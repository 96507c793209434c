//! Storing a submitted job, with its idempotency key.

use super::{JobView, get_by};
use crate::db::{Db, DbError, now_ms, random_hex};

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
