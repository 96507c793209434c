//! `sh`: source hashing: a client IP always goes to the same backend while
//! the set of weighted backends stays the same.
//!
//! LVS `ip_vs_sh` (`ipvsadm(8)`: "assigns jobs to servers through looking up
//! a statically assigned hash table by their source IP addresses") fills a
//! 256-bucket table, giving each real server `weight` consecutive buckets, and
//! with the `sh-fallback` flag moves on to another server when the hashed one
//! is unavailable. We do the same without a table, which needs no state and no
//! allocation:
//!
//! 1. Lay the backends with weight > 0 end to end on a line of length
//!    `W = Σ weight`, in slice order (the config's order), each owning a
//!    segment as long as its weight.
//! 2. The client's point is `client_key(ip) % W` ([`super::hash::client_key`]:
//!    SipHash-2-4 of the IP octets, fixed keys); the backend owning that
//!    segment is the hashed backend. So the share of clients a backend gets
//!    is its weight over `W` (the `u64 % W` bias is below `W / 2^64`).
//! 3. If the hashed backend is not eligible for this connection (at its
//!    connection limit, or already tried), take the next backend after it in
//!    slice order, wrapping, that is a candidate: deterministic, like LVS's
//!    fallback, so retries of one client follow the same order.
//!
//! Stability: the mapping depends only on the client IP and the ordered list
//! of weighted backends; it is the same on every pick, thread and reload that
//! keeps that list. When a backend's weight changes or it goes down or is
//! drained (weight 0), `W` changes and most clients move, as with LVS's table
//! rebuild. Use `maglev` when clients should stay put across such changes.

use super::hash::client_key;
use super::{BackendView, Pick, Scheduler, is_candidate};

/// Source hashing, weighted.
#[derive(Debug, Default)]
pub struct SourceHash;

impl SourceHash {
    pub fn new() -> Self {
        SourceHash
    }
}

impl Scheduler for SourceHash {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize> {
        let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut point = client_key(req.client_ip) % total;
        // Cannot stay None: `point < total`, so some weighted backend's
        // segment contains it.
        let hashed = backends.iter().position(|b| {
            let w = u64::from(b.weight);
            if point < w {
                true
            } else {
                point -= w;
                false
            }
        })?;
        let n = backends.len();
        (hashed..n)
            .chain(0..hashed)
            .find(|&i| is_candidate(backends, req, i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::tests::{backends, count_picks, nth_ip, pick_for};

    #[test]
    fn same_ip_same_backend() {
        let b = backends(&[(1, 0), (1, 3), (2, 0), (1, 9)]);
        let s = SourceHash::new();
        for k in 0..200 {
            let ip = nth_ip(k);
            let first = pick_for(&s, &b, ip, &|_| true);
            // Load changes do not matter, only the weighted set.
            let mut busier = b.clone();
            busier[0].active += 100;
            for _ in 0..3 {
                assert_eq!(pick_for(&s, &busier, ip, &|_| true), first);
            }
            // A fresh scheduler (as after a reload) agrees.
            assert_eq!(pick_for(&SourceHash::new(), &b, ip, &|_| true), first);
        }
    }

    #[test]
    fn spreads_by_weight() {
        let b = backends(&[(1, 0), (2, 0), (0, 0), (5, 0)]);
        let s = SourceHash::new();
        let n = 40_000;
        let counts = count_picks(&s, &b, &|_| true, n);
        assert_eq!(counts[2], 0);
        // Expected shares 1/8, 2/8, 5/8; 3% absolute tolerance is > 10 sigma
        // at 40k keys.
        for (i, w) in [(0, 1.0), (1, 2.0), (3, 5.0)] {
            let share = counts[i] as f64 / n as f64;
            assert!((share - w / 8.0).abs() < 0.03, "{counts:?}");
        }
    }

    #[test]
    fn ineligible_falls_to_next_only_for_its_clients() {
        let b = backends(&[(1, 0), (1, 0), (1, 0), (1, 0)]);
        let s = SourceHash::new();
        for k in 0..500 {
            let ip = nth_ip(k);
            let normal = pick_for(&s, &b, ip, &|_| true).unwrap();
            let with_1_full = pick_for(&s, &b, ip, &|i| i != 1).unwrap();
            if normal == 1 {
                assert_eq!(with_1_full, 2);
            } else {
                assert_eq!(with_1_full, normal);
            }
        }
    }
}
