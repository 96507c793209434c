//! Metric names, their descriptions, and the Prometheus recorder.
//!
//! Label values come from fixed sets (route templates, status codes,
//! configured kinds, job states, outcome names), never from request data.

use std::time::Duration;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusHandle};

/// Counter, labels `route`, `method`, `status`: every HTTP request.
pub const REQUESTS: &str = "tandem_api_requests_total";
/// Histogram, labels `route`, `method`: time to answer, seconds.
pub const REQUEST_DURATION: &str = "tandem_api_request_duration_seconds";
/// Counter, no labels: requests refused with 429.
pub const RATE_LIMITED: &str = "tandem_api_rate_limited_total";
/// Gauge, labels `kind`, `state`: jobs in the database by kind and state.
pub const JOBS: &str = "tandem_api_jobs";
/// Gauge, label `kind`: queued jobs (the queue depth).
pub const QUEUE_DEPTH: &str = "tandem_api_queue_depth";
/// Histogram, labels `kind`, `outcome`: one worker call, seconds.
pub const DISPATCH_DURATION: &str = "tandem_api_dispatch_duration_seconds";
/// Counter, labels `kind`, `outcome`: worker calls by outcome.
pub const DISPATCHES: &str = "tandem_api_dispatches_total";
/// Counter: request log rows dropped because the writer fell behind.
pub const LOG_DROPPED: &str = "tandem_api_request_log_dropped_total";
/// Histogram: submissions per group commit.
pub const SUBMIT_BATCH: &str = "tandem_api_submit_batch_size";
/// Histogram: time to store one batch of submissions (transaction and
/// commit), seconds.
pub const SUBMIT_COMMIT: &str = "tandem_api_submit_commit_seconds";
/// Gauge: submissions waiting for the batcher.
pub const SUBMIT_QUEUE: &str = "tandem_api_submit_queue_depth";
/// Counter: submissions refused with 503 because the batcher's queue
/// was full.
pub const SUBMIT_REFUSED: &str = "tandem_api_submit_refused_total";

/// Counter, label `what`: transactions run again because the database
/// rolled them back in a conflict with another (deadlock, lock wait
/// timeout).
pub const DB_CONFLICTS: &str = "tandem_api_db_conflicts_total";
/// Counter, label `reason` (`untrusted`, `missing`, `bad`, `timeout`,
/// `io`): connections closed before HTTP over their PROXY header.
pub const PROXY_REFUSED: &str = "tandem_api_proxy_refused_total";
/// Counter, label `kind` (`header_read`, `keepalive`, `request`):
/// connections closed, or requests answered 408, by the HTTP timeouts.
pub const HTTP_TIMEOUTS: &str = "tandem_api_http_timeouts_total";

/// Counter, labels `kind`, `state`: jobs that reached a final state
/// (done, failed, cancelled) in this replica.
pub const JOBS_FINISHED: &str = "tandem_api_jobs_finished_total";
/// Counter, label `what` (`jobs`, `inputs`): rows deleted and inputs
/// emptied by retention.
pub const PRUNED: &str = "tandem_api_pruned_total";
/// Gauge, label `table`: bytes on disk (SQLite: the whole file, `all`).
pub const DB_BYTES: &str = "tandem_api_db_bytes";
/// Gauge, label `table`: free bytes inside them, reusable or reclaimable.
pub const DB_FREE_BYTES: &str = "tandem_api_db_free_bytes";
/// Gauge: `?wait=` requests being held by this replica.
pub const WAITERS: &str = "tandem_api_waiters";
/// Counter, label `outcome` (`final`, `timeout`): how held waits ended.
pub const WAITS: &str = "tandem_api_waits_total";
/// Counter, label `outcome` (`delivered`, `failed`): webhook deliveries
/// that ended.
pub const WEBHOOK_DELIVERIES: &str = "tandem_api_webhook_deliveries_total";
/// Counter, label `outcome` (`delivered`, `status`, `timeout`, `connect`,
/// `dns`, `refused`, `protocol`): webhook attempts.
pub const WEBHOOK_ATTEMPTS: &str = "tandem_api_webhook_attempts_total";
/// Histogram, label `outcome`: one webhook attempt, seconds.
pub const WEBHOOK_ATTEMPT_DURATION: &str = "tandem_api_webhook_attempt_duration_seconds";
/// Gauge: pending webhook deliveries of every replica (counted up to
/// 100,000).
pub const WEBHOOK_PENDING: &str = "tandem_api_webhook_pending";
/// Gauge: webhook attempts in flight from this replica.
pub const WEBHOOK_IN_FLIGHT: &str = "tandem_api_webhook_in_flight";

