//! `persistence_timeout`, `persistence_granularity`,
//! `persistence_granularity_v6` and `persistence_max_entries`: a service's
//! client persistence ([`Persistence`]).
//!
//! Rules: the IPv4 granularity is a netmask, as keepalived and `ipvsadm -M`
//! write it (a prefix length given instead is refused with the netmask it
//! stands for); the IPv6 one is a prefix length, as `ipvsadm -M` takes it for
//! IPv6 services. The companions are accepted with persistence off (so it
//! can be switched off by the timeout alone) and then have no effect.

use std::net::Ipv4Addr;

use super::super::Persistence;
use super::{DURATION_EXAMPLES, ErrorKind, Reported, Table, Walker, duration, integer, string};
use toml::de::DeValue;

const VALID_NETMASK: &str = r#"an IPv4 netmask of contiguous ones, "0.0.0.0" to "255.255.255.255", such as "255.255.255.0" (clients grouped by /24); default "255.255.255.255" (each client alone)"#;

impl Walker<'_> {
    /// The service's persistence; `Ok(None)` when it is off.
    pub(super) fn persistence(
        &mut self,
        table: &Table<'_, '_>,
    ) -> Result<Option<Persistence>, Reported> {
        let timeout_valid =
            format!(r#"{DURATION_EXAMPLES}; "0s" (the default) turns persistence off"#);
        let timeout = self.field(table, "persistence_timeout", &timeout_valid, |v| {
            duration(v, false)
        });
        let v4 = self.field(table, "persistence_granularity", VALID_NETMASK, netmask);
        let v6 = self.field(
            table,
            "persistence_granularity_v6",
            "an IPv6 prefix length from 0 to 128, such as 64; default 128 (each client alone)",
            |v| integer(v, 0, 128),
        );
        let max_valid = format!(
            "an integer from 1 to {}; default {}",
            Persistence::MAX_MAX_ENTRIES,
            Persistence::DEFAULT_MAX_ENTRIES
        );
        let max = self.field(table, "persistence_max_entries", &max_valid, |v| {
            integer(v, 1, i64::from(Persistence::MAX_MAX_ENTRIES))
        });
        let (timeout, v4, v6, max) = (timeout?, v4?, v6?, max?);
        let Some(timeout) = timeout.filter(|t| !t.is_zero()) else {
            return Ok(None);
        };
        Ok(Some(Persistence {
            timeout,
            v4_prefix: v4.unwrap_or(32),
            v6_prefix: v6.map_or(128, |p| p as u8),
            max_entries: max.map_or(Persistence::DEFAULT_MAX_ENTRIES, |m| m as u32),
        }))
    }
}

/// A dotted IPv4 netmask to its prefix length.
fn netmask(v: &DeValue<'_>) -> Result<u8, ErrorKind> {
    let as_mask = |len: i64| {
        let bits = u32::MAX.checked_shl(32 - len as u32).unwrap_or(0);
        Ipv4Addr::from(bits)
    };
    if let DeValue::Integer(_) = v {
        let why = match integer(v, 0, 32) {
            Ok(len) => format!(
                "a prefix length; write it as the netmask \"{}\"",
                as_mask(len)
            ),
            Err(_) => "an integer, not a netmask".to_string(),
        };
        return Err(ErrorKind::Invalid(why));
    }
    let s = string(v)?;
    let Ok(ip) = s.parse::<Ipv4Addr>() else {
        let len = s.strip_prefix('/').unwrap_or(s);
        let why = match len.parse::<u8>() {
            Ok(n @ 0..=32) => format!(
                "a prefix length; write it as the netmask \"{}\"",
                as_mask(i64::from(n))
            ),
            _ => "not an IPv4 netmask".to_string(),
        };
        return Err(ErrorKind::Invalid(why));
    };
    let bits = u32::from(ip);
    if bits.leading_ones() + bits.trailing_zeros() < 32 {
        return Err(ErrorKind::Invalid(
            "not a netmask: its ones are not contiguous from the left".into(),
        ));
    }
    Ok(bits.leading_ones() as u8)
}
