//! The dispatcher: in every replica, one loop per job kind claims runnable
//! jobs, calls the kind's worker pool, and records what happened.
//!
//! - Per-kind queues and concurrency: each kind has its own loop and its own
//!   semaphore of `concurrency` slots, so a kind of long jobs can fill its
//!   slots without delaying any other kind.
//! - Leases: a claim holds a job for `lease`; while the worker call runs, a
//!   heartbeat renews it every third of the lease. If a renewal finds the
//!   lease gone (this replica stalled past it and another one took the job),
//!   the call is abandoned: the fencing token would refuse its result anyway.
//! - A replica that dies leaves leases that expire; any replica's next claim
//!   takes those jobs again (a new attempt, a new token).
//! - Outcomes: 2xx stores the result; 503 means "busy": the job is put back
//!   at once without counting the attempt; other 4xx mean the input is bad
//!   and retrying cannot help: failed now; 5xx, timeouts and connection
//!   errors are retried with exponential backoff and jitter until
//!   `max_attempts`, then the job fails with the last error.
//! - Shutdown: stop claiming, abandon in-flight calls, release their leases
//!   so another replica can run them at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::header::CONTENT_TYPE;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, KindConfig};
use crate::db::{Db, now_ms};
use crate::jobs::{self, Claimed};
use crate::metrics as m;

/// Largest worker answer stored as a result.
pub const MAX_RESULT_BYTES: usize = 64 * 1024 * 1024;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Wakes a kind's loop when this replica accepted a job, so a new job does
/// not wait for the next poll. Other replicas find it by polling.
#[derive(Clone, Default)]
pub struct Wakers(Arc<HashMap<String, Arc<Notify>>>);

impl Wakers {
    /// One waker per configured kind.
    pub fn new(config: &Config) -> Wakers {
        Wakers(Arc::new(
            config
                .kinds
                .keys()
                .map(|k| (k.clone(), Arc::new(Notify::new())))
                .collect(),
        ))
    }

    /// A job of `kind` was queued.
    pub fn wake(&self, kind: &str) {
        if let Some(n) = self.0.get(kind) {
            n.notify_one();
        }
    }
}

/// The delay before retry number `attempt` (1 = the first retry): the base
/// doubled each time, capped, and "equal jitter" (uniform in the upper half)
/// so replicas that failed together do not retry together.
pub fn backoff(attempt: i64, base: Duration, max: Duration, unit_random: f64) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    full / 2 + full.mul_f64(unit_random.clamp(0.0, 1.0) / 2.0)
}

/// Runs every kind's loop until `shutdown`; returns when leases are released.
pub async fn run(
    db: Db,
    config: Arc<Config>,
    owner: String,
    wakers: Wakers,
    shutdown: CancellationToken,
) {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let mut loops = JoinSet::new();
    for (name, kind) in &config.kinds {
        let waker = wakers.0.get(name).cloned().unwrap_or_default();
        loops.spawn(kind_loop(
            db.clone(),
            Arc::clone(&config),
            name.clone(),
            kind.clone(),
            owner.clone(),
            client.clone(),
            waker,
            shutdown.clone(),
        ));
    }
    while loops.join_next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)]
