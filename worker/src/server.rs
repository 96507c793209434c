//! The HTTP surface: `POST /v1/run`, `GET /healthz`, `GET /readyz`,
//! `GET /metrics`.
//!
//! Admission comes first and costs nothing: a run takes a slot from a
//! semaphore with `try_acquire`, and when none is free the answer is 503 with
//! `Retry-After` *before the body is read*, so the dispatcher moves on to
//! another instance at once instead of queueing here. The slot is held by
//! the work itself: for thumbnail and text it moves into the blocking
//! thread, so a decode that outlived its timeout (a blocking thread cannot be
//! cancelled) still counts against the limit until it returns, and threads
//! cannot pile up without bound.
//!
//! Then the head is read: the content type (415), the job parameters of
//! [`crate::params`] (`X-Tandem-Params`, 422 `bad_param`) and, for
//! thumbnails without parameters, the query string (400), so a run refused
//! for any of these costs no upload. The body is read last, within the
//! kind's byte limit (413) and its timeout (408), so a stalled upload cannot
//! keep a slot.
//!
//! Status codes tell the dispatcher what to do: 4xx means the input is bad
//! and retrying cannot help (408 excepted); 503 means "busy or stopping, try another
//! instance"; 502/504/500 mean this run failed and a retry may succeed.
//! Errors are JSON: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Every answer of `/v1/run` (also 405 and the 503s) says how many slots this
//! instance has ([`SLOTS_HEADER`]) and which process answered
//! ([`INSTANCE_HEADER`]), so the dispatcher, which only sees the balancer's
//! address, can tell instances apart and size its limit; `/healthz` reports
//! the same plus the slots in use.
//!
//! Shutdown, when the token is cancelled, in this order: the accept loop
//! stops and the listening socket is closed (new connections are refused);
//! runs are refused with 503 `Connection: close` and `/readyz` turns 503;
//! then every connection is told to shut down gracefully. hyper closes an
//! idle kept-alive connection at once, and on a connection with a request
//! in flight it answers that request with `Connection: close` and closes
//! after it. A run whose head was read before the connection heard of the
//! shutdown is refused by the handler, and its `Connection: close` makes
//! hyper close the connection after the answer, so a client's pooled
//! connection is dropped either way and its next request opens a new one,
//! which the balancer sends to another instance. A connection with only part
//! of a first request is closed at once ([`crate::conn`]), so a half-sent
//! request cannot hold shutdown up. [`serve`] returns once every connection
//! has closed. A 503 *busy* keeps the connection open: the
//! instance is healthy, only full for now.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::middleware::map_response_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tandem_service::accept::Acceptor;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, ConfigError, Kind, ThumbnailConfig};
use crate::conn;
use crate::kinds::{self, RunError};
use crate::metrics as m;
use crate::params::{self, ParamError, Params};

/// On every `/v1/run` answer: this instance's `limits.concurrency`.
pub const SLOTS_HEADER: HeaderName = HeaderName::from_static("x-tandem-slots");
/// On every `/v1/run` answer: this process's [`AppState::instance`] id.
pub const INSTANCE_HEADER: HeaderName = HeaderName::from_static("x-tandem-instance");

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    /// The one kind this instance serves.
    kind: Kind,
    /// The validated configuration.
    config: Config,
    /// One permit per concurrent run (`limits.concurrency`).
    slots: Arc<Semaphore>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    metrics: Option<PrometheusHandle>,
    /// Cancelled when shutdown starts: readiness turns off, runs are refused.
    draining: CancellationToken,
    /// [`SLOTS_HEADER`]'s value, rendered once.
    slots_value: HeaderValue,
    /// [`INSTANCE_HEADER`]'s value: 16 random hex digits chosen at start.
    instance: HeaderValue,
}

