//! `maglev`: consistent hashing with the Maglev lookup table (Eisenbud et al.,
//! "Maglev: A Fast and Reliable Software Network Load Balancer", NSDI 2016,
//! section 3.4).
//!
//! Why: two balancers (both active, or master and backup after a failover)
//! and one balancer across reloads and upgrades send a client to the same
//! backend, and when a backend leaves or joins, only about `1/N` of clients
//! move. Unlike `sh`, nothing here depends on the order of the backends in the
//! config, on the process, the build, or the platform.
//!
//! The table (paper, 3.4):
//! - Members: the backends with weight > 0, in a canonical order (sorted by
//!   address, then weight), so the slice order never matters.
//! - Size `M` ([`table_size`]): the smallest prime ≥ `max(65536, P)`, where
//!   `P` is `100 × N` rounded up to a power of two. So `M` = 65537 (the
//!   paper's own choice) for up to 655 weighted backends, then the first prime
//!   above 2^17, 2^18, … The paper requires `M` prime (every skip then
//!   generates a full permutation) and `M ≫ N` (entries per backend differ by
//!   at most one with equal weights, so shares are within `N/M`; 100 per
//!   backend keeps that under 1%). `M` must also *not* follow `N` closely:
//!   a key's entry is `key mod M`, so a new `M` remaps nearly every client.
//!   With this rule `M` changes only when `N` crosses a power-of-two band
//!   (656, 1311, … backends), not when one backend comes or goes in a pool
//!   of normal size. Memory: `4 × M` bytes, 256 KiB at 65537.
//! - Permutation of member `i`: `offset = h1(name) mod M`,
//!   `skip = h2(name) mod (M − 1) + 1`, `permutation[j] = (offset + j × skip) mod M`,
//!   where `name` is the address text (`addr.to_string()`, e.g.
//!   `"198.18.0.10:8080"`), `h1` is SipHash-2-4 under [`OFFSET_KEY`] and `h2`
//!   under [`SKIP_KEY`] ([`super::hash`] gives the keys and why a fixed hash).
//! - Population: members take turns, in canonical order; at its turn a member
//!   claims the next entry of its permutation that is still empty; stop when
//!   all `M` entries are full.
//! - Weights: the paper notes that weighted backends are obtained by changing
//!   the relative frequency of turns. Here turns come in rounds: in each
//!   round every member adds its weight to a credit and, in canonical order,
//!   takes a turn when its credit reaches the largest weight `w_max` (then
//!   pays `w_max` back). The heaviest member has a turn every round, a member
//!   of half that weight every other round, so entries (and clients) split in
//!   proportion to weight; with equal weights this is the paper's plain
//!   round-robin of turns. (Computed with a heap keyed by each member's next
//!   round, which gives the same order without idle rounds.)
//! - Cost: the build allocates `4 × M` bytes plus `O(N)`, takes `M` turns
//!   (`O(log N)` each) plus the permutation scans (`O(M log M)` expected,
//!   a few ms at M = 65537); it only happens when the set of
//!   (address, weight) pairs with weight > 0 changes.
//!
//! Disruption, measured (ignored test `measure_disruption`, 10 pools of
//! random addresses per size, each backend removed in turn): removing one of
//! N equal backends moves, in multiples of the minimum `1/N`, on average
//! 1.01 (N = 5), 1.03 (10), 1.07 (20), 1.22 (50); worst 1.03, 1.12, 1.19,
//! 1.34. The excess comes from the turn order shifting once a member is gone
//! (the paper reports the same effect); `M` far above `100 × N` would lower it.
//! Those figures exclude pools where two backends share a skip (probability
//! about N² / 131072 per pool, 0.3% at N = 20): their permutations are then
//! the same cycle a few steps apart, and any change to the pool shifts their
//! race for entries, moving up to about 2× the minimum (measured worst 2.0
//! over 240 changes; `skip_collision_disruption_is_bounded`). Inherent to the
//! paper's `offset + j × skip` permutations with `M = 65537`.
//!
//! Lookup: `key = SipHash-2-4(CLIENT_KEY, client IP octets)`
//! ([`super::hash::client_key`]), entry `key mod M`: O(1), no allocation.
//! If that backend is not eligible for this connection (at its limit, or
//! already tried), walk forward through the table to the next entry naming a
//! different, eligible backend: deterministic, and each client's fallback
//! order is its own (entries after its slot), so the load of a full backend
//! spreads over the others rather than all going to one neighbour.
//!
//! Caching: the scheduler keeps the last table with the slice it was built
//! for, in an `ArcSwapOption` (lock-free read on every pick). A pick compares
//! the slice's (address, weight) list with the cached one (O(N), no
//! allocation); on a difference it rebuilds under a mutex only if the
//! weighted set itself changed (a reordered slice just remaps indices).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use super::hash::{OFFSET_KEY, SKIP_KEY, client_key, siphash24};
use super::{BackendView, Pick, Scheduler};

