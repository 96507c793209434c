//! One test per RFC 5798 §6 rule (and each deliberate extension), with
//! simulated time: `t0` plus durations, no sleeping.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::*;
use crate::vrrp::Vrid;

impl Machine {
    /// The invariant of the module doc, or what breaks it (for tests).
    pub(crate) fn invariant_violation(&self) -> Option<String> {
        let bad = match self.state {
            State::Backup if self.timer.is_some() == (self.claim_on_ready && !self.ready) => {
                "Backup needs exactly one of: a Master_Down_Timer, an owed claim while not ready"
            }
            State::Backup if self.claim_on_ready && self.ready => "ready Backup still owes a claim",
            State::Backup | State::Master if !self.link_up => "running while faulted",
            State::Initialize | State::Fault | State::Master if self.claim_on_ready => {
                "a claim owed outside Backup"
            }
            State::Master if self.timer.is_none() => "Master without an Adver_Timer",
            State::Master if !self.ready || !self.link_up => "Master while not ready or faulted",
            State::Initialize | State::Fault if self.timer.is_some() => "timer armed while idle",
            State::Initialize | State::Fault | State::Master
                if self.announce.deadline().is_some() =>
            {
                "announcement armed outside Backup"
            }
            _ => return None,
        };
        Some(format!("{bad}: {self:?}"))
    }
}

mod announce;
mod forged;
mod sim;

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
const HIGHER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 12);
const LOWER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn params(priority: u8) -> Params {
    Params {
        vrid: Vrid::new(51).unwrap(),
        version: Version::V3,
        priority: Priority(priority),
        advert_interval: AdvertInterval::ONE_SECOND,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_ip: US,
        ready: true,
    }
}

fn adv(src: Ipv4Addr, priority: u8) -> Event {
    Event::AdvertReceived {
        src,
        priority: Priority(priority),
        max_advert_int: AdvertInterval::ONE_SECOND,
    }
}

fn send(p: u8) -> Action {
    Action::SendAdvert {
        priority: Priority(p),
    }
}

const BECOME_MASTER_255: [Action; 4] = [
    Action::AddVips,
    Action::SendAdvert {
        priority: Priority(255),
    },
    Action::SendGarp,
    Action::Notify(State::Master),
];

fn become_master(p: u8) -> Vec<Action> {
    vec![
        Action::AddVips,
        send(p),
        Action::SendGarp,
        Action::Notify(State::Master),
    ]
}

/// A started machine in Backup at `t0` (priority < 255).
fn backup(p: Params) -> (Machine, Instant) {
    let t0 = Instant::now();
    let mut m = Machine::new(p).unwrap();
    assert_eq!(
        m.handle(Event::Startup, t0),
        [Action::Notify(State::Backup)]
    );
    (m, t0)
}

/// A machine that went Backup → Master by timeout; returns it and the time it became master.
fn master(p: Params) -> (Machine, Instant) {
    let prio = p.priority.get();
    let (mut m, t0) = backup(p);
    let t = m.rfc_timer().unwrap();
    assert_eq!(m.handle(Event::Timer, t), become_master(prio));
    let _ = t0;
    (m, t)
}

// ---- §6.1 parameters ----

#[test]
fn skew_and_master_down_interval_v3() {
    // Skew_Time = ((256 - 100) * 1 s) / 256 = 609.375 ms; MDI = 3 s + skew.
    let m = Machine::new(params(100)).unwrap();
    assert_eq!(m.skew_time(), Duration::from_micros(609_375));
    assert_eq!(m.master_down_interval(), Duration::from_micros(3_609_375));
    // 100 ms adverts: skew 60.9375 ms, MDI 360.9375 ms.
    let mut p = params(100);
    p.advert_interval = AdvertInterval::from_centis(10).unwrap();
    let m = Machine::new(p).unwrap();
    assert_eq!(m.skew_time(), Duration::from_nanos(60_937_500));
    assert_eq!(m.master_down_interval(), Duration::from_nanos(360_937_500));
    // Higher priority, smaller skew: the best backup fires first.
    assert!(
        Machine::new(params(200)).unwrap().skew_time()
            < Machine::new(params(100)).unwrap().skew_time()
    );
}

