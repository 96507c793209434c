//! `tandem api run` as systemd runs it: READY=1 once serving, STOPPING=1
//! and exit 0 on SIGTERM. SQLite in a temp dir, loopback only.

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
