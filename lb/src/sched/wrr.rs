//! `wrr`: smooth weighted round robin, as in nginx's upstream module
//! (`ngx_http_upstream_get_peer`, introduced in nginx 1.3.1).
//!
//! Rule: every backend keeps a `current` score. At each pick, every candidate
//! adds its weight to its score; the candidate with the highest score wins
//! (the first in slice order on a tie) and has the sum of the candidates'
//! weights subtracted from its score. Over any run of `Σw` picks with an
//! unchanged candidate set, each backend is chosen exactly `w` times, and the
//! choices are interleaved: weights 5, 1, 1 give `a a b a c a a`, not
//! `a a a a a b c` as LVS `ip_vs_wrr` (which walks down a decreasing weight
//! threshold) would. Interleaving spreads a burst of new connections over all
//! backends instead of sending it to the heaviest one.
//!
//! Non-candidates (weight 0, or not eligible for this connection) are left
//! out of the round, as nginx leaves out peers that are down or failing: their
//! score is untouched, so they resume where they were.
//!
//! nginx also lowers a peer's *effective* weight after failures; here the
//! weight we get is already the effective one (0 when down or drained).
//!
//! State: one `i64` score per slice position behind a `Mutex` held only for
//! the O(n) pass. The scores always sum to zero (a pick adds `Σw` and
//! subtracts it again), and a candidate's score only grows while it is not
//! the highest, so they stay within a small multiple of `Σw`; `i64` leaves
//! about 2^31 times the largest `u32` weight of headroom. If the slice length differs from the last call, positions no
//! longer mean the same backends, so the scores restart from zero (a new
//! cycle); the vector is resized then and only then (the only allocation).

use std::sync::Mutex;

use super::{BackendView, Pick, Scheduler, is_candidate};

/// nginx-style smooth weighted round robin.
#[derive(Debug, Default)]
pub struct SmoothWeighted {
    /// `current` score per slice position, see the module doc.
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for SmoothWeighted {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize> {
        // A panic elsewhere while holding the lock leaves valid scores (they
        // are plain integers), so a poisoned lock is used as is.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.len() != backends.len() {
            current.clear();
            current.resize(backends.len(), 0);
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, b) in backends.iter().enumerate() {
            if !is_candidate(backends, req, i) {
                continue;
            }
            let w = i64::from(b.weight);
            current[i] += w;
            total += w;
            if best.is_none_or(|j| current[i] > current[j]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        current[chosen] -= total;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{backends, count_picks, pick_all};

    #[test]
    fn nginx_interleave_5_1_1() {
        let b = backends(&[(5, 0), (1, 0), (1, 0)]);
        let s = SmoothWeighted::new();
        // nginx's own example: { a, a, b, a, c, a, a }, then it repeats.
        let a_a_b_a_c_a_a = [0, 0, 1, 0, 2, 0, 0];
        let seq = pick_all(&s, &b, 14);
        assert_eq!(seq[..7], a_a_b_a_c_a_a[..]);
        assert_eq!(seq[7..], a_a_b_a_c_a_a[..]);
    }

    #[test]
    fn exact_counts_per_cycle() {
        let weights = [(4, 0), (3, 0), (2, 0), (1, 0), (0, 0)];
        let b = backends(&weights);
        let s = SmoothWeighted::new();
        // 10 full cycles of Σw = 10.
        let counts = count_picks(&s, &b, &|_| true, 100);
        assert_eq!(counts, vec![40, 30, 20, 10, 0]);
    }

    #[test]
    fn ineligible_keeps_its_score_and_others_share() {
        let b = backends(&[(2, 0), (1, 0), (1, 0)]);
        let s = SmoothWeighted::new();
        let counts = count_picks(&s, &b, &|i| i != 0, 100);
        assert_eq!(counts, vec![0, 50, 50]);
    }

    #[test]
    fn length_change_restarts_without_panic() {
        let s = SmoothWeighted::new();
        let b3 = backends(&[(5, 0), (1, 0), (1, 0)]);
        pick_all(&s, &b3, 3);
        let b1 = backends(&[(1, 0)]);
        assert_eq!(pick_all(&s, &b1, 2), vec![0, 0]);
        let b4 = backends(&[(1, 0), (1, 0), (1, 0), (1, 0)]);
        assert_eq!(pick_all(&s, &b4, 4), vec![0, 1, 2, 3]);
    }
}
