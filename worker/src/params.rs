//! Job parameters: the `X-Tandem-Params` request header, read and checked
//! per kind.
//!
//! The contract with the API (`POST /v1/jobs {"kind", "input", "params"}`):
//! the API stores the job's `params` object and sends it on every call of
//! `POST /v1/run` as `X-Tandem-Params: <the object as compact JSON>`, every
//! non-ASCII character escaped as `\uXXXX` so the value is visible ASCII.
//! No header means no parameters: the run is exactly what it was before
//! parameters existed.
//!
//! Every refusal is a [`ParamError`], answered 422 `bad_param` (the
//! dispatcher treats a 4xx other than 408/429 as permanent: the job fails at
//! once with the message as its `last_error`), and every message names the
//! parameter, the value given and what is valid:
//! `params.quality: 0 is out of range; valid: 1 to 100`. A name the kind
//! does not know is refused, listing the ones it does, rather than ignored:
//! a misspelt `qualty` must not silently give the default.
//!
//! The parameters of each kind, and why they are bounded as they are:
//! - `thumbnail`: [`thumbnail`]; sizes are bounded by the configured largest
//!   box (`max_width`, `max_height`), never by the decode limits
//!   (`max_side`, `max_pixels`), which no parameter can change;
//! - `text`: `top`, 1 to [`MAX_TOP`];
//! - `exec`: none checked here; the object is handed to the command as the
//!   environment variable [`EXEC_ENV`], for the command to judge.

use std::fmt::Write as _;
use std::ops::RangeInclusive;

use axum::http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use crate::config::ThumbnailConfig;
use crate::kinds::text::TOP_WORDS;
use crate::kinds::thumbnail::{JPEG_QUALITY, Output, Request};

/// The request header carrying a job's parameters.
pub const HEADER: HeaderName = HeaderName::from_static("x-tandem-params");

/// Largest `X-Tandem-Params` value, bytes. The API refuses objects over 4 KiB
/// serialized; escaping can triple that (a 4-byte UTF-8 character becomes a
/// 12-byte surrogate pair `\uXXXX\uXXXX`), so 16 KiB refuses nothing the
/// API sends and still bounds what a direct caller can make us parse.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The variable that carries the parameters to an exec command.
pub const EXEC_ENV: &str = "TANDEM_PARAMS";

/// Largest `top` of the text kind: a frequency list longer than this is a
/// dump of the vocabulary, not a summary, and would make the answer grow
/// with the input.
pub const MAX_TOP: u64 = 1000;

/// What a valid header looks like, for its messages.
const VALID_HEADER: &str =
    r#"one header, a JSON object such as {"max_side": 256}, in visible ASCII (\uXXXX escapes)"#;

/// The names the thumbnail kind accepts, in the order messages list them.
const THUMBNAIL_NAMES: &[&str] = &["max_side", "width", "height", "format", "quality"];
/// The names the text kind accepts.
const TEXT_NAMES: &[&str] = &["top"];
/// Output formats, as `format` spells them.
const FORMATS: &[&str] = &["png", "jpeg", "webp"];

/// Why a run's parameters were refused. Each message names the parameter,
/// the value given and what is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// The header itself is unusable: not a JSON object, not ASCII, too
    /// large, repeated.
    #[error("X-Tandem-Params: {problem}; valid: {VALID_HEADER}")]
    Header {
        /// What is wrong with it.
        problem: String,
    },
    /// A name the kind does not know.
    #[error("{name}: unknown parameter; valid for {kind}: {valid}")]
    Unknown {
        /// `params.NAME`, as [`field`] writes it.
        name: String,
        /// The kind, for the message.
        kind: &'static str,
        /// The names it knows, comma-separated.
        valid: String,
    },
    /// A known parameter with a value of the wrong type or out of range.
    #[error("params.{name}: {value} {problem}; valid: {valid}")]
    Invalid {
        /// The parameter.
        name: &'static str,
        /// The value given, as compact JSON (shortened past 64 characters).
        value: String,
        /// "is out of range", "is not an integer", ...
        problem: &'static str,
        /// What would be accepted.
        valid: String,
    },
    /// A thumbnail size in the query string as well as job parameters.
    #[error(
        "X-Tandem-Params: given with a size in the query string (?width=, ?height=); \
         valid: the size in one of them, the job parameters preferably"
    )]
    WithQuery,
    /// Two parameters that cannot be given together.
    #[error("params.{name}: {value} cannot be combined with {with}; valid: {valid}")]
    Conflict {
        /// The parameter refused.
        name: &'static str,
        /// Its value, as compact JSON.
        value: String,
        /// What it clashes with, e.g. `params.width = 10`.
        with: String,
        /// What would be accepted.
        valid: &'static str,
    },
}

