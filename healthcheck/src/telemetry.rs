//! Metric names and descriptions for health checking.
//!
//! Names are stems: with the Prometheus exporter's recommended naming, counters
//! get `_total` and units their suffix (`_seconds`) at render time. Every
//! metric carries the `service` and `backend` labels of its target. The
//! balancer calls [`describe`] once after installing its recorder.
//!
//! The probe duration histogram renders as a summary unless the exporter is
//! given buckets for it (`set_buckets_for_metric`); [`PROBE_DURATION_BUCKETS`]
//! suits probes bounded by a timeout of a few seconds.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

pub mod names {
    /// Histogram, seconds; labels service, backend, kind (tcp, http, exec).
    pub const PROBE_DURATION: &str = "tandem_health_probe_duration";
    /// Counter; labels service, backend, kind, outcome (see `probe::Outcome`).
    pub const PROBE_RESULTS: &str = "tandem_health_probe_results";
    /// Gauge, 1 or 0; labels service, backend.
    pub const BACKEND_UP: &str = "tandem_health_backend_up";
    /// Gauge, 0 to 1; labels service, backend.
    pub const WEIGHT_FACTOR: &str = "tandem_health_backend_weight_factor";
    /// Counter; labels service, backend, to (up, down), cause (probe, passive).
    pub const TRANSITIONS: &str = "tandem_health_transitions";
}

/// Histogram buckets for [`names::PROBE_DURATION`], in seconds.
pub const PROBE_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Describes every health-checking metric (their HELP lines).
pub fn describe() {
    use names::*;
    describe_histogram!(
        PROBE_DURATION,
        Unit::Seconds,
        "Time one health probe took, from start to verdict (bounded by its timeout)."
    );
    describe_counter!(
        PROBE_RESULTS,
        Unit::Count,
        "Health probes run, by outcome (ok, refused, timeout, bad_status, ...)."
    );
    describe_gauge!(
        BACKEND_UP,
        "Whether health checking considers the backend up (1) or down (0)."
    );
    describe_gauge!(
        WEIGHT_FACTOR,
        "Fraction of its configured weight a backend gets: 0 when down, ramping to 1 during slow start."
    );
    describe_counter!(
        TRANSITIONS,
        Unit::Count,
        "Backend state changes decided by health checking, by new state and cause."
    );
}