/// The table size is at least the first prime above this (65537, the paper's).
pub const MIN_TABLE_BASE: usize = 1 << 16;

/// Entries per weighted backend, at least (the paper asks for `M ≫ N`).
pub const ENTRIES_PER_BACKEND: usize = 100;

/// The table size for `n` backends with weight > 0: the smallest prime
/// ≥ `max(65536, (100 × n).next_power_of_two())`; see the module doc for why
/// it moves in power-of-two bands rather than with `n`.
pub fn table_size(n: usize) -> usize {
    let mut m = n
        .saturating_mul(ENTRIES_PER_BACKEND)
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX / 2)
        .max(MIN_TABLE_BASE);
    while !is_prime(m) {
        m += 1;
    }
    m
}

fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// A built lookup table over a canonical member list.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Table {
    /// Backends with weight > 0, sorted by (address, weight).
    members: Vec<(SocketAddr, u32)>,
    /// `M` entries, each an index into `members`; empty iff no members.
    entries: Vec<u32>,
}

const EMPTY: u32 = u32::MAX;

impl Table {
    /// Populates the table for `members`, which must be in canonical order.
    pub(crate) fn build(members: Vec<(SocketAddr, u32)>) -> Table {
        let n = members.len();
        if n == 0 {
            return Table {
                members,
                entries: Vec::new(),
            };
        }
        let m = table_size(n);
        let m64 = m as u64;
        // Per member: current permutation position and skip.
        let mut pos = Vec::with_capacity(n);
        let mut skip = Vec::with_capacity(n);
        for (addr, _) in &members {
            let name = addr.to_string();
            pos.push((siphash24(OFFSET_KEY, name.as_bytes()) % m64) as usize);
            skip.push((siphash24(SKIP_KEY, name.as_bytes()) % (m64 - 1) + 1) as usize);
        }
        let w_max = members
            .iter()
            .map(|&(_, w)| u64::from(w))
            .max()
            .unwrap_or(1);
        // Turn order, see the module doc: member i's k-th turn (k ≥ 1) comes in
        // round ceil(k × w_max / w_i) − 1, and within a round members go in
        // canonical order. A min-heap of (round, member) yields exactly that
        // order without stepping through rounds where light members idle.
        // Cannot overflow: k ≤ M + 1 < 2^31 and w_max < 2^32.
        let round_of = |k: u64, w: u32| (k * w_max).div_ceil(u64::from(w)) - 1;
        let mut turns = vec![0u64; n];
        let mut queue: BinaryHeap<Reverse<(u64, usize)>> = members
            .iter()
            .enumerate()
            .map(|(i, &(_, w))| Reverse((round_of(1, w), i)))
            .collect();
        let mut entries = vec![EMPTY; m];
        let mut filled = 0usize;
        // Every turn fills one entry, so this runs M turns; each turn's scan
        // ends within M steps because `skip` is in 1..M and M is prime, so the
        // permutation visits every entry.
        while filled < m {
            // Cannot be empty: every member is pushed back after its turn.
            let Some(Reverse((_, i))) = queue.pop() else {
                break;
            };
            loop {
                let c = pos[i];
                // pos, skip < M: one conditional subtraction is `% M`.
                pos[i] += skip[i];
                if pos[i] >= m {
                    pos[i] -= m;
                }
                if entries[c] == EMPTY {
                    // Cannot truncate: n ≤ M < u32::MAX for any table we build.
                    entries[c] = i as u32;
                    filled += 1;
                    break;
                }
            }
            turns[i] += 1;
            queue.push(Reverse((round_of(turns[i] + 1, members[i].1), i)));
        }
        Table { members, entries }
    }

