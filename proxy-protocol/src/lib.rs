//! PROXY protocol v1 (text) and v2 (binary) headers, as specified in HAProxy's
//! `doc/proxy-protocol.txt`.
//!
//! The balancer *sends* a header at the start of each backend connection so the
//! backend learns the real client address; the API service *receives* it. Both
//! sides live here, in a crate of their own with no dependency on either, so
//! the round trip is tested in one place and the API stays a backend like any
//! other (it does not pull in the balancer).
//!
//! Rules relied upon (section numbers from the spec):
//! - 2.1: v1 is one US-ASCII line `PROXY <TCP4|TCP6|UNKNOWN> <src> <dst> <sport>
//!   <dport>\r\n`, at most 107 bytes including CRLF. IPv4 has no leading zeros;
//!   IPv6 is hex groups with at most one `::`; ports are decimal 0..=65535
//!   without leading zeros. A lone CR or LF must not end the line. For
//!   `UNKNOWN` the receiver ignores everything up to the CRLF.
//! - 2.2: v2 is the 12-byte signature, a version/command byte (`0x2_` version,
//!   `_0` LOCAL / `_1` PROXY), a family/protocol byte, a big-endian length of
//!   what follows, then the addresses. The receiver must honour the length
//!   (it may be larger than the addresses: TLVs follow, which we skip) and must
//!   not assume zero for LOCAL. Unknown version, command, family or protocol
//!   values are rejected.
//!
//! Mixed families. A header carries one family for both addresses. An address
//! that is IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack listener
//! reports for an IPv4 client) is first turned back into plain IPv4. If the
//! two addresses still differ in family, the IPv4 one is written as
//! IPv4-mapped IPv6 and the header says TCP6. Proxied traffic never gets
//! `UNKNOWN`: the spec recommends it only when the line cannot be filled
//! correctly, and some receivers reject it; a health check, which relays no
//! client, gets it ([`encode_v1_unknown`]), as it gets LOCAL in v2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every v2 header starts with (spec 2.2).
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Longest valid v1 line including the CRLF (spec 2.1, "worst case").
pub const V1_MAX_LEN: usize = 107;

/// v1 lines start with this.
const V1_PREFIX: &[u8] = b"PROXY ";

/// v2 fixed part: signature, ver/cmd, fam, 2-byte length.
const V2_FIXED_LEN: usize = 16;

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What a decoded header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Which encoding the sender used.
    pub version: Version,
    /// The original client (`getpeername` on the proxy's accepted socket).
    /// `None` for v2 LOCAL, v1 UNKNOWN, and v2 families/protocols we do not
    /// carry (UNSPEC, UDP, AF_UNIX): then the receiver uses the real peer, as
    /// the spec requires.
    pub src: Option<SocketAddr>,
    /// The address the client connected to (`getsockname` on the proxy).
    pub dst: Option<SocketAddr>,
}

/// Why a header was rejected. The spec says to abort the connection on any
/// of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("not a PROXY protocol header (first bytes {0:02x?})")]
    BadSignature(Vec<u8>),
    #[error("PROXY v1 line has no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("PROXY v1 line ends with a lone CR or LF")]
    V1BadLineEnding,
    #[error("PROXY v1 protocol {0:?} is not TCP4, TCP6 or UNKNOWN")]
    V1BadProtocol(String),
    #[error("PROXY v1 line has {0} fields after the protocol, expected 4")]
    V1FieldCount(usize),
    #[error("PROXY v1 {field} address {value:?} is not a canonical {family} address")]
    V1BadAddress {
        field: &'static str,
        family: &'static str,
        value: String,
    },
    #[error("PROXY v1 {field} port {value:?} is not a decimal in 0..=65535 without leading zeros")]
    V1BadPort { field: &'static str, value: String },
    #[error("PROXY v2 version nibble is {0:#x}, expected 0x2")]
    V2BadVersion(u8),
    #[error("PROXY v2 command {0:#x} is neither LOCAL (0x0) nor PROXY (0x1)")]
    V2BadCommand(u8),
    #[error("PROXY v2 family/protocol byte {0:#04x} is not defined by the spec")]
    V2BadFamily(u8),
    #[error(
        "PROXY v2 length {len} is shorter than the {need} address bytes of family {family:#04x}"
    )]
    V2BadLength { family: u8, len: u16, need: u16 },
}

/// Both addresses in one family, per the module rule on mixed families.
fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (src, dst) = (unmap(src), unmap(dst));
    let to_v6 = |a: SocketAddr| match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (to_v6(src), to_v6(dst))
    }
}

