//! Converters from one TOML value to one typed config value: the checks
//! that need no context (types, ranges, durations, names, addresses). Each
//! answers the typed value or the [`ErrorKind`] that says what is wrong; the
//! caller ([`super::Walker::field`]) adds the position, the field path and
//! the "valid:" hint.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use toml::de::DeValue;

use super::duration::parse_duration;
use super::error::ErrorKind;

pub fn string<'v>(v: &'v DeValue<'_>) -> Result<&'v str, ErrorKind> {
    v.as_str().ok_or(ErrorKind::WrongType {
        found: v.type_str(),
    })
}

/// An integer in `min..=max`; floats and strings are wrong types.
pub fn integer(v: &DeValue<'_>, min: i64, max: i64) -> Result<i64, ErrorKind> {
    let DeValue::Integer(i) = v else {
        return Err(ErrorKind::WrongType {
            found: v.type_str(),
        });
    };
    // Too big for an i64 is out of range for every field here.
    match i64::from_str_radix(i.as_str(), i.radix()) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ErrorKind::OutOfRange),
    }
}

pub fn duration(v: &DeValue<'_>, positive: bool) -> Result<Duration, ErrorKind> {
    let d = parse_duration(string(v)?)
        .map_err(|e| ErrorKind::Invalid(format!("not a duration: {}", e.reason())))?;
    if positive && d.is_zero() {
        return Err(ErrorKind::OutOfRange);
    }
    Ok(d)
}

/// One of a fixed set of names; `what` words the error ("unknown level").
pub fn one_of<T>(
    v: &DeValue<'_>,
    mut choices: impl Iterator<Item = (&'static str, T)>,
    what: &str,
) -> Result<T, ErrorKind> {
    let s = string(v)?;
    choices
        .find(|(name, _)| *name == s)
        .map(|(_, t)| t)
        .ok_or_else(|| ErrorKind::Invalid(format!("unknown {what}")))
}

pub fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

pub fn parse_name(v: &DeValue<'_>, allowed: impl Fn(char) -> bool) -> Result<String, ErrorKind> {
    let s = string(v)?;
    if s.is_empty() {
        Err(ErrorKind::Invalid("empty name".into()))
    } else if s.chars().count() > 64 {
        Err(ErrorKind::Invalid("name longer than 64 characters".into()))
    } else if let Some(c) = s.chars().find(|&c| !allowed(c)) {
        Err(ErrorKind::Invalid(format!(
            "character {c:?} not allowed in a name"
        )))
    } else {
        Ok(s.to_string())
    }
}

/// IP:port with port != 0; a backend (`connect`) also needs a specified IP,
/// since connecting to 0.0.0.0 silently means "this host".
pub fn socket_addr(v: &DeValue<'_>, connect: bool) -> Result<SocketAddr, ErrorKind> {
    let s = string(v)?;
    let invalid = |why: &str| Err(ErrorKind::Invalid(why.into()));
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => invalid("port 0"),
        Ok(a) if connect && a.ip().is_unspecified() => {
            invalid("unspecified IP cannot be connected to")
        }
        Ok(a) => Ok(a),
        Err(_) => match s.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => invalid("missing port"),
            Ok(IpAddr::V6(_)) => {
                invalid("missing port (an IPv6 address goes in brackets: [::1]:80)")
            }
            Err(_) if port_too_big(s) => invalid("port above 65535"),
            Err(_) => invalid("not an IP:port address (host names are not resolved)"),
        },
    }
}

/// The address a server binds: IP:port, where port 0 asks the OS for a
/// free one (tests bind `127.0.0.1:0`). Host names are not resolved: a
/// service must not depend on DNS to start.
pub fn bind_addr(v: &DeValue<'_>) -> Result<SocketAddr, ErrorKind> {
    let s = string(v)?;
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // The same explanations as socket_addr's; port 0 never gets there.
    socket_addr(v, false)
}

/// `ip:port` or `[ip6]:port` whose port is all digits but past u16.
pub fn port_too_big(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>().is_ok()
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_err()
}

pub fn boolean(v: &DeValue<'_>) -> Result<bool, ErrorKind> {
    v.as_bool().ok_or(ErrorKind::WrongType {
        found: v.type_str(),
    })
}

