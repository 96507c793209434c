//! Processes of the end-to-end bed: `tandem` nodes and a private mariadbd,
//! each run inside its host's namespace with `ip netns exec` (which execs,
//! so the child's PID is the program's own and SIGKILL hits it directly),
//! logging to a file; and the shared HTTP client with this bed's timeouts.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use tandem_test_support::http::Request;
use tandem_test_support::netns::Topology;
use tandem_test_support::wait::Wait;

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
    pub fn start(&mut self, bed: &Topology) {
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
    pub fn start(bed: &Topology, host: &str, dir: &Path, logs: &Path) -> MariaDb {
        let data = dir.join("data");
        // Its own temporary directory, not the shared /tmp (see
        // api/tests/support: a bootstrap once lost a temporary table there).
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("creating MariaDB's tmpdir");
        let out = std::process::Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
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
            format!("--tmpdir={}", tmp.display()),
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
        Wait::new(Duration::from_secs(60), "mariadbd up")
            .every(Duration::from_millis(100))
            .until_blocking(|| {
                db.proc.assert_alive();
                db.sql("SELECT 1")
                    .map_err(|e| format!("{e}\nlog tail:\n{}", tail(&db.proc.log, 30)))
            });
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

pub use tandem_test_support::http::{HttpError, Response};

/// One request on a fresh connection with the shared test client: a 1 s
/// connect (the VIP is on the bridge: a slower connect is an outage the
/// scenario counts) and 15 s for the exchange.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, HttpError> {
    Request::new(method, path)
        .headers(headers)
        .body(body)
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(15))
        .send_blocking(addr)
}