#[test]
fn skew_v2_is_in_seconds_whatever_the_interval() {
    // RFC 3768 §6.1: Skew_Time = (256 - Priority) / 256 seconds.
    let mut p = params(100);
    p.version = Version::V2;
    p.advert_interval = AdvertInterval::from_secs(3).unwrap();
    let m = Machine::new(p).unwrap();
    assert_eq!(m.skew_time(), Duration::from_micros(609_375));
    assert_eq!(m.master_down_interval(), Duration::from_micros(9_609_375));
}

#[test]
fn new_refuses_priority_zero_and_an_interval_the_version_cannot_carry() {
    assert!(Machine::new(params(0)).is_err());
    let mut p = params(100);
    p.version = Version::V2;
    p.advert_interval = AdvertInterval::from_centis(10).unwrap();
    assert!(Machine::new(p).is_err());
}

// ---- §6.4.1 Initialize ----

#[test]
fn startup_owner_becomes_master_at_once() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(255)).unwrap();
    assert_eq!(m.handle(Event::Startup, t0), BECOME_MASTER_255);
    assert_eq!(m.state(), State::Master);
    assert_eq!(
        m.rfc_timer(),
        Some(t0 + ms(1000)),
        "Adver_Timer = Advertisement_Interval"
    );
    assert_eq!(m.master(), Some(US));
}

#[test]
fn startup_non_owner_waits_a_full_master_down_interval_even_with_preempt() {
    let (mut m, t0) = backup(params(254));
    let mdi = m.master_down_interval();
    assert_eq!(m.rfc_timer(), Some(t0 + mdi));
    // An early wake-up does not claim (the start-up announcement, due
    // since 2.5 intervals, is all it sends).
    assert_eq!(
        m.handle(Event::Timer, t0 + mdi - Duration::from_nanos(1)),
        [send(254)]
    );
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.handle(Event::Timer, t0 + mdi), become_master(254));
}

#[test]
fn initialize_ignores_adverts_and_timers() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100)).unwrap();
    assert_eq!(m.handle(adv(HIGHER_IP, 200), t0), []);
    assert_eq!(m.handle(Event::Timer, t0), []);
    assert_eq!(m.handle(Event::Shutdown, t0), []);
    assert_eq!(m.state(), State::Initialize);
    assert_eq!(m.rfc_timer(), None);
}

// ---- §6.4.2 Backup ----

#[test]
fn backup_priority_zero_advert_arms_skew_time() {
    let (mut m, t0) = backup(params(100));
    let t = t0 + ms(500);
    assert_eq!(m.handle(adv(HIGHER_IP, 0), t), []);
    assert_eq!(m.rfc_timer(), Some(t + m.skew_time()));
    assert_eq!(
        m.handle(Event::Timer, t + m.skew_time()),
        become_master(100)
    );
}

#[test]
fn backup_higher_or_equal_advert_resets_master_down_timer() {
    for prio in [100u8, 101, 255] {
        let (mut m, t0) = backup(params(100));
        // A master advertises every interval; each advert re-arms.
        assert_eq!(m.handle(adv(LOWER_IP, prio), t0 + ms(1000)), []);
        let t = t0 + ms(2000);
        assert_eq!(m.handle(adv(LOWER_IP, prio), t), []);
        assert_eq!(
            m.rfc_timer(),
            Some(t + m.master_down_interval()),
            "prio {prio}"
        );
        assert_eq!(m.master(), Some(LOWER_IP));
    }
}

#[test]
fn backup_learns_master_adver_interval_in_v3() {
    let (mut m, t0) = backup(params(100));
    let half = AdvertInterval::from_centis(50).unwrap();
    let ev = Event::AdvertReceived {
        src: HIGHER_IP,
        priority: Priority(150),
        max_advert_int: half,
    };
    assert_eq!(m.handle(ev, t0), []);
    // MDI = 3 × 500 ms + 156/256 × 500 ms.
    assert_eq!(
        m.master_down_interval(),
        Duration::from_nanos(1_804_687_500)
    );
    assert_eq!(
        m.rfc_timer(),
        Some(t0 + Duration::from_nanos(1_804_687_500))
    );
}

