//! How many jobs of one kind a replica keeps in flight: a limit that follows
//! what the kind's pool can take, sans-I/O (the caller passes the time).
//!
//! The rule is TCP's congestion control applied to worker slots, as
//! Netflix's concurrency-limits (`AIMDLimit`) and Envoy's adaptive
//! concurrency filter apply it to requests:
//!
//! - **Signals.** A Tandem worker answers `503` at once when all its slots
//!   are taken: that is the pool saying "full", the equivalent of a dropped
//!   packet. Timeouts and connection errors count the same way. A success
//!   says the slot was there.
//! - **Slow start.** From `initial`, every success that was sent while the
//!   limit was in use adds 1 (the limit doubles per round trip), until the
//!   first "full" signal. A pool of 16 slots is found in about four round
//!   trips, not in sixteen.
//! - **Additive increase.** After that, every success adds `1 / limit` (one
//!   slot per round trip), so a worker that joins is found within a few
//!   round trips.
//! - **Multiplicative decrease.** A "full" signal sets the limit to
//!   [`BACKOFF`] times the calls still in flight (the slots this replica
//!   holds: RFC 5681 takes the flight size, not the window, for the same
//!   reason), at most once per round trip, as in TCP's fast recovery:
//!   the burst of 503s that one overshoot produces counts once. The round
//!   trip is the time a call holds a slot (the smoothed latency of taken
//!   calls), not the time a 503 takes to come back: refusals return in a
//!   fraction of a millisecond, and counting each would take the limit to
//!   1 within one job's length.
//! - **Fair share without talking.** Replicas sharing a pool each run this
//!   rule on their own answers. Additive increase with multiplicative
//!   decrease converges to equal shares (Chiu and Jain, 1989): a decrease
//!   takes more from the larger holder, an increase gives the same to each.
//!   Decreasing from the slots held rather than from the limit matters
//!   here: a replica's limit may stand well above what it holds (its
//!   probes are refused while the others re-take their own freed slots),
//!   and only a decrease below what it holds hands slots to the others.
//!   The new limit is rounded up or down at random, in proportion to its
//!   fraction (0.9 × 5 = 4.5 is 4 or 5 with even odds): rounding down
//!   always would take a whole slot from a replica holding 2 as from one
//!   holding 10, and rounding up always would never take one from either;
//!   both freeze unequal shares.
//! - **Application-limited.** A success adds nothing when the request was
//!   sent with the limit not in use (fewer than half of it in flight): a
//!   replica with little work must not grow a limit it never tested.
//! - **Latency.** When the smoothed latency of successes is more than
//!   [`LATENCY_TOLERANCE`] times its lowest in the last [`BASELINE_WINDOW`], a success counts
//!   as "full" for the limit (the decrease, not the pause): calls are
//!   queueing somewhere (a worker that does not answer 503, or a saturated
//!   host), and more of them in flight would only wait longer.
//! - **A pause after "full".** After a 503 nothing new is sent until a
//!   call is taken or [`FULL_PAUSE`] has passed (the caller adds jitter):
//!   while every slot is taken the next call would only be refused again,
//!   and a replica with little in flight must not spin on refusals. A
//!   completion ends the pause: it freed a slot, and a replica paused
//!   through its own completions would hand its slots to the others.
//! - **Told, not guessed.** Workers that advertise their slots let slow
//!   start jump straight to what the pool has said it takes.
//! - **Bounds.** Never below 1, never above `max_concurrency` (the
//!   operator's safety cap), and never above twice the slots the pool's
//!   workers advertise (`X-Tandem-Slots`, summed over the instances heard from in
//!   the last [`CAPACITY_WINDOW`]) when they do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A "full" signal multiplies the limit by this.
pub const BACKOFF: f64 = 0.8;
/// Successes slower than this many times the baseline latency stop growth.
pub const LATENCY_TOLERANCE: f64 = 3.0;
/// The baseline latency is the lowest seen over a window this long.
pub const BASELINE_WINDOW: Duration = Duration::from_secs(30);
/// Advertised slots count while their instance was heard from this recently.
pub const CAPACITY_WINDOW: Duration = Duration::from_secs(10);
/// After a 503, nothing new is sent for this long.
pub const FULL_PAUSE: Duration = Duration::from_millis(2);
/// The limit a kind starts with.
pub const INITIAL: f64 = 4.0;

