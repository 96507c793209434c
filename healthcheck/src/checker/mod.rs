//! The I/O driver: one task per target, a watch channel of the results, and
//! lock-free handles for the data plane.
//!
//! ```text
//! Checker::spawn(targets, shutdown) ──▶ HealthHandle
//!   ├─ subscribe() ─▶ watch::Receiver<Arc<HealthView>>   (balancer, lb status, VRRP tracking)
//!   ├─ target(&id) ─▶ TargetHandle                        (cache it beside the backend)
//!   │     ├─ report_passive(ok)      data-plane hot path: atomics, no lock, no allocation
//!   │     ├─ weight_permille()       pick time: one atomic load
//!   │     └─ is_up()
//!   └─ update_targets(targets)       config reload: unchanged targets keep their state
//! ```
//!
//! A target's [`TargetHandle`] stays valid across reloads for as long as its id
//! is configured (even if its probe changes), so the balancer can keep it in
//! its per-backend state.

mod driver;
pub mod view;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use thiserror::Error;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::machine::{HealthMachine, InitialState, Params, ParamsError};
use crate::probe::{Probe, ProbeError};
use driver::Driver;
pub use view::{BackendHealth, HealthView, ProbeRecord, ServiceHealth, TargetId};

/// A rejected target definition.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TargetError {
    #[error("health check of {id}: {source}")]
    Params {
        id: TargetId,
        #[source]
        source: ParamsError,
    },
    #[error("health check of {id}: {source}")]
    Probe {
        id: TargetId,
        #[source]
        source: ProbeError,
    },
}

/// One backend to check: who, how, and with which tunables. Validated once,
/// here.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    id: TargetId,
    probe: Probe,
    params: Params,
}

impl Target {
    pub fn new(id: TargetId, probe: Probe, params: Params) -> Result<Self, TargetError> {
        params.validate().map_err(|source| TargetError::Params {
            id: id.clone(),
            source,
        })?;
        probe.validate().map_err(|source| TargetError::Probe {
            id: id.clone(),
            source,
        })?;
        Ok(Target { id, probe, params })
    }

    pub fn id(&self) -> &TargetId {
        &self.id
    }

    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
}

/// State shared between a target's task and the data plane.
#[derive(Debug)]
struct Shared {
    /// Consecutive failed connects reported since the last success.
    passive_failures: AtomicU32,
    /// Copy of `Params::passive_fall`, so reporting needs no lock.
    passive_fall: AtomicU32,
    /// Wakes the task when `passive_failures` reaches `passive_fall`.
    wake: Notify,
    /// 0 when down, 1..=1000 when up (below 1000 during slow start).
    weight_permille: AtomicU32,
    up: AtomicBool,
}

impl Shared {
    fn new(params: &Params, up: bool) -> Self {
        Shared {
            passive_failures: AtomicU32::new(0),
            passive_fall: AtomicU32::new(params.passive_fall),
            wake: Notify::new(),
            weight_permille: AtomicU32::new(if up { 1000 } else { 0 }),
            up: AtomicBool::new(up),
        }
    }
}

/// The data plane's view of one target: cheap to clone, lock-free to use.
#[derive(Debug, Clone)]
pub struct TargetHandle(Arc<Shared>);

impl TargetHandle {
    /// Reports one connect attempt by the data plane. A success resets the
    /// failure streak (a load, and a store only if it was non-zero); a failure
    /// is one atomic add. When the streak reaches `passive_fall`, the target
    /// leaves rotation here and now (`up` false, weight 0: the very next pick
    /// skips it, as HAProxy's `on-error mark-down` does) and its task is woken
    /// to make it official (state, log, metrics). Waiting for the task alone
    /// let a loaded machine send one connect or more past `passive_fall` to a
    /// dead backend. Only the task brings a target back, on probes. Never
    /// blocks, never allocates.
    pub fn report_passive(&self, ok: bool) {
        let s = &self.0;
        if ok {
            if s.passive_failures.load(Ordering::Relaxed) != 0 {
                s.passive_failures.store(0, Ordering::Relaxed);
            }
            return;
        }
        let n = s
            .passive_failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        let limit = s.passive_fall.load(Ordering::Relaxed);
        if limit != 0 && n >= limit {
            s.up.store(false, Ordering::Release);
            s.weight_permille.store(0, Ordering::Release);
            s.wake.notify_one();
        }
    }

