//! Processes of the end-to-end bed: `tandem` nodes and a private mariadbd,
//! each run inside its host's namespace with `ip netns exec` (which execs,
//! so the child's PID is the program's own and SIGKILL hits it directly),
//! logging to a file; and a minimal HTTP/1.1 client on std sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::e2e_net::Bed;

/// Polls `cond` every 20 ms until it holds; panics after `within`.
pub fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One long-running program in a host namespace; SIGKILLed on drop.
pub struct Proc {
    pub name: String,
    host: String,
    program: String,
    args: Vec<String>,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn new(name: &str, host: &str, program: &str, args: &[&str], logs: &Path) -> Proc {
        Proc {
            name: name.to_string(),
            host: host.to_string(),
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            log: logs.join(format!("{name}.log")),
            child: None,
        }
    }

    /// Starts (or restarts) it; the log is appended to.
    pub fn start(&mut self, bed: &Bed) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = bed
            .cmd(&self.host, &self.program)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Panics if it has exited.
    pub fn assert_alive(&mut self) {
        if let Some(c) = self.child.as_mut()
            && let Ok(Some(st)) = c.try_wait()
        {
            panic!(
                "{} exited ({st}); log tail:\n{}",
                self.name,
                tail(&self.log, 30)
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ----------------------------------------------------------------- MariaDB

/// A private mariadbd in host `db`'s namespace: its own datadir and socket
/// under `dir`, TCP on the host's address, a `tandem`@`%` account and an
/// empty `tandem` database.
pub struct MariaDb {
    pub proc: Proc,
    pub socket: PathBuf,
}

impl MariaDb {
    pub fn start(bed: &Bed, host: &str, dir: &Path, logs: &Path) -> MariaDb {
        let data = dir.join("data");
        let out = std::process::Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .arg(format!("--datadir={}", data.display()))
            .output()
            .expect("running mariadb-install-db (is mariadb-server installed?)");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let socket = dir.join("mysqld.sock");
        let ip = bed.get(host).ip;
        // Durability traded for speed (a test database may lose its last
        // second on a power cut); connections for 2 replicas' pools.
        let args = [
            "--no-defaults".to_string(),
            "--user=root".into(),
            format!("--datadir={}", data.display()),
            format!("--socket={}", socket.display()),
            "--port=3306".into(),
            format!("--bind-address={ip}"),
            format!("--pid-file={}", dir.join("mysqld.pid").display()),
            "--skip-log-bin".into(),
            "--skip-name-resolve".into(),
            "--max-connections=500".into(),
            "--innodb-buffer-pool-size=128M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mariadbd = if Path::new("/usr/sbin/mariadbd").exists() {
            "/usr/sbin/mariadbd"
        } else {
            "mariadbd"
        };
        let mut proc = Proc::new("mariadb", host, mariadbd, &args, logs);
        proc.start(bed);
        let mut db = MariaDb { proc, socket };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            db.proc.assert_alive();
            if db.sql("SELECT 1").is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not come up in 60 s:\n{}",
                tail(&db.proc.log, 30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        db.sql(
            "CREATE DATABASE tandem; CREATE USER 'tandem'@'%' IDENTIFIED BY 'tandem'; \
             GRANT ALL PRIVILEGES ON tandem.* TO 'tandem'@'%'",
        )
        .expect("creating the tandem database and account");
        db
    }

    /// Runs SQL as root over the Unix socket (no namespace needed: the
    /// socket is a file); the tab-separated rows, without a header.
    pub fn sql(&self, sql: &str) -> Result<String, String> {
        self.sql_in(None, sql)
    }

    /// [`MariaDb::sql`] in the `tandem` database.
    pub fn query(&self, sql: &str) -> Result<String, String> {
        self.sql_in(Some("tandem"), sql)
    }

    fn sql_in(&self, database: Option<&str>, sql: &str) -> Result<String, String> {
        let out = std::process::Command::new("mariadb")
            .args(["--no-defaults", "-u", "root", "-N", "-B"])
            .args(database.map(|d| format!("--database={d}")))
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-e", sql])
            .output()
            .map_err(|e| format!("running mariadb: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

// -------------------------------------------------------------------- HTTP

/// How an HTTP exchange failed.
#[derive(Debug)]
pub enum HttpError {
    /// The TCP connect failed (refused, unreachable, timed out).
    Connect(std::io::Error),
    /// Connected, then the exchange failed (reset, closed early, timeout).
    Exchange(String),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(HttpError::Connect)?;
    let ex = |e: std::io::Error| HttpError::Exchange(e.to_string());
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(ex)?;
    s.set_write_timeout(Some(Duration::from_secs(15)))
        .map_err(ex)?;
    let _ = s.set_nodelay(true);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut wire = req.into_bytes();
    wire.extend_from_slice(body);
    s.write_all(&wire).map_err(ex)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(ex)?;
    parse_response(&raw).ok_or_else(|| {
        HttpError::Exchange(format!(
            "incomplete response ({} bytes): {:?}",
            raw.len(),
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        ))
    })
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        // A short body means the connection broke mid-response.
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
