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
mod tests {
    use super::*;
    use crate::kinds::RunError;

    fn cfg(extra: &str) -> ThumbnailConfig {
        let text = format!("listen = \"127.0.0.1:1\"\n[thumbnail]\n{extra}");
        crate::config::Config::parse(&text, "t".as_ref())
            .unwrap()
            .thumbnail
    }

    fn params(json: &str) -> Params {
        Params::parse(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn thumb(json: &str) -> Result<Request, String> {
        thumbnail(&params(json), &cfg("max_width = 1000\nmax_height = 800\n"))
            .map_err(|e| e.to_string())
    }

    fn png(bbox: (u32, u32)) -> Request {
        Request {
            bbox,
            output: Output::Png,
        }
    }

    #[test]
    fn no_header_is_no_parameters() {
        assert_eq!(Params::from_headers(&HeaderMap::new()), Ok(None));
    }

    #[test]
    fn header_must_be_one_json_object_in_ascii() {
        let from = |values: &[&[u8]]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(HEADER, axum::http::HeaderValue::from_bytes(v).unwrap());
            }
            Params::from_headers(&h).map_err(|e| e.to_string())
        };
        let p = from(&[br#"{"top":3,"w":"caf\u00e9"}"#]).unwrap().unwrap();
        assert_eq!(p.raw(), r#"{"top":3,"w":"caf\u00e9"}"#);
        assert_eq!(p.map["w"], "café");

        for (value, problem) in [
            (
                &br#"[1,2]"#[..],
                "X-Tandem-Params: is an array, not an object; valid: ",
            ),
            (b"3", "X-Tandem-Params: is a number, not an object; valid: "),
            (b"null", "X-Tandem-Params: is null, not an object; valid: "),
            (
                b"{\"top\":",
                "X-Tandem-Params: is not valid JSON: EOF while parsing",
            ),
            (
                b"max_side=3",
                "X-Tandem-Params: is not valid JSON: expected value",
            ),
            (
                b"{\"w\":\"caf\xc3\xa9\"}",
                "X-Tandem-Params: contains bytes that are not visible ASCII; valid: ",
            ),
        ] {
            let err = from(&[value]).unwrap_err();
            assert!(err.starts_with(problem), "{value:?}: {err}");
            assert!(
                err.contains(r#"a JSON object such as {"max_side": 256}"#),
                "{err}"
            );
        }
        let err = from(&[b"{}", b"{}"]).unwrap_err();
        assert!(
            err.starts_with("X-Tandem-Params: given more than once"),
            "{err}"
        );
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_HEADER_BYTES));
        let err = from(&[big.as_bytes()]).unwrap_err();
        assert!(err.contains("over the 16384-byte limit"), "{err}");
    }

    #[test]
    fn thumbnail_sizes() {
        // No size: the configured default box, as without parameters.
        assert_eq!(thumb("{}"), Ok(png((256, 256))));
        assert_eq!(thumb(r#"{"max_side":32}"#), Ok(png((32, 32))));
        // max_side is bounded by the smaller side of the largest box.
        assert_eq!(thumb(r#"{"max_side":800}"#), Ok(png((800, 800))));
        assert_eq!(
            thumb(r#"{"max_side":801}"#).unwrap_err(),
            "params.max_side: 801 is out of range; valid: 1 to 800"
        );
        // A side not given is bounded by the largest box only.
        assert_eq!(thumb(r#"{"width":100}"#), Ok(png((100, 800))));
        assert_eq!(thumb(r#"{"height":50}"#), Ok(png((1000, 50))));
        assert_eq!(thumb(r#"{"width":1000,"height":1}"#), Ok(png((1000, 1))));
        for (json, want) in [
            (
                r#"{"width":1001}"#,
                "params.width: 1001 is out of range; valid: 1 to 1000",
            ),
            (
                r#"{"height":0}"#,
                "params.height: 0 is out of range; valid: 1 to 800",
            ),
            (
                r#"{"max_side":0}"#,
                "params.max_side: 0 is out of range; valid: 1 to 800",
            ),
            (
                r#"{"width":-5}"#,
                "params.width: -5 is out of range; valid: 1 to 1000",
            ),
            (
                r#"{"width":100000000000000000000000}"#,
                "params.width: 1e+23 is out of range; valid: 1 to 1000",
            ),
            (
                r#"{"width":"100"}"#,
                r#"params.width: "100" is not an integer; valid: 1 to 1000"#,
            ),
            (
                r#"{"height":12.5}"#,
                "params.height: 12.5 is not an integer; valid: 1 to 800",
            ),
            (
                r#"{"max_side":32.0}"#,
                "params.max_side: 32.0 is not an integer; valid: 1 to 800",
            ),
            (
                r#"{"max_side":null}"#,
                "params.max_side: null is not an integer; valid: 1 to 800",
            ),
            (
                r#"{"max_side":[32]}"#,
                "params.max_side: [32] is not an integer; valid: 1 to 800",
            ),
        ] {
            assert_eq!(thumb(json).unwrap_err(), want, "{json}");
        }
    }

    #[test]
    fn max_side_with_a_box_is_refused() {
        let want = "; valid: max_side alone, or width and/or height";
        assert_eq!(
            thumb(r#"{"max_side":32,"width":10}"#).unwrap_err(),
            format!("params.max_side: 32 cannot be combined with params.width = 10{want}")
        );
        assert_eq!(
            thumb(r#"{"max_side":32,"height":20}"#).unwrap_err(),
            format!("params.max_side: 32 cannot be combined with params.height = 20{want}")
        );
    }

    #[test]
    fn thumbnail_format_and_quality() {
        let out = |json: &str| thumb(json).map(|r| r.output);
        assert_eq!(out(r#"{"format":"png"}"#), Ok(Output::Png));
        assert_eq!(out(r#"{"format":"webp"}"#), Ok(Output::WebP));
        assert_eq!(
            out(r#"{"format":"jpeg"}"#),
            Ok(Output::Jpeg {
                quality: JPEG_QUALITY
            })
        );
        assert_eq!(
            out(r#"{"format":"jpeg","quality":1}"#),
            Ok(Output::Jpeg { quality: 1 })
        );
        assert_eq!(
            out(r#"{"format":"jpeg","quality":100}"#),
            Ok(Output::Jpeg { quality: 100 })
        );
        assert_eq!(
            out(r#"{"format":"jpeg","max_side":64}"#).map(|o| o.content_type()),
            Ok("image/jpeg")
        );
        for (json, want) in [
            (
                r#"{"format":"gif"}"#,
                r#"params.format: "gif" is not one of the choices; valid: "png", "jpeg" or "webp""#,
            ),
            (
                r#"{"format":"JPEG"}"#,
                r#"params.format: "JPEG" is not one of the choices; valid: "png", "jpeg" or "webp""#,
            ),
            (
                r#"{"format":1}"#,
                r#"params.format: 1 is not a string; valid: "png", "jpeg" or "webp""#,
            ),
            (
                r#"{"format":"jpeg","quality":0}"#,
                "params.quality: 0 is out of range; valid: 1 to 100",
            ),
            (
                r#"{"format":"jpeg","quality":101}"#,
                "params.quality: 101 is out of range; valid: 1 to 100",
            ),
            (
                r#"{"format":"jpeg","quality":"high"}"#,
                r#"params.quality: "high" is not an integer; valid: 1 to 100"#,
            ),
            (
                r#"{"format":"webp","quality":80}"#,
                "params.quality: 80 cannot be combined with params.format = \"webp\" \
                 (this worker writes lossless WebP only); valid: quality only with \"format\": \"jpeg\"",
            ),
            (
                r#"{"quality":80}"#,
                "params.quality: 80 cannot be combined with params.format = \"png\" \
                 (PNG is lossless); valid: quality only with \"format\": \"jpeg\"",
            ),
        ] {
            assert_eq!(out(json).unwrap_err(), want, "{json}");
        }
    }

    #[test]
    fn unknown_names_are_refused_with_the_valid_ones() {
        assert_eq!(
            thumb(r#"{"qualty":80}"#).unwrap_err(),
            "params.qualty: unknown parameter; valid for thumbnail: \
             max_side, width, height, format, quality"
        );
        assert_eq!(
            text_top(&params(r#"{"top":3,"count":1}"#))
                .unwrap_err()
                .to_string(),
            "params.count: unknown parameter; valid for text: top"
        );
        // A hostile name is quoted, escaped and cut, never echoed raw.
        let err = text_top(&params(r#"{"a\"b\nc":1}"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(r#"params["a\"b\nc"]: unknown parameter"#),
            "{err}"
        );
        let long = format!(r#"{{"{}":1}}"#, "x".repeat(500));
        let err = text_top(&params(&long)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn text_top_parameter() {
        let top = |json: &str| super::text_top(&params(json)).map_err(|e| e.to_string());
        assert_eq!(top("{}"), Ok(TOP_WORDS));
        assert_eq!(top(r#"{"top":1}"#), Ok(1));
        assert_eq!(top(r#"{"top":1000}"#), Ok(1000));
        assert_eq!(
            top(r#"{"top":0}"#).unwrap_err(),
            "params.top: 0 is out of range; valid: 1 to 1000"
        );
        assert_eq!(
            top(r#"{"top":1001}"#).unwrap_err(),
            "params.top: 1001 is out of range; valid: 1 to 1000"
        );
        assert_eq!(
            top(r#"{"top":"3"}"#).unwrap_err(),
            r#"params.top: "3" is not an integer; valid: 1 to 1000"#
        );
        assert_eq!(
            top(r#"{"top":true}"#).unwrap_err(),
            "params.top: true is not an integer; valid: 1 to 1000"
        );
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let json = format!(r#"{{"format":"{}"}}"#, "z".repeat(5000));
        let err = thumb(&json).unwrap_err();
        assert!(err.starts_with(r#"params.format: "zzzz"#), "{err}");
        assert!(err.contains(r#"zzz... is not one of"#), "{err}");
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn sizes_are_bounded_by_the_box_not_by_the_decode_limits() {
        // A box as large as the decode limit on one side: a request may ask
        // for any size up to it, and the decode limits stay what they were.
        let c = cfg("max_width = 65535\nmax_height = 65535\nmax_side = 100\nmax_pixels = 100\n");
        let req = thumbnail(&params(r#"{"max_side":65535}"#), &c).unwrap();
        assert_eq!(req.bbox, (65535, 65535));
        assert_eq!((c.max_side, c.max_pixels), (100, 100));
        // And a 20x20 image (400 pixels) is still refused before decoding.
        let mut png = Vec::new();
        image::DynamicImage::new_rgb8(20, 20)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let err = crate::kinds::thumbnail::thumbnail(&png, &c, &req).unwrap_err();
        assert!(matches!(err, RunError::TooManyPixels { .. }), "{err}");
    }

    #[test]
    fn refusals_are_bad_param() {
        let e: RunError = ParamError::WithQuery.into();
        assert_eq!(e.code(), "bad_param");
        assert_eq!(
            crate::server::status_of(&e),
            axum::http::StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
