//! One attempt: the worker call, the lease's heartbeat while it runs, and
//! what the answer means.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio_util::sync::CancellationToken;

use super::MAX_RESULT_BYTES;
use super::client::{Call, Client};
use crate::db::Db;
use crate::jobs::{self, Claimed};
use crate::limit::Ticket;

/// How a call ended.
#[derive(Debug)]
pub(super) enum Outcome {
    /// 2xx: the result.
    Done(String, Bytes),
    /// 503: every slot of the worker it reached was taken.
    Busy,
    /// Another 4xx: the input is bad; retrying cannot help.
    Permanent(String),
    /// 5xx, 408, 429 (`answered`), or a timeout or connection error (not
    /// answered): a retry may succeed.
    Retry {
        /// What went wrong.
        error: String,
        /// The worker answered (the call held a slot).
        answered: bool,
    },
    /// A heartbeat found the lease gone: another replica has the job, or
    /// it was cancelled.
    LeaseLost,
    /// Cancelled through this replica while the call ran.
    Cancelled,
    /// Shutdown came first.
    Released,
}

/// What an attempt hands back to its kind's loop.
pub(super) struct Report {
    pub job: Claimed,
    pub ticket: Ticket,
    pub outcome: Outcome,
    pub latency: Duration,
    /// When this replica claimed the job (kept across 503s, so a job that
    /// finds no slot for a third of its lease is given back).
    pub claimed: Instant,
    /// `X-Tandem-Instance`, `X-Tandem-Slots` of the answer.
    pub slots: Option<(String, u32)>,
}

/// What every attempt of a kind shares.
pub(super) struct Attempts {
    pub db: Db,
    pub client: Client,
    pub timeout: Duration,
    pub lease_ms: i64,
    pub heartbeat: Duration,
    /// Where a cancel reaches the call.
    pub cancels: super::Cancels,
}

impl Attempts {
    /// Runs `job`'s call until it ends, its lease is lost, or `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        job: Claimed,
        claimed: Instant,
        ticket: Ticket,
        shutdown: CancellationToken,
    ) -> Report {
        let started = Instant::now();
        let mut slots = None;
        let cancelled = self.cancels.start(&job.id);
        let outcome = {
            let call = self.call(&job, &mut slots);
            tokio::pin!(call);
            let mut beat = tokio::time::interval(self.heartbeat.max(Duration::from_millis(50)));
            beat.tick().await;
            loop {
                tokio::select! {
                    // An answer that is in wins over shutdown: it is stored.
                    biased;
                    o = &mut call => break o,
                    _ = beat.tick() => match jobs::heartbeat(&self.db, &job.id, &job.token, self.lease_ms).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(job = %job.id, "lease lost; abandoning the call");
                            break Outcome::LeaseLost;
                        }
                        Err(e) => tracing::warn!(job = %job.id, error = %e, "heartbeat failed"),
                    },
                    () = cancelled.cancelled() => {
                        tracing::info!(job = %job.id, "cancelled; abandoning the call");
                        break Outcome::Cancelled;
                    }
                    () = shutdown.cancelled() => break Outcome::Released,
                }
            }
        };
        self.cancels.end(&job.id);
        Report {
            job,
            ticket,
            outcome,
            latency: started.elapsed(),
            claimed,
            slots,
        }
    }

    async fn call(&self, job: &Claimed, slots: &mut Option<(String, u32)>) -> Outcome {
        let input = Bytes::from(job.input.clone());
        let call = Call {
            content_type: &job.input_type,
            job_id: &job.id,
            params: job.params.as_deref(),
        };
        let exchange = self.client.run(call, input, MAX_RESULT_BYTES);
        let answer = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => {
                return Outcome::Retry {
                    error: format!("worker did not answer within {:?}", self.timeout),
                    answered: false,
                };
            }
            Ok(Err(error)) => {
                return Outcome::Retry {
                    error,
                    answered: false,
                };
            }
            Ok(Ok(a)) => a,
        };
        slots.clone_from(&answer.slots);
        let status = answer.status;
        let body = answer.body;
        let text = || String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        if status.is_success() {
            Outcome::Done(answer.content_type, body)
        } else if status.as_u16() == 503 {
            Outcome::Busy
        } else if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Outcome::Permanent(format!("worker refused the input: {status}: {}", text()))
        } else {
            Outcome::Retry {
                error: format!("worker error: {status}: {}", text()),
                answered: true,
            }
        }
    }
}
