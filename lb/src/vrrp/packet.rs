//! VRRP advertisements for IPv4: VRRPv3 (RFC 5798 §5) and VRRPv2 (RFC 3768 §5),
//! encoded and decoded by hand with explicit offsets.
//!
//! ```text
//! v3 (RFC 5798 §5.1)                          v2 (RFC 3768 §5.1)
//!  0      Version(4) | Type(4)                 0      Version(4) | Type(4)
//!  1      Virtual Rtr ID                       1      Virtual Rtr ID
//!  2      Priority                             2      Priority
//!  3      Count IPvX Addr                      3      Count IP Addrs
//!  4..6   rsvd(4) | Max Adver Int(12, cs)      4      Auth Type
//!  6..8   Checksum                             5      Adver Int (s)
//!  8..    IPv4 addresses, 4 bytes each         6..8   Checksum
//!                                              8..    IPv4 addresses
//!                                              then   Authentication Data (8 bytes)
//! ```
//!
//! Checksums (the usual Internet one's-complement sum, RFC 1071):
//! - v3 covers an IPv4 pseudo-header (src, dst, zero, protocol 112, VRRP
//!   length) followed by the message (RFC 5798 §5.2.8). The decoder uses the
//!   packet's own src/dst, so unicast adverts (dst = peer) verify too.
//! - v2 covers the VRRP message only (RFC 3768 §5.3.8).
//!
//! keepalived always sends the 8 auth bytes in v2, zero when there is no auth;
//! we do the same, and keep whatever was received so a decoded packet
//! re-encodes byte for byte.
//!
//! [`decode`] takes the whole IPv4 packet as a Linux raw `IPPROTO_VRRP` socket
//! delivers it (the IP header is included on receive even with `IP_HDRINCL`
//! off, with `tot_len` in network order as on the wire), because the TTL
//! (RFC 5798 §7.1: MUST be 255, proving the sender is on-link) and the
//! addresses for the pseudo-header are only there. It never panics; each way a
//! packet can be wrong is a [`Reject`] variant whose [`Reject::as_str`] is the
//! metric label.

use std::net::Ipv4Addr;

use super::types::{AdvertInterval, Priority, Version, Vrid};

/// The IP protocol number of VRRP (RFC 5798 §5.1.1.3).
pub const IPPROTO_VRRP: u8 = 112;
/// The IPv4 multicast group adverts are sent to (RFC 5798 §5.1.1.2).
pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
/// The only TTL a sender may use and a receiver may accept (RFC 5798 §5.1.1.3, §7.1).
pub const TTL: u8 = 255;
/// IP TOS keepalived uses (DSCP CS6, internetwork control), seen in the captures.
pub const TOS: u8 = 0xc0;
/// The only packet type (RFC 5798 §5.2.2).
pub const TYPE_ADVERTISEMENT: u8 = 1;

/// Fixed VRRP header before the addresses, both versions.
const VRRP_HEADER: usize = 8;
/// VRRPv2 authentication data after the addresses (RFC 3768 §5.3.10).
const V2_AUTH_LEN: usize = 8;
const IPV4_MIN_HEADER: usize = 20;

/// VRRPv2 authentication (RFC 3768 §5.3.6). Obsolete and not a security
/// measure, but keepalived still sends type 1 ("PASS") when configured, and a
/// v2 peer checks it, so we carry it verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Auth {
    /// 0 = none, 1 = simple text password, 2 = the withdrawn IP AH.
    pub auth_type: u8,
    /// The password, NUL-padded to 8 bytes; zero with no auth.
    pub data: [u8; 8],
}

impl V2Auth {
    pub const NONE: V2Auth = V2Auth {
        auth_type: 0,
        data: [0; 8],
    };
}

/// One advertisement, version-independent where the versions agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    pub version: Version,
    pub vrid: Vrid,
    /// 0 = master resigning, 255 = address owner.
    pub priority: Priority,
    /// v3: Max Adver Int (centiseconds). v2: Adver Int (whole seconds).
    pub max_advert_int: AdvertInterval,
    /// The virtual addresses, in packet order. At most 255 are encoded.
    pub addresses: Vec<Ipv4Addr>,
    /// v2 only: auth type and data. `None` on a v2 encode means type 0 with
    /// zero data; ignored for v3 (which has no auth field).
    pub auth: Option<V2Auth>,
}

