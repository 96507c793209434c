//! Client persistence: which backend a client (or its network) is pinned to.
//!
//! The rules are IPVS's persistent services (`ipvsadm -p`, keepalived
//! `persistence_timeout`), whose "connection templates" this table plays:
//! - A client's key is its address masked to the service's granularity
//!   (IPv4 by a netmask, IPv6 by a prefix length); an IPv4-mapped IPv6 peer
//!   (`::ffff:a.b.c.d`, a dual-stack listener) is the IPv4 client it is.
//! - An entry maps a key to a backend. It lives while connections that
//!   joined it are open, and until `timeout` after the last of them closed
//!   (IPVS: the template's timer runs once its controlled connections are
//!   gone). An expired entry is dropped lazily, at the next lookup of its
//!   key, or by [`Table::sweep`], whichever comes first.
//! - Whether the backend may still take the client (up, not drained, still
//!   in the config) is the caller's to say: it [`Table::forget`]s an entry
//!   it will not use, and the sweep drops entries the caller's `keep`
//!   rejects. Connections still open on a forgotten entry hold a stale
//!   [`Ticket`] (its serial no longer matches) whose release is a no-op.
//! - Bounded: at most `max_entries` entries. When full, a new key evicts,
//!   within its shard, an expired entry if there is one, else the idle entry
//!   (no open connection) seen longest ago; with neither it is not
//!   remembered (counted in `refused_full`). Nothing grows beyond the bound
//!   and nothing blocks but a shard's lock, held for one map operation (a
//!   scan of one shard when full, a shard's `retain` in a sweep).
//!
//! Cost: the table is 64 `Mutex<HashMap>` shards chosen by the key, so the
//! data-plane threads rarely meet on one lock, and no lock is held across an
//! await (every method is synchronous). A connection takes a shard lock once
//! at accept on a hit (twice on a miss: lookup, then remember) and once at
//! close. A service without persistence has no table: nothing is touched.
//! The map hashes with std's keyed SipHash, since keys are client-chosen.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use metrics::Gauge;

use crate::config::Persistence;
use crate::runtime::state::Count;
use crate::telemetry::names;

#[cfg(test)]
mod tests;

/// Shards of a table: a power of two, so a key's shard is a mask away.
pub const SHARDS: usize = 64;

/// A client key: the masked address, IPv4 as IPv4-mapped IPv6.
pub type ClientKey = u128;

/// One client key's pin. `Copy` and small: see [`ENTRY_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// The backend, by its address: with the service this is the backend's
    /// identity ([`crate::runtime::BackendKey`]), so it survives reloads.
    backend: SocketAddr,
    /// Connections open on this entry.
    active: u32,
    /// Tells this entry from a later one of the same key, for [`Ticket`]s.
    serial: u32,
    /// When the last connection on it closed (or it was made), in ms since
    /// the table's epoch.
    last_seen_ms: u64,
}

/// Bytes of one stored entry, key and value, before the map's overhead
/// (docs/operations.md states the memory bound from it).
pub const ENTRY_BYTES: usize = std::mem::size_of::<(ClientKey, Entry)>();

/// A connection's hold on an entry: given by [`Table::lookup`] and
/// [`Table::remember`], handed back by [`Table::leave`] or [`Table::forget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    key: ClientKey,
    serial: u32,
}

/// What [`Table::lookup`] found: the pinned backend, and the caller's
/// ticket (it has joined the entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub backend: SocketAddr,
    pub ticket: Ticket,
}

/// Counters of one table; the connection path counts hits and misses.
#[derive(Debug)]
pub struct Stats {
    /// New connections sent to the backend their key was pinned to.
    pub hits: Count,
    /// New connections that were scheduled afresh (no entry, an entry whose
    /// backend could not take them, or an overflow past max_connections).
    pub misses: Count,
    /// Idle, unexpired entries evicted to make room for a new key.
    pub evictions: Count,
    /// New keys not remembered: the table was full and nothing evictable.
    pub refused_full: Count,
    /// Entries stored (expired ones not yet dropped included), as of the
    /// last [`Table::sweep`].
    entries: Gauge,
}