    /// The weight factor to apply at pick time, in permille (0 = down).
    pub fn weight_permille(&self) -> u32 {
        self.0.weight_permille.load(Ordering::Acquire)
    }

    pub fn is_up(&self) -> bool {
        self.0.up.load(Ordering::Acquire)
    }
}

/// A running target, as the handle remembers it.
struct Running {
    probe: Probe,
    params: watch::Sender<Params>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

struct Inner {
    view: watch::Sender<Arc<HealthView>>,
    targets: Mutex<HashMap<TargetId, Running>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// Starts the checker.
#[derive(Debug)]
pub struct Checker;

impl Checker {
    /// Starts one task per target (on the current tokio runtime); they run
    /// until `shutdown` is cancelled. The first view, with every target in its
    /// initial state, is available as soon as this returns. A repeated id
    /// keeps the last definition.
    pub fn spawn(targets: Vec<Target>, shutdown: CancellationToken) -> HealthHandle {
        let (view, _) = watch::channel(Arc::new(HealthView::default()));
        let handle = HealthHandle {
            inner: Arc::new(Inner {
                view,
                targets: Mutex::new(HashMap::new()),
                shutdown,
                tracker: TaskTracker::new(),
            }),
        };
        handle.update_targets(targets);
        handle
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// Same id and probe: state and counters kept (new parameters applied).
    pub kept: usize,
    /// Same id, new probe: restarted in its old state (the new probe needs
    /// `fall` or `rise` results in a row to change it).
    pub replaced: usize,
    pub added: usize,
    pub removed: usize,
}

/// The way to the checker's results and controls. Cheap to clone.
#[derive(Clone)]
pub struct HealthHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HealthHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthHandle")
            .field("targets", &self.inner.view.borrow().len())
            .finish()
    }
}

impl HealthHandle {
    /// A receiver of every new view (state changes, probe results, slow-start
    /// steps). Subscribers that only care about up/down compare what they
    /// need, e.g. [`HealthView::service`].
    pub fn subscribe(&self) -> watch::Receiver<Arc<HealthView>> {
        self.inner.view.subscribe()
    }

    /// The current view.
    pub fn view(&self) -> Arc<HealthView> {
        self.inner.view.borrow().clone()
    }

    /// The data-plane handle of a target, to keep beside the backend.
    pub fn target(&self, id: &TargetId) -> Option<TargetHandle> {
        let targets = self.inner.targets.lock().expect("targets lock poisoned");
        targets.get(id).map(|r| TargetHandle(r.shared.clone()))
    }

    /// [`TargetHandle::report_passive`] by id. Takes an uncontended lock to find
    /// the target; on the hot path, prefer a cached [`TargetHandle`].
    pub fn report_passive(&self, id: &TargetId, ok: bool) {
        let targets = self.inner.targets.lock().expect("targets lock poisoned");
        if let Some(r) = targets.get(id) {
            TargetHandle(r.shared.clone()).report_passive(ok);
        }
    }

