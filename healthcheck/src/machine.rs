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
//!   from 0 to 1 over `slow_start`. As in HAProxy, it does not apply to a
//!   backend that starts UP: a balancer that (re)starts must not throttle
//!   healthy backends that were serving a moment ago. Leaving a DOWN initial
//!   state is an ordinary DOWN→UP and does ramp (so does HAProxy's
//!   `init-state fully-down`).
//! - Initial state ([`InitialState`]): by default a backend starts UP and, like
//!   any UP backend, needs `fall` consecutive failures to go DOWN
//!   (keepalived's default; HAProxy's `init-state fully-up`). A backend that
//!   binds a moment after the balancer starts thus never loses its clients to
//!   one early failed probe, while passive detection still takes a really
//!   dead one out at its first few refused connects. [`InitialState::Down`]
//!   is the fail-closed choice (keepalived's `alpha`, HAProxy's
//!   `init-state fully-down`): DOWN until `rise` consecutive successes. No
//!   single probe result ever decides alone; the thresholds always apply.
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

/// Where a backend starts. Either way the usual thresholds apply from the
/// first probe on: HAProxy 3.1's provisional `init-state up` / `down` (the
/// first result decides alone) are deliberately not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialState {
    /// UP; `fall` consecutive failures take it DOWN (keepalived without
    /// `alpha`, HAProxy `init-state fully-up`).
    #[default]
    Up,
    /// DOWN; `rise` consecutive successes bring it UP (keepalived's `alpha`,
    /// HAProxy `init-state fully-down`).
    Down,
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
    /// Where the backend starts. Default [`InitialState::Up`] (keepalived
    /// without `alpha`).
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
    /// `consecutive` probe results in a row (`rise` or `fall` of them).
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
    /// When `state` was entered (construction time for the initial state).
    since: Instant,
    /// Start of the slow-start ramp, after a DOWN → UP transition.
    ramp_from: Option<Instant>,
    /// Reason of the last transition, or a note on the initial state.
    reason: String,
}

impl HealthMachine {
    pub fn new(params: Params, now: Instant) -> Self {
        let state = match params.initial {
            InitialState::Up => State::Up,
            InitialState::Down => State::Down,
        };
        HealthMachine {
            params,
            state,
            streak: 0,
            since: now,
            ramp_from: None,
            reason: "initial state".to_string(),
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
    /// down"): a streak toward the other state has begun.
    pub fn transitioning(&self) -> bool {
        self.streak > 0
    }

    /// Results needed, from a zero streak, to leave the current state.
    fn threshold(&self) -> u32 {
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
mod tests;
