//! The connection timeouts (`limits.header_read_timeout`,
//! `limits.idle_timeout`) and shutdown with a half-sent request, over real
//! loopback sockets. Each close is waited for with a deadline; the lower
//! bounds only check that a timeout did not fire early, which a timer
//! cannot do.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{KeptAlive, Worker, eventually};
use tandem_worker::config::Kind;

/// A text worker with these connection timeouts.
async fn worker(header_read: &str, idle: &str) -> Worker {
    Worker::start(
        Kind::Text,
        &format!("[limits]\nheader_read_timeout = \"{header_read}\"\nidle_timeout = \"{idle}\"\n"),
    )
    .await
}

/// Waits (at most `within`) for the server to close `conn`; returns how
/// long that took, or panics.
async fn closed_within(conn: &mut KeptAlive, within: Duration) -> Duration {
    let started = Instant::now();
    let closed = tokio::time::timeout(within, conn.closed_by_server()).await;
    assert!(
        matches!(closed, Ok(true)),
        "the worker did not close the connection within {within:?}"
    );
    started.elapsed()
}

/// Whether the kernel holds no unread byte on the server's side of the
/// loopback connection from `client` to `server`: the worker has read
/// what was sent (from /proc/net/tcp, `rx_queue` of that socket).
fn server_read_everything(server: SocketAddr, client: SocketAddr) -> bool {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => unreachable!("tests use 127.0.0.1"),
    };
    let (local, remote) = (hex(server), hex(client));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        f.len() > 4
            && f[1] == local
            && f[2] == remote
            && f[4]
                .split_once(':')
                .is_some_and(|(_, rx)| u64::from_str_radix(rx, 16) == Ok(0))
    })
}

#[tokio::test]
async fn a_half_sent_request_line_is_closed_after_the_header_read_timeout() {
    let w = worker("300ms", "1h").await;
    let mut conn = KeptAlive::open(w.addr).await;
    let sent = Instant::now();
    conn.send_raw(b"POST /v1/ru").await;
    closed_within(&mut conn, Duration::from_secs(5)).await;
    assert!(sent.elapsed() >= Duration::from_millis(300), "closed early");

    // After a first request the clock starts again at the next head's
    // first byte, and the idle wait before it does not count.
    let mut conn = KeptAlive::open(w.addr).await;
    conn.send("GET", "/healthz", b"").await;
    assert_eq!(conn.reply().await.status, 200);
    conn.send_raw(b"GET /hea").await;
    closed_within(&mut conn, Duration::from_secs(5)).await;
    w.assert_healthy().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let w = worker("1h", "300ms").await;
    let mut conn = KeptAlive::open(w.addr).await;
    conn.send("GET", "/healthz", b"").await;
    let answered = Instant::now();
    let r = conn.reply().await;
    assert!(r.status == 200 && !r.closes(), "{r:?}");
    closed_within(&mut conn, Duration::from_secs(5)).await;
    assert!(
        answered.elapsed() >= Duration::from_millis(300),
        "closed early"
    );

    // One that never sends a byte, too.
    let mut silent = KeptAlive::open(w.addr).await;
    closed_within(&mut silent, Duration::from_secs(5)).await;
    let metrics = w.get("/metrics").await.text();
    assert!(
        metrics.contains("tandem_worker_connection_timeouts_total{timeout=\"idle\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_half_sent_request() {
    // Timeouts far longer than the test: only shutdown may close it.
    let mut w = worker("1h", "1h").await;
    let mut conn = KeptAlive::open(w.addr).await;
    conn.send_raw(b"POST /v1/run HTTP/1.1\r\nhost: x\r\ncontent-le")
        .await;
    let client = conn.local_addr();
    eventually(
        Duration::from_secs(10),
        "the worker read the partial head",
        || {
            let read = server_read_everything(w.addr, client);
            async move { read }
        },
    )
    .await;

    w.shutdown.cancel();
    let task = w.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve returns at once despite the half-sent request")
        .unwrap()
        .unwrap();
    closed_within(&mut conn, Duration::from_secs(5)).await;
}