/// Buckets of the batch size histogram: 1 to the largest `submit_batch`.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1000.0,
];

/// Gauge, label `kind`: this replica's adaptive dispatch limit.
pub const DISPATCH_LIMIT: &str = "tandem_api_dispatch_limit";
/// Gauge, label `kind`: worker calls in flight from this replica.
pub const DISPATCH_IN_FLIGHT: &str = "tandem_api_dispatch_in_flight";
/// Gauge, label `kind`: slots the pool's workers advertise (0: none do).
pub const POOL_SLOTS: &str = "tandem_api_pool_slots";
/// Histogram: outcomes written per transaction.
pub const FINISH_BATCH: &str = "tandem_api_finish_batch_jobs";
/// Histogram: time to write one batch of outcomes, seconds.
pub const FINISH_DURATION: &str = "tandem_api_finish_batch_duration_seconds";
/// Counter: outcomes dropped because the lease had been lost.
pub const LEASES_LOST: &str = "tandem_api_leases_lost_total";
/// Histogram, label `kind`: jobs taken per claim.
pub const CLAIM_BATCH: &str = "tandem_api_claim_batch_jobs";

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the global Prometheus recorder once per process and returns its
/// handle (the same handle on later calls, so tests may call it freely).
pub fn install() -> Result<PrometheusHandle, BuildError> {
    tandem_service::metrics::install(
        |b| {
            b.set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)?
                .set_buckets_for_metric(Matcher::Full(SUBMIT_BATCH.to_owned()), BATCH_BUCKETS)
        },
        describe,
    )
}

/// Registers HELP text and units for every metric.
pub fn describe() {
    describe_counter!(
        REQUESTS,
        Unit::Count,
        "HTTP requests by route template, method and status."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer HTTP requests, by route template and method."
    );
    describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Requests refused with 429 by the per-key rate limit."
    );
    describe_gauge!(
        JOBS,
        Unit::Count,
        "Jobs in the database by kind and state (sampled at scrape)."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        Unit::Count,
        "Queued jobs by kind (sampled at scrape)."
    );
    describe_histogram!(
        DISPATCH_DURATION,
        Unit::Seconds,
        "Duration of worker calls by kind and outcome."
    );
    describe_counter!(DISPATCHES, Unit::Count, "Worker calls by kind and outcome.");
    describe_dispatch();
    describe_webhooks();
    describe_counter!(
        LOG_DROPPED,
        Unit::Count,
        "Request log rows dropped because the writer fell behind."
    );
    describe_histogram!(
        SUBMIT_BATCH,
        Unit::Count,
        "Submissions stored per group commit."
    );
    describe_histogram!(
        SUBMIT_COMMIT,
        Unit::Seconds,
        "Time to store one batch of submissions, transaction and commit."
    );
    describe_gauge!(
        SUBMIT_QUEUE,
        Unit::Count,
        "Submissions waiting for the batcher."
    );
    describe_lifecycle();
    describe_counter!(
        DB_CONFLICTS,
        Unit::Count,
        "Transactions run again after the database rolled them back in a conflict (deadlock, lock wait timeout)."
    );
    describe_counter!(
        PROXY_REFUSED,
        Unit::Count,
        "Connections closed before HTTP over their PROXY header, by reason (untrusted: a header from a peer not in proxy_protocol_from)."
    );
    describe_counter!(
        HTTP_TIMEOUTS,
        Unit::Count,
        "Connections closed by header_read_timeout or keepalive_timeout, and requests answered 408 by request_timeout, by kind."
    );
    describe_counter!(
        SUBMIT_REFUSED,
        Unit::Count,
        "Submissions refused with 503 because the batcher's queue was full."
    );
}

/// HELP text of final states, retention and waits.
fn describe_lifecycle() {
    describe_counter!(
        JOBS_FINISHED,
        Unit::Count,
        "Jobs that reached a final state (done, failed, cancelled) in this replica, by kind and state."
    );
    describe_counter!(
        PRUNED,
        Unit::Count,
        "Finished jobs deleted (what=jobs) and inputs emptied (what=inputs) by retention."
    );
    describe_gauge!(
        DB_BYTES,
        Unit::Bytes,
        "Database bytes on disk by table (SQLite: table=all, the file)."
    );
    describe_gauge!(
        DB_FREE_BYTES,
        Unit::Bytes,
        "Free bytes inside the database by table (SQLite: free pages)."
    );
    describe_gauge!(
        WAITERS,
        Unit::Count,
        "GET /v1/jobs/{id}?wait= requests held by this replica."
    );
    describe_counter!(
        WAITS,
        Unit::Count,
        "Held waits by how they ended: the job reached a final state, or the wait timed out."
    );
}