    /// Applies a new set of targets (a config reload). A target with the same
    /// id and probe keeps its state, counters and handle, and takes the new
    /// parameters (`initial` aside: it only places a new target). Same id
    /// with another probe: the task restarts in its old state, whatever
    /// `initial` says (a reload brings no known-DOWN backend UP and takes no
    /// serving one out); the new probe then needs the usual `fall` or `rise`
    /// results in a row to change it, and the handle stays valid. New ids
    /// start in their configured initial state; missing ids are stopped and
    /// leave the view.
    pub fn update_targets(&self, targets: Vec<Target>) -> UpdateSummary {
        let mut summary = UpdateSummary::default();
        let mut running = self.inner.targets.lock().expect("targets lock poisoned");
        let mut wanted: HashMap<TargetId, Target> = HashMap::new();
        for t in targets {
            if wanted.insert(t.id.clone(), t).is_some() {
                tracing::warn!("health target configured twice; the last definition wins");
            }
        }
        // Removed: cancel first, then drop from the view (see Driver::publish).
        let gone: Vec<TargetId> = running
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = running.remove(&id) {
                r.cancel.cancel();
            }
            self.inner
                .view
                .send_modify(|v| Arc::make_mut(v).remove(&id));
            summary.removed += 1;
        }
        for (id, target) in wanted {
            match running.entry(id) {
                Entry::Occupied(mut e) if e.get().probe == target.probe => {
                    let r = e.get_mut();
                    r.shared
                        .passive_fall
                        .store(target.params.passive_fall, Ordering::Relaxed);
                    r.params.send_if_modified(|p| {
                        let changed = *p != target.params;
                        *p = target.params.clone();
                        changed
                    });
                    summary.kept += 1;
                }
                Entry::Occupied(mut e) => {
                    let old = e.get();
                    old.cancel.cancel();
                    let was_up = old.shared.up.load(Ordering::Acquire);
                    let shared = old.shared.clone();
                    shared.passive_failures.store(0, Ordering::Release);
                    let mut params = target.params.clone();
                    params.initial = if was_up {
                        InitialState::Up
                    } else {
                        InitialState::Down
                    };
                    e.insert(self.start(&target, params, shared));
                    summary.replaced += 1;
                }
                Entry::Vacant(e) => {
                    let up = target.params.initial == InitialState::Up;
                    let shared = Arc::new(Shared::new(&target.params, up));
                    let params = target.params.clone();
                    e.insert(self.start(&target, params, shared));
                    summary.added += 1;
                }
            }
        }
        summary
    }

    /// Spawns a target's task after publishing its initial health.
    fn start(&self, target: &Target, params: Params, shared: Arc<Shared>) -> Running {
        shared
            .passive_fall
            .store(params.passive_fall, Ordering::Relaxed);
        let cancel = self.inner.shutdown.child_token();
        let (params_tx, params_rx) = watch::channel(params.clone());
        let machine = HealthMachine::new(params, Instant::now());
        // A replaced target reuses `shared`: align it with the new machine.
        shared
            .weight_permille
            .store(machine.weight_permille(Instant::now()), Ordering::Release);
        shared.up.store(machine.is_up(), Ordering::Release);
        let driver = Driver::new(
            target,
            machine,
            shared.clone(),
            self.inner.view.clone(),
            params_rx,
            cancel.clone(),
        );
        let health = driver.health();
        let id = target.id.clone();
        self.inner
            .view
            .send_modify(|v| Arc::make_mut(v).set(id, health));
        self.inner.tracker.spawn(driver.run());
        Running {
            probe: target.probe.clone(),
            params: params_tx,
            shared,
            cancel,
        }
    }

    /// Waits until every task has stopped (after the shutdown token given to
    /// [`Checker::spawn`] is cancelled). In-flight exec probes are killed.
    pub async fn wait_stopped(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passive_streak_resets_on_success_and_wakes_at_the_limit() {
        let params = Params {
            passive_fall: 3,
            ..Params::default()
        };
        let h = TargetHandle(Arc::new(Shared::new(&params, true)));
        let count = || h.0.passive_failures.load(Ordering::Relaxed);
        h.report_passive(false);
        h.report_passive(false);
        assert_eq!(count(), 2);
        h.report_passive(true);
        assert_eq!(count(), 0);
        h.report_passive(false);
        h.report_passive(false);
        // No wake-up yet: a permit would make `notified()` ready at once.
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), h.0.wake.notified());
        assert!(woke.await.is_err());
        assert!(
            h.is_up() && h.weight_permille() == 1000,
            "two failures: still in rotation"
        );
        h.report_passive(false);
        // Out of rotation before the task has run: no task exists here.
        assert!(!h.is_up(), "third failure takes it out of rotation at once");
        assert_eq!(h.weight_permille(), 0);
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), h.0.wake.notified());
        assert!(woke.await.is_ok(), "third failure wakes the task");
        // passive_fall 0: never wakes.
        h.0.passive_fall.store(0, Ordering::Relaxed);
        for _ in 0..10 {
            h.report_passive(false);
        }
        let woke = tokio::time::timeout(std::time::Duration::from_millis(20), h.0.wake.notified());
        assert!(woke.await.is_err());
    }
}
