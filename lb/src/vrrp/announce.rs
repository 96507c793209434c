//! The start-up announcement: one advert a starting Backup sends when it has
//! heard no master, so that peers starting at about the same time defer to
//! the highest priority (issue 4 item 7: no two-master window at start-up).
//!
//! Why: RFC 5798 §6.4.1 orders simultaneous starters only by Skew_Time, the
//! difference of which is tiny (20 ms between priorities 150 and 100 at
//! 100 ms adverts; 0.4 ms per priority point). Two processes released
//! together reach their VRRP start tens of milliseconds apart on a loaded
//! machine (measured: up to 50 ms on 2 busy cores), so the lower priority
//! often claims first and is preempted a moment later: two VIP holders.
//! Backups are silent, so neither knows the other is there.
//!
//! The rule: a preempting non-owner that entered Backup at start-up (or on
//! leaving Fault) sends one advert with its priority after 2.5 advert
//! intervals, if it is ready then, unless it has heard by then
//! - any advert with a priority >= its own (a master or a higher starter it
//!   will defer to anyway), or a priority-0 advert (a master resigning);
//! - two adverts from the same lower-priority source: that is a running
//!   master sending every interval, not a starter. Announcing to it would
//!   make it step down (it hears a higher priority) before we claim, a gap
//!   with no master; we preempt it at our Master_Down_Interval as usual.
//!
//! A lower-priority starter that hears the announcement treats it as a
//! master's advert (RFC 5798 §6.4.2: priority >= its own re-arms its
//! Master_Down_Timer), so it waits a full interval longer, by which time we
//! have claimed: 2.5 intervals is less than our Master_Down_Interval (3
//! intervals + skew). A higher starter discards it (lower priority, preempt).
//! The start-skew tolerated is about half an advert interval plus the skew
//! difference, against the skew difference alone without it. A nopreempt
//! node does not announce (see [`Announce::after_start`]). Equal starters
//! whose announcements cross do not defer to each other
//! ([`Announce::collides`]): they claim at their Master_Down_Interval and
//! the RFC's address tie-break leaves one. The announcement is ordinary
//! VRRP, so keepalived peers read it the same way.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Whether and when to announce.
#[derive(Debug, Clone, Default)]
pub struct Announce {
    /// When to announce; None once sent or called off (or never wanted).
    at: Option<Instant>,
    /// When the announcement went out (see [`Announce::collides`]).
    fired_at: Option<Instant>,
    interval: Duration,
    /// Lower-priority sources heard once so far.
    lower_once: Vec<Ipv4Addr>,
}

impl Announce {
    /// Nothing to announce.
    pub fn idle() -> Announce {
        Announce::default()
    }

    /// Entering Backup at `now` with our advert `interval`; `announce`:
    /// whether to announce at all. A nopreempt node does not: a lower node
    /// that claims first keeps the VIP with nopreempt anyway, and an
    /// announcement could unseat a lower starter that has just claimed
    /// while we defer to its advert — no master until the timers run out.
    pub fn after_start(now: Instant, interval: Duration, announce: bool) -> Announce {
        Announce {
            at: announce.then(|| now + interval * 5 / 2),
            fired_at: None,
            interval,
            lower_once: Vec::new(),
        }
    }

    /// When [`Announce::fire`] should be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Leaving Backup: nothing to announce.
    pub fn cancel(&mut self) {
        *self = Announce::idle();
    }

    /// Whether an advert of `theirs` is most likely an equal starter's
    /// announcement that crossed ours: equal to our priority, and less than
    /// an interval after we announced. A Backup does not defer to it (RFC
    /// 5798 §6.4.2 would re-arm its Master_Down_Timer on "priority >=
    /// ours"): equal starters that each took the others' announcements for
    /// a master's would all wait, and the first claim would come 2.5
    /// intervals late. Their timers run on, all claim at their
    /// Master_Down_Interval, and §6.4.3's tie-break leaves one within a
    /// delivery. A running equal master is heard before we would announce
    /// and calls the announcement off, so it never collides.
    pub fn collides(&self, theirs: u8, ours: u8, now: Instant) -> bool {
        theirs == ours && self.fired_at.is_some_and(|t| now < t + self.interval)
    }

