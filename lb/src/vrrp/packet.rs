//! VRRP advertisements for IPv4: VRRPv3 (RFC 5798 §5) and VRRPv2 (RFC 3768 §5),
//! encoded and decoded through `pnet_packet`: its IPv4 view and checksum
//! helpers, and the two advert layouts declared with `#[packet]` in
//! [`header`].
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

use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::util;
use pnet_packet::{MutablePacket, Packet};

use super::types::{AdvertInterval, Priority, Version, Vrid};

mod header;
use header::{MutableVrrpV2Packet, MutableVrrpV3Packet, VrrpV2Packet, VrrpV3Packet};

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
    let auth_len = match advert.version {
        Version::V2 => V2_AUTH_LEN,
        Version::V3 => 0,
    };
    let mut buf = vec![0u8; VRRP_HEADER + 4 * addrs.len() + auth_len];
    // Cannot fail: `buf` holds at least the 8-byte fixed header.
    let mut p = MutableVrrpV3Packet::new(&mut buf).expect("8-byte VRRP header");
    // Both layouts agree on every field but bytes 4..6, so the v3 view
    // writes the common ones (as `decode_message` reads them).
    p.set_version(advert.version.number());
    p.set_kind(TYPE_ADVERTISEMENT);
    p.set_vrid(advert.vrid.get());
    p.set_priority(advert.priority.get());
    p.set_count(addrs.len() as u8); // cannot truncate: sliced to 255 above
    write_addresses(p.payload_mut(), addrs);
    match advert.version {
        // The 4 reserved bits stay zero (RFC 5798 §5.2.6).
        Version::V3 => p.set_max_advert_int(advert.max_advert_int.wire_v3()),
        Version::V2 => {
            let auth = advert.auth.unwrap_or(V2Auth::NONE);
            // Cannot fail: the same buffer the v3 view accepted.
            let mut v2 = MutableVrrpV2Packet::new(p.packet_mut()).expect("8-byte VRRP header");
            v2.set_auth_type(auth.auth_type);
            v2.set_advert_int(advert.max_advert_int.wire_v2());
            v2.payload_mut()[4 * addrs.len()..].copy_from_slice(&auth.data);
        }
    }
    // The checksum field is still zero, so the sum is the value to write.
    let sum = checksum(advert.version, p.packet(), src, dst);
    p.set_checksum(sum);
    buf
}

fn write_addresses(payload: &mut [u8], addrs: &[Ipv4Addr]) {
    for (slot, a) in payload.chunks_exact_mut(4).zip(addrs) {
        slot.copy_from_slice(&a.octets());
    }
}

/// Decode and validate one IPv4 packet carrying a VRRP advert.
///
/// Checks, in order: IPv4 header sanity, total length, protocol 112, TTL 255,
/// VRRP version and type, address count against length (and the v2 auth
/// bytes), checksum, VRID and interval. Whether the version, VRID and
/// addresses are the ones *configured* is for the caller (one socket may
/// serve several instances).
pub fn decode(ip_packet: &[u8]) -> Result<Received, Reject> {
    let ip = read_ip_header(ip_packet)?;
    let advert = decode_message(&ip_packet[ip.header_len..], &ip, ip_packet.len())?;
    Ok(Received {
        src: ip.src,
        dst: ip.dst,
        ttl: ip.ttl,
        advert,
    })
}

/// What [`decode`] takes from a validated IPv4 header.
struct IpFields {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    /// IHL in bytes: where the VRRP message starts.
    header_len: usize,
}

/// The IPv4 header checks of [`decode`], through `pnet_packet`'s view.
fn read_ip_header(ip_packet: &[u8]) -> Result<IpFields, Reject> {
    let truncated = Reject::Truncated {
        len: ip_packet.len(),
    };
    // `new` refuses anything shorter than the 20-byte fixed header.
    let ip = Ipv4Packet::new(ip_packet).ok_or(truncated.clone())?;
    let (version, ihl) = (ip.get_version(), ip.get_header_length());
    if version != 4 || ihl < 5 {
        return Err(Reject::IpHeader { version, ihl });
    }
    let header_len = usize::from(ihl) * 4;
    if ip_packet.len() < header_len {
        return Err(truncated);
    }
    let total_length = ip.get_total_length();
    // Linux trims the skb to tot_len before a raw socket sees it, so anything
    // but equality means a corrupt header (or a test feeding junk).
    if usize::from(total_length) != ip_packet.len() {
        return Err(Reject::Length {
            total_length,
            received: ip_packet.len(),
        });
    }
    let protocol = ip.get_next_level_protocol();
    if protocol != IpNextHeaderProtocols::Vrrp {
        return Err(Reject::Protocol(protocol.0));
    }
    let ttl = ip.get_ttl();
    if ttl != TTL {
        return Err(Reject::Ttl(ttl));
    }
    Ok(IpFields {
        src: ip.get_source(),
        dst: ip.get_destination(),
        ttl,
        header_len,
    })
}