    #[cfg(test)]
    pub(crate) fn entry_addrs(&self) -> Vec<SocketAddr> {
        self.entries
            .iter()
            .map(|&e| self.members[e as usize].0)
            .collect()
    }
}

/// The cached table and how it maps onto the slice it was last used with.
#[derive(Debug)]
struct State {
    /// (address, weight) of every slice position as last seen.
    seen: Vec<(SocketAddr, u32)>,
    table: Arc<Table>,
    /// Member index → slice index for `seen`.
    to_slice: Vec<usize>,
}

impl State {
    fn matches(&self, backends: &[BackendView]) -> bool {
        self.seen.len() == backends.len()
            && self
                .seen
                .iter()
                .zip(backends)
                .all(|(&(addr, w), b)| addr == b.addr && w == b.weight)
    }
}

/// Maglev consistent hashing, weighted.
#[derive(Debug, Default)]
pub struct Maglev {
    state: ArcSwapOption<State>,
    /// Serialises rebuilds so that a change seen by many threads at once
    /// builds the table once.
    rebuild: Mutex<()>,
}

impl Maglev {
    /// Cheap: the table is built at the first pick.
    pub fn new() -> Self {
        Self::default()
    }

    /// Brings the cached state in line with `backends` and returns it.
    fn refresh(&self, backends: &[BackendView]) -> Arc<State> {
        let _guard = self.rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.state.load_full();
        if let Some(s) = &current
            && s.matches(backends)
        {
            return Arc::clone(s);
        }
        let mut weighted: Vec<(SocketAddr, u32, usize)> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.weight > 0)
            .map(|(i, b)| (b.addr, b.weight, i))
            .collect();
        weighted.sort_unstable();
        let members: Vec<(SocketAddr, u32)> = weighted.iter().map(|&(a, w, _)| (a, w)).collect();
        let table = match current {
            Some(s) if s.table.members == members => Arc::clone(&s.table),
            _ => Arc::new(Table::build(members)),
        };
        let state = Arc::new(State {
            seen: backends.iter().map(|b| (b.addr, b.weight)).collect(),
            table,
            to_slice: weighted.iter().map(|&(_, _, i)| i).collect(),
        });
        self.state.store(Some(Arc::clone(&state)));
        state
    }

    #[cfg(test)]
    fn table(&self) -> Option<Arc<Table>> {
        self.state.load_full().map(|s| Arc::clone(&s.table))
    }
}

impl Scheduler for Maglev {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize> {
        let guard = self.state.load();
        let fresh;
        let state: &State = match guard.as_deref() {
            Some(s) if s.matches(backends) => s,
            _ => {
                fresh = self.refresh(backends);
                &fresh
            }
        };
        lookup(state, req)
    }
}

fn lookup(state: &State, req: &Pick<'_>) -> Option<usize> {
    let entries = &state.table.entries;
    let m = entries.len();
    if m == 0 {
        return None;
    }
    let start = (client_key(req.client_ip) % m as u64) as usize;
    // Members already found ineligible (the first 128; others are simply
    // asked again), so a walk asks `eligible` about each backend at most once.
    let mut rejected: u128 = 0;
    for k in 0..m {
        let member = entries[(start + k) % m] as usize;
        if member < 128 && rejected & (1 << member) != 0 {
            continue;
        }
        let i = state.to_slice[member];
        // Members have weight > 0 in this slice (the state matches it).
        if (req.eligible)(i) {
            return Some(i);
        }
        if member < 128 {
            rejected |= 1 << member;
        }
    }
    // No entry names an eligible backend. A member can own no entry only
    // when its weight is below 1/M of the largest; give it its chance, in
    // canonical order.
    state.to_slice.iter().copied().find(|&i| (req.eligible)(i))
}

#[cfg(test)]
mod tests;