/// A decoded packet with the IP header fields the caller needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The sender's primary address: the tie-break of RFC 5798 §6.4.3.
    pub src: Ipv4Addr,
    /// 224.0.0.18, or our own address for a unicast advert.
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub advert: Advert,
}

/// Why a packet was dropped. One variant per reason; [`Reject::as_str`] is the
/// metric label (`vrrp_adverts_rejected_total{reason=...}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Shorter than an IPv4 header, its IHL, or the 8-byte VRRP header.
    #[error("truncated packet ({len} bytes)")]
    Truncated { len: usize },
    /// Not IPv4, or an IHL below 5 words.
    #[error("bad IP header (version {version}, ihl {ihl})")]
    IpHeader { version: u8, ihl: u8 },
    /// The IP total length disagrees with the bytes received.
    #[error("IP total length {total_length} but {received} bytes received")]
    Length { total_length: u16, received: usize },
    /// Not protocol 112.
    #[error("IP protocol {0} is not VRRP (112)")]
    Protocol(u8),
    /// RFC 5798 §7.1: TTL must be 255, else it crossed a router.
    #[error("TTL {0} is not 255")]
    Ttl(u8),
    /// VRRP version other than 2 or 3 (RFC 5798 §7.1).
    #[error("VRRP version {0} is not 2 or 3")]
    Version(u8),
    /// VRRP type other than 1 (RFC 5798 §5.2.2: others are dropped).
    #[error("VRRP type {0} is not 1 (advertisement)")]
    Type(u8),
    /// The VRRP length does not match Count IPvX Addr (RFC 5798 §7.1: the
    /// count and the length must agree).
    #[error("{count} addresses announced but the VRRP message is {len} bytes")]
    AddressCount { count: u8, len: usize },
    /// A v2 message that ends right after its addresses: the 8 auth bytes are missing.
    #[error("VRRPv2 message without its 8 authentication bytes")]
    MissingAuth,
    /// The checksum does not verify (RFC 5798 §7.1).
    #[error("checksum mismatch (packet {got:#06x}, computed {want:#06x})")]
    Checksum { got: u16, want: u16 },
    /// VRID 0 is not a virtual router (RFC 5798 §5.2.3).
    #[error("VRID 0")]
    Vrid,
    /// An advert interval of 0, which would make the master-down interval
    /// just the skew time and the backup take over at once.
    #[error("advert interval 0")]
    Interval,
}

impl Reject {
    /// The metric label for this reason; stable, lower case.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reject::Truncated { .. } => "truncated",
            Reject::IpHeader { .. } => "ip_header",
            Reject::Length { .. } => "length",
            Reject::Protocol(_) => "protocol",
            Reject::Ttl(_) => "ttl",
            Reject::Version(_) => "version",
            Reject::Type(_) => "type",
            Reject::AddressCount { .. } => "address_count",
            Reject::MissingAuth => "auth",
            Reject::Checksum { .. } => "checksum",
            Reject::Vrid => "vrid",
            Reject::Interval => "interval",
        }
    }

    /// Every label, for describing/pre-registering the metric at start-up.
    pub const LABELS: &'static [&'static str] = &[
        "truncated",
        "ip_header",
        "length",
        "protocol",
        "ttl",
        "version",
        "type",
        "address_count",
        "auth",
        "checksum",
        "vrid",
        "interval",
    ];
}

