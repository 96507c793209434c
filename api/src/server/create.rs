//! `POST /v1/jobs`: the request body, its checks in order, and the 202.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use metrics::counter;

use super::{ApiError, AppState, admit, backed_up, content_length, database_unavailable, finish};
use crate::config::{Config, KindConfig};
use crate::jobs::{self, Created, NewJob};
use crate::keys::Caller;
use crate::metrics as m;
use crate::params;
use crate::submit::SubmitError;
use crate::webhook::Target;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    kind: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    input_base64: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    /// Read as any JSON value, so a wrong type is a 422 `bad_priority`
    /// naming the field, not a 400 from the JSON parser.
    #[serde(default)]
    priority: Option<Value>,
    /// A JSON object forwarded to the worker (`crate::params`).
    #[serde(default)]
    params: Option<Value>,
    /// Any JSON value too, for a 422 `bad_callback_url` on a wrong type.
    #[serde(default)]
    callback_url: Option<Value>,
}

/// `POST /v1/jobs`. Checked in this order, each failure its own error
/// code: body size, `Idempotency-Key`, JSON, kind, input, content type,
/// the kind's input limit, priority, params, callback URL; then queued to the
/// submission batcher
/// and answered after its batch commits (or replayed, or refused as an
/// idempotency conflict, or 503 when the batcher is backed up).
pub(super) async fn create_job(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    admitted!(s, headers, |caller| {
        let bytes = read_body(body, &headers, s.0.config.max_request_bytes()).await?;
        let idem_key = idempotency_key(&headers)?;
        let req: CreateBody = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("invalid request body: {e}"),
            )
        })?;
        let kind = known_kind(&s.0.config, &req.kind)?;
        let (input, input_type) = job_input(req.input, req.input_base64, req.content_type)?;
        if input.len() as u64 > kind.max_input_bytes {
            return Err(too_large(kind.max_input_bytes));
        }
        let priority = priority(req.priority)?;
        let params = params::encode(req.params.as_ref()).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_params",
                e.to_string(),
            )
        })?;
        let callback_url = callback_url(req.callback_url, &caller, &s.0.config)?;
        let created =
            s.0.submitter
                .submit(NewJob {
                    key_id: caller.key_id.clone(),
                    kind: req.kind.clone(),
                    input,
                    input_type,
                    idem_key,
                    body_hash: Sha256::digest(&bytes).to_vec(),
                    max_attempts: kind.max_attempts,
                    priority,
                    params,
                    callback_url,
                })
                .await
                .map_err(|e| match e {
                    SubmitError::Busy => {
                        counter!(m::SUBMIT_REFUSED).increment(1);
                        backed_up()
                    }
                    SubmitError::Database | SubmitError::Stopped => database_unavailable(),
                })?;
        let (job, replayed) = match created {
            Created::New(j) => (j, false),
            Created::Replayed(j) => (j, true),
            Created::Conflict => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_conflict",
                    "this Idempotency-Key was used with a different body",
                ));
            }
        };
        Ok(accepted(&job, replayed))
    })
}

/// `priority`: an integer from 0 (runs first) to 9; absent or null is 0.
fn priority(v: Option<Value>) -> Result<i64, ApiError> {
    match v {
        None => Ok(0),
        Some(Value::Number(n)) if n.as_i64().is_some_and(|p| (0..=9).contains(&p)) => {
            Ok(n.as_i64().unwrap_or(0))
        }
        Some(other) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_priority",
            format!("priority = {other}: must be an integer from 0 (runs first) to 9 (last)"),
        )),
    }
}

/// `callback_url`: absent or null takes the key's default (checked when it
/// was set); else a string [`Target::parse`] accepts under the config's
/// policy, else 422 `bad_callback_url` saying what is wrong. A key without
/// a webhook secret cannot sign, so a URL is refused for it.
fn callback_url(
    v: Option<Value>,
    caller: &Caller,
    config: &Config,
) -> Result<Option<String>, ApiError> {
    let bad = |why: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_callback_url",
            format!("callback_url {why}"),
        )
    };
    let url = match v {
        None | Some(Value::Null) => caller.callback_url.clone(),
        Some(Value::String(s)) => Some(
            Target::parse(&s, &config.webhooks.policy)
                .map_err(bad)?
                .as_str()
                .to_owned(),
        ),
        Some(other) => return Err(bad(format!("= {other}: must be a string, an http:// URL"))),
    };
    if url.is_some() && !caller.webhook_secret {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_webhook_secret",
            "this API key has no webhook signing secret (it was made before webhooks): \
             the operator gives it one with `tandem api keys rotate-webhook-secret KEY`",
        ));
    }
    Ok(url)
}

/// The request body, at most `max` bytes: refused from `Content-Length`
/// alone when it says more, else while reading.
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    if usize::try_from(content_length(headers)).unwrap_or(usize::MAX) > max {
        return Err(too_large(max as u64));
    }
    Ok(Limited::new(body, max)
        .collect()
        .await
        .map_err(|_| too_large(max as u64))?
        .to_bytes())
}

/// The `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_idempotency_key",
                        "Idempotency-Key must be 1-255 visible ASCII characters",
                    )
                })
        })
        .transpose()
}

/// The configured kind `name`, or 422 listing the known ones.
fn known_kind<'c>(config: &'c Config, name: &str) -> Result<&'c KindConfig, ApiError> {
    config.kinds.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.kinds.keys().map(String::as_str).collect();
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_kind",
            format!("unknown kind {name:?}; known kinds: {}", known.join(", ")),
        )
    })
}

/// The job's input bytes and content type, from exactly one of `input`
/// (a JSON string is sent as text, any other value as JSON) and
/// `input_base64`; `content_type` overrides the default type.
fn job_input(
    input: Option<Value>,
    input_base64: Option<String>,
    content_type: Option<String>,
) -> Result<(Vec<u8>, String), ApiError> {
    let (input, input_type) = match (input, input_base64) {
        (Some(Value::String(t)), None) => (
            t.into_bytes(),
            content_type.unwrap_or_else(|| "text/plain; charset=utf-8".into()),
        ),
        (Some(Value::Null), None) | (None, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_input",
                "give \"input\" or \"input_base64\"",
            ));
        }
        (Some(v), None) => (
            v.to_string().into_bytes(),
            content_type.unwrap_or_else(|| "application/json".into()),
        ),
        (None, Some(b)) => (
            base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_base64",
                        format!("input_base64: {e}"),
                    )
                })?,
            content_type.unwrap_or_else(|| "application/octet-stream".into()),
        ),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "ambiguous_input",
                "give \"input\" or \"input_base64\", not both",
            ));
        }
    };
    if HeaderValue::from_str(&input_type).is_err() || input_type.len() > 255 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_content_type",
            "content_type is not a valid header value",
        ));
    }
    Ok((input, input_type))
}

/// 202 with the job and its `Location`; `Idempotent-Replayed: true` when
/// an earlier request with the same key made it.
fn accepted(job: &jobs::JobView, replayed: bool) -> Response {
    let location = format!("/v1/jobs/{}", job.id);
    let mut resp = (StatusCode::ACCEPTED, axum::Json(job)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("input larger than {limit} bytes"),
    )
}
