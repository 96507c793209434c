//! When the health view has caught up after a fault (pure).
//!
//! While the VRRP link is cut, the node's probes fail too: backends are
//! marked down, and when the link returns they need good probes (and the
//! route and neighbour entries) to come back. The instance leaves Fault at
//! once (a fresh start, §6.4.1) and would preempt after one
//! Master_Down_Interval, before its backends are up again: clients moved to
//! it are refused meanwhile (the handover soak measured 0.18–0.35 s of
//! failed connects on every restore). So, as at start-up, the instance is
//! not ready until its health checks have caught up: every backend probed
//! since the fault began has a result from after it cleared and is not
//! half-way through a rise or fall, and every backend that was up when the
//! fault began is up again. A backend not probed during the fault (no
//! active checks, or a fault shorter than its interval) is not waited for.
//! [`super::SETTLE_MAX`] bounds the wait (a backend that died during the
//! fault holds the claim off that long; a running peer serves meanwhile).

use std::time::SystemTime;

use tandem_healthcheck::checker::{HealthView, ProbeRecord, TargetId};

/// The backends up in `view`: what [`settled`] waits to see up again.
pub fn up_now(view: &HealthView) -> Vec<TargetId> {
    view.iter()
        .filter(|(_, h)| h.up)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Whether `view` has caught up since a fault that began at `began`, with
/// `up_before` up, and cleared at `cleared`.
pub fn settled(
    view: &HealthView,
    began: SystemTime,
    cleared: SystemTime,
    up_before: &[TargetId],
) -> bool {
    // A probe counts from when it started: one sent into the cut link that
    // only timed out after the clear says nothing new.
    let started_after =
        |p: &ProbeRecord| p.at.checked_sub(p.duration).is_some_and(|s| s >= cleared);
    let fresh = view
        .iter()
        .filter(|(_, h)| h.last_probe.as_ref().is_some_and(|p| p.at >= began))
        .all(|(_, h)| h.last_probe.as_ref().is_some_and(started_after) && !h.transitioning);
    // A backend removed by a reload meanwhile is not waited for.
    let back = up_before
        .iter()
        .all(|id| view.get(id).is_none_or(|h| h.up && !h.transitioning));
    fresh && back
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tandem_healthcheck::checker::{BackendHealth, ProbeRecord, TargetId};
    use tandem_healthcheck::probe::Outcome;

    use super::*;

    fn health(probed_at: Option<SystemTime>, transitioning: bool) -> BackendHealth {
        BackendHealth {
            up: !transitioning,
            since: SystemTime::UNIX_EPOCH,
            reason: "initial state".into(),
            last_probe: probed_at.map(|at| ProbeRecord {
                ok: true,
                outcome: Outcome::Ok,
                detail: "connected".into(),
                at,
                duration: Duration::from_millis(1),
            }),
            weight_factor_permille: 1000,
            transitioning,
        }
    }

    #[test]
    fn waits_for_a_fresh_steady_result_of_every_backend_probed_during_the_fault() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let began = t0 + Duration::from_secs(1);
        let cleared = t0 + Duration::from_secs(2);
        let s = |d: u64| Some(t0 + Duration::from_millis(d));
        let view = |entries: &[(&str, Option<SystemTime>, bool, bool)]| {
            let mut v = HealthView::default();
            for (name, at, tr, up) in entries {
                let mut h = health(*at, *tr);
                h.up = *up;
                v.set(TargetId::new("web", name), h);
            }
            v
        };
        let none: &[TargetId] = &[];
        let a_up = &[TargetId::new("web", "a")][..];
        let ok = |v: HealthView, up: &[TargetId]| settled(&v, began, cleared, up);
        // Probed during the fault, nothing since: not settled.
        assert!(!ok(view(&[("a", s(1500), false, false)]), none));
        // A fresh result, but half-way through its rise: not settled.
        assert!(!ok(view(&[("a", s(2100), true, false)]), none));
        // A fresh, steady result, up again: settled.
        assert!(ok(view(&[("a", s(2100), false, true)]), a_up));
        // Up before the fault, fresh but still down (the route or the
        // neighbour entry is not back yet): not settled.
        assert!(!ok(view(&[("a", s(2100), false, false)]), a_up));
        // Down before the fault, fresh and down: settled.
        assert!(ok(view(&[("a", s(2100), false, false)]), none));
        // Not probed since before the fault (passive only): not waited for.
        assert!(ok(view(&[("a", s(500), false, true)]), a_up));
        assert!(ok(view(&[("a", None, false, true)]), a_up));
        // Sent into the cut, timed out after the clear: not fresh.
        let mut v = view(&[("a", s(2050), false, true)]);
        let mut h = v.get(&TargetId::new("web", "a")).unwrap().clone();
        h.last_probe.as_mut().unwrap().duration = Duration::from_millis(100);
        v.set(TargetId::new("web", "a"), h);
        assert!(!ok(v, a_up));
        // One of two still stale: not settled.
        assert!(!ok(
            view(&[("a", s(2100), false, true), ("b", s(1900), false, true)]),
            none
        ));
        // Removed by a reload meanwhile: not waited for.
        assert!(ok(HealthView::default(), a_up));
    }
}
