//! The VRRP test bed shared by tests/vrrp.rs, tests/vrrp_more.rs and
//! tests/vrrp_soak.rs: the namespace layout ([`bed`]), `tandem lb run` nodes
//! ([`Node`], configured by a [`Spec`]), helper processes ([`Helper`]), and
//! what the tests observe of VIPs, adverts and logs ([`watch`]).
//!
//! Helpers are the test executable itself re-run inside a namespace: libtest
//! is asked to run only the ignored `helper_process` test, which each test
//! binary defines as a thin `#[test]` calling [`helper_main`]; the role is
//! chosen by `TANDEM_VRRP_HELPER`. So no netcat or Python is needed. A
//! helper reports to the test on stdout, one line per fact, prefixed `@`
//! (libtest may print "test helper_process ... " before it on the line).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use tandem_test_support::eventually_blocking;
use tandem_test_support::http::Request;
use tandem_test_support::netns::Topology;
use tandem_test_support::wait::Wait;

#[path = "vrrp_watch.rs"]
pub mod watch;

pub const BIN: &str = env!("CARGO_BIN_EXE_tandem");
pub const ADVERT: Duration = Duration::from_millis(100);
pub const VIP_OCTET: u8 = 100;
pub const LB_PORT: u16 = 8080;
pub const BACKEND_PORT: u16 = 9000;
pub const METRICS_PORT: u16 = 9310;

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Skew of a backup at `priority` (RFC 5798 §6.1) for `advert`.
pub fn skew(advert: Duration, priority: u8) -> Duration {
    advert * (256 - u32::from(priority)) / 256
}

// ---------------------------------------------------------------- helpers

/// The body of the `helper_process` test of each binary: runs the role
/// named in `TANDEM_VRRP_HELPER`, or does nothing when it is unset (a plain
/// `cargo test -- --ignored`).
pub fn helper_main() {
    let Ok(spec) = std::env::var("TANDEM_VRRP_HELPER") else {
        return;
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    match parts[..] {
        ["serve", port, tag] => serve(port.parse().unwrap(), tag),
        ["probe", addr] => probe(addr.parse().unwrap()),
        ["slowhttp", port, delay_ms] => slow_http(
            port.parse().unwrap(),
            Duration::from_millis(delay_ms.parse().unwrap()),
        ),
        ["get", addr, path] => get(addr.parse().unwrap(), path),
        ["gate", path] => gate(Path::new(path)),
        ["adverts"] => watch::adverts_main(),
        _ => panic!("bad TANDEM_VRRP_HELPER {spec:?}"),
    }
}

/// Answers every connection with `tag\n` and closes it.
fn serve(port: u16, tag: &str) {
    let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
    println!("@ready");
    for s in l.incoming().flatten() {
        let tag = tag.to_string();
        std::thread::spawn(move || {
            let mut s = s;
            let _ = s.write_all(format!("{tag}\n").as_bytes());
        });
    }
}

/// An HTTP server that answers `200 ok` only after `delay`: a slow health
/// endpoint. Prints `@answered END_US` when each answer has been written.
fn slow_http(port: u16, delay: Duration) {
    let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
    println!("@ready");
    for s in l.incoming().flatten() {
        std::thread::spawn(move || {
            let mut s = s;
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            std::thread::sleep(delay);
            // Taken before the answer leaves: the balancer may act on it
            // (and add a VIP) before this thread runs again.
            let answered = now_us();
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
            );
            let _ = s.flush();
            println!("@answered {answered}");
        });
    }
}

/// One `GET path` to `addr` (2 s for the connect, 2 s for the answer);
/// prints each body line prefixed `@`.
fn get(addr: SocketAddr, path: &str) {
    let r = Request::get(path)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .send_blocking(addr)
        .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    let body = r.text();
    let mut out = std::io::stdout().lock();
    for line in body.lines() {
        writeln!(out, "@{line}").unwrap();
    }
}

/// Waits (1 ms polls, at most 30 s) for `path` to exist, then execs the
/// command in `TANDEM_GATE_EXEC` (fields separated by `\x1f`): several
/// processes spawned ahead are released within a millisecond of each other.
fn gate(path: &Path) {
    use std::os::unix::process::CommandExt;
    let cmd = std::env::var("TANDEM_GATE_EXEC").unwrap();
    let argv: Vec<&str> = cmd.split('\x1f').collect();
    Wait::new(Duration::from_secs(30), "the gate to open")
        .every(Duration::from_millis(1))
        .until_blocking(|| path.exists());
    let e = Command::new(argv[0]).args(&argv[1..]).exec();
    panic!("exec {argv:?}: {e}");
}