/// The v1 line for a TCP connection from `src` to `dst`.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let (proto, s, d) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ("TCP4", s.to_string(), d.to_string()),
        (IpAddr::V6(s), IpAddr::V6(d)) => ("TCP6", v6_text(s), v6_text(d)),
        _ => unreachable!("same_family returns one family"),
    };
    format!("PROXY {proto} {s} {d} {} {}\r\n", src.port(), dst.port()).into_bytes()
}

/// IPv6 in the form spec 2.1 asks for: hex groups only (Rust's `Display`
/// writes IPv4-mapped addresses as `::ffff:1.2.3.4`, which a strict receiver
/// rejects), the longest run of two or more zero groups (the first on a tie)
/// replaced by `::`, as RFC 5952 does.
fn v6_text(ip: Ipv6Addr) -> String {
    let g = ip.segments();
    // Longest run of zero groups: (start, len).
    let mut best = (0usize, 0usize);
    let mut i = 0;
    while i < 8 {
        if g[i] == 0 {
            let start = i;
            while i < 8 && g[i] == 0 {
                i += 1;
            }
            if i - start > best.1 {
                best = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    let hex = |gs: &[u16]| {
        gs.iter()
            .map(|x| format!("{x:x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if best.1 < 2 {
        hex(&g)
    } else {
        format!("{}::{}", hex(&g[..best.0]), hex(&g[best.0 + best.1..]))
    }
}

/// The v2 header (command PROXY, TCP over IPv4 or IPv6, no TLVs).
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    let mut out = Vec::with_capacity(V2_FIXED_LEN + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, command PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => unreachable!("same_family returns one family"),
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// The v2 header with command LOCAL (spec 2.2: a connection the proxy
/// opened on its own, "e.g. health checks"): the receiver uses the real
/// endpoints. 16 bytes, no address block.
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED_LEN);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x20); // version 2, command LOCAL
    out.push(0x00); // AF_UNSPEC, UNSPEC
    out.extend_from_slice(&0u16.to_be_bytes());
    out
}

/// The v1 line for a connection that relays no client (spec 2.1: with
/// `UNKNOWN` the receiver uses the real endpoints): what a health check
/// sends, as v1 has no LOCAL command. Not for proxied traffic (module doc).
pub fn encode_v1_unknown() -> Vec<u8> {
    b"PROXY UNKNOWN\r\n".to_vec()
}

/// Decodes a v1 or v2 header at the start of `buf`.
///
/// `Ok(None)`: `buf` is a valid beginning, read more and call again.
/// `Ok(Some((header, n)))`: the header is the first `n` bytes; the client's
/// own data starts at `buf[n..]`.
pub fn decode(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    // The two formats differ from the first byte ('P' versus CR), so a
    // prefix of either signature is enough to choose.
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if buf.len() < V2_FIXED_LEN {
            Ok(None)
        } else {
            decode_v2(buf)
        };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] == V1_PREFIX[..n] {
        return if buf.len() < V1_PREFIX.len() {
            Ok(None)
        } else {
            decode_v1(buf)
        };
    }
    Err(ProxyProtocolError::BadSignature(
        buf[..buf.len().min(V2_SIGNATURE.len())].to_vec(),
    ))
}

fn decode_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    use ProxyProtocolError as E;
    // Find the end of line: the first CR or LF must be a CR immediately
    // followed by LF, within the first 107 bytes.
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let line_len = match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if window[i] == b'\n' => return Err(E::V1BadLineEnding),
        Some(i) if i + 1 == window.len() => {
            // A CR at the very end: the LF may still come, unless the CR is
            // already byte 107.
            return if window.len() == V1_MAX_LEN {
                Err(E::V1TooLong)
            } else {
                Ok(None)
            };
        }
        Some(i) if window[i + 1] == b'\n' => i,
        Some(_) => return Err(E::V1BadLineEnding),
        None if window.len() == V1_MAX_LEN => return Err(E::V1TooLong),
        None => return Ok(None),
    };
    let consumed = line_len + 2;
    // The line is ASCII up to here only if every byte is; reject otherwise
    // (`from_utf8` would accept non-ASCII UTF-8, which the spec does not).
    let line = &buf[V1_PREFIX.len()..line_len];
    if !line.is_ascii() {
        return Err(E::V1BadProtocol(String::from_utf8_lossy(line).into_owned()));
    }
    let line = std::str::from_utf8(line).expect("ASCII was checked just above");

    let (proto, rest) = match line.split_once(' ') {
        Some((p, r)) => (p, Some(r)),
        None => (line, None),
    };
    let v4 = match proto {
        "UNKNOWN" => {
            // Spec 2.1: ignore anything before the CRLF.
            let header = ProxyHeader {
                version: Version::V1,
                src: None,
                dst: None,
            };
            return Ok(Some((header, consumed)));
        }
        "TCP4" => true,
        "TCP6" => false,
        other => return Err(E::V1BadProtocol(other.to_string())),
    };
    let fields: Vec<&str> = rest.map(|r| r.split(' ').collect()).unwrap_or_default();
    let [s, d, sp, dp] = fields[..] else {
        return Err(E::V1FieldCount(fields.len()));
    };
    let src_ip = parse_v1_ip(s, v4, "source")?;
    let dst_ip = parse_v1_ip(d, v4, "destination")?;
    let src_port = parse_v1_port(sp, "source")?;
    let dst_port = parse_v1_port(dp, "destination")?;
    let header = ProxyHeader {
        version: Version::V1,
        src: Some(SocketAddr::new(src_ip, src_port)),
        dst: Some(SocketAddr::new(dst_ip, dst_port)),
    };
    Ok(Some((header, consumed)))
}

