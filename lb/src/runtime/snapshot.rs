//! The immutable runtime view of one config: what an accepted connection
//! reads to find its service, scheduler and backends. A reload builds a new
//! one and swaps it in atomically; connections hold the `Arc` of the one they
//! started with, so they never see a half-applied config.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tandem_healthcheck::checker::HealthHandle;

use crate::config::{AllDown, BackendConfig, Config, ServiceConfig};
use crate::sched::{BackendView, Scheduler, new_scheduler};

use super::health::Health;
use super::key::BackendKey;
use super::state::{BackendState, Registry, ServiceState};
use crate::persist::Table;

#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub services: Vec<Arc<ServiceRt>>,
    by_listen: HashMap<SocketAddr, Arc<ServiceRt>>,
}

#[derive(Debug)]
pub struct ServiceRt {
    pub cfg: ServiceConfig,
    pub state: Arc<ServiceState>,
    pub scheduler: Box<dyn Scheduler>,
    pub backends: Vec<BackendRt>,
    /// `sorry = "IP:port"`: where clients go when no backend is up.
    pub sorry: Option<BackendRt>,
    /// The persistence table (from the registry, so it outlives this
    /// snapshot); None when persistence is off.
    pub persist: Option<Arc<Table>>,
    /// Backend index by address, to resolve a persistence entry; empty
    /// (never allocated) when persistence is off.
    by_addr: HashMap<SocketAddr, usize>,
}

#[derive(Debug)]
pub struct BackendRt {
    pub cfg: BackendConfig,
    pub state: Arc<BackendState>,
    /// Up/down and slow-start ramp from the health checker.
    pub health: Health,
}

impl BackendRt {
    /// The weight the scheduler sees: 0 when drained or down; during slow
    /// start the configured weight scaled by the ramp (at least 1, so an up
    /// backend can always be picked).
    pub fn effective_weight(&self) -> u32 {
        if self.state.is_drained() || !self.health.is_up() {
            return 0;
        }
        self.ramped_weight()
    }

    /// The weight in panic mode (`all_down = "all"`): health is ignored,
    /// drain is not (it is the operator's decision).
    pub fn panic_weight(&self) -> u32 {
        if self.state.is_drained() {
            0
        } else {
            self.cfg.weight
        }
    }

    fn ramped_weight(&self) -> u32 {
        let w = self.cfg.weight;
        let permille = self.health.weight_permille();
        if w == 0 || permille >= 1000 {
            return w;
        }
        ((w as u64 * permille as u64) / 1000).max(1) as u32
    }

    pub fn view(&self, panic: bool) -> BackendView {
        BackendView {
            addr: self.cfg.address,
            weight: if panic {
                self.panic_weight()
            } else {
                self.effective_weight()
            },
            active: self.state.active.get(),
        }
    }
}

impl Snapshot {
    /// Builds the runtime view of `config`, reusing live state from `registry`.
    pub fn build(
        config: Arc<Config>,
        registry: &Registry,
        checker: Option<&HealthHandle>,
    ) -> Snapshot {
        let mut services = Vec::with_capacity(config.services.len());
        let mut by_listen = HashMap::new();
        for svc in &config.services {
            let backends = svc
                .backends
                .iter()
                .map(|b| {
                    let key = BackendKey::of(&svc.name, b);
                    BackendRt {
                        cfg: b.clone(),
                        state: registry.backend(&key),
                        health: Health(checker.and_then(|c| c.target(&key.target_id()))),
                    }
                })
                .collect();
            let sorry = match svc.all_down {
                AllDown::Sorry(addr) => {
                    let cfg = BackendConfig {
                        name: "sorry".into(),
                        address: addr,
                        weight: 1,
                        max_connections: None,
                        health: None,
                        passive_fall: 0,
                    };
                    Some(BackendRt {
                        state: registry.backend(&BackendKey::of(&svc.name, &cfg)),
                        cfg,
                        health: Health(None),
                    })
                }
                _ => None,
            };
            let persist = registry.table(&svc.name, svc.persistence.as_ref());
            let by_addr = match persist {
                Some(_) => svc
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.address, i))
                    .collect(),
                None => HashMap::new(),
            };
            let rt = Arc::new(ServiceRt {
                cfg: svc.clone(),
                state: registry.service(&svc.name),
                scheduler: new_scheduler(svc.scheduler),
                backends,
                sorry,
                persist,
                by_addr,
            });
            by_listen.insert(svc.listen, rt.clone());
            services.push(rt);
        }
        Snapshot {
            config,
            services,
            by_listen,
        }
    }

    pub fn service_for(&self, listen: &SocketAddr) -> Option<&Arc<ServiceRt>> {
        self.by_listen.get(listen)
    }

    pub fn service(&self, name: &str) -> Option<&Arc<ServiceRt>> {
        self.services.iter().find(|s| s.cfg.name == name)
    }
}

impl ServiceRt {
    /// Whether every backend is down by health (drain aside): the all-down
    /// policy applies.
    pub fn all_down(&self) -> bool {
        !self.backends.iter().any(|b| b.health.is_up())
    }

    /// Whether the all-down policy `all` is in force now (panic mode:
    /// health ignored, drain kept).
    pub fn panic_mode(&self) -> bool {
        matches!(self.cfg.all_down, AllDown::All) && self.all_down()
    }

    /// The index of the backend at `addr` if a client pinned to it may
    /// still be sent there: it is in this config, and up and not drained
    /// (in panic mode: not drained), i.e. its weight for the scheduler is
    /// not 0. Its max_connections is the caller's to check.
    pub fn pinnable(&self, addr: SocketAddr, panic: bool) -> Option<usize> {
        let i = self.pinned_index(addr)?;
        (self.backends[i].view(panic).weight > 0).then_some(i)
    }

    /// The index of the backend at `addr`, for a persistence entry (None
    /// also when persistence is off: the index is kept only then).
    pub fn pinned_index(&self, addr: SocketAddr) -> Option<usize> {
        self.by_addr.get(&addr).copied()
    }

    /// Finds a backend by its name or its address text.
    pub fn backend(&self, key: &str) -> Option<&BackendRt> {
        self.backends
            .iter()
            .find(|b| b.cfg.name == key || b.cfg.address.to_string() == key)
    }
}
