//! Where a webhook may go: the address policy that keeps callbacks out of
//! the operator's internal network (SSRF).
//!
//! The rule, checked for the literal host at submit and for **every
//! address the host resolves to** at connect time (the connection then goes
//! to an address that was checked, never to a name resolved again):
//!
//! 1. A host name listed in `[webhooks] allow` (exactly, or under a
//!    `*.example.com` entry) may resolve to anything: the operator vouches
//!    for it.
//! 2. An address covered by a CIDR of `allow` is allowed.
//! 3. An address in one of the [`SPECIAL`] ranges (loopback, RFC 1918,
//!    link-local, CGNAT, unique-local v6, multicast, unspecified,
//!    documentation, the 198.18.0.0/15 benchmark range, ...) is refused.
//! 4. Any other (public) address is allowed when `allow_public` is true,
//!    the default; with `allow_public = false` only rules 1 and 2 open a
//!    door.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) and a NAT64 one
//! (`64:ff9b::10.0.0.1`) are judged by the IPv4 address inside, so
//! wrapping an internal address in IPv6 does not get it through.

use std::net::{IpAddr, Ipv4Addr};

pub use crate::cidr::Cidr;
use crate::cidr::{v4, v6};

/// The ranges refused unless `allow` covers them, with the name an error
/// gives. From the IANA special-purpose registries (RFC 6890 and updates).
pub const SPECIAL: &[(Cidr, &str)] = &[
    (
        v4(0, 0, 0, 0, 8),
        "\"this network\" (0.0.0.0/8, includes the unspecified address)",
    ),
    (v4(10, 0, 0, 0, 8), "private (RFC 1918)"),
    (v4(100, 64, 0, 0, 10), "shared / CGNAT (RFC 6598)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private (RFC 1918)"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation (TEST-NET-1)"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast"),
    (v4(192, 168, 0, 0, 16), "private (RFC 1918)"),
    (v4(198, 18, 0, 0, 15), "benchmarking (RFC 2544)"),
    (v4(198, 51, 100, 0, 24), "documentation (TEST-NET-2)"),
    (v4(203, 0, 113, 0, 24), "documentation (TEST-NET-3)"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(240, 0, 0, 0, 4), "reserved (includes broadcast)"),
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (deprecated)",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard-only (RFC 6666)",
    ),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), "documentation"),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique-local"),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (deprecated)",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// NAT64's well-known prefix (RFC 6052): the last 32 bits are IPv4.
const NAT64: Cidr = v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);

/// The address a check judges: the IPv4 inside a mapped or NAT64 address,
/// else `ip` itself.
pub fn effective(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                IpAddr::V4(v4)
            } else if NAT64.contains(ip) {
                IpAddr::V4(Ipv4Addr::from_bits(v6.to_bits() as u32))
            } else {
                ip
            }
        }
        v4 => v4,
    }
}

/// A host name entry of `allow`: exact (`hooks.example.com`) or a domain
/// and everything under it (`*.example.com`). Lowercase, no trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRule {
    /// This name only.
    Exact(String),
    /// Names ending in `.` + this.
    Under(String),
}

impl HostRule {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostRule::Exact(h) => h == host,
            HostRule::Under(d) => host
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        }
    }
}

/// One entry of `[webhooks] allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allow {
    /// Addresses in this range.
    Range(Cidr),
    /// A host name the operator vouches for.
    Host(HostRule),
}

impl Allow {
    /// Parses a CIDR, a bare address, `host.name` or `*.domain`.
    pub fn parse(s: &str) -> Result<Allow, String> {
        if s.contains('/') || s.parse::<IpAddr>().is_ok() {
            return Cidr::parse(s).map(Allow::Range);
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let (rule, bare) = match name.strip_prefix("*.") {
            Some(d) => (HostRule::Under(d.to_owned()), d),
            None => (HostRule::Exact(name.clone()), name.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if bare.is_empty() || bare.len() > 253 || !bare.split('.').all(label_ok) {
            return Err(format!(
                "{s:?} is neither a CIDR, an IP address nor a host name"
            ));
        }
        Ok(Allow::Host(rule))
    }
}

/// The policy: what `allow` opens and whether public addresses are open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// `[webhooks] allow`, in file order.
    pub allow: Vec<Allow>,
    /// `[webhooks] allow_public`: addresses outside [`SPECIAL`] are allowed.
    pub allow_public: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow: Vec::new(),
            allow_public: true,
        }
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// In a special range that `allow` does not cover.
    #[error(
        "{ip} is in a {name} range ({range}), which webhooks do not call unless [webhooks] allow covers it"
    )]
    Special {
        /// The address judged.
        ip: IpAddr,
        /// The range it is in.
        range: Cidr,
        /// What the range is.
        name: &'static str,
    },
    /// Public, with `allow_public = false`, and not in `allow`.
    #[error("{ip} is not in [webhooks] allow (allow_public = false)")]
    NotListed {
        /// The address judged.
        ip: IpAddr,
    },
}

