//! The start-up announcement as the machine runs it (the rule itself is
//! `vrrp::announce`): when it is sent, when not, and the collision rule.

use super::*;

#[test]
fn a_starting_backup_that_heard_nothing_announces_once_after_two_and_a_half_intervals() {
    let (mut m, t0) = backup(params(150));
    let at = t0 + ms(2500);
    assert_eq!(m.next_deadline(), Some(at));
    assert_eq!(m.handle(Event::Timer, at - ms(1)), []);
    assert_eq!(m.handle(Event::Timer, at), [send(150)]);
    assert_eq!(m.next_deadline(), m.rfc_timer(), "once");
}

#[test]
fn a_running_master_heard_twice_cancels_it() {
    let (mut m, t0) = backup(params(150));
    m.handle(adv(LOWER_IP, 100), t0 + ms(500));
    m.handle(adv(LOWER_IP, 100), t0 + ms(1500));
    assert_eq!(m.next_deadline(), m.rfc_timer());
    assert_eq!(m.handle(Event::Timer, t0 + ms(2500)), []);
}

#[test]
fn a_nopreempt_backup_does_not_announce_and_defers_as_the_rfc_says() {
    // A nopreempt node stays silent: a lower node that claims first keeps
    // the VIP anyway (nopreempt), and an announcement could unseat a lower
    // starter that has just claimed while we defer to its advert. Any
    // advert, a lower starter's announcement too, re-arms its timer
    // (RFC 5798 §6.4.2, Preempt_Mode false).
    let mut p = params(150);
    p.preempt = false;
    let (mut m, t0) = backup(p);
    assert_eq!(m.next_deadline(), m.rfc_timer(), "nothing to announce");
    let t = t0 + ms(2400);
    assert_eq!(m.handle(adv(LOWER_IP, 100), t), []);
    assert_eq!(m.rfc_timer(), Some(t + m.master_down_interval()));
    assert_eq!(m.handle(Event::Timer, t0 + ms(2500)), []);
}

#[test]
fn a_not_ready_backup_does_not_announce() {
    let mut p = params(150);
    p.ready = false;
    let (mut m, t0) = backup(p);
    assert_eq!(m.handle(Event::Timer, t0 + ms(2500)), []);
}

#[test]
fn leaving_fault_announces_again() {
    let (mut m, t0) = backup(params(150));
    m.handle(Event::LinkDown, t0 + ms(1));
    assert_eq!(m.next_deadline(), None, "nothing armed in Fault");
    let up = t0 + ms(10);
    m.handle(Event::LinkUp, up);
    assert_eq!(m.next_deadline(), Some(up + ms(2500)));
}

#[test]
fn equal_announcements_that_cross_do_not_delay_the_claim() {
    // Two equal starters announce together and hear each other: neither
    // re-arms, both claim at their Master_Down_Interval, the tie-break
    // (§6.4.3) leaves one.
    let (mut m, t0) = backup(params(150));
    let deadline = m.rfc_timer().unwrap();
    assert_eq!(m.handle(Event::Timer, t0 + ms(2500)), [send(150)]);
    assert_eq!(m.handle(adv(HIGHER_IP, 150), t0 + ms(2501)), []);
    assert_eq!(m.rfc_timer(), Some(deadline), "not re-armed");
    assert_eq!(m.handle(Event::Timer, deadline), become_master(150));
}

#[test]
fn an_equal_master_heard_before_we_announce_is_deferred_to() {
    let (mut m, t0) = backup(params(150));
    assert_eq!(m.handle(adv(HIGHER_IP, 150), t0 + ms(500)), []);
    let t = t0 + ms(1500);
    assert_eq!(m.handle(adv(HIGHER_IP, 150), t), []);
    assert_eq!(m.next_deadline(), Some(t + m.master_down_interval()));
    assert_eq!(m.handle(Event::Timer, t0 + ms(2500)), [], "no announcement");
}
