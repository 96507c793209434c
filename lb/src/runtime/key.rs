//! [`BackendKey`]: who a backend is, once, for everything that keeps
//! something per backend.
//!
//! - The [`super::Registry`] keeps a backend's counters, connection slots and
//!   drain flag under its key, so they carry across reloads.
//! - The health checker's target for it is [`BackendKey::target_id`].
//! - Its metric series carry [`BackendKey::labels`].
//!
//! A backend *is* its service and its address (both unique within the
//! service, the config checks that): a backend renamed in the file is the
//! same backend, keeps its counters and stays drained (the drain file is
//! keyed the same way). Its name is carried beside, as what it is called:
//! the health target and the metric labels use it.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

use tandem_healthcheck::checker::TargetId;

use crate::config::BackendConfig;

/// A backend's identity: (service, address); `name` rides along.
#[derive(Debug, Clone)]
pub struct BackendKey {
    pub service: String,
    pub address: SocketAddr,
    /// The backend's name in the config (defaults to its address).
    pub name: String,
}

impl BackendKey {
    pub fn new(service: &str, name: &str, address: SocketAddr) -> Self {
        BackendKey {
            service: service.to_string(),
            address,
            name: name.to_string(),
        }
    }

    /// The key of `backend` of `service`.
    pub fn of(service: &str, backend: &BackendConfig) -> Self {
        BackendKey::new(service, &backend.name, backend.address)
    }

    /// The health checker's target for this backend.
    pub fn target_id(&self) -> TargetId {
        TargetId::new(&self.service, &self.name)
    }

    /// The labels of this backend's metric series:
    /// `service`, `backend` (its name) and `address`.
    pub fn labels(&self) -> [(&'static str, String); 3] {
        [
            ("service", self.service.clone()),
            ("backend", self.name.clone()),
            ("address", self.address.to_string()),
        ]
    }
}

/// Identity is (service, address): the name is not compared.
impl PartialEq for BackendKey {
    fn eq(&self, other: &Self) -> bool {
        self.service == other.service && self.address == other.address
    }
}

impl Eq for BackendKey {}

impl Hash for BackendKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.service.hash(state);
        self.address.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renamed_backend_is_the_same_backend() {
        let a: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let old = BackendKey::new("api", "b1", a);
        let renamed = BackendKey::new("api", "first", a);
        assert_eq!(old, renamed);
        assert_ne!(old, BackendKey::new("web", "b1", a));
        assert_ne!(
            old,
            BackendKey::new("api", "b1", "127.0.0.1:8082".parse().unwrap())
        );
        assert_eq!(renamed.target_id(), TargetId::new("api", "first"));
        assert_eq!(renamed.labels()[1], ("backend", "first".to_string()));
    }
}
