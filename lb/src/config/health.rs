//! Health-check settings as plain data: `[service.health]`, its per-backend
//! override `[service.backend.health]`, and the service's all-down policy.
//!
//! The semantics follow HAProxy's checker, which operators already know:
//! `interval` is HAProxy's `inter`, `fastinter` is used while a state change
//! is in progress (between the first and the `rise`-th / `fall`-th result),
//! `downinter` while steadily down, and `rise` / `fall` count consecutive
//! results. `passive_fall` is Envoy's consecutive-failure outlier detection
//! fed by the data plane's refused or timed-out connects. A backend starts
//! up and needs `fall` failures to go down, as keepalived's real servers do;
//! `alpha` is keepalived's fail-closed option: start down until `rise`
//! successes.
//!
//! Nothing here depends on the health checker: the runtime maps these values
//! onto it. Every value was validated by the parser, so that mapping cannot
//! fail on a value the parser accepted (each duration is at least 1 ms, each
//! count at least 1, `jitter < interval`).

use std::net::SocketAddr;
use std::time::Duration;

/// A backend's fully resolved active checks: the service's `[service.health]`
/// with the backend's own `[service.backend.health]` keys laid over it, and
/// defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `kind` and the keys that belong to it. Default `"tcp"`.
    pub check: HealthCheck,
    /// `interval`: delay between probes in steady state (HAProxy `inter`).
    /// Default `"2s"`; at least 1 ms.
    pub interval: Duration,
    /// `fastinter`: delay between probes while a state change is in
    /// progress. Default: `interval`; at least 1 ms.
    pub fastinter: Duration,
    /// `downinter`: delay between probes while steadily down. Default:
    /// `interval`; at least 1 ms.
    pub downinter: Duration,
    /// `timeout`: bound on one probe (connect, request and response, or the
    /// command's run time). Default `"1s"`; at least 1 ms. It may exceed
    /// `interval`: the next probe then starts when this one ends.
    pub timeout: Duration,
    /// `rise`: consecutive successes for down → up. Default 2; 1 to 100.
    pub rise: u32,
    /// `fall`: consecutive failures for up → down. Default 3; 1 to 100.
    pub fall: u32,
    /// `alpha` (keepalived's name): a backend starts down, when the balancer
    /// starts and when a reload adds it, until `rise` consecutive successes.
    /// Default false: it starts up, and `fall` consecutive failures (or
    /// `passive_fall` failed connects) take it down. A reload never changes
    /// the state of a backend it keeps, whatever this says.
    pub alpha: bool,
    /// `jitter`: each probe delay is moved by a random amount of at most
    /// this, so the probes of many backends do not line up. Default: 10 % of
    /// `interval`, rounded to the millisecond; always less than `interval`.
    pub jitter: Duration,
    /// `port`: probe this port instead of the backend's traffic port
    /// (tcp and http). Default: None, the backend's port; 1 to 65535.
    pub port: Option<u16>,
    /// `slow_start`: after down → up, the backend's effective weight ramps
    /// from 0 to its weight over this time. Default `"0s"` = off.
    pub slow_start: Duration,
}

impl HealthConfig {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_FALL: u32 = 3;
    /// Largest `rise`, `fall` and `passive_fall`.
    pub const MAX_COUNT: u32 = 100;
    /// Shortest interval or timeout: the checker works in milliseconds.
    pub const MIN_PERIOD: Duration = Duration::from_millis(1);
    /// Consecutive failed connects that mark a backend down; see
    /// [`super::BackendConfig::passive_fall`].
    pub const DEFAULT_PASSIVE_FALL: u32 = 3;

    /// The default `jitter` for an interval: 10 % of it, rounded to the
    /// nearest millisecond (so always less than an interval of >= 1 ms).
    pub fn default_jitter(interval: Duration) -> Duration {
        let tenth_ns = interval.as_nanos() / 10;
        let ms = (tenth_ns + 500_000) / 1_000_000;
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// The probe: `kind` and its kind-specific keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    /// `kind = "tcp"`: a TCP connect that succeeds within the timeout.
    Tcp,
    /// `kind = "http"`: an HTTP/1.1 GET.
    Http(HttpCheck),
    /// `kind = "exec"`: a command; exit status 0 means up.
    Exec(ExecCheck),
}

impl HealthCheck {
    pub fn kind(&self) -> HealthKind {
        match self {
            HealthCheck::Tcp => HealthKind::Tcp,
            HealthCheck::Http(_) => HealthKind::Http,
            HealthCheck::Exec(_) => HealthKind::Exec,
        }
    }
}

/// The value of `kind`, without its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HealthKind {
    #[default]
    Tcp,
    Http,
    Exec,
}