impl AppState {
    /// State for an instance serving `kind`; fails if the config has no
    /// settings for it.
    pub fn new(
        config: Config,
        kind: Kind,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Self, ConfigError> {
        config.check_kind(kind)?;
        let slots = Arc::new(Semaphore::new(config.limits.concurrency as usize));
        // Random rather than hostname:port: the listen address may be a
        // wildcard and hostnames repeat across containers, while 64 random
        // bits do not repeat among the instances one dispatcher sees. A
        // restarted process is a new instance with all its slots free, so
        // a new id is the truth, not a loss.
        let instance = format!("{:016x}", rand::random::<u64>());
        Ok(AppState(Arc::new(Inner {
            kind,
            slots_value: HeaderValue::from(config.limits.concurrency),
            config,
            slots,
            metrics,
            draining: CancellationToken::new(),
            // Cannot fail: hex digits are visible ASCII.
            instance: HeaderValue::from_str(&instance).expect("hex is a header value"),
        })))
    }

    /// The kind served.
    pub fn kind(&self) -> Kind {
        self.0.kind
    }

    /// This process's id, sent as [`INSTANCE_HEADER`] and in `/healthz`:
    /// 16 lowercase hex digits chosen at random when the state is made, the
    /// same for the life of the process.
    pub fn instance(&self) -> &str {
        // Cannot fail: made from hex digits in `new`.
        self.0.instance.to_str().expect("hex")
    }

    /// Starts refusing runs (503 `Connection: close`) and reporting not
    /// ready, as [`serve`] does when shutdown starts.
    pub fn start_draining(&self) {
        self.0.draining.cancel();
    }

    /// Slots taken now: runs in flight, counting a timed-out decode whose
    /// thread has not returned yet.
    fn in_flight(&self) -> u32 {
        let free = u32::try_from(self.0.slots.available_permits()).unwrap_or(u32::MAX);
        self.0.config.limits.concurrency.saturating_sub(free)
    }
}

/// The routes, without a listener (tests may drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    let run_route = post(run).layer(map_response_with_state(state.clone(), advertise));
    Router::new()
        .route("/v1/run", run_route)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .with_state(state)
}

/// Serves on an already bound `listener` until `shutdown` is cancelled,
/// then drains as the module doc describes and returns once every
/// connection has closed.
///
/// Connections are accepted by `tandem_service::accept::Acceptor` (running
/// out of descriptors backs off, it never ends the server) and each is
/// served by hyper's HTTP/1.1 connection ([`crate::conn`], with the
/// header-read and idle timeouts), so the order of the shutdown steps is
/// ours, not a library's.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let draining = state.0.draining.clone();
    tracing::info!(
        kind = %state.kind(),
        addr = %listener.local_addr()?,
        concurrency = state.0.config.limits.concurrency,
        instance = state.instance(),
        "worker listening"
    );
    let limits = &state.0.config.limits;
    let timeouts = conn::Timeouts {
        header_read: limits.header_read_timeout,
        idle: limits.idle_timeout,
    };
    let app = router(state);
    let conns = TaskTracker::new();
    let mut acceptor = Acceptor::new(listener, shutdown, "worker");
    while let Some((stream, peer)) = acceptor.next().await {
        let draining = draining.clone();
        conns.spawn(conn::serve(stream, peer, app.clone(), draining, timeouts));
    }
    // Closes the listening socket: connections not yet accepted are refused.
    drop(acceptor);
    // Refuse runs first, then tell the connections: a run read from here on
    // gets 503 with `Connection: close` whichever of the two it meets first.
    draining.cancel();
    tracing::info!(
        connections = conns.len(),
        "shutdown: no new connections, closing idle ones, finishing in-flight runs"
    );
    conns.close();
    conns.wait().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// Adds [`SLOTS_HEADER`] and [`INSTANCE_HEADER`] to a `/v1/run` answer.
async fn advertise(State(s): State<AppState>, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(SLOTS_HEADER, s.0.slots_value.clone());
    h.insert(INSTANCE_HEADER, s.0.instance.clone());
    resp
}

/// Alive, with the capacity the dispatcher can count on: `slots` (this
/// instance's concurrency), `in_flight` (slots taken now) and `instance`.
async fn healthz(State(s): State<AppState>) -> Response {
    let body = serde_json::json!({
        "status": "ok",
        "kind": s.kind().as_str(),
        "slots": s.0.config.limits.concurrency,
        "in_flight": s.in_flight(),
        "instance": s.instance(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// Ready = not stopping and a slot is free right now.
async fn readyz(State(s): State<AppState>) -> Response {
    if s.0.draining.is_cancelled() {
        status_json(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", s.kind())
    } else if s.0.slots.available_permits() == 0 {
        status_json(StatusCode::SERVICE_UNAVAILABLE, "busy", s.kind())
    } else {
        status_json(StatusCode::OK, "ready", s.kind())
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    match &s.0.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, tandem_service::metrics::CONTENT_TYPE)],
            h.render(),
        )
            .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no metrics recorder is installed in this process".into(),
        ),
    }
}

fn status_json(code: StatusCode, status: &str, kind: Kind) -> Response {
    let body = serde_json::json!({ "status": status, "kind": kind.as_str() });
    (code, axum::Json(body)).into_response()
}

/// The thumbnail box, from the query string (runs without job parameters).
#[derive(Debug, Default, Deserialize)]
struct BoxQuery {
    width: Option<u32>,
    height: Option<u32>,
}

/// A refusal before or around the work.
enum Refusal {
    /// No slot free.
    Busy,
    /// Shutdown has started.
    Draining,
    /// Body over the kind's byte limit.
    TooLarge(u64),
    /// The body could not be read (client gone, bad framing).
    BadBody(String),
    /// The body did not arrive within the kind's timeout.
    BodyTimeout(std::time::Duration),
    /// The work said no.
    Run(RunError),
}

impl Refusal {
    fn outcome(&self) -> &'static str {
        match self {
            Refusal::Busy => "busy",
            Refusal::Draining => "shutting_down",
            Refusal::TooLarge(_) => "too_large",
            Refusal::BadBody(_) => "bad_body",
            Refusal::BodyTimeout(_) => "body_timeout",
            Refusal::Run(e) => e.code(),
        }
    }
}

