//! What one VRRP instance shows in `tandem lb status` and on the status
//! page. Plain data: the failover runtime publishes it (a watch channel per
//! process, see `crate::failover::Failover`), the balancer's status reads
//! it; neither needs the other to name it.

use serde::{Deserialize, Serialize};

/// One VRRP instance as `tandem lb status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VrrpStatus {
    pub instance: String,
    pub interface: String,
    pub vrid: u8,
    pub version: u8,
    /// "initialize", "backup", "master" or "fault".
    pub state: String,
    /// Effective priority: configured, adjusted by tracking.
    pub priority: u8,
    pub configured_priority: u8,
    /// The master as far as this node knows (itself when master); None
    /// while no advert has been heard.
    pub master: Option<String>,
    /// The virtual addresses, `ip/prefix`.
    pub vips: Vec<String>,
    /// Tracked targets that are down now (`service:NAME`, `interface:IF`).
    pub tracks_down: Vec<String>,
}
