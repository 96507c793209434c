//! The published health state: what the balancer, `lb status` and VRRP
//! tracking read.
//!
//! A [`HealthView`] is an immutable snapshot behind an `Arc`, sent on a
//! `tokio::sync::watch` channel at every change (state, probe result, weight
//! step). Per-service counts are maintained on every change, so "does service
//! X have a healthy backend?" is one map lookup, not a scan.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::probe::Outcome;

/// Identifies a target: the service and backend names, which also label its
/// metrics and logs. Ordered by service, then backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetId {
    service: Arc<str>,
    backend: Arc<str>,
}

impl TargetId {
    pub fn new(service: &str, backend: &str) -> Self {
        TargetId {
            service: service.into(),
            backend: backend.into(),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn backend(&self) -> &str {
        &self.backend
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.backend)
    }
}

/// The last probe of a backend, for `lb status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeRecord {
    pub ok: bool,
    pub outcome: Outcome,
    /// "HTTP 200", "connection refused", "exit 3", ...
    pub detail: String,
    /// When the probe finished.
    pub at: SystemTime,
    pub duration: Duration,
}

/// One backend's published health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendHealth {
    pub up: bool,
    /// When the current state was entered (checker start for the initial state).
    pub since: SystemTime,
    /// Reason of the last transition ("HTTP 503", "3 consecutive connect
    /// failures (passive)", or "initial state").
    pub reason: String,
    pub last_probe: Option<ProbeRecord>,
    /// 0 while down; 1..=1000 while up, below 1000 during slow start.
    pub weight_factor_permille: u32,
    /// A change of state is in progress (probes run at `fastinter`).
    pub transitioning: bool,
}

/// Up and total backends of one service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceHealth {
    pub up: usize,
    pub total: usize,
}

impl ServiceHealth {
    /// True when the service has backends and none is up: the balancer's
    /// all-down policy applies, and VRRP tracking lowers its priority.
    pub fn all_down(&self) -> bool {
        self.total > 0 && self.up == 0
    }
}

/// Health of every target, keyed and ordered by [`TargetId`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthView {
    backends: BTreeMap<TargetId, BackendHealth>,
    services: BTreeMap<Arc<str>, ServiceHealth>,
}

impl HealthView {
    pub fn get(&self, id: &TargetId) -> Option<&BackendHealth> {
        self.backends.get(id)
    }

    /// Every target, ordered by service then backend.
    pub fn iter(&self) -> impl Iterator<Item = (&TargetId, &BackendHealth)> {
        self.backends.iter()
    }

    pub fn len(&self) -> usize {
        self.backends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty()
    }

    /// Counts for `service` (zero if it has no targets).
    pub fn service(&self, service: &str) -> ServiceHealth {
        self.services.get(service).copied().unwrap_or_default()
    }

    /// Every service with its counts, ordered by name.
    pub fn services(&self) -> impl Iterator<Item = (&str, ServiceHealth)> {
        self.services.iter().map(|(k, v)| (&**k, *v))
    }

    /// Sets one backend's health (the checker's publishing, and views built
    /// by hand in other crates' tests).
    pub fn set(&mut self, id: TargetId, health: BackendHealth) {
        let up = health.up;
        let old = self.backends.insert(id.clone(), health);
        let counts = self.services.entry(id.service.clone()).or_default();
        match old {
            Some(old) => {
                if old.up && !up {
                    counts.up -= 1;
                } else if !old.up && up {
                    counts.up += 1;
                }
            }
            None => {
                counts.total += 1;
                counts.up += usize::from(up);
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &TargetId) {
        let Some(old) = self.backends.remove(id) else {
            return;
        };
        if let Some(counts) = self.services.get_mut(&id.service) {
            counts.total -= 1;
            counts.up -= usize::from(old.up);
            if counts.total == 0 {
                self.services.remove(&id.service);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(up: bool) -> BackendHealth {
        BackendHealth {
            up,
            since: SystemTime::UNIX_EPOCH,
            reason: String::new(),
            last_probe: None,
            weight_factor_permille: if up { 1000 } else { 0 },
            transitioning: false,
        }
    }

    #[test]
    fn service_counts_follow_every_change() {
        let mut v = HealthView::default();
        let (a, b, c) = (
            TargetId::new("api", "a"),
            TargetId::new("api", "b"),
            TargetId::new("thumb", "c"),
        );
        v.set(a.clone(), health(true));
        v.set(b.clone(), health(true));
        v.set(c.clone(), health(false));
        assert_eq!(v.service("api"), ServiceHealth { up: 2, total: 2 });
        assert!(v.service("thumb").all_down());
        assert!(!v.service("nope").all_down(), "no backends is not all down");
        v.set(a.clone(), health(false));
        v.set(a.clone(), health(false));
        assert_eq!(v.service("api"), ServiceHealth { up: 1, total: 2 });
        v.set(b.clone(), health(false));
        assert!(v.service("api").all_down());
        v.remove(&b);
        v.remove(&b);
        assert_eq!(v.service("api"), ServiceHealth { up: 0, total: 1 });
        v.remove(&a);
        assert_eq!(v.services().count(), 1);
        assert_eq!(a.to_string(), "api/a");
    }
}
