//! The port plan: everything on 127.0.0.1, at fixed offsets from `--port`.
//!
//! | offset | what |
//! |---|---|
//! | 0 | the API service on the balancer (the "VIP") |
//! | 1..=3 | the balancer service of each kind, in [`crate::KINDS`] order |
//! | 9 | the balancer's metrics and status page |
//! | 10.. | the API replicas, [`crate::API_REPLICAS`] of them (one; at most 10) |
//! | 20.. | the workers, two per kind |

use std::net::SocketAddr;

/// How many ports the stack uses from `--port` on.
pub const SPAN: u16 = 40;

// The API replicas sit at offsets 10..20, below the first worker's 20.
const _: () = assert!(
    crate::API_REPLICAS <= 10,
    "API_REPLICAS overlaps the workers' ports"
);

/// The port plan, all on 127.0.0.1.
pub struct Ports {
    /// `--port`: the first of the [`SPAN`] ports.
    pub base: u16,
}

impl Ports {
    pub fn api_vip(&self) -> SocketAddr {
        self.at(0)
    }
    pub fn kind_vip(&self, k: usize) -> SocketAddr {
        self.at(1 + k as u16)
    }
    pub fn lb_metrics(&self) -> SocketAddr {
        self.at(9)
    }
    pub fn api(&self, i: usize) -> SocketAddr {
        self.at(10 + i as u16)
    }
    pub fn worker(&self, k: usize, i: usize) -> SocketAddr {
        self.at(20 + 2 * k as u16 + i as u16)
    }
    pub fn at(&self, off: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + off))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::{API_REPLICAS, KINDS};

    /// Every address of the plan is distinct and inside the SPAN ports
    /// that `tandem up` checks are free.
    #[test]
    fn the_plan_fits_its_span_without_collisions() {
        let p = Ports { base: 20_000 };
        let mut all = vec![p.api_vip(), p.lb_metrics()];
        all.extend((0..API_REPLICAS).map(|i| p.api(i)));
        for k in 0..KINDS.len() {
            all.push(p.kind_vip(k));
            all.extend([p.worker(k, 0), p.worker(k, 1)]);
        }
        let distinct: BTreeSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        for a in &all {
            assert!((20_000..20_000 + SPAN).contains(&a.port()), "{a}");
        }
    }
}
