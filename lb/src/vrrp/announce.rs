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
//! The rule: a node that entered Backup at start-up (or on leaving Fault)
//! sends one advert with its priority after 2.5 advert intervals, unless it
//! has heard by then
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
//! difference, against the skew difference alone without it. Equal
//! priorities stay a race, as in the RFC. The announcement is ordinary VRRP,
//! so keepalived peers read it the same way.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Whether and when to announce, and whether we are still starting.
#[derive(Debug, Clone, Default)]
pub struct Announce {
    /// When to announce; None once sent or cancelled (or never wanted).
    at: Option<Instant>,
    /// End of the start-up window, 3.5 intervals after entering Backup: an
    /// interval past the announcement (see [`Announce::is_starter`]).
    window_until: Option<Instant>,
    /// Sources of priority <= ours heard once so far in the window.
    heard_once: Vec<Ipv4Addr>,
}

impl Announce {
    /// Nothing to announce, not starting.
    pub fn idle() -> Announce {
        Announce::default()
    }

    /// Entering Backup at `now` with our advert `interval`; `announce`:
    /// whether to announce at all (a nopreempt node does not: a lower node
    /// that claims first keeps the VIP anyway, and an announcement could
    /// unseat a lower starter that has just claimed while we defer to it).
    pub fn after_start(now: Instant, interval: Duration, announce: bool) -> Announce {
        Announce {
            at: announce.then(|| now + interval * 5 / 2),
            window_until: Some(now + interval * 7 / 2),
            heard_once: Vec::new(),
        }
    }

    /// When [`Announce::fire`] should be called.
    pub fn deadline(&self) -> Option<Instant> {
        self.at
    }

    /// Leaving Backup: nothing to announce, no longer starting.
    pub fn cancel(&mut self) {
        *self = Announce::idle();
    }

    fn starting(&self, now: Instant) -> bool {
        self.window_until.is_some_and(|t| now < t)
    }

    /// Whether an advert (`theirs`, from `src`) is most likely another
    /// starter's announcement rather than a running master's: we are still
    /// starting (within an interval of when we would announce), its
    /// priority is not above ours, and `src` has not been heard before in
    /// the window. A Backup does not defer to such an advert (RFC 5798
    /// §6.4.2 would re-arm its Master_Down_Timer on "priority >= ours, or
    /// preempt off"): starters that each took the others' announcements for
    /// a master's would all wait, and the first claim would come 2.5
    /// intervals late (equal priorities, or a nopreempt node and a lower
    /// starter). Their own timers decide instead, as the RFC has it for
    /// silent starters, and §6.4.3's tie-break settles equal ones. A running
    /// master sends again within an interval and is deferred to from its
    /// second advert on. Call before [`Announce::heard`] for the same advert.
    pub fn is_starter(&self, src: Ipv4Addr, theirs: u8, ours: u8, now: Instant) -> bool {
        self.starting(now) && theirs != 0 && theirs <= ours && !self.heard_once.contains(&src)
    }

    /// Another router's valid advert for our VRID (`theirs` 0 = resigning).
    /// The announcement is called off by a priority >= ours or 0 (someone
    /// we defer to, or a master leaving), or by a second advert from one
    /// lower source (a running master, which an announcement would make
    /// step down before we claim: a gap with no master).
    pub fn heard(&mut self, src: Ipv4Addr, theirs: u8, ours: u8, now: Instant) {
        if !self.starting(now) {
            return;
        }
        let again = self.heard_once.contains(&src);
        if theirs == 0 || theirs >= ours || again {
            self.at = None;
        }
        if theirs != 0 && theirs <= ours && !again {
            self.heard_once.push(src);
        }
    }

    /// True once, when the deadline has passed and nothing cancelled it.
    pub fn fire(&mut self, now: Instant) -> bool {
        if self.at.is_some_and(|t| now >= t) {
            self.at = None;
            true
        } else {
            false
        }
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
        a.cancel();
        assert!(!a.is_starter(A, 100, 150, t0 + Duration::from_millis(260)));
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
            a.heard(A, theirs, 150, t0);
            assert_eq!(a.deadline(), None, "theirs {theirs}");
            assert!(!a.fire(t0 + 3 * I));
        }
    }

    #[test]
    fn one_lower_advert_is_a_starter_two_are_a_running_master() {
        let t0 = Instant::now();
        let mut a = Announce::after_start(t0, I, true);
        assert!(a.is_starter(A, 100, 150, t0));
        a.heard(A, 100, 150, t0);
        a.heard(B, 100, 150, t0);
        assert!(a.deadline().is_some(), "two starters heard once each");
        assert!(!a.is_starter(A, 100, 150, t0), "heard before");
        a.heard(A, 100, 150, t0);
        assert_eq!(a.deadline(), None, "A advertises periodically: a master");
    }

    #[test]
    fn idle_never_fires() {
        let mut a = Announce::idle();
        let t = Instant::now();
        a.heard(A, 100, 150, t);
        assert!(!a.is_starter(A, 100, 150, t));
        assert!(!a.fire(t + Duration::from_secs(10)));
    }

    #[test]
    fn the_start_up_window_closes_an_interval_after_the_announcement() {
        let t0 = Instant::now();
        let mut a = Announce::after_start(t0, I, true);
        assert!(a.is_starter(A, 150, 150, t0), "equal, first heard");
        assert!(!a.is_starter(A, 151, 150, t0), "higher is a master");
        assert!(!a.is_starter(A, 0, 150, t0), "resigning is a master");
        let fired = t0 + 5 * I / 2;
        assert!(a.fire(fired));
        assert!(a.is_starter(B, 100, 150, fired + I - Duration::from_millis(1)));
        assert!(!a.is_starter(B, 100, 150, fired + I));
    }

    #[test]
    fn an_equal_starter_calls_off_the_announcement_but_not_the_window() {
        // Three equal starters: the second one heard is a starter too.
        let t0 = Instant::now();
        let mut a = Announce::after_start(t0, I, true);
        let t = t0 + 2 * I;
        assert!(a.is_starter(A, 150, 150, t));
        a.heard(A, 150, 150, t);
        assert_eq!(a.deadline(), None, "no need to announce");
        assert!(a.is_starter(B, 150, 150, t));
        assert!(!a.is_starter(A, 150, 150, t), "A again: a master");
    }

    #[test]
    fn a_node_that_does_not_announce_still_has_the_window() {
        let t0 = Instant::now();
        let a = Announce::after_start(t0, I, false);
        assert_eq!(a.deadline(), None);
        assert!(a.is_starter(A, 100, 150, t0 + 3 * I));
        assert!(!a.is_starter(A, 100, 150, t0 + 7 * I / 2));
    }
}
