//! API keys: creation, listing, revocation and request authentication.
//!
//! A token is `tandem_<id>_<secret>`: `id` is 8 random bytes in hex, public,
//! and names the key in logs and listings; `secret` is 32 random bytes in hex.
//! Only the SHA-256 of the whole token is stored. A random 256-bit secret
//! needs no slow password hash: nobody can guess it, so the hash only has to
//! be one-way. Authentication looks the row up by the public id and compares
//! the hashes in constant time (`subtle`), so response timing says nothing
//! about how much of a guess was right. Tokens are never logged: only ids.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{Ctx, Db, DbError, hex, now_ms, random_hex};

/// The public part of a key, as listed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyInfo {
    /// Public id (appears in the token and the request log).
    pub id: String,
    /// Operator-given name.
    pub name: String,
    /// Requests per second.
    pub rate: f64,
    /// Requests allowed at once above the steady rate.
    pub burst: i64,
    /// Creation time, epoch ms.
    pub created_ms: i64,
    /// Revocation time, epoch ms, if revoked.
    pub revoked_ms: Option<i64>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The key's public id.
    pub key_id: String,
    /// Its rate limit: requests per second.
    pub rate: f64,
    /// Its burst.
    pub burst: i64,
}

/// Why a request is not authenticated. All map to 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing API key: send Authorization: Bearer <token>")]
    Missing,
    /// Not a token we issued.
    #[error("unknown API key")]
    Unknown,
    /// A revoked key.
    #[error("API key revoked")]
    Revoked,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Splits `tandem_<id>_<secret>` and returns the id.
fn token_id(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("tandem_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some(id)
}

/// Creates a key; returns its info and the token, which is shown once.
pub async fn create(
    db: &Db,
    name: &str,
    rate: f64,
    burst: u32,
) -> Result<(KeyInfo, String), DbError> {
    let id = random_hex(8);
    let token = format!("tandem_{id}_{}", random_hex(32));
    let now = now_ms();
    let mut tx = db.begin_write().await.ctx("create key")?;
    sqlx::query("INSERT INTO api_keys (id, name, token_hash, rate, burst, created_ms) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&id)
        .bind(name)
        .bind(hash(&token).to_vec())
        .bind(rate)
        .bind(i64::from(burst))
        .bind(now)
        .execute(&mut *tx)
        .await
        .ctx("create key")?;
    sqlx::query("INSERT INTO rate_limits (key_id, tat_us) VALUES (?, 0)")
        .bind(&id)
        .execute(&mut *tx)
        .await
        .ctx("create key")?;
    tx.commit().await.ctx("create key")?;
    let info = KeyInfo {
        id,
        name: name.to_owned(),
        rate,
        burst: i64::from(burst),
        created_ms: now,
        revoked_ms: None,
    };
    Ok((info, token))
}

/// Every key, oldest first.
pub async fn list(db: &Db) -> Result<Vec<KeyInfo>, DbError> {
    let rows: Vec<(String, String, f64, i64, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, name, rate, burst, created_ms, revoked_ms FROM api_keys ORDER BY created_ms, id",
    )
    .fetch_all(&db.pool)
    .await
    .ctx("list keys")?;
    Ok(rows
        .into_iter()
        .map(|(id, name, rate, burst, created_ms, revoked_ms)| KeyInfo {
            id,
            name,
            rate,
            burst,
            created_ms,
            revoked_ms,
        })
        .collect())
}

/// Revokes the key with this id or name; returns how many keys it revoked.
pub async fn revoke(db: &Db, id_or_name: &str) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_ms = ? WHERE (id = ? OR name = ?) AND revoked_ms IS NULL",
    )
    .bind(now_ms())
    .bind(id_or_name)
    .bind(id_or_name)
    .execute(&db.writer)
    .await
    .ctx("revoke key")?;
    Ok(done.rows_affected())
}