/// What a request carried when it was sent; handed back with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket {
    /// The limit was in use when it was sent.
    probing: bool,
}

/// How a call ended, for the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The worker took it (any answer but 503), after `latency`.
    Taken(Duration),
    /// Another answer (a 4xx or 5xx): the call held a slot, but its time
    /// says nothing about the pool's speed (a refused input is fast), so
    /// it ends a pause and changes nothing else.
    Answered,
    /// 503: every slot of the instance was busy.
    Full,
    /// No answer: timeout, refused or reset connection.
    Lost,
}

/// One kind's limit in one replica.
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: f64,
    max: f64,
    /// Below it, slow start; `INFINITY` until the first "full" signal.
    threshold: f64,
    /// The last decrease; the next waits a round trip after it.
    decreased_at: Option<Instant>,
    /// Smoothed latency of taken calls (the round trip).
    srtt: Option<Duration>,
    baseline: Baseline,
    capacity: Capacity,
    /// No new call before this (set by a 503).
    paused_until: Option<Instant>,
    /// splitmix64 state, for rounding a decreased limit.
    seed: u64,
}

impl Limiter {
    /// A limit starting at [`INITIAL`] (or `max` if lower), capped at `max`;
    /// `seed` drives the rounding of decreases (any value; replicas should
    /// differ).
    pub fn new(max: u32, seed: u64) -> Limiter {
        let max = f64::from(max.max(1));
        Limiter {
            limit: INITIAL.min(max),
            max,
            threshold: f64::INFINITY,
            decreased_at: None,
            srtt: None,
            baseline: Baseline::default(),
            capacity: Capacity::default(),
            paused_until: None,
            seed,
        }
    }

    /// Calls that may be in flight now.
    pub fn limit(&self) -> usize {
        self.limit.floor().max(1.0) as usize
    }

    /// The smoothed latency of taken calls, once one was taken.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// When a call may be sent, with `in_flight` out: `None` while the
    /// limit is used up (wait for an answer), else the earliest instant
    /// (`now` or the end of a pause after a 503).
    pub fn next_send(&self, in_flight: usize, now: Instant) -> Option<Instant> {
        if in_flight >= self.limit() {
            return None;
        }
        Some(self.paused_until.map_or(now, |p| p.max(now)))
    }

    /// Records a call being sent with `in_flight` calls already out.
    pub fn send(&self, in_flight: usize) -> Ticket {
        Ticket {
            probing: 2 * (in_flight + 1) >= self.limit(),
        }
    }

    /// Records how the call of `ticket` ended, at `now`, with `in_flight`
    /// other calls still out.
    pub fn answer(&mut self, ticket: Ticket, signal: Signal, in_flight: usize, now: Instant) {
        match signal {
            Signal::Taken(latency) => {
                self.paused_until = None;
                // RFC 6298's smoothing: srtt += (sample - srtt) / 8.
                self.srtt = Some(match self.srtt {
                    Some(s) => s.mul_f64(0.875) + latency.mul_f64(0.125),
                    None => latency,
                });
                // The smoothed latency against its own best, not each
                // sample: jobs of one kind may vary tenfold in length
                // (small and large images) with nothing queueing.
                let srtt = self.srtt.unwrap_or(latency);
                if self.baseline.observe(srtt, now) > LATENCY_TOLERANCE {
                    self.decrease(in_flight + 1, now);
                } else if ticket.probing {
                    let step = if self.limit < self.threshold {
                        1.0
                    } else {
                        1.0 / self.limit
                    };
                    self.limit = (self.limit + step).min(self.ceiling(now));
                }
            }
            Signal::Answered => {
                self.paused_until = None;
            }
            Signal::Full | Signal::Lost => {
                if signal == Signal::Full {
                    // Not growing with 503s in a row: the simulation showed
                    // a longer pause handing the paused replica's share to
                    // the others (a probe every 2-4 ms costs the worker one
                    // 503 answered before the body is read).
                    self.paused_until = Some(now + FULL_PAUSE);
                }
                self.decrease(in_flight, now);
            }
        }
    }

