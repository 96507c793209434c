//! Live state that outlives a config snapshot.
//!
//! A reload builds a new [`super::Snapshot`], but counters, drain and
//! health state belong to the *backend*, not to the config text: they are
//! kept in a [`Registry`] keyed by [`BackendKey`] (service name, backend
//! address) and the new snapshot picks up the same `Arc`s. A backend that
//! disappears from the config and comes back later starts fresh.
//!
//! Each counter is one [`Count`] (each open-connection level one
//! [`Level`]): one field, registered with its metric labels once, and one
//! call that updates what `tandem lb status` reads and the Prometheus series
//! together, so the two cannot drift.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use metrics::{Counter, Gauge};

use super::key::BackendKey;
use crate::config::Persistence;
use crate::persist::Table;
use crate::telemetry::names;

/// A counter that status shows and Prometheus exports. The value is kept
/// here as well as in the exporter because the exporter's handles cannot be
/// read back; [`Count::add`] is the only way to change either.
#[derive(Debug)]
pub struct Count {
    n: AtomicU64,
    metric: Counter,
}

impl Count {
    pub(crate) fn new(metric: Counter) -> Self {
        Count {
            n: AtomicU64::new(0),
            metric,
        }
    }

    pub fn add(&self, n: u64) {
        self.n.fetch_add(n, Ordering::Relaxed);
        self.metric.increment(n);
    }

    pub fn get(&self) -> u64 {
        self.n.load(Ordering::Relaxed)
    }
}

/// Connections open now, with its gauge: taken up to a limit, released
/// once per successful take.
#[derive(Debug)]
pub struct Level {
    n: AtomicU32,
    metric: Gauge,
}

impl Level {
    fn new(metric: Gauge) -> Self {
        Level {
            n: AtomicU32::new(0),
            metric,
        }
    }

    /// Takes one unless `max` are open.
    fn try_take(&self, max: u32) -> bool {
        let ok = self
            .n
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if ok {
            self.metric.increment(1.0);
        }
        ok
    }

    fn release(&self) {
        self.n.fetch_sub(1, Ordering::AcqRel);
        self.metric.decrement(1.0);
    }

    pub fn get(&self) -> u32 {
        self.n.load(Ordering::Relaxed)
    }
}

/// Counters of one service (all its listeners' clients).
#[derive(Debug)]
pub struct ServiceState {
    pub name: String,
    /// Client connections currently open.
    pub active: Level,
    /// Client connections accepted since start (refused ones included).
    pub total: Count,
    /// Client connections refused because `max_connections` was reached.
    pub refused_max_conns: Count,
    /// Client connections closed because no backend could be reached.
    pub no_backend: Count,
}

impl ServiceState {
    pub fn new(name: &str) -> Self {
        let labels = [("service", name.to_string())];
        ServiceState {
            name: name.to_string(),
            active: Level::new(metrics::gauge!(names::SERVICE_ACTIVE, &labels)),
            total: Count::new(metrics::counter!(names::SERVICE_CONNECTIONS, &labels)),
            refused_max_conns: Count::new(metrics::counter!(names::SERVICE_REFUSED, &labels)),
            no_backend: Count::new(metrics::counter!(names::SERVICE_NO_BACKEND, &labels)),
        }
    }

    /// Admits one client unless `max` are already open. On success the
    /// caller owns one unit of `active` and must call [`ServiceState::release`].
    pub fn try_admit(&self, max: u32) -> bool {
        self.total.add(1);
        let ok = self.active.try_take(max);
        if !ok {
            self.refused_max_conns.add(1);
        }
        ok
    }

    pub fn release(&self) {
        self.active.release();
    }
}

/// Counters and runtime flags of one backend of one service.
#[derive(Debug)]
pub struct BackendState {
    /// Whose state this is; its metric series carry the key's labels.
    pub key: BackendKey,
    /// Connections currently open to this backend.
    pub active: Level,
    /// Connections established to this backend since start.
    pub total: Count,
    /// Bytes sent to the backend (client → backend).
    pub bytes_to_backend: Count,
    /// Bytes sent to clients from this backend.
    pub bytes_to_client: Count,
    /// Connect attempts refused, timed out or otherwise failed.
    pub connect_failures: Count,
    /// Connect attempts that were retries after this backend failed.
    pub retries: Count,
    /// Times this backend was passed over because it was at `max_connections`.
    pub refused_max_conns: Count,
    /// Set by `drain`: effective weight 0, existing connections finish.
    pub drained: AtomicBool,
}

impl BackendState {
    pub fn new(key: BackendKey) -> Self {
        let labels = key.labels();
        BackendState {
            active: Level::new(metrics::gauge!(names::BACKEND_ACTIVE, &labels)),
            total: Count::new(metrics::counter!(names::BACKEND_CONNECTIONS, &labels)),
            bytes_to_backend: Count::new(metrics::counter!(
                names::BACKEND_BYTES_TO_BACKEND,
                &labels
            )),
            bytes_to_client: Count::new(metrics::counter!(names::BACKEND_BYTES_TO_CLIENT, &labels)),
            connect_failures: Count::new(metrics::counter!(
                names::BACKEND_CONNECT_FAILURES,
                &labels
            )),
            retries: Count::new(metrics::counter!(names::BACKEND_RETRIES, &labels)),
            refused_max_conns: Count::new(metrics::counter!(names::BACKEND_REFUSED, &labels)),
            drained: AtomicBool::new(false),
            key,
        }
    }

    /// Takes one connection slot unless `max` are open. The caller must call
    /// [`BackendState::release`] exactly once for every successful reserve.
    pub fn try_reserve(&self, max: Option<u32>) -> bool {
        let ok = self.active.try_take(max.unwrap_or(u32::MAX));
        if !ok {
            self.refused_max_conns.add(1);
        }
        ok
    }

    pub fn release(&self) {
        self.active.release();
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
    /// Persistence tables by service name. Entries name backends by
    /// address, which with the service is their [`BackendKey`]: a reload
    /// keeps the entries of backends that remain.
    tables: Mutex<HashMap<String, Arc<Table>>>,
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

    /// The persistence table of `service`, if its persistence is on. A
    /// table is kept across reloads while the settings are unchanged; new
    /// settings (another granularity changes what a key means) start an
    /// empty table, and persistence turned off drops it.
    pub fn table(&self, service: &str, persistence: Option<&Persistence>) -> Option<Arc<Table>> {
        let mut map = self.tables.lock().expect("registry lock poisoned");
        let Some(p) = persistence else {
            map.remove(service);
            return None;
        };
        let fresh = || Arc::new(Table::new(service, *p, Instant::now()));
        let t = map.entry(service.to_string()).or_insert_with(fresh);
        if t.params() != p {
            *t = fresh();
        }
        Some(t.clone())
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
        self.tables
            .lock()
            .expect("registry lock poisoned")
            .retain(|k, _| services.contains(k));
    }
}
