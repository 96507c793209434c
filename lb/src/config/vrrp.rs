//! `[[vrrp]]` instances as plain data: keepalived's `vrrp_instance`, keyword
//! for keyword where keepalived has one (see `lb/lb.example.toml`).
//!
//! Ranges come from the RFCs: VRID 1..=255 and priority 1..=255 (0 is the
//! "master resigning" advert, 255 the address owner; RFC 5798 §5.2.3-4); the
//! advert interval is a 12-bit count of centiseconds in VRRPv3 (§5.2.7) and an
//! 8-bit count of seconds in VRRPv2 (RFC 3768 §5.3.7); authentication exists
//! only in v2 (RFC 3768 §5.3.6, removed by RFC 5798). The fields the
//! protocol constrains hold the VRRP code's own types ([`Vrid`],
//! [`Priority`], [`Version`], [`AdvertInterval`]), built by the parser, so a
//! value that is here is valid and nothing downstream checks it again.

use std::net::Ipv4Addr;
use std::time::Duration;

pub use crate::vrrp::types::{AdvertInterval, Priority, Version, Vrid};

/// One VRRP instance: a virtual router this node takes part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpConfig {
    /// `name` (required): in logs, status, metric labels and `notify`.
    /// 1 to 64 characters from `A-Z a-z 0-9 _ . -`, unique among instances.
    pub name: String,
    /// `interface` (required): where adverts are sent and VIPs added. A Linux
    /// interface name: 1 to 15 bytes, no `/`, `:` or whitespace, not `.` or `..`.
    pub interface: String,
    /// `virtual_router_id` (required): 1 to 255. Unique per interface.
    pub vrid: Vrid,
    /// `priority`: default 100; 1 to 255 (255 = this node owns the addresses).
    pub priority: Priority,
    /// `version`: 2 (RFC 3768) or 3 (RFC 5798, default).
    pub version: Version,
    /// `advert_interval` (keepalived `advert_int`): default `"100ms"`. v3:
    /// 10 ms to 40.95 s in whole centiseconds; v2: whole seconds, 1 to 255.
    pub advert_interval: AdvertInterval,
    /// `preempt`: a higher-priority backup takes over from a lower master.
    /// Default true (`false` is keepalived's `nopreempt`).
    pub preempt: bool,
    /// `preempt_delay`: how long a higher-priority backup waits before
    /// preempting. Default `"0s"`; at most 1000 s (keepalived's limit).
    pub preempt_delay: Duration,
    /// `virtual_ips` (keepalived `virtual_ipaddress`, required): address and
    /// prefix length (1 to 32) of each VIP, in file order, at least one, none
    /// repeated on the same interface.
    pub virtual_ips: Vec<(Ipv4Addr, u8)>,
    /// `unicast_src_ip`: source address of unicast adverts. Default: None,
    /// the interface's primary address.
    pub unicast_src_ip: Option<Ipv4Addr>,
    /// `unicast_peers` (keepalived `unicast_peer`): when non-empty, adverts
    /// go to each of these instead of multicast 224.0.0.18. Default: empty.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// `auth_pass` (keepalived `authentication { auth_type PASS }`): v2 only,
    /// 1 to 8 bytes. Default None.
    pub auth_pass: Option<String>,
    /// `track` (keepalived `track_interface` / `track_script`).
    pub track: Vec<Track>,
    /// `notify`: program (absolute path) and arguments, run on every state
    /// change with four more arguments, as keepalived's `notify` script gets
    /// them (so its scripts work unchanged): `program args... INSTANCE NAME
    /// STATE PRIORITY`, where `INSTANCE` is that literal word, `NAME` this
    /// instance's name, `STATE` one of `MASTER`, `BACKUP`, `FAULT`, `STOP`,
    /// and `PRIORITY` the current priority. Run directly (no shell), one at
    /// a time, in order. Default None.
    pub notify: Option<Vec<String>>,
    /// `notify_timeout`: a notify command still running after this is killed.
    /// Default `"5s"`; greater than zero.
    pub notify_timeout: Duration,
    /// The gratuitous ARP settings.
    pub garp: GarpConfig,
}

impl VrrpConfig {
    pub const DEFAULT_PRIORITY: Priority = Priority(100);
    pub const DEFAULT_VERSION: Version = Version::V3;
    pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_millis(100);
    pub const MAX_PREEMPT_DELAY: Duration = Duration::from_secs(1000);
    pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
    /// `IFNAMSIZ` (16) less the terminating NUL.
    pub const MAX_IFNAME: usize = 15;
    /// RFC 3768 §5.3.10: the authentication data field is 8 bytes.
    pub const MAX_AUTH_PASS: usize = 8;

    /// True when adverts go to `unicast_peers` rather than multicast.
    pub fn is_unicast(&self) -> bool {
        !self.unicast_peers.is_empty()
    }
}

/// One entry of `track`: what lowers the priority when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// `service = "NAME"` (a `[[service]]` of this file) or `interface = "IF"`.
    pub target: TrackTarget,
    /// `weight`: -254 to 254; default 0. 0 = the instance goes to FAULT (and
    /// releases its VIPs) while the target is down, as keepalived does for a
    /// tracked interface without weight; otherwise the weight is added to
    /// the priority while the target is down (so negative lowers it).
    pub weight: i32,
}

impl Track {
    pub const MAX_WEIGHT: i32 = 254;
    pub const DEFAULT_WEIGHT: i32 = 0;
}

/// What a [`Track`] watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrackTarget {
    /// Down when the service has no backend up.
    Service(String),
    /// Down when the interface is not up (no carrier or admin down).
    Interface(String),
}

/// Gratuitous ARPs sent on becoming master, so switches and neighbours learn
/// the VIPs' new MAC address at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GarpConfig {
    /// `garp_master_delay`: a second burst is sent this long after becoming
    /// master. Default `"5s"`; `"0s"` = no second burst.
    pub delay: Duration,
    /// `garp_master_repeat`: gratuitous ARPs per VIP in each burst. Default
    /// 5; 1 to 100.
    pub repeat: u32,
    /// `garp_interval`: spacing between the ARPs of one burst. Default
    /// `"0ms"`; at most 1 s.
    pub interval: Duration,
    /// `garp_master_refresh`: while master, a burst again every this long.
    /// Default `"0s"` = off; otherwise at least 1 s.
    pub refresh: Duration,
}

impl GarpConfig {
    pub const DEFAULT_REPEAT: u32 = 5;
    pub const MAX_REPEAT: u32 = 100;
    pub const MAX_INTERVAL: Duration = Duration::from_secs(1);
    pub const MIN_REFRESH: Duration = Duration::from_secs(1);
}

impl Default for GarpConfig {
    fn default() -> Self {
        GarpConfig {
            delay: Duration::from_secs(5),
            repeat: Self::DEFAULT_REPEAT,
            interval: Duration::ZERO,
            refresh: Duration::ZERO,
        }
    }
}
