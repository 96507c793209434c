//! Job parameters: a JSON object given on submit, stored with the job and
//! sent to the worker on every attempt as the `X-Tandem-Params` header.
//!
//! The header value is the object as compact JSON with every character
//! outside ASCII written as a `\uXXXX` escape (a surrogate pair above
//! U+FFFF), so it is always visible ASCII, which any HTTP stack carries
//! unchanged, and any JSON parser reads back to the same object. The
//! API checks only the shape (an object, at most [`MAX_BYTES`]); what the
//! names and values mean is the worker's to check, and a worker refuses
//! bad ones with a 4xx that fails the job with its message.

use std::fmt::Write;

use serde_json::Value;

/// The header a worker reads the parameters from.
pub const HEADER: &str = "x-tandem-params";

/// Largest parameters object, as sent (escaped JSON bytes).
pub const MAX_BYTES: usize = 4096;

/// Why `params` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Not a JSON object.
    #[error("params must be a JSON object such as {{\"max_side\": 256}}, not {0}")]
    NotAnObject(&'static str),
    /// Larger than [`MAX_BYTES`] as sent.
    #[error("params is {0} bytes as sent; at most {MAX_BYTES}")]
    TooLarge(usize),
}

/// The header value for `params`, or why they cannot be sent. `None` and
/// JSON `null` mean no parameters.
pub fn encode(params: Option<&Value>) -> Result<Option<String>, ParamsError> {
    let object = match params {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(ParamsError::NotAnObject(type_name(other))),
    };
    let text = ascii_json(&Value::Object(object.clone()));
    if text.len() > MAX_BYTES {
        return Err(ParamsError::TooLarge(text.len()));
    }
    Ok(Some(text))
}

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

/// `v` as compact JSON, non-ASCII escaped. Outside strings JSON is ASCII
/// already, so escaping every non-ASCII character of the text escapes
/// exactly the ones inside strings.
pub fn ascii_json(v: &Value) -> String {
    let compact = v.to_string();
    let mut out = String::with_capacity(compact.len());
    for c in compact.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                // Cannot fail: writing to a String.
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_sent_as_ascii_and_read_back_the_same() {
        let v = json!({"name": "café ☕ 𝄞", "n": 3, "nested": {"ok": true}});
        let text = encode(Some(&v)).unwrap().unwrap();
        assert!(text.is_ascii(), "{text}");
        assert!(
            text.contains("\\u00e9") && text.contains("\\ud834\\udd1e"),
            "{text}"
        );
        assert!(axum::http::HeaderValue::from_str(&text).is_ok());
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn absent_and_null_are_no_parameters() {
        assert_eq!(encode(None), Ok(None));
        assert_eq!(encode(Some(&Value::Null)), Ok(None));
        assert_eq!(encode(Some(&json!({}))), Ok(Some("{}".to_owned())));
    }

    #[test]
    fn other_values_and_large_objects_are_refused() {
        assert_eq!(
            encode(Some(&json!([1]))),
            Err(ParamsError::NotAnObject("an array"))
        );
        assert_eq!(
            encode(Some(&json!("x"))),
            Err(ParamsError::NotAnObject("a string"))
        );
        let big = json!({ "s": "é".repeat(800) });
        // 800 × 6 escaped bytes: counted as sent, not as UTF-8.
        assert!(matches!(encode(Some(&big)), Err(ParamsError::TooLarge(n)) if n > MAX_BYTES));
    }
}