pub fn join_names<'n>(list: impl Iterator<Item = &'n str>) -> String {
    list.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies a converter to the TOML value written `toml`.
    fn on<T>(toml: &str, convert: impl FnOnce(&DeValue<'_>) -> T) -> T {
        let v = DeValue::parse(toml).expect("test value is TOML");
        convert(v.get_ref())
    }

    fn invalid(why: &str) -> ErrorKind {
        ErrorKind::Invalid(why.into())
    }

    #[test]
    fn integers_check_type_and_range() {
        assert_eq!(on("5", |v| integer(v, 0, 10)), Ok(5));
        assert_eq!(on("0x10", |v| integer(v, 0, 100)), Ok(16));
        assert_eq!(on("1_000", |v| integer(v, 0, 1000)), Ok(1000));
        assert_eq!(on("-1", |v| integer(v, 0, 10)), Err(ErrorKind::OutOfRange));
        assert_eq!(on("11", |v| integer(v, 0, 10)), Err(ErrorKind::OutOfRange));
        assert_eq!(
            on("99999999999999999999", |v| integer(v, 0, 10)),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(
            on("1.0", |v| integer(v, 0, 10)),
            Err(ErrorKind::WrongType { found: "float" })
        );
        assert_eq!(
            on("\"1\"", |v| integer(v, 0, 10)),
            Err(ErrorKind::WrongType { found: "string" })
        );
    }

    #[test]
    fn durations_are_strings_and_may_be_required_positive() {
        assert_eq!(
            on("\"1m30s\"", |v| duration(v, true)),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(on("\"0s\"", |v| duration(v, false)), Ok(Duration::ZERO));
        assert_eq!(
            on("\"0s\"", |v| duration(v, true)),
            Err(ErrorKind::OutOfRange)
        );
        assert_eq!(
            on("30", |v| duration(v, true)),
            Err(ErrorKind::WrongType { found: "integer" })
        );
        assert_eq!(
            on("\"30\"", |v| duration(v, true)),
            Err(invalid(
                "not a duration: a number needs a unit (ms, s, m, h or d)"
            ))
        );
    }

    #[test]
    fn addresses() {
        let a = |toml: &str, connect| on(toml, |v| socket_addr(v, connect));
        assert_eq!(
            a("\"127.0.0.1:80\"", true),
            Ok("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(a("\"[::1]:80\"", true), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(
            a("\"0.0.0.0:80\"", false),
            Ok("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(
            a("\"0.0.0.0:80\"", true),
            Err(invalid("unspecified IP cannot be connected to"))
        );
        assert_eq!(
            a("\"[::]:80\"", true),
            Err(invalid("unspecified IP cannot be connected to"))
        );
        assert_eq!(a("\"127.0.0.1:0\"", false), Err(invalid("port 0")));
        assert_eq!(a("\"127.0.0.1\"", false), Err(invalid("missing port")));
        assert_eq!(
            a("\"127.0.0.1:70000\"", false),
            Err(invalid("port above 65535"))
        );
        assert_eq!(
            a("\"[::1]:70000\"", false),
            Err(invalid("port above 65535"))
        );
        assert_eq!(
            a("\"example.com:80\"", false),
            Err(invalid(
                "not an IP:port address (host names are not resolved)"
            ))
        );
        assert!(
            matches!(a("\"::1\"", false), Err(ErrorKind::Invalid(m)) if m.contains("brackets"))
        );
        let bind = |toml: &str| on(toml, bind_addr);
        assert_eq!(bind("\"127.0.0.1:0\""), Ok("127.0.0.1:0".parse().unwrap()));
        assert_eq!(bind("\"[::]:80\""), Ok("[::]:80".parse().unwrap()));
        assert_eq!(bind("\"127.0.0.1\""), Err(invalid("missing port")));
        assert_eq!(
            bind("\"localhost:80\""),
            Err(invalid(
                "not an IP:port address (host names are not resolved)"
            ))
        );
    }

    #[test]
    fn names() {
        let n = |toml: &str| on(toml, |v| parse_name(v, is_name_char));
        assert_eq!(n("\"api-1.eu_west\""), Ok("api-1.eu_west".into()));
        assert_eq!(n(&format!("\"{}\"", "a".repeat(64))), Ok("a".repeat(64)));
        assert_eq!(
            n(&format!("\"{}\"", "a".repeat(65))),
            Err(invalid("name longer than 64 characters"))
        );
        assert_eq!(n("\"\""), Err(invalid("empty name")));
        assert_eq!(
            n("\"a b\""),
            Err(invalid("character ' ' not allowed in a name"))
        );
        assert_eq!(
            n("\"é\""),
            Err(invalid("character 'é' not allowed in a name"))
        );
    }

    #[test]
    fn one_of_a_fixed_set() {
        let choices = || [("a", 1), ("b", 2)].into_iter();
        assert_eq!(on("\"b\"", |v| one_of(v, choices(), "thing")), Ok(2));
        assert_eq!(
            on("\"B\"", |v| one_of(v, choices(), "thing")),
            Err(invalid("unknown thing"))
        );
        assert_eq!(
            on("1", |v| one_of(v, choices(), "thing")),
            Err(ErrorKind::WrongType { found: "integer" })
        );
    }
}
