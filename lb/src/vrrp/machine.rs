//! The VRRP state machine of RFC 5798 §6 (and RFC 3768 §6 for v2 timers),
//! sans-I/O: the caller feeds [`Event`]s with the current time and executes
//! the returned [`Action`]s in order; [`Machine::next_deadline`] says when to
//! call back with [`Event::Timer`]. No sockets, no clock, no sleeping: tests
//! drive it with a base `Instant` plus durations.
//!
//! One timer serves both RFC timers, because they never run together:
//! in Backup it is the Master_Down_Timer, in Master the Adver_Timer. A
//! second, one-shot deadline is the start-up announcement
//! ([`crate::vrrp::announce`]).
//!
//! RFC 5798 §6.1 / §8.3 quantities (v3; v2 per RFC 3768 §6.1):
//! - Skew_Time = ((256 − Priority) × Master_Adver_Interval) / 256
//!   (v2: (256 − Priority) / 256 seconds, independent of the interval);
//! - Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time;
//! - Master_Adver_Interval is learned from the master's adverts in v3
//!   (§6.4.2), but never above our own interval (see below); v2 requires
//!   every router to use the same interval and drops adverts that disagree
//!   (RFC 3768 §7.1).
//!
//! ## The invariant (issue 11)
//!
//! After every call to [`Machine::handle`]:
//! - in **Backup**, exactly one of two things holds: the Master_Down_Timer is
//!   armed, or the machine is not ready and owes a claim
//!   (`claim_on_ready`), which the first [`Event::Ready`] pays at once.
//!   Only an advert that §6.4.2 says resets the timer (priority ≥ ours, or
//!   preempt off, or preempt_delay running) re-arms it — except an equal
//!   one crossing our own start-up announcement (below); a priority-0
//!   advert shortens it to Skew_Time (or, not ready, turns it into an owed
//!   claim); nothing else touches it;
//! - in **Master**, the Adver_Timer is armed, and the machine is ready with
//!   its link up;
//! - in **Initialize** and **Fault**, no timer is armed and no VIP is held;
//! - a claim is owed only in Backup, and only while not ready.
//!
//! Readiness is the machine's own bit, set by [`Event::Ready`] and cleared
//! by [`Event::Unready`]; the runtime compares it with its readiness source
//! at every turn of its loop (failover/instance.rs), so a change can never
//! be lost between the two. `invariant_violation` (tests) checks the rules
//! above after every simulated event.
//!
//! ## Beyond the RFC, on purpose (issue 4 item 7, issue 11, keepalived habits)
//! - **Fault**: [`Event::LinkDown`] from any running state releases the VIPs
//!   at once and sends nothing; [`Event::TrackFault`] does the same after a
//!   Master's priority-0 advert; [`Event::LinkUp`] re-enters as at start-up.
//! - **Readiness**: a machine created with `ready: false` never becomes
//!   Master — not even the address owner — until [`Event::Ready`]. If it
//!   would have claimed in the meantime (owner at start-up, the
//!   Master_Down_Timer expired with no master heard, or a master resigned
//!   with priority 0) it claims at once on `Ready`; otherwise `Ready`
//!   changes nothing and the normal rules apply.
//!   [`Event::Unready`] withdraws it outside Master (the runtime sends it as
//!   a fault clears, until the health view has caught up); losing health
//!   while Master is expressed through [`Event::PriorityChanged`] (tracking).
//! - **No two-master window at start-up**: a non-owner always waits a full
//!   Master_Down_Interval in Backup first (RFC §6.4.1), whatever `preempt`
//!   says; keepalived with `state MASTER` does not. On entering Backup at
//!   start-up or on leaving Fault, a preempting non-owner arms the start-up
//!   announcement ([`crate::vrrp::announce`]): one advert after 2.5
//!   intervals if no master was heard, sent only when ready. §6.4.2 says a
//!   Backup MUST NOT send adverts; this one does, once, so that a lower
//!   node starting with it defers instead of claiming and being preempted.
//!   An equal-priority advert less than an interval after our announcement
//!   is taken for an equal starter's crossing it and does not re-arm the
//!   timer (otherwise equal starters all wait 2.5 intervals more); §6.4.3's
//!   tie-break settles the equal claims.
//! - **Split brain**: a Master that hears another master it outranks reports
//!   [`Action::OtherMasterSeen`] (the alarm counter), answers with an advert
//!   at once so the other steps down without waiting an interval
//!   (keepalived's "forcing a new election"), and sends gratuitous ARPs again
//!   once per contest so the switches learn the winner's MAC last (issue 4
//!   item 5).
//! - **Forged adverts cannot stall or flood the pair** (issue 11 item 5).
//!   VRRPv3 has no authentication, so anyone on the segment can send an
//!   advert. (a) A Backup adopts an advertised interval only up to its own:
//!   one forged advert with 40.95 s would otherwise keep it from claiming for
//!   two minutes after a real master loss. The price: a peer configured
//!   with a longer interval than ours is a misconfiguration we warn about
//!   (once per value), and against which we would time out between its
//!   adverts and flap. (b) A Master answers lower-priority and priority-0
//!   adverts at once at most once per advert interval; more of them wait for
//!   its regular advert, so a flood is not amplified.
//! - **preempt_delay** (keepalived's): until it has passed since start-up or
//!   link up, a lower master's adverts count as if preempt were off.