/// A job's parameters, as the header brought them.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// The object.
    map: Map<String, Value>,
    /// The header value as received (compact JSON, ASCII), passed on to
    /// exec commands unchanged.
    raw: String,
}

impl Params {
    /// The parameters of a request: `None` without the header (today's
    /// behaviour), an error when the header is not one JSON object.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Params>, ParamError> {
        let mut values = headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let header = |problem: String| ParamError::Header { problem };
        if values.next().is_some() {
            return Err(header("given more than once".into()));
        }
        if value.len() > MAX_HEADER_BYTES {
            return Err(header(format!(
                "is {} bytes, over the {MAX_HEADER_BYTES}-byte limit",
                value.len()
            )));
        }
        let raw = value
            .to_str()
            .map_err(|_| header("contains bytes that are not visible ASCII".into()))?;
        Params::parse(raw).map(Some)
    }

    /// Parses a header value.
    pub fn parse(raw: &str) -> Result<Params, ParamError> {
        let header = |problem: String| ParamError::Header { problem };
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => Ok(Params {
                map,
                raw: raw.to_owned(),
            }),
            Ok(other) => Err(header(format!("is {}, not an object", type_name(&other)))),
            Err(e) => Err(header(format!("is not valid JSON: {e}"))),
        }
    }

    /// The header value as received.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Refuses any name outside `known`.
    fn only(&self, kind: &'static str, known: &[&str]) -> Result<(), ParamError> {
        match self.map.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(name) => Err(ParamError::Unknown {
                name: field(name),
                kind,
                valid: known.join(", "),
            }),
        }
    }

    /// `name` run through `check`, if given; `check`'s error is the
    /// problem, and the message adds the name, the value and `valid`.
    fn checked<T>(
        &self,
        name: &'static str,
        valid: impl FnOnce() -> String,
        check: impl FnOnce(&Value) -> Result<T, &'static str>,
    ) -> Result<Option<T>, ParamError> {
        let Some(v) = self.map.get(name) else {
            return Ok(None);
        };
        check(v).map(Some).map_err(|problem| ParamError::Invalid {
            name,
            value: shown(v),
            problem,
            valid: valid(),
        })
    }

    /// `name` as an integer within `range`, if given.
    fn integer(
        &self,
        name: &'static str,
        range: RangeInclusive<u64>,
    ) -> Result<Option<u64>, ParamError> {
        let valid = || format!("{} to {}", range.start(), range.end());
        self.checked(name, valid, |v| {
            let Value::Number(n) = v else {
                return Err("is not an integer");
            };
            match (n.as_u64(), n.as_f64()) {
                (Some(n), _) if range.contains(&n) => Ok(n),
                (Some(_), _) => Err("is out of range"),
                // Negative integers are out of range, and so are whole
                // numbers too large for u64, which serde_json reads as
                // floats; 32.5 and 32.0 are not integers.
                _ if n.is_i64() => Err("is out of range"),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() >= u64::MAX as f64 => {
                    Err("is out of range")
                }
                _ => Err("is not an integer"),
            }
        })
    }

    /// `name` as the index of one of `choices`, if given.
    fn choice(&self, name: &'static str, choices: &[&str]) -> Result<Option<usize>, ParamError> {
        self.checked(
            name,
            || one_of(choices),
            |v| match v {
                Value::String(s) => choices
                    .iter()
                    .position(|c| c == s)
                    .ok_or("is not one of the choices"),
                _ => Err("is not a string"),
            },
        )
    }
}

