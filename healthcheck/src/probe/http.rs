//! The HTTP probe: one HTTP/1.1 GET, written by hand over a TCP stream.
//!
//! The request carries `Host`, `Connection: close` and nothing that needs a
//! body, so the exchange is one write and reads until the verdict is known:
//!
//! 1. the status line (`HTTP/1.x NNN reason`, RFC 9112 §4) decides first: a
//!    code outside [`HttpProbe::expect_status`] fails ("HTTP 503") and, with no
//!    body rule, a code inside passes without reading further;
//! 2. with `expect_body`, reading continues until the substring appears in the
//!    body (after the blank line ending the headers), EOF, or
//!    `max_response_bytes` have been read. Bytes beyond the bound are never
//!    read: a backend answering a huge page costs one bounded buffer.
//!
//! The body is searched as received: with `Transfer-Encoding: chunked`, a
//! substring split across two chunks is not found. Health pages are short and
//! sent in one chunk; keep the expected text short.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Outcome, ProbeError, connect};

/// An inclusive range of HTTP status codes, e.g. 200..=399.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    lo: u16,
    hi: u16,
}

impl StatusRange {
    /// `lo..=hi`, both within 100..=599.
    pub fn new(lo: u16, hi: u16) -> Result<Self, ProbeError> {
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(ProbeError::BadStatusRange(lo, hi));
        }
        Ok(StatusRange { lo, hi })
    }

    /// Exactly one code.
    pub fn exactly(code: u16) -> Result<Self, ProbeError> {
        Self::new(code, code)
    }

    pub fn contains(self, code: u16) -> bool {
        (self.lo..=self.hi).contains(&code)
    }

    pub fn bounds(self) -> (u16, u16) {
        (self.lo, self.hi)
    }
}

impl Default for StatusRange {
    /// 2xx and 3xx, HAProxy's default for `option httpchk`.
    fn default() -> Self {
        StatusRange { lo: 200, hi: 399 }
    }
}

/// An HTTP/1.1 GET health check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpProbe {
    /// Where to connect (may differ from the traffic port).
    pub addr: SocketAddr,
    /// `Host` header; empty means `addr` as text.
    pub host: String,
    /// Request target, e.g. `/healthz`.
    pub path: String,
    /// Status codes that count as healthy: any range matching is enough
    /// (`expect_status = [200, "300-302"]`). Never empty.
    pub expect_status: Vec<StatusRange>,
    /// If set, the body must contain this substring.
    pub expect_body: Option<String>,
    /// Most bytes of the response (status line and headers included) read.
    pub max_response_bytes: usize,
    /// Bytes sent before the request, such as the PROXY protocol header the
    /// traffic to this backend carries (HAProxy's `check-send-proxy`), so a
    /// backend that requires one can be checked; empty: none. The crate
    /// knows nothing of the header: the caller gives the bytes.
    pub preamble: Vec<u8>,
}

impl HttpProbe {
    /// Default bound on the bytes read: 16 KiB, HAProxy's default check buffer
    /// (`tune.bufsize`).
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024;

    /// A GET of `path` at `addr` with the defaults: any 2xx/3xx, no body rule.
    pub fn get(addr: SocketAddr, path: &str) -> Self {
        HttpProbe {
            addr,
            host: String::new(),
            path: path.to_string(),
            expect_status: vec![StatusRange::default()],
            expect_body: None,
            max_response_bytes: Self::DEFAULT_MAX_RESPONSE_BYTES,
            preamble: Vec::new(),
        }
    }

    /// Rejects what would make a malformed request (or inject headers).
    pub fn validate(&self) -> Result<(), ProbeError> {
        let clean = |s: &str| !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if !self.path.starts_with('/') || !clean(&self.path) {
            return Err(ProbeError::BadPath(self.path.clone()));
        }
        if !clean(&self.host) {
            return Err(ProbeError::BadHost(self.host.clone()));
        }
        if self.max_response_bytes < 64 {
            return Err(ProbeError::TooSmallResponseBound(self.max_response_bytes));
        }
        if self.expect_status.is_empty() {
            return Err(ProbeError::NoExpectedStatus);
        }
        Ok(())
    }

