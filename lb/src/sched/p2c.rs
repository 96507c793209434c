//! `p2c`: the power of two choices (Mitzenmacher, "The Power of Two Choices
//! in Randomized Load Balancing", IEEE TPDS 2001; also Azar et al. 1994).
//!
//! Rule: draw two distinct candidates at random, each draw weighted by
//! weight (the second drawn from the candidates other than the first), and
//! keep the one with the smaller `active / weight`, compared exactly as
//! `a_1 * w_2` vs `a_2 * w_1` in `u64`. On a tie the first draw wins, so when
//! loads are equal (e.g. all idle) the choice is the weighted random draw
//! itself and traffic follows the weights. A single candidate is picked
//! directly; none gives `None`.
//!
//! Why: sampling two and taking the lighter brings the maximum load down from
//! `Θ(log n / log log n)` (one random choice) to `Θ(log log n)`, while each
//! pick looks at only two backends' counters, which may be stale on a busy
//! multi-threaded balancer without herding every connection onto the one
//! backend that looked least loaded a moment ago (the failure mode of strict
//! least-connections with stale counts).
//!
//! Random numbers: SplitMix64 (Steele, Lea & Flood, OOPSLA 2014) over one
//! `AtomicU64` counter: each draw is a single `fetch_add` plus a few
//! multiply/xor-shift steps, no syscall and no lock, and concurrent threads get
//! distinct values. The seed comes from `rand` once at construction
//! ([`PowerOfTwo::new`]), or is given ([`PowerOfTwo::with_seed`]) so tests are
//! deterministic. A value in `[0, n)` is taken as the high half of `r * n`
//! (Lemire's multiply-shift; the bias is below `n / 2^64`).
//!
//! Cost: three passes over the slice (candidate weights, first draw, second
//! draw). `eligible` may thus be asked up to three times about a backend; if
//! its answer changes between passes (another thread filled the backend), the
//! draws still only return backends that were candidates when asked.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{BackendView, Pick, Scheduler, is_candidate};

/// SplitMix64's increment, the golden ratio in 64-bit fixed point.
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Power of two weighted random choices.
#[derive(Debug)]
pub struct PowerOfTwo {
    /// SplitMix64 state: advanced by [`GOLDEN_GAMMA`] per draw.
    state: AtomicU64,
}

impl Default for PowerOfTwo {
    fn default() -> Self {
        Self::new()
    }
}

impl PowerOfTwo {
    /// Seeded from the OS random source once (not per pick).
    pub fn new() -> Self {
        Self::with_seed(rand::random())
    }

    /// A fixed seed: the same seed gives the same sequence of draws.
    pub fn with_seed(seed: u64) -> Self {
        PowerOfTwo {
            state: AtomicU64::new(seed),
        }
    }

    fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`; `n > 0`.
    fn below(&self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The candidate (other than `skip`) whose cumulative weight segment contains
/// `point`. If eligibility changed since `point` was drawn and the walk runs
/// past the end, the last candidate seen is returned.
fn weighted_at(
    backends: &[BackendView],
    req: &Pick<'_>,
    mut point: u64,
    skip: Option<usize>,
) -> Option<usize> {
    let mut last = None;
    for (i, b) in backends.iter().enumerate() {
        if Some(i) == skip || !is_candidate(backends, req, i) {
            continue;
        }
        let w = u64::from(b.weight);
        if point < w {
            return Some(i);
        }
        point -= w;
        last = Some(i);
    }
    last
}

impl Scheduler for PowerOfTwo {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize> {
        let mut total: u64 = 0;
        let mut count = 0usize;
        let mut only = None;
        for (i, b) in backends.iter().enumerate() {
            if is_candidate(backends, req, i) {
                total += u64::from(b.weight);
                count += 1;
                only = Some(i);
            }
        }
        if count <= 1 {
            return only;
        }
        let first = weighted_at(backends, req, self.below(total), None)?;
        let rest = total - u64::from(backends[first].weight);
        // `rest > 0`: there are at least two candidates, each of weight > 0
        // (unless eligibility changed under us; then keep the first draw).
        if rest == 0 {
            return Some(first);
        }
        let Some(second) = weighted_at(backends, req, self.below(rest), Some(first)) else {
            return Some(first);
        };
        let (a, b) = (&backends[first], &backends[second]);
        let load_a = u64::from(a.active) * u64::from(b.weight);
        let load_b = u64::from(b.active) * u64::from(a.weight);
        Some(if load_b < load_a { second } else { first })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{backends, pick_one};

    #[test]
    fn idle_distribution_follows_weights() {
        let b = backends(&[(1, 0), (3, 0), (0, 0), (4, 0)]);
        let s = PowerOfTwo::with_seed(7);
        let n = 80_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[pick_one(&s, &b, &|_| true).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        // Shares 1/8, 3/8, 4/8; 2% absolute is > 10 sigma at 80k picks.
        for (i, w) in [(0, 1.0), (1, 3.0), (3, 4.0)] {
            let share = counts[i] as f64 / n as f64;
            assert!((share - w / 8.0).abs() < 0.02, "{counts:?}");
        }
    }

    #[test]
    fn lighter_of_the_two_wins() {
        // Two candidates: both are always drawn, so the lighter one always wins.
        let b = backends(&[(1, 5), (1, 2), (1, 0)]);
        let s = PowerOfTwo::with_seed(1);
        for _ in 0..100 {
            assert_eq!(pick_one(&s, &b, &|i| i != 2), Some(1));
        }
        // Per weight: 0 carries 8/4 = 2 per unit, 1 carries 3/1 = 3.
        let b = backends(&[(4, 8), (1, 3)]);
        for _ in 0..100 {
            assert_eq!(pick_one(&s, &b, &|_| true), Some(0));
        }
    }

    #[test]
    fn never_picks_the_most_loaded_of_many() {
        let b = backends(&[(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (1, 5)]);
        let s = PowerOfTwo::with_seed(42);
        let mut counts = [0usize; 6];
        for _ in 0..6_000 {
            counts[pick_one(&s, &b, &|_| true).unwrap()] += 1;
        }
        // The most loaded loses every pair it is in; the least wins all its pairs.
        assert_eq!(counts[5], 0);
        assert!(counts[0] > counts[1] && counts[1] > counts[2], "{counts:?}");
    }

    #[test]
    fn simulated_load_balances_with_weights() {
        let mut b = backends(&[(1, 0), (2, 0), (1, 0), (4, 0)]);
        let s = PowerOfTwo::with_seed(3);
        for _ in 0..8_000 {
            let i = pick_one(&s, &b, &|_| true).unwrap();
            b[i].active += 1;
        }
        // Load per unit of weight stays within a few connections of 1000.
        for x in &b {
            let per_weight = f64::from(x.active) / f64::from(x.weight);
            assert!((per_weight - 1000.0).abs() < 10.0, "{b:?}");
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let b = backends(&[(1, 0), (2, 0), (3, 0), (4, 0)]);
        let (s1, s2) = (PowerOfTwo::with_seed(9), PowerOfTwo::with_seed(9));
        for _ in 0..100 {
            assert_eq!(pick_one(&s1, &b, &|_| true), pick_one(&s2, &b, &|_| true));
        }
    }
}
