//! A new master's gratuitous ARPs, in their own task so the instance loop
//! never waits on them: `repeat` ARPs per VIP spaced `interval`, again after
//! `delay`, then every `refresh` if set (keepalived's `garp_master_*`). The
//! task ends when `stop` is cancelled, which the instance does when it
//! removes the VIPs: a node that lost mastership never advertises a VIP it
//! no longer holds.

use std::net::Ipv4Addr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::edge::Edge;
use crate::config::GarpConfig;

/// Spawns the bursts for `vips` (nothing when the edge cannot send ARP).
pub fn spawn<E: Edge>(
    edge: Arc<E>,
    g: GarpConfig,
    vips: Vec<Ipv4Addr>,
    name: String,
    stop: CancellationToken,
) {
    if !edge.can_garp() {
        return;
    }
    tokio::spawn(async move {
        let burst = || async {
            for i in 0..g.repeat {
                for vip in &vips {
                    if let Err(e) = edge.garp(*vip) {
                        tracing::debug!(instance = %name, %vip, error = %e, "gratuitous ARP not sent");
                    }
                }
                if i + 1 < g.repeat && !g.interval.is_zero() {
                    tokio::time::sleep(g.interval).await;
                }
            }
        };
        let all = async {
            burst().await;
            if !g.delay.is_zero() {
                tokio::time::sleep(g.delay).await;
                burst().await;
            }
            if !g.refresh.is_zero() {
                loop {
                    tokio::time::sleep(g.refresh).await;
                    burst().await;
                }
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = all => {}
        }
    });
}
