//! The pure core: one backend's up/down state, sans I/O, on caller-supplied time.
//!
//! The rules follow HAProxy's checker, which users of a load balancer already know:
//!
//! - A backend is either [`State::Up`] or [`State::Down`]. An UP backend goes
//!   DOWN after `fall` *consecutive* failed probes; a DOWN one goes UP after
//!   `rise` consecutive successful probes. A result that agrees with the current
//!   state resets the streak, so a flapping backend (ok, fail, ok, fail, …)
//!   never changes state when `rise` and `fall` are at least 2.
//! - While a streak toward the other state is in progress (the backend is "in
//!   transition"), probes run every `fastinter`; while steadily DOWN, every
//!   `downinter`; otherwise every `interval`. Both default to `interval`, as in
//!   HAProxy. Every delay is spread by `jitter` so the probes of many backends do
//!   not line up (HAProxy's `spread-checks`).
//! - Passive detection: the data plane reports refused or timed-out connects;
//!   `passive_fall` consecutive ones mark an UP backend DOWN at once. Only
//!   probes bring it back, with the usual `rise`.
//! - Slow start: after a DOWN→UP transition the weight factor ramps linearly
//!   from 0 to 1 over `slow_start`. As in HAProxy, it does not apply to the
//!   initial state: a balancer that (re)starts must not throttle healthy
//!   backends that were serving a moment ago.
//! - Initial state ([`InitialState`], HAProxy's `init-state`): by default a
//!   backend starts UP *provisionally*: it takes traffic at once, but the first
//!   probe result decides alone (one failure marks it DOWN; one success makes it
//!   fully UP, after which `fall` failures are needed). A starting balancer thus
//!   neither refuses everything nor keeps sending to a dead backend for more than
//!   one probe (and passive detection usually catches it before that).
//!
//! Time is an argument (`now: Instant`) and randomness too (`u` in `[0, 1)`), so
//! every rule is unit-tested with simulated time.

use std::time::{Duration, Instant};

use thiserror::Error;

/// The verdict the balancer acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Up,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a backend starts (HAProxy 3.1 `init-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialState {
    /// UP, but the first probe result decides alone (HAProxy's default `up`).
    #[default]
    Up,
    /// UP, and `fall` consecutive failures are needed to go DOWN.
    FullyUp,
    /// DOWN, but the first successful probe brings it UP.
    Down,
    /// DOWN, and `rise` consecutive successes are needed to go UP.
    FullyDown,
}

/// Random spread applied to every probe delay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// Each delay is drawn uniformly in `base × (1 ± f)`; `f` in `[0, 0.5]`
    /// (HAProxy's `spread-checks` is the same idea, 0–50 %).
    Fraction(f64),
    /// Each delay is drawn uniformly in `base ± d`, `d` capped at `base / 2`.
    Max(Duration),
}

impl Jitter {
    /// The half-width of the spread around `base`. Never more than `base / 2`,
    /// so a delay never collapses to zero.
    pub fn spread(self, base: Duration) -> Duration {
        let half = base / 2;
        match self {
            Jitter::Fraction(f) => base.mul_f64(f.clamp(0.0, 0.5)),
            Jitter::Max(d) => d.min(half),
        }
    }
}

/// Tunables of one backend's checks. Defaults are HAProxy's where it has one
/// (see each field); [`Params::validate`] rejects nonsense once, at config time.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Delay between probes in steady state. Default 2 s (HAProxy `inter`).
    pub interval: Duration,
    /// Delay between probes while a transition is in progress. `None`: `interval`
    /// (HAProxy's default for `fastinter`).
    pub fastinter: Option<Duration>,
    /// Delay between probes while steadily DOWN. `None`: `interval` (HAProxy's
    /// default for `downinter`).
    pub downinter: Option<Duration>,
    /// Bound on one probe (connect, request and response, or the command's run
    /// time). Default 1 s: a dead backend is then out within
    /// `fall × interval + timeout` = 7 s with the other defaults.
    pub timeout: Duration,
    /// Consecutive successes for DOWN → UP. Default 2 (HAProxy).
    pub rise: u32,
    /// Consecutive failures for UP → DOWN. Default 3 (HAProxy).
    pub fall: u32,
    /// Spread of each probe delay. Default 5 % (HAProxy recommends 2–5 % for
    /// `spread-checks`).
    pub jitter: Jitter,
    /// Consecutive failed connects reported by the data plane that mark the
    /// backend DOWN at once; 0 disables passive detection. Default 3 (Envoy's
    /// `consecutive_gateway_failure` defaults to 5, HAProxy's `error-limit` to 10;
    /// the data plane retries another backend on a failed connect, so acting
    /// early costs nothing and saves every following client a retry).
    pub passive_fall: u32,
    /// Length of the weight ramp after DOWN → UP; zero disables. Default 0
    /// (HAProxy `slowstart` is off unless set).
    pub slow_start: Duration,
    /// Where the backend starts. Default [`InitialState::Up`] (HAProxy).
    pub initial: InitialState,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            interval: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            jitter: Jitter::Fraction(0.05),
            passive_fall: 3,
            slow_start: Duration::ZERO,
            initial: InitialState::Up,
        }
    }
}

