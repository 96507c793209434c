//! The delivery task: one per replica. It claims due deliveries, runs
//! their attempts (at most `concurrency` at once), and writes what each
//! came to, in batches.
//!
//! It claims when woken (this replica's finisher queued deliveries), at
//! each `poll_interval` (other replicas' deliveries, expired leases), when
//! a retry it scheduled falls due, and after answers when the last claim
//! filled every free slot (more may be waiting). Outcomes that arrive
//! together are written in one transaction.
//!
//! On shutdown the attempts in flight are abandoned and their leases given
//! back (the attempt not counted), so another replica, or this one
//! restarted, sends them at once instead of after the lease.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use metrics::{counter, gauge, histogram};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::send::{self, Attempted, Failure, Outgoing};
use super::store::{self, Claimed, Next};
use super::{Target, Waker, delivery_id};
use crate::config::WebhookConfig;
use crate::db::{Db, now_ms};
use crate::dispatcher::backoff;
use crate::jobs::{self, JobView};
use crate::metrics as m;

/// What a delivery POSTs: the job's view plus the event.
#[derive(Serialize)]
struct Document<'a> {
    /// `job.done`, `job.failed`, `job.cancelled`.
    event: &'a str,
    #[serde(flatten)]
    job: &'a JobView,
}

/// A claimed delivery ready to send.
struct Ready {
    claimed: Claimed,
    target: Target,
    body: Bytes,
    event: String,
    secrets: Vec<String>,
}

/// What an attempt task hands back.
struct Report {
    claimed: Claimed,
    attempted: Attempted,
    elapsed: Duration,
}

