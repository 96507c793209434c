//! The machine's vocabulary: its [`State`], its configuration ([`Params`]),
//! what it is told ([`Event`]) and what it asks for ([`Action`]).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::vrrp::types::{AdvertInterval, Priority, Version, Vrid};

/// The protocol state (RFC 5798 §6.4) plus Fault (link down, or a tracked
/// weight-0 target down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or stopped. Holds no VIPs, sends nothing.
    Initialize,
    /// Listening for the master; holds no VIPs.
    Backup,
    /// Holds the VIPs and advertises every interval.
    Master,
    /// The VRRP interface, or a weight-0 tracked target, is down: holds no
    /// VIPs, sends nothing, until [`Event::LinkUp`].
    Fault,
}

impl State {
    /// Lower-case name for notify scripts, status and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }

    /// The word keepalived passes to `notify` scripts, so they work
    /// unchanged. Initialize is only ever entered by stopping: `STOP`.
    pub fn keepalived_name(self) -> &'static str {
        match self {
            State::Initialize => "STOP",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// The configuration of one virtual router, as the machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub vrid: Vrid,
    pub version: Version,
    /// Configured priority, 1..=255. 255 = address owner: starts as Master at
    /// once and always preempts (RFC 5798 §6.1 Preempt_Mode note).
    pub priority: Priority,
    /// Our Advertisement_Interval. Must fit `version` (whole seconds for v2).
    pub advert_interval: AdvertInterval,
    /// Preempt_Mode (RFC 5798 §6.1): a higher-priority Backup takes over from
    /// a lower-priority Master. keepalived's `nopreempt` is `false` here.
    pub preempt: bool,
    /// keepalived's `preempt_delay`: no preemption until this long after
    /// start-up or link up. Zero = none.
    pub preempt_delay: Duration,
    /// Our primary address on the VRRP interface: the tie-break between equal
    /// priorities (RFC 5798 §6.4.3: the higher address wins).
    pub primary_ip: Ipv4Addr,
    /// Whether listeners and health checks are ready at construction. If
    /// false, the machine does not become Master until [`Event::Ready`].
    pub ready: bool,
}

/// Something that happened. `now` is passed beside it to [`Machine::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// RFC 5798 §6.4.1 Startup.
    Startup,
    /// RFC 5798 §6.4.2/§6.4.3 Shutdown: a Master resigns with priority 0.
    Shutdown,
    /// A decoded, validated advert for our VRID (see `packet::decode`).
    AdvertReceived {
        /// The sender's primary address (IP source).
        src: Ipv4Addr,
        priority: Priority,
        max_advert_int: AdvertInterval,
    },
    /// [`Machine::next_deadline`] has passed. Early calls are ignored.
    Timer,
    /// New effective priority from tracking. Clamped to 1..=254 (1..=255 for
    /// an instance configured at 255), as keepalived does.
    PriorityChanged(Priority),
    /// Carrier lost on the VRRP interface: release the VIPs and go silent
    /// (an advert could not get out anyway).
    LinkDown,
    /// Tracking says fault (a weight-0 target is down) while the VRRP link
    /// works: as [`Event::LinkDown`], but a Master first resigns with a
    /// priority-0 advert (RFC 5798 §6.4.3), so the backup takes over after
    /// its skew time instead of a whole Master_Down_Interval.
    TrackFault,
    /// The fault ([`Event::LinkDown`] or [`Event::TrackFault`]) is over:
    /// start again as at start-up (§6.4.1).
    LinkUp,
    /// Readiness withdrawn until the next [`Event::Ready`]: a fault has just
    /// cleared and the health view is stale (backends marked down while the
    /// link was cut are still coming back), so a claim now would attract
    /// clients to a node that cannot serve them yet. Ignored in Master
    /// (losing health there is tracking's job).
    Unready,
    /// Listeners bound and health checks settled: Master is now allowed.
    Ready,
}

/// What the caller must do, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send one advert with this priority (0 = resigning) and our interval
    /// and VIPs, to the group or to each unicast peer.
    SendAdvert { priority: Priority },
    /// Add the VIPs to the interface.
    AddVips,
    /// Remove the VIPs from the interface.
    RemoveVips,
    /// Send gratuitous ARPs for every VIP (the I/O layer applies the
    /// configured count, spacing and delayed repeat, and must cancel pending
    /// repeats when the VIPs are removed).
    SendGarp,
    /// The state changed to this one (run `notify`, bump metrics).
    Notify(State),
    /// While Master we heard another master that we outrank: two masters
    /// existed. Count it (the split-brain alarm) every time; `new_contest`
    /// is true once per contest (the first sighting after a quiet
    /// Master_Down_Interval), so a flood of such adverts logs one warning.
    OtherMasterSeen {
        src: Ipv4Addr,
        priority: Priority,
        new_contest: bool,
    },
    /// VRRPv3: a master advertised a longer interval than ours, and we kept
    /// ours as the ceiling of Master_Adver_Interval (see
    /// `Machine::learn_interval`). Once per distinct advertised value.
    IntervalNotAdopted {
        src: Ipv4Addr,
        advertised: AdvertInterval,
    },
    /// An advert was dropped by a protocol rule; count it by reason.
    Discarded(Discard),
}

/// Why the machine dropped a received advert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Discard {
    /// VRRPv2 only: the advert interval differs from ours (RFC 3768 §7.1).
    IntervalMismatch,
}

impl Discard {
    /// Metric label, in the same family as `packet::Reject::as_str`.
    pub fn as_str(self) -> &'static str {
        match self {
            Discard::IntervalMismatch => "interval_mismatch",
        }
    }
}