/// A rejected [`Params`] value, naming the field.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ParamsError {
    #[error("{field} must be at least 1ms, got {value:?}")]
    TooShort {
        field: &'static str,
        value: Duration,
    },
    #[error("{field} must be at least 1, got 0")]
    ZeroCount { field: &'static str },
    #[error("jitter fraction must be within 0..=0.5, got {0}")]
    JitterFraction(f64),
}

impl Params {
    /// Checks every field; the machine relies on what this accepts.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let min = Duration::from_millis(1);
        let durations = [
            ("interval", Some(self.interval)),
            ("fastinter", self.fastinter),
            ("downinter", self.downinter),
            ("timeout", Some(self.timeout)),
        ];
        for (field, value) in durations {
            if let Some(value) = value
                && value < min
            {
                return Err(ParamsError::TooShort { field, value });
            }
        }
        if self.rise == 0 {
            return Err(ParamsError::ZeroCount { field: "rise" });
        }
        if self.fall == 0 {
            return Err(ParamsError::ZeroCount { field: "fall" });
        }
        if let Jitter::Fraction(f) = self.jitter
            && !(0.0..=0.5).contains(&f)
        {
            return Err(ParamsError::JitterFraction(f));
        }
        Ok(())
    }
}

/// What made a transition happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `consecutive` probe results in a row (1 for a provisional initial state).
    Probe { consecutive: u32 },
    /// `consecutive` failed connects reported by the data plane.
    Passive { consecutive: u32 },
}

/// A state change, to log (at info, with its reason) and publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// Human-readable: the deciding probe's detail ("HTTP 503", "connection
    /// refused", "timeout after 500ms", "exit 3") or the passive count.
    pub reason: String,
    pub cause: Cause,
}

/// One backend's health state machine.
#[derive(Debug, Clone)]
pub struct HealthMachine {
    params: Params,
    state: State,
    /// Consecutive results pointing away from `state`.
    streak: u32,
    /// Set by a provisional initial state until the first probe result: that
    /// result alone decides.
    provisional: bool,
    /// When `state` was entered (construction time for the initial state).
    since: Instant,
    /// Start of the slow-start ramp, after a DOWN → UP transition.
    ramp_from: Option<Instant>,
    /// Reason of the last transition, or a note on the initial state.
    reason: String,
}

