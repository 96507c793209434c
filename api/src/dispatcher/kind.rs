//! One kind's loop: claim, send within the limit, record each answer.
//!
//! Everything the loop decides on lives in this one task: the limiter, the
//! jobs claimed and waiting here, the calls in flight. Calls and claims
//! run as their own tasks and report back, so an answer is acted on (its
//! slot reused) while a claim is still on its way.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::counter;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::attempt::{Attempts, Outcome, Report};
use super::backoff;
use super::client::Client;
use crate::config::{Config, KindConfig};
use crate::db::{Db, DbError, now_ms};
use crate::jobs::{self, Claimed, Finish, Finisher};
use crate::limit::{Limiter, Signal};
use crate::metrics as m;

/// Claimed jobs wait here for about this long before their call.
const AHEAD: Duration = Duration::from_millis(50);
/// Claimed jobs waiting here, at most.
const MAX_AHEAD: usize = 512;

/// A job claimed by this replica and not in flight.
struct Waiting {
    job: Claimed,
    since: Instant,
}

pub(super) struct KindLoop {
    db: Db,
    name: Arc<str>,
    kind: KindConfig,
    owner: String,
    lease_ms: i64,
    lease: Duration,
    poll_interval: Duration,
    finisher: Finisher,
    attempts: Arc<Attempts>,
    limiter: Limiter,
    gauges: m::KindGauges,
    waiting: VecDeque<Waiting>,
    in_flight: usize,
    calls: JoinSet<Report>,
    /// The claim on its way (at most one), and how many jobs it asked for.
    claiming: JoinSet<Result<Vec<Claimed>, DbError>>,
    asked: usize,
    /// The last claim found fewer jobs than it asked for: wait for a wake
    /// or the poll before claiming again.
    drained: bool,
    /// When a drained loop claims again without a wake: set once when it
    /// drains, so that the other events of the loop (answers, the chores
    /// tick) do not push it back.
    poll_at: Option<Instant>,
    /// A wake came while a claim was on its way: the claim may have read
    /// the queue before the new job was in it.
    woken: bool,
    /// The key of the last job claimed: the next claim's walk over keys
    /// starts after it.
    cursor: String,
}

impl KindLoop {
    pub(super) fn new(
        db: &Db,
        config: &Config,
        name: &str,
        kind: &KindConfig,
        owner: &str,
        finisher: Finisher,
    ) -> KindLoop {
        let lease_ms = i64::try_from(config.lease.as_millis()).unwrap_or(i64::MAX);
        KindLoop {
            db: db.clone(),
            name: name.into(),
            kind: kind.clone(),
            owner: owner.to_owned(),
            lease_ms,
            lease: config.lease,
            poll_interval: config.poll_interval,
            finisher,
            attempts: Arc::new(Attempts {
                db: db.clone(),
                client: Client::new(&kind.url, kind.connection_lifetime),
                timeout: kind.timeout,
                lease_ms,
                heartbeat: config.lease / 3,
                cancels: super::Cancels::default(),
            }),
            limiter: Limiter::new(kind.max_concurrency, rand::random()),
            gauges: m::KindGauges::new(name),
            waiting: VecDeque::new(),
            in_flight: 0,
            calls: JoinSet::new(),
            claiming: JoinSet::new(),
            asked: 0,
            drained: false,
            poll_at: None,
            woken: false,
            cursor: String::new(),
        }
    }

    /// Registers this loop's calls with `cancels` (before it runs).
    pub(super) fn cancelled_by(mut self, cancels: super::Cancels) -> KindLoop {
        if let Some(a) = Arc::get_mut(&mut self.attempts) {
            a.cancels = cancels;
        }
        self
    }

