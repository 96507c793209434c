//! The HTTP surface.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/jobs` | 202, the job, `Location` |
//! | `GET /v1/jobs` | a page of the caller's jobs (`status`, `kind`, `limit`, `cursor`) |
//! | `GET /v1/jobs/{id}` | the job: state, attempts, times, result metadata; `?wait=30s` holds the answer until the job is final |
//! | `DELETE /v1/jobs/{id}` | cancels a queued or running job |
//! | `POST /v1/jobs/{id}/retry` | queues a failed or cancelled job again |
//! | `GET /v1/jobs/{id}/result` | the raw result with its content type |
//! | `GET /healthz`, `/readyz`, `/metrics` | liveness, readiness, Prometheus |
//!
//! Every `/v1` request is authenticated, then rate limited, then served.
//! A job belongs to the key that created it; any other key gets 404, the
//! same answer as for an id that does not exist, so ids cannot be probed.
//! Every error is JSON: `{"error": {"code": "...", "message": "..."}}`.
//!
//! `POST /v1/jobs` body: `{"kind": K, "input": "text"}` (sent to the worker
//! as `text/plain; charset=utf-8`), `{"kind": K, "input": {...}}` (any other
//! JSON value, sent as `application/json`), or `{"kind": K,
//! "input_base64": "...", "content_type": "image/png"}` for binary input.
//! An optional `"priority"` (an integer 0 to 9, default 0) orders claims
//! within the kind: lower runs first (422 `bad_priority` otherwise).
//! An optional `"callback_url"` (an `http://` URL the `[webhooks]` policy
//! allows; 422 `bad_callback_url` otherwise) is called when the job ends
//! ([`crate::webhook`]); without one, the key's default applies.
//! `Idempotency-Key` makes retries safe: the same key and body give the same
//! job (with `Idempotent-Replayed: true`), another body gives 409.
//!
//! The 202 is sent after the job's row is committed: the replica's
//! submission batcher ([`crate::submit`]) stores many jobs per transaction.
//! When its queue is full the answer is 503 `overloaded` with
//! `Retry-After: 1`; a failed batch answers 503 `database_unavailable`.
//!
//! `POST /v1/jobs` lives in `create` (server/create.rs); the other routes here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::counter;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::{Db, DbError, now_ms};
use crate::dispatcher::Signals;
use crate::jobs::{self, State as JobState};
use crate::keys::{AuthCache, Caller};
use crate::metrics as m;
use crate::ratelimit::{Decision, LimitError, Limiter};
use crate::reqlog::{Entry, RequestLog};
use crate::submit::Submitter;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    db: Db,
    config: Arc<Config>,
    /// The group commit of `POST /v1/jobs`.
    submitter: Submitter,
    /// Cancels and waits, shared with the dispatcher.
    signals: Signals,
    /// The coalescing rate limiter.
    limiter: Limiter,
    /// Recent authentications (≤ 1 s old).
    auth: AuthCache,
    log: RequestLog,
    metrics: Option<PrometheusHandle>,
    /// Cancelled when shutdown starts: `/readyz` turns 503.
    draining: CancellationToken,
}

impl AppState {
    /// Shared state for the routes. Starts the submission batcher and the
    /// rate limit coalescer, which end when the state is dropped.
    pub fn new(
        db: Db,
        config: Arc<Config>,
        signals: Signals,
        log: RequestLog,
        metrics: Option<PrometheusHandle>,
        draining: CancellationToken,
    ) -> AppState {
        AppState(Arc::new(Inner {
            submitter: Submitter::spawn(db.clone(), &config.db, signals.wakers.clone()),
            signals,
            limiter: Limiter::spawn(db.clone(), &config.db),
            auth: AuthCache::default(),
            db,
            config,
            log,
            metrics,
            draining,
        }))
    }
}

/// The client's address, put in each request's extensions by the
/// connection layer (from the PROXY header, else the peer).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The authenticated key id, put in the response's extensions for the log.
#[derive(Debug, Clone)]
struct KeyId(String);

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Boxed: most errors carry none, and it keeps `Result<_, ApiError>` small.
    headers: Box<HeaderMap>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Box::default(),
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        tracing::warn!(error = %e, "database error");
        database_unavailable()
    }
}