impl HealthMachine {
    pub fn new(params: Params, now: Instant) -> Self {
        let (state, provisional, reason) = match params.initial {
            InitialState::Up => (State::Up, true, "initial state (provisional)"),
            InitialState::FullyUp => (State::Up, false, "initial state"),
            InitialState::Down => (State::Down, true, "initial state (provisional)"),
            InitialState::FullyDown => (State::Down, false, "initial state"),
        };
        HealthMachine {
            params,
            state,
            streak: 0,
            provisional,
            since: now,
            ramp_from: None,
            reason: reason.to_string(),
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Applies new parameters (a config reload with the same probe) and keeps
    /// the state and the streak: a shorter `fall` takes effect at the next result.
    pub fn set_params(&mut self, params: Params) {
        self.params = params;
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// When the current state was entered.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Reason of the last transition.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Consecutive results toward the other state so far.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// True while a change of state is in progress (HAProxy: "not fully up or
    /// down"): a streak has begun, or the provisional initial state awaits its
    /// first result.
    pub fn transitioning(&self) -> bool {
        self.streak > 0 || self.provisional
    }

    /// Results needed, from a zero streak, to leave the current state.
    fn threshold(&self) -> u32 {
        if self.provisional {
            return 1;
        }
        match self.state {
            State::Up => self.params.fall.max(1),
            State::Down => self.params.rise.max(1),
        }
    }

    /// Feeds one probe result. `detail` becomes the reason if it decides a
    /// transition.
    pub fn on_probe(&mut self, ok: bool, detail: &str, now: Instant) -> Option<Transition> {
        let toward_other = match self.state {
            State::Up => !ok,
            State::Down => ok,
        };
        if !toward_other {
            self.streak = 0;
            self.provisional = false;
            return None;
        }
        self.streak = self.streak.saturating_add(1);
        if self.streak < self.threshold() {
            return None;
        }
        let consecutive = self.streak;
        Some(self.transition(now, detail.to_string(), Cause::Probe { consecutive }))
    }

    /// Feeds the data plane's count of consecutive failed connects. Marks an UP
    /// backend DOWN at once when it reaches `passive_fall` (if non-zero); does
    /// nothing to a DOWN one, which only probes bring back.
    pub fn on_passive_failures(&mut self, consecutive: u32, now: Instant) -> Option<Transition> {
        let limit = self.params.passive_fall;
        if self.state == State::Down || limit == 0 || consecutive < limit {
            return None;
        }
        let reason = format!("{consecutive} consecutive connect failures (passive)");
        Some(self.transition(now, reason, Cause::Passive { consecutive }))
    }

    fn transition(&mut self, now: Instant, reason: String, cause: Cause) -> Transition {
        let from = self.state;
        let to = match from {
            State::Up => State::Down,
            State::Down => State::Up,
        };
        self.state = to;
        self.streak = 0;
        self.provisional = false;
        self.since = now;
        self.ramp_from = (to == State::Up && !self.params.slow_start.is_zero()).then_some(now);
        self.reason.clone_from(&reason);
        Transition {
            from,
            to,
            reason,
            cause,
        }
    }

    /// The un-jittered delay before the next probe: `fastinter` while
    /// transitioning, `downinter` while steadily DOWN, `interval` otherwise.
    pub fn base_delay(&self) -> Duration {
        let p = &self.params;
        if self.transitioning() {
            p.fastinter.unwrap_or(p.interval)
        } else if self.state == State::Down {
            p.downinter.unwrap_or(p.interval)
        } else {
            p.interval
        }
    }

    /// The delay before the next probe, spread by jitter. `u` is a uniform
    /// random number in `[0, 1)` (clamped): the result lies in
    /// `base ± spread`, `u = 0.5` giving exactly `base`.
    pub fn next_delay(&self, u: f64) -> Duration {
        let base = self.base_delay();
        let spread = self.params.jitter.spread(base);
        let x = u.clamp(0.0, 1.0) * 2.0 - 1.0; // in [-1, 1]
        if x >= 0.0 {
            base + spread.mul_f64(x)
        } else {
            base - spread.mul_f64(-x)
        }
    }

    /// The delay before the very first probe: `u × spread(interval)`, so
    /// backends configured together do not probe in lockstep, yet the first
    /// verdict comes quickly (within 100 ms with the defaults).
    pub fn first_delay(&self, u: f64) -> Duration {
        let spread = self.params.jitter.spread(self.params.interval);
        spread.mul_f64(u.clamp(0.0, 1.0))
    }

    /// The weight factor in permille: 0 while DOWN; while ramping after
    /// DOWN → UP, `ceil(1000 × elapsed / slow_start)` but at least 1 (an UP
    /// backend is never unpickable, as HAProxy rounds its effective weight up);
    /// 1000 otherwise.
    pub fn weight_permille(&self, now: Instant) -> u32 {
        if self.state == State::Down {
            return 0;
        }
        let Some(from) = self.ramp_from else {
            return 1000;
        };
        let total = self.params.slow_start.as_nanos();
        let elapsed = now.saturating_duration_since(from).as_nanos();
        if total == 0 || elapsed >= total {
            return 1000;
        }
        let permille = (elapsed * 1000).div_ceil(total);
        // Cannot exceed 1000 since elapsed < total.
        u32::try_from(permille).unwrap_or(1000).max(1)
    }

    /// [`Self::weight_permille`] as a fraction in `[0, 1]`.
    pub fn weight_factor(&self, now: Instant) -> f64 {
        f64::from(self.weight_permille(now)) / 1000.0
    }

    /// When the slow-start ramp ends, if one is in progress at `now`.
    pub fn ramp_end(&self, now: Instant) -> Option<Instant> {
        let end = self.ramp_from? + self.params.slow_start;
        (self.state == State::Up && end > now).then_some(end)
    }
}

#[cfg(test)]
mod tests {
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
        let mut m = HealthMachine::new(params(2, 3, InitialState::FullyUp), t0);
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
        let mut m = HealthMachine::new(params(2, 3, InitialState::FullyDown), t0);
        assert_eq!(m.on_probe(true, "HTTP 200", t0), None);
        assert!(!m.is_up());
        let tr = m.on_probe(true, "HTTP 200", t0).unwrap();
        assert_eq!((tr.from, tr.to), (State::Down, State::Up));
        assert_eq!(tr.cause, Cause::Probe { consecutive: 2 });
    }

    #[test]
    fn an_agreeing_result_resets_the_streak() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(params(2, 3, InitialState::FullyUp), t0);
        for ok in [false, false, true, false, false, true, false, false] {
            assert_eq!(m.on_probe(ok, "x", t0), None);
        }
        assert!(m.is_up());
        assert_eq!(m.streak(), 2);
    }

    #[test]
    fn provisional_up_goes_down_at_the_first_failure() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
        assert!(m.is_up() && m.transitioning());
        let tr = m.on_probe(false, "connection refused", t0).unwrap();
        assert_eq!(tr.cause, Cause::Probe { consecutive: 1 });
        // Once DOWN, the ordinary rise applies.
        assert_eq!(m.on_probe(true, "connected", t0), None);
        assert!(m.on_probe(true, "connected", t0).is_some());
    }

