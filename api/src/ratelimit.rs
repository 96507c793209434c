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
//! (`UPDATE ... SET tat = new WHERE key_id = ? AND tat = old`): a lost race
//! simply reads the new TAT and decides again. An admitted request always
//! moves TAT forward, so MySQL's "rows changed" count cannot report a no-op
//! as a lost race.
//!
//! Coalescing: requests do not each read and write the row. They queue to
//! one task per replica ([`Limiter`]), which takes them in batches like the
//! submission batcher (`crate::batch`) and, per key in a batch, reads the
//! TAT once, decides the key's requests in arrival order in memory
//! ([`gcra_run`], the same decisions as one at a time) and writes the final
//! TAT with one compare-and-swap; all keys of a batch in one transaction,
//! so one commit. Each decision uses the request's own arrival time.

use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};

use crate::batch::{Collector, Limits, Queued};
use crate::config::DbSettings;
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

/// GCRA applied to a run of requests of one key, in arrival order, all from
/// the same stored `tat_us`: exactly what applying them one at a time would
/// decide, each seeing the TAT the admitted ones before it left. Returns
/// the decisions and the TAT to store (`None` when none was admitted).
pub fn gcra_run(
    tat_us: i64,
    arrivals_us: &[i64],
    rate: f64,
    burst: i64,
) -> (Vec<Decision>, Option<i64>) {
    let mut tat = tat_us;
    let mut moved = None;
    let decisions = arrivals_us
        .iter()
        .map(|&now| {
            let (d, new_tat) = gcra(tat, now, rate, burst);
            if let Some(t) = new_tat {
                tat = t;
                moved = Some(t);
            }
            d
        })
        .collect();
    (decisions, moved)
}

/// One request's check, queued to the coalescer.
struct Check {
    key_id: String,
    rate: f64,
    burst: i64,
    /// Wall clock at arrival, the `now` of its decision.
    now_us: i64,
    queued_at: tokio::time::Instant,
    reply: oneshot::Sender<Result<Decision, LimitError>>,
}

impl Queued for Check {
    fn queued_at(&self) -> tokio::time::Instant {
        self.queued_at
    }
}

/// Why a request could not be checked. Both map to 503.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The coalescer's queue is full (or it stopped).
    #[error("the rate limiter is backed up")]
    Busy,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The handlers' side of the coalescer (see the module doc). Cheap to
/// clone; the task ends when every clone is dropped.
#[derive(Clone, Debug)]
pub struct Limiter(mpsc::Sender<Check>);

impl Limiter {
    /// Starts the coalescer on `db`, batching like the submissions.
    pub fn spawn(db: Db, settings: &DbSettings) -> Limiter {
        let (tx, rx) = mpsc::channel(settings.submit_queue);
        let limits = Limits {
            max: settings.submit_batch,
            window: settings.submit_window,
            max_weight: usize::MAX,
        };
        tokio::spawn(coalesce(db, Collector::new(rx, limits)));
        Limiter(tx)
    }

    /// Takes one request from `key_id`'s allowance, shared by every replica.
    pub async fn check(&self, key_id: &str, rate: f64, burst: i64) -> Result<Decision, LimitError> {
        let (reply, answer) = oneshot::channel();
        let check = Check {
            key_id: key_id.to_owned(),
            rate,
            burst,
            now_us: now_us(),
            queued_at: tokio::time::Instant::now(),
            reply,
        };
        self.0.try_send(check).map_err(|_| LimitError::Busy)?;
        answer.await.unwrap_or(Err(LimitError::Busy))
    }
}

async fn coalesce(db: Db, mut batches: Collector<Check>) {
    while let Some(batch) = batches.next().await {
        let groups = by_key(&batch);
        match decide(&db, &batch, &groups).await {
            Ok(decisions) => {
                for (check, d) in batch.into_iter().zip(decisions) {
                    let _ = check.reply.send(Ok(d));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, requests = batch.len(), "rate limit unavailable");
                for check in batch {
                    let _ = check.reply.send(Err(LimitError::Db(e.copy())));
                }
            }
        }
    }
}

/// The indices of `batch` grouped by key, each group in arrival order, the
/// groups in key order: every replica then locks rows in the same order and
/// two batches cannot deadlock on MySQL.
fn by_key(batch: &[Check]) -> Vec<Vec<usize>> {
    by_key_of(batch.iter().map(|c| c.key_id.as_str()))
}

fn by_key_of<'k>(keys: impl Iterator<Item = &'k str>) -> Vec<Vec<usize>> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.enumerate() {
        groups.entry(k).or_default().push(i);
    }
    groups.into_values().collect()
}

