//! `[[vrrp]]`: keepalived's `vrrp_instance`, one table per instance.
//!
//! Checks across instances: names are unique; so is (interface, VRID),
//! since the VRID picks the virtual MAC 00-00-5E-00-01-{VRID} and the
//! adverts' identity on a link (RFC 5798 §7.3); and a VIP appears once per
//! interface. A `track` service must be a `[[service]]` of the same file.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::super::values::{boolean, ifname, ipv4_cidr, ipv4_host};
use super::super::vrrp::{
    AdvertInterval, GarpConfig, Priority, Track, TrackTarget, Version, Vrid, VrrpConfig,
};
use super::{
    DURATION_EXAMPLES, DeValue, ErrorKind, Field, Reported, Table, VALID_NAME, Value, Walker,
    duration, integer, is_name_char, parse_name, string,
};
use tandem_service::config::format_duration;

pub(super) const VRRP_KEYS: &[&str] = &[
    "name",
    "interface",
    "virtual_router_id",
    "priority",
    "version",
    "advert_interval",
    "preempt",
    "preempt_delay",
    "virtual_ips",
    "unicast_src_ip",
    "unicast_peers",
    "auth_pass",
    "track",
    "notify",
    "notify_timeout",
    "garp_master_delay",
    "garp_master_repeat",
    "garp_interval",
    "garp_master_refresh",
];
pub(super) const TRACK_KEYS: &[&str] = &["service", "interface", "weight"];

const VALID_IFNAME: &str =
    "a Linux interface name: 1 to 15 bytes, no \"/\", \":\" or whitespace, such as \"eth0\"";
const VALID_VIPS: &str = r#"a non-empty array of IPv4 addresses with their prefix length 1 to 32, such as ["198.18.0.100/24"]"#;
const VALID_HOST_IP: &str =
    r#"an IPv4 address such as "198.18.0.2", not 0.0.0.0, multicast or broadcast"#;
const VALID_TRACK: &str =
    r#"an inline table such as { service = "api", weight = -50 } or { interface = "eth1" }"#;
const VALID_NOTIFY: &str = r#"an array of strings: the program's absolute path, then its arguments, such as ["/usr/local/bin/vrrp-notify", "--log"]"#;

/// Uniqueness across instances.
#[derive(Default)]
struct Seen {
    names: HashMap<String, (String, usize)>,
    vrids: HashMap<(String, u8), (String, usize)>,
    vips: HashMap<(String, Ipv4Addr), (String, usize)>,
}