/// One service's persistence table.
#[derive(Debug)]
pub struct Table {
    params: Persistence,
    timeout_ms: u64,
    v4_mask: u32,
    v6_mask: u128,
    epoch: Instant,
    shards: Box<[Mutex<HashMap<ClientKey, Entry>>]>,
    /// Entries stored, over all shards: the bound is checked against it.
    len: AtomicUsize,
    next_serial: AtomicU32,
    pub stats: Stats,
}

impl Table {
    /// An empty table for `service` with `params`; `now` is its epoch (all
    /// times given to it later must not be before).
    pub fn new(service: &str, params: Persistence, now: Instant) -> Table {
        let labels = [("service", service.to_string())];
        let stats = Stats {
            hits: Count::new(metrics::counter!(names::PERSIST_HITS, &labels)),
            misses: Count::new(metrics::counter!(names::PERSIST_MISSES, &labels)),
            evictions: Count::new(metrics::counter!(names::PERSIST_EVICTIONS, &labels)),
            refused_full: Count::new(metrics::counter!(names::PERSIST_REFUSED_FULL, &labels)),
            entries: metrics::gauge!(names::PERSIST_ENTRIES, &labels),
        };
        stats.entries.set(0.0);
        Table {
            params,
            timeout_ms: params.timeout.as_millis().min(u128::from(u64::MAX)) as u64,
            v4_mask: u32::MAX
                .checked_shl(32 - u32::from(params.v4_prefix))
                .unwrap_or(0),
            v6_mask: u128::MAX
                .checked_shl(128 - u32::from(params.v6_prefix))
                .unwrap_or(0),
            epoch: now,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            next_serial: AtomicU32::new(0),
            stats,
        }
    }

    /// The settings this table was made with.
    pub fn params(&self) -> &Persistence {
        &self.params
    }

