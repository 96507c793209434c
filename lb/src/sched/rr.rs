//! `rr`: round robin over the candidates, weights ignored (beyond weight 0
//! meaning "not a candidate").
//!
//! Rule (LVS `ip_vs_rr`, `ipvsadm(8)`: "distribute jobs equally amongst the
//! available real servers"): remember the last backend chosen and take the
//! first candidate after it, wrapping. Continuing from the last choice, rather
//! than from a counter modulo the slice length, keeps the rotation fair when
//! some backends are skipped: a backend that follows a run of drained ones is
//! not picked more often than the others.
//!
//! The cursor is one `AtomicUsize` updated by compare-and-swap, so concurrent
//! picks from several threads still each advance the rotation by one
//! (no two threads both take "the next" backend). The cursor is reduced modulo
//! the current slice length at every pick, so a slice that shrank or grew is
//! harmless.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{BackendView, Pick, Scheduler, is_candidate};

/// Round robin, ignoring weights.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// Index the next scan starts from (one past the last pick); may exceed
    /// the current slice length, it is taken modulo the length.
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for RoundRobin {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize> {
        let n = backends.len();
        if n == 0 {
            return None;
        }
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            let start = cur % n;
            let found = (start..n)
                .chain(0..start)
                .find(|&i| is_candidate(backends, req, i))?;
            match self.next.compare_exchange_weak(
                cur,
                found + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(found),
                // Another thread picked meanwhile: rescan from its position.
                Err(actual) => cur = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{backends, count_picks, pick_all};

    #[test]
    fn rotates_over_candidates_ignoring_weights() {
        let b = backends(&[(5, 0), (1, 0), (1, 0)]);
        let s = RoundRobin::new();
        assert_eq!(pick_all(&s, &b, 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn skips_drained_and_ineligible_fairly() {
        // 1 is drained, 3 is not eligible: rotation over 0, 2, 4 exactly.
        let b = backends(&[(1, 0), (0, 0), (1, 0), (1, 0), (1, 0)]);
        let s = RoundRobin::new();
        let eligible = |i: usize| i != 3;
        let counts = count_picks(&s, &b, &eligible, 300);
        assert_eq!(counts, vec![100, 0, 100, 0, 100]);
    }

    #[test]
    fn equal_distribution_despite_weights() {
        let b = backends(&[(10, 0), (1, 0), (3, 0), (7, 0)]);
        let s = RoundRobin::new();
        let counts = count_picks(&s, &b, &|_| true, 4000);
        assert_eq!(counts, vec![1000; 4]);
    }
}