/// Runs the delivery task until `shutdown` (see the module doc).
pub async fn run(db: Db, cfg: Arc<WebhookConfig>, waker: Waker, shutdown: CancellationToken) {
    let mut poll = tokio::time::interval(cfg.poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks: JoinSet<Report> = JoinSet::new();
    // Leases held by tasks in flight: given back if shutdown comes first.
    let mut held: HashMap<i64, String> = HashMap::new();
    let mut retry_at: Option<Instant> = None;
    let (mut claim_now, mut backlog) = (true, false);
    loop {
        if claim_now {
            // No room, or a claim that filled it: more may be due, so claim
            // again as soon as an attempt ends.
            let room = cfg.concurrency.saturating_sub(tasks.len());
            backlog = room == 0 || claim(&db, &cfg, room, &mut tasks, &mut held).await >= room;
        }
        gauge!(m::WEBHOOK_IN_FLIGHT).set(tasks.len() as f64);
        // Every branch but shutdown says whether to claim next turn.
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                let mut done = vec![r];
                while let Some(r) = tasks.try_join_next() {
                    done.push(r);
                }
                let scheduled = finish(&db, &cfg, done, &mut held).await;
                retry_at = earliest(retry_at, scheduled);
                claim_now = backlog;
            }
            () = waker.woken() => claim_now = true,
            _ = poll.tick() => {
                claim_now = true;
                match store::pending(&db).await {
                    Ok(n) => gauge!(m::WEBHOOK_PENDING).set(n as f64),
                    Err(e) => tracing::warn!(error = %e, "cannot count pending deliveries"),
                }
            }
            () = sleep_until(retry_at), if retry_at.is_some() => {
                retry_at = None;
                claim_now = true;
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let back: Vec<_> = held.drain().map(|(id, t)| (id, t, Next::Release)).collect();
    if !back.is_empty()
        && let Err(e) = store::record(&db, &back, now_ms()).await
    {
        tracing::warn!(error = %e, "cannot give back delivery leases; they will expire");
    }
    gauge!(m::WEBHOOK_IN_FLIGHT).set(0.0);
    tracing::debug!(released = back.len(), "webhook deliveries stopped");
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Claims up to `room` deliveries and starts their attempts; returns how
/// many were claimed.
async fn claim(
    db: &Db,
    cfg: &Arc<WebhookConfig>,
    room: usize,
    tasks: &mut JoinSet<Report>,
    held: &mut HashMap<i64, String>,
) -> usize {
    let lease_ms = i64::try_from(cfg.lease().as_millis()).unwrap_or(i64::MAX);
    let claimed = match store::claim(db, room, lease_ms, now_ms()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim deliveries");
            return 0;
        }
    };
    let n = claimed.len();
    if n == 0 {
        return 0;
    }
    let (ready, unsendable) = match prepare(db, claimed).await {
        Ok(p) => p,
        Err((e, claimed)) => {
            // Their leases expire and they are claimed again.
            tracing::warn!(error = %e, deliveries = claimed, "cannot prepare deliveries");
            return n;
        }
    };
    if !unsendable.is_empty() {
        counter!(m::WEBHOOK_DELIVERIES, "outcome" => "failed").increment(unsendable.len() as u64);
        if let Err(e) = store::record(db, &unsendable, now_ms()).await {
            tracing::warn!(error = %e, "cannot store delivery outcomes");
        }
    }
    for r in ready {
        held.insert(r.claimed.id, r.claimed.token.clone());
        let cfg = Arc::clone(cfg);
        tasks.spawn(async move {
            let started = Instant::now();
            let out = Outgoing {
                target: &r.target,
                body: r.body.clone(),
                secrets: &r.secrets,
                t: now_ms() / 1000,
                delivery_id: &delivery_id(r.claimed.id),
                event: &r.event,
            };
            let attempted = send::attempt(&out, &cfg).await;
            Report {
                claimed: r.claimed,
                attempted,
                elapsed: started.elapsed(),
            }
        });
    }
    n
}

type Prepared = (Vec<Ready>, Vec<(i64, String, Next)>);

/// The documents and secrets of `claimed` (two reads for the batch), and
/// the deliveries that cannot be sent at all: the job is gone, the key has
/// no secret, the stored URL no longer parses.
async fn prepare(db: &Db, claimed: Vec<Claimed>) -> Result<Prepared, (crate::db::DbError, usize)> {
    let n = claimed.len();
    let mut keys: Vec<&str> = claimed.iter().map(|c| c.key_id.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let secrets = store::secrets(db, &keys, now_ms())
        .await
        .map_err(|e| (e, n))?;
    let ids: Vec<&str> = claimed.iter().map(|c| c.job_id.as_str()).collect();
    let views: HashMap<String, JobView> = jobs::views(db, &ids)
        .await
        .map_err(|e| (e, n))?
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect();
    let (mut ready, mut unsendable) = (Vec::new(), Vec::new());
    for c in claimed {
        let fail = |error: String| Next::Failed {
            status: None,
            error,
        };
        let event = format!("job.{}", c.event);
        let built = match (views.get(&c.job_id), secrets.get(&c.key_id)) {
            (None, _) => Err("the job no longer exists".to_owned()),
            (_, None) => Err("the job's API key has no webhook secret (rotate it)".to_owned()),
            (Some(job), Some(s)) => Target::parse_unchecked(&c.url).and_then(|target| {
                let doc = Document { event: &event, job };
                serde_json::to_vec(&doc)
                    .map(|body| (target, Bytes::from(body), s.clone()))
                    .map_err(|e| format!("cannot encode the job: {e}"))
            }),
        };
        match built {
            Ok((target, body, secrets)) => ready.push(Ready {
                claimed: c,
                target,
                body,
                event,
                secrets,
            }),
            Err(e) => unsendable.push((c.id, c.token, fail(e))),
        }
    }
    Ok((ready, unsendable))
}

/// Counts and writes the reports; returns the earliest retry scheduled.
async fn finish(
    db: &Db,
    cfg: &WebhookConfig,
    done: Vec<Result<Report, tokio::task::JoinError>>,
    held: &mut HashMap<i64, String>,
) -> Option<Instant> {
    let now = now_ms();
    let mut rows = Vec::with_capacity(done.len());
    let mut retry_at: Option<i64> = None;
    for r in done {
        let Ok(r) = r else {
            // A panicked attempt: its lease expires and it is sent again.
            tracing::error!("delivery attempt task failed");
            continue;
        };
        held.remove(&r.claimed.id);
        let label = r.attempted.label();
        counter!(m::WEBHOOK_ATTEMPTS, "outcome" => label).increment(1);
        histogram!(m::WEBHOOK_ATTEMPT_DURATION, "outcome" => label).record(r.elapsed.as_secs_f64());
        let c = &r.claimed;
        let next = decide(
            &r.attempted,
            c.attempts,
            c.created_ms,
            now,
            cfg,
            rand::random(),
        );
        match &next {
            Next::Delivered { .. } => {
                counter!(m::WEBHOOK_DELIVERIES, "outcome" => "delivered").increment(1);
            }
            Next::Failed { error, .. } => {
                counter!(m::WEBHOOK_DELIVERIES, "outcome" => "failed").increment(1);
                tracing::warn!(delivery = c.id, job = %c.job_id, attempts = c.attempts, %error, "webhook delivery failed for good");
            }
            Next::Retry { at_ms, error, .. } => {
                retry_at = Some(retry_at.map_or(*at_ms, |a| a.min(*at_ms)));
                tracing::info!(delivery = c.id, job = %c.job_id, attempt = c.attempts, %error, "webhook attempt failed; will retry");
            }
            Next::Release => {}
        }
        rows.push((c.id, c.token.clone(), next));
    }
    if let Err(e) = store::record(db, &rows, now).await {
        // The leases expire and the deliveries are sent again.
        tracing::warn!(error = %e, deliveries = rows.len(), "cannot store delivery outcomes");
    }
    retry_at.map(|at| {
        let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
        Instant::now() + Duration::from_millis(wait)
    })
}

/// What an attempt means for its delivery: delivered on 2xx; failed for
/// good when the policy refused it (nothing was sent, and the same check
/// would refuse it again), when it was the `max_attempts`-th attempt, or
/// when the job ended `max_age` ago; else retried after the backoff of
/// `attempts` (base doubled per attempt, capped, jittered by `unit_random`).
pub(super) fn decide(
    a: &Attempted,
    attempts: i64,
    created_ms: i64,
    now_ms: i64,
    cfg: &WebhookConfig,
    unit_random: f64,
) -> Next {
    let (status, error) = match a {
        Attempted::Delivered(status) => return Next::Delivered { status: *status },
        Attempted::Status(s, text) => {
            let redirect = if (300..400).contains(s) {
                " (redirects are not followed)"
            } else {
                ""
            };
            (
                Some(*s),
                format!("the receiver answered {s}{redirect}: {text}"),
            )
        }
        Attempted::Failed(Failure::Refused, e) => {
            return Next::Failed {
                status: None,
                error: format!("refused by the webhook policy: {e}"),
            };
        }
        Attempted::Failed(_, e) => (None, e.clone()),
    };
    let age = Duration::from_millis(u64::try_from(now_ms - created_ms).unwrap_or(0));
    if attempts >= i64::from(cfg.max_attempts) || age >= cfg.max_age {
        return Next::Failed { status, error };
    }
    let wait = backoff(attempts, cfg.retry_base, cfg.retry_max, unit_random);
    Next::Retry {
        at_ms: now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2)),
        status,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> WebhookConfig {
        WebhookConfig {
            max_attempts: 3,
            max_age: Duration::from_secs(60),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(5),
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn two_hundreds_deliver_and_everything_else_retries_with_backoff() {
        let c = cfg();
        assert_eq!(
            decide(&Attempted::Delivered(204), 1, 0, 10, &c, 0.5),
            Next::Delivered { status: 204 }
        );
        // Attempt 1 failed at t = 10 s: the retry is 1-2 s later (equal
        // jitter of the 2 s base); attempt 2: 2-4 s; capped at 5 s.
        let status = Attempted::Status(500, "boom".into());
        let at = |attempts, r| match decide(&status, attempts, 0, 10_000, &c, r) {
            Next::Retry { at_ms, status, .. } => {
                assert_eq!(status, Some(500));
                at_ms - 10_000
            }
            other => panic!("{other:?}"),
        };
        assert_eq!((at(1, 0.0), at(1, 1.0)), (1000, 2000));
        assert_eq!((at(2, 0.0), at(2, 1.0)), (2000, 4000));
        let slow = WebhookConfig {
            max_attempts: 10,
            ..cfg()
        };
        let capped = decide(&status, 5, 0, 10_000, &slow, 1.0);
        assert!(
            matches!(capped, Next::Retry { at_ms: 15_000, .. }),
            "{capped:?}"
        );
        let timeout = Attempted::Failed(Failure::Timeout, "no answer within 10s".into());
        assert!(matches!(
            decide(&timeout, 1, 0, 10_000, &c, 0.5),
            Next::Retry { status: None, .. }
        ));
    }

    #[test]
    fn gives_up_after_max_attempts_or_max_age_and_at_once_when_refused() {
        let c = cfg();
        let status = Attempted::Status(302, "".into());
        match decide(&status, 3, 0, 10_000, &c, 0.5) {
            Next::Failed { status, error } => {
                assert_eq!(status, Some(302));
                assert!(error.contains("redirects are not followed"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(&status, 1, 0, 60_000, &c, 0.5),
            Next::Failed { .. }
        ));
        let refused = Attempted::Failed(Failure::Refused, "127.0.0.1 is loopback".into());
        match decide(&refused, 1, 0, 10, &c, 0.5) {
            Next::Failed { error, .. } => assert!(error.contains("policy"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
}