    /// Entries stored now, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of a client at `ip`: masked to the granularity.
    pub fn key(&self, ip: IpAddr) -> ClientKey {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => {
                let masked = u32::from(v4) & self.v4_mask;
                (0xffff_u128 << 32) | u128::from(masked)
            }
            IpAddr::V6(v6) => u128::from(v6) & self.v6_mask,
        }
    }

    /// The backend `key` is pinned to, if its entry is live; the caller
    /// joins the entry (its connections now include the caller's) and must
    /// hand the ticket back. An expired entry found here is dropped.
    pub fn lookup(&self, key: ClientKey, now: Instant) -> Option<Pinned> {
        let now = self.ms(now);
        let mut shard = self.shard(key);
        let e = shard.get_mut(&key)?;
        if self.expired(e, now) {
            shard.remove(&key);
            self.shrunk(1);
            return None;
        }
        e.active += 1;
        Some(Pinned {
            backend: e.backend,
            ticket: Ticket {
                key,
                serial: e.serial,
            },
        })
    }

    /// Pins `key` to `backend` with the caller's connection on it. An entry
    /// of `key` on the same backend is joined; one on another backend is
    /// replaced (its connections' tickets go stale). None when the table is
    /// full and nothing could be evicted (counted in `refused_full`).
    pub fn remember(&self, key: ClientKey, backend: SocketAddr, now: Instant) -> Option<Ticket> {
        let now = self.ms(now);
        let mut shard = self.shard(key);
        if let Some(e) = shard.get_mut(&key)
            && !self.expired(e, now)
            && e.backend == backend
        {
            e.active += 1;
            return Some(Ticket {
                key,
                serial: e.serial,
            });
        }
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            backend,
            active: 1,
            serial,
            last_seen_ms: now,
        };
        if let Some(old) = shard.get_mut(&key) {
            *old = entry;
            return Some(Ticket { key, serial });
        }
        // The bound is exact: a slot is reserved before the insert, and a
        // full table swaps an evicted entry for the new one.
        let max = self.params.max_entries as usize;
        let reserved = self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !reserved && !self.evict_one(&mut shard, now) {
            self.stats.refused_full.add(1);
            return None;
        }
        shard.insert(key, entry);
        Some(Ticket { key, serial })
    }

    /// A connection holding `ticket` closed: the entry's timer starts again
    /// from `now`. A stale ticket (the entry was forgotten or replaced since)
    /// changes nothing.
    pub fn leave(&self, ticket: Ticket, now: Instant) {
        let now = self.ms(now);
        let mut shard = self.shard(ticket.key);
        if let Some(e) = shard.get_mut(&ticket.key)
            && e.serial == ticket.serial
        {
            e.active = e.active.saturating_sub(1);
            e.last_seen_ms = now;
        }
    }

    /// Drops the entry `ticket` was given for (its backend cannot take the
    /// client any more); a stale ticket changes nothing.
    pub fn forget(&self, ticket: Ticket) {
        let mut shard = self.shard(ticket.key);
        if shard
            .get(&ticket.key)
            .is_some_and(|e| e.serial == ticket.serial)
        {
            shard.remove(&ticket.key);
            self.shrunk(1);
        }
    }

    /// Drops, in the shards `range` (indices below [`SHARDS`]), the expired
    /// entries and those whose backend `keep` rejects. Returns how many
    /// were dropped. Each shard's lock is held for its own pass only.
    pub fn sweep(
        &self,
        range: std::ops::Range<usize>,
        now: Instant,
        keep: impl Fn(SocketAddr) -> bool,
    ) -> usize {
        let now = self.ms(now);
        let mut dropped = 0;
        for i in range.start..range.end.min(SHARDS) {
            let mut shard = lock(&self.shards[i]);
            let before = shard.len();
            shard.retain(|_, e| !self.expired(e, now) && keep(e.backend));
            dropped += before - shard.len();
        }
        self.shrunk(dropped);
        // The gauge is set here, from the count, rather than moved on every
        // insert and removal: a table replaced by a reload may still be
        // touched by connections of the old snapshot, and must not move the
        // series its successor now owns.
        self.stats.entries.set(self.len() as f64);
        dropped
    }

    /// Calls `f` with the backend of every live (unexpired) entry, shard by
    /// shard; for status. Returns how many there were.
    pub fn for_each_live(&self, now: Instant, mut f: impl FnMut(SocketAddr)) -> usize {
        let now = self.ms(now);
        let mut n = 0;
        for shard in self.shards.iter() {
            for e in lock(shard).values().filter(|e| !self.expired(e, now)) {
                f(e.backend);
                n += 1;
            }
        }
        n
    }

    /// Bytes the maps hold now, from their bucket counts (hashbrown: one
    /// control byte per bucket plus a 16-byte group tail, buckets = usable
    /// capacity × 8/7 rounded to a power of two); the shards' fixed part left out.
    pub fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let cap = lock(s).capacity();
                if cap == 0 {
                    return 0;
                }
                let buckets = if cap < 8 { cap + 1 } else { cap * 8 / 7 };
                let buckets = buckets.next_power_of_two();
                buckets * (ENTRY_BYTES + 1) + 16
            })
            .sum()
    }

    /// Makes room in a full table by removing from `shard`: an expired
    /// entry first, else the idle entry seen longest ago (an eviction).
    /// The count is left alone: the caller puts its new entry in the place.
    /// False if every entry of the shard has open connections.
    fn evict_one(&self, shard: &mut HashMap<ClientKey, Entry>, now: u64) -> bool {
        let victim = shard
            .iter()
            .filter(|(_, e)| e.active == 0)
            .min_by_key(|(_, e)| (!self.expired(e, now), e.last_seen_ms))
            .map(|(k, e)| (*k, self.expired(e, now)));
        let Some((key, expired)) = victim else {
            return false;
        };
        shard.remove(&key);
        if !expired {
            self.stats.evictions.add(1);
        }
        true
    }

    fn expired(&self, e: &Entry, now_ms: u64) -> bool {
        e.active == 0 && now_ms.saturating_sub(e.last_seen_ms) >= self.timeout_ms
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn shard(&self, key: ClientKey) -> MutexGuard<'_, HashMap<ClientKey, Entry>> {
        // Fold the key so that keys differing only in high bits (v6
        // networks) or low bits (v4 hosts) still spread over the shards.
        let folded = (key as u64) ^ ((key >> 64) as u64);
        let h = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58;
        lock(&self.shards[h as usize & (SHARDS - 1)])
    }

    fn shrunk(&self, n: usize) {
        if n > 0 {
            self.len.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// A poisoned shard is still a consistent map (every update is one map
/// operation), so a panic elsewhere must not stop the data plane.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
