//! Issue 11 item 5: adverts anyone on the segment can send (VRRPv3 has no
//! authentication) must not stall a backup's claim or turn a master into an
//! amplifier. And the tracking fault a master resigns from.

use super::*;

fn adv_interval(src: Ipv4Addr, priority: u8, centis: u16) -> Event {
    Event::AdvertReceived {
        src,
        priority: Priority(priority),
        max_advert_int: AdvertInterval::from_centis(centis).unwrap(),
    }
}

#[test]
fn a_longer_advertised_interval_is_not_adopted() {
    // Ours is 1 s. A forged master at 255 advertising 40.95 s: we defer to it
    // (it outranks us) but keep our own interval, so when it goes silent we
    // claim after 3 s + skew, not two minutes.
    let (mut m, t0) = backup(params(100));
    let t = t0 + ms(100);
    let out = m.handle(adv_interval(HIGHER_IP, 255, 4095), t);
    assert_eq!(
        out,
        [Action::IntervalNotAdopted {
            src: HIGHER_IP,
            advertised: AdvertInterval::from_centis(4095).unwrap(),
        }]
    );
    assert_eq!(m.master_down_interval(), ms(3000) + m.skew_time());
    assert_eq!(m.rfc_timer(), Some(t + m.master_down_interval()));
    // Said once per advertised value, not on every advert.
    assert_eq!(m.handle(adv_interval(HIGHER_IP, 255, 4095), t + ms(10)), []);
    let claim = m.rfc_timer().unwrap();
    assert!(claim < t + ms(4100), "claims within our own bound");
    assert_eq!(m.handle(Event::Timer, claim), become_master(100));
}

#[test]
fn a_shorter_advertised_interval_is_adopted() {
    // RFC 5798 §6.4.2: a faster master makes us notice its loss sooner.
    let (mut m, t0) = backup(params(100));
    let t = t0 + ms(100);
    assert_eq!(m.handle(adv_interval(HIGHER_IP, 200, 50), t), []);
    assert_eq!(m.master_down_interval(), ms(1500) + ms(500) * 156 / 256);
}

#[test]
fn track_fault_in_master_resigns_with_priority_zero_then_releases() {
    let (mut m, t) = master(params(150));
    assert_eq!(
        m.handle(Event::TrackFault, t + ms(1)),
        [send(0), Action::RemoveVips, Action::Notify(State::Fault)]
    );
    assert!(m.in_fault());
    assert_eq!(m.rfc_timer(), None);
    // Cleared: a fresh start, in Backup for a full Master_Down_Interval.
    let up = t + ms(10);
    assert_eq!(m.handle(Event::LinkUp, up), [Action::Notify(State::Backup)]);
    assert_eq!(m.rfc_timer(), Some(up + m.master_down_interval()));
    assert!(!m.in_fault());
}

#[test]
fn track_fault_in_backup_is_silent() {
    let (mut m, t0) = backup(params(150));
    assert_eq!(
        m.handle(Event::TrackFault, t0 + ms(1)),
        [Action::Notify(State::Fault)]
    );
}

#[test]
fn link_down_in_master_sends_nothing() {
    let (mut m, t) = master(params(150));
    assert_eq!(
        m.handle(Event::LinkDown, t + ms(1)),
        [Action::RemoveVips, Action::Notify(State::Fault)]
    );
}