/// Every 10 ms, in its own thread: connect to `addr`, read the tag, and
/// print `@ START_US END_US ok TAG` or `@ START_US END_US fail`.
fn probe(addr: SocketAddr) {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    loop {
        let out = out.clone();
        std::thread::spawn(move || {
            let start = now_us();
            let r = (|| -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(150))?;
                s.set_read_timeout(Some(Duration::from_millis(300)))?;
                let mut buf = String::new();
                s.read_to_string(&mut buf)?;
                if buf.is_empty() {
                    return Err(std::io::Error::other("empty"));
                }
                Ok(buf.trim().to_string())
            })();
            let end = now_us();
            let line = match r {
                Ok(tag) => format!("@ {start} {end} ok {tag}\n"),
                Err(_) => format!("@ {start} {end} fail\n"),
            };
            let mut o = out.lock().unwrap();
            let _ = o.write_all(line.as_bytes());
            let _ = o.flush();
        });
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The command line that re-runs this executable as `helper_process`.
pub fn helper_cmd(topo: &Topology, host: &str, spec: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut c = topo.cmd(host, exe.to_str().unwrap());
    c.args([
        "helper_process",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("TANDEM_VRRP_HELPER", spec)
    .stdin(Stdio::null());
    c
}

/// A helper process inside a namespace; killed on drop.
pub struct Helper {
    child: Child,
    /// Its `@` lines so far, without the `@`.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Helper {
    pub fn spawn(topo: &Topology, host: &str, spec: &str) -> Helper {
        let mut child = helper_cmd(topo, host, spec)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest may print "test helper_process ... " first.
                if let Some(i) = line.find('@') {
                    l2.lock().unwrap().push(line[i + 1..].trim().to_string());
                }
            }
        });
        Helper { child, lines }
    }

    /// Spawns `spec` and waits for its `@ready` (`what` names it in the
    /// timeout message).
    fn spawn_ready(topo: &Topology, host: &str, spec: &str, what: &str) -> Helper {
        let h = Helper::spawn(topo, host, spec);
        eventually_blocking(Duration::from_secs(10), what, || {
            h.lines.lock().unwrap().iter().any(|l| l == "ready")
        });
        h
    }

    /// Spawns `spec` and waits for its `@ready`.
    pub fn ready(topo: &Topology, host: &str, spec: &str) -> Helper {
        Helper::spawn_ready(topo, host, spec, "helper ready")
    }

    /// A TCP backend on BACKEND_PORT answering `tag`, ready.
    pub fn backend(topo: &Topology, host: &str, tag: &str) -> Helper {
        Helper::spawn_ready(
            topo,
            host,
            &format!("serve {BACKEND_PORT} {tag}"),
            "backend ready",
        )
    }

    /// (start_us, end_us, Some(tag) on success) of every attempt so far.
    pub fn attempts(&self) -> Vec<(u64, u64, Option<String>)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                match f[..] {
                    [s, e, "ok", tag] => Some((s.parse().ok()?, e.parse().ok()?, Some(tag.into()))),
                    [s, e, "fail"] => Some((s.parse().ok()?, e.parse().ok()?, None)),
                    _ => None,
                }
            })
            .collect()
    }

    /// End of the first successful attempt started at or after `t_us`.
    pub fn first_ok_after(&self, t_us: u64) -> Option<(u64, String)> {
        self.attempts()
            .into_iter()
            .filter(|(s, _, ok)| *s >= t_us && ok.is_some())
            .min_by_key(|(_, e, _)| *e)
            .map(|(_, e, tag)| (e, tag.unwrap()))
    }

    /// Waits for a success started at or after `t_us`; returns the outage
    /// in ms (from `t_us` to the end of that success) and the tag.
    pub fn outage_after(&self, t_us: u64, within: Duration) -> (f64, String) {
        let (end, tag) = eventually_blocking(within, "a successful connect to the VIP", || {
            self.first_ok_after(t_us)
        });
        ((end - t_us) as f64 / 1000.0, tag)
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The metrics of the node in `host` (served on 127.0.0.1:METRICS_PORT in
/// its namespace), fetched by a helper in that namespace.
pub fn metrics(topo: &Topology, host: &str) -> String {
    let out = helper_cmd(
        topo,
        host,
        &format!("get 127.0.0.1:{METRICS_PORT} /metrics"),
    )
    .stderr(Stdio::null())
    .output()
    .unwrap();
    assert!(out.status.success(), "fetching metrics in {host} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.find('@').map(|i| l[i + 1..].to_string()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sum of every sample of the metric `name` (all label sets).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

// ---------------------------------------------------------------- nodes

/// One node's configuration.
#[derive(Clone)]
pub struct Spec {
    pub priority: u8,
    pub preempt: bool,
    pub version: u8,
    pub advert: &'static str,
    /// The backend of the node's one service.
    pub backend: Ipv4Addr,
    /// The body of `[service.health]`; empty: no such table (no active
    /// probes, so readiness does not wait for a first result).
    pub health: String,
    /// Extra lines in the `[[vrrp]]` table.
    pub vrrp_extra: String,
    /// Extra lines in the `[node]` table.
    pub node_extra: String,
    /// `node.workers`: data-plane threads (0 = one per core, the default).
    pub workers: usize,
    /// Serve metrics on 127.0.0.1:METRICS_PORT.
    pub metrics: bool,
}

pub const TCP_HEALTH: &str = "kind = \"tcp\"\ninterval = \"100ms\"\nfastinter = \"100ms\"\n\
                              downinter = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1";

impl Spec {
    /// VRRPv3, 100 ms adverts, preempting, TCP health checks every 100 ms.
    pub fn new(priority: u8, backend: Ipv4Addr) -> Spec {
        Spec {
            priority,
            preempt: true,
            version: 3,
            advert: "100ms",
            backend,
            health: TCP_HEALTH.into(),
            vrrp_extra: String::new(),
            node_extra: String::new(),
            workers: 1,
            metrics: false,
        }
    }

    pub fn text(&self, topo: &Topology, dir: &Path, host: &str) -> String {
        let metrics = if self.metrics {
            format!("[metrics]\nlisten = \"127.0.0.1:{METRICS_PORT}\"\n")
        } else {
            String::new()
        };
        format!(
            r#"[node]
name = "{host}"
workers = {workers}
shutdown_grace = "1s"
{node_extra}
[admin]
socket = "{sock}"
{metrics}[[service]]
name = "web"
listen = "0.0.0.0:{LB_PORT}"
{health}
[[service.backend]]
name = "b"
address = "{backend}:{BACKEND_PORT}"
[[vrrp]]
name = "vip"
interface = "eth0"
virtual_router_id = 51
priority = {prio}
version = {version}
advert_interval = "{advert}"
preempt = {preempt}
virtual_ips = ["{vip}/24"]
{extra}
"#,
            sock = dir.join("lb.sock").display(),
            health = if self.health.is_empty() {
                String::new()
            } else {
                format!("[service.health]\n{}", self.health)
            },
            backend = self.backend,
            prio = self.priority,
            version = self.version,
            advert = self.advert,
            preempt = self.preempt,
            vip = topo.addr(VIP_OCTET),
            extra = self.vrrp_extra,
            node_extra = self.node_extra,
            workers = self.workers,
        )
    }
}

/// A `tandem lb run` inside a namespace; SIGKILLed on drop if still running.
pub struct Node {
    host: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Node {
    /// Writes the config; does not start the process.
    pub fn new(topo: &Topology, host: &str, spec: &Spec) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("lb.toml");
        let n = Node {
            host: host.into(),
            child: None,
            dir,
            config,
        };
        n.write(topo, spec);
        n
    }

    pub fn start(topo: &Topology, host: &str, spec: &Spec) -> Node {
        let mut n = Node::new(topo, host, spec);
        n.restart(topo);
        n
    }

    /// Rewrites the config file (for a reload).
    pub fn write(&self, topo: &Topology, spec: &Spec) {
        std::fs::write(&self.config, spec.text(topo, self.dir.path(), &self.host)).unwrap();
    }

    fn log_file(&self) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("lb.log"))
            .unwrap()
    }

    pub fn restart(&mut self, topo: &Topology) {
        let log = self.log_file();
        let child = topo
            .cmd(&self.host, BIN)
            .args(["lb", "run", "-c"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Spawns the node held at a gate (see `helper_main`) until `gate_file`
    /// exists; the process becomes `tandem lb run` (same pid) when released.
    pub fn spawn_gated(&mut self, topo: &Topology, gate_file: &Path) {
        let log = self.log_file();
        let argv = [BIN, "lb", "run", "-c", self.config.to_str().unwrap()].join("\x1f");
        let child = helper_cmd(topo, &self.host, &format!("gate {}", gate_file.display()))
            .env("TANDEM_GATE_EXEC", argv)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn signal(&mut self, sig: Signal) {
        let c = self.child.as_mut().expect("node running");
        kill(Pid::from_raw(c.id() as i32), sig).unwrap();
    }

    /// Waits for the process to exit (after a signal). On a timeout the
    /// panic's unwinding drops the node, which kills the process.
    pub fn reap(&mut self, within: Duration) {
        let c = self.child.as_mut().expect("node running");
        eventually_blocking(within, &format!("{}'s exit", self.host), || {
            c.try_wait().unwrap()
        });
        self.child = None;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lb.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- {} log ----\n{}", self.host, self.log());
        }
    }
}

/// lb1 (.11), lb2 (.12), backend (.30), client (.50).
pub fn bed() -> Topology {
    Topology::builder()
        .host("lb1", 11)
        .host("lb2", 12)
        .host("be", 30)
        .host("cl", 50)
        .build()
}

pub fn vip(t: &Topology) -> Ipv4Addr {
    t.addr(VIP_OCTET)
}

/// Waits until exactly `host` holds the VIP among `hosts`.
pub fn wait_master(t: &Topology, host: &str, hosts: &[&str], within: Duration) {
    let v = vip(t);
    eventually_blocking(within, &format!("{host} the only VIP holder"), || {
        hosts.iter().all(|h| t.has_addr(h, v) == (*h == host))
    });
}

/// A notify script appending its arguments to a log; returns (script, log).
pub fn notify_script(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("notify.sh");
    let log = dir.join("notify.log");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, log)
}
