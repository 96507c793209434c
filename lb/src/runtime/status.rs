//! `tandem lb status`: a point-in-time view of services and backends, in
//! the spirit of `ipvsadm -Ln --stats`, serialisable for `--json`.

use std::fmt::Write as _;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tandem_healthcheck::checker::HealthView;

use super::health::target_id;
use super::snapshot::{ServiceRt, Snapshot};
use crate::config::format_duration;
pub use crate::vrrp::status::VrrpStatus;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    pub services: Vec<ServiceStatus>,
    /// One entry per `[[vrrp]]` instance; empty without VRRP. `default` so a
    /// newer client reads an older server's answer.
    #[serde(default)]
    pub vrrp: Vec<VrrpStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    pub listen: String,
    pub scheduler: String,
    pub proxy_protocol: String,
    pub max_connections: u32,
    pub active: u32,
    pub total: u64,
    pub refused_max_connections: u64,
    pub no_backend: u64,
    /// Client persistence; None when off (and from an older server).
    #[serde(default)]
    pub persistence: Option<PersistenceStatus>,
    pub backends: Vec<BackendStatus>,
}

/// A service's client persistence: its settings and its table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersistenceStatus {
    /// `persistence_timeout` as written in durations (`"5m"`).
    pub timeout: String,
    /// `persistence_granularity`, the IPv4 netmask (`"255.255.255.0"`).
    pub granularity: String,
    /// `persistence_granularity_v6`, the IPv6 prefix length.
    pub granularity_v6: u8,
    /// Live entries (clients or networks pinned now; expired ones left out).
    pub entries: u64,
    /// `persistence_max_entries`.
    pub capacity: u32,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub refused_full: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    pub name: String,
    pub address: String,
    /// Weight from the config.
    pub weight: u32,
    /// Weight the scheduler uses now (0 when drained or down).
    pub effective_weight: u32,
    /// "up", "down" or "drained".
    pub state: String,
    pub max_connections: Option<u32>,
    pub active: u32,
    pub total: u64,
    pub bytes_to_backend: u64,
    pub bytes_to_client: u64,
    pub connect_failures: u64,
    pub refused_max_connections: u64,
    /// Clients (or networks, by the granularity) pinned to this backend by
    /// persistence now; 0 when it is off.
    #[serde(default)]
    pub pinned: u64,
    /// Why the backend is in its health state ("HTTP 503", "3 consecutive
    /// connect failures (passive)", ...), and since when (Unix ms).
    pub health_reason: String,
    pub health_since_unix_ms: u64,
    /// Slow-start ramp, 0..=1000 (1000 = full weight).
    pub weight_permille: u32,
    pub last_probe: Option<ProbeStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeStatus {
    pub ok: bool,
    pub detail: String,
    pub at_unix_ms: u64,
    pub duration_ms: f64,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Status {
    pub fn of(snap: &Snapshot, health: &HealthView, vrrp: Vec<VrrpStatus>) -> Status {
        let now = std::time::Instant::now();
        let services = snap
            .services
            .iter()
            .map(|s| (s, persistence(s, now)))
            .map(|(s, (persistence, pinned))| ServiceStatus {
                name: s.cfg.name.clone(),
                listen: s.cfg.listen.to_string(),
                scheduler: s.cfg.scheduler.to_string(),
                proxy_protocol: format!("{:?}", s.cfg.proxy_protocol).to_lowercase(),
                max_connections: s.cfg.max_connections,
                active: s.state.active.get(),
                total: s.state.total.get(),
                refused_max_connections: s.state.refused_max_conns.get(),
                no_backend: s.state.no_backend.get(),
                persistence,
                backends: s
                    .backends
                    .iter()
                    .zip(pinned)
                    .map(|(b, pinned)| {
                        let st = &b.state;
                        let h = health.get(&target_id(&s.cfg.name, &b.cfg));
                        let state = if st.is_drained() {
                            "drained"
                        } else if b.health.is_up() {
                            "up"
                        } else {
                            "down"
                        };
                        BackendStatus {
                            name: b.cfg.name.clone(),
                            address: b.cfg.address.to_string(),
                            weight: b.cfg.weight,
                            effective_weight: b.effective_weight(),
                            state: state.into(),
                            max_connections: b.cfg.max_connections,
                            active: st.active.get(),
                            total: st.total.get(),
                            bytes_to_backend: st.bytes_to_backend.get(),
                            bytes_to_client: st.bytes_to_client.get(),
                            connect_failures: st.connect_failures.get(),
                            refused_max_connections: st.refused_max_conns.get(),
                            pinned,
                            health_reason: h.map(|h| h.reason.clone()).unwrap_or_default(),
                            health_since_unix_ms: h.map(|h| unix_ms(h.since)).unwrap_or(0),
                            weight_permille: b.health.weight_permille(),
                            last_probe: h.and_then(|h| h.last_probe.as_ref()).map(|p| {
                                ProbeStatus {
                                    ok: p.ok,
                                    detail: p.detail.clone(),
                                    at_unix_ms: unix_ms(p.at),
                                    duration_ms: p.duration.as_secs_f64() * 1000.0,
                                }
                            }),
                        }
                    })
                    .collect(),
            })
            .collect();
        Status {
            node: snap.config.node.name.clone(),
            services,
            vrrp,
        }
    }

    /// The human table printed by `tandem lb status`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Node {}", self.node);
        let _ = writeln!(
            out,
            "{:<34} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} State / last check",
            "Service / -> Backend", "Weight", "ActConn", "Conns", "InBytes", "OutBytes", "Fails"
        );
        let now = unix_ms(SystemTime::now());
        for s in &self.services {
            s.render(&mut out, now);
        }
        render_vrrp(&self.vrrp, &mut out);
        out
    }
}

