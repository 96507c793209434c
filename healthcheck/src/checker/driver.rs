//! One target's task: runs its [`HealthMachine`] on real time.
//!
//! The task waits on four things at once, so none delays another:
//! cancellation, a passive-failure wake-up from the data plane, the in-flight
//! probe (or the time to start the next one), and the next slow-start weight
//! step. Probes are scheduled from the *start* of the previous one
//! (`start + delay`, or at once if the probe outlasted the delay), so a dead
//! backend is out within `fall × interval + timeout` whatever the probes take.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use metrics::{Gauge, Histogram};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::view::{BackendHealth, HealthView, ProbeRecord, TargetId};
use super::{Shared, Target};
use crate::machine::{Cause, HealthMachine, Params, State, Transition};
use crate::probe::{Probe, ProbeOutcome};
use crate::telemetry::names;

type ProbeFuture = Pin<Box<dyn Future<Output = ProbeOutcome> + Send>>;

/// Metric handles registered once per target.
struct TargetMetrics {
    duration: Histogram,
    up: Gauge,
    weight: Gauge,
}

pub(super) struct Driver {
    id: TargetId,
    probe: Arc<Probe>,
    machine: HealthMachine,
    shared: Arc<Shared>,
    view: watch::Sender<Arc<HealthView>>,
    params: watch::Receiver<Params>,
    cancel: CancellationToken,
    metrics: TargetMetrics,
    /// Wall-clock time of the last transition (or of the start).
    since: SystemTime,
    last_probe: Option<ProbeRecord>,
    /// Next slow-start weight step, while a ramp is in progress.
    ramp_next: Option<Instant>,
}

/// Smallest step of the slow-start ramp.
const MIN_RAMP_STEP: Duration = Duration::from_millis(10);
/// The ramp is published in this many steps (HAProxy recomputes weights on a
/// similar coarse schedule; the scheduler needs no finer grain).
const RAMP_STEPS: u32 = 20;

impl Driver {
    pub(super) fn new(
        target: &Target,
        machine: HealthMachine,
        shared: Arc<Shared>,
        view: watch::Sender<Arc<HealthView>>,
        params: watch::Receiver<Params>,
        cancel: CancellationToken,
    ) -> Self {
        let id = target.id.clone();
        let labels = [
            ("service", id.service().to_string()),
            ("backend", id.backend().to_string()),
        ];
        let kind = [
            ("service", id.service().to_string()),
            ("backend", id.backend().to_string()),
            ("kind", target.probe.kind().to_string()),
        ];
        let metrics = TargetMetrics {
            duration: metrics::histogram!(names::PROBE_DURATION, &kind),
            up: metrics::gauge!(names::BACKEND_UP, &labels),
            weight: metrics::gauge!(names::WEIGHT_FACTOR, &labels),
        };
        Driver {
            id,
            probe: Arc::new(target.probe.clone()),
            machine,
            shared,
            view,
            params,
            cancel,
            metrics,
            since: SystemTime::now(),
            last_probe: None,
            ramp_next: None,
        }
    }

    /// The health as published now.
    pub(super) fn health(&self) -> BackendHealth {
        BackendHealth {
            up: self.machine.is_up(),
            since: self.since,
            reason: self.machine.reason().to_string(),
            last_probe: self.last_probe.clone(),
            // What the data plane uses: stepped during slow start, not exact.
            weight_factor_permille: self.shared.weight_permille.load(Ordering::Acquire),
            transitioning: self.machine.transitioning(),
        }
    }