/// Sets the retention of the finished jobs of the key with this id or name
/// (`None`: the config's `retention`); returns how many keys it changed.
pub async fn set_retention(
    db: &Db,
    id_or_name: &str,
    retention: Option<Duration>,
) -> Result<u64, DbError> {
    let ms = retention.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let done = sqlx::query("UPDATE api_keys SET retention_ms = ? WHERE id = ? OR name = ?")
        .bind(ms)
        .bind(id_or_name)
        .bind(id_or_name)
        .execute(&db.writer)
        .await
        .ctx("set key retention")?;
    Ok(done.rows_affected())
}

/// The token of an `Authorization: Bearer` header value.
fn bearer(authorization: Option<&str>) -> Option<&str> {
    authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Who is calling, from the `Authorization` header value (if any).
pub async fn authenticate(
    db: &Db,
    authorization: Option<&str>,
) -> Result<Result<Caller, AuthError>, DbError> {
    let Some(token) = bearer(authorization) else {
        return Ok(Err(AuthError::Missing));
    };
    let Some(id) = token_id(token) else {
        return Ok(Err(AuthError::Unknown));
    };
    let row: Option<(Vec<u8>, f64, i64, Option<i64>)> =
        sqlx::query_as("SELECT token_hash, rate, burst, revoked_ms FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&db.pool)
            .await
            .ctx("authenticate")?;
    let Some((stored, rate, burst, revoked)) = row else {
        return Ok(Err(AuthError::Unknown));
    };
    if !bool::from(stored.as_slice().ct_eq(&hash(token))) {
        return Ok(Err(AuthError::Unknown));
    }
    if revoked.is_some() {
        return Ok(Err(AuthError::Revoked));
    }
    Ok(Ok(Caller {
        key_id: id.to_owned(),
        rate,
        burst,
    }))
}

/// How long a cached authentication is trusted: a revoked key (or a
/// changed rate) takes effect on every replica within this.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(1);
/// Most tokens cached per replica.
const AUTH_CACHE_MAX: usize = 10_000;

/// Recent successful authentications, by the SHA-256 of the token: at most
/// [`AUTH_CACHE_MAX`] entries, each trusted for [`AUTH_CACHE_TTL`]. Only
/// successes are kept, so unknown tokens cannot fill it and a revoked key is
/// refused from the database at most a second after revocation.
#[derive(Debug, Default)]
pub struct AuthCache(Mutex<HashMap<[u8; 32], (Caller, Instant)>>);

impl AuthCache {
    /// [`authenticate`], answered from the cache when the same token was
    /// authenticated less than [`AUTH_CACHE_TTL`] ago.
    pub async fn authenticate(
        &self,
        db: &Db,
        authorization: Option<&str>,
    ) -> Result<Result<Caller, AuthError>, DbError> {
        let Some(token) = bearer(authorization) else {
            return Ok(Err(AuthError::Missing));
        };
        let h = hash(token);
        let now = Instant::now();
        if let Some((caller, at)) = self.lock().get(&h)
            && now.duration_since(*at) < AUTH_CACHE_TTL
        {
            return Ok(Ok(caller.clone()));
        }
        let answer = authenticate(db, authorization).await?;
        if let Ok(caller) = &answer {
            let mut map = self.lock();
            if map.len() >= AUTH_CACHE_MAX {
                map.retain(|_, (_, at)| now.duration_since(*at) < AUTH_CACHE_TTL);
                if map.len() >= AUTH_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(h, (caller.clone(), now));
        }
        Ok(answer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Caller, Instant)>> {
        // A panic while holding it leaves a map that is still valid.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hex SHA-256 of a token, for tests and tooling that must not keep tokens.
pub fn fingerprint(token: &str) -> String {
    hex(&hash(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        let id = "0123456789abcdef";
        let t = format!("tandem_{id}_{}", "a".repeat(64));
        assert_eq!(token_id(&t), Some(id));
        assert_eq!(token_id("tandem_short_x"), None);
        assert_eq!(token_id("Bearer x"), None);
        assert_ne!(fingerprint(&t), fingerprint(&format!("{t}x")));
    }
}