#[test]
fn backup_v2_drops_an_advert_with_another_interval() {
    let mut p = params(100);
    p.version = Version::V2;
    let (mut m, t0) = backup(p);
    let before = m.rfc_timer();
    let ev = Event::AdvertReceived {
        src: HIGHER_IP,
        priority: Priority(150),
        max_advert_int: AdvertInterval::from_secs(2).unwrap(),
    };
    assert_eq!(
        m.handle(ev, t0 + ms(10)),
        [Action::Discarded(Discard::IntervalMismatch)]
    );
    assert_eq!(m.rfc_timer(), before, "timer not reset by a dropped advert");
    assert_eq!(Discard::IntervalMismatch.as_str(), "interval_mismatch");
}

#[test]
fn backup_nopreempt_resets_the_timer_on_a_lower_priority_master() {
    let mut p = params(200);
    p.preempt = false;
    let (mut m, t0) = backup(p);
    // A lower master, advertising every interval: each advert re-arms.
    m.handle(adv(HIGHER_IP, 100), t0 + ms(500));
    let t = t0 + ms(1500);
    m.handle(adv(HIGHER_IP, 100), t);
    assert_eq!(m.rfc_timer(), Some(t + m.master_down_interval()));
    // Keeps resetting while the lower master advertises: never takes over.
    for k in 1..=10 {
        assert_eq!(m.handle(adv(HIGHER_IP, 100), t + ms(1000 * k)), []);
    }
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn backup_preempt_ignores_a_lower_priority_master_and_takes_over() {
    let (mut m, t0) = backup(params(200));
    let deadline = m.rfc_timer().unwrap();
    for k in 0..3 {
        assert_eq!(m.handle(adv(HIGHER_IP, 100), t0 + ms(1000 * k)), []);
    }
    assert_eq!(
        m.rfc_timer(),
        Some(deadline),
        "lower adverts do not reset the timer"
    );
    assert_eq!(m.handle(Event::Timer, deadline), become_master(200));
}

#[test]
fn address_owner_preempts_even_with_nopreempt() {
    // §6.1: "the router that owns the address(es) always preempts".
    let mut p = params(255);
    p.preempt = false;
    p.ready = false; // hold it in Backup so it is there to hear the lower master
    let t0 = Instant::now();
    let mut m = Machine::new(p).unwrap();
    assert_eq!(
        m.handle(Event::Startup, t0),
        [Action::Notify(State::Backup)]
    );
    // Not ready, an owner owes its claim (no timer); a lower master's
    // advert does not cancel it, nopreempt or not, so Ready claims at once.
    assert_eq!(m.rfc_timer(), None);
    assert_eq!(m.handle(adv(HIGHER_IP, 100), t0 + ms(100)), []);
    assert_eq!(m.handle(Event::Ready, t0 + ms(200)), BECOME_MASTER_255);
}

#[test]
fn preempt_delay_holds_off_then_takes_over_when_it_ends() {
    let mut p = params(200);
    p.preempt_delay = ms(5500);
    let (mut m, t0) = backup(p);
    let mdi = m.master_down_interval();
    // Lower master advertising every second: within the delay it is obeyed.
    for k in 0..5 {
        let t = t0 + ms(1000 * k);
        assert_eq!(m.handle(adv(HIGHER_IP, 100), t), []);
        assert_eq!(m.rfc_timer(), Some((t + mdi).min(t0 + ms(5500))));
    }
    // The advert at 4 s re-armed the timer to the end of the delay, not 4 s + MDI.
    assert_eq!(m.rfc_timer(), Some(t0 + ms(5500)));
    m.handle(adv(HIGHER_IP, 100), t0 + ms(5000));
    assert_eq!(m.handle(Event::Timer, t0 + ms(5500)), become_master(200));
}

#[test]
fn preempt_delay_does_not_delay_taking_over_from_a_dead_master() {
    let mut p = params(100);
    p.preempt_delay = ms(60_000);
    let (mut m, t0) = backup(p);
    m.handle(adv(HIGHER_IP, 150), t0);
    let t = m.rfc_timer().unwrap();
    assert_eq!(t, t0 + m.master_down_interval());
    assert_eq!(m.handle(Event::Timer, t), become_master(100));
}

#[test]
fn shutdown_in_backup_goes_to_initialize_quietly() {
    let (mut m, t0) = backup(params(100));
    assert_eq!(
        m.handle(Event::Shutdown, t0),
        [Action::Notify(State::Initialize)]
    );
    assert_eq!(m.rfc_timer(), None);
}

// ---- §6.4.3 Master ----

#[test]
fn master_sends_an_advert_every_interval() {
    let (mut m, t) = master(params(100));
    for k in 1..=5u32 {
        let at = t + ms(1000) * k;
        assert_eq!(m.rfc_timer(), Some(at));
        assert_eq!(m.handle(Event::Timer, at), [send(100)]);
    }
}

#[test]
fn master_answers_a_priority_zero_advert_at_once() {
    let (mut m, t) = master(params(100));
    let at = t + ms(300);
    assert_eq!(m.handle(adv(HIGHER_IP, 0), at), [send(100)]);
    assert_eq!(m.rfc_timer(), Some(at + ms(1000)), "Adver_Timer reset");
}

#[test]
fn master_yields_to_a_higher_priority() {
    let (mut m, t) = master(params(100));
    let at = t + ms(300);
    let ev = Event::AdvertReceived {
        src: LOWER_IP,
        priority: Priority(101),
        max_advert_int: AdvertInterval::from_centis(20).unwrap(),
    };
    assert_eq!(
        m.handle(ev, at),
        [Action::RemoveVips, Action::Notify(State::Backup)]
    );
    // Master_Adver_Interval learned (200 ms), Master_Down_Timer armed.
    assert_eq!(m.master_down_interval(), ms(600) + ms(200) * 156 / 256);
    assert_eq!(m.rfc_timer(), Some(at + m.master_down_interval()));
    assert_eq!(m.master(), Some(LOWER_IP));
}

#[test]
fn equal_priority_is_broken_by_the_higher_primary_address() {
    let (mut m, t) = master(params(100));
    // Lower address, same priority: we win, it is another master.
    let out = m.handle(adv(LOWER_IP, 100), t + ms(10));
    assert_eq!(
        out[0],
        Action::OtherMasterSeen {
            src: LOWER_IP,
            priority: Priority(100),
            new_contest: true,
        }
    );
    assert_eq!(m.state(), State::Master);
    // Higher address, same priority: we yield.
    assert_eq!(
        m.handle(adv(HIGHER_IP, 100), t + ms(20)),
        [Action::RemoveVips, Action::Notify(State::Backup)]
    );
    // Compared as unsigned: 200.0.0.1 > 198.18.2.11 even though the i32 would be negative.
    let (mut m, t) = master(params(100));
    m.handle(adv(Ipv4Addr::new(200, 0, 0, 1), 100), t);
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn master_hearing_a_lower_master_alarms_asserts_and_regarps_once_per_contest() {
    let (mut m, t) = master(params(150));
    let other = |new_contest| Action::OtherMasterSeen {
        src: HIGHER_IP,
        priority: Priority(100),
        new_contest,
    };
    // First sighting: alarm, advert at once, GARP again (issue 4 item 5).
    assert_eq!(
        m.handle(adv(HIGHER_IP, 100), t + ms(5)),
        [other(true), send(150), Action::SendGarp]
    );
    assert_eq!(m.rfc_timer(), Some(t + ms(1005)));
    // Same contest, within one interval of the answer: counted, not
    // answered again (issue 11 item 5), no GARP storm, timer untouched.
    assert_eq!(m.handle(adv(HIGHER_IP, 100), t + ms(500)), [other(false)]);
    assert_eq!(m.rfc_timer(), Some(t + ms(1005)));
    // The regular advert goes out on time; an interval after the last
    // answer, the next sighting is answered again.
    assert_eq!(m.handle(Event::Timer, t + ms(1005)), [send(150)]);
    assert_eq!(
        m.handle(adv(HIGHER_IP, 100), t + ms(1006)),
        [other(false), send(150)]
    );
    // Quiet for longer than MDI, then a new contest: GARP again.
    let later = t + ms(1006) + m.master_down_interval() + ms(1);
    let out = m.handle(adv(HIGHER_IP, 100), later);
    assert!(
        out.ends_with(&[other(true), send(150), Action::SendGarp]),
        "{out:?}"
    );
}

#[test]
fn a_flood_of_lower_or_resigning_adverts_gets_one_answer_per_interval() {
    // Forged adverts every millisecond for 10 s: without the limit the master
    // would send 10,000 answers; with it, one per interval on top of its own
    // 10 regular adverts.
    let (mut m, t) = master(params(150));
    let mut sent = 0;
    for i in 1..=10_000u64 {
        let prio = if i % 2 == 0 { 0 } else { 100 };
        let out = m.handle(adv(LOWER_IP, prio), t + ms(i));
        sent += out
            .iter()
            .filter(|a| matches!(a, Action::SendAdvert { .. }))
            .count();
        if let Some(d) = m.next_deadline()
            && d <= t + ms(i)
        {
            unreachable!("handle leaves no overdue deadline");
        }
    }
    assert!(
        sent <= 20,
        "{sent} adverts for 10 s of flood at a 1 s interval"
    );
    assert!(sent >= 10, "still advertises every interval: {sent}");
    assert_eq!(m.state(), State::Master);
}

#[test]
fn shutdown_in_master_resigns_with_priority_zero_and_releases_vips() {
    let (mut m, t) = master(params(100));
    assert_eq!(
        m.handle(Event::Shutdown, t + ms(1)),
        [
            send(0),
            Action::RemoveVips,
            Action::Notify(State::Initialize)
        ]
    );
    assert_eq!(m.rfc_timer(), None);
    assert_eq!(m.master(), None);
}

#[test]
fn own_looped_back_advert_is_ignored() {
    let (mut m, t) = master(params(100));
    assert_eq!(m.handle(adv(US, 100), t + ms(1)), []);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn overdue_timer_is_handled_before_the_event() {
    let (mut m, t0) = backup(params(100));
    let late = m.rfc_timer().unwrap() + ms(1);
    // A packet processed after the deadline: the timeout happened first.
    let mut want = become_master(100);
    want.extend([Action::RemoveVips, Action::Notify(State::Backup)]);
    assert_eq!(m.handle(adv(HIGHER_IP, 200), late), want);
    let _ = t0;
}

// ---- tracking ----

#[test]
fn priority_change_in_master_is_advertised_at_once_and_clamped() {
    let (mut m, t) = master(params(150));
    assert_eq!(
        m.handle(Event::PriorityChanged(Priority(90)), t + ms(1)),
        [send(90)]
    );
    assert_eq!(m.rfc_timer(), Some(t + ms(1001)));
    // 0 would mean "resigning" on the wire: clamped to 1.
    assert_eq!(
        m.handle(Event::PriorityChanged(Priority(0)), t + ms(2)),
        [send(1)]
    );
    // A non-owner never reaches 255.
    assert_eq!(
        m.handle(Event::PriorityChanged(Priority(255)), t + ms(3)),
        [send(254)]
    );
    assert_eq!(
        m.handle(Event::PriorityChanged(Priority(254)), t + ms(4)),
        []
    );
    assert_eq!(m.priority(), Priority(254));
}

#[test]
fn lowered_master_loses_to_a_preempting_backup() {
    // Master tracked down from 150 to 90 hears the 100 backup take over.
    let (mut m, t) = master(params(150));
    m.handle(Event::PriorityChanged(Priority(90)), t);
    assert_eq!(
        m.handle(adv(HIGHER_IP, 100), t + ms(100)),
        [Action::RemoveVips, Action::Notify(State::Backup)]
    );
}

#[test]
fn priority_change_in_backup_changes_the_skew_of_the_next_arming() {
    let (mut m, t0) = backup(params(100));
    let before = m.skew_time();
    assert_eq!(m.handle(Event::PriorityChanged(Priority(200)), t0), []);
    assert!(m.skew_time() < before);
    m.handle(adv(HIGHER_IP, 250), t0 + ms(10));
    assert_eq!(
        m.rfc_timer(),
        Some(t0 + ms(10) + ms(3000) + ms(1000) * 56 / 256)
    );
}

// ---- Fault (issue 4 item 7) ----

#[test]
fn link_down_in_master_releases_vips_at_once_and_goes_silent() {
    let (mut m, t) = master(params(100));
    assert_eq!(
        m.handle(Event::LinkDown, t + ms(1)),
        [Action::RemoveVips, Action::Notify(State::Fault)]
    );
    assert_eq!(m.rfc_timer(), None, "no adverts in Fault");
    assert_eq!(m.handle(adv(HIGHER_IP, 200), t + ms(2)), []);
    assert_eq!(m.handle(Event::Timer, t + ms(5000)), []);
    // Link up: Backup for a full Master_Down_Interval, as at start-up.
    let up = t + ms(6000);
    assert_eq!(m.handle(Event::LinkUp, up), [Action::Notify(State::Backup)]);
    assert_eq!(m.rfc_timer(), Some(up + m.master_down_interval()));
}

#[test]
fn link_down_in_backup_is_fault_and_owner_link_up_is_master() {
    let mut p = params(255);
    p.ready = false;
    let t0 = Instant::now();
    let mut m = Machine::new(p).unwrap();
    m.handle(Event::Startup, t0);
    assert_eq!(
        m.handle(Event::LinkDown, t0 + ms(1)),
        [Action::Notify(State::Fault)]
    );
    assert_eq!(
        m.handle(Event::Ready, t0 + ms(2)),
        [],
        "ready, but the link is down"
    );
    assert_eq!(m.handle(Event::LinkUp, t0 + ms(3)), BECOME_MASTER_255);
}

#[test]
fn link_down_before_startup_starts_in_fault() {
    let t0 = Instant::now();
    let mut m = Machine::new(params(100)).unwrap();
    assert_eq!(m.handle(Event::LinkDown, t0), []);
    assert_eq!(m.handle(Event::Startup, t0), [Action::Notify(State::Fault)]);
    assert_eq!(
        m.handle(Event::Shutdown, t0),
        [Action::Notify(State::Initialize)]
    );
}

// ---- readiness (issue 4 item 7) ----

#[test]
fn owner_not_ready_waits_in_backup_then_claims_on_ready() {
    let mut p = params(255);
    p.ready = false;
    let t0 = Instant::now();
    let mut m = Machine::new(p).unwrap();
    assert_eq!(
        m.handle(Event::Startup, t0),
        [Action::Notify(State::Backup)]
    );
    assert_eq!(m.handle(Event::Ready, t0 + ms(150)), BECOME_MASTER_255);
}

#[test]
fn not_ready_backup_never_claims_until_ready_then_claims_at_once() {
    let mut p = params(100);
    p.ready = false;
    let t0 = Instant::now();
    let mut m = Machine::new(p).unwrap();
    m.handle(Event::Startup, t0);
    let t = m.rfc_timer().unwrap();
    assert_eq!(m.handle(Event::Timer, t), []);
    assert_eq!((m.state(), m.rfc_timer()), (State::Backup, None));
    assert_eq!(m.handle(Event::Ready, t + ms(500)), become_master(100));
}

#[test]
fn not_ready_backup_that_heard_a_master_stays_backup_on_ready() {
    let mut p = params(100);
    p.ready = false;
    let t0 = Instant::now();
    let mut m = Machine::new(p).unwrap();
    m.handle(Event::Startup, t0);
    let t = m.rfc_timer().unwrap();
    m.handle(Event::Timer, t);
    // A master shows up after our timer expired: the pending claim is cancelled.
    m.handle(adv(HIGHER_IP, 150), t + ms(10));
    assert_eq!(m.handle(Event::Ready, t + ms(20)), []);
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.rfc_timer(), Some(t + ms(10) + m.master_down_interval()));
}

#[test]
fn state_names_for_labels_and_keepalived_notify() {
    let all = [
        State::Initialize,
        State::Backup,
        State::Master,
        State::Fault,
    ];
    let ours: Vec<_> = all.iter().map(|s| s.as_str()).collect();
    let theirs: Vec<_> = all.iter().map(|s| s.keepalived_name()).collect();
    assert_eq!(ours, ["initialize", "backup", "master", "fault"]);
    assert_eq!(theirs, ["STOP", "BACKUP", "MASTER", "FAULT"]);
}
