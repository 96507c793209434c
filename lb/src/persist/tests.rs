//! The table with simulated time: every `now` is the epoch plus a chosen
//! offset, nothing sleeps.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;

const A: &str = "127.0.0.1:8081";
const B: &str = "127.0.0.1:8082";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn params(timeout_ms: u64, v4: u8, v6: u8, max: u32) -> Persistence {
    Persistence {
        timeout: Duration::from_millis(timeout_ms),
        v4_prefix: v4,
        v6_prefix: v6,
        max_entries: max,
    }
}

/// A table with a 300 s timeout (`/32`, `/128`, 100 entries), its epoch, and
/// a clock: `at(s)` is `s` seconds after the epoch.
fn table() -> (Table, impl Fn(u64) -> Instant) {
    let t0 = Instant::now();
    let t = Table::new("svc", params(300_000, 32, 128, 100), t0);
    (t, move |s| t0 + Duration::from_secs(s))
}

#[test]
fn remembered_client_is_found_with_its_backend() {
    let (t, at) = table();
    let k = t.key(ip("198.18.0.7"));
    assert_eq!(t.lookup(k, at(0)), None, "unknown client");
    let ticket = t.remember(k, addr(A), at(0)).expect("room");
    assert_eq!(t.len(), 1);
    let p = t.lookup(k, at(1)).expect("known client");
    assert_eq!(p.backend, addr(A));
    assert_eq!(p.ticket, ticket, "the same entry");
    assert_eq!(
        t.lookup(t.key(ip("198.18.0.8")), at(1)),
        None,
        "another client"
    );
}

#[test]
fn open_connections_keep_the_entry_past_the_timeout() {
    let (t, at) = table();
    let k = t.key(ip("198.18.0.7"));
    let first = t.remember(k, addr(A), at(0)).unwrap();
    // Still open an hour later: the timer has not started.
    let second = t
        .lookup(k, at(3600))
        .expect("kept while a connection is open");
    t.leave(first, at(3600));
    // One connection (the second) is still open.
    assert!(t.lookup(k, at(7200)).is_some_and(|p| p.backend == addr(A)));
    t.leave(second.ticket, at(7200));
    t.leave(second.ticket, at(7200)); // the lookup just above joined too
    assert_eq!(t.for_each_live(at(7200 + 299), |_| {}), 1);
    assert!(
        t.lookup(k, at(7200 + 299)).is_some(),
        "299 s after the last close"
    );
}

#[test]
fn entry_expires_timeout_after_the_last_close() {
    let (t, at) = table();
    let k = t.key(ip("198.18.0.7"));
    let ticket = t.remember(k, addr(A), at(0)).unwrap();
    t.leave(ticket, at(10));
    assert_eq!(t.for_each_live(at(309), |_| {}), 1, "alive until 10 + 300");
    assert_eq!(t.for_each_live(at(310), |_| {}), 0, "expired at 10 + 300");
    assert_eq!(t.len(), 1, "expired, not dropped yet");
    assert_eq!(t.lookup(k, at(310)), None);
    assert_eq!(t.len(), 0, "the lookup dropped it");
    // The next connection is scheduled afresh and remembered anew.
    let again = t.remember(k, addr(B), at(311)).unwrap();
    assert_ne!(again, ticket);
    assert_eq!(t.lookup(k, at(311)).unwrap().backend, addr(B));
}

#[test]
fn sweep_drops_expired_entries_and_rejected_backends() {
    let (t, at) = table();
    let (c1, c2, c3) = (
        t.key(ip("198.18.0.1")),
        t.key(ip("198.18.0.2")),
        t.key(ip("198.18.0.3")),
    );
    let idle = t.remember(c1, addr(A), at(0)).unwrap();
    t.leave(idle, at(0));
    t.remember(c2, addr(A), at(0)).unwrap(); // open
    t.remember(c3, addr(B), at(0)).unwrap(); // open, on B
    assert_eq!(
        t.sweep(0..SHARDS, at(299), |_| true),
        0,
        "nothing expired yet"
    );
    assert_eq!(t.sweep(0..SHARDS, at(300), |_| true), 1, "c1 expired");
    // B drained: its client is released even with a connection open.
    assert_eq!(t.sweep(0..SHARDS, at(300), |b| b != addr(B)), 1);
    assert_eq!(t.len(), 1);
    assert!(t.lookup(c3, at(300)).is_none());
    assert_eq!(t.lookup(c2, at(300)).unwrap().backend, addr(A));
}

#[test]
fn forget_drops_the_entry_and_old_tickets_go_stale() {
    let (t, at) = table();
    let k = t.key(ip("198.18.0.7"));
    let on_a = t.remember(k, addr(A), at(0)).unwrap();
    // A went down: the caller forgets the entry and pins the client anew.
    let p = t.lookup(k, at(1)).unwrap();
    t.forget(p.ticket);
    assert_eq!(t.len(), 0);
    let on_b = t.remember(k, addr(B), at(1)).unwrap();
    // The old connection closing does not touch the new entry.
    t.leave(on_a, at(2));
    t.forget(on_a);
    t.leave(on_b, at(2));
    assert_eq!(t.for_each_live(at(301), |_| {}), 1, "B's timer runs from 2");
    assert_eq!(t.for_each_live(at(302), |_| {}), 0);
}