    /// Multiplicative decrease from the `held` calls, at most once per
    /// round trip.
    fn decrease(&mut self, held: usize, now: Instant) {
        let rtt = self.srtt.unwrap_or(Duration::ZERO);
        if self.decreased_at.is_some_and(|at| now < at + rtt) {
            return;
        }
        let target = self.limit.min(held as f64) * BACKOFF;
        let up = self.unit_random() < target.fract();
        self.limit = (target.floor() + f64::from(u8::from(up))).max(1.0);
        self.threshold = self.limit;
        self.decreased_at = Some(now);
    }

    /// Uniform in [0, 1): splitmix64.
    fn unit_random(&mut self) -> f64 {
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An instance of the pool said it has `slots` slots. In slow start
    /// (no "full" signal yet) the limit jumps to the slots advertised so
    /// far: the pool has said what it takes, and doubling up to it would
    /// leave slots idle for a few round trips (200 ms jobs: 400 ms to go
    /// from 4 to 16). Replicas sharing the pool overshoot together once and
    /// back off from there.
    pub fn advertised(&mut self, instance: &str, slots: u32, now: Instant) {
        self.capacity.heard(instance, slots, now);
        if self.threshold.is_infinite()
            && let Some(total) = self.capacity.total(now)
        {
            self.limit = self.limit.max(f64::from(total).min(self.max));
        }
        self.limit = self.limit.min(self.ceiling(now));
    }

    /// The advertised slots of the pool, when any instance advertised.
    pub fn pool_slots(&self, now: Instant) -> Option<u32> {
        self.capacity.total(now)
    }

    /// `max_concurrency`, and twice the advertised slots: a call is in
    /// flight here for longer than it holds a worker's slot (the way there
    /// and back through the balancer, the answer's handling), so a limit
    /// of exactly the slots would leave them idle for that part of every
    /// call. Past the slots actually free, the 503s bring the limit down.
    fn ceiling(&self, now: Instant) -> f64 {
        match self.capacity.total(now) {
            Some(slots) => self.max.min(2.0 * f64::from(slots.max(1))),
            None => self.max,
        }
    }
}

/// The lowest latency of the current and the previous window.
#[derive(Debug, Clone, Default)]
struct Baseline {
    since: Option<Instant>,
    current: Option<Duration>,
    previous: Option<Duration>,
}

impl Baseline {
    /// Takes a sample; returns how many times the baseline it is.
    fn observe(&mut self, latency: Duration, now: Instant) -> f64 {
        let since = *self.since.get_or_insert(now);
        if now.duration_since(since) >= BASELINE_WINDOW {
            self.previous = self.current.take();
            self.since = Some(now);
        }
        self.current = Some(self.current.map_or(latency, |c| c.min(latency)));
        let base = match (self.current, self.previous) {
            (Some(c), Some(p)) => c.min(p),
            (Some(c), None) => c,
            (None, p) => p.unwrap_or(latency),
        };
        // Sub-millisecond calls jitter by more than their own length:
        // compare against at least 1 ms.
        let base = base.max(Duration::from_millis(1));
        latency.as_secs_f64() / base.as_secs_f64()
    }
}

/// Slots advertised per instance, with when each was last heard.
#[derive(Debug, Clone, Default)]
struct Capacity {
    instances: HashMap<String, (u32, Instant)>,
}

impl Capacity {
    fn heard(&mut self, instance: &str, slots: u32, now: Instant) {
        match self.instances.get_mut(instance) {
            Some(entry) => *entry = (slots, now),
            None => {
                // Bounded: instances not heard from within the window go.
                self.instances
                    .retain(|_, (_, at)| now.duration_since(*at) < CAPACITY_WINDOW);
                self.instances.insert(instance.to_owned(), (slots, now));
            }
        }
    }

    fn total(&self, now: Instant) -> Option<u32> {
        let mut any = false;
        let mut sum = 0u32;
        for (slots, at) in self.instances.values() {
            if now.duration_since(*at) < CAPACITY_WINDOW {
                any = true;
                sum = sum.saturating_add(*slots);
            }
        }
        any.then_some(sum)
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
