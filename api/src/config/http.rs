//! The top-level keys that bound how long a client may hold a connection
//! without sending a request, or a request without finishing it (slow
//! clients, slowloris).

use std::time::Duration;

use tandem_service::config::ErrorKind;
use tandem_service::config::values::duration;
use tandem_service::config::walk::{Reported, Table, Walker};

/// Timeouts of the HTTP connections (see `crate::timeouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// The request line and headers must be complete this long after the
    /// replica is ready for them: after the connection (and its PROXY
    /// header) arrived, or after the previous response was sent. So it
    /// also bounds a kept-alive connection that starts a request and
    /// stalls.
    pub header_read: Duration,
    /// A connection on which no byte of a next request arrives for this
    /// long (a new one, or a kept-alive one after its response) is closed.
    pub keepalive: Duration,
    /// A request must have its response (status and headers) this long
    /// after its head arrived, body upload included; else 408. Longer than
    /// `wait_max`, so a held `?wait=` long poll answers first.
    pub request: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> HttpTimeouts {
        HttpTimeouts {
            header_read: Duration::from_secs(10),
            keepalive: Duration::from_secs(5),
            request: Duration::from_secs(90),
        }
    }
}

/// The keys [`parse`] reads.
pub const KEYS: &[&str] = &[
    "header_read_timeout",
    "keepalive_timeout",
    "request_timeout",
];

/// Reads the timeouts; `wait_max` is the longest `?wait=`, which
/// `request_timeout` must exceed. Every key is read before any `?`.
pub fn parse(
    w: &mut Walker<'_>,
    root: &Table<'_, '_>,
    wait_max: Option<Duration>,
) -> Result<HttpTimeouts, Reported> {
    let d = HttpTimeouts::default();
    let within = |v: &toml::de::DeValue<'_>, min: Duration, max: Duration| match duration(v, true)?
    {
        d if (min..=max).contains(&d) => Ok(d),
        _ => Err(ErrorKind::OutOfRange),
    };
    let (ms, s) = (Duration::from_millis, Duration::from_secs);
    let header_read = w.field(
        root,
        "header_read_timeout",
        "a duration from \"100ms\" to \"5m\", such as \"10s\"",
        |v| within(v, ms(100), s(300)),
    );
    let keepalive = w.field(
        root,
        "keepalive_timeout",
        "a duration from \"100ms\" to \"10m\", such as \"5s\"",
        |v| within(v, ms(100), s(600)),
    );
    let request = w.field(
        root,
        "request_timeout",
        "a duration from \"1s\" to \"1h\", longer than wait_max, such as \"90s\"",
        |v| within(v, s(1), s(3600)),
    );
    let request = match (request, wait_max, root.get("request_timeout")) {
        (Ok(r), Some(max), v) if r.unwrap_or(d.request) <= max => {
            let valid = format!(
                "a duration longer than wait_max ({}), so a held ?wait= answers before it, such as \"{}s\"",
                tandem_service::config::duration::format_duration(max),
                max.as_secs() + 30
            );
            Err(match v {
                Some(v) => w.bad_value(
                    v,
                    root.field("request_timeout"),
                    ErrorKind::OutOfRange,
                    &valid,
                ),
                // The default is at or below a raised wait_max: say which key
                // to set. wait_max is in the file: its default (60s) is below
                // the default request_timeout (90s).
                None => w.bad_value(
                    root.get("wait_max")
                        .expect("wait_max was set above the default"),
                    root.field("wait_max"),
                    ErrorKind::OutOfRange,
                    &format!(
                        "at most request_timeout ({}); raise request_timeout too",
                        "90s"
                    ),
                ),
            })
        }
        (r, _, _) => r,
    };
    Ok(HttpTimeouts {
        header_read: header_read?.unwrap_or(d.header_read),
        keepalive: keepalive?.unwrap_or(d.keepalive),
        request: request?.unwrap_or(d.request),
    })
}
