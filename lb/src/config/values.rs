//! Converters from one TOML value to one typed balancer value that need no
//! context: IPv4 hosts and prefixes, interface names, command words,
//! scheduler names, HTTP check statuses, paths and hosts. The generic ones (integers, durations, names, IP:port)
//! are `tandem_service::config`'s and re-exported here for the walk.

use std::net::{IpAddr, Ipv4Addr};

use toml::de::DeValue;

use super::health::StatusRange;
use crate::sched::SchedulerKind;
use tandem_service::config::ErrorKind;

pub(super) use tandem_service::config::values::{
    boolean, duration, integer, is_name_char, join_names, one_of, parse_name, socket_addr, string,
};

/// An IPv4 address that can name one host: not unspecified (0.0.0.0), not
/// multicast (224/4) and not the limited broadcast (255.255.255.255).
pub(super) fn ipv4_host(v: &DeValue<'_>) -> Result<Ipv4Addr, ErrorKind> {
    let s = string(v)?;
    let ip: Ipv4Addr = s.parse().map_err(|_| {
        let why = if s.parse::<IpAddr>().is_ok() {
            "an IPv6 address (VRRP here is IPv4 only)"
        } else if s.contains('/') {
            "not an IPv4 address (no /prefix here)"
        } else {
            "not an IPv4 address (host names are not resolved)"
        };
        ErrorKind::Invalid(why.into())
    })?;
    host_ip_problem(ip).map_or(Ok(ip), |why| Err(ErrorKind::Invalid(why.into())))
}

fn host_ip_problem(ip: Ipv4Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        Some("unspecified address")
    } else if ip.is_multicast() {
        Some("multicast address")
    } else if ip.is_broadcast() {
        Some("broadcast address")
    } else {
        None
    }
}

/// `"A.B.C.D/len"`, len 1 to 32, the address a host address (see
/// [`ipv4_host`]). The address keeps its host bits: `198.18.0.100/24` is
/// the address 198.18.0.100 on a /24, as `ip addr add` means it.
pub(super) fn ipv4_cidr(v: &DeValue<'_>) -> Result<(Ipv4Addr, u8), ErrorKind> {
    let s = string(v)?;
    let invalid = |why: &str| ErrorKind::Invalid(why.into());
    let Some((ip, len)) = s.split_once('/') else {
        return Err(invalid("missing /prefix length"));
    };
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| invalid("not an IPv4 address before the /"))?;
    let len: u8 = match len.parse() {
        Ok(n @ 1..=32) if len.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => return Err(invalid("prefix length not from 1 to 32")),
    };
    match host_ip_problem(ip) {
        Some(why) => Err(invalid(why)),
        None => Ok((ip, len)),
    }
}

/// A Linux interface name as the kernel's `dev_valid_name` accepts it: 1 to
/// 15 bytes (IFNAMSIZ less the NUL), not `.` or `..`, no `/`, `:` (alias
/// labels) or whitespace.
pub(super) fn ifname(v: &DeValue<'_>) -> Result<String, ErrorKind> {
    let s = string(v)?;
    let invalid = |why: String| Err(ErrorKind::Invalid(why));
    if s.is_empty() {
        invalid("empty interface name".into())
    } else if s.len() > 15 {
        invalid(format!("{} bytes, longer than 15", s.len()))
    } else if s == "." || s == ".." {
        invalid("not an interface name".into())
    } else if let Some(c) = s
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        invalid(format!("character {c:?} not allowed in an interface name"))
    } else {
        Ok(s.to_string())
    }
}

/// One element of a command array (`command`, `notify`): no NUL byte, which
/// cannot be passed to exec; the first element, the program, must also be an
/// absolute path (no `$PATH` search at run time).
pub(super) fn command_word(v: &DeValue<'_>, first: bool) -> Result<String, ErrorKind> {
    let s = string(v)?;
    if s.contains('\0') {
        Err(ErrorKind::Invalid("contains a NUL byte".into()))
    } else if first && !s.starts_with('/') {
        Err(ErrorKind::Invalid(
            "the program is not an absolute path".into(),
        ))
    } else {
        Ok(s.to_string())
    }
}

pub(super) fn names_of_schedulers() -> String {
    join_names(SchedulerKind::ALL.iter().map(|k| k.name()))
}

/// `200`, `"200"` or `"200-299"`, each status 100 to 599.
pub(super) fn status_range(v: &DeValue<'_>) -> Result<StatusRange, ErrorKind> {
    let (min, max) = (i64::from(StatusRange::MIN), i64::from(StatusRange::MAX));
    if let DeValue::Integer(_) = v {
        let s = integer(v, min, max)? as u16;
        return Ok(StatusRange { first: s, last: s });
    }
    let s = string(v).map_err(|_| ErrorKind::WrongType {
        found: v.type_str(),
    })?;
    let status = |t: &str| -> Result<u16, ErrorKind> {
        match t.parse::<u16>() {
            Ok(n)
                if (StatusRange::MIN..=StatusRange::MAX).contains(&n)
                    && t.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(n)
            }
            Ok(_) => Err(ErrorKind::OutOfRange),
            Err(_) => Err(ErrorKind::Invalid(
                "not a status or a range of statuses".into(),
            )),
        }
    };
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (status(a)?, status(b)?),
        None => {
            let n = status(s)?;
            (n, n)
        }
    };
    if first > last {
        return Err(ErrorKind::Invalid("range ends before it starts".into()));
    }
    Ok(StatusRange { first, last })
}

/// The request target goes into the request line as written: no space or
/// control character may break it.
pub(super) fn http_path(v: &DeValue<'_>) -> Result<String, ErrorKind> {
    let s = string(v)?;
    if !s.starts_with('/') {
        Err(ErrorKind::Invalid("does not start with \"/\"".into()))
    } else if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        Err(ErrorKind::Invalid(format!(
            "character {c:?} not allowed in a request path"
        )))
    } else {
        Ok(s.to_string())
    }
}

pub(super) fn http_host(v: &DeValue<'_>) -> Result<String, ErrorKind> {
    let s = string(v)?;
    if s.is_empty() {
        Err(ErrorKind::Invalid("empty host".into()))
    } else if let Some(c) = s.chars().find(|&c| !c.is_ascii_graphic() || c == '/') {
        Err(ErrorKind::Invalid(format!(
            "character {c:?} not allowed in a Host header"
        )))
    } else {
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_names_in_doc_order() {
        assert_eq!(names_of_schedulers(), "rr, wrr, lc, wlc, sh, maglev, p2c");
    }
}