    #[test]
    fn provisional_up_confirmed_by_a_success_then_needs_fall() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
        assert_eq!(m.on_probe(true, "connected", t0), None);
        assert!(!m.transitioning());
        assert_eq!(m.on_probe(false, "x", t0), None);
        assert_eq!(m.on_probe(false, "x", t0), None);
        assert!(m.on_probe(false, "x", t0).is_some());
    }

    #[test]
    fn provisional_down_comes_up_at_the_first_success() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(params(3, 3, InitialState::Down), t0);
        assert!(!m.is_up());
        assert!(m.on_probe(true, "connected", t0).is_some());
        let mut m = HealthMachine::new(params(3, 3, InitialState::Down), t0);
        assert_eq!(m.on_probe(false, "x", t0), None);
        // Confirmed down: now rise (3) successes are needed.
        assert_eq!(m.on_probe(true, "x", t0), None);
        assert_eq!(m.on_probe(true, "x", t0), None);
        assert!(m.on_probe(true, "x", t0).is_some());
    }

    #[test]
    fn fastinter_while_transitioning_downinter_while_down() {
        let t0 = Instant::now();
        let mut m = HealthMachine::new(params(2, 3, InitialState::FullyUp), t0);
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
        // The provisional initial state is a transition too.
        let m = HealthMachine::new(params(2, 3, InitialState::Up), t0);
        assert_eq!(m.base_delay(), ms(200));
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
        let m = HealthMachine::new(params(2, 3, InitialState::FullyUp), t0);
        assert_eq!(m.next_delay(0.9), ms(1000));
        assert_eq!(m.first_delay(0.9), Duration::ZERO);
        let p = Params {
            jitter: Jitter::Fraction(0.1),
            ..params(2, 3, InitialState::FullyUp)
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
            ..params(2, 3, InitialState::FullyUp)
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
            ..params(2, 3, InitialState::FullyUp)
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
            ..params(1, 1, InitialState::FullyUp)
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
        let mut m = HealthMachine::new(params(2, 2, InitialState::FullyUp), t0);
        for i in 0..1000 {
            assert_eq!(m.on_probe(i % 2 == 0, "x", t0), None);
        }
        let mut m = HealthMachine::new(params(2, 2, InitialState::FullyDown), t0);
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
                initial: InitialState::FullyUp,
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
                initial: InitialState::FullyUp,
                ..Params::default()
            };
            let d = HealthMachine::new(p, Instant::now()).next_delay(u);
            let spread = ms(max_ms.min(500));
            prop_assert!(d >= ms(1000) - spread && d <= ms(1000) + spread);
        }

        /// A transition to DOWN happens only on the `fall`-th failure of an
        /// unbroken run, to UP only on the `rise`-th success, whatever the
        /// sequence: flapping cannot move the state faster than rise/fall allow.
        #[test]
        fn transitions_only_after_full_runs(
            rise in 1u32..5,
            fall in 1u32..5,
            results in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let t0 = Instant::now();
            let mut m = HealthMachine::new(params(rise, fall, InitialState::FullyUp), t0);
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
}
