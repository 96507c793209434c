//! Metric names, their descriptions, and the Prometheus recorder.
//!
//! Labels come from [`crate::kinds::RunError::code`] (plus `ok`, `busy`,
//! `too_large`, `shutting_down`), never from parsing a message, so the set of
//! label values is fixed and small.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusHandle};

/// Counter, labels `kind`, `outcome`: every `POST /v1/run`, by how it ended.
pub const RUNS: &str = "tandem_worker_runs_total";
/// Histogram, labels `kind`, `outcome`: time from admission to answer, for
/// runs that got a concurrency slot.
pub const RUN_DURATION: &str = "tandem_worker_run_duration_seconds";
/// Gauge, label `kind`: runs holding a concurrency slot now (a timed-out
/// decode still holds its slot until its thread returns).
pub const IN_FLIGHT: &str = "tandem_worker_in_flight_runs";
/// Counter, label `timeout` (`header_read` or `idle`): connections the
/// worker closed because a client stalled ([`crate::conn`]).
pub const CONNECTION_TIMEOUTS: &str = "tandem_worker_connection_timeouts_total";

/// Histogram buckets, seconds: thumbnails and text take milliseconds, exec
/// commands up to their timeout.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the global Prometheus recorder once per process and returns its
/// handle (the same handle on later calls, so tests may call it freely).
pub fn install() -> Result<PrometheusHandle, BuildError> {
    tandem_service::metrics::install(
        |b| b.set_buckets_for_metric(Matcher::Full(RUN_DURATION.to_owned()), BUCKETS),
        describe,
    )
}

/// Registers HELP text and units for every metric.
pub fn describe() {
    describe_counter!(
        RUNS,
        Unit::Count,
        "Runs of POST /v1/run, by kind and outcome."
    );
    describe_histogram!(
        RUN_DURATION,
        Unit::Seconds,
        "Time from admission to answer of runs that got a concurrency slot."
    );
    describe_gauge!(
        IN_FLIGHT,
        Unit::Count,
        "Runs holding a concurrency slot now."
    );
    describe_counter!(
        CONNECTION_TIMEOUTS,
        Unit::Count,
        "Connections closed by the worker because the client stalled, by timeout \
         (header_read: a request head not completed in time; idle: nothing moving \
         and no request in flight)."
    );
}

/// Counts one finished request; `elapsed` is `None` for requests refused
/// before they got a slot.
pub fn record_run(kind: &'static str, outcome: &'static str, elapsed: Option<Duration>) {
    counter!(RUNS, "kind" => kind, "outcome" => outcome).increment(1);
    if let Some(d) = elapsed {
        histogram!(RUN_DURATION, "kind" => kind, "outcome" => outcome).record(d.as_secs_f64());
    }
}

/// Moves the in-flight gauge by `delta` (+1 on admission, -1 on release).
pub fn in_flight(kind: &'static str, delta: f64) {
    gauge!(IN_FLIGHT, "kind" => kind).increment(delta);
}

/// Counts one connection closed by `timeout` (`header_read` or `idle`).
pub fn connection_timeout(timeout: &'static str) {
    counter!(CONNECTION_TIMEOUTS, "timeout" => timeout).increment(1);
}
