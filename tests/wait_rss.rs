//! Issue 14, item 1: two thousand `GET /v1/jobs/{id}?wait=` held at once
//! cost a replica little memory, and are all answered when it shuts down.
//!
//! One real `tandem api run` process on SQLite and 127.0.0.1. Its one kind
//! points at a port nobody listens on, with a retry backoff of an hour: a
//! job's first attempt fails at once and it then stays queued, so nothing
//! ends the waits but their time. The test submits `WAITERS` jobs, opens
//! one connection per job with a 60 s wait on it, waits until the replica's
//! own gauge says every wait is held, and reads the process's resident set
//! (`VmRSS`) before and after. Then it SIGTERMs the replica and checks that
//! every held request got its answer (200, the job still queued).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tandem_test_support::http::Request;
use tandem_test_support::wait::Wait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_tandem");
const WAITERS: usize = 2000;
/// Resident memory the held waits may add, per wait. Measured on
/// 2026-12-01: 23.3 KB per wait with the release binary, 28.4 KB with the
/// debug one this test runs. Most of it is the connection, not the wait:
/// hyper gives every HTTP/1.1 connection an 8 KiB read buffer and an
/// 8 KiB write buffer; the wait itself is an entry in a map and a
/// handler future of a few hundred bytes (no task, no database
/// connection, no timer wheel entry beyond the one sleep). The bound
/// catches what would cost per waiter rather than per connection (a
/// buffered body, a pooled connection, a task with a stack).
const MAX_PER_WAIT: u64 = 40 * 1024;

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Replica(Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The value of an unlabelled gauge in a Prometheus text page.
fn gauge(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_held_waits_cost_little_memory_and_end_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, dead) = (free_port(), free_port());
    let config = dir.path().join("api.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nstate_dir = \"{}\"\nwait_max = \"2m\"\nrequest_timeout = \"3m\"\n\
             [kinds.text]\nurl = \"http://{dead}\"\nmax_attempts = 100\n\
             retry_base = \"1h\"\nretry_max = \"1h\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let cfg = config.display().to_string();
    let token = cli(&[
        "api", "keys", "create", "--name", "w", "--rate", "100000", "--burst", "100000", "-c", &cfg,
    ]);
    let log = std::fs::File::create(dir.path().join("api.log")).unwrap();
    let replica = Replica(
        Command::new(BIN)
            .args(["api", "run", "-c", &cfg])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://{addr}");
    Wait::new(Duration::from_secs(30), "the replica is ready")
        .until(|| async {
            Request::get("/")
                .send_url(&format!("{base}/readyz"))
                .await
                .is_ok_and(|a| a.status == 200)
        })
        .await;

    let mut ids = Vec::with_capacity(WAITERS);
    for i in 0..WAITERS {
        let a = Request::new("POST", "/")
            .bearer(&token)
            .headers(&[("content-type", "application/json")])
            .body(format!("{{\"kind\":\"text\",\"input\":\"job {i}\"}}"))
            .send_url(&format!("{base}/v1/jobs"))
            .await
            .unwrap();
        assert_eq!(a.status, 202, "{}", a.text());
        ids.push(a.json()["id"].as_str().unwrap().to_owned());
    }
    let pid = replica.0.id();
    let before = rss_bytes(pid);

    let mut held = Vec::with_capacity(WAITERS);
    for id in &ids {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /v1/jobs/{id}?wait=90s HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        held.push(s);
    }
    Wait::new(Duration::from_secs(60), "every wait held")
        .until(|| async {
            let page = Request::get("/")
                .send_url(&format!("{base}/metrics"))
                .await
                .map(|a| a.text());
            page.ok().and_then(|p| gauge(&p, "tandem_api_waiters")) == Some(WAITERS as f64)
        })
        .await;
    let during = rss_bytes(pid);
    let per_wait = during.saturating_sub(before) / WAITERS as u64;
    eprintln!("RSS {before} → {during} bytes: {per_wait} bytes per held wait");
    assert!(per_wait <= MAX_PER_WAIT, "{per_wait} bytes per held wait");

    // Shutdown answers every held request at once.
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let answers = held.into_iter().map(|mut s| {
        tokio::spawn(async move {
            let mut buf = Vec::new();
            tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
                .await
                .map(|_| String::from_utf8_lossy(&buf).into_owned())
        })
    });
    let mut answered = 0;
    for a in answers {
        let text = a.await.unwrap().expect("answered before the wait ran out");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("\"status\":\"queued\""), "{text}");
        answered += 1;
    }
    assert_eq!(answered, WAITERS);
}
