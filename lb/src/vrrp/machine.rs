//! The VRRP state machine of RFC 5798 §6 (and RFC 3768 §6 for v2 timers),
//! sans-I/O: the caller feeds [`Event`]s with the current time and executes
//! the returned [`Action`]s in order; [`Machine::next_deadline`] says when to
//! call back with [`Event::Timer`]. No sockets, no clock, no sleeping: tests
//! drive it with a base `Instant` plus durations.
//!
//! One timer serves both RFC timers, because they never run together:
//! in Backup it is the Master_Down_Timer, in Master the Adver_Timer.
//!
//! RFC 5798 §6.1 / §8.3 quantities (v3; v2 per RFC 3768 §6.1):
//! - Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256
//!   (v2: (256 − Priority) / 256 seconds, independent of the interval);
//! - Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time;
//! - Master_Adver_Interval is learned from the master's adverts in v3
//!   (§6.4.2); v2 requires every router to use the same interval and drops
//!   adverts that disagree (RFC 3768 §7.1).
//!
//! Beyond the RFC, on purpose (issue 4 item 7 and keepalived habits):
//! - **Fault**: [`Event::LinkDown`] from any running state releases the VIPs
//!   at once and sends nothing; [`Event::LinkUp`] re-enters as at start-up.
//! - **Readiness**: a machine created with `ready: false` never becomes
//!   Master — not even the address owner — until [`Event::Ready`]. If it
//!   would have claimed in the meantime (owner at start-up, or the
//!   Master_Down_Timer expired with no master heard) it claims at once on
//!   `Ready`; otherwise `Ready` changes nothing and the normal rules apply.
//!   Readiness is one-way: losing health later is expressed through
//!   [`Event::PriorityChanged`] (tracking).
//! - **No two-master window at start-up**: a non-owner always waits a full
//!   Master_Down_Interval in Backup first (RFC §6.4.1), whatever `preempt`
//!   says; keepalived with `state MASTER` does not.
//! - **Split brain**: a Master that hears another master it outranks reports
//!   [`Action::OtherMasterSeen`] (the alarm counter), sends an advert at once
//!   so the other steps down without waiting an interval (keepalived's "forcing
//!   a new election"), and sends gratuitous ARPs again once per contest so the
//!   switches learn the winner's MAC last (issue 4 item 5).
//! - **preempt_delay** (keepalived semantics): until `preempt_delay` has passed
//!   since start-up (or link up), a Backup treats a lower-priority master's
//!   adverts as if preemption were off, then takes over exactly when the delay
//!   ends.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::types::{AdvertInterval, Priority, RangeError, Version, Vrid};

/// The protocol state (RFC 5798 §6.4) plus Fault (link down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or stopped. Holds no VIPs, sends nothing.
    Initialize,
    /// Listening for the master; holds no VIPs.
    Backup,
    /// Holds the VIPs and advertises every interval.
    Master,
    /// The VRRP interface is down: holds no VIPs, sends nothing, until link up.
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
    /// Carrier lost on the VRRP interface.
    LinkDown,
    /// Carrier back.
    LinkUp,
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
    /// existed. Count it (the split-brain alarm); no other handling needed.
    OtherMasterSeen { src: Ipv4Addr, priority: Priority },
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

/// One virtual router's protocol state.
#[derive(Debug, Clone)]
pub struct Machine {
    params: Params,
    state: State,
    /// Effective priority (configured, then adjusted by tracking).
    priority: Priority,
    /// RFC 5798 §6.1 Master_Adver_Interval: learned from the master in v3.
    master_adver_interval: Duration,
    /// Master_Down_Timer in Backup, Adver_Timer in Master, none otherwise.
    timer: Option<Instant>,
    ready: bool,
    link_up: bool,
    /// Backup and not ready: we would have become Master (owner at start-up,
    /// or master-down timer expired). Claim on `Ready`.
    claim_on_ready: bool,
    /// Lower-priority masters are not preempted before this instant.
    preempt_after: Option<Instant>,
    /// Master: another master was heard until about this instant; a new
    /// contest after it triggers gratuitous ARPs again.
    contested_until: Option<Instant>,
    /// The current master as far as we know: us in Master, the sender of the
    /// last accepted advert in Backup.
    master: Option<Ipv4Addr>,
}

