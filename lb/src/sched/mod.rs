//! Schedulers: which backend gets the next connection.
//!
//! Names and rules follow LVS (`ipvsadm(8)`, "-s, --scheduler"), plus `maglev`
//! (consistent hashing, Eisenbud et al., NSDI 2016) and `p2c` (Mitzenmacher's
//! power of two choices). One scheduler per file; each file's `//!` doc states
//! its rule and where it comes from:
//! - [`rr`]: round robin, weights ignored.
//! - [`wrr`]: nginx's smooth weighted round robin.
//! - [`lc`]: least connections (`lc`) and weighted least connections (`wlc`).
//! - [`sh`]: source hashing, weighted.
//! - [`maglev`]: Maglev lookup table, weighted.
//! - [`p2c`]: power of two (weighted) random choices.
//! - [`hash`]: the fixed SipHash-2-4 that `sh` and `maglev` use.
//!
//! Rules common to all of them:
//! - A backend is a *candidate* when its effective weight is > 0 and
//!   `(req.eligible)(i)` is true. Weight 0 means drained or down: never picked.
//!   No candidate → `None`.
//! - The `backends` slice may differ from one call to the next (health and
//!   drain change weights; the runtime may hand a different slice): nothing is
//!   sized once at construction, and no length change can panic.
//! - A scheduler is built on every config reload by [`new_scheduler`] and then
//!   shared by all data-plane threads behind an `Arc`, so `pick` takes `&self`;
//!   state lives in atomics, a short `Mutex` (`wrr`), or an atomically swapped
//!   table (`maglev`). `pick` runs once per connection and does not allocate,
//!   except `maglev` when the weighted backend set changed and its table is
//!   rebuilt.
use std::net::{IpAddr, SocketAddr};

pub mod hash;
pub mod lc;
pub mod maglev;
pub mod p2c;
pub mod rr;
pub mod sh;
pub mod wrr;

pub use lc::{LeastConn, WeightedLeastConn};
pub use maglev::Maglev;
pub use p2c::PowerOfTwo;
pub use rr::RoundRobin;
pub use sh::SourceHash;
pub use wrr::SmoothWeighted;

/// Scheduler names as in LVS (`ipvsadm -s`), plus `p2c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sh,
    Maglev,
    P2c,
}

impl SchedulerKind {
    /// Every scheduler, in the order the docs list them.
    pub const ALL: [SchedulerKind; 7] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Maglev,
        SchedulerKind::P2c,
    ];

    /// The name used in the config file (`scheduler = "wlc"`).
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Maglev => "maglev",
            SchedulerKind::P2c => "p2c",
        }
    }

    /// Inverse of [`SchedulerKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a scheduler sees of one backend at pick time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendView {
    pub addr: SocketAddr,
    /// Effective weight: configured weight, 0 when drained or down.
    pub weight: u32,
    /// Live connections to this backend.
    pub active: u32,
}

/// Per-connection input to a pick.
pub struct Pick<'a> {
    pub client_ip: IpAddr,
    /// False for backends that must not be chosen now (already tried for this
    /// connection, or at their max_connections) though their weight is > 0.
    pub eligible: &'a dyn Fn(usize) -> bool,
}

pub trait Scheduler: Send + Sync + std::fmt::Debug {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize>;
}

/// Builds the scheduler for `kind`. Cheap (no table is built until the first
/// pick), so reload can call it freely.
pub fn new_scheduler(kind: SchedulerKind) -> Box<dyn Scheduler> {
    match kind {
        SchedulerKind::Rr => Box::new(RoundRobin::new()),
        SchedulerKind::Wrr => Box::new(SmoothWeighted::new()),
        SchedulerKind::Lc => Box::new(LeastConn::new()),
        SchedulerKind::Wlc => Box::new(WeightedLeastConn::new()),
        SchedulerKind::Sh => Box::new(SourceHash::new()),
        SchedulerKind::Maglev => Box::new(Maglev::new()),
        SchedulerKind::P2c => Box::new(PowerOfTwo::new()),
    }
}

/// The candidate rule shared by every scheduler (see the module doc).
#[inline]
fn is_candidate(backends: &[BackendView], req: &Pick<'_>, i: usize) -> bool {
    backends[i].weight > 0 && (req.eligible)(i)
}

