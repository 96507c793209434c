//! The routes that move a job after it is stored, and `?wait=`:
//!
//! - `DELETE /v1/jobs/{id}`: a queued job is cancelled at once; a running
//!   one too, in the database, and its worker call is abandoned: at once
//!   when this replica runs it, else at the running replica's next
//!   heartbeat (a third of `lease`), which finds the lease gone. The fence
//!   refuses whatever that call reports. 200 with the job; 200 again for
//!   a job already cancelled (so a client may repeat the request); 409
//!   `already_finished` for a done or failed job.
//! - `POST /v1/jobs/{id}/retry`: a failed or cancelled job is queued
//!   again with the same id and a fresh set of attempts. 200 with the job;
//!   409 `not_retryable` for a queued, running or done job, 409
//!   `input_deleted` when `input_retention` has emptied its input.
//! - `GET /v1/jobs/{id}?wait=30s`: answered when the job is final (done,
//!   failed, cancelled) or the wait is over, whichever is first, with the
//!   job as it is then; at most `wait_max` (400 `bad_wait` above it).
//!   On shutdown a held request is answered at once (see `crate::wait`).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics::counter;
use tandem_service::config::duration::{format_duration, parse_duration};

use super::{ApiError, AppState, admit, finish, not_found};
use crate::jobs::{self, Cancel, JobView, Redrive};
use crate::metrics as m;

/// The `wait` query parameter: `None` when absent; a duration in the
/// config grammar (`"30s"`, `"500ms"`) or plain seconds (`"30"`), from 0
/// to `max`.
pub(super) fn wait_for(wait: Option<&str>, max: Duration) -> Result<Option<Duration>, ApiError> {
    let Some(text) = wait else {
        return Ok(None);
    };
    let parsed = match text.parse::<u64>() {
        Ok(secs) => Some(Duration::from_secs(secs)),
        Err(_) => parse_duration(text).ok(),
    };
    match parsed {
        Some(d) if d <= max => Ok(Some(d)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_wait",
            format!(
                "wait = {text:?}: give a duration from 0s to {} (the server's wait_max), such as \"30s\"",
                format_duration(max)
            ),
        )),
    }
}

/// `key_id`'s job `id` once it is final or `wait` has passed (or the
/// replica is shutting down), as it is then; `None` if there is no such
/// job.
pub(super) async fn held(
    s: &AppState,
    key_id: &str,
    id: &str,
    wait: Duration,
) -> Result<Option<JobView>, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    // Registered before the first read: see `crate::wait`.
    let watch = s.0.signals.waiters.watch(id);
    let mut held = false;
    loop {
        let woken = watch.notified();
        let Some(job) = jobs::get(&s.0.db, key_id, id).await? else {
            return Ok(None);
        };
        if job.status.is_final() {
            if held {
                counter!(m::WAITS, "outcome" => "final").increment(1);
            }
            return Ok(Some(job));
        }
        if tokio::time::Instant::now() >= deadline || s.0.draining.is_cancelled() {
            if held {
                counter!(m::WAITS, "outcome" => "timeout").increment(1);
            }
            return Ok(Some(job));
        }
        held = true;
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = s.0.draining.cancelled() => {}
        }
    }
}

/// `DELETE /v1/jobs/{id}` (see the module doc).
pub(super) async fn cancel_job(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admitted!(s, headers, |caller| {
        match jobs::cancel(&s.0.db, &caller.key_id, &id).await? {
            Cancel::Cancelled(job) => {
                s.0.signals.cancels.cancel(&id);
                s.0.signals.waiters.finished([id.as_str()]);
                s.0.signals.webhooks.wake();
                counter!(m::JOBS_FINISHED, "kind" => job.kind.clone(), "state" => "cancelled")
                    .increment(1);
                Ok(axum::Json(job).into_response())
            }
            Cancel::AlreadyCancelled(job) => Ok(axum::Json(job).into_response()),
            Cancel::Finished(job) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_finished",
                format!(
                    "job is {}; only a queued or running job can be cancelled",
                    job.status.as_str()
                ),
            )),
            Cancel::NotFound => Err(not_found()),
        }
    })
}

/// `POST /v1/jobs/{id}/retry` (see the module doc).
pub(super) async fn retry_job(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admitted!(s, headers, |caller| {
        match jobs::redrive(&s.0.db, &caller.key_id, &id).await? {
            Redrive::Queued(job) => {
                s.0.signals.wakers.wake(&job.kind);
                Ok(axum::Json(job).into_response())
            }
            Redrive::NotRetryable(job) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_retryable",
                format!(
                    "job is {}; only a failed or cancelled job can be retried",
                    job.status.as_str()
                ),
            )),
            Redrive::InputGone(_) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "input_deleted",
                "the job's input was deleted by input_retention; submit it again",
            )),
            Redrive::NotFound => Err(not_found()),
        }
    })
}