/// The thumbnail a run's parameters ask for; `cfg` bounds the sizes.
///
/// How the sizes combine:
/// - `max_side: N` is the box N × N: the longest side becomes N;
/// - `width` and/or `height` are a box; a side not given is bounded only by
///   the configured largest box (`max_width` or `max_height`);
/// - `max_side` with `width` or `height` is refused: two answers to one
///   question;
/// - none of them: the configured default box, as without parameters.
///
/// An image is never enlarged: one already inside the box keeps its size.
/// `quality` needs `format: "jpeg"`: PNG is lossless, and the WebP encoder
/// built into this worker only writes lossless WebP, so a quality there
/// would be ignored, and a parameter that does nothing is refused.
pub fn thumbnail(p: &Params, cfg: &ThumbnailConfig) -> Result<Request, ParamError> {
    p.only("thumbnail", THUMBNAIL_NAMES)?;
    let (max_w, max_h) = cfg.max_box;
    let side = |name, max: u32| {
        // Cannot truncate: bounded by a u32.
        p.integer(name, 1..=u64::from(max))
            .map(|n| n.map(|n| n as u32))
    };
    let max_side = side("max_side", max_w.min(max_h))?;
    let width = side("width", max_w)?;
    let height = side("height", max_h)?;
    let other = width
        .map(|w| ("width", w))
        .or(height.map(|h| ("height", h)));
    let bbox = match (max_side, other) {
        (Some(n), Some((other, v))) => {
            return Err(ParamError::Conflict {
                name: "max_side",
                value: n.to_string(),
                with: format!("params.{other} = {v}"),
                valid: "max_side alone, or width and/or height",
            });
        }
        (Some(n), None) => (n, n),
        (None, None) => cfg.default_box,
        (None, Some(_)) => (width.unwrap_or(max_w), height.unwrap_or(max_h)),
    };
    let quality = p.integer("quality", 1..=100)?;
    let format = p.choice("format", FORMATS)?.map_or("png", |i| FORMATS[i]);
    let output = match (format, quality) {
        // Cannot truncate: at most 100.
        ("jpeg", q) => Output::Jpeg {
            quality: q.map_or(JPEG_QUALITY, |q| q as u8),
        },
        (_, Some(q)) => {
            return Err(ParamError::Conflict {
                name: "quality",
                value: q.to_string(),
                with: if format == "webp" {
                    "params.format = \"webp\" (this worker writes lossless WebP only)".to_owned()
                } else {
                    format!("params.format = \"{format}\" (PNG is lossless)")
                },
                valid: "quality only with \"format\": \"jpeg\"",
            });
        }
        ("webp", None) => Output::WebP,
        _ => Output::Png,
    };
    Ok(Request { bbox, output })
}

/// How many words the text kind lists: `top`, or [`TOP_WORDS`].
pub fn text_top(p: &Params) -> Result<usize, ParamError> {
    p.only("text", TEXT_NAMES)?;
    // Cannot truncate: at most MAX_TOP.
    Ok(p.integer("top", 1..=MAX_TOP)?
        .map_or(TOP_WORDS, |n| n as usize))
}

/// `params.NAME` for a message: bare when NAME is a plain identifier, else
/// `params["..."]` with JSON escapes, so a name with quotes, newlines or
/// control characters cannot forge a message; shortened like values.
fn field(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("params.{name}")
    } else {
        format!("params[{}]", shown(&Value::String(name.to_owned())))
    }
}

/// A value as compact JSON, cut to 64 characters: a message quotes what was
/// given, not a 4 KiB string.
fn shown(v: &Value) -> String {
    const MAX: usize = 64;
    let s = v.to_string();
    if s.chars().count() <= MAX {
        return s;
    }
    let mut cut: String = s.chars().take(MAX).collect();
    cut.push_str("...");
    cut
}

/// `"a", "b" or "c"`.
fn one_of(choices: &[&str]) -> String {
    let mut out = String::new();
    for (i, c) in choices.iter().enumerate() {
        let sep = match i {
            0 => "",
            _ if i + 1 == choices.len() => " or ",
            _ => ", ",
        };
        // Cannot fail: writing to a String.
        write!(out, "{sep}\"{c}\"").expect("write to String");
    }
    out
}

/// "an array", "a string", ... for the header's message.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