async fn kind_loop(
    db: Db,
    config: Arc<Config>,
    name: String,
    kind: KindConfig,
    owner: String,
    client: HttpClient,
    waker: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(kind.concurrency as usize));
    let lease_ms = i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX);
    let mut attempts = JoinSet::new();
    let name: Arc<str> = name.into();
    loop {
        // Wait for a free slot first: claiming more than we can run would
        // hold leases other replicas could use.
        let first = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = shutdown.cancelled() => break,
        };
        if let Err(e) = jobs::fail_exhausted(&db, &name).await {
            tracing::warn!(kind = %name, error = %e, "cannot fail exhausted jobs");
        }
        let want = 1 + slots.available_permits() as u32;
        let claimed = match jobs::claim(&db, &name, &owner, want, lease_ms).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(kind = %name, error = %e, "claim failed");
                Vec::new()
            }
        };
        if claimed.is_empty() {
            drop(first);
            tokio::select! {
                () = waker.notified() => {}
                () = tokio::time::sleep(config.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
            // Reap finished attempts so the set does not grow.
            while attempts.try_join_next().is_some() {}
            continue;
        }
        let mut first = Some(first);
        for job in claimed {
            let permit = match first.take() {
                Some(p) => p,
                // Cannot block long: we claimed at most the free slots, and
                // only this loop takes them.
                None => match Arc::clone(&slots).acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let attempt = Attempt {
                db: db.clone(),
                kind: kind.clone(),
                name: Arc::clone(&name),
                client: client.clone(),
                lease_ms,
                heartbeat: config.lease / 3,
            };
            let stop = shutdown.clone();
            attempts.spawn(async move {
                attempt.run(job, stop).await;
                drop(permit);
            });
        }
        while attempts.try_join_next().is_some() {}
    }
    // Shutdown: every attempt sees the token, releases its lease and ends.
    while attempts.join_next().await.is_some() {}
}

struct Attempt {
    db: Db,
    kind: KindConfig,
    name: Arc<str>,
    client: HttpClient,
    lease_ms: i64,
    heartbeat: Duration,
}

/// How one worker call ended.
enum Outcome {
    Done(String, Vec<u8>),
    Busy,
    Permanent(String),
    Retry(String),
}

impl Attempt {
    async fn run(self, job: Claimed, shutdown: CancellationToken) {
        let started = Instant::now();
        let call = self.call(&job);
        tokio::pin!(call);
        let mut beat = tokio::time::interval(self.heartbeat.max(Duration::from_millis(50)));
        beat.tick().await;
        let outcome = loop {
            tokio::select! {
                o = &mut call => break Some(o),
                _ = beat.tick() => match jobs::heartbeat(&self.db, &job.id, &job.token, self.lease_ms).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(job = %job.id, "lease lost; abandoning the call");
                        m::dispatch(&self.name, "lease_lost", started.elapsed());
                        return;
                    }
                    Err(e) => tracing::warn!(job = %job.id, error = %e, "heartbeat failed"),
                },
                () = shutdown.cancelled() => break None,
            }
        };
        let result = match outcome {
            None => {
                m::dispatch(&self.name, "released", started.elapsed());
                jobs::release(&self.db, &job, 0).await
            }
            Some(Outcome::Done(ct, body)) => {
                m::dispatch(&self.name, "done", started.elapsed());
                jobs::complete(&self.db, &job, &ct, body).await
            }
            Some(Outcome::Busy) => {
                m::dispatch(&self.name, "busy", started.elapsed());
                // Every instance of the kind is busy: try again shortly,
                // jittered so replicas do not return together.
                jobs::release(&self.db, &job, 100 + (rand::random::<u64>() % 400) as i64).await
            }
            Some(Outcome::Permanent(e)) => {
                m::dispatch(&self.name, "rejected", started.elapsed());
                jobs::fail(&self.db, &job, &e, None).await
            }
            Some(Outcome::Retry(e)) => {
                m::dispatch(&self.name, "error", started.elapsed());
                let retry_at = (job.attempt < job.max_attempts).then(|| {
                    let d = backoff(
                        job.attempt,
                        self.kind.retry_base,
                        self.kind.retry_max,
                        rand::random(),
                    );
                    now_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
                });
                tracing::info!(job = %job.id, attempt = job.attempt, error = %e, retry = retry_at.is_some(), "attempt failed");
                jobs::fail(&self.db, &job, &e, retry_at).await
            }
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %job.id, "lease lost before the outcome was stored; dropped")
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot store the outcome; the lease will expire")
            }
        }
    }

    async fn call(&self, job: &Claimed) -> Outcome {
        let req = Request::post(format!("{}/v1/run", self.kind.url))
            .header(CONTENT_TYPE, job.input_type.as_str())
            .header("x-tandem-job", job.id.as_str())
            .body(Full::new(Bytes::from(job.input.clone())));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Permanent(format!("cannot build the request: {e}")),
        };
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("worker call failed: {e}"))?;
            let status = resp.status();
            let ct = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream")
                .to_owned();
            let body = Limited::new(resp.into_body(), MAX_RESULT_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the worker's answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, ct, body))
        };
        match tokio::time::timeout(self.kind.timeout, exchange).await {
            Err(_) => Outcome::Retry(format!(
                "worker did not answer within {:?}",
                self.kind.timeout
            )),
            Ok(Err(e)) => Outcome::Retry(e),
            Ok(Ok((status, ct, body))) => {
                let text = || String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
                if status.is_success() {
                    Outcome::Done(ct, body.to_vec())
                } else if status.as_u16() == 503 {
                    Outcome::Busy
                } else if status.is_client_error()
                    && status.as_u16() != 408
                    && status.as_u16() != 429
                {
                    Outcome::Permanent(format!("worker refused the input: {status}: {}", text()))
                } else {
                    Outcome::Retry(format!("worker error: {status}: {}", text()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_in_the_upper_half() {
        let (b, max) = (Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(backoff(1, b, max, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(1, b, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, b, max, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(10, b, max, 1.0), max);
        assert_eq!(backoff(1000, b, max, 0.0), max / 2);
    }
}