impl HealthKind {
    pub const ALL: [HealthKind; 3] = [HealthKind::Tcp, HealthKind::Http, HealthKind::Exec];

    /// The name used in the config file.
    pub fn name(self) -> &'static str {
        match self {
            HealthKind::Tcp => "tcp",
            HealthKind::Http => "http",
            HealthKind::Exec => "exec",
        }
    }
}

impl std::fmt::Display for HealthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `kind = "http"` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCheck {
    /// `path`: the request target. Default `"/"`; starts with `/`, printable
    /// ASCII without spaces (it goes into the request line as written).
    pub path: String,
    /// `host`: the Host header. Default: None, meaning the probed address's
    /// IP (in brackets for IPv6). Printable ASCII without spaces or `/`.
    pub host: Option<String>,
    /// `expect_status`: statuses that mean up; any range matching is enough.
    /// Default `"200-399"`; never empty; each status 100 to 599.
    pub expect_status: Vec<StatusRange>,
    /// `expect_body`: a substring the response body must contain. Default:
    /// None, the body is not read past the headers; never empty.
    pub expect_body: Option<String>,
}

impl HttpCheck {
    pub const DEFAULT_PATH: &'static str = "/";
    pub const DEFAULT_EXPECT_STATUS: StatusRange = StatusRange {
        first: 200,
        last: 399,
    };

    /// Whether `status` is one of the expected ones.
    pub fn expects(&self, status: u16) -> bool {
        self.expect_status.iter().any(|r| r.contains(status))
    }
}

/// An inclusive range of HTTP statuses, `first <= last`, both 100 to 599.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub first: u16,
    pub last: u16,
}

impl StatusRange {
    pub const MIN: u16 = 100;
    pub const MAX: u16 = 599;

    pub fn contains(self, status: u16) -> bool {
        (self.first..=self.last).contains(&status)
    }
}

impl std::fmt::Display for StatusRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// `kind = "exec"` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCheck {
    /// `command` (required for exec): the program, an absolute path, then
    /// its arguments. Never empty; no string contains a NUL byte. Run
    /// directly, not through a shell.
    pub command: Vec<String>,
}

impl ExecCheck {
    /// The program (the first element of `command`).
    pub fn program(&self) -> &str {
        // Cannot fail: the parser refuses an empty command.
        &self.command[0]
    }

    /// The arguments after the program.
    pub fn args(&self) -> &[String] {
        &self.command[1..]
    }
}

/// What a service does when none of its backends is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllDown {
    /// `all_down = "refuse"` (default): new client connections are closed.
    #[default]
    Refuse,
    /// `all_down = "all"`: spread over every backend as if all were up
    /// (Envoy's panic mode): better than nothing when the checks are wrong.
    All,
    /// `sorry = "IP:port"`: send to this server instead (keepalived's
    /// `sorry_server`).
    Sorry(SocketAddr),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_jitter_is_a_tenth_rounded_to_the_millisecond() {
        let j = |ms| HealthConfig::default_jitter(Duration::from_millis(ms));
        assert_eq!(j(2000), Duration::from_millis(200));
        assert_eq!(j(1234), Duration::from_millis(123));
        assert_eq!(j(1235), Duration::from_millis(124));
        assert_eq!(j(4), Duration::ZERO);
        assert_eq!(j(5), Duration::from_millis(1));
        assert_eq!(j(1), Duration::ZERO);
    }

    #[test]
    fn status_ranges() {
        let r = StatusRange {
            first: 200,
            last: 299,
        };
        assert!(r.contains(200) && r.contains(299) && !r.contains(300));
        assert_eq!(r.to_string(), "200-299");
        assert_eq!(
            StatusRange {
                first: 204,
                last: 204
            }
            .to_string(),
            "204"
        );
        let h = HttpCheck {
            path: "/".into(),
            host: None,
            expect_status: vec![r, StatusRange::new_single(404)],
            expect_body: None,
        };
        assert!(h.expects(404) && h.expects(250) && !h.expects(403));
    }

    impl StatusRange {
        fn new_single(s: u16) -> Self {
            StatusRange { first: s, last: s }
        }
    }

    #[test]
    fn exec_program_and_args() {
        let e = ExecCheck {
            command: vec!["/bin/check".into(), "-q".into()],
        };
        assert_eq!(
            (e.program(), e.args()),
            ("/bin/check", &["-q".to_string()][..])
        );
    }
}
