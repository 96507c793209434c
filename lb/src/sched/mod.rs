//! Schedulers. (Being written; see issue 2.)
use std::net::{IpAddr, SocketAddr};

/// Scheduler names as in LVS (`ipvsadm -s`), plus `p2c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sh,
    Maglev,
    P2c,
}

impl SchedulerKind {
    /// Every scheduler, in the order the docs list them.
    pub const ALL: [SchedulerKind; 7] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sh,
        SchedulerKind::Maglev,
        SchedulerKind::P2c,
    ];

    /// The name used in the config file (`scheduler = "wlc"`).
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Maglev => "maglev",
            SchedulerKind::P2c => "p2c",
        }
    }

    /// Inverse of [`SchedulerKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl std::fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a scheduler sees of one backend at pick time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendView {
    pub addr: SocketAddr,
    /// Effective weight: configured weight, 0 when drained or down.
    pub weight: u32,
    /// Live connections to this backend.
    pub active: u32,
}

/// Per-connection input to a pick.
pub struct Pick<'a> {
    pub client_ip: IpAddr,
    /// False for backends that must not be chosen now (already tried for this
    /// connection, or at their max_connections) though their weight is > 0.
    pub eligible: &'a dyn Fn(usize) -> bool,
}

pub trait Scheduler: Send + Sync + std::fmt::Debug {
    fn pick(&self, backends: &[BackendView], req: &Pick<'_>) -> Option<usize>;
}