/// 503 `database_unavailable` (the error was logged where it happened).
fn database_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the database is unavailable; retry",
    )
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> ApiError {
        match e {
            LimitError::Busy => backed_up(),
            // Logged once per batch by the coalescer.
            LimitError::Db(_) => database_unavailable(),
        }
    }
}

/// 503 with `Retry-After: 1`: a batcher's queue is full, so the database
/// is not keeping up; refused at once rather than queued without bound.
fn backed_up() -> ApiError {
    let mut err = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        "too many requests are waiting for the database; retry",
    );
    err.headers
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    err
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut().extend(*self.headers);
        resp
    }
}

/// The routes, without a listener (tests may drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/jobs", get(list_jobs).post(create::create_job))
        .route("/v1/jobs/{id}", get(get_job).delete(lifecycle::cancel_job))
        .route("/v1/jobs/{id}/result", get(get_result))
        .route("/v1/jobs/{id}/retry", post(lifecycle::retry_job))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts, times and logs every request.
async fn observe(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let ts_ms = now_ms();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| route_name(p.as_str()));
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.to_string());
    let bytes_in = content_length(req.headers());
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let method_name = method_name(&method);
    m::request(route, method_name, status, elapsed);
    if status == 429 {
        counter!(m::RATE_LIMITED).increment(1);
    }
    s.0.log.log(Entry {
        ts_ms,
        key_id: resp.extensions().get::<KeyId>().map(|k| k.0.clone()),
        client,
        method: method_name.to_owned(),
        route: route.to_owned(),
        status,
        latency_us: i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX),
        bytes_in,
        bytes_out: axum::body::HttpBody::size_hint(resp.body())
            .exact()
            .map_or(-1, |n| n as i64),
    });
    resp
}

/// Route templates as fixed strings, for metric labels.
fn route_name(path: &str) -> &'static str {
    match path {
        "/v1/jobs" => "/v1/jobs",
        "/v1/jobs/{id}" => "/v1/jobs/{id}",
        "/v1/jobs/{id}/result" => "/v1/jobs/{id}/result",
        "/v1/jobs/{id}/retry" => "/v1/jobs/{id}/retry",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

fn content_length(h: &HeaderMap) -> i64 {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Authenticates and rate-limits; returns the caller and the headers to add.
async fn admit(s: &AppState, headers: &HeaderMap) -> Result<(Caller, HeaderMap), ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = s.0.auth.authenticate(&s.0.db, auth).await?.map_err(|e| {
        let mut err = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
        err.headers
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        err
    })?;
    let d =
        s.0.limiter
            .check(&caller.key_id, caller.rate, caller.burst)
            .await?;
    let rl = ratelimit_headers(&d);
    if !d.allowed {
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("rate limit exceeded; retry in {} s", d.retry_after_secs),
        );
        err.headers = Box::new(rl);
        err.headers
            .insert(header::RETRY_AFTER, HeaderValue::from(d.retry_after_secs));
        return Err(err);
    }
    Ok((caller, rl))
}

fn ratelimit_headers(d: &Decision) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("ratelimit-limit", HeaderValue::from(d.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(d.reset_secs));
    h
}

/// Adds the rate-limit headers and the key id (for the log) to an answer.
fn finish(key_id: &str, rl: HeaderMap, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    resp.headers_mut().extend(rl);
    resp.extensions_mut().insert(KeyId(key_id.to_owned()));
    resp
}

/// Runs `f` as an admitted caller; errors after admission still carry the
/// key id into the log.
macro_rules! admitted {
    ($s:expr, $headers:expr, |$caller:ident| $body:expr) => {{
        match admit(&$s, &$headers).await {
            Err(e) => e.into_response(),
            Ok(($caller, rl)) => {
                let key_id = $caller.key_id.clone();
                let r: Result<Response, ApiError> = async { $body }.await;
                finish(&key_id, rl, r.unwrap_or_else(IntoResponse::into_response))
            }
        }
    }};
}

