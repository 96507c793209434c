//! `lc` and `wlc`: least connections, unweighted and weighted.
//!
//! LVS (`ip_vs_lc`, `ip_vs_wlc`; `ipvsadm(8)`) ranks a real server by its
//! *overhead* `active * 256 + inactive`, where inactive counts connections in
//! TIME_WAIT/FIN states that the kernel still tracks. A user-space proxy has
//! no such half-dead entries: a connection is live until both sides are
//! closed, and then it is gone. So the only load measure here is `active`
//! (live proxied connections), and the rules become:
//!
//! - `lc`: the candidate with the fewest `active` connections.
//! - `wlc`: the candidate with the smallest `(active + 1) / weight`, compared
//!   exactly by integer cross-multiplication, `(a_i + 1) * w_j < (a_j + 1) * w_i`
//!   in `u64` (cannot overflow: both factors are below 2^32 + 1 and 2^32).
//!   LVS's `wlc` compares `overhead / weight` without the `+ 1`; the `+ 1`
//!   (what LVS calls the expected delay of its `sed` scheduler) makes the
//!   weight count when backends are idle: with `active/weight`, every idle
//!   backend ties at 0 and a weight-1 backend gets as many of the first
//!   connections as a weight-10 one; with `(active+1)/weight` the new
//!   connection goes where it would wait least.
//!
//! Ties are broken by rotation, not by slice order: each pick scans from one
//! past the previous pick (wrapping), and a later backend replaces the best so
//! far only if strictly better, so among tied candidates the next one after
//! the last chosen wins: round robin over the ties. With all loads equal
//! (typical at start, or when connections are short) the picks rotate instead
//! of all landing on index 0. The position is an `AtomicUsize` written after
//! the scan; two threads racing may start from the same place and pick the
//! same backend, which only perturbs the rotation, never the candidate rule.

use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{BackendView, Pick, Scheduler, is_candidate};

/// Least connections (`lc`).
#[derive(Debug, Default)]
pub struct LeastConn {
    /// One past the last pick, modulo the slice length: rotates ties.
    start: AtomicUsize,
}

/// Weighted least connections (`wlc`), see the module doc for the `+ 1`.
#[derive(Debug, Default)]
pub struct WeightedLeastConn {
    /// One past the last pick, modulo the slice length: rotates ties.
    start: AtomicUsize,
}

impl LeastConn {
    pub fn new() -> Self {
        Self::default()
    }
}

impl WeightedLeastConn {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Scans all positions once, from one past the previous pick, and keeps the
/// first strictly best candidate under `cmp`.
fn least_by(
    start: &AtomicUsize,
    backends: &[BackendView],
    req: &Pick<'_>,
    cmp: impl Fn(&BackendView, &BackendView) -> CmpOrdering,
) -> Option<usize> {
    let n = backends.len();
    if n == 0 {
        return None;
    }
    let first = start.load(Ordering::Relaxed) % n;
    let mut best: Option<usize> = None;
    // Positions first..n then 0..first: a wrapping scan without a division
    // per element.
    for i in (first..n).chain(0..first) {
        if !is_candidate(backends, req, i) {
            continue;
        }
        if best.is_none_or(|j| cmp(&backends[i], &backends[j]) == CmpOrdering::Less) {
            best = Some(i);
        }
    }
    let chosen = best?;
    start.store(chosen + 1, Ordering::Relaxed);
    Some(chosen)
}

/// Orders by `(active + 1) / weight`, exactly. Both weights are > 0 here.
fn wlc_cmp(a: &BackendView, b: &BackendView) -> CmpOrdering {
    let lhs = (u64::from(a.active) + 1) * u64::from(b.weight);
    let rhs = (u64::from(b.active) + 1) * u64::from(a.weight);
    lhs.cmp(&rhs)
}

impl Scheduler for LeastConn {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize> {
        least_by(&self.start, backends, req, |a, b| a.active.cmp(&b.active))
    }
}

impl Scheduler for WeightedLeastConn {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize> {
        least_by(&self.start, backends, req, wlc_cmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{backends, pick_all, pick_one};

    #[test]
    fn lc_picks_fewest_active_ignoring_weight() {
        let b = backends(&[(10, 5), (1, 2), (1, 3)]);
        let s = LeastConn::new();
        assert_eq!(pick_all(&s, &b, 5), vec![1; 5]);
    }

    #[test]
    fn lc_skips_non_candidates_even_if_least_loaded() {
        let b = backends(&[(1, 9), (0, 0), (1, 0), (1, 7)]);
        let s = LeastConn::new();
        // 1 is drained, 2 is not eligible: 3 has fewer than 0.
        assert_eq!(pick_one(&s, &b, &|i| i != 2), Some(3));
    }

    #[test]
    fn lc_ties_rotate() {
        let b = backends(&[(1, 4), (1, 1), (1, 1), (1, 1), (1, 2)]);
        let s = LeastConn::new();
        let picks = pick_all(&s, &b, 30);
        let mut counts = [0; 5];
        for p in &picks {
            counts[*p] += 1;
        }
        assert_eq!(counts, [0, 10, 10, 10, 0]);
    }

    #[test]
    fn wlc_weighs_load() {
        // (a+1)/w: 0: (5+1)/4 = 1.5, 1: (1+1)/1 = 2, 2: (2+1)/1 = 3.
        let b = backends(&[(4, 5), (1, 1), (1, 2)]);
        let s = WeightedLeastConn::new();
        assert_eq!(pick_all(&s, &b, 4), vec![0; 4]);
    }

    #[test]
    fn wlc_idle_prefers_heavier() {
        let b = backends(&[(1, 0), (10, 0), (2, 0)]);
        let s = WeightedLeastConn::new();
        assert_eq!(pick_all(&s, &b, 3), vec![1; 3]);
    }

    #[test]
    fn wlc_exact_ties_rotate() {
        // (1+1)/2 == (0+1)/1 == (3+1)/4: all tie.
        let b = backends(&[(2, 1), (1, 0), (4, 3)]);
        let s = WeightedLeastConn::new();
        let mut picks = pick_all(&s, &b, 6);
        picks.sort_unstable();
        assert_eq!(picks, vec![0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn wlc_no_overflow_at_extremes() {
        let b = backends(&[(u32::MAX, u32::MAX), (1, u32::MAX - 1)]);
        let s = WeightedLeastConn::new();
        assert_eq!(pick_one(&s, &b, &|_| true), Some(0));
    }

    #[test]
    fn simulated_load_follows_weights() {
        // Connections that never close: wlc fills backends in proportion to
        // their weights.
        let mut b = backends(&[(1, 0), (2, 0), (3, 0)]);
        let s = WeightedLeastConn::new();
        for _ in 0..600 {
            let i = pick_one(&s, &b, &|_| true).unwrap();
            b[i].active += 1;
        }
        let active: Vec<u32> = b.iter().map(|b| b.active).collect();
        for (got, want) in active.iter().zip([100u32, 200, 300]) {
            assert!(got.abs_diff(want) <= 1, "{active:?}");
        }
    }
}