/// The service's persistence status and, per backend in config order, the
/// live entries pinned to it (all 0 when persistence is off). Walks the
/// table once, a shard lock at a time.
fn persistence(s: &ServiceRt, now: std::time::Instant) -> (Option<PersistenceStatus>, Vec<u64>) {
    let mut pinned = vec![0u64; s.backends.len()];
    let Some(t) = &s.persist else {
        return (None, pinned);
    };
    let entries = t.for_each_live(now, |addr| {
        if let Some(i) = s.pinned_index(addr) {
            pinned[i] += 1;
        }
    });
    let p = t.params();
    let st = &t.stats;
    let status = PersistenceStatus {
        timeout: format_duration(p.timeout),
        granularity: p.v4_netmask().to_string(),
        granularity_v6: p.v6_prefix,
        entries: entries as u64,
        capacity: p.max_entries,
        hits: st.hits.get(),
        misses: st.misses.get(),
        evictions: st.evictions.get(),
        refused_full: st.refused_full.get(),
    };
    (Some(status), pinned)
}

impl ServiceStatus {
    /// The service's line, then one line per backend; `now` in Unix ms.
    fn render(&self, out: &mut String, now: u64) {
        let refused = if self.refused_max_connections + self.no_backend > 0 {
            format!(
                " refused {} no-backend {}",
                self.refused_max_connections, self.no_backend
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "TCP {} {} {} (max {}, pp {}){}",
            self.listen,
            self.name,
            self.scheduler,
            self.max_connections,
            self.proxy_protocol,
            refused
        );
        if let Some(p) = &self.persistence {
            let _ = writeln!(
                out,
                "  persistent {} mask {} /{} (v6): {} of {} entries, hits {} misses {} evicted {} full {}",
                p.timeout,
                p.granularity,
                p.granularity_v6,
                p.entries,
                p.capacity,
                p.hits,
                p.misses,
                p.evictions,
                p.refused_full
            );
        }
        for b in &self.backends {
            b.render(out, now, self.persistence.is_some());
        }
    }
}

impl BackendStatus {
    /// The backend's line of the table; `now` in Unix ms; with `persistent`
    /// the clients pinned to it follow its state.
    fn render(&self, out: &mut String, now: u64, persistent: bool) {
        let b = self;
        let label = format!("  -> {} {}", b.address, b.name);
        let weight = if b.effective_weight == b.weight {
            b.weight.to_string()
        } else {
            format!("{}/{}", b.effective_weight, b.weight)
        };
        let check = match &b.last_probe {
            Some(p) => format!(
                "{} {} ({:.1}ms, {}s ago)",
                if p.ok { "ok" } else { "FAIL" },
                p.detail,
                p.duration_ms,
                now.saturating_sub(p.at_unix_ms) / 1000
            ),
            None => "no probe yet".to_string(),
        };
        let mut why = if b.state == "down" && !b.health_reason.is_empty() {
            format!(" [{}]", b.health_reason)
        } else {
            String::new()
        };
        if persistent {
            let _ = write!(why, " pinned {}", b.pinned);
        }
        let _ = writeln!(
            out,
            "{:<34} {:>8} {:>8} {:>10} {:>10} {:>10} {:>8} {}{} / {}",
            label,
            weight,
            b.active,
            b.total,
            human(b.bytes_to_backend),
            human(b.bytes_to_client),
            b.connect_failures,
            b.state,
            why,
            check
        );
    }
}

/// The VRRP table, when there are instances.
fn render_vrrp(vrrp: &[VrrpStatus], out: &mut String) {
    if !vrrp.is_empty() {
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>5} {:>3} {:<8} {:>9} {:<16} VIPs",
            "VRRP instance", "Interface", "VRID", "v", "State", "Priority", "Master"
        );
    }
    for v in vrrp {
        let prio = if v.priority == v.configured_priority {
            v.priority.to_string()
        } else {
            format!("{}/{}", v.priority, v.configured_priority)
        };
        let down = if v.tracks_down.is_empty() {
            String::new()
        } else {
            format!(" [down: {}]", v.tracks_down.join(", "))
        };
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>5} {:>3} {:<8} {:>9} {:<16} {}{}",
            v.instance,
            v.interface,
            v.vrid,
            v.version,
            v.state.to_uppercase(),
            prio,
            v.master.as_deref().unwrap_or("-"),
            v.vips.join(" "),
            down
        );
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
