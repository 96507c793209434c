//! From `[service.health]` to health-checker targets.
//!
//! Every backend gets a target, so every backend has one up/down verdict
//! with one source of truth (the checker's [`TargetHandle`]):
//! - with a health table: the configured probe and timings;
//! - without one: no active probing while up (the backend starts up, as
//!   HAProxy assumes of a server without `check`; there is no `alpha` to say
//!   otherwise), but passive detection is on (`passive_fall`), and once
//!   passive failures mark it down a TCP connect probe every
//!   [`PASSIVE_ONLY_RECHECK`] brings it back after `rise` successes.
//!   Without that, a backend marked down by traffic alone could never
//!   return.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_healthcheck::checker::{Target, TargetError, TargetHandle, TargetId};
use tandem_healthcheck::machine::{InitialState, Jitter, Params};
use tandem_healthcheck::probe::{ExecProbe, HttpProbe, Probe, StatusRange};

use super::key::BackendKey;
use crate::config::{BackendConfig, Config, HealthCheck, HealthConfig, ProxyProtocol};

/// Probe period of a backend without a health table while it is down.
pub const PASSIVE_ONLY_RECHECK: Duration = Duration::from_secs(2);
/// Steady-state "interval" of a backend without a health table: long enough
/// that it is never probed while up in practice.
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The health target of `backend` of `service` (see [`BackendKey::target_id`]).
pub fn target_id(service: &str, backend: &BackendConfig) -> TargetId {
    BackendKey::of(service, backend).target_id()
}

/// The probe and timings for one backend of a service that sends `proxy`
/// to its backends.
pub fn target(
    service: &str,
    proxy: ProxyProtocol,
    b: &BackendConfig,
) -> Result<Target, TargetError> {
    let id = target_id(service, b);
    let (probe, params) = match &b.health {
        Some(h) => (probe_of(b.address, h, proxy), params_of(h, b.passive_fall)),
        None => (
            Probe::Tcp { addr: b.address },
            Params {
                interval: NEVER,
                fastinter: Some(PASSIVE_ONLY_RECHECK),
                downinter: Some(PASSIVE_ONLY_RECHECK),
                jitter: Jitter::Max(Duration::from_millis(100)),
                passive_fall: b.passive_fall,
                ..Params::default()
            },
        ),
    };
    Target::new(id, probe, params)
}

/// Every backend's target in `config`.
pub fn targets(config: &Config) -> Result<Vec<Target>, TargetError> {
    let mut out = Vec::new();
    for s in &config.services {
        for b in &s.backends {
            out.push(target(&s.name, s.proxy_protocol, b)?);
        }
    }
    Ok(out)
}

fn params_of(h: &HealthConfig, passive_fall: u32) -> Params {
    Params {
        interval: h.interval,
        fastinter: Some(h.fastinter),
        downinter: Some(h.downinter),
        timeout: h.timeout,
        rise: h.rise,
        fall: h.fall,
        jitter: Jitter::Max(h.jitter),
        passive_fall,
        slow_start: h.slow_start,
        initial: if h.alpha {
            InitialState::Down
        } else {
            InitialState::Up
        },
    }
}

/// An http check of a service whose traffic carries a PROXY header sends
/// one too, the form that relays no client (v2: LOCAL; v1: UNKNOWN; the
/// receiver uses the real endpoints), so a backend that requires the
/// header can be checked at all. Tcp checks send nothing: a
/// connect and a close need no header.
fn probe_of(traffic: SocketAddr, h: &HealthConfig, proxy: ProxyProtocol) -> Probe {
    let addr = match h.port {
        Some(p) => SocketAddr::new(traffic.ip(), p),
        None => traffic,
    };
    match &h.check {
        HealthCheck::Tcp => Probe::Tcp { addr },
        HealthCheck::Http(c) => {
            let mut p = HttpProbe::get(addr, &c.path);
            p.host = c.host.clone().unwrap_or_default();
            // The config validated each range (100..=599, first <= last),
            // so none is dropped here.
            p.expect_status = c
                .expect_status
                .iter()
                .filter_map(|r| StatusRange::new(r.first, r.last).ok())
                .collect();
            p.expect_body = c.expect_body.clone();
            p.preamble = match proxy {
                ProxyProtocol::Off => Vec::new(),
                ProxyProtocol::V1 => tandem_proxy_protocol::encode_v1_unknown(),
                ProxyProtocol::V2 => tandem_proxy_protocol::encode_v2_local(),
            };
            Probe::Http(p)
        }
        HealthCheck::Exec(c) => {
            let args: Vec<&str> = c.args().iter().map(String::as_str).collect();
            Probe::Exec(ExecProbe::new(c.program(), &args))
        }
    }
}

/// The verdict the data plane reads at pick time.
#[derive(Debug, Clone)]
pub struct Health(pub Option<TargetHandle>);

impl Health {
    pub fn is_up(&self) -> bool {
        self.0.as_ref().is_none_or(TargetHandle::is_up)
    }

    /// 0..=1000: the slow-start ramp (1000 when not ramping).
    pub fn weight_permille(&self) -> u32 {
        self.0.as_ref().map_or(1000, TargetHandle::weight_permille)
    }

    pub fn report(&self, ok: bool) {
        if let Some(h) = &self.0 {
            h.report_passive(ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `alpha` is the only key that picks the initial state; a backend
    /// without a health table starts up.
    #[test]
    fn alpha_starts_the_target_down() {
        let text = r#"
[[service]]
name = "api"
listen = "127.0.0.1:8080"
[service.health]
alpha = true
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
alpha = false
[[service]]
name = "passive"
listen = "127.0.0.1:8090"
[[service.backend]]
address = "127.0.0.1:8091"
"#;
        let config = Config::parse(text, std::path::Path::new("lb.toml")).unwrap();
        let initial: Vec<InitialState> = targets(&config)
            .unwrap()
            .iter()
            .map(|t| t.params().initial)
            .collect();
        use InitialState::{Down, Up};
        assert_eq!(initial, [Down, Up, Up]);
    }

    /// http checks carry the service's PROXY version; tcp checks never do.
    #[test]
    fn http_checks_of_a_proxy_protocol_service_send_the_header() {
        let svc = |name: &str, port: u16, proxy: &str, kind: &str| {
            format!(
                "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nproxy_protocol = \"{proxy}\"\n\
                 [service.health]\nkind = \"{kind}\"\n{path}[[service.backend]]\naddress = \"127.0.0.1:{}\"\n",
                port + 1,
                path = if kind == "http" {
                    "path = \"/readyz\"\n"
                } else {
                    ""
                },
            )
        };
        let text = [
            svc("v2", 8100, "v2", "http"),
            svc("v1", 8110, "v1", "http"),
            svc("off", 8120, "off", "http"),
            svc("tcp", 8130, "v2", "tcp"),
        ]
        .concat();
        let config = Config::parse(&text, std::path::Path::new("lb.toml")).unwrap();
        let sent: Vec<Vec<u8>> = targets(&config)
            .unwrap()
            .iter()
            .map(|t| match t.probe() {
                Probe::Http(h) => h.preamble.clone(),
                _ => b"tcp".to_vec(),
            })
            .collect();
        let v2 = tandem_proxy_protocol::encode_v2_local();
        assert_eq!(
            sent,
            [v2, b"PROXY UNKNOWN\r\n".to_vec(), vec![], b"tcp".to_vec()]
        );
    }
}
