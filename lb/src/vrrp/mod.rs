//! VRRP: RFC 5798 (VRRPv3, IPv4) and RFC 3768 (VRRPv2) for keepalived interop.
//!
//! Module map (pure parts; the socket/netlink edge is wired against these):
//! - [`types`]: the newtypes [`Vrid`], [`Priority`], [`AdvertInterval`], [`Version`].
//! - [`packet`]: advert encode/decode with both versions' checksum rules,
//!   every rejection a [`packet::Reject`] reason (a metric label), never a panic.
//!   Tested byte for byte against keepalived captures (`testdata/vectors.json`).
//! - [`machine`]: the RFC 5798 §6 state machine, sans-I/O: events and the
//!   current time in, actions out, one deadline to wake it up.
//! - [`announce`]: the one advert a starting Backup sends so that peers
//!   starting with it defer to the highest priority (used by `machine`).
//! - [`status`]: an instance's state as status shows it (plain data, shared by
//!   the failover runtime that publishes it and the balancer that shows it).

pub mod announce;
pub mod machine;
pub mod packet;
pub mod status;
pub mod types;

pub use types::{AdvertInterval, Priority, RangeError, Version, Vrid};
