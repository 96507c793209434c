//! The rules of the machine, one test each, on simulated time: `t0` plus
//! durations, no sleeping.

use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn params(rise: u32, fall: u32, initial: InitialState) -> Params {
    Params {
        interval: ms(1000),
        fastinter: Some(ms(200)),
        downinter: Some(ms(5000)),
        rise,
        fall,
        jitter: Jitter::Fraction(0.0),
        initial,
        ..Params::default()
    }
}

#[test]
fn defaults_are_valid_and_haproxy_like() {
    let p = Params::default();
    p.validate().unwrap();
    assert_eq!((p.interval, p.rise, p.fall), (ms(2000), 2, 3));
    assert_eq!(p.initial, InitialState::Up);
}

#[test]
fn validate_names_the_field() {
    let p = Params {
        fall: 0,
        ..Params::default()
    };
    assert_eq!(p.validate(), Err(ParamsError::ZeroCount { field: "fall" }));
    let p = Params {
        fastinter: Some(Duration::ZERO),
        ..Params::default()
    };
    assert!(
        p.validate()
            .unwrap_err()
            .to_string()
            .starts_with("fastinter")
    );
    let p = Params {
        jitter: Jitter::Fraction(0.7),
        ..Params::default()
    };
    assert_eq!(p.validate(), Err(ParamsError::JitterFraction(0.7)));
}

#[test]
fn fall_needs_exactly_fall_consecutive_failures() {
    let t0 = Instant::now();
    let mut m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
    assert_eq!(m.on_probe(false, "connection refused", t0), None);
    assert_eq!(m.on_probe(false, "connection refused", t0), None);
    assert!(m.is_up());
    let tr = m.on_probe(false, "HTTP 503", t0 + ms(10)).unwrap();
    assert_eq!((tr.from, tr.to), (State::Up, State::Down));
    assert_eq!(tr.reason, "HTTP 503");
    assert_eq!(tr.cause, Cause::Probe { consecutive: 3 });
    assert_eq!(m.since(), t0 + ms(10));
    assert_eq!(m.reason(), "HTTP 503");
}

#[test]
fn rise_needs_exactly_rise_consecutive_successes() {
    let t0 = Instant::now();
    let mut m = HealthMachine::new(params(2, 3, InitialState::Down), t0);
    assert_eq!(m.on_probe(true, "HTTP 200", t0), None);
    assert!(!m.is_up());
    let tr = m.on_probe(true, "HTTP 200", t0).unwrap();
    assert_eq!((tr.from, tr.to), (State::Down, State::Up));
    assert_eq!(tr.cause, Cause::Probe { consecutive: 2 });
}

#[test]
fn an_agreeing_result_resets_the_streak() {
    let t0 = Instant::now();
    let mut m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
    for ok in [false, false, true, false, false, true, false, false] {
        assert_eq!(m.on_probe(ok, "x", t0), None);
    }
    assert!(m.is_up());
    assert_eq!(m.streak(), 2);
}

/// Probe times as the driver would pick them without jitter: the first at
/// `first_delay`, each next one `next_delay` after the previous.
fn next_probe(m: &HealthMachine, last: Option<Instant>, t0: Instant) -> Instant {
    match last {
        None => t0 + m.first_delay(0.5),
        Some(t) => t + m.next_delay(0.5),
    }
}

#[test]
fn a_backend_up_at_start_survives_a_failed_first_probe() {
    // It binds a moment after the balancer: its first probe is refused, the
    // next one connects. With fall = 3 it never leaves UP.
    let t0 = Instant::now();
    let mut m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
    assert!(m.is_up() && !m.transitioning());
    assert_eq!((m.reason(), m.weight_permille(t0)), ("initial state", 1000));
    let t = next_probe(&m, None, t0);
    assert_eq!(m.on_probe(false, "connection refused", t), None);
    assert!(m.is_up(), "one failure of fall = 3");
    assert_eq!(m.weight_permille(t), 1000);
    assert_eq!(m.base_delay(), ms(200), "a streak has begun: fastinter");
    let t = next_probe(&m, Some(t), t0);
    assert_eq!(m.on_probe(true, "connected", t), None);
    assert!(m.is_up() && !m.transitioning());
    assert_eq!(m.since(), t0, "never left its initial state");
    // The success reset the streak: two more failures are not three.
    let mut t = t;
    for _ in 0..2 {
        t = next_probe(&m, Some(t), t0);
        assert_eq!(m.on_probe(false, "connection refused", t), None);
    }
    assert!(m.is_up());
}

#[test]
fn fall_consecutive_failures_at_start_mark_it_down() {
    let t0 = Instant::now();
    let mut m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
    let mut last = None;
    let mut transitions = Vec::new();
    for _ in 0..3 {
        let t = next_probe(&m, last, t0);
        transitions.extend(m.on_probe(false, "connection refused", t).map(|tr| (t, tr)));
        last = Some(t);
    }
    let [(at, tr)] = &transitions[..] else {
        panic!("one transition expected: {transitions:?}")
    };
    assert_eq!((tr.from, tr.to), (State::Up, State::Down));
    assert_eq!(tr.cause, Cause::Probe { consecutive: 3 });
    // The first probe at once (no jitter), then two fastinter steps.
    assert_eq!(*at, t0 + ms(400));
    assert_eq!((m.since(), m.reason()), (*at, "connection refused"));
}

