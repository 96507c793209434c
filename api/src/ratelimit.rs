//! Per-key rate limits with GCRA (the generic cell rate algorithm), the
//! state held in the database so every replica enforces the same limit.
//!
//! GCRA keeps one number per key, the theoretical arrival time (TAT): when
//! the bucket would be empty again if requests kept coming at the steady
//! rate. With emission interval `T = 1/rate` and burst `b`, a request at
//! `now` is admitted iff `max(TAT, now) + T - now <= b·T`; then
//! `TAT := max(TAT, now) + T`. A refused request changes nothing, and
//! `Retry-After` is when the inequality will hold.
//!
//! Across replicas the update is a compare-and-swap
//! (`UPDATE ... SET tat = new WHERE key_id = ? AND tat = old`): no
//! transaction, no lock held across a round trip, and a lost race simply
//! reads the new TAT and decides again. An admitted request always moves
//! TAT forward, so MySQL's "rows changed" count cannot report a no-op as a
//! lost race.

use crate::db::{Ctx, Db, DbError, now_us};

/// The outcome for one request; enough to fill the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Admitted?
    pub allowed: bool,
    /// Requests that could still be made right now.
    pub remaining: u64,
    /// Seconds until the bucket is full again (`RateLimit-Reset`).
    pub reset_secs: u64,
    /// Seconds to wait before retrying (0 when admitted).
    pub retry_after_secs: u64,
    /// The burst (`RateLimit-Limit`).
    pub limit: u64,
}

/// Pure GCRA step. Times in µs. Returns the decision and the new TAT when
/// admitted.
pub fn gcra(tat_us: i64, now_us: i64, rate: f64, burst: i64) -> (Decision, Option<i64>) {
    let t = (1_000_000.0 / rate).max(1.0) as i64;
    let burst = burst.max(1);
    let capacity = t.saturating_mul(burst);
    let base = tat_us.max(now_us);
    let new_tat = base.saturating_add(t);
    let ceil_secs = |us: i64| u64::try_from(us.max(0)).unwrap_or(0).div_ceil(1_000_000);
    if new_tat - now_us <= capacity {
        let used = new_tat - now_us;
        let remaining = u64::try_from((capacity - used) / t).unwrap_or(0);
        let d = Decision {
            allowed: true,
            remaining,
            reset_secs: ceil_secs(used),
            retry_after_secs: 0,
            limit: burst as u64,
        };
        (d, Some(new_tat))
    } else {
        let wait = new_tat - now_us - capacity;
        let d = Decision {
            allowed: false,
            remaining: 0,
            reset_secs: ceil_secs(base - now_us),
            retry_after_secs: ceil_secs(wait).max(1),
            limit: burst as u64,
        };
        (d, None)
    }
}

/// Takes one request from `key_id`'s allowance, shared by every replica.
pub async fn check(db: &Db, key_id: &str, rate: f64, burst: i64) -> Result<Decision, DbError> {
    // Bounded: each lost race means another request was admitted, and there
    // are at most `burst` of those before the answer is "no" without a write.
    for _ in 0..64 {
        let tat: Option<i64> =
            sqlx::query_scalar("SELECT tat_us FROM rate_limits WHERE key_id = ?")
                .bind(key_id)
                .fetch_optional(&db.pool)
                .await
                .ctx("rate limit")?;
        let Some(tat) = tat else {
            // A key created before its row existed (cannot happen through
            // `keys::create`); start it full.
            sqlx::query("INSERT INTO rate_limits (key_id, tat_us) VALUES (?, 0)")
                .bind(key_id)
                .execute(&db.pool)
                .await
                .ctx("rate limit")?;
            continue;
        };
        let (decision, new_tat) = gcra(tat, now_us(), rate, burst);
        let Some(new_tat) = new_tat else {
            return Ok(decision);
        };
        let swapped =
            sqlx::query("UPDATE rate_limits SET tat_us = ? WHERE key_id = ? AND tat_us = ?")
                .bind(new_tat)
                .bind(key_id)
                .bind(tat)
                .execute(&db.pool)
                .await
                .ctx("rate limit")?;
        if swapped.rows_affected() == 1 {
            return Ok(decision);
        }
    }
    // Extreme contention: refuse rather than loop; the client retries.
    Ok(Decision {
        allowed: false,
        remaining: 0,
        reset_secs: 1,
        retry_after_secs: 1,
        limit: burst.max(1) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn burst_then_steady_rate() {
        // 2/s, burst 3: three at once, the fourth waits half a second.
        let (mut tat, now) = (0, 100 * S);
        for left in [2, 1, 0] {
            let (d, t) = gcra(tat, now, 2.0, 3);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            tat = t.unwrap();
        }
        let (d, t) = gcra(tat, now, 2.0, 3);
        assert!(!d.allowed && t.is_none());
        assert_eq!(d.retry_after_secs, 1);
        assert_eq!(d.reset_secs, 2); // 1.5 s until full, rounded up
        let (d, _) = gcra(tat, now + S / 2, 2.0, 3);
        assert!(d.allowed, "one emission interval later one more fits");
    }

    #[test]
    fn admitted_count_over_a_window_is_bounded() {
        // Hammer every millisecond for 10 s at 5/s burst 10: at most
        // 10 + 5·10 admitted.
        let (mut tat, mut ok) = (0, 0);
        for ms in 0..10_000 {
            let (d, t) = gcra(tat, ms * 1000, 5.0, 10);
            if d.allowed {
                ok += 1;
                tat = t.unwrap();
            }
        }
        assert!((59..=61).contains(&ok), "{ok}");
    }
}
