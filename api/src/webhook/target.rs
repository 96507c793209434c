//! A callback URL: checked once when it is given (on submit, or set on a
//! key), and taken apart again for each delivery.
//!
//! The URL is parsed as a browser would (the `url` crate's WHATWG parser),
//! so a host written `0x7f.1` or `2130706433` is the IPv4 address it
//! means, and that is what the policy judges.
//!
//! Only `http://`: this API has no TLS client yet (TLS is issue 15's;
//! rustls would need a crypto provider, ring or aws-lc-rs, that the
//! workspace does not have), so an `https://` URL is refused with a clear
//! message instead of being sent in the clear.

use std::net::IpAddr;

use url::{Host, Url};

use super::policy::{Policy, Refused};

/// Longest callback URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A checked `http://` callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    url: Url,
}

/// The host of a callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    /// A literal address.
    Ip(IpAddr),
    /// A name, resolved at each delivery.
    Name(String),
}

impl Target {
    /// Checks `s` against the rules of the module doc and, for a literal
    /// address or `localhost`, the policy. The message names what is wrong
    /// and what would be valid.
    pub fn parse(s: &str, policy: &Policy) -> Result<Target, String> {
        let t = Target::parse_unchecked(s)?;
        match t.host() {
            TargetHost::Ip(ip) => policy.check(ip).map_err(refused)?,
            TargetHost::Name(name) if is_localhost(&name) && !policy.host_listed(&name) => {
                // localhost never leaves the machine, whatever DNS says.
                let loopback = IpAddr::from([127, 0, 0, 1]);
                policy.check(loopback).map_err(|e| {
                    format!("host {name:?} is the loopback interface: {}", refused(e))
                })?;
            }
            TargetHost::Name(_) => {}
        }
        Ok(t)
    }

    /// The shape checks alone (scheme, length, host, no credentials): for
    /// a URL that was checked when it was stored.
    pub fn parse_unchecked(s: &str) -> Result<Target, String> {
        if s.len() > MAX_URL_LEN {
            return Err(format!("is {} bytes long; at most {MAX_URL_LEN}", s.len()));
        }
        let url = Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(
                    "https:// is not supported yet: this API has no TLS client (the receiver must \
                     take plain http://, e.g. behind a TLS proxy of your own; every delivery is \
                     signed)"
                        .into(),
                );
            }
            other => return Err(format!("scheme {other:?} is not allowed; use http://")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry a user name or password".into());
        }
        if url.fragment().is_some() {
            return Err("must not have a #fragment (it is never sent)".into());
        }
        if url.port() == Some(0) {
            return Err("port 0 is not a port".into());
        }
        match url.host() {
            Some(Host::Domain(d)) if !d.is_empty() => {}
            Some(Host::Ipv4(_) | Host::Ipv6(_)) => {}
            _ => return Err("has no host".into()),
        }
        Ok(Target { url })
    }

    /// The URL as stored and sent.
    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    /// Its host.
    pub fn host(&self) -> TargetHost {
        match self.url.host() {
            Some(Host::Ipv4(a)) => TargetHost::Ip(IpAddr::V4(a)),
            Some(Host::Ipv6(a)) => TargetHost::Ip(IpAddr::V6(a)),
            Some(Host::Domain(d)) => TargetHost::Name(d.to_owned()),
            // parse_unchecked() refused a URL without a host.
            None => TargetHost::Name(String::new()),
        }
    }

    /// The port (80 when not written).
    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(80)
    }

    /// `host[:port]` as written in the URL: the `Host` header, and what the
    /// job's view shows (never the path or query, which may hold a token).
    pub fn authority(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        }
    }

    /// Path and query: the request target.
    pub fn path_and_query(&self) -> String {
        match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_owned(),
        }
    }
}

/// `localhost` and names under `.localhost` (RFC 6761: always loopback).
fn is_localhost(name: &str) -> bool {
    let n = name.trim_end_matches('.');
    n == "localhost" || n.ends_with(".localhost")
}

fn refused(e: Refused) -> String {
    format!("host not allowed: {e}")
}

#[cfg(test)]
mod tests {
    use super::super::policy::Allow;
    use super::*;

    fn parse(s: &str) -> Result<Target, String> {
        Target::parse(s, &Policy::default())
    }

    #[test]
    fn shape_errors_say_what_is_wrong() {
        assert!(
            parse("https://hooks.example.com/x")
                .unwrap_err()
                .contains("https://")
        );
        assert!(parse("ftp://a/x").unwrap_err().contains("scheme \"ftp\""));
        assert!(parse("not a url").unwrap_err().contains("is not a URL"));
        assert!(
            parse("http://u:p@a.example/")
                .unwrap_err()
                .contains("user name")
        );
        assert!(
            parse("http://a.example/#x")
                .unwrap_err()
                .contains("fragment")
        );
        assert!(parse("http://a.example:0/").unwrap_err().contains("port 0"));
        let long = format!("http://a.example/{}", "x".repeat(MAX_URL_LEN));
        assert!(parse(&long).unwrap_err().contains("at most 2048"));
    }

    #[test]
    fn literal_hosts_are_judged_by_the_policy_at_submit() {
        let e = parse("http://127.0.0.1:9/hook").unwrap_err();
        assert!(e.contains("loopback") && e.contains("127.0.0.0/8"), "{e}");
        // The WHATWG parser reads these as 127.0.0.1 and 10.0.0.1.
        assert!(parse("http://0x7f.1/").unwrap_err().contains("loopback"));
        assert!(
            parse("http://167772161/")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(
            parse("http://[::ffff:10.0.0.1]/")
                .unwrap_err()
                .contains("10.0.0.0/8")
        );
        assert!(
            parse("http://localhost:8080/")
                .unwrap_err()
                .contains("loopback")
        );
        assert!(
            parse("http://a.localhost./")
                .unwrap_err()
                .contains("loopback")
        );
        // Names are resolved (and checked) at delivery.
        assert!(parse("http://hooks.example.com/x").is_ok());
        let open = Policy {
            allow: vec![Allow::parse("127.0.0.0/8").unwrap()],
            allow_public: true,
        };
        assert!(Target::parse("http://127.0.0.1:9/hook", &open).is_ok());
        assert!(Target::parse("http://localhost:9/hook", &open).is_ok());
    }

    #[test]
    fn parts_for_the_request() {
        let t = parse("http://Hooks.Example.com:8080/a/b?token=s3cret").unwrap();
        assert_eq!(t.authority(), "hooks.example.com:8080");
        assert_eq!(t.path_and_query(), "/a/b?token=s3cret");
        assert_eq!(t.port(), 8080);
        assert_eq!(t.host(), TargetHost::Name("hooks.example.com".into()));
        let t = parse("http://[2606:4700::1]/").unwrap();
        assert_eq!(t.port(), 80);
        assert_eq!(t.authority(), "[2606:4700::1]");
    }
}