/// The VRRP message for `advert` (no IP header), checksum filled in.
///
/// `src` and `dst` are the addresses the kernel will put in the IP header:
/// v3's checksum covers them (RFC 5798 §5.2.8), so a unicast advert must be
/// encoded once per peer. They are ignored for v2.
///
/// Cannot fail: an interval that does not fit the version's field is
/// saturated (see [`AdvertInterval::wire_v3`] / [`AdvertInterval::wire_v2`])
/// and only the first 255 addresses are written; configuration validation
/// refuses both before we get here.
pub fn encode(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let addrs = &advert.addresses[..advert.addresses.len().min(255)];
    let count = addrs.len() as u8; // cannot truncate: sliced to 255 above
    let auth_len = match advert.version {
        Version::V2 => V2_AUTH_LEN,
        Version::V3 => 0,
    };
    let len = VRRP_HEADER + 4 * addrs.len() + auth_len;
    let mut buf = vec![0u8; len];
    buf[0] = (advert.version.number() << 4) | TYPE_ADVERTISEMENT;
    buf[1] = advert.vrid.get();
    buf[2] = advert.priority.get();
    buf[3] = count;
    match advert.version {
        Version::V3 => {
            // The 4 reserved bits stay zero (RFC 5798 §5.2.6).
            buf[4..6].copy_from_slice(&advert.max_advert_int.wire_v3().to_be_bytes());
        }
        Version::V2 => {
            let auth = advert.auth.unwrap_or(V2Auth::NONE);
            buf[4] = auth.auth_type;
            buf[5] = advert.max_advert_int.wire_v2();
            buf[len - V2_AUTH_LEN..].copy_from_slice(&auth.data);
        }
    }
    for (i, a) in addrs.iter().enumerate() {
        let at = VRRP_HEADER + 4 * i;
        buf[at..at + 4].copy_from_slice(&a.octets());
    }
    let sum = checksum(advert.version, &buf, src, dst);
    buf[6..8].copy_from_slice(&sum.to_be_bytes());
    buf
}

/// Decode and validate one IPv4 packet carrying a VRRP advert.
///
/// Checks, in order: IPv4 header sanity, total length, protocol 112, TTL 255,
/// VRRP version and type, address count against length (and the v2 auth
/// bytes), checksum, VRID and interval. Whether the version, VRID and
/// addresses are the ones *configured* is for the caller (one socket may
/// serve several instances).
pub fn decode(ip_packet: &[u8]) -> Result<Received, Reject> {
    let truncated = Reject::Truncated {
        len: ip_packet.len(),
    };
    if ip_packet.len() < IPV4_MIN_HEADER {
        return Err(truncated);
    }
    let ip_version = ip_packet[0] >> 4;
    let ihl = ip_packet[0] & 0x0f;
    if ip_version != 4 || ihl < 5 {
        return Err(Reject::IpHeader {
            version: ip_version,
            ihl,
        });
    }
    let header_len = usize::from(ihl) * 4;
    if ip_packet.len() < header_len {
        return Err(truncated);
    }
    let total_length = u16::from_be_bytes([ip_packet[2], ip_packet[3]]);
    // Linux trims the skb to tot_len before a raw socket sees it, so anything
    // but equality means a corrupt header (or a test feeding junk).
    if usize::from(total_length) != ip_packet.len() {
        return Err(Reject::Length {
            total_length,
            received: ip_packet.len(),
        });
    }
    let ttl = ip_packet[8];
    let protocol = ip_packet[9];
    if protocol != IPPROTO_VRRP {
        return Err(Reject::Protocol(protocol));
    }
    if ttl != TTL {
        return Err(Reject::Ttl(ttl));
    }
    let src = ipv4_at(ip_packet, 12);
    let dst = ipv4_at(ip_packet, 16);

    let msg = &ip_packet[header_len..];
    if msg.len() < VRRP_HEADER {
        return Err(truncated);
    }
    let version = match msg[0] >> 4 {
        2 => Version::V2,
        3 => Version::V3,
        v => return Err(Reject::Version(v)),
    };
    let kind = msg[0] & 0x0f;
    if kind != TYPE_ADVERTISEMENT {
        return Err(Reject::Type(kind));
    }
    let count = msg[3];
    let addrs_end = VRRP_HEADER + 4 * usize::from(count);
    match version {
        Version::V3 if msg.len() != addrs_end => {
            return Err(Reject::AddressCount {
                count,
                len: msg.len(),
            });
        }
        Version::V2 if msg.len() == addrs_end => return Err(Reject::MissingAuth),
        Version::V2 if msg.len() != addrs_end + V2_AUTH_LEN => {
            return Err(Reject::AddressCount {
                count,
                len: msg.len(),
            });
        }
        _ => {}
    }
    let got = u16::from_be_bytes([msg[6], msg[7]]);
    // Summing a message whose checksum field is intact gives 0 (as a
    // one's-complement sum of all ones) exactly when it verifies.
    if checksum(version, msg, src, dst) != 0 {
        let mut zeroed = msg.to_vec();
        zeroed[6] = 0;
        zeroed[7] = 0;
        let want = checksum(version, &zeroed, src, dst);
        return Err(Reject::Checksum { got, want });
    }
    let vrid = Vrid::new(msg[1]).map_err(|_| Reject::Vrid)?;
    let (max_advert_int, auth) = match version {
        Version::V3 => {
            // The top 4 bits are reserved: ignored on receipt (RFC 5798 §5.2.6).
            let centis = u16::from_be_bytes([msg[4], msg[5]]) & 0x0fff;
            let int = AdvertInterval::from_centis(centis).map_err(|_| Reject::Interval)?;
            (int, None)
        }
        Version::V2 => {
            let int = AdvertInterval::from_secs(msg[5]).map_err(|_| Reject::Interval)?;
            let mut data = [0u8; 8];
            data.copy_from_slice(&msg[addrs_end..addrs_end + V2_AUTH_LEN]);
            let auth = V2Auth {
                auth_type: msg[4],
                data,
            };
            (int, Some(auth))
        }
    };
    let addresses = (0..usize::from(count))
        .map(|i| ipv4_at(msg, VRRP_HEADER + 4 * i))
        .collect();
    Ok(Received {
        src,
        dst,
        ttl,
        advert: Advert {
            version,
            vrid,
            priority: Priority(msg[2]),
            max_advert_int,
            addresses,
            auth,
        },
    })
}