impl Policy {
    /// Whether the host name `host` (lowercase, as the URL parser gives
    /// it) is vouched for by a host entry of `allow`.
    pub fn host_listed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allow
            .iter()
            .any(|a| matches!(a, Allow::Host(rule) if rule.matches(host)))
    }

    /// Whether webhooks may connect to `ip` (rules 2 to 4 of the module
    /// doc; rule 1 is [`Policy::host_listed`], which the caller checks).
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let judged = effective(ip);
        let covered = |ip: IpAddr| {
            self.allow
                .iter()
                .any(|a| matches!(a, Allow::Range(c) if c.contains(ip)))
        };
        if covered(ip) || covered(judged) {
            return Ok(());
        }
        if let Some((range, name)) = SPECIAL.iter().find(|(c, _)| c.contains(judged)) {
            return Err(Refused::Special {
                ip: judged,
                range: *range,
                name,
            });
        }
        if self.allow_public {
            Ok(())
        } else {
            Err(Refused::NotListed { ip: judged })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn refused_range(p: &Policy, a: &str) -> Option<String> {
        match p.check(ip(a)) {
            Ok(()) => None,
            Err(Refused::Special { range, .. }) => Some(range.to_string()),
            Err(Refused::NotListed { .. }) => Some("not listed".into()),
        }
    }

    #[test]
    fn by_default_public_addresses_pass_and_special_ones_are_refused() {
        let p = Policy::default();
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "2606:4700::1111",
            "100.63.255.255",
            "172.32.0.1",
        ] {
            assert_eq!(refused_range(&p, public), None, "{public}");
        }
        let cases = [
            ("127.0.0.1", "127.0.0.0/8"),
            ("127.255.255.254", "127.0.0.0/8"),
            ("10.1.2.3", "10.0.0.0/8"),
            ("172.16.0.1", "172.16.0.0/12"),
            ("172.31.255.255", "172.16.0.0/12"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("169.254.169.254", "169.254.0.0/16"),
            ("100.64.0.1", "100.64.0.0/10"),
            ("0.0.0.0", "0.0.0.0/8"),
            ("198.18.0.100", "198.18.0.0/15"),
            ("198.19.255.1", "198.18.0.0/15"),
            ("192.0.2.7", "192.0.2.0/24"),
            ("203.0.113.9", "203.0.113.0/24"),
            ("224.0.0.18", "224.0.0.0/4"),
            ("255.255.255.255", "240.0.0.0/4"),
            ("::1", "::1/128"),
            ("::", "::/128"),
            ("fd00::1", "fc00::/7"),
            ("fe80::1", "fe80::/10"),
            ("ff02::1", "ff00::/8"),
            ("2001:db8::1", "2001:db8::/32"),
            // Wrapped IPv4 is judged by what is inside.
            ("::ffff:127.0.0.1", "127.0.0.0/8"),
            ("::ffff:10.0.0.1", "10.0.0.0/8"),
            ("64:ff9b::192.168.0.1", "192.168.0.0/16"),
        ];
        for (a, range) in cases {
            assert_eq!(refused_range(&p, a).as_deref(), Some(range), "{a}");
        }
        assert_eq!(refused_range(&p, "::ffff:1.1.1.1"), None);
    }

    #[test]
    fn allow_opens_ranges_and_names_and_allow_public_false_closes_the_rest() {
        let p = Policy {
            allow: [
                "127.0.0.0/8",
                "fd00::/8",
                "hooks.internal",
                "*.corp.example",
            ]
            .iter()
            .map(|s| Allow::parse(s).unwrap())
            .collect(),
            allow_public: false,
        };
        assert_eq!(refused_range(&p, "127.0.0.1"), None);
        assert_eq!(refused_range(&p, "::ffff:127.0.0.1"), None);
        assert_eq!(refused_range(&p, "fd00::5"), None);
        assert_eq!(refused_range(&p, "fc00::5").as_deref(), Some("fc00::/7"));
        assert_eq!(refused_range(&p, "10.0.0.1").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(refused_range(&p, "1.1.1.1").as_deref(), Some("not listed"));
        assert!(p.host_listed("hooks.internal"));
        assert!(p.host_listed("hooks.internal."));
        assert!(p.host_listed("a.b.corp.example"));
        assert!(!p.host_listed("corp.example"));
        assert!(!p.host_listed("evilcorp.example"));
        assert!(!p.host_listed("hooks.internal.evil"));
    }

    #[test]
    fn allow_entries_parse_strictly() {
        assert!(Allow::parse("bad_name!").is_err());
        assert!(Allow::parse("*.").is_err());
        assert_eq!(
            Allow::parse("Hooks.Example.COM.").unwrap(),
            Allow::Host(HostRule::Exact("hooks.example.com".into()))
        );
    }
}