#[test]
fn alpha_starts_down_and_needs_rise_successes() {
    let t0 = Instant::now();
    let p = Params {
        slow_start: ms(10_000),
        ..params(3, 3, InitialState::Down)
    };
    let mut m = HealthMachine::new(p, t0);
    assert!(!m.is_up() && !m.transitioning());
    assert_eq!((m.reason(), m.weight_permille(t0)), ("initial state", 0));
    assert_eq!(m.base_delay(), ms(5000), "steadily down: downinter");
    let mut last = None;
    // ok, ok, fail: the failure resets the streak; then three in a row.
    for ok in [true, true, false, true, true] {
        let t = next_probe(&m, last, t0);
        assert_eq!(m.on_probe(ok, "x", t), None, "still down");
        assert!(!m.is_up());
        last = Some(t);
    }
    let t = next_probe(&m, last, t0);
    let tr = m.on_probe(true, "connected", t).unwrap();
    assert_eq!((tr.from, tr.to), (State::Down, State::Up));
    assert_eq!(tr.cause, Cause::Probe { consecutive: 3 });
    // Leaving the alpha state is a DOWN -> UP like any other: slow start
    // applies (as after HAProxy's `init-state fully-down`).
    assert_eq!(m.weight_permille(t), 1);
}

#[test]
fn fastinter_while_transitioning_downinter_while_down() {
    let t0 = Instant::now();
    let mut m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
    assert_eq!(m.base_delay(), ms(1000));
    m.on_probe(false, "x", t0);
    assert_eq!(m.base_delay(), ms(200), "one failure in: fastinter");
    m.on_probe(false, "x", t0);
    assert_eq!(m.base_delay(), ms(200));
    m.on_probe(false, "x", t0);
    assert_eq!(m.base_delay(), ms(5000), "steadily down: downinter");
    m.on_probe(true, "x", t0);
    assert_eq!(m.base_delay(), ms(200), "rising: fastinter");
    m.on_probe(true, "x", t0);
    assert_eq!(m.base_delay(), ms(1000), "up again: interval");
    // Neither initial state is a transition in progress.
    let m = HealthMachine::new(params(2, 3, InitialState::Down), t0);
    assert_eq!(m.base_delay(), ms(5000));
}

#[test]
fn unset_fastinter_and_downinter_default_to_interval() {
    let t0 = Instant::now();
    let p = Params {
        jitter: Jitter::Fraction(0.0),
        ..Params::default()
    };
    let mut m = HealthMachine::new(p, t0);
    assert_eq!(m.base_delay(), ms(2000));
    m.on_probe(false, "x", t0);
    assert_eq!(m.base_delay(), ms(2000));
}

#[test]
fn jitter_zero_and_midpoint_give_the_base() {
    let t0 = Instant::now();
    let m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
    assert_eq!(m.next_delay(0.9), ms(1000));
    assert_eq!(m.first_delay(0.9), Duration::ZERO);
    let p = Params {
        jitter: Jitter::Fraction(0.1),
        ..params(2, 3, InitialState::Up)
    };
    let m = HealthMachine::new(p, t0);
    assert_eq!(m.next_delay(0.5), ms(1000));
    assert_eq!(m.next_delay(0.0), ms(900));
    assert_eq!(m.next_delay(1.0), ms(1100));
    assert_eq!(m.first_delay(1.0), ms(100));
}

#[test]
fn passive_failures_mark_down_at_once_and_only_probes_bring_back() {
    let t0 = Instant::now();
    let p = Params {
        passive_fall: 3,
        ..params(2, 3, InitialState::Up)
    };
    let mut m = HealthMachine::new(p, t0);
    assert_eq!(m.on_passive_failures(2, t0), None);
    let tr = m.on_passive_failures(3, t0).unwrap();
    assert_eq!(tr.to, State::Down);
    assert_eq!(tr.reason, "3 consecutive connect failures (passive)");
    assert_eq!(tr.cause, Cause::Passive { consecutive: 3 });
    // While DOWN, passive reports change nothing; rise successes do.
    assert_eq!(m.on_passive_failures(10, t0), None);
    assert_eq!(m.on_probe(true, "connected", t0), None);
    assert!(m.on_probe(true, "connected", t0).is_some());
}

#[test]
fn passive_fall_zero_disables() {
    let t0 = Instant::now();
    let p = Params {
        passive_fall: 0,
        ..params(2, 3, InitialState::Up)
    };
    let mut m = HealthMachine::new(p, t0);
    assert_eq!(m.on_passive_failures(1000, t0), None);
    assert!(m.is_up());
}

