//! Prometheus metrics: names, descriptions, and the `/metrics` listener.
//!
//! The recorder is installed with recommended naming, so counters get the
//! `_total` suffix and units their suffix (`_bytes`) at render time: the
//! names below are the stems. Every metric is described here (HELP line),
//! or `promtool check metrics` complains.
//!
//! The listener is a deliberately small HTTP/1.1 responder (one request per
//! connection, `Connection: close`): it serves `GET /metrics` and nothing
//! that takes input, so it needs no HTTP framework in the balancer.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Metric name stems.
pub mod names {
    pub const BUILD_INFO: &str = "tandem_lb_build_info";
    pub const SERVICE_ACTIVE: &str = "tandem_lb_service_active_connections";
    pub const SERVICE_CONNECTIONS: &str = "tandem_lb_service_connections";
    pub const SERVICE_REFUSED: &str = "tandem_lb_service_refused_max_connections";
    pub const SERVICE_NO_BACKEND: &str = "tandem_lb_service_no_backend";
    pub const BACKEND_ACTIVE: &str = "tandem_lb_backend_active_connections";
    pub const BACKEND_CONNECTIONS: &str = "tandem_lb_backend_connections";
    pub const BACKEND_BYTES_TO_BACKEND: &str = "tandem_lb_backend_sent";
    pub const BACKEND_BYTES_TO_CLIENT: &str = "tandem_lb_backend_received";
    pub const BACKEND_CONNECT_FAILURES: &str = "tandem_lb_backend_connect_failures";
    pub const BACKEND_RETRIES: &str = "tandem_lb_backend_retries";
    pub const BACKEND_REFUSED: &str = "tandem_lb_backend_refused_max_connections";
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

/// Installs the process-wide Prometheus recorder and describes all metrics.
/// Must be called at most once per process (it sets the global recorder).
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets_for_metric(
            Matcher::Full(tandem_healthcheck::telemetry::names::PROBE_DURATION.to_string()),
            tandem_healthcheck::telemetry::PROBE_DURATION_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    // Backend health (up, probes, transitions) is the checker's to export.
    tandem_healthcheck::telemetry::describe();
    metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Produces the status page's JSON (`tandem lb status --json`'s content).
pub type StatusFn = Arc<dyn Fn() -> String + Send + Sync>;

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
    let upkeep = {
        let handle = handle.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            // Histograms and idle-metric bookkeeping need periodic upkeep
            // when the exporter's own HTTP listener is not used.
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    _ = shutdown.cancelled() => break,
                }
            }
        })
    };
    loop {
        let (mut sock, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let handle = handle.clone();
        let status = status.clone();
        tokio::spawn(async move {
            let reply = respond(&mut sock, &handle, status.as_ref());
            let _ = tokio::time::timeout(Duration::from_secs(10), reply).await;
        });
    }
    upkeep.abort();
}

async fn respond(
    sock: &mut tokio::net::TcpStream,
    handle: &PrometheusHandle,
    status: Option<&StatusFn>,
) -> std::io::Result<()> {
    // Read the request head (bounded: 8 KiB is plenty for a scrape request).
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    loop {
        let n = sock.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (code, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok\n".to_string()),
        ("GET", "/" | "/status") if status.is_some() => (
            "200 OK",
            "text/html; charset=utf-8",
            crate::statuspage::PAGE.to_string(),
        ),
        ("GET", "/status.json") if status.is_some() => (
            "200 OK",
            "application/json",
            status.map(|f| f()).unwrap_or_default(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_string(),
        ),
    };
    // The page is read-only and self-contained: forbid framing and any
    // script or style from elsewhere.
    let resp = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Content-Security-Policy: default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'\r\n\
         X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(resp.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}