/// HELP text of the dispatcher's limit, claims and outcome writes.
fn describe_dispatch() {
    describe_gauge!(
        DISPATCH_LIMIT,
        Unit::Count,
        "This replica's adaptive limit of worker calls in flight, by kind."
    );
    describe_gauge!(
        DISPATCH_IN_FLIGHT,
        Unit::Count,
        "Worker calls in flight from this replica, by kind."
    );
    describe_gauge!(
        POOL_SLOTS,
        Unit::Count,
        "Slots the kind's workers advertise (X-Tandem-Slots), summed over those heard from in the last 10 s; 0 when none advertise."
    );
    describe_histogram!(
        FINISH_BATCH,
        Unit::Count,
        "Attempt outcomes written per transaction."
    );
    describe_histogram!(
        FINISH_DURATION,
        Unit::Seconds,
        "Time to write one batch of attempt outcomes."
    );
    describe_counter!(
        LEASES_LOST,
        Unit::Count,
        "Attempt outcomes dropped because the job's lease had been lost (another replica took it)."
    );
    describe_histogram!(CLAIM_BATCH, Unit::Count, "Jobs taken per claim, by kind.");
}

/// HELP text of the webhook deliveries.
fn describe_webhooks() {
    describe_counter!(
        WEBHOOK_DELIVERIES,
        Unit::Count,
        "Webhook deliveries that ended, by outcome: delivered (a 2xx) or failed (given up)."
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        Unit::Count,
        "Webhook attempts by outcome: delivered, status (a non-2xx answer), timeout, connect, dns, refused (by the address policy), protocol."
    );
    describe_histogram!(
        WEBHOOK_ATTEMPT_DURATION,
        Unit::Seconds,
        "Duration of webhook attempts, by outcome."
    );
    describe_gauge!(
        WEBHOOK_PENDING,
        Unit::Count,
        "Webhook deliveries pending (queued or retrying) across all replicas, counted up to 100000; sampled each poll."
    );
    describe_gauge!(
        WEBHOOK_IN_FLIGHT,
        Unit::Count,
        "Webhook attempts in flight from this replica."
    );
}

/// One answered request.
pub fn request(route: &'static str, method: &'static str, status: u16, elapsed: Duration) {
    counter!(REQUESTS, "route" => route, "method" => method, "status" => status.to_string())
        .increment(1);
    histogram!(REQUEST_DURATION, "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
}

/// One worker call.
pub fn dispatch(kind: &str, outcome: &'static str, elapsed: Duration) {
    counter!(DISPATCHES, "kind" => kind.to_owned(), "outcome" => outcome).increment(1);
    histogram!(DISPATCH_DURATION, "kind" => kind.to_owned(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// Job counts sampled from the database.
pub fn job_count(kind: &str, state: &'static str, n: i64) {
    gauge!(JOBS, "kind" => kind.to_owned(), "state" => state).set(n as f64);
    if state == "queued" {
        gauge!(QUEUE_DEPTH, "kind" => kind.to_owned()).set(n as f64);
    }
}

/// One batch of outcomes written.
pub fn finish_batch(jobs: usize, lost: usize, elapsed: Duration) {
    histogram!(FINISH_BATCH).record(jobs as f64);
    histogram!(FINISH_DURATION).record(elapsed.as_secs_f64());
    counter!(LEASES_LOST).increment(lost as u64);
}

/// One kind's dispatch gauges, resolved once per kind (not per call).
pub struct KindGauges {
    limit: metrics::Gauge,
    in_flight: metrics::Gauge,
    pool_slots: metrics::Gauge,
}

impl KindGauges {
    /// The gauges of `kind`.
    pub fn new(kind: &str) -> KindGauges {
        KindGauges {
            limit: gauge!(DISPATCH_LIMIT, "kind" => kind.to_owned()),
            in_flight: gauge!(DISPATCH_IN_FLIGHT, "kind" => kind.to_owned()),
            pool_slots: gauge!(POOL_SLOTS, "kind" => kind.to_owned()),
        }
    }

    /// The kind's dispatch state now.
    pub fn set(&self, limit: usize, in_flight: usize, pool_slots: Option<u32>) {
        self.limit.set(limit as f64);
        self.in_flight.set(in_flight as f64);
        self.pool_slots.set(f64::from(pool_slots.unwrap_or(0)));
    }
}

/// One claim.
pub fn claim(kind: &str, jobs: usize) {
    histogram!(CLAIM_BATCH, "kind" => kind.to_owned()).record(jobs as f64);
}