#[test]
fn remembering_another_backend_replaces_the_entry() {
    let (t, at) = table();
    let k = t.key(ip("198.18.0.7"));
    let a = t.remember(k, addr(A), at(0)).unwrap();
    let a2 = t.remember(k, addr(A), at(0)).unwrap();
    assert_eq!(a, a2, "same backend: joined");
    let b = t.remember(k, addr(B), at(0)).unwrap();
    assert_ne!(a, b);
    assert_eq!(t.len(), 1);
    t.leave(b, at(5));
    // a and a2 are stale: their leaves do not keep or restart the entry.
    t.leave(a, at(100));
    assert_eq!(t.for_each_live(at(305), |_| {}), 0);
}

#[test]
fn v4_granularity_groups_a_24() {
    let t0 = Instant::now();
    let t = Table::new("svc", params(1000, 24, 128, 10), t0);
    assert_eq!(t.key(ip("198.18.5.1")), t.key(ip("198.18.5.254")));
    assert_ne!(t.key(ip("198.18.5.1")), t.key(ip("198.18.6.1")));
    // A dual-stack listener's v4-mapped peer is that IPv4 client.
    assert_eq!(t.key(ip("::ffff:198.18.5.9")), t.key(ip("198.18.5.1")));
    t.remember(t.key(ip("198.18.5.1")), addr(A), t0).unwrap();
    assert_eq!(
        t.lookup(t.key(ip("198.18.5.77")), t0).unwrap().backend,
        addr(A)
    );
    // /32 (the default) keeps each client alone.
    let alone = Table::new("svc", params(1000, 32, 128, 10), t0);
    assert_ne!(alone.key(ip("198.18.5.1")), alone.key(ip("198.18.5.2")));
    assert_eq!(
        params(1, 24, 128, 1).v4_netmask().to_string(),
        "255.255.255.0"
    );
    assert_eq!(params(1, 0, 128, 1).v4_netmask().to_string(), "0.0.0.0");
}

#[test]
fn v6_granularity_groups_a_64() {
    let t0 = Instant::now();
    let t = Table::new("svc", params(1000, 32, 64, 10), t0);
    assert_eq!(
        t.key(ip("2001:db8:1:2::1")),
        t.key(ip("2001:db8:1:2:ffff::9"))
    );
    assert_ne!(t.key(ip("2001:db8:1:2::1")), t.key(ip("2001:db8:1:3::1")));
    // Never equal to an IPv4 client's key.
    assert_ne!(t.key(ip("::")), t.key(ip("0.0.0.0")));
    let alone = Table::new("svc", params(1000, 32, 128, 10), t0);
    assert_ne!(alone.key(ip("2001:db8::1")), alone.key(ip("2001:db8::2")));
}

#[test]
fn a_full_table_evicts_expired_then_idle_and_refuses_when_all_are_open() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    // One entry: every key shares the bound, whatever its shard.
    let t = Table::new("svc", params(60_000, 32, 128, 1), t0);
    let (c1, c2) = (t.key(ip("198.18.0.1")), t.key(ip("198.18.0.2")));
    let open = t.remember(c1, addr(A), at(0)).unwrap();
    assert_eq!(
        t.remember(c2, addr(A), at(0)),
        None,
        "full, c1 has a connection open"
    );
    assert_eq!(t.stats.refused_full.get(), 1);
    assert_eq!(t.len(), 1);
    t.leave(open, at(1));
    // c1 idle but not expired: a key of c1's shard may evict it (eviction
    // looks within the new key's shard).
    let c1_shard = shard_of(c1);
    let other = (4..=255u8)
        .map(|n| t.key(IpAddr::from([198, 18, 0, n])))
        .find(|k| shard_of(*k) == c1_shard)
        .expect("some /32 shares c1's shard");
    assert!(
        t.remember(other, addr(B), at(2)).is_some(),
        "idle c1 evicted"
    );
    assert_eq!(t.stats.evictions.get(), 1);
    assert_eq!(t.len(), 1);
    assert_eq!(t.lookup(c1, at(2)), None);
    // An expired entry makes room without counting as an eviction.
    let p = t.lookup(other, at(2)).unwrap();
    t.leave(p.ticket, at(2));
    t.leave(p.ticket, at(2));
    let back = (4..=255u8)
        .map(|n| t.key(IpAddr::from([198, 18, 1, n])))
        .find(|k| shard_of(*k) == c1_shard)
        .unwrap();
    assert!(t.remember(back, addr(A), at(100)).is_some());
    assert_eq!(t.stats.evictions.get(), 1, "expired, not evicted");
    assert_eq!(t.len(), 1, "never more than max_entries");
}

/// The shard a key lands in (the same arithmetic as `Table::shard`).
fn shard_of(key: ClientKey) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64);
    (folded.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize & (SHARDS - 1)
}

#[test]
fn the_bound_holds_over_many_clients_and_memory_is_as_documented() {
    let t0 = Instant::now();
    let max = 65_536u32;
    let t = Table::new("svc", params(60_000, 32, 128, max), t0);
    // More clients than fit, every one still connected (each refusal scans
    // a shard, so the excess is kept small).
    let extra = 1000;
    let mut kept = 0;
    for n in 0..(max + extra) {
        let k = t.key(IpAddr::from((0x0a00_0000u32 + n).to_be_bytes()));
        kept += usize::from(t.remember(k, addr(A), t0).is_some());
    }
    assert_eq!(kept, max as usize);
    assert_eq!(t.len(), max as usize);
    assert_eq!(t.stats.refused_full.get(), u64::from(extra));
    assert_eq!(
        ENTRY_BYTES, 64,
        "docs/operations.md states 64 bytes per entry"
    );
    // docs/operations.md: at most 9 MiB for a full default table.
    let heap = t.heap_bytes();
    eprintln!(
        "{max} entries: {heap} bytes in the maps, {} per entry",
        heap / max as usize
    );
    assert!(heap <= 9 << 20, "{heap} bytes");
}
