//! The two VRRP advert layouts, declared with `pnet_macros`' `#[packet]`,
//! which generates `VrrpV3Packet`/`MutableVrrpV3Packet` and
//! `VrrpV2Packet`/`MutableVrrpV2Packet`: zero-copy big-endian accessors
//! over a byte slice, whose constructors refuse a slice shorter than the
//! fixed 8 bytes. The field layouts are drawn in the parent module's doc.
//!
//! Both layouts put version, type, VRID, priority, count and checksum at
//! the same offsets; only bytes 4..6 differ. The payload is everything
//! after the fixed header: the addresses (and, for v2, the 8 bytes of
//! authentication data after them). Checking that its length matches the
//! count is the decoder's job, not the macro's. (The macro refuses doc
//! comments on fields, hence the plain comments.)

// The 0.35 macro emits `#[cfg_attr(feature = "clippy", ...)]` on what it
// generates, and tandem-lb has no `clippy` feature. rustc reports
// check-cfg findings in derive output against the crate root, where an
// `allow(unexpected_cfgs)` on this module does not reach (rustc 1.95), so
// lb/build.rs declares that one value expected instead; with the
// workspace's `unexpected_cfgs = "warn"` and clippy's `-D warnings` it
// would otherwise fail the build.

use pnet_macros::packet;
use pnet_macros_support::types::{u4, u12be, u16be};

/// A VRRPv3 advertisement (RFC 5798 §5.1).
// Only the macro reads this struct; the code uses the generated views.
#[allow(dead_code)]
#[packet]
pub struct VrrpV3 {
    pub version: u4,
    // Type: 1 is the only one, advertisement (RFC 5798 §5.2.2).
    pub kind: u4,
    pub vrid: u8,
    pub priority: u8,
    // Count IPvX Addr.
    pub count: u8,
    // Zero on send, ignored on receipt (RFC 5798 §5.2.6).
    pub reserved: u4,
    // Max Adver Int, in centiseconds.
    pub max_advert_int: u12be,
    // Over the IPv4 pseudo-header and the message (RFC 5798 §5.2.8).
    pub checksum: u16be,
    // The IPv4 addresses, 4 bytes each.
    #[payload]
    pub addresses: Vec<u8>,
}

/// A VRRPv2 advertisement (RFC 3768 §5.1).
// Only the macro reads this struct; the code uses the generated views.
#[allow(dead_code)]
#[packet]
pub struct VrrpV2 {
    pub version: u4,
    pub kind: u4,
    pub vrid: u8,
    pub priority: u8,
    // Count IP Addrs.
    pub count: u8,
    // 0 none, 1 simple text password, 2 the withdrawn IP AH (RFC 3768 §5.3.6).
    pub auth_type: u8,
    // Adver Int, in whole seconds.
    pub advert_int: u8,
    // Over the message only (RFC 3768 §5.3.8).
    pub checksum: u16be,
    // The IPv4 addresses, 4 bytes each, then 8 bytes of authentication data.
    #[payload]
    pub rest: Vec<u8>,
}
