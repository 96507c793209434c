//! Address ranges, `ADDR/PREFIX`, as the config writes them: the webhook
//! policy's `allow` list and the PROXY protocol's trusted sources.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address range, `ADDR/PREFIX`. Valid by construction: the prefix fits
/// the family and the address has no bits past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `addr/prefix`; `None` if the prefix is too long for the family.
    /// Bits of `addr` past the prefix are cleared.
    pub const fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let (bits, max): (u128, u32) = match addr {
            IpAddr::V4(a) => (a.to_bits() as u128, 32),
            IpAddr::V6(a) => (a.to_bits(), 128),
        };
        if prefix as u32 > max {
            return None;
        }
        let masked = bits & mask(prefix, max);
        let addr = match addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(masked as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(masked)),
        };
        Some(Cidr { addr, prefix })
    }

    /// Parses `10.0.0.0/8`, `fc00::/7`, or a bare address (a /32 or /128).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix {p:?} is not 0 to {max}"))?,
        };
        // Cannot fail: the prefix was checked against the family.
        Cidr::new(addr, prefix).ok_or_else(|| format!("prefix {prefix} is too long"))
    }

    /// Whether `ip` is in the range (families never mix).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                (ip.to_bits() as u128) & mask(self.prefix, 32) == net.to_bits() as u128
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                ip.to_bits() & mask(self.prefix, 128) == net.to_bits()
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The network mask of `prefix` bits in a `max`-bit address, as u128.
const fn mask(prefix: u8, max: u32) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let ones = u128::MAX << (128 - prefix as u32);
    ones >> (128 - max)
}

/// `a.b.c.d/prefix` in a constant; a prefix over 32 fails the build.
pub const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
    match Cidr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), prefix) {
        Some(c) => c,
        None => panic!("bad IPv4 range"),
    }
}

/// An IPv6 range in a constant; a prefix over 128 fails the build.
pub const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
    let [a, b, c, d, e, f, g, h] = segments;
    match Cidr::new(IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)), prefix) {
        Some(c) => c,
        None => panic!("bad IPv6 range"),
    }
}

/// Whether any range of `ranges` holds `ip`; an IPv4-mapped IPv6 address
/// (`::ffff:127.0.0.1`, what a dual-stack listener reports for an IPv4
/// peer) is judged as the IPv4 address inside.
pub fn any_contains(ranges: &[Cidr], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ranges.iter().any(|r| r.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_strictly_and_mask_host_bits() {
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("9.9.9.9")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0/8").is_err());
    }

    #[test]
    fn mapped_v4_peers_are_judged_as_v4() {
        let loopback = [Cidr::parse("127.0.0.0/8").unwrap()];
        assert!(any_contains(&loopback, ip("127.0.0.9")));
        assert!(any_contains(&loopback, ip("::ffff:127.0.0.9")));
        assert!(!any_contains(&loopback, ip("::ffff:198.18.0.9")));
        assert!(!any_contains(&[], ip("127.0.0.1")));
    }
}