impl Machine {
    /// A machine in Initialize. Fails if the priority is 0 or the interval
    /// does not fit the version (config validation should catch both first).
    pub fn new(params: Params) -> Result<Self, RangeError> {
        let priority = Priority::configured(params.priority.get())?;
        if !params.advert_interval.fits(params.version) {
            return Err(RangeError::Interval {
                got: params.advert_interval.as_duration(),
                version: params.version,
                valid: match params.version {
                    Version::V2 => "1s..=255s in whole seconds",
                    Version::V3 => "10ms..=40.95s in steps of 10ms",
                },
            });
        }
        Ok(Machine {
            state: State::Initialize,
            priority,
            master_adver_interval: params.advert_interval.as_duration(),
            timer: None,
            ready: params.ready,
            link_up: true,
            claim_on_ready: false,
            preempt_after: None,
            contested_until: None,
            master: None,
            params,
        })
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When to call [`Machine::handle`] with [`Event::Timer`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timer
    }

    /// The effective priority we advertise.
    pub fn priority(&self) -> Priority {
        self.priority
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The current master's address as far as we know (for status).
    pub fn master(&self) -> Option<Ipv4Addr> {
        self.master
    }

    /// RFC 5798 §6.1 Skew_Time for our effective priority (v2: RFC 3768 §6.1).
    pub fn skew_time(&self) -> Duration {
        let weight = 256 - u32::from(self.priority.get());
        match self.params.version {
            Version::V3 => self.master_adver_interval * weight / 256,
            Version::V2 => Duration::from_secs(1) * weight / 256,
        }
    }

    /// RFC 5798 §6.1 Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_interval + self.skew_time()
    }

    /// Feed one event at time `now`; returns the actions to execute in order.
    ///
    /// An overdue deadline is handled first (as if [`Event::Timer`] came
    /// before `event`), so a caller that picks a packet over a due timer
    /// cannot postpone a timeout.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if event != Event::Timer && self.timer.is_some_and(|t| now >= t) {
            self.on_timer(now, &mut out);
        }
        match event {
            Event::Startup => self.on_startup(now, &mut out),
            Event::Shutdown => self.on_shutdown(&mut out),
            Event::AdvertReceived {
                src,
                priority,
                max_advert_int,
            } => self.on_advert(src, priority, max_advert_int, now, &mut out),
            Event::Timer => {
                if self.timer.is_some_and(|t| now >= t) {
                    self.on_timer(now, &mut out);
                }
            }
            Event::PriorityChanged(p) => self.on_priority(p, now, &mut out),
            Event::LinkDown => self.on_link_down(&mut out),
            Event::LinkUp => self.on_link_up(now, &mut out),
            Event::Ready => self.on_ready(now, &mut out),
        }
        out
    }

    /// RFC 5798 §6.4.1 Startup (also used on leaving Fault).
    fn on_startup(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if !self.link_up {
            self.transition(State::Fault, out);
            return;
        }
        self.start(now, out);
    }

    /// The body of §6.4.1: owner → Master at once; else Backup for a full
    /// Master_Down_Interval with Master_Adver_Interval = our own interval.
    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.master_adver_interval = self.params.advert_interval.as_duration();
        self.preempt_after = Some(now + self.params.preempt_delay);
        self.contested_until = None;
        self.master = None;
        if self.priority.is_owner() && self.ready {
            self.become_master(now, out);
        } else {
            // Not owner, or owner not yet ready: listen first. An owner that
            // is not ready claims as soon as it is (see `on_ready`).
            self.claim_on_ready = self.priority.is_owner();
            self.timer = Some(now + self.master_down_interval());
            self.transition(State::Backup, out);
        }
    }

    /// §6.4.2 / §6.4.3 Shutdown.
    fn on_shutdown(&mut self, out: &mut Vec<Action>) {
        match self.state {
            State::Initialize => return,
            State::Master => {
                // §6.4.3: send an advert with priority 0 so a backup takes
                // over after Skew_Time instead of Master_Down_Interval; the
                // advert goes first so the backup's clock starts sooner.
                out.push(Action::SendAdvert {
                    priority: Priority::RESIGN,
                });
                out.push(Action::RemoveVips);
            }
            State::Backup | State::Fault => {}
        }
        self.timer = None;
        self.claim_on_ready = false;
        self.master = None;
        self.transition(State::Initialize, out);
    }

    fn on_timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            // §6.4.2: Master_Down_Timer fired → Master.
            State::Backup if self.ready => self.become_master(now, out),
            State::Backup => {
                // Not ready: keep listening; claim on Ready unless a master
                // turns up first.
                self.timer = None;
                self.claim_on_ready = true;
                self.master = None;
            }
            // §6.4.3: Adver_Timer fired → send an advert, restart the timer.
            State::Master => {
                out.push(self.advert());
                self.timer = Some(now + self.params.advert_interval.as_duration());
            }
            State::Initialize | State::Fault => self.timer = None,
        }
    }

    fn on_advert(
        &mut self,
        src: Ipv4Addr,
        priority: Priority,
        max_advert_int: AdvertInterval,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if !matches!(self.state, State::Backup | State::Master) {
            return;
        }
        // Our own advert looped back (multicast loop, or a unicast peer list
        // that includes us): not another router.
        if src == self.params.primary_ip {
            return;
        }
        // RFC 3768 §7.1: a v2 advert whose interval differs from ours is dropped.
        if self.params.version == Version::V2 && max_advert_int != self.params.advert_interval {
            out.push(Action::Discarded(Discard::IntervalMismatch));
            return;
        }
        match self.state {
            State::Backup => self.backup_advert(src, priority, max_advert_int, now),
            State::Master => self.master_advert(src, priority, max_advert_int, now, out),
            State::Initialize | State::Fault => {}
        }
    }

    /// §6.4.2 Backup, "If an ADVERTISEMENT is received".
    fn backup_advert(
        &mut self,
        src: Ipv4Addr,
        priority: Priority,
        max_advert_int: AdvertInterval,
        now: Instant,
    ) {
        if priority == Priority::RESIGN {
            // The master is resigning: take over after Skew_Time only, so the
            // highest-priority backup (smallest skew) wins the race.
            self.timer = Some(now + self.skew_time());
            self.master = None;
            return;
        }
        // The owner always preempts (§6.1 Preempt_Mode note).
        let preempt = self.params.preempt || self.priority.is_owner();
        let delaying = self.preempt_after.is_some_and(|t| now < t);
        if !preempt || priority >= self.priority || delaying {
            self.learn_interval(max_advert_int);
            let mut deadline = now + self.master_down_interval();
            if preempt && priority < self.priority {
                // preempt_delay: hold off until it ends, then take over then.
                if let Some(t) = self.preempt_after {
                    deadline = deadline.min(t);
                }
            }
            self.timer = Some(deadline);
            self.claim_on_ready = false;
            self.master = Some(src);
        }
        // Otherwise: lower priority and we preempt → discard; our
        // Master_Down_Timer runs out and we take over.
    }

    /// §6.4.3 Master, "If an ADVERTISEMENT is received".
    fn master_advert(
        &mut self,
        src: Ipv4Addr,
        priority: Priority,
        max_advert_int: AdvertInterval,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if priority == Priority::RESIGN {
            // Another router resigned: advertise at once so backups re-arm.
            out.push(self.advert());
            self.timer = Some(now + self.params.advert_interval.as_duration());
            return;
        }
        // Priorities equal: the higher primary address wins, compared as
        // unsigned integers in network byte order (§6.4.3).
        let they_win = priority > self.priority
            || (priority == self.priority && u32::from(src) > u32::from(self.params.primary_ip));
        if they_win {
            self.learn_interval(max_advert_int);
            out.push(Action::RemoveVips);
            self.timer = Some(now + self.master_down_interval());
            self.master = Some(src);
            self.contested_until = None;
            self.transition(State::Backup, out);
            return;
        }
        // §6.4.3 says discard. We also count the split brain, assert
        // ourselves at once, and re-announce our MAC once per contest.
        out.push(Action::OtherMasterSeen { src, priority });
        out.push(self.advert());
        self.timer = Some(now + self.params.advert_interval.as_duration());
        if self.contested_until.is_none_or(|t| now > t) {
            out.push(Action::SendGarp);
        }
        self.contested_until = Some(now + self.master_down_interval());
    }

    fn on_priority(&mut self, p: Priority, now: Instant, out: &mut Vec<Action>) {
        let max = if self.params.priority.is_owner() {
            255
        } else {
            254
        };
        let p = Priority(p.get().clamp(1, max));
        if p == self.priority {
            return;
        }
        self.priority = p;
        // Master: advertise the new priority now rather than at the next
        // interval, so a higher backup's decision uses it. Backup: the new
        // skew applies from the next (re)arming of the timer.
        if self.state == State::Master {
            out.push(self.advert());
            self.timer = Some(now + self.params.advert_interval.as_duration());
        }
    }

    /// Issue 4 item 7: link down is a fault that releases the VIPs at once.
    fn on_link_down(&mut self, out: &mut Vec<Action>) {
        self.link_up = false;
        match self.state {
            State::Initialize | State::Fault => return,
            State::Master => out.push(Action::RemoveVips),
            State::Backup => {}
        }
        self.timer = None;
        self.claim_on_ready = false;
        self.master = None;
        self.transition(State::Fault, out);
    }

    /// Leaving Fault is a fresh start (§6.4.1): Backup for a full
    /// Master_Down_Interval, or Master at once for a ready owner.
    fn on_link_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.link_up = true;
        if self.state == State::Fault {
            self.start(now, out);
        }
    }

    fn on_ready(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.ready {
            return;
        }
        self.ready = true;
        if self.state == State::Backup && self.claim_on_ready {
            self.become_master(now, out);
        }
    }

    /// §6.4.1 / §6.4.2 "transition to Master": keepalived's order is VIPs,
    /// one advert, then gratuitous ARPs (seen in the captures).
    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(Action::AddVips);
        out.push(self.advert());
        out.push(Action::SendGarp);
        self.timer = Some(now + self.params.advert_interval.as_duration());
        self.claim_on_ready = false;
        self.contested_until = None;
        self.master = Some(self.params.primary_ip);
        self.transition(State::Master, out);
    }

    /// §6.4.2: in v3 the Backup adopts the master's interval; v2 intervals
    /// are equal by rule.
    fn learn_interval(&mut self, max_advert_int: AdvertInterval) {
        if self.params.version == Version::V3 {
            self.master_adver_interval = max_advert_int.as_duration();
        }
    }

    fn advert(&self) -> Action {
        Action::SendAdvert {
            priority: self.priority,
        }
    }

    fn transition(&mut self, to: State, out: &mut Vec<Action>) {
        if self.state != to {
            self.state = to;
            out.push(Action::Notify(to));
        }
    }
}

#[cfg(test)]
mod tests;