#[test]
fn slow_start_ramps_linearly_after_down_to_up_only() {
    let t0 = Instant::now();
    let p = Params {
        slow_start: ms(10_000),
        ..params(1, 1, InitialState::Up)
    };
    let mut m = HealthMachine::new(p, t0);
    assert_eq!(m.weight_permille(t0), 1000, "no ramp at start (HAProxy)");
    assert_eq!(m.ramp_end(t0), None);
    m.on_probe(false, "x", t0);
    assert_eq!(m.weight_permille(t0), 0);
    let up = t0 + ms(1000);
    m.on_probe(true, "x", up);
    assert_eq!(m.weight_permille(up), 1, "never 0 while up");
    assert_eq!(m.weight_permille(up + ms(2500)), 250);
    assert_eq!(m.weight_permille(up + ms(5000)), 500);
    assert_eq!(m.weight_permille(up + ms(5001)), 501, "rounded up");
    assert_eq!(m.weight_permille(up + ms(9999)), 1000);
    assert_eq!(m.weight_permille(up + ms(10_000)), 1000);
    assert_eq!(m.weight_permille(up + ms(60_000)), 1000);
    assert!((m.weight_factor(up + ms(7500)) - 0.75).abs() < 1e-9);
    assert_eq!(m.ramp_end(up + ms(1)), Some(up + ms(10_000)));
    assert_eq!(m.ramp_end(up + ms(10_000)), None);
    // Going down mid-ramp: 0, and a later rise restarts the ramp.
    m.on_probe(false, "x", up + ms(3000));
    assert_eq!(m.weight_permille(up + ms(3000)), 0);
    let up2 = up + ms(4000);
    m.on_probe(true, "x", up2);
    assert_eq!(m.weight_permille(up2 + ms(1000)), 100);
}

#[test]
fn alternating_results_never_change_state() {
    let t0 = Instant::now();
    let mut m = HealthMachine::new(params(2, 2, InitialState::Up), t0);
    for i in 0..1000 {
        assert_eq!(m.on_probe(i % 2 == 0, "x", t0), None);
    }
    let mut m = HealthMachine::new(params(2, 2, InitialState::Down), t0);
    for i in 0..1000 {
        assert_eq!(m.on_probe(i % 2 == 0, "x", t0), None);
    }
}

proptest! {
    #[test]
    fn jitter_stays_within_bounds(
        interval_ms in 1u64..100_000,
        frac in 0.0f64..=0.5,
        u in 0.0f64..1.0,
    ) {
        let p = Params {
            interval: ms(interval_ms),
            jitter: Jitter::Fraction(frac),
            initial: InitialState::Up,
            ..Params::default()
        };
        let m = HealthMachine::new(p, Instant::now());
        let base = ms(interval_ms);
        let spread = base.mul_f64(frac);
        let d = m.next_delay(u);
        prop_assert!(d >= base - spread && d <= base + spread, "{d:?} vs {base:?}±{spread:?}");
        prop_assert!(d >= base / 2);
        prop_assert!(m.first_delay(u) <= spread);
    }

    #[test]
    fn jitter_max_is_capped_at_half_the_base(max_ms in 0u64..10_000, u in 0.0f64..1.0) {
        let p = Params {
            interval: ms(1000),
            jitter: Jitter::Max(ms(max_ms)),
            initial: InitialState::Up,
            ..Params::default()
        };
        let d = HealthMachine::new(p, Instant::now()).next_delay(u);
        let spread = ms(max_ms.min(500));
        prop_assert!(d >= ms(1000) - spread && d <= ms(1000) + spread);
    }

    /// A transition to DOWN happens only on the `fall`-th failure of an
    /// unbroken run, to UP only on the `rise`-th success, whatever the
    /// sequence and from either initial state: flapping cannot move the
    /// state faster than rise/fall allow, and no first result decides alone.
    #[test]
    fn transitions_only_after_full_runs(
        rise in 1u32..5,
        fall in 1u32..5,
        alpha in any::<bool>(),
        results in proptest::collection::vec(any::<bool>(), 0..200),
    ) {
        let t0 = Instant::now();
        let initial = if alpha { InitialState::Down } else { InitialState::Up };
        let mut m = HealthMachine::new(params(rise, fall, initial), t0);
        let mut run_ok = 0u32;
        let mut run_fail = 0u32;
        for (i, &ok) in results.iter().enumerate() {
            if ok { run_ok += 1; run_fail = 0 } else { run_fail += 1; run_ok = 0 }
            let before = m.state();
            let tr = m.on_probe(ok, "x", t0 + ms(i as u64));
            match (before, tr) {
                (State::Up, Some(tr)) => {
                    prop_assert_eq!(tr.to, State::Down);
                    prop_assert_eq!(run_fail, fall);
                    run_fail = 0;
                }
                (State::Down, Some(tr)) => {
                    prop_assert_eq!(tr.to, State::Up);
                    prop_assert_eq!(run_ok, rise);
                    run_ok = 0;
                }
                (State::Up, None) => prop_assert!(run_fail < fall),
                (State::Down, None) => prop_assert!(run_ok < rise),
            }
        }
    }
}