#[cfg(test)]
pub(crate) mod tests {
    //! Helpers shared by the schedulers' tests, and the rules every scheduler
    //! must keep, checked for all of them.
    use super::*;
    use proptest::prelude::*;

    /// Backends `198.18.0.{i+1}:8080` with the given (weight, active).
    pub(crate) fn backends(spec: &[(u32, u32)]) -> Vec<BackendView> {
        spec.iter()
            .enumerate()
            .map(|(i, &(weight, active))| BackendView {
                addr: SocketAddr::from(([198, 18, (i / 250) as u8, (i % 250 + 1) as u8], 8080)),
                weight,
                active,
            })
            .collect()
    }

    /// A spread of client IPs: the `k`-th is a fixed pseudo-random IPv4.
    pub(crate) fn nth_ip(k: u64) -> IpAddr {
        let mut z = k.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        IpAddr::from(((z >> 16) as u32).to_be_bytes())
    }

    pub(crate) fn pick_for(
        s: &dyn Scheduler,
        b: &[BackendView],
        client_ip: IpAddr,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        s.pick(
            b,
            &Pick {
                client_ip,
                eligible,
            },
        )
    }

    /// One pick from a fixed client.
    pub(crate) fn pick_one(
        s: &dyn Scheduler,
        b: &[BackendView],
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        pick_for(s, b, nth_ip(0), eligible)
    }

    /// `n` picks from a fixed client, everything eligible; all must succeed.
    pub(crate) fn pick_all(s: &dyn Scheduler, b: &[BackendView], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| pick_one(s, b, &|_| true).expect("a candidate exists"))
            .collect()
    }

    /// Picks per backend over `n` picks, the `k`-th from client `nth_ip(k)`.
    pub(crate) fn count_picks(
        s: &dyn Scheduler,
        b: &[BackendView],
        eligible: &dyn Fn(usize) -> bool,
        n: usize,
    ) -> Vec<usize> {
        let mut counts = vec![0; b.len()];
        for k in 0..n {
            let i = pick_for(s, b, nth_ip(k as u64), eligible).expect("a candidate exists");
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn names_round_trip_and_every_kind_builds() {
        for kind in SchedulerKind::ALL {
            assert_eq!(SchedulerKind::from_name(kind.name()), Some(kind));
            let s = new_scheduler(kind);
            let b = backends(&[(1, 0), (2, 0)]);
            assert!(pick_one(&*s, &b, &|_| true).is_some(), "{kind}");
            assert_eq!(pick_one(&*s, &[], &|_| true), None, "{kind}");
        }
    }

    /// One step of a proptest run: a slice and an eligibility mask.
    fn step() -> impl Strategy<Value = (Vec<(u32, u32)>, Vec<bool>, u64)> {
        (0usize..12).prop_flat_map(|n| {
            (
                proptest::collection::vec(
                    (prop_oneof![Just(0u32), 1u32..5, Just(u32::MAX)], 0u32..20),
                    n,
                ),
                proptest::collection::vec(any::<bool>(), n),
                any::<u64>(),
            )
        })
    }

    proptest! {
        // Each step usually changes the weighted set, so maglev rebuilds its
        // 65537-entry table: keep the case count moderate for debug builds.
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every scheduler, over a sequence of slices whose length, weights,
        /// loads and eligibility change from pick to pick: never a
        /// non-candidate, `None` exactly when there is no candidate.
        #[test]
        fn only_candidates_none_iff_none(steps in proptest::collection::vec(step(), 1..25)) {
            for kind in SchedulerKind::ALL {
                let s = new_scheduler(kind);
                for (spec, mask, ip) in &steps {
                    let b = backends(spec);
                    let eligible = |i: usize| mask[i];
                    let any = (0..b.len()).any(|i| b[i].weight > 0 && mask[i]);
                    let got = pick_for(&*s, &b, nth_ip(*ip), &eligible);
                    match got {
                        None => prop_assert!(!any, "{kind}: None with a candidate in {spec:?} {mask:?}"),
                        Some(i) => {
                            prop_assert!(i < b.len(), "{kind}: index {i} out of {}", b.len());
                            prop_assert!(b[i].weight > 0 && mask[i], "{kind}: picked non-candidate {i} in {spec:?} {mask:?}");
                        }
                    }
                }
            }
        }
    }
}