/// A 20-byte IPv4 header (no options, DF clear, id 0) with its header
/// checksum, for tests and for a sender that writes its own header. In
/// production the kernel writes it (`IP_HDRINCL` off) with `IP_TTL`/
/// `IP_MULTICAST_TTL` 255 and `IP_TOS` 0xc0.
pub fn ip_header(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, tos: u8, payload_len: u16) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&payload_len.saturating_add(20).to_be_bytes());
    h[8] = ttl;
    h[9] = IPPROTO_VRRP;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let sum = finish(sum_words(0, &h));
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// The checksum over `msg` for `version`: with the pseudo-header for v3, over
/// the message alone for v2. Over a message whose checksum field is zero this
/// is the value to write; over a received message it is 0 when it verifies.
fn checksum(version: Version, msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    let mut sum = 0u32;
    if version == Version::V3 {
        // RFC 5798 §5.2.8 → RFC 2460-style pseudo-header for IPv4:
        // src(4) dst(4) zero(1) protocol(1) VRRP length(2).
        let mut pseudo = [0u8; 12];
        pseudo[0..4].copy_from_slice(&src.octets());
        pseudo[4..8].copy_from_slice(&dst.octets());
        pseudo[9] = IPPROTO_VRRP;
        // A VRRP message fits in an IP packet, so its length fits 16 bits;
        // saturating only matters for junk that fails anyway.
        let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
        pseudo[10..12].copy_from_slice(&len.to_be_bytes());
        sum = sum_words(sum, &pseudo);
    }
    finish(sum_words(sum, msg))
}

/// Add `bytes` as big-endian 16-bit words to a 32-bit accumulator (an odd
/// trailing byte is padded with zero, RFC 1071). Folds as it goes, so the
/// accumulator cannot overflow whatever the input length.
fn sum_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for w in &mut chunks {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16) // cannot truncate: folded to 16 bits above
}

/// Caller guarantees `at + 4 <= b.len()`.
fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

#[cfg(test)]
mod tests;