impl Walker<'_> {
    /// Every `[[vrrp]]` instance. `services` are the names of the file's
    /// services, valid or not, for `track`.
    pub(super) fn vrrp(
        &mut self,
        root: &Table<'_, '_>,
        services: &[String],
    ) -> Result<Vec<VrrpConfig>, Reported> {
        let Some(tables) = self.array_of_tables(root, "vrrp", VRRP_KEYS, "[[vrrp]]")? else {
            return Ok(Vec::new());
        };
        let mut seen = Seen::default();
        let mut all = Ok(Vec::new());
        for table in tables {
            let instance = table.and_then(|t| self.vrrp_instance(&t, services, &mut seen));
            match (&mut all, instance) {
                (Ok(list), Ok(v)) => list.push(v),
                _ => all = Err(Reported),
            }
        }
        all
    }

    fn vrrp_instance(
        &mut self,
        table: &Table<'_, '_>,
        services: &[String],
        seen: &mut Seen,
    ) -> Result<VrrpConfig, Reported> {
        let name = self.required(table, "name", VALID_NAME, |v| parse_name(v, is_name_char));
        if let Ok(n) = &name {
            let v = self.key_value(table, "name");
            let valid = "a name no other [[vrrp]] instance uses";
            self.unique(&mut seen.names, n.clone(), v, table.field("name"), valid);
        }
        let interface = self.required(table, "interface", VALID_IFNAME, ifname);
        let vrid = self.required(table, "virtual_router_id", "an integer from 1 to 255", vrid);
        if let (Ok(ifname), Ok(vrid)) = (&interface, &vrid) {
            let v = self.key_value(table, "virtual_router_id");
            let valid = format!("a virtual_router_id no other instance on \"{ifname}\" uses");
            let key = (ifname.clone(), vrid.get());
            let path = table.field("virtual_router_id");
            self.unique(&mut seen.vrids, key, v, path, &valid);
        }
        let priority = self.field(
            table,
            "priority",
            "an integer from 1 to 255 (255 = this node owns the addresses)",
            priority,
        );
        let version = self.field(table, "version", "2 or 3", version);
        let version_n = version
            .as_ref()
            .ok()
            .map(|v| if *v == Some(Version::V2) { 2 } else { 3 });
        let advert = self.advert_interval(table, version_n);
        let preempt = self.field(table, "preempt", "true or false", boolean);
        let preempt_valid = format!(
            "{DURATION_EXAMPLES}, at most \"{}\"",
            format_duration(VrrpConfig::MAX_PREEMPT_DELAY)
        );
        let preempt_delay = self.field(table, "preempt_delay", &preempt_valid, |v| {
            let d = duration(v, false)?;
            if d > VrrpConfig::MAX_PREEMPT_DELAY {
                Err(ErrorKind::OutOfRange)
            } else {
                Ok(d)
            }
        });
        let vips = self.virtual_ips(table, interface.as_ref().ok(), seen);
        let src = self.field(table, "unicast_src_ip", VALID_HOST_IP, ipv4_host);
        let peers = self.unicast_peers(table, src.as_ref().ok().copied().flatten());
        let auth_pass = self.auth_pass(table, version_n);
        let track = self.tracks(table, services);
        let notify = self.command_array(table, "notify", VALID_NOTIFY);
        let positive = format!("{DURATION_EXAMPLES}, greater than zero");
        let notify_timeout = self.field(table, "notify_timeout", &positive, |v| duration(v, true));
        let garp = self.garp(table);
        Ok(VrrpConfig {
            name: name?,
            interface: interface?,
            vrid: vrid?,
            priority: priority?.unwrap_or(VrrpConfig::DEFAULT_PRIORITY),
            version: version?.unwrap_or(VrrpConfig::DEFAULT_VERSION),
            advert_interval: advert?,
            preempt: preempt?.unwrap_or(true),
            preempt_delay: preempt_delay?.unwrap_or(Duration::ZERO),
            virtual_ips: vips?,
            unicast_src_ip: src?,
            unicast_peers: peers?,
            auth_pass: auth_pass?,
            track: track?,
            notify: notify?,
            notify_timeout: notify_timeout?.unwrap_or(VrrpConfig::DEFAULT_NOTIFY_TIMEOUT),
            garp: garp?,
        })
    }

    /// The value of a key that was just read from `table`.
    fn key_value<'t, 'i>(&self, table: &Table<'t, 'i>, key: &str) -> &'t Value<'i> {
        // Cannot fail: callers only ask for keys they converted.
        table.get(key).expect("a key that converted is present")
    }

    /// `advert_interval` in the version's unit and range. The default is
    /// 100 ms for v3 (fast failover: master down after ~3 × 100 ms) and 1 s
    /// for v2, whose adverts count whole seconds (keepalived's default).
    fn advert_interval(
        &mut self,
        table: &Table<'_, '_>,
        version: Option<u8>,
    ) -> Result<AdvertInterval, Reported> {
        let Some(v) = table.get("advert_interval") else {
            return Ok(match version {
                Some(2) => AdvertInterval::ONE_SECOND,
                _ => AdvertInterval::for_version(Version::V3, VrrpConfig::DEFAULT_ADVERT_INTERVAL)
                    .expect("the default interval fits VRRPv3"),
            });
        };
        let which = if table.get("version").is_some() {
            format!("version = {}", version.unwrap_or(3))
        } else {
            "version 3 (the default)".to_string()
        };
        let valid = match version {
            Some(2) => format!(r#"for {which}: whole seconds from "1s" to "255s""#),
            _ => format!(r#"for {which}: "10ms" to "40.95s" in steps of 10ms"#),
        };
        let d = match duration(v.get_ref(), false) {
            Ok(d) => d,
            Err(kind) => {
                return Err(self.bad_value(v, table.field("advert_interval"), kind, &valid));
            }
        };
        // An unreadable version was reported already; judging against a
        // guessed one would add a second, possibly wrong, error.
        if version.is_none() {
            return Err(Reported);
        }
        match advert_fits(version.unwrap_or(3), d) {
            Ok(interval) => Ok(interval),
            Err(kind) => Err(self.bad_value(v, table.field("advert_interval"), kind, &valid)),
        }
    }

    fn virtual_ips(
        &mut self,
        table: &Table<'_, '_>,
        interface: Option<&String>,
        seen: &mut Seen,
    ) -> Result<Vec<(Ipv4Addr, u8)>, Reported> {
        let valid = VALID_VIPS;
        let Some(vips) = self.array(table, "virtual_ips", valid, Some("empty array"), |_, v| {
            ipv4_cidr(v)
        })?
        else {
            return Err(self.push(
                &table.header,
                table.field("virtual_ips"),
                None,
                ErrorKind::Missing,
                valid,
            ));
        };
        let mut ok = true;
        for (i, ((ip, _), v)) in vips.iter().enumerate() {
            // Without a valid interface, duplicates are judged within the
            // instance only (keyed on an empty name).
            let ifname = interface.cloned().unwrap_or_default();
            let unique_valid = match interface {
                Some(i) => format!("an address no other virtual_ips entry on \"{i}\" has"),
                None => "an address no other virtual_ips entry has".into(),
            };
            let path = format!("{}[{i}]", table.field("virtual_ips"));
            let before = self.errors.len();
            self.unique(&mut seen.vips, (ifname, *ip), v, path, &unique_valid);
            ok &= self.errors.len() == before;
        }
        if ok {
            Ok(vips.into_iter().map(|(cidr, _)| cidr).collect())
        } else {
            Err(Reported)
        }
    }

    fn unicast_peers(
        &mut self,
        table: &Table<'_, '_>,
        src: Option<Ipv4Addr>,
    ) -> Result<Vec<Ipv4Addr>, Reported> {
        let valid = r#"an array of IPv4 addresses such as ["198.18.0.3"], none 0.0.0.0, multicast or broadcast; empty = multicast"#;
        let Some(peers) = self.array(table, "unicast_peers", valid, None, |_, v| ipv4_host(v))?
        else {
            return Ok(Vec::new());
        };
        let mut firsts: HashMap<Ipv4Addr, (String, usize)> = HashMap::new();
        let before = self.errors.len();
        for (i, (ip, v)) in peers.iter().enumerate() {
            let path = format!("{}[{i}]", table.field("unicast_peers"));
            if Some(*ip) == src {
                let src_v = self.key_value(table, "unicast_src_ip");
                let with = format!(
                    "unicast_src_ip at line {}: a node is not its own peer",
                    self.lines.line(src_v.span().start)
                );
                self.bad_value(
                    v,
                    path,
                    ErrorKind::Conflict { with },
                    "the other nodes' addresses",
                );
                continue;
            }
            self.unique(
                &mut firsts,
                *ip,
                v,
                path,
                "an address not already in unicast_peers",
            );
        }
        if self.errors.len() != before {
            return Err(Reported);
        }
        Ok(peers.into_iter().map(|(ip, _)| ip).collect())
    }

    /// `auth_pass`: VRRPv2's simple password (RFC 3768 §5.3.6); RFC 5798
    /// removed authentication, so with v3 it is an error, not ignored.
    fn auth_pass(&mut self, table: &Table<'_, '_>, version: Option<u8>) -> Field<String> {
        let valid = "a string of 1 to 8 bytes, with version = 2 only";
        let pass = self.field(table, "auth_pass", valid, |v| {
            let s = string(v)?;
            match s.len() {
                0 => Err(ErrorKind::Invalid("empty password".into())),
                1..=8 => Ok(s.to_string()),
                n => Err(ErrorKind::Invalid(format!(
                    "{n} bytes, longer than the 8 of a VRRPv2 packet"
                ))),
            }
        })?;
        if pass.is_none() || version != Some(3) {
            return Ok(pass);
        }
        let with = match table.get("version") {
            Some(v) => format!("version = 3 at line {}", self.lines.line(v.span().start)),
            None => "version 3 (the default)".into(),
        };
        let v = self.key_value(table, "auth_pass");
        Err(self.bad_value(
            v,
            table.field("auth_pass"),
            ErrorKind::Conflict { with },
            "auth_pass only with version = 2: VRRPv3 (RFC 5798) has no authentication",
        ))
    }

    fn tracks(
        &mut self,
        table: &Table<'_, '_>,
        services: &[String],
    ) -> Result<Vec<Track>, Reported> {
        let Some(v) = table.get("track") else {
            return Ok(Vec::new());
        };
        let path = table.field("track");
        let DeValue::Array(items) = v.get_ref() else {
            let found = v.get_ref().type_str();
            let valid = r#"an array of inline tables such as [{ service = "api", weight = -50 }, { interface = "eth1" }]"#;
            return Err(self.bad_value(v, path, ErrorKind::WrongType { found }, valid));
        };
        let mut firsts: HashMap<TrackTarget, (String, usize)> = HashMap::new();
        let mut out = Ok(Vec::new());
        for (i, item) in items.iter().enumerate() {
            let path = format!("{path}[{i}]");
            let track = self.track(item, path, services, &mut firsts);
            match (&mut out, track) {
                (Ok(list), Ok(t)) => list.push(t),
                _ => out = Err(Reported),
            }
        }
        out
    }

    fn track(
        &mut self,
        item: &Value<'_>,
        path: String,
        services: &[String],
        firsts: &mut HashMap<TrackTarget, (String, usize)>,
    ) -> Result<Track, Reported> {
        let DeValue::Table(entries) = item.get_ref() else {
            let found = item.get_ref().type_str();
            return Err(self.bad_value(item, path, ErrorKind::WrongType { found }, VALID_TRACK));
        };
        let t = Table {
            entries,
            header: item.span(),
            path,
        };
        self.check_keys(&t, TRACK_KEYS, "a track entry");
        let service_valid = track_service_valid(services);
        let service = self.field(&t, "service", &service_valid, |v| {
            let s = string(v)?;
            if services.iter().any(|n| n == s) {
                Ok(s.to_string())
            } else {
                Err(ErrorKind::Invalid("no [[service]] has this name".into()))
            }
        });
        let interface = self.field(&t, "interface", VALID_IFNAME, ifname);
        let weight_valid = format!(
            "an integer from -{0} to {0}; 0 = go to FAULT while the target is down",
            Track::MAX_WEIGHT
        );
        let weight = self.field(&t, "weight", &weight_valid, |v| {
            integer(
                v,
                -i64::from(Track::MAX_WEIGHT),
                i64::from(Track::MAX_WEIGHT),
            )
        });
        let target = self.track_target(&t, service?, interface?)?;
        let key = match &target {
            TrackTarget::Service(_) => "service",
            TrackTarget::Interface(_) => "interface",
        };
        let v = self.key_value(&t, key);
        let before = self.errors.len();
        self.unique(
            firsts,
            target.clone(),
            v,
            t.field(key),
            "a target not already tracked",
        );
        if self.errors.len() != before {
            return Err(Reported);
        }
        Ok(Track {
            target,
            weight: weight?.map_or(Track::DEFAULT_WEIGHT, |w| w as i32),
        })
    }

    /// A track entry's one target: `service` or `interface`, not both.
    fn track_target(
        &mut self,
        t: &Table<'_, '_>,
        service: Option<String>,
        interface: Option<String>,
    ) -> Result<TrackTarget, Reported> {
        match (service, interface) {
            (Some(s), None) => Ok(TrackTarget::Service(s)),
            (None, Some(i)) => Ok(TrackTarget::Interface(i)),
            (None, None) => Err(self.push(
                &t.header,
                t.field("service"),
                None,
                ErrorKind::Missing,
                r#"service = "NAME" or interface = "IF""#,
            )),
            (Some(_), Some(_)) => {
                let s = self.key_value(t, "service");
                let with = format!(
                    "service = {} in the same entry",
                    self.lines.written(&s.span())
                );
                let v = self.key_value(t, "interface");
                Err(self.bad_value(
                    v,
                    t.field("interface"),
                    ErrorKind::Conflict { with },
                    "one target per entry: service or interface",
                ))
            }
        }
    }

    fn garp(&mut self, table: &Table<'_, '_>) -> Result<GarpConfig, Reported> {
        let d = GarpConfig::default();
        let delay_valid = format!("{DURATION_EXAMPLES}; \"0s\" = no second burst");
        let delay = self.field(table, "garp_master_delay", &delay_valid, |v| {
            duration(v, false)
        });
        let repeat_valid = format!("an integer from 1 to {}", GarpConfig::MAX_REPEAT);
        let repeat = self.field(table, "garp_master_repeat", &repeat_valid, |v| {
            integer(v, 1, i64::from(GarpConfig::MAX_REPEAT))
        });
        let interval_valid = format!("{DURATION_EXAMPLES}, at most \"1s\"");
        let interval = self.field(table, "garp_interval", &interval_valid, |v| {
            let d = duration(v, false)?;
            if d > GarpConfig::MAX_INTERVAL {
                Err(ErrorKind::OutOfRange)
            } else {
                Ok(d)
            }
        });
        let refresh_valid = format!("\"0s\" (off) or {DURATION_EXAMPLES}, at least \"1s\"");
        let refresh = self.field(table, "garp_master_refresh", &refresh_valid, |v| {
            let d = duration(v, false)?;
            if !d.is_zero() && d < GarpConfig::MIN_REFRESH {
                Err(ErrorKind::OutOfRange)
            } else {
                Ok(d)
            }
        });
        Ok(GarpConfig {
            delay: delay?.unwrap_or(d.delay),
            repeat: repeat?.map_or(d.repeat, |r| r as u32),
            interval: interval?.unwrap_or(d.interval),
            refresh: refresh?.unwrap_or(d.refresh),
        })
    }
}

/// `virtual_router_id`: 1 to 255 (RFC 5798 §5.2.3).
fn vrid(v: &DeValue<'_>) -> Result<Vrid, ErrorKind> {
    let n = integer(v, 1, 255)?;
    Vrid::new(n as u8).map_err(|_| ErrorKind::OutOfRange)
}

/// `priority`: 1 to 255 (RFC 5798 §5.2.4; 0 is only ever sent, to resign).
fn priority(v: &DeValue<'_>) -> Result<Priority, ErrorKind> {
    let n = integer(v, 1, 255)?;
    Priority::configured(n as u8).map_err(|_| ErrorKind::OutOfRange)
}

/// `version`: 2 (RFC 3768) or 3 (RFC 5798).
fn version(v: &DeValue<'_>) -> Result<Version, ErrorKind> {
    Ok(match integer(v, 2, 3)? {
        2 => Version::V2,
        _ => Version::V3,
    })
}

/// RFC 5798 §5.2.7: v3 carries 12 bits of centiseconds; RFC 3768 §5.3.7:
/// v2 carries 8 bits of seconds.
fn advert_fits(version: u8, d: Duration) -> Result<AdvertInterval, ErrorKind> {
    let (unit, min, max, unit_name) = match version {
        2 => (1_000_000_000, 1, 255, "seconds, which VRRPv2"),
        _ => (10_000_000, 1, 4095, "centiseconds, which VRRPv3"),
    };
    let n = d.as_nanos();
    if !n.is_multiple_of(unit) {
        Err(ErrorKind::Invalid(format!(
            "not a whole number of {unit_name} adverts carry"
        )))
    } else if !(min..=max).contains(&(n / unit)) {
        Err(ErrorKind::OutOfRange)
    } else {
        let version = if version == 2 {
            Version::V2
        } else {
            Version::V3
        };
        AdvertInterval::for_version(version, d).map_err(|_| ErrorKind::OutOfRange)
    }
}

/// What a track entry's `service` may be: this file's service names.
fn track_service_valid(services: &[String]) -> String {
    if services.is_empty() {
        "the name of a [[service]] of this file (it has none)".to_string()
    } else {
        let quoted: Vec<String> = services.iter().map(|s| format!("\"{s}\"")).collect();
        format!(
            "the name of a [[service]] of this file: {}",
            quoted.join(", ")
        )
    }
}

/// The `name` of every `[[service]]` written as a string, valid or not, so a
/// `track` of a service with another mistake is not reported twice.
pub(super) fn service_names(root: &Table<'_, '_>) -> Vec<String> {
    let Some(DeValue::Array(items)) = root.get("service").map(|v| v.get_ref()) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    items
        .iter()
        .filter_map(|s| s.get_ref().get("name")?.get_ref().as_str())
        .filter(|n| seen.insert(n.to_string()))
        .map(str::to_string)
        .collect()
}
