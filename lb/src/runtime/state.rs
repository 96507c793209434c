//! Live state that outlives a config snapshot.
//!
//! A reload builds a new [`super::Snapshot`], but counters, drain and
//! health state belong to the *backend*, not to the config text: they are
//! kept in a [`Registry`] keyed by [`BackendKey`] (service name, backend
//! address) and the new snapshot picks up the same `Arc`s. A backend that disappears from the
//! config and comes back later starts fresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge};

use super::key::BackendKey;
use crate::telemetry::names;

/// Counters of one service (all its listeners' clients).
#[derive(Debug)]
pub struct ServiceState {
    pub name: String,
    /// Client connections currently open.
    pub active: AtomicU32,
    /// Client connections accepted since start (refused ones included).
    pub total: AtomicU64,
    /// Client connections refused because `max_connections` was reached.
    pub refused_max_conns: AtomicU64,
    /// Client connections closed because no backend could be reached.
    pub no_backend: AtomicU64,
    pub m: ServiceMetrics,
}

/// Metric handles, registered once so the hot path does no label lookups.
#[derive(Debug)]
pub struct ServiceMetrics {
    pub active: Gauge,
    pub total: Counter,
    pub refused_max_conns: Counter,
    pub no_backend: Counter,
}

impl ServiceState {
    pub fn new(name: &str) -> Self {
        let labels = [("service", name.to_string())];
        ServiceState {
            name: name.to_string(),
            active: AtomicU32::new(0),
            total: AtomicU64::new(0),
            refused_max_conns: AtomicU64::new(0),
            no_backend: AtomicU64::new(0),
            m: ServiceMetrics {
                active: metrics::gauge!(names::SERVICE_ACTIVE, &labels),
                total: metrics::counter!(names::SERVICE_CONNECTIONS, &labels),
                refused_max_conns: metrics::counter!(names::SERVICE_REFUSED, &labels),
                no_backend: metrics::counter!(names::SERVICE_NO_BACKEND, &labels),
            },
        }
    }

    /// Admits one client unless `max` are already open. On success the
    /// caller owns one unit of `active` and must call [`ServiceState::release`].
    pub fn try_admit(&self, max: u32) -> bool {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.m.total.increment(1);
        let ok = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if ok {
            self.m.active.increment(1.0);
        } else {
            self.refused_max_conns.fetch_add(1, Ordering::Relaxed);
            self.m.refused_max_conns.increment(1);
        }
        ok
    }

    pub fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        self.m.active.decrement(1.0);
    }
}

/// Counters and runtime flags of one backend of one service.
#[derive(Debug)]
pub struct BackendState {
    /// Whose state this is; its metric series carry the key's labels.
    pub key: BackendKey,
    /// Connections currently open to this backend.
    pub active: AtomicU32,
    /// Connections established to this backend since start.
    pub total: AtomicU64,
    /// Bytes sent to the backend (client → backend).
    pub bytes_to_backend: AtomicU64,
    /// Bytes sent to clients from this backend.
    pub bytes_to_client: AtomicU64,
    /// Connect attempts refused, timed out or otherwise failed.
    pub connect_failures: AtomicU64,
    /// Times this backend was passed over because it was at `max_connections`.
    pub refused_max_conns: AtomicU64,
    /// Set by `drain`: effective weight 0, existing connections finish.
    pub drained: AtomicBool,
    pub m: BackendMetrics,
}

#[derive(Debug)]
pub struct BackendMetrics {
    pub active: Gauge,
    pub total: Counter,
    pub bytes_to_backend: Counter,
    pub bytes_to_client: Counter,
    pub connect_failures: Counter,
    pub retries: Counter,
    pub refused_max_conns: Counter,
}

impl BackendState {
    pub fn new(key: BackendKey) -> Self {
        let labels = key.labels();
        let m = BackendMetrics {
            active: metrics::gauge!(names::BACKEND_ACTIVE, &labels),
            total: metrics::counter!(names::BACKEND_CONNECTIONS, &labels),
            bytes_to_backend: metrics::counter!(names::BACKEND_BYTES_TO_BACKEND, &labels),
            bytes_to_client: metrics::counter!(names::BACKEND_BYTES_TO_CLIENT, &labels),
            connect_failures: metrics::counter!(names::BACKEND_CONNECT_FAILURES, &labels),
            retries: metrics::counter!(names::BACKEND_RETRIES, &labels),
            refused_max_conns: metrics::counter!(names::BACKEND_REFUSED, &labels),
        };
        BackendState {
            key,
            active: AtomicU32::new(0),
            total: AtomicU64::new(0),
            bytes_to_backend: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            refused_max_conns: AtomicU64::new(0),
            drained: AtomicBool::new(false),
            m,
        }
    }

    /// Takes one connection slot unless `max` are open. The caller must call
    /// [`BackendState::release`] exactly once for every successful reserve.
    pub fn try_reserve(&self, max: Option<u32>) -> bool {
        let max = max.unwrap_or(u32::MAX);
        let ok = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if ok {
            self.m.active.increment(1.0);
        } else {
            self.refused_max_conns.fetch_add(1, Ordering::Relaxed);
            self.m.refused_max_conns.increment(1);
        }
        ok
    }

    pub fn release(&self) {
        self.active.fetch_sub(1, Ordering::AcqRel);
        self.m.active.decrement(1.0);
    }

    pub fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Acquire)
    }
}

/// Where backend and service state lives across reloads.
#[derive(Debug, Default)]
pub struct Registry {
    services: Mutex<HashMap<String, Arc<ServiceState>>>,
    backends: Mutex<HashMap<BackendKey, Arc<BackendState>>>,
}

impl Registry {
    pub fn service(&self, name: &str) -> Arc<ServiceState> {
        let mut map = self.services.lock().expect("registry lock poisoned");
        map.entry(name.to_string())
            .or_insert_with(|| Arc::new(ServiceState::new(name)))
            .clone()
    }

    pub fn backend(&self, key: &BackendKey) -> Arc<BackendState> {
        let mut map = self.backends.lock().expect("registry lock poisoned");
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(BackendState::new(key.clone())))
            .clone()
    }

    /// Forgets state no longer referenced by `keep` (after a reload removed
    /// services or backends), so a long-lived process does not accumulate it.
    /// Entries still referenced by live connections survive until those end
    /// only through their own `Arc`s.
    pub fn retain(&self, services: &[String], backends: &[BackendKey]) {
        self.services
            .lock()
            .expect("registry lock poisoned")
            .retain(|k, _| services.contains(k));
        self.backends
            .lock()
            .expect("registry lock poisoned")
            .retain(|k, _| backends.contains(k));
    }
}