    pub(super) async fn run(mut self, waker: Arc<Notify>, shutdown: CancellationToken) {
        let mut chores = tokio::time::interval(Duration::from_secs(1));
        chores.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.send(&shutdown);
            self.maybe_claim();
            let resume = self.resume_at();
            tokio::select! {
                Some(r) = self.calls.join_next(), if !self.calls.is_empty() => match r {
                    Ok(report) => self.answer(report),
                    Err(e) => {
                        self.in_flight -= 1;
                        tracing::error!(kind = %self.name, error = %e, "attempt task failed");
                    }
                },
                Some(r) = self.claiming.join_next(), if !self.claiming.is_empty() => self.claimed(r),
                () = waker.notified() => {
                    self.drained = false;
                    self.woken = !self.claiming.is_empty();
                }
                () = sleep_until(self.poll_at), if self.drained => self.drained = false,
                () = sleep_until(resume), if resume.is_some() => {}
                _ = chores.tick() => self.chores(),
                () = shutdown.cancelled() => break,
            }
        }
        self.stop().await;
    }

    /// Sends waiting jobs while the limit allows.
    fn send(&mut self, shutdown: &CancellationToken) {
        let now = Instant::now();
        while !self.waiting.is_empty() {
            match self.limiter.next_send(self.in_flight, now) {
                Some(at) if at <= now => {}
                _ => break,
            }
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            let ticket = self.limiter.send(self.in_flight);
            self.in_flight += 1;
            let attempts = Arc::clone(&self.attempts);
            self.calls
                .spawn(attempts.run(w.job, w.since, ticket, shutdown.clone()));
        }
        self.gauges.set(
            self.limiter.limit(),
            self.in_flight,
            self.limiter.pool_slots(now),
        );
    }

    /// Room for more jobs here: the limit, and ready to go behind it the
    /// jobs the calls in flight are expected to finish within
    /// [`AHEAD`] (the limit × `AHEAD` / the smoothed call latency), less
    /// what is in flight or waiting. Short jobs need many ready (at 1 ms a
    /// call, a limit of 8 finishes 400 jobs in 50 ms, and claiming 13 at a
    /// time would make the claims the bottleneck); long ones need few, and
    /// a replica must not sit on leases another replica could run now.
    fn room(&self) -> usize {
        let limit = self.limiter.limit();
        let ahead = match self.limiter.srtt() {
            Some(rtt) if !rtt.is_zero() => {
                (limit as f64 * AHEAD.as_secs_f64() / rtt.as_secs_f64()).ceil() as usize
            }
            _ => limit / 2 + 1,
        };
        let want = limit + ahead.clamp(1, MAX_AHEAD);
        want.saturating_sub(self.in_flight + self.waiting.len())
    }

    fn maybe_claim(&mut self) {
        let room = self.room();
        if !self.claiming.is_empty() || self.drained || room == 0 {
            return;
        }
        let (db, name, owner, cursor) = (
            self.db.clone(),
            Arc::clone(&self.name),
            self.owner.clone(),
            self.cursor.clone(),
        );
        let (n, lease_ms) = (room.min(u32::MAX as usize) as u32, self.lease_ms);
        self.asked = room;
        self.claiming
            .spawn(async move { jobs::claim(&db, &name, &owner, n, lease_ms, &cursor).await });
    }

    fn claimed(&mut self, r: Result<Result<Vec<Claimed>, DbError>, tokio::task::JoinError>) {
        let jobs = match r {
            Ok(Ok(jobs)) => jobs,
            Ok(Err(e)) => {
                tracing::warn!(kind = %self.name, error = %e, "claim failed");
                // Try again at the next poll, not in a tight loop.
                self.drained = true;
                self.poll_at = Some(Instant::now() + self.poll_interval);
                return;
            }
            Err(e) => {
                tracing::error!(kind = %self.name, error = %e, "claim task failed");
                self.drained = true;
                self.poll_at = Some(Instant::now() + self.poll_interval);
                return;
            }
        };
        m::claim(&self.name, jobs.len());
        // Fewer than asked for: the queue is empty for now (or the rest is
        // another replica's); wait for a wake or the poll.
        self.drained = jobs.len() < self.asked && !self.woken;
        self.woken = false;
        if self.drained {
            self.poll_at = Some(Instant::now() + self.poll_interval);
        }
        if let Some(last) = jobs.last() {
            self.cursor.clone_from(&last.key_id);
        }
        let now = Instant::now();
        self.waiting
            .extend(jobs.into_iter().map(|job| Waiting { job, since: now }));
    }

    /// When the limiter's pause after a 503 ends, if jobs wait on it.
    fn resume_at(&self) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        let now = Instant::now();
        let at = self.limiter.next_send(self.in_flight, now)?;
        // Jitter, so replicas paused by the same full pool do not return
        // together.
        (at > now).then(|| at + Duration::from_micros(rand::random::<u64>() % 2_000))
    }

    fn answer(&mut self, r: Report) {
        self.in_flight -= 1;
        let now = Instant::now();
        if let Some((instance, slots)) = &r.slots {
            self.limiter.advertised(instance, *slots, now);
        }
        let (signal, outcome) = match &r.outcome {
            Outcome::Done(..) => (Some(Signal::Taken(r.latency)), "done"),
            Outcome::Busy => (Some(Signal::Full), "busy"),
            Outcome::Permanent(_) => (Some(Signal::Answered), "rejected"),
            Outcome::Retry { answered: true, .. } => (Some(Signal::Answered), "error"),
            Outcome::Retry {
                answered: false, ..
            } => (Some(Signal::Lost), "error"),
            Outcome::LeaseLost => (None, "lease_lost"),
            Outcome::Cancelled => (None, "cancelled"),
            Outcome::Released => (None, "released"),
        };
        if let Some(signal) = signal {
            self.limiter.answer(r.ticket, signal, self.in_flight, now);
        }
        m::dispatch(&self.name, outcome, r.latency);
        let job = r.job;
        let what = match r.outcome {
            Outcome::Done(content_type, body) => Finish::Complete {
                content_type,
                body: body.to_vec(),
            },
            Outcome::Busy => {
                // Every slot it reached was taken: it goes again after the
                // pause, first in line.
                self.waiting.push_front(Waiting {
                    job,
                    since: r.claimed,
                });
                return;
            }
            Outcome::Permanent(error) => Finish::Fail {
                error,
                retry_at_ms: None,
            },
            Outcome::Retry { error, .. } => {
                let retry_at_ms = (job.attempt < job.max_attempts).then(|| {
                    let d = backoff(
                        job.attempt,
                        self.kind.retry_base,
                        self.kind.retry_max,
                        rand::random(),
                    );
                    now_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2)
                });
                tracing::info!(job = %job.id, attempt = job.attempt, error = %error, retry = retry_at_ms.is_some(), "attempt failed");
                Finish::Fail { error, retry_at_ms }
            }
            // The lease is gone (or cleared by the cancel): nothing to write.
            Outcome::LeaseLost | Outcome::Cancelled => return,
            Outcome::Released => Finish::Release { delay_ms: 0 },
        };
        let last = match &what {
            Finish::Complete { .. } => Some("done"),
            Finish::Fail {
                retry_at_ms: None, ..
            } => Some("failed"),
            _ => None,
        };
        if let Some(state) = last {
            counter!(m::JOBS_FINISHED, "kind" => self.name.to_string(), "state" => state)
                .increment(1);
        }
        self.finisher.finish(job, what);
    }

    /// Once a second: close connections past their lifetime, and give back
    /// jobs that waited here too long.
    fn chores(&mut self) {
        self.attempts.client.prune();
        let too_long = self.lease / 3;
        let (stale, keep): (Vec<_>, Vec<_>) = self
            .waiting
            .drain(..)
            .partition(|w| w.since.elapsed() > too_long);
        self.waiting = keep.into();
        for w in stale {
            // The pool has had no slot for it for a while: another replica
            // (or this one, later) may do better than holding the lease.
            let delay_ms = 100 + (rand::random::<u64>() % 400) as i64;
            self.finisher.finish(w.job, Finish::Release { delay_ms });
        }
    }

    /// Shutdown: give back what waits here; in-flight calls see the token,
    /// report `Released`, and are given back too.
    async fn stop(mut self) {
        while let Some(r) = self.claiming.join_next().await {
            self.claimed(r);
        }
        while let Some(r) = self.calls.join_next().await {
            if let Ok(report) = r {
                // Released, or an answer that came first (a 503 puts its
                // job back in `waiting`).
                self.answer(report);
            }
        }
        for w in self.waiting.drain(..) {
            self.finisher.finish(w.job, Finish::Release { delay_ms: 0 });
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}
