//! When the health view has caught up after a fault (pure).
//!
//! While the VRRP link is cut, the node's probes fail too: backends are
//! marked down, and when the link returns they need `rise` good probes to
//! come back. The instance leaves Fault at once (a fresh start, §6.4.1) and
//! would preempt after one Master_Down_Interval, before its backends are up
//! again: clients moved to it are refused for the rest of their rise (the
//! handover soak measured 0.18–0.35 s of failed connects on every restore).
//! So, as at start-up, the instance is not ready until its health checks
//! have settled: every backend probed since the fault began has a result
//! from after it cleared and is not half-way through a rise or fall. A
//! backend not probed during the fault (no active checks, or a fault
//! shorter than its interval) is not waited for. [`super::SETTLE_MAX`]
//! bounds the wait, as at start-up.

use std::time::SystemTime;

use tandem_healthcheck::checker::HealthView;

/// Whether `view` has settled since a fault that began at `began` and
/// cleared at `cleared`.
pub fn settled(view: &HealthView, began: SystemTime, cleared: SystemTime) -> bool {
    view.iter()
        .filter(|(_, h)| h.last_probe.as_ref().is_some_and(|p| p.at >= began))
        .all(|(_, h)| h.last_probe.as_ref().is_some_and(|p| p.at >= cleared) && !h.transitioning)
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
        let view = |entries: &[(&str, Option<SystemTime>, bool)]| {
            let mut v = HealthView::default();
            for (name, at, tr) in entries {
                v.set(TargetId::new("web", name), health(*at, *tr));
            }
            v
        };
        // Probed during the fault, nothing since: not settled.
        assert!(!settled(&view(&[("a", s(1500), false)]), began, cleared));
        // A fresh result, but half-way through its rise: not settled.
        assert!(!settled(&view(&[("a", s(2100), true)]), began, cleared));
        // A fresh, steady result: settled.
        assert!(settled(&view(&[("a", s(2100), false)]), began, cleared));
        // Not probed since before the fault (passive only): not waited for.
        assert!(settled(&view(&[("a", s(500), false)]), began, cleared));
        assert!(settled(&view(&[("a", None, false)]), began, cleared));
        // One of two still stale: not settled.
        assert!(!settled(
            &view(&[("a", s(2100), false), ("b", s(1900), false)]),
            began,
            cleared
        ));
    }
}