impl From<RunError> for Refusal {
    fn from(e: RunError) -> Self {
        Refusal::Run(e)
    }
}

/// A concurrency slot; releasing it moves the in-flight gauge back.
struct Slot {
    _permit: OwnedSemaphorePermit,
    kind: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        m::in_flight(self.kind, -1.0);
    }
}

async fn run(State(s): State<AppState>, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    let kind = s.kind().as_str();
    let started = Instant::now();
    let result = admit_and_run(&s, &uri, &headers, body).await;
    let outcome = result.as_ref().map_or_else(Refusal::outcome, |_| "ok");
    let elapsed = match &result {
        Err(Refusal::Busy | Refusal::Draining) => None,
        _ => Some(started.elapsed()),
    };
    m::record_run(kind, outcome, elapsed);
    match result {
        Ok((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(refusal) => {
            tracing::debug!(kind, outcome, "run refused or failed");
            refusal_response(&s, refusal)
        }
    }
}

async fn admit_and_run(
    s: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<(HeaderValue, Bytes), Refusal> {
    if s.0.draining.is_cancelled() {
        return Err(Refusal::Draining);
    }
    let permit = Arc::clone(&s.0.slots)
        .try_acquire_owned()
        .map_err(|_| Refusal::Busy)?;
    let kind = s.kind();
    m::in_flight(kind.as_str(), 1.0);
    let slot = Slot {
        _permit: permit,
        kind: kind.as_str(),
    };

    let cfg = &s.0.config;
    let work = prepare(kind, cfg, uri, headers)?;

    let limit = cfg.max_input_bytes(kind);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Refusal::TooLarge(limit));
    }
    // The slot is already taken: a client that stalls mid-upload must not
    // hold it for longer than a run could.
    let timeout = cfg.timeout(kind);
    let input = tokio::time::timeout(timeout, read_body(body, limit))
        .await
        .map_err(|_| Refusal::BodyTimeout(timeout))??;
    Ok(execute(work, slot, input, cfg, timeout).await?)
}

/// What one run is asked to do, read from the request's head.
enum Work {
    /// The box and the encoding.
    Thumbnail(kinds::thumbnail::Request),
    /// How many words to list.
    Text { top: usize },
    /// The `X-Tandem-Params` value for the command's environment.
    Exec { params: Option<String> },
}

/// Reads the run's content type, job parameters (`X-Tandem-Params`) and,
/// for thumbnails, query string: all from the head, so a refused run costs
/// no upload.
fn prepare(kind: Kind, cfg: &Config, uri: &Uri, headers: &HeaderMap) -> Result<Work, RunError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not ASCII)"));
    match kind {
        Kind::Thumbnail => kinds::thumbnail::check_content_type(content_type)?,
        Kind::Text => kinds::text::check_content_type(content_type)?,
        Kind::Exec => {}
    }
    let params = Params::from_headers(headers)?;
    Ok(match kind {
        Kind::Thumbnail => {
            Work::Thumbnail(thumbnail_request(uri, params.as_ref(), &cfg.thumbnail)?)
        }
        Kind::Text => Work::Text {
            top: params
                .as_ref()
                .map_or(Ok(kinds::text::TOP_WORDS), params::text_top)?,
        },
        Kind::Exec => Work::Exec {
            params: params.map(|p| p.raw().to_owned()),
        },
    })
}

/// The thumbnail asked for: from the job parameters when the header is
/// there, else from the query string (`?width=W&height=H`, a PNG), as before
/// parameters existed. A size in both is refused rather than one of them
/// silently ignored.
fn thumbnail_request(
    uri: &Uri,
    params: Option<&Params>,
    cfg: &ThumbnailConfig,
) -> Result<kinds::thumbnail::Request, RunError> {
    let Query(q) = Query::<BoxQuery>::try_from_uri(uri)
        .map_err(|e| RunError::BadParameter(format!("bad query string: {e}")))?;
    match params {
        None => Ok(kinds::thumbnail::Request {
            bbox: kinds::thumbnail::requested_box(q.width, q.height, cfg)?,
            output: kinds::thumbnail::Output::Png,
        }),
        Some(_) if q.width.is_some() || q.height.is_some() => Err(ParamError::WithQuery.into()),
        Some(p) => Ok(params::thumbnail(p, cfg)?),
    }
}