fn parse_v1_ip(s: &str, v4: bool, field: &'static str) -> Result<IpAddr, ProxyProtocolError> {
    let bad = || ProxyProtocolError::V1BadAddress {
        field,
        family: if v4 { "IPv4" } else { "IPv6" },
        value: s.to_string(),
    };
    if v4 {
        // std rejects leading zeros in IPv4 octets, as the spec requires.
        s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad())
    } else {
        // Hex groups and colons only: std would also accept an embedded
        // dotted IPv4 tail, which the spec's format does not allow.
        if !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad())
    }
}

fn parse_v1_port(s: &str, field: &'static str) -> Result<u16, ProxyProtocolError> {
    let bad = || ProxyProtocolError::V1BadPort {
        field,
        value: s.to_string(),
    };
    // Digits only (u16::from_str also takes a leading '+'), 1 to 5 of them,
    // no leading zero except "0" itself.
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad());
    }
    s.parse::<u16>().map_err(|_| bad())
}

fn decode_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyProtocolError> {
    use ProxyProtocolError as E;
    let ver_cmd = buf[12];
    let fam = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]);
    if ver_cmd >> 4 != 0x2 {
        return Err(E::V2BadVersion(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0F {
        0x0 => true,
        0x1 => false,
        other => return Err(E::V2BadCommand(other)),
    };
    // Address bytes each defined family/protocol needs (spec 2.2).
    let need: u16 = match fam {
        0x00 => 0,
        0x11 | 0x12 => 12,
        0x21 | 0x22 => 36,
        0x31 | 0x32 => 216,
        other => return Err(E::V2BadFamily(other)),
    };
    if len < need {
        return Err(E::V2BadLength {
            family: fam,
            len,
            need,
        });
    }
    let total = V2_FIXED_LEN + usize::from(len);
    if buf.len() < total {
        return Ok(None);
    }
    let a = &buf[V2_FIXED_LEN..total];
    let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
    // LOCAL: the family is ignored, the real endpoints are used. UDP and
    // AF_UNIX fall back to UNSPEC as the spec allows a receiver to do.
    let (src, dst) = match fam {
        0x11 if !local => {
            let s = Ipv4Addr::from(<[u8; 4]>::try_from(&a[0..4]).expect("4 bytes"));
            let d = Ipv4Addr::from(<[u8; 4]>::try_from(&a[4..8]).expect("4 bytes"));
            (
                Some(SocketAddr::new(s.into(), port(8))),
                Some(SocketAddr::new(d.into(), port(10))),
            )
        }
        0x21 if !local => {
            let s = Ipv6Addr::from(<[u8; 16]>::try_from(&a[0..16]).expect("16 bytes"));
            let d = Ipv6Addr::from(<[u8; 16]>::try_from(&a[16..32]).expect("16 bytes"));
            (
                Some(SocketAddr::new(s.into(), port(32))),
                Some(SocketAddr::new(d.into(), port(34))),
            )
        }
        _ => (None, None),
    };
    // Anything past the addresses is TLVs, which we skip (spec 2.2).
    let header = ProxyHeader {
        version: Version::V2,
        src,
        dst,
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
#[cfg(test)]
mod tests;