    fn request(&self) -> String {
        let host = if self.host.is_empty() {
            self.addr.to_string()
        } else {
            self.host.clone()
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tandem-healthcheck\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n",
            self.path
        )
    }

    /// One exchange, without a timeout (the caller bounds it).
    pub(super) async fn exchange(&self) -> (Outcome, String) {
        let mut stream = match connect(self.addr).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let mut request = self.preamble.clone();
        request.extend_from_slice(self.request().as_bytes());
        if let Err(e) = stream.write_all(&request).await {
            return (Outcome::IoError, format!("write: {e}"));
        }
        let limit = self.max_response_bytes;
        let mut buf = Vec::with_capacity(limit.min(4096));
        let mut chunk = [0u8; 4096];
        let mut status = None;
        while buf.len() < limit {
            let room = (limit - buf.len()).min(chunk.len());
            let n = match stream.read(&mut chunk[..room]).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => return (Outcome::IoError, format!("read: {e}")),
            };
            buf.extend_from_slice(&chunk[..n]);
            let code = match status {
                Some(code) => code,
                None => {
                    let Some(eol) = find(&buf, b"\n") else {
                        continue;
                    };
                    let code = match parse_status_line(&buf[..eol]) {
                        Some(code) => code,
                        None => return (Outcome::BadResponse, invalid(&buf[..eol])),
                    };
                    if !self.expect_status.iter().any(|r| r.contains(code)) {
                        return (Outcome::BadStatus, format!("HTTP {code}"));
                    }
                    if self.expect_body.is_none() {
                        return (Outcome::Ok, format!("HTTP {code}"));
                    }
                    status = Some(code);
                    code
                }
            };
            if let Some(needle) = &self.expect_body
                && let Some(head_end) = find(&buf, b"\r\n\r\n")
                && find(&buf[head_end + 4..], needle.as_bytes()).is_some()
            {
                return (Outcome::Ok, format!("HTTP {code}"));
            }
        }
        match (status, &self.expect_body) {
            (Some(_), Some(needle)) => {
                let mut detail = format!("body did not contain {needle:?}");
                if buf.len() >= limit {
                    detail.push_str(&format!(" (in the first {limit} bytes)"));
                }
                (Outcome::BadBody, detail)
            }
            _ if buf.is_empty() => (Outcome::BadResponse, "empty response".to_string()),
            _ => (
                Outcome::BadResponse,
                format!(
                    "invalid HTTP response: no status line in {} bytes",
                    buf.len()
                ),
            ),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.1 200 OK` → 200. The reason phrase may be empty or absent.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (minor, rest) = rest.split_first()?;
    let rest = rest.strip_prefix(b" ")?;
    if !minor.is_ascii_digit() || rest.len() < 3 {
        return None;
    }
    let (code, tail) = rest.split_at(3);
    if !code.iter().all(u8::is_ascii_digit) || !(tail.is_empty() || tail[0] == b' ') {
        return None;
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..=599).contains(&code).then_some(code)
}

fn invalid(line: &[u8]) -> String {
    let shown: String = String::from_utf8_lossy(&line[..line.len().min(40)]).into_owned();
    format!("invalid HTTP response: {:?}", shown.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Probe;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// A loopback HTTP server answering every connection with a canned
    /// response, optionally after a delay; records the requests it saw.
    struct Server {
        response: Vec<u8>,
        delay: Duration,
    }

    struct Running {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Running {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        fn answer(status: &str, body: &str) -> Self {
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            Server {
                response: response.into_bytes(),
                delay: Duration::ZERO,
            }
        }

        fn raw(response: &[u8]) -> Self {
            Server {
                response: response.to_vec(),
                delay: Duration::ZERO,
            }
        }

        fn delay(mut self, d: Duration) -> Self {
            self.delay = d;
            self
        }

        async fn spawn(self) -> Running {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = requests.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        return;
                    };
                    let (response, delay, seen) = (self.response.clone(), self.delay, seen.clone());
                    tokio::spawn(async move {
                        let mut req = Vec::new();
                        let mut b = [0u8; 1024];
                        while find(&req, b"\r\n\r\n").is_none() && req.len() < 8192 {
                            match s.read(&mut b).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&b[..n]),
                            }
                        }
                        seen.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&req).into_owned());
                        tokio::time::sleep(delay).await;
                        let _ = s.write_all(&response).await;
                    });
                }
            });
            Running {
                addr,
                requests,
                task,
            }
        }
    }

    /// A backend that requires `preamble` first (as an API replica with
    /// `proxy_protocol = "required"` requires a PROXY header): it answers
    /// 200 after the preamble and a request head, and closes a connection
    /// that starts otherwise.
    async fn requiring(preamble: &'static [u8]) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut b = [0u8; 512];
                let good = loop {
                    let n = buf.len().min(preamble.len());
                    if buf[..n] != preamble[..n] {
                        break false;
                    }
                    if n == preamble.len() && find(&buf[n..], b"\r\n\r\n").is_some() {
                        break true;
                    }
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => break false,
                        Ok(k) => buf.extend_from_slice(&b[..k]),
                    }
                };
                if good {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_preamble_goes_first_so_a_backend_that_requires_it_is_checked() {
        // PROXY v2 LOCAL and v1 UNKNOWN, the two health-check forms.
        const V2_LOCAL: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
        for preamble in [V2_LOCAL, b"PROXY UNKNOWN\r\n"] {
            let addr = requiring(preamble).await;
            let without = run(probe(addr)).await;
            assert_ne!(
                without.0,
                Outcome::Ok,
                "no preamble, no answer: {without:?}"
            );
            let p = HttpProbe {
                preamble: preamble.to_vec(),
                ..probe(addr)
            };
            assert_eq!(run(p).await, (Outcome::Ok, "HTTP 200".into()));
        }
    }

    fn probe(addr: SocketAddr) -> HttpProbe {
        HttpProbe {
            host: "svc.example".to_string(),
            ..HttpProbe::get(addr, "/healthz")
        }
    }

    async fn run(p: HttpProbe) -> (Outcome, String) {
        let out = Probe::Http(p).run(Duration::from_secs(2)).await;
        assert_eq!(out.ok, out.outcome == Outcome::Ok);
        (out.outcome, out.detail)
    }

    #[tokio::test]
    async fn sends_a_well_formed_get_and_accepts_200() {
        let srv = Server::answer("200 OK", "ok").spawn().await;
        assert_eq!(run(probe(srv.addr)).await, (Outcome::Ok, "HTTP 200".into()));
        let req = srv.requests.lock().unwrap()[0].clone();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("\r\nHost: svc.example\r\n"), "{req}");
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
    }

    #[tokio::test]
    async fn host_defaults_to_the_address() {
        let srv = Server::answer("200 OK", "").spawn().await;
        run(HttpProbe::get(srv.addr, "/")).await;
        let req = srv.requests.lock().unwrap()[0].clone();
        assert!(
            req.contains(&format!("\r\nHost: {}\r\n", srv.addr)),
            "{req}"
        );
    }

    #[tokio::test]
    async fn status_outside_the_range_fails_with_the_code() {
        let srv = Server::answer("503 Service Unavailable", "down")
            .spawn()
            .await;
        assert_eq!(
            run(probe(srv.addr)).await,
            (Outcome::BadStatus, "HTTP 503".into())
        );
    }

    #[tokio::test]
    async fn status_ranges_are_inclusive() {
        let srv = Server::answer("302 Found", "").spawn().await;
        assert_eq!(
            run(probe(srv.addr)).await.0,
            Outcome::Ok,
            "default 200..=399"
        );
        let exact = HttpProbe {
            expect_status: vec![StatusRange::exactly(200).unwrap()],
            ..probe(srv.addr)
        };
        assert_eq!(run(exact).await, (Outcome::BadStatus, "HTTP 302".into()));
        let srv = Server::answer("204 No Content", "").spawn().await;
        let range = HttpProbe {
            expect_status: vec![StatusRange::new(204, 204).unwrap()],
            ..probe(srv.addr)
        };
        assert_eq!(run(range).await.0, Outcome::Ok);
        let several = HttpProbe {
            expect_status: vec![
                StatusRange::exactly(200).unwrap(),
                StatusRange::new(203, 205).unwrap(),
            ],
            ..probe(srv.addr)
        };
        assert_eq!(
            run(several).await.0,
            Outcome::Ok,
            "any range matching is enough"
        );
    }

    #[tokio::test]
    async fn body_substring_rule() {
        let srv = Server::answer("200 OK", "status: ok\n").spawn().await;
        let want_ok = HttpProbe {
            expect_body: Some("ok".into()),
            ..probe(srv.addr)
        };
        assert_eq!(run(want_ok).await, (Outcome::Ok, "HTTP 200".into()));
        let want_ready = HttpProbe {
            expect_body: Some("ready".into()),
            ..probe(srv.addr)
        };
        assert_eq!(
            run(want_ready).await,
            (Outcome::BadBody, "body did not contain \"ready\"".into())
        );
    }

    #[tokio::test]
    async fn body_rule_ignores_headers() {
        // "ok" appears in a header only.
        let srv = Server::raw(b"HTTP/1.1 200 OK\r\nX-State: ok\r\n\r\nnope")
            .spawn()
            .await;
        let p = HttpProbe {
            expect_body: Some("ok".into()),
            ..probe(srv.addr)
        };
        assert_eq!(run(p).await.0, Outcome::BadBody);
    }

    #[tokio::test]
    async fn reads_no_more_than_the_bound() {
        let body = format!("{}ready", "x".repeat(500));
        let srv = Server::answer("200 OK", &body).spawn().await;
        let p = HttpProbe {
            expect_body: Some("ready".into()),
            max_response_bytes: 256,
            ..probe(srv.addr)
        };
        assert_eq!(
            run(p.clone()).await,
            (
                Outcome::BadBody,
                "body did not contain \"ready\" (in the first 256 bytes)".into()
            )
        );
        let p = HttpProbe {
            max_response_bytes: 4096,
            ..p
        };
        assert_eq!(run(p).await.0, Outcome::Ok);
    }

    #[tokio::test]
    async fn a_huge_response_passes_on_its_status_alone() {
        let srv = Server::answer("200 OK", &"y".repeat(1 << 20)).spawn().await;
        assert_eq!(run(probe(srv.addr)).await.0, Outcome::Ok);
    }

    #[tokio::test]
    async fn a_slow_backend_times_out() {
        let srv = Server::answer("200 OK", "ok")
            .delay(Duration::from_secs(10))
            .spawn()
            .await;
        let out = Probe::Http(probe(srv.addr))
            .run(Duration::from_millis(200))
            .await;
        assert_eq!(out.outcome, Outcome::Timeout);
        assert_eq!(out.detail, "timeout after 200ms");
        assert!(out.duration >= Duration::from_millis(200));
        assert!(out.duration < Duration::from_secs(2), "{:?}", out.duration);
    }

    #[tokio::test]
    async fn garbage_and_empty_responses_fail() {
        let srv = Server::raw(b"SSH-2.0-OpenSSH_9.2\r\n").spawn().await;
        assert_eq!(
            run(probe(srv.addr)).await,
            (
                Outcome::BadResponse,
                "invalid HTTP response: \"SSH-2.0-OpenSSH_9.2\"".into()
            )
        );
        let srv = Server::raw(b"").spawn().await;
        assert_eq!(
            run(probe(srv.addr)).await,
            (Outcome::BadResponse, "empty response".into())
        );
    }

    #[test]
    fn status_line_parsing() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 204 \r"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/2 200"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 099 x"), None);
    }

    #[test]
    fn validation() {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(HttpProbe::get(addr, "/healthz").validate().is_ok());
        assert!(HttpProbe::get(addr, "healthz").validate().is_err());
        assert!(HttpProbe::get(addr, "/a b").validate().is_err());
        let inject = HttpProbe {
            host: "x\r\nEvil: 1".into(),
            ..HttpProbe::get(addr, "/")
        };
        assert!(matches!(inject.validate(), Err(ProbeError::BadHost(_))));
        assert!(StatusRange::new(300, 200).is_err());
        assert!(StatusRange::new(200, 600).is_err());
    }
}
