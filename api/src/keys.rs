//! API keys: creation, listing, revocation and request authentication.
//!
//! A token is `tandem_<id>_<secret>`: `id` is 8 random bytes in hex, public,
//! and names the key in logs and listings; `secret` is 32 random bytes in hex.
//! Only the SHA-256 of the whole token is stored. A random 256-bit secret
//! needs no slow password hash: nobody can guess it, so the hash only has to
//! be one-way. Authentication looks the row up by the public id and compares
//! the hashes in constant time (`subtle`), so response timing says nothing
//! about how much of a guess was right. Tokens are never logged: only ids.
//!
//! Each key also has a **webhook secret**, `whsec_` and 32 random bytes in
//! hex, made with the key and shown once like the token: the HMAC key that
//! signs its jobs' webhook deliveries. It is stored as it is, not hashed:
//! the API needs the key itself to sign, so whoever can read the database
//! can forge signatures (not tokens). Rotating it keeps the previous one
//! signing too for a grace period. A key may carry a default callback URL,
//! copied into each job submitted without one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{Ctx, Db, DbError, hex, now_ms, random_hex};
use crate::webhook::Target;

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
    /// Default callback URL of its jobs.
    pub callback_url: Option<String>,
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
    /// Its default callback URL.
    pub callback_url: Option<String>,
    /// It has a webhook secret (keys made before webhooks have none until
    /// rotated).
    pub webhook_secret: bool,
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

/// A new key and what is shown of it once.
#[derive(Debug, Clone)]
pub struct Made {
    /// Its public part.
    pub info: KeyInfo,
    /// The bearer token.
    pub token: String,
    /// The webhook signing secret.
    pub webhook_secret: String,
}

fn new_webhook_secret() -> String {
    format!("whsec_{}", random_hex(32))
}

/// Creates a key; returns its info and the token, which is shown once.
pub async fn create(
    db: &Db,
    name: &str,
    rate: f64,
    burst: u32,
) -> Result<(KeyInfo, String), DbError> {
    let made = create_with(db, name, rate, burst, None).await?;
    Ok((made.info, made.token))
}

/// Creates a key with its webhook secret and an optional default callback
/// URL (checked by the caller with [`Target::parse`]).
pub async fn create_with(
    db: &Db,
    name: &str,
    rate: f64,
    burst: u32,
    callback_url: Option<&Target>,
) -> Result<Made, DbError> {
    let id = random_hex(8);
    let token = format!("tandem_{id}_{}", random_hex(32));
    let secret = new_webhook_secret();
    let url = callback_url.map(|t| t.as_str().to_owned());
    let now = now_ms();
    let mut tx = db.begin_write().await.ctx("create key")?;
    sqlx::query(
        "INSERT INTO api_keys (id, name, token_hash, rate, burst, created_ms, webhook_secret, callback_url) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(name)
    .bind(hash(&token).to_vec())
    .bind(rate)
    .bind(i64::from(burst))
    .bind(now)
    .bind(&secret)
    .bind(url.clone())
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
        callback_url: url,
    };
    Ok(Made {
        info,
        token,
        webhook_secret: secret,
    })
}

/// The one active key with this id or name: its id, `None` if there is
/// none, an error naming the ids when the name is shared.
async fn one_active(
    db: &Db,
    id_or_name: &str,
    what: &'static str,
) -> Result<Option<String>, DbError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM api_keys WHERE (id = ? OR name = ?) AND revoked_ms IS NULL ORDER BY id",
    )
    .bind(id_or_name)
    .bind(id_or_name)
    .fetch_all(&db.pool)
    .await
    .ctx(what)?;
    match ids.len() {
        0 => Ok(None),
        1 => Ok(ids.into_iter().next()),
        _ => Err(DbError {
            what,
            source: sqlx::Error::Protocol(format!(
                "{id_or_name:?} names {} keys ({}): give the id",
                ids.len(),
                ids.join(", ")
            )),
        }),
    }
}

/// Gives the active key `id_or_name` a new webhook secret; the current one
/// keeps signing (as a second `v1`) for `grace` (zero: stops at once).
/// Returns the key id and the new secret, or `None` if no such key.
pub async fn rotate_webhook_secret(
    db: &Db,
    id_or_name: &str,
    grace: Duration,
) -> Result<Option<(String, String)>, DbError> {
    let what = "rotate webhook secret";
    let Some(id) = one_active(db, id_or_name, what).await? else {
        return Ok(None);
    };
    let secret = new_webhook_secret();
    let until = now_ms().saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    sqlx::query(
        "UPDATE api_keys SET webhook_secret_prev = webhook_secret, webhook_secret_prev_until_ms = ?, \
         webhook_secret = ? WHERE id = ?",
    )
    .bind(until)
    .bind(&secret)
    .bind(&id)
    .execute(&db.writer)
    .await
    .ctx(what)?;
    Ok(Some((id, secret)))
}

/// Sets (or, with `None`, clears) the default callback URL of the active
/// key `id_or_name`, for jobs submitted from then on. Returns the key id,
/// or `None` if no such key.
pub async fn set_callback_url(
    db: &Db,
    id_or_name: &str,
    url: Option<&Target>,
) -> Result<Option<String>, DbError> {
    let what = "set callback URL";
    let Some(id) = one_active(db, id_or_name, what).await? else {
        return Ok(None);
    };
    sqlx::query("UPDATE api_keys SET callback_url = ? WHERE id = ?")
        .bind(url.map(|t| t.as_str().to_owned()))
        .bind(&id)
        .execute(&db.writer)
        .await
        .ctx(what)?;
    Ok(Some(id))
}

/// Every key, oldest first.
pub async fn list(db: &Db) -> Result<Vec<KeyInfo>, DbError> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(String, String, f64, i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
        "SELECT id, name, rate, burst, created_ms, revoked_ms, callback_url FROM api_keys \
         ORDER BY created_ms, id",
    )
    .fetch_all(&db.pool)
    .await
    .ctx("list keys")?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, rate, burst, created_ms, revoked_ms, callback_url)| KeyInfo {
                id,
                name,
                rate,
                burst,
                created_ms,
                revoked_ms,
                callback_url,
            },
        )
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
    #[allow(clippy::type_complexity)]
    let row: Option<(
        Vec<u8>,
        f64,
        i64,
        Option<i64>,
        Option<String>,
        Option<String>,
    )> = sqlx::query_as(
        "SELECT token_hash, rate, burst, revoked_ms, callback_url, webhook_secret FROM api_keys \
             WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await
    .ctx("authenticate")?;
    let Some((stored, rate, burst, revoked, callback_url, secret)) = row else {
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
        callback_url,
        webhook_secret: secret.is_some(),
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
