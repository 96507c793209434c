//! One connection's part in its service's persistence table
//! ([`crate::persist`]): which backend to try first, and the hold on the
//! client's entry that keeps it alive until the connection closes.
//!
//! Rules (IPVS's persistent services, with this balancer's retries):
//! - A known client whose backend is in the config, up and not drained (in
//!   panic mode: not drained) goes there first: a hit.
//! - Pinned backend down, drained or gone: the entry is dropped, the client
//!   is scheduled afresh, and the new backend is remembered.
//! - Pinned backend at its `max_connections`: this one connection overflows
//!   to a fresh pick and is not remembered; the client stays pinned (HAProxy
//!   would queue it on the server; this balancer has no queue, and
//!   refusing would fail a client another backend can serve).
//! - Pinned backend refuses the connect and a retry lands elsewhere: the
//!   backend that took it is remembered instead (the old one just failed).
//! - Every connection that ends up on a client's entry holds it until it
//!   closes, so the entry's timer starts from the last close.

use std::net::SocketAddr;
use std::time::Instant;

use crate::persist::{ClientKey, Table, Ticket};
use crate::runtime::snapshot::ServiceRt;

/// A connection's persistence state; created only when the service has a
/// table (persistence off costs nothing). Dropping it releases the entry.
pub(super) struct Sticky<'a> {
    table: &'a Table,
    key: ClientKey,
    /// The entry this connection is counted on, if any.
    ticket: Option<Ticket>,
    /// The pinned backend to try first (taken by the first attempt).
    pub first: Option<usize>,
    /// Index the entry pointed at when this connection joined it.
    pinned: Option<usize>,
    /// The client is pinned to a full backend: this connection goes
    /// elsewhere and is not remembered.
    overflow: bool,
}

impl<'a> Sticky<'a> {
    /// Looks the client up; None when the service has no persistence.
    pub(super) fn start(
        svc: &'a ServiceRt,
        peer: SocketAddr,
        panic: bool,
        has_room: impl Fn(usize) -> bool,
    ) -> Option<Sticky<'a>> {
        let table = svc.persist.as_deref()?;
        let now = Instant::now();
        let key = table.key(peer.ip());
        let mut s = Sticky {
            table,
            key,
            ticket: None,
            first: None,
            pinned: None,
            overflow: false,
        };
        if let Some(p) = table.lookup(key, now) {
            match svc.pinnable(p.backend, panic) {
                Some(i) if has_room(i) => {
                    s.first = Some(i);
                    s.pinned = Some(i);
                    s.ticket = Some(p.ticket);
                }
                Some(_) => {
                    table.leave(p.ticket, now);
                    s.overflow = true;
                }
                None => table.forget(p.ticket),
            }
        }
        Some(s)
    }

    /// The connection was established to backend `i` at `addr`.
    pub(super) fn connected(&mut self, i: usize, addr: SocketAddr) {
        let stats = &self.table.stats;
        if self.pinned == Some(i) && self.ticket.is_some() {
            stats.hits.add(1);
            return;
        }
        stats.misses.add(1);
        if self.overflow {
            return;
        }
        // Any ticket held is on an entry whose backend just failed; the
        // new pin replaces that entry, so it goes stale without a release.
        self.ticket = self.table.remember(self.key, addr, Instant::now());
    }
}

impl Drop for Sticky<'_> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.table.leave(t, Instant::now());
        }
    }
}