    /// Another router's valid advert for our VRID (`theirs` 0 = resigning).
    /// Calls the announcement off on a priority >= ours or 0 (someone we
    /// defer to, or a master leaving), or on a second advert from one lower
    /// source (a running master, which an announcement would make step
    /// down before we claim: a gap with no master).
    pub fn heard(&mut self, src: Ipv4Addr, theirs: u8, ours: u8) {
        if self.at.is_none() {
            return;
        }
        if theirs == 0 || theirs >= ours || self.lower_once.contains(&src) {
            self.at = None;
        } else {
            self.lower_once.push(src);
        }
    }

    /// True once, when the deadline has passed and nothing called it off.
    /// The caller says [`Announce::sent`] if it did send.
    pub fn fire(&mut self, now: Instant) -> bool {
        if self.at.is_some_and(|t| now >= t) {
            self.at = None;
            true
        } else {
            false
        }
    }

    /// The announcement went out at `now` (opens the collision window).
    pub fn sent(&mut self, now: Instant) {
        self.fired_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 12);
    const I: Duration = Duration::from_millis(100);

    #[test]
    fn fires_once_after_two_and_a_half_intervals() {
        let t0 = Instant::now();
        let mut a = Announce::after_start(t0, I, true);
        assert_eq!(a.deadline(), Some(t0 + Duration::from_millis(250)));
        assert!(!a.fire(t0 + Duration::from_millis(249)));
        assert!(a.fire(t0 + Duration::from_millis(250)));
        assert!(!a.fire(t0 + Duration::from_millis(500)));
        assert_eq!(a.deadline(), None);
        a.sent(t0 + Duration::from_millis(250));
        assert!(a.collides(150, 150, t0 + Duration::from_millis(260)));
        a.cancel();
        assert!(!a.collides(150, 150, t0 + Duration::from_millis(260)));
    }

    #[test]
    fn before_our_master_down_interval() {
        // 2.5 intervals < 3 intervals + any skew: the announcement always
        // precedes our own claim.
        let t0 = Instant::now();
        let a = Announce::after_start(t0, I, true);
        assert!(a.deadline().unwrap() < t0 + 3 * I);
    }

    #[test]
    fn higher_equal_or_resigning_advert_cancels() {
        let t0 = Instant::now();
        for theirs in [0, 150, 200] {
            let mut a = Announce::after_start(t0, I, true);
            a.heard(A, theirs, 150);
            assert_eq!(a.deadline(), None, "theirs {theirs}");
            assert!(!a.fire(t0 + 3 * I));
        }
    }

    #[test]
    fn one_lower_advert_is_a_starter_two_are_a_running_master() {
        let t0 = Instant::now();
        let mut a = Announce::after_start(t0, I, true);
        a.heard(A, 100, 150);
        a.heard(B, 100, 150);
        assert!(a.deadline().is_some(), "two starters heard once each");
        a.heard(A, 100, 150);
        assert_eq!(a.deadline(), None, "A advertises periodically: a master");
    }

    #[test]
    fn idle_never_fires() {
        let mut a = Announce::idle();
        let t = Instant::now();
        a.heard(A, 100, 150);
        assert!(!a.collides(150, 150, t));
        assert!(!a.fire(t + Duration::from_secs(10)));
    }

    #[test]
    fn only_an_equal_advert_within_an_interval_of_ours_collides() {
        let t0 = Instant::now();
        let mut a = Announce::after_start(t0, I, true);
        assert!(!a.collides(150, 150, t0), "not announced yet");
        let fired = t0 + 5 * I / 2;
        assert!(a.fire(fired));
        assert!(
            !a.collides(150, 150, fired),
            "not sent: no collision window"
        );
        a.sent(fired);
        assert!(a.collides(150, 150, fired + I - Duration::from_millis(1)));
        assert!(!a.collides(150, 150, fired + I));
        assert!(!a.collides(151, 150, fired), "higher: a master");
        assert!(!a.collides(100, 150, fired), "lower: the usual rules");
        // Hearing others after firing does not forget that we announced.
        a.heard(A, 150, 150);
        a.heard(B, 150, 150);
        assert!(a.collides(150, 150, fired + Duration::from_millis(1)));
    }

    #[test]
    fn a_node_that_does_not_announce_never_collides() {
        let t0 = Instant::now();
        let mut a = Announce::after_start(t0, I, false);
        assert_eq!(a.deadline(), None);
        assert!(!a.fire(t0 + 3 * I));
        assert!(!a.collides(150, 150, t0 + 3 * I));
    }
}