/// Does `work` on `input`, holding `slot` until it is done (for thumbnail
/// and text, until its blocking thread returns, even past `timeout`).
async fn execute(
    work: Work,
    slot: Slot,
    input: Bytes,
    cfg: &Config,
    timeout: std::time::Duration,
) -> Result<(HeaderValue, Bytes), RunError> {
    match work {
        Work::Thumbnail(req) => {
            let tcfg = cfg.thumbnail.clone();
            let image = blocking(slot, timeout, move || {
                kinds::thumbnail::thumbnail(&input, &tcfg, &req)
            })
            .await?;
            let ct = HeaderValue::from_static(req.output.content_type());
            Ok((ct, image.into()))
        }
        Work::Text { top } => {
            let stats = blocking(slot, timeout, move || kinds::text::analyze(&input, top)).await?;
            let json = serde_json::to_vec(&stats)
                .map_err(|e| RunError::Internal(format!("cannot encode JSON: {e}")))?;
            Ok((HeaderValue::from_static("application/json"), json.into()))
        }
        Work::Exec { params } => {
            // Cannot fail: AppState::new checked the exec section exists.
            let ecfg = cfg.exec.as_ref().expect("exec configured");
            let out = kinds::exec::run(ecfg, &input, params.as_deref()).await?;
            drop(slot);
            let ct = HeaderValue::from_str(ecfg.content_type.as_str())
                .map_err(|e| RunError::Internal(format!("content type: {e}")))?;
            Ok((ct, out.into()))
        }
    }
}

/// Reads the whole body, refusing past `limit` bytes.
async fn read_body(body: Body, limit: u64) -> Result<Bytes, Refusal> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, cap).await.map_err(|e| {
        // The limit error is buried in the source chain of axum's error.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return Refusal::TooLarge(limit);
            }
            source = err.source();
        }
        Refusal::BadBody(e.to_string())
    })
}

/// Runs `work` on a blocking thread that owns `slot`, waiting at most
/// `timeout` for it.
async fn blocking<T: Send + 'static>(
    slot: Slot,
    timeout: std::time::Duration,
    work: impl FnOnce() -> Result<T, RunError> + Send + 'static,
) -> Result<T, RunError> {
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        work()
    });
    match tokio::time::timeout(timeout, task).await {
        Err(_elapsed) => Err(RunError::Timeout(timeout)),
        Ok(Err(join)) => Err(RunError::Internal(format!("worker thread failed: {join}"))),
        Ok(Ok(result)) => result,
    }
}

fn refusal_response(s: &AppState, refusal: Refusal) -> Response {
    let code = refusal.outcome();
    match refusal {
        Refusal::Busy | Refusal::Draining => {
            let draining = matches!(refusal, Refusal::Draining);
            let message = if draining {
                "this instance is shutting down; try another instance".to_owned()
            } else {
                format!(
                    "all {} slots are busy; try another instance",
                    s.0.config.limits.concurrency
                )
            };
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
            let h = resp.headers_mut();
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(s.0.config.limits.retry_after_secs),
            );
            // Stopping: the client must not send its next run down this
            // connection (hyper closes it after this answer). Busy: the
            // connection stays, a slot frees soon.
            if draining {
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
        Refusal::TooLarge(limit) => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            format!("request body is larger than the {limit}-byte limit of this kind"),
        ),
        Refusal::BadBody(why) => error(
            StatusCode::BAD_REQUEST,
            code,
            format!("cannot read request body: {why}"),
        ),
        Refusal::BodyTimeout(t) => error(
            StatusCode::REQUEST_TIMEOUT,
            code,
            format!("request body did not arrive within {t:?}"),
        ),
        Refusal::Run(e) => error(status_of(&e), code, e.to_string()),
    }
}

/// The HTTP status of a failed run; see the module doc for the reasoning.
pub fn status_of(e: &RunError) -> StatusCode {
    match e {
        RunError::UnsupportedType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        RunError::BadParameter(_) => StatusCode::BAD_REQUEST,
        RunError::BadParam(_)
        | RunError::Undecodable(_)
        | RunError::TooManyPixels { .. }
        | RunError::InvalidUtf8 { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        RunError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        RunError::CommandFailed { .. } | RunError::OutputTooLarge { .. } => StatusCode::BAD_GATEWAY,
        RunError::Spawn { .. } | RunError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `{"error": {"code": ..., "message": ...}}` with `status`.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}
