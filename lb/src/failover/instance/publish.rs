//! What an instance tells the world after the machine acts: the transition
//! log line, metrics and notify command, and its entry of the published
//! status (the watch channel the balancer's status reads).

use super::super::names;
use super::{Ctx, Instance};
use crate::failover::edge::Edge;
use crate::failover::notify::Job;
use crate::vrrp::machine::State;

impl<E: Edge> Instance<E> {
    pub(super) fn on_transition(&self, state: State, ctx: &Ctx) {
        let name = &self.cfg.name;
        let prio = self.machine.priority().get();
        tracing::info!(
            instance = %name,
            state = state.as_str(),
            priority = prio,
            master = ?self.machine.master(),
            "vrrp transition"
        );
        metrics::counter!(names::TRANSITIONS, "vrrp_instance" => name.clone(), "to" => state.as_str())
            .increment(1);
        for s in super::super::STATES {
            metrics::gauge!(names::STATE, "vrrp_instance" => name.clone(), "state" => s.as_str())
                .set(if s == state { 1.0 } else { 0.0 });
        }
        if let Some(cmd) = &self.cfg.notify {
            let _ = ctx.notify.send(Job {
                command: cmd.clone(),
                instance: name.clone(),
                state: state.keepalived_name(),
                priority: prio,
                timeout: self.cfg.notify_timeout,
            });
        }
    }

    /// Copies the machine's state into the shared status and the gauges.
    pub(super) fn publish(&self, ctx: &Ctx) {
        let prio = self.machine.priority().get();
        metrics::gauge!(names::PRIORITY, "vrrp_instance" => self.cfg.name.clone())
            .set(f64::from(prio));
        let state = self.machine.state().as_str();
        let master = self.machine.master().map(|m| m.to_string());
        ctx.status.send_if_modified(|all| {
            let Some(st) = all.iter_mut().find(|s| s.instance == self.cfg.name) else {
                return false;
            };
            let changed = st.state != state
                || st.priority != prio
                || st.master != master
                || st.tracks_down != self.tracks_down;
            if changed {
                st.state = state.into();
                st.priority = prio;
                st.master = master;
                st.tracks_down.clone_from(&self.tracks_down);
            }
            changed
        });
    }
}