/// The VRRP checks of [`decode`] on the message after the IP header;
/// `packet_len` is the whole packet's, for [`Reject::Truncated`].
fn decode_message(msg: &[u8], ip: &IpFields, packet_len: usize) -> Result<Advert, Reject> {
    // Both layouts agree on every field but bytes 4..6, so the v3 view
    // reads the common ones whatever the version turns out to be.
    let common = VrrpV3Packet::new(msg).ok_or(Reject::Truncated { len: packet_len })?;
    let version = match common.get_version() {
        2 => Version::V2,
        3 => Version::V3,
        v => return Err(Reject::Version(v)),
    };
    let kind = common.get_kind();
    if kind != TYPE_ADVERTISEMENT {
        return Err(Reject::Type(kind));
    }
    let count = common.get_count();
    check_length(version, count, msg.len())?;
    // Summing a message whose checksum field is intact gives 0 (as a
    // one's-complement sum of all ones) exactly when it verifies.
    if checksum(version, msg, ip.src, ip.dst) != 0 {
        let want = sum(version, msg, ip.src, ip.dst, CHECKSUM_WORD);
        let got = common.get_checksum();
        return Err(Reject::Checksum { got, want });
    }
    let vrid = Vrid::new(common.get_vrid()).map_err(|_| Reject::Vrid)?;
    let addrs_len = 4 * usize::from(count);
    let (max_advert_int, auth) = match version {
        Version::V3 => {
            // The getter returns the low 12 bits: the top 4 are reserved and
            // ignored on receipt (RFC 5798 §5.2.6).
            let centis = common.get_max_advert_int();
            let int = AdvertInterval::from_centis(centis).map_err(|_| Reject::Interval)?;
            (int, None)
        }
        Version::V2 => {
            // Cannot fail: the message is at least as long as the v3 view's.
            let v2 = VrrpV2Packet::new(msg).expect("8-byte VRRP header");
            let int =
                AdvertInterval::from_secs(v2.get_advert_int()).map_err(|_| Reject::Interval)?;
            let mut data = [0u8; V2_AUTH_LEN];
            data.copy_from_slice(&v2.payload()[addrs_len..]);
            let auth_type = v2.get_auth_type();
            (int, Some(V2Auth { auth_type, data }))
        }
    };
    let addresses = common.payload()[..addrs_len]
        .chunks_exact(4)
        .map(|a| Ipv4Addr::new(a[0], a[1], a[2], a[3]))
        .collect();
    Ok(Advert {
        version,
        vrid,
        priority: Priority(common.get_priority()),
        max_advert_int,
        addresses,
        auth,
    })
}

/// RFC 5798 §7.1: the message length must agree with Count IPvX Addr (and,
/// for v2, leave exactly the 8 authentication bytes after the addresses).
fn check_length(version: Version, count: u8, len: usize) -> Result<(), Reject> {
    let addrs_end = VRRP_HEADER + 4 * usize::from(count);
    match version {
        Version::V3 if len != addrs_end => Err(Reject::AddressCount { count, len }),
        Version::V2 if len == addrs_end => Err(Reject::MissingAuth),
        Version::V2 if len != addrs_end + V2_AUTH_LEN => Err(Reject::AddressCount { count, len }),
        _ => Ok(()),
    }
}

/// A 20-byte IPv4 header (no options, DF clear, id 0) with its header
/// checksum, for tests and for a sender that writes its own header. In
/// production the kernel writes it (`IP_HDRINCL` off) with `IP_TTL`/
/// `IP_MULTICAST_TTL` 255 and `IP_TOS` 0xc0.
pub fn ip_header(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, tos: u8, payload_len: u16) -> [u8; 20] {
    let mut h = [0u8; 20];
    // Cannot fail: 20 bytes is exactly the fixed IPv4 header.
    let mut ip = MutableIpv4Packet::new(&mut h).expect("20-byte IPv4 header");
    ip.set_version(4);
    ip.set_header_length(5);
    // The TOS byte is DSCP (6 bits) then ECN (2).
    ip.set_dscp(tos >> 2);
    ip.set_ecn(tos & 0x03);
    ip.set_total_length(payload_len.saturating_add(20));
    ip.set_ttl(ttl);
    ip.set_next_level_protocol(IpNextHeaderProtocols::Vrrp);
    ip.set_source(src);
    ip.set_destination(dst);
    let sum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(sum);
    h
}

/// The index of the checksum's 16-bit word in the VRRP header (bytes
/// 6..8): pnet's checksum helpers leave the word at the index they are
/// given out of the sum, as if it were zero.
const CHECKSUM_WORD: usize = 3;
/// A word index past any message: every word is summed.
const EVERY_WORD: usize = usize::MAX;

/// The checksum over `msg` for `version`: with the pseudo-header for v3, over
/// the message alone for v2. Over a message whose checksum field is zero this
/// is the value to write; over a received message it is 0 when it verifies.
fn checksum(version: Version, msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
    sum(version, msg, src, dst, EVERY_WORD)
}

/// [`checksum`], leaving the 16-bit word at index `skip` out of the sum.
/// A VRRP message fits an IP packet, so pnet's 32-bit accumulator (folded
/// only at the end) cannot overflow.
fn sum(version: Version, msg: &[u8], src: Ipv4Addr, dst: Ipv4Addr, skip: usize) -> u16 {
    match version {
        // RFC 5798 §5.2.8 → RFC 2460-style pseudo-header for IPv4:
        // src(4) dst(4) zero(1) protocol(1) VRRP length(2).
        Version::V3 => util::ipv4_checksum(msg, skip, &[], &src, &dst, IpNextHeaderProtocols::Vrrp),
        // RFC 3768 §5.3.8: the VRRP message alone.
        Version::V2 => util::checksum(msg, skip),
    }
}

/// Add `bytes` as big-endian 16-bit words to a 32-bit accumulator (an odd
/// trailing byte is padded with zero, RFC 1071), folding as it goes: the
/// tests' own one's-complement sum, an oracle independent of pnet's.
#[cfg(test)]
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

#[cfg(test)]
fn finish(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16) // cannot truncate: folded to 16 bits above
}

#[cfg(test)]
mod tests;