    pub(super) async fn run(mut self) {
        let now = Instant::now();
        self.store_atomics(now);
        let mut next_probe = now + self.machine.first_delay(rand::random());
        let mut started = next_probe;
        let mut inflight: Option<ProbeFuture> = None;
        let mut params_open = true;
        loop {
            let ramp_at = self.ramp_next;
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                _ = self.shared.wake.notified() => self.on_passive(),
                changed = self.params.changed(), if params_open => match changed {
                    Ok(()) => self.on_params(),
                    Err(_) => params_open = false,
                },
                out = async { inflight.as_mut().expect("guarded by is_some").await },
                    if inflight.is_some() =>
                {
                    inflight = None;
                    self.on_outcome(out);
                    let delay = self.machine.next_delay(rand::random());
                    next_probe = (started + delay).max(Instant::now());
                }
                _ = tokio::time::sleep_until(next_probe), if inflight.is_none() => {
                    started = Instant::now();
                    let probe = self.probe.clone();
                    let timeout = self.machine.params().timeout;
                    inflight = Some(Box::pin(async move { probe.run(timeout).await }));
                }
                _ = tokio::time::sleep_until(ramp_at.unwrap_or(next_probe)), if ramp_at.is_some() => {
                    self.on_ramp_step();
                }
            }
        }
        // Dropping `inflight` here kills an exec probe's process group.
    }

    fn on_params(&mut self) {
        let params = self.params.borrow_and_update().clone();
        self.shared
            .passive_fall
            .store(params.passive_fall, Ordering::Relaxed);
        self.machine.set_params(params);
        self.publish();
    }

    fn on_passive(&mut self) {
        let n = self.shared.passive_failures.load(Ordering::Acquire);
        let now = Instant::now();
        match self.machine.on_passive_failures(n, now.into_std()) {
            Some(tr) => {
                self.apply(tr, now);
                self.publish();
            }
            // The data plane took the target out of rotation when the streak
            // reached passive_fall (TargetHandle::report_passive), but a
            // success reset the streak before this ran: the machine's view
            // (still up) stands, and is stored again.
            None => self.store_atomics(now),
        }
        if self.machine.state() == State::Down {
            // Reports about a backend already down prove nothing new.
            self.shared.passive_failures.store(0, Ordering::Release);
        }
    }

    fn on_outcome(&mut self, out: ProbeOutcome) {
        let now = Instant::now();
        self.metrics.duration.record(out.duration.as_secs_f64());
        metrics::counter!(
            names::PROBE_RESULTS,
            "service" => self.id.service().to_string(),
            "backend" => self.id.backend().to_string(),
            "kind" => self.probe.kind(),
            "outcome" => out.outcome.as_str(),
        )
        .increment(1);
        tracing::debug!(
            target_id = %self.id,
            ok = out.ok,
            detail = %out.detail,
            duration_ms = out.duration.as_millis() as u64,
            "probe"
        );
        let tr = self.machine.on_probe(out.ok, &out.detail, now.into_std());
        self.last_probe = Some(ProbeRecord {
            ok: out.ok,
            outcome: out.outcome,
            detail: out.detail,
            at: SystemTime::now(),
            duration: out.duration,
        });
        if let Some(tr) = tr {
            self.apply(tr, now);
        }
        self.publish();
    }

    fn on_ramp_step(&mut self) {
        let now = Instant::now();
        self.store_atomics(now);
        self.ramp_next = self
            .machine
            .ramp_end(now.into_std())
            .map(|_| now + self.ramp_step());
        self.publish();
    }

    fn ramp_step(&self) -> Duration {
        (self.machine.params().slow_start / RAMP_STEPS).max(MIN_RAMP_STEP)
    }

    fn apply(&mut self, tr: Transition, now: Instant) {
        let (cause, consecutive) = match tr.cause {
            Cause::Probe { consecutive } => ("probe", consecutive),
            Cause::Passive { consecutive } => ("passive", consecutive),
        };
        tracing::info!(
            service = self.id.service(),
            backend = self.id.backend(),
            from = %tr.from,
            to = %tr.to,
            cause,
            consecutive,
            reason = %tr.reason,
            "backend {} is {}: {}",
            self.id,
            tr.to.as_str().to_uppercase(),
            tr.reason,
        );
        metrics::counter!(
            names::TRANSITIONS,
            "service" => self.id.service().to_string(),
            "backend" => self.id.backend().to_string(),
            "to" => tr.to.as_str(),
            "cause" => cause,
        )
        .increment(1);
        self.since = SystemTime::now();
        // Failures counted before a change of state say nothing about the new one.
        self.shared.passive_failures.store(0, Ordering::Release);
        self.ramp_next = self
            .machine
            .ramp_end(now.into_std())
            .map(|_| now + self.ramp_step());
        self.store_atomics(now);
    }

    /// Updates what the data plane reads without locks.
    fn store_atomics(&self, now: Instant) {
        if self.cancel.is_cancelled() {
            // Replaced by a new task that shares these atomics: hands off.
            return;
        }
        let permille = self.machine.weight_permille(now.into_std());
        let up = self.machine.is_up();
        self.shared
            .weight_permille
            .store(permille, Ordering::Release);
        self.shared.up.store(up, Ordering::Release);
        self.metrics.up.set(if up { 1.0 } else { 0.0 });
        self.metrics.weight.set(f64::from(permille) / 1000.0);
    }

    fn publish(&self) {
        let health = self.health();
        let id = &self.id;
        let cancel = &self.cancel;
        self.view.send_if_modified(|view| {
            // Checked under the channel's lock: a target removed (or replaced)
            // by `update_targets` is cancelled before its entry is removed, so
            // a late publish cannot bring a stale entry back.
            if cancel.is_cancelled() {
                return false;
            }
            Arc::make_mut(view).set(id.clone(), health);
            true
        });
    }
}
