//! `tandem lb` as a user runs it: the real binary, signals, the admin
//! socket, the metrics listener. Loopback only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tandem_test_support::eventually_blocking as wait_until;
use tandem_test_support::http::Request;

const BIN: &str = env!("CARGO_BIN_EXE_tandem");

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A backend that echoes, one thread per connection; lives as long as the test.
fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().unwrap();
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

struct Lb {
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    listen: SocketAddr,
    metrics: SocketAddr,
}

impl Lb {
    fn config_text(
        dir: &Path,
        listen: SocketAddr,
        metrics: SocketAddr,
        backend: SocketAddr,
        grace: &str,
    ) -> String {
        format!(
            r#"[node]
name = "test"
workers = 1
shutdown_grace = "{grace}"
[admin]
socket = "{sock}"
[metrics]
listen = "{metrics}"
[[service]]
name = "echo"
listen = "{listen}"
[[service.backend]]
name = "e1"
address = "{backend}"
"#,
            sock = dir.join("lb.sock").display()
        )
    }

    fn start(grace: &str) -> Lb {
        Self::start_with(grace, &[])
    }

    fn start_with(grace: &str, env: &[(&str, &std::ffi::OsStr)]) -> Lb {
        let dir = tempfile::tempdir().unwrap();
        let listen = free_port();
        let metrics = free_port();
        let backend = echo_backend();
        let config = dir.path().join("lb.toml");
        std::fs::write(
            &config,
            Self::config_text(dir.path(), listen, metrics, backend, grace),
        )
        .unwrap();
        let child = Command::new(BIN)
            .args(["lb", "run", "-c"])
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("lb.log")).unwrap())
            .spawn()
            .unwrap();
        let lb = Lb {
            child,
            dir,
            config,
            listen,
            metrics,
        };
        // The admin socket is bound after every service listener, so its
        // appearance means the balancer is serving (and no test connection
        // has to be spent, and counted, to find out).
        wait_until(Duration::from_secs(20), "balancer listening", || {
            lb.dir.path().join("lb.sock").exists()
        });
        lb
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("lb")
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        wait_until(within, "the balancer's exit", || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

#[test]
fn check_reports_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:80\"\nscheduler = \"fastest\"\n[[service.backend]]\naddress = \"198.18.0.1:80\"\nweight = 999\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["lb", "check", "-c"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.toml:4:"),
        "scheduler error located: {err}"
    );
    assert!(
        err.contains("fastest") && err.contains("wlc"),
        "bad value and valid names: {err}"
    );
    assert!(
        err.contains("bad.toml:7:") && err.contains("999"),
        "weight error located: {err}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:80\"\n[[service.backend]]\naddress = \"127.0.0.1:81\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["lb", "check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn status_drain_and_admin_socket_permissions() {
    let lb = Lb::start("5s");
    let mode = std::fs::metadata(lb.dir.path().join("lb.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "admin socket is private");

    let mut c = TcpStream::connect(lb.listen).unwrap();
    roundtrip(&mut c, b"ping");
    let out = lb.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("echo") && text.contains("e1") && text.contains("up"),
        "{text}"
    );

    let out = lb.cli(&["drain", "echo", "e1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lb.cli(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &v["services"][0]["backends"][0];
    assert_eq!(b["state"], "drained");
    assert_eq!(b["active"], 1, "the open connection is still counted");
    assert_eq!(b["total"], 1);
    roundtrip(&mut c, b"still flowing after drain");

    let out = lb.cli(&["drain", "echo", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let lb = Lb::start("5s");
    let mut c = TcpStream::connect(lb.listen).unwrap();
    roundtrip(&mut c, b"0123456789");
    drop(c);
    let get = || Request::get("/metrics").send_blocking(lb.metrics).unwrap();
    wait_until(Duration::from_secs(10), "bytes counted", || {
        get()
            .text()
            .contains("tandem_lb_backend_sent_bytes_total{service=\"echo\",backend=\"e1\",address=")
    });
    let r = get();
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    for name in [
        "# HELP tandem_lb_backend_connections_total",
        "tandem_lb_service_connections_total{service=\"echo\"} 1",
        "tandem_health_backend_up{",
        "tandem_lb_build_info{",
    ] {
        assert!(text.contains(name), "missing {name} in:\n{text}");
    }
}

#[test]
fn sighup_reloads_and_a_bad_file_keeps_the_old_config() {
    let lb = Lb::start("5s");
    let mut c = TcpStream::connect(lb.listen).unwrap();
    roundtrip(&mut c, b"before");
    let good = std::fs::read_to_string(&lb.config).unwrap();

    // A broken file: SIGHUP and `tandem lb reload` are both refused, the
    // latter with the balancer's own error list.
    std::fs::write(
        &lb.config,
        good.replace("name = \"e1\"", "name = \"e1\"\nweight = -4"),
    )
    .unwrap();
    lb.signal(Signal::SIGHUP);
    let out = lb.cli(&["reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("lb.toml:") && err.contains("weight") && err.contains("-4"),
        "{err}"
    );
    roundtrip(&mut c, b"after bad reload");
    let mut c2 = TcpStream::connect(lb.listen).unwrap();
    roundtrip(&mut c2, b"new connection after bad reload");

    // A good change through SIGHUP: the new backend name shows in status.
    std::fs::write(
        &lb.config,
        good.replace("name = \"e1\"", "name = \"renamed\""),
    )
    .unwrap();
    lb.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "reload applied", || {
        String::from_utf8_lossy(&lb.cli(&["status"]).stdout).contains("renamed")
    });
    roundtrip(&mut c, b"established connection survived two reloads");
}

#[test]
fn sigterm_lets_open_connections_finish_then_exits_0() {
    let mut lb = Lb::start("30s");
    let mut c = TcpStream::connect(lb.listen).unwrap();
    roundtrip(&mut c, b"hello");
    lb.signal(Signal::SIGTERM);
    wait_until(Duration::from_secs(10), "listener closed", || {
        TcpStream::connect(lb.listen).is_err()
    });
    roundtrip(&mut c, b"still served during the grace period");
    assert!(
        lb.child.try_wait().unwrap().is_none(),
        "waits for the open connection"
    );
    drop(c);
    let st = lb.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    assert!(
        !lb.dir.path().join("lb.sock").exists(),
        "admin socket removed on exit"
    );
}

#[test]
fn sigterm_grace_period_is_bounded() {
    let mut lb = Lb::start("300ms");
    let mut c = TcpStream::connect(lb.listen).unwrap();
    roundtrip(&mut c, b"hello");
    let t = Instant::now();
    lb.signal(Signal::SIGTERM);
    let st = lb.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0));
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "waited the grace period"
    );
    let mut b = [0u8; 1];
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(
        matches!(c.read(&mut b), Ok(0) | Err(_)),
        "open connection closed after the grace period"
    );
}

#[test]
fn tells_systemd_when_ready_and_when_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut lb = Lb::start_with("5s", &[("NOTIFY_SOCKET", sock_path.as_os_str())]);
    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("a notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("READY=1"), "{msg}");
    // Ready is sent only after the listeners are bound.
    TcpStream::connect(lb.listen).expect("listening once READY=1 was sent");
    lb.signal(Signal::SIGTERM);
    let n = sock.recv(&mut buf).expect("a stop notification");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.contains("STOPPING=1"), "{msg}");
    assert_eq!(lb.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn one_log_line_per_closed_connection_with_its_termination_reason() {
    let lb = Lb::start("5s");
    let mut c = TcpStream::connect(lb.listen).unwrap();
    roundtrip(&mut c, b"twelve bytes");
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    drop(c);
    let log = lb.dir.path().join("lb.log");
    let mut line = String::new();
    wait_until(Duration::from_secs(10), "the connection's log line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        match text.lines().find(|l| l.contains("connection closed")) {
            Some(l) => {
                line = l.to_string();
                true
            }
            None => false,
        }
    });
    for field in [
        "service=echo",
        "backend=\"e1\"",
        "bytes_to_backend=12",
        "bytes_to_client=12",
        "termination=\"client-close\"",
        "duration_ms=",
    ] {
        assert!(line.contains(field), "missing {field} in: {line}");
    }
}