// After `admitted!`, which they use (macros are in scope textually).
mod create;
mod lifecycle;

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such job")
}

#[derive(Deserialize)]
struct GetQuery {
    wait: Option<String>,
}

async fn get_job(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<GetQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    admitted!(s, headers, |caller| {
        let Query(q) = query
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
        let wait = lifecycle::wait_for(q.wait.as_deref(), s.0.config.lifecycle.wait_max)?;
        let job = match wait {
            None => jobs::get(&s.0.db, &caller.key_id, &id).await?,
            Some(d) => lifecycle::held(&s, &caller.key_id, &id, d).await?,
        };
        Ok(axum::Json(job.ok_or_else(not_found)?).into_response())
    })
}

async fn get_result(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admitted!(s, headers, |caller| {
        match jobs::result(&s.0.db, &caller.key_id, &id)
            .await?
            .ok_or_else(not_found)?
        {
            (_, Some((ct, body))) => {
                let ct = HeaderValue::from_str(&ct)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                Ok(([(header::CONTENT_TYPE, ct)], body).into_response())
            }
            (state, None) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_result",
                format!(
                    "job is {}; a result exists only when it is done",
                    state.as_str()
                ),
            )),
        }
    })
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list_jobs(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    admitted!(s, headers, |caller| {
        let Query(q) = query
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
        let bad = |code, msg: &str| ApiError::new(StatusCode::BAD_REQUEST, code, msg.to_owned());
        let status = q
            .status
            .as_deref()
            .map(|st| {
                JobState::parse(st).ok_or_else(|| {
                    bad(
                        "bad_status",
                        "status is one of queued, running, done, failed, cancelled",
                    )
                })
            })
            .transpose()?;
        let limit = match q.limit.as_deref() {
            None => 20,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| bad("bad_limit", "limit is 1-100"))?,
        };
        let cursor = q
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>()
                    .map_err(|_| bad("bad_cursor", "cursor must come from next_cursor"))
            })
            .transpose()?;
        let (page, next) = jobs::list(
            &s.0.db,
            &caller.key_id,
            status,
            q.kind.as_deref(),
            limit,
            cursor,
        )
        .await?;
        Ok(axum::Json(json!({ "jobs": page, "next_cursor": next })).into_response())
    })
}

async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.0.draining.is_cancelled() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "shutting down",
        )
        .into_response();
    }
    match s.0.db.ready().await {
        Ok(()) => axum::Json(json!({ "status": "ready" })).into_response(),
        Err(e) => {
            // The probe is unauthenticated and polled every second or so:
            // the driver's text (table names, hosts, SQL) goes to the log,
            // at most once in 10 s, and the answer is a fixed reason.
            if READYZ_WARNED.now() {
                tracing::warn!(error = %e, "/readyz: not ready (further ones in the next 10 s at debug)");
            } else {
                tracing::debug!(error = %e, "/readyz: not ready");
            }
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "database unavailable",
            )
            .into_response()
        }
    }
}

/// The last `/readyz` database warning.
static READYZ_WARNED: crate::ratewarn::RateWarn = crate::ratewarn::RateWarn::new();

async fn metrics(State(s): State<AppState>) -> Response {
    let Some(handle) = &s.0.metrics else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no_metrics",
            "no metrics recorder installed",
        )
        .into_response();
    };
    // Job gauges are sampled here: an indexed count of the queued and
    // running jobs of each kind per scrape, never a scan of the history.
    let kinds: Vec<&str> = s.0.config.kinds.keys().map(String::as_str).collect();
    match jobs::counts(&s.0.db, &kinds).await {
        Ok(rows) => {
            for (kind, state, n) in rows {
                m::job_count(&kind, state.as_str(), n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot sample job counts"),
    }
    (
        [(header::CONTENT_TYPE, tandem_service::metrics::CONTENT_TYPE)],
        handle.render(),
    )
        .into_response()
}
