//! Prometheus metrics: names, descriptions, and the `/metrics` listener.
//!
//! The recorder is installed with recommended naming, so counters get the
//! `_total` suffix and units their suffix (`_bytes`) at render time: the
//! names below are the stems. Every metric is described here (HELP line),
//! or `promtool check metrics` complains.
//!
//! The listener is `tandem_service::metrics::serve` (`GET /metrics`,
//! `/healthz`); [`StatusPages`] adds the status page to it (`GET /` or
//! `/status`, and `/status.json`).

use std::sync::Arc;

use metrics::{Unit, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusHandle};
use tandem_service::metrics::{Page, Pages};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Metric name stems.
pub mod names {
    pub const BUILD_INFO: &str = "tandem_lb_build_info";
    pub const SERVICE_ACTIVE: &str = "tandem_lb_service_active_connections";
    pub const SERVICE_CONNECTIONS: &str = "tandem_lb_service_connections";
    pub const SERVICE_REFUSED: &str = "tandem_lb_service_refused_max_connections";
    pub const SERVICE_NO_BACKEND: &str = "tandem_lb_service_no_backend";
    pub const PERSIST_ENTRIES: &str = "tandem_lb_service_persistence_entries";
    pub const PERSIST_HITS: &str = "tandem_lb_service_persistence_hits";
    pub const PERSIST_MISSES: &str = "tandem_lb_service_persistence_misses";
    pub const PERSIST_EVICTIONS: &str = "tandem_lb_service_persistence_evictions";
    pub const PERSIST_REFUSED_FULL: &str = "tandem_lb_service_persistence_refused_full";
    pub const BACKEND_ACTIVE: &str = "tandem_lb_backend_active_connections";
    pub const BACKEND_CONNECTIONS: &str = "tandem_lb_backend_connections";
    pub const BACKEND_BYTES_TO_BACKEND: &str = "tandem_lb_backend_sent";
    pub const BACKEND_BYTES_TO_CLIENT: &str = "tandem_lb_backend_received";
    pub const BACKEND_CONNECT_FAILURES: &str = "tandem_lb_backend_connect_failures";
    pub const BACKEND_RETRIES: &str = "tandem_lb_backend_retries";
    pub const BACKEND_REFUSED: &str = "tandem_lb_backend_refused_max_connections";
    pub const WORKER_CONNECTIONS: &str = "tandem_lb_worker_connections";
    pub const RELOADS: &str = "tandem_lb_reloads";
    pub const CONFIG_LOADED: &str = "tandem_lb_config_last_reload_success_timestamp";
}

/// Describes every metric the balancer exports.
pub fn describe() {
    use names::*;
    describe_gauge!(BUILD_INFO, "Build information; the value is always 1.");
    describe_gauge!(
        SERVICE_ACTIVE,
        Unit::Count,
        "Client connections currently open, per service."
    );
    describe_counter!(
        SERVICE_CONNECTIONS,
        Unit::Count,
        "Client connections accepted, per service."
    );
    describe_counter!(
        SERVICE_REFUSED,
        Unit::Count,
        "Client connections refused because the service's max_connections was reached."
    );
    describe_counter!(
        SERVICE_NO_BACKEND,
        Unit::Count,
        "Client connections closed because no backend could be connected after all retries."
    );
    describe_gauge!(
        PERSIST_ENTRIES,
        Unit::Count,
        "Client persistence entries held, per service, as of the last sweep (expired ones not yet swept included)."
    );
    describe_counter!(
        PERSIST_HITS,
        Unit::Count,
        "New connections sent to the backend their client was pinned to."
    );
    describe_counter!(
        PERSIST_MISSES,
        Unit::Count,
        "New connections of a persistent service scheduled afresh (no entry, pinned backend unavailable or full)."
    );
    describe_counter!(
        PERSIST_EVICTIONS,
        Unit::Count,
        "Idle persistence entries evicted before their timeout because the table was full."
    );
    describe_counter!(
        PERSIST_REFUSED_FULL,
        Unit::Count,
        "New clients not remembered because the persistence table was full of entries with open connections."
    );
    describe_gauge!(
        BACKEND_ACTIVE,
        Unit::Count,
        "Connections currently open to a backend."
    );
    describe_counter!(
        BACKEND_CONNECTIONS,
        Unit::Count,
        "Connections established to a backend."
    );
    describe_counter!(
        BACKEND_BYTES_TO_BACKEND,
        Unit::Bytes,
        "Bytes forwarded from clients to a backend."
    );
    describe_counter!(
        BACKEND_BYTES_TO_CLIENT,
        Unit::Bytes,
        "Bytes forwarded from a backend to clients."
    );
    describe_counter!(
        BACKEND_CONNECT_FAILURES,
        Unit::Count,
        "Connect attempts to a backend that were refused, timed out or failed."
    );
    describe_counter!(
        BACKEND_RETRIES,
        Unit::Count,
        "Connect attempts retried on another backend after this backend failed."
    );
    describe_counter!(
        BACKEND_REFUSED,
        Unit::Count,
        "Times a backend was passed over because its max_connections was reached."
    );
    describe_counter!(
        WORKER_CONNECTIONS,
        Unit::Count,
        "Client connections accepted, per data-plane worker thread (how SO_REUSEPORT spread them)."
    );
    describe_counter!(
        RELOADS,
        Unit::Count,
        "Configuration reloads, by result (ok or error)."
    );
    describe_gauge!(
        CONFIG_LOADED,
        Unit::Seconds,
        "Unix time of the last successful configuration load."
    );
}

/// Installs the process-wide Prometheus recorder and describes all metrics
/// (once per process; later calls return the same handle).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = tandem_service::metrics::install(
        |b| {
            b.set_buckets_for_metric(
                Matcher::Full(tandem_healthcheck::telemetry::names::PROBE_DURATION.to_string()),
                tandem_healthcheck::telemetry::PROBE_DURATION_BUCKETS,
            )
        },
        || {
            describe();
            // Backend health (up, probes, transitions) is the checker's to export.
            tandem_healthcheck::telemetry::describe();
        },
    )?;
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Produces the status page's JSON (`tandem lb status --json`'s content).
pub type StatusFn = Arc<dyn Fn() -> String + Send + Sync>;

/// The status page and its data, served beside `/metrics`.
pub struct StatusPages(pub StatusFn);

/// The page is read-only and self-contained: forbid framing and any script
/// or style from elsewhere.
const PAGE_CSP: &str = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'";

impl Pages for StatusPages {
    fn get(&self, path: &str) -> Option<Page> {
        match path {
            "/" | "/status" => Some(
                Page::new("text/html; charset=utf-8", crate::statuspage::PAGE)
                    .header("content-security-policy", PAGE_CSP),
            ),
            "/status.json" => Some(
                Page::new("application/json", (self.0)())
                    .header("content-security-policy", PAGE_CSP),
            ),
            _ => None,
        }
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle, shutdown: CancellationToken) {
    serve_with_status(listener, handle, None, shutdown).await
}

/// Serves `GET /metrics`, and with `status` also the status page (`GET /`)
/// and its data (`GET /status.json`), until `shutdown`.
pub async fn serve_with_status(
    listener: TcpListener,
    handle: PrometheusHandle,
    status: Option<StatusFn>,
    shutdown: CancellationToken,
) {
    let pages = status.map(|f| Arc::new(StatusPages(f)) as Arc<dyn Pages>);
    tandem_service::metrics::serve(listener, handle, pages, shutdown).await
}
