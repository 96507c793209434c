//! Tracking: from the state of tracked targets to the instance's effective
//! priority and fault, keepalived's `track_interface` / `track_script` rule.
//!
//! - A down target with weight 0 puts the instance in FAULT (keepalived: a
//!   tracked interface or script without weight), which releases the VIPs.
//! - A down target with a non-zero weight adds that weight to the configured
//!   priority (negative lowers it). The sum is clamped to 1..=254 (255 is
//!   kept only by an unadjusted owner), as keepalived does and as the machine
//!   re-checks on [`crate::vrrp::machine::Event::PriorityChanged`].
//! - Recovery removes the weight again: the priority is recomputed from the
//!   configured one every time, never adjusted incrementally, so no sequence of
//!   ups and downs can drift it.

/// The state of one tracked target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackState {
    pub down: bool,
    pub weight: i32,
}

/// What tracking asks of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The effective priority, 1..=255.
    pub priority: u8,
    /// A weight-0 target is down: the instance must be in FAULT.
    pub fault: bool,
}

/// Combines the configured priority with the tracked targets.
pub fn verdict(configured: u8, tracks: impl IntoIterator<Item = TrackState>) -> Verdict {
    let mut sum = 0i32;
    let mut fault = false;
    for t in tracks {
        if t.down {
            if t.weight == 0 {
                fault = true;
            } else {
                sum += t.weight;
            }
        }
    }
    let priority = if sum == 0 {
        configured
    } else {
        (i32::from(configured) + sum).clamp(1, 254) as u8 // cannot truncate: clamped
    };
    Verdict { priority, fault }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(down: bool, weight: i32) -> TrackState {
        TrackState { down, weight }
    }

    #[test]
    fn up_targets_change_nothing() {
        assert_eq!(
            verdict(150, [t(false, -100), t(false, 0)]),
            Verdict {
                priority: 150,
                fault: false
            }
        );
    }

    #[test]
    fn down_weights_add_and_recovery_restores() {
        assert_eq!(verdict(150, [t(true, -100), t(false, -20)]).priority, 50);
        assert_eq!(verdict(150, [t(true, -100), t(true, -20)]).priority, 30);
        assert_eq!(verdict(150, [t(false, -100), t(false, -20)]).priority, 150);
        assert_eq!(verdict(100, [t(true, 50)]).priority, 150);
    }

    #[test]
    fn clamped_to_the_valid_range() {
        assert_eq!(verdict(100, [t(true, -254)]).priority, 1);
        assert_eq!(verdict(200, [t(true, 254)]).priority, 254);
        // An owner keeps 255 only while nothing adjusts it.
        assert_eq!(verdict(255, [t(false, -10)]).priority, 255);
        assert_eq!(verdict(255, [t(true, -10)]).priority, 245);
    }

    #[test]
    fn weight_zero_down_is_fault() {
        let v = verdict(150, [t(true, 0), t(true, -10)]);
        assert!(v.fault);
        assert_eq!(v.priority, 140);
        assert!(!verdict(150, [t(false, 0)]).fault);
    }
}
