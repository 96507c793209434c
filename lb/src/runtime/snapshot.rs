//! The immutable runtime view of one config: what an accepted connection
//! reads to find its service, scheduler and backends. A reload builds a new
//! one and swaps it in atomically; connections hold the `Arc` of the one they
//! started with, so they never see a half-applied config.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::{BackendConfig, Config, ServiceConfig};
use crate::sched::{BackendView, Scheduler, new_scheduler};

use super::state::{BackendState, Registry, ServiceState};

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
}

#[derive(Debug)]
pub struct BackendRt {
    pub cfg: BackendConfig,
    pub state: Arc<BackendState>,
}

impl BackendRt {
    /// The weight the scheduler sees: 0 when drained or down.
    pub fn effective_weight(&self) -> u32 {
        if self.state.is_drained() || !self.state.is_up() {
            0
        } else {
            self.cfg.weight
        }
    }

    pub fn view(&self) -> BackendView {
        BackendView {
            addr: self.cfg.address,
            weight: self.effective_weight(),
            active: self.state.active.load(Ordering::Relaxed),
        }
    }
}

impl Snapshot {
    /// Builds the runtime view of `config`, reusing live state from `registry`.
    pub fn build(config: Arc<Config>, registry: &Registry) -> Snapshot {
        let mut services = Vec::with_capacity(config.services.len());
        let mut by_listen = HashMap::new();
        for svc in &config.services {
            let backends = svc
                .backends
                .iter()
                .map(|b| BackendRt {
                    cfg: b.clone(),
                    state: registry.backend(&svc.name, &b.name, b.address),
                })
                .collect();
            let rt = Arc::new(ServiceRt {
                cfg: svc.clone(),
                state: registry.service(&svc.name),
                scheduler: new_scheduler(svc.scheduler),
                backends,
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
    /// Finds a backend by its name or its address text.
    pub fn backend(&self, key: &str) -> Option<&BackendRt> {
        self.backends
            .iter()
            .find(|b| b.cfg.name == key || b.cfg.address.to_string() == key)
    }
}