mod vocab;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::announce::Announce;
use super::types::{AdvertInterval, Priority, RangeError, Version};
pub use vocab::{Action, Discard, Event, Params, State};

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
    /// Master: when we last answered another router's advert at once
    /// (rate limit: one answer per advert interval).
    answered_at: Option<Instant>,
    /// The start-up announcement (Backup only).
    announce: Announce,
    /// The longer interval last refused (so the warning is said once).
    interval_refused: Option<AdvertInterval>,
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
            answered_at: None,
            announce: Announce::idle(),
            interval_refused: None,
            master: None,
            params,
        })
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When to call [`Machine::handle`] with [`Event::Timer`]: the RFC timer
    /// or the start-up announcement, whichever comes first.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.timer, self.announce.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The RFC timer alone: Master_Down_Timer in Backup, Adver_Timer in
    /// Master.
    #[cfg(test)]
    pub(crate) fn rfc_timer(&self) -> Option<Instant> {
        self.timer
    }

    /// Whether ready: `Params::ready` or [`Event::Ready`], until
    /// [`Event::Unready`].
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether a fault ([`Event::LinkDown`], [`Event::TrackFault`]) is in
    /// force: set even before start-up, when the machine is in Initialize.
    pub fn in_fault(&self) -> bool {
        !self.link_up
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
        self.on_due(now, &mut out);
        match event {
            Event::Startup => self.on_startup(now, &mut out),
            Event::Shutdown => self.on_shutdown(&mut out),
            Event::AdvertReceived {
                src,
                priority,
                max_advert_int,
            } => self.on_advert(src, priority, max_advert_int, now, &mut out),
            // Handled by `on_due` above; an early call does nothing.
            Event::Timer => {}
            Event::PriorityChanged(p) => self.on_priority(p, now, &mut out),
            Event::LinkDown => self.on_link_down(&mut out),
            Event::TrackFault => {
                // Over a working link, a master's last word is priority 0
                // (§6.4.3), as on shutdown.
                if self.state == State::Master {
                    out.push(Action::SendAdvert {
                        priority: Priority::RESIGN,
                    });
                }
                self.on_link_down(&mut out);
            }
            Event::LinkUp => self.on_link_up(now, &mut out),
            Event::Ready => self.on_ready(now, &mut out),
            Event::Unready => {
                if self.state != State::Master {
                    self.ready = false;
                }
            }
        }
        out
    }

    /// Whatever deadline has passed, in time order: the RFC timer first (a
    /// claim made then makes the announcement moot), then the announcement.
    fn on_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.timer.is_some_and(|t| now >= t) {
            self.on_timer(now, out);
        }
        if self.announce.fire(now) && self.state == State::Backup && self.ready {
            // See `announce`: only a ready Backup announces; a master heard
            // (a higher or equal one once, a lower one twice) has called
            // the announcement off.
            self.announce.sent(now);
            out.push(self.advert());
        }
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
        self.answered_at = None;
        self.master = None;
        if self.priority.is_owner() && self.ready {
            self.become_master(now, out);
        } else if self.priority.is_owner() {
            // Owner not yet ready: listen first, claim as soon as it is (see
            // `on_ready`). No timer: the claim is owed, not timed.
            self.claim_on_ready = true;
            self.timer = None;
            self.transition(State::Backup, out);
        } else {
            self.timer = Some(now + self.master_down_interval());
            self.transition(State::Backup, out);
            self.announce = Announce::after_start(
                now,
                self.params.advert_interval.as_duration(),
                self.params.preempt,
            );
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
        let collision = self
            .announce
            .collides(priority.get(), self.priority.get(), now);
        self.announce
            .heard(src, priority.get(), self.priority.get());
        match self.state {
            State::Backup if collision => {
                // An equal starter's announcement crossed ours, not a
                // master: our timer runs on (see `Announce::collides`).
            }
            State::Backup => self.backup_advert(src, priority, max_advert_int, now, out),
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
        out: &mut Vec<Action>,
    ) {
        if priority == Priority::RESIGN {
            // The master is resigning: take over after Skew_Time only, so the
            // highest-priority backup (smallest skew) wins the race. A backup
            // not ready keeps owing the claim instead (no timer: invariant).
            if self.ready {
                self.timer = Some(now + self.skew_time());
            } else {
                self.timer = None;
                self.claim_on_ready = true;
            }
            self.master = None;
            return;
        }
        // The owner always preempts (§6.1 Preempt_Mode note).
        let preempt = self.params.preempt || self.priority.is_owner();
        let delaying = self.preempt_after.is_some_and(|t| now < t);
        if !preempt || priority >= self.priority || delaying {
            self.learn_interval(src, max_advert_int, out);
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
            self.answer(now, out);
            return;
        }
        // Priorities equal: the higher primary address wins, compared as
        // unsigned integers in network byte order (§6.4.3).
        let they_win = priority > self.priority
            || (priority == self.priority && u32::from(src) > u32::from(self.params.primary_ip));
        if they_win {
            self.learn_interval(src, max_advert_int, out);
            out.push(Action::RemoveVips);
            self.timer = Some(now + self.master_down_interval());
            self.master = Some(src);
            self.contested_until = None;
            self.transition(State::Backup, out);
            return;
        }
        // §6.4.3 says discard. We also count the split brain, assert
        // ourselves at once, and re-announce our MAC once per contest.
        let new_contest = self.contested_until.is_none_or(|t| now > t);
        out.push(Action::OtherMasterSeen {
            src,
            priority,
            new_contest,
        });
        self.answer(now, out);
        if new_contest {
            out.push(Action::SendGarp);
        }
        self.contested_until = Some(now + self.master_down_interval());
    }

    /// A Master's advert at once, in answer to another router's — at most
    /// one per advert interval, so forged adverts cannot make us send more
    /// than twice our normal rate. A skipped answer changes nothing: the
    /// Adver_Timer sends our next advert on time.
    fn answer(&mut self, now: Instant, out: &mut Vec<Action>) {
        let interval = self.params.advert_interval.as_duration();
        if self.answered_at.is_some_and(|t| now < t + interval) {
            return;
        }
        self.answered_at = Some(now);
        out.push(self.advert());
        self.timer = Some(now + interval);
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
        self.answered_at = None;
        self.master = Some(self.params.primary_ip);
        self.transition(State::Master, out);
    }

    /// §6.4.2: in v3 the Backup adopts the master's interval — here only up
    /// to our own (issue 11 item 5: a forged 40.95 s would hold our claim
    /// off for two minutes; keepalived also keeps its own and warns). A
    /// shorter interval is adopted: it only makes us notice a loss sooner.
    /// v2 intervals are equal by rule.
    fn learn_interval(&mut self, src: Ipv4Addr, advertised: AdvertInterval, out: &mut Vec<Action>) {
        if self.params.version != Version::V3 {
            return;
        }
        let ours = self.params.advert_interval;
        if advertised > ours {
            self.master_adver_interval = ours.as_duration();
            if self.interval_refused != Some(advertised) {
                self.interval_refused = Some(advertised);
                out.push(Action::IntervalNotAdopted { src, advertised });
            }
        } else {
            self.master_adver_interval = advertised.as_duration();
            self.interval_refused = None;
        }
    }

    fn advert(&self) -> Action {
        Action::SendAdvert {
            priority: self.priority,
        }
    }

    fn transition(&mut self, to: State, out: &mut Vec<Action>) {
        if to != State::Backup {
            self.announce.cancel();
        }
        if self.state != to {
            self.state = to;
            out.push(Action::Notify(to));
        }
    }
}

#[cfg(test)]
mod tests;
