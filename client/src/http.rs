//! One HTTP/1.1 request per connection to the job API, and its errors.
//!
//! Rules:
//! - Plain `http://` only: the API has no TLS listener yet, and sending a
//!   bearer token over a connection the user believes encrypted would be
//!   worse than refusing, so `https://` is refused with that reason.
//! - Every refusal of the API is its JSON error (`{"error": {"code",
//!   "message"}}`), shown as "HTTP 422 unknown_kind: ..." with what was
//!   being done; an answer that is not that JSON is shown as text, cut.
//! - Connect and the whole exchange are bounded ([`Api::timeout`]); a held
//!   `?wait=` gets its wait on top.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Url;

/// Largest answer read (a result can be a large image): 256 MiB.
const MAX_ANSWER: usize = 256 * 1024 * 1024;

/// Where the API is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Api {
    /// The API's base URL (`http://HOST:PORT`, maybe with a path prefix).
    pub base: Url,
    /// The bearer token.
    pub key: String,
    /// Bound on connect plus one exchange (a held wait adds its own).
    pub timeout: Duration,
}

/// An answer: status, content type and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the API's answer is not JSON")
    }
}

/// Checks a base URL: `http://` with a host, no query.
pub fn base_url(text: &str) -> anyhow::Result<Url> {
    let url = Url::parse(text)
        .with_context(|| format!("API URL {text:?} is not a URL such as http://127.0.0.1:8080"))?;
    match url.scheme() {
        "http" => {}
        "https" => bail!(
            "API URL {text:?}: https is not supported yet (the API has no TLS listener); use http:// on a trusted network"
        ),
        s => bail!("API URL {text:?}: scheme {s:?} is not http"),
    }
    if url.host_str().is_none() || url.query().is_some() {
        bail!("API URL {text:?} must be http://HOST:PORT with no query");
    }
    Ok(url)
}

impl Api {
    /// `path_and_query` (starting with `/v1/`) under the base URL.
    fn target(&self, path_and_query: &str) -> String {
        let prefix = self.base.path().trim_end_matches('/');
        format!("{prefix}{path_and_query}")
    }

    /// Sends one request; `extra` is added to the timeout (a held wait).
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
        extra: Duration,
    ) -> anyhow::Result<Answer> {
        let host = self.base.host_str().unwrap_or_default().to_owned();
        let port = self.base.port_or_known_default().unwrap_or(80);
        let authority = match self.base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let work = async {
            let stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
                .await
                .with_context(|| format!("cannot reach the API at {}", self.base))?;
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP handshake with the API")?;
            tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(self.target(path_and_query))
                .header("host", authority)
                .header("authorization", format!("Bearer {}", self.key))
                .header(
                    "user-agent",
                    concat!("tandem-jobs/", env!("CARGO_PKG_VERSION")),
                );
            for (name, value) in headers {
                req = req.header(*name, value);
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .context("building the request")?;
            let resp = sender
                .send_request(req)
                .await
                .with_context(|| format!("the API at {} did not answer", self.base))?;
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| anyhow!("reading the API's answer: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                content_type,
                body,
            })
        };
        let bound = self.timeout + extra;
        tokio::time::timeout(bound, work)
            .await
            .map_err(|_| anyhow!("the API at {} did not answer within {bound:?}", self.base))?
    }
}

/// An answer outside 2xx as an error that says what was being done and
/// what the API said.
pub fn refused(doing: &str, a: &Answer) -> anyhow::Error {
    let said = serde_json::from_slice::<serde_json::Value>(&a.body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(format!(
                "{}: {}",
                e.get("code")?.as_str()?,
                e.get("message")?.as_str()?
            ))
        })
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&a.body);
            let text: String = text.chars().take(200).collect();
            if text.trim().is_empty() {
                "(no body)".to_owned()
            } else {
                text.trim().to_owned()
            }
        });
    anyhow!("the API refused to {doing} (HTTP {}): {said}", a.status)
}

/// `a` if it is a 2xx, else [`refused`].
pub fn ok(doing: &str, a: Answer) -> anyhow::Result<Answer> {
    if (200..300).contains(&a.status) {
        Ok(a)
    } else {
        Err(refused(doing, &a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_https_says_why() {
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        assert!(base_url("http://[::1]:8080/prefix/").is_ok());
        let e = base_url("https://api.example.com").unwrap_err().to_string();
        assert!(e.contains("https is not supported yet"), "{e}");
        let e = base_url("127.0.0.1:8080").unwrap_err().to_string();
        assert!(e.contains("is not http") || e.contains("not a URL"), "{e}");
        assert!(base_url("http://h:1/?a=b").is_err());
    }

    #[test]
    fn paths_go_under_the_base_path() {
        let api = |b: &str| Api {
            base: base_url(b).unwrap(),
            key: String::new(),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(api("http://h:1").target("/v1/jobs"), "/v1/jobs");
        assert_eq!(
            api("http://h:1/tandem/").target("/v1/jobs"),
            "/tandem/v1/jobs"
        );
    }

    #[test]
    fn refusals_name_the_action_status_code_and_message() {
        let a = Answer {
            status: 422,
            content_type: None,
            body: Bytes::from_static(
                br#"{"error": {"code": "unknown_kind", "message": "kind \"txt\" is not one of: exec, text"}}"#,
            ),
        };
        assert_eq!(
            refused("submit the job", &a).to_string(),
            "the API refused to submit the job (HTTP 422): unknown_kind: kind \"txt\" is not one of: exec, text"
        );
        let a = Answer {
            status: 502,
            content_type: None,
            body: Bytes::from_static(b"Bad Gateway\n"),
        };
        assert_eq!(
            refused("get the job", &a).to_string(),
            "the API refused to get the job (HTTP 502): Bad Gateway"
        );
    }
}
