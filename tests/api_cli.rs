//! `tandem api run` as systemd runs it: READY=1 once serving, STOPPING=1
//! and exit 0 on SIGTERM. SQLite in a temp dir, loopback only. And
//! `tandem api check` / `tandem worker check`: every error of the file, one
//! located line each.

use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tandem_test_support::eventually_blocking;
use tandem_test_support::http::Request;

const BIN: &str = env!("CARGO_BIN_EXE_tandem");

#[test]
fn api_tells_systemd_when_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let listen = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("api.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{listen}\"\nstate_dir = \"{}\"\n[kinds.text]\nurl = \"http://127.0.0.1:9\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["api", "run", "-c"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    // Serving by then: /readyz answers 200.
    let resp = Request::get("/readyz")
        .send_blocking(listen)
        .expect("listening once READY=1 was sent");
    assert_eq!(resp.status, 200, "{}", resp.text());

    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
    let st = eventually_blocking(
        Duration::from_secs(30),
        "the api's exit after SIGTERM",
        || child.try_wait().unwrap(),
    );
    assert_eq!(st.code(), Some(0));
}

/// Runs `tandem ROLE check -c FILE` on `text`; its exit code and stderr.
fn check(role: &str, text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{role}.toml"));
    std::fs::write(&file, text).unwrap();
    let out = Command::new(BIN)
        .args([role, "check", "-c"])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&*file.to_string_lossy(), "FILE");
    (out.status.code(), stderr)
}

/// `ROLE check` exits 1 and prints one located line per error, in file
/// order, each starting with the given prefix.
fn assert_check_errors(role: &str, text: &str, prefixes: &[&str]) {
    let (code, stderr) = check(role, text);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), prefixes.len(), "{stderr}");
    for (line, prefix) in lines.iter().zip(prefixes) {
        assert!(line.starts_with(prefix), "expected {prefix:?}: {stderr}");
    }
}

#[test]
fn api_check_prints_every_error_with_its_location() {
    assert_check_errors(
        "api",
        "lease = \"30\"\n[kinds.text]\nurl = \"http://127.0.0.1:9\"\nconcurrency = 0\n",
        &[
            "FILE:1:9: lease = \"30\": ",
            "FILE:4:15: kinds.text.concurrency = 0: out of range; valid: ",
        ],
    );
}

#[test]
fn worker_check_prints_every_error_with_its_location() {
    assert_check_errors(
        "worker",
        "listen = \"127.0.0.1:1\"\n[limits]\nconcurrency = 0\n[text]\ntimeout = \"1w\"\n",
        &[
            "FILE:3:15: limits.concurrency = 0: out of range; valid: ",
            "FILE:5:11: text.timeout = \"1w\": not a duration: unknown unit",
        ],
    );
}