/// Every decision of `batch`, in its order: per key one read and, when a
/// request was admitted, one compare-and-swap, all in one transaction
/// (one commit for the batch). A lost swap (another replica moved the TAT
/// in between; possible on MySQL only, SQLite's `BEGIN IMMEDIATE` excludes
/// it) reads again and decides the key's whole run again.
async fn decide(db: &Db, batch: &[Check], groups: &[Vec<usize>]) -> Result<Vec<Decision>, DbError> {
    let mut out = vec![None; batch.len()];
    // Rate limit state needs no fsync: a power cut forgets a few admitted
    // requests, which only lets a few more in.
    let mut writer = db.relaxed().await.ctx("rate limit")?;
    let mut tx = db.begin_on(&mut writer.conn).await.ctx("rate limit")?;
    for group in groups {
        let first = &batch[group[0]];
        let arrivals: Vec<i64> = group.iter().map(|&i| batch[i].now_us).collect();
        let decisions =
            decide_key(&mut tx, &first.key_id, &arrivals, first.rate, first.burst).await?;
        for (&i, d) in group.iter().zip(decisions) {
            out[i] = Some(d);
        }
    }
    tx.commit().await.ctx("rate limit")?;
    writer.done().await;
    // Every index is in exactly one group.
    Ok(out.into_iter().map(|d| d.unwrap_or(REFUSED)).collect())
}

/// What a request gets when the swaps keep losing: refused, retry in 1 s.
const REFUSED: Decision = Decision {
    allowed: false,
    remaining: 0,
    reset_secs: 1,
    retry_after_secs: 1,
    limit: 1,
};

async fn decide_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key_id: &str,
    arrivals: &[i64],
    rate: f64,
    burst: i64,
) -> Result<Vec<Decision>, DbError> {
    // Bounded: each lost race means another replica admitted a request of
    // this key, and there are at most `burst` of those before every answer
    // is "no" without a write.
    for _ in 0..64 {
        let tat: Option<i64> =
            sqlx::query_scalar("SELECT tat_us FROM rate_limits WHERE key_id = ?")
                .bind(key_id)
                .fetch_optional(&mut **tx)
                .await
                .ctx("rate limit")?;
        // A key created before its row existed (cannot happen through
        // `keys::create`) starts full.
        let (decisions, new_tat) = gcra_run(tat.unwrap_or(0), arrivals, rate, burst);
        let Some(new_tat) = new_tat else {
            return Ok(decisions);
        };
        let swapped = match tat {
            Some(old) => {
                sqlx::query("UPDATE rate_limits SET tat_us = ? WHERE key_id = ? AND tat_us = ?")
                    .bind(new_tat)
                    .bind(key_id)
                    .bind(old)
                    .execute(&mut **tx)
                    .await
                    .map(|r| r.rows_affected() == 1)
            }
            None => sqlx::query("INSERT INTO rate_limits (key_id, tat_us) VALUES (?, ?)")
                .bind(key_id)
                .bind(new_tat)
                .execute(&mut **tx)
                .await
                .map(|_| true),
        };
        match swapped {
            Ok(true) => return Ok(decisions),
            Ok(false) => {}
            // Another replica created the row first: read it.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
            Err(e) => {
                return Err(DbError {
                    what: "rate limit",
                    source: e,
                });
            }
        }
    }
    // Extreme contention: refuse rather than loop; the clients retry.
    let refused = Decision {
        limit: burst.max(1) as u64,
        ..REFUSED
    };
    Ok(vec![refused; arrivals.len()])
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

    proptest::proptest! {
        /// Coalesced decisions equal sequential ones: random keys, limits
        /// and arrival times, cut into random batches. Sequential: each
        /// request reads the stored TAT, decides, stores. Coalesced: per
        /// batch, the requests grouped by key (`by_key_of`, as the task
        /// does), each group decided from one read (`gcra_run`) and one
        /// write.
        #[test]
        fn coalesced_equals_sequential(
            arrivals in proptest::collection::vec((0usize..4, 0i64..300_000), 1..200),
            cuts in proptest::collection::vec(1usize..40, 1..50),
            limits in proptest::collection::vec((1u32..50, 1i64..8), 4),
        ) {
            let limit = |k: usize| (f64::from(limits[k].0), limits[k].1);
            // Arrival times: increasing by random gaps from 100 s.
            let mut now = 100 * S;
            let reqs: Vec<(usize, i64)> = arrivals
                .iter()
                .map(|&(k, gap)| {
                    now += gap;
                    (k, now)
                })
                .collect();
            let mut store = [0i64; 4];
            let sequential: Vec<Decision> = reqs
                .iter()
                .map(|&(k, now)| {
                    let (rate, burst) = limit(k);
                    let (d, t) = gcra(store[k], now, rate, burst);
                    if let Some(t) = t {
                        store[k] = t;
                    }
                    d
                })
                .collect();
            let mut store = [0i64; 4];
            let mut coalesced = vec![None; reqs.len()];
            let (mut start, mut cut) = (0, cuts.iter().cycle());
            while start < reqs.len() {
                let end = (start + cut.next().copied().unwrap_or(1)).min(reqs.len());
                let batch = &reqs[start..end];
                let names = ["a", "b", "c", "d"];
                for group in by_key_of(batch.iter().map(|&(k, _)| names[k])) {
                    let k = batch[group[0]].0;
                    let (rate, burst) = limit(k);
                    let times: Vec<i64> = group.iter().map(|&i| batch[i].1).collect();
                    let (ds, t) = gcra_run(store[k], &times, rate, burst);
                    if let Some(t) = t {
                        store[k] = t;
                    }
                    for (&i, d) in group.iter().zip(ds) {
                        coalesced[start + i] = Some(d);
                    }
                }
                start = end;
            }
            let coalesced: Vec<Decision> = coalesced.into_iter().map(|d| d.unwrap()).collect();
            proptest::prop_assert_eq!(coalesced, sequential);
        }
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
