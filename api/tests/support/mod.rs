//! Test harness: a private MariaDB server, a fake worker service, replicas
//! and a small HTTP client. Everything listens on 127.0.0.1 only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use tandem_api::config::Config;
use tandem_api::db::Db;
use tandem_test_support::http::Request;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The bounded wait of every Tandem test: `(within, what, condition)`.
pub use tandem_test_support::eventually;

// ---------------------------------------------------------------- MariaDB

/// A private mariadbd for this test process: its own datadir, socket and
/// loopback port. A watchdog shell stops it and removes the datadir when
/// this process exits (its stdin, held here, closes).
pub struct MariaDb {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Unix socket (for the root account).
    pub socket: PathBuf,
    /// Its directory: datadir, pid file, log.
    pub dir: PathBuf,
    _watchdog: Mutex<(Child, ChildStdin)>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd} || test -x /usr/sbin/{cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The shared server, or `None` (with a message) when it cannot run here.
/// Under `CI=true` a missing server is a failure, not a skip.
pub fn mariadb() -> Option<&'static MariaDb> {
    static SERVER: OnceLock<Option<MariaDb>> = OnceLock::new();
    SERVER
        .get_or_init(|| match start_mariadb() {
            Ok(s) => Some(s),
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("MariaDB is required under CI=true: {why}");
                }
                eprintln!("SKIPPING MariaDB tests: {why} (run as root, or install mariadb-server)");
                None
            }
        })
        .as_ref()
}

fn start_mariadb() -> Result<MariaDb, String> {
    if !have("mariadbd") {
        if !is_root() {
            return Err("mariadbd is not installed and we are not root".into());
        }
        let ok = Command::new("sh")
            .arg("-c")
            .arg("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null)")
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("apt-get install mariadb-server failed".into());
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("tandem-mariadb-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .map_err(|e| e.to_string())?
        .keep();
    let data = dir.join("data");
    // A temporary directory of its own: with the shared /tmp, a bootstrap
    // once lost its temporary table to another process (CI: "Could not
    // remove temporary table '/tmp/#sql-temptable-...', error: 2", then
    // "Unknown table 'mysql.tmp_user_sys'").
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|e| e.to_string())?;
    let user = if is_root() { "--user=root" } else { "" };
    let out = Command::new("mariadb-install-db")
        .args([
            "--no-defaults",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .args(if user.is_empty() { vec![] } else { vec![user] })
        .output()
        .map_err(|e| format!("mariadb-install-db: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let socket = dir.join("sock");
    let mariadbd = if Path::new("/usr/sbin/mariadbd").exists() {
        "/usr/sbin/mariadbd".to_owned()
    } else {
        "mariadbd".to_owned()
    };
    // Durability is traded for speed: a test database can lose its last
    // second on a power cut (not on a SIGKILL of mariadbd: each commit is
    // written to the OS). The loop restarts mariadbd when it dies, so a
    // test may SIGKILL it (`MariaDb::kill9`); it ends once stdin closes.
    let script = format!(
        "( while [ ! -e {dir}/stopping ]; do \
         {mariadbd} --no-defaults {user} --datadir={d} --tmpdir={dir}/tmp --socket={s} --port={port} --bind-address=127.0.0.1 \
         --pid-file={dir}/pid --log-error={dir}/error.log --skip-log-bin --max-connections=1000 \
         --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=2 --skip-name-resolve 2>/dev/null; \
         sleep 0.1; done ) & loop=$!; \
         read _ignored; touch {dir}/stopping; kill $(cat {dir}/pid) 2>/dev/null; wait $loop; rm -rf {dir}",
        d = data.display(),
        s = socket.display(),
        dir = dir.display(),
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let server = MariaDb {
        port,
        socket: socket.clone(),
        dir: dir.clone(),
        _watchdog: Mutex::new((child, stdin)),
    };
    // Wait for the socket, then create the test account for TCP.
    let deadline = Instant::now() + Duration::from_secs(60);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("mysql://root@localhost/mysql?socket={}", socket.display());
        loop {
            match sqlx::MySqlConnection::connect(&url).await {
                Ok(mut c) => {
                    for q in [
                        "CREATE USER IF NOT EXISTS 'tandem'@'127.0.0.1' IDENTIFIED BY 'tandem'",
                        "GRANT ALL PRIVILEGES ON *.* TO 'tandem'@'127.0.0.1'",
                    ] {
                        sqlx::query(q)
                            .execute(&mut c)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                    return Err(format!("mariadbd did not come up: {e}\n{log}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })?;
    Ok(server)
}

impl MariaDb {
    /// The running mariadbd's pid, from its pid file.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    /// SIGKILLs the running mariadbd and waits (bounded) until the
    /// watchdog's restart answers again with another pid.
    pub async fn kill9(&self) {
        let old = self.pid().expect("mariadbd pid file");
        let killed = Command::new("kill")
            .args(["-9", &old.to_string()])
            .status()
            .expect("kill");
        assert!(killed.success(), "kill -9 {old}");
        let admin = format!("mysql://tandem:tandem@127.0.0.1:{}/mysql", self.port);
        eventually(Duration::from_secs(60), "mariadbd restarted", || {
            let admin = admin.clone();
            async move {
                use sqlx::Connection;
                self.pid().is_some_and(|p| p != old)
                    && sqlx::MySqlConnection::connect(&admin).await.is_ok()
            }
        })
        .await;
    }

    /// A new, empty database; its URL.
    pub async fn fresh(&self) -> String {
        use sqlx::Connection;
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = format!("mysql://tandem:tandem@127.0.0.1:{}/mysql", self.port);
        let mut c = sqlx::MySqlConnection::connect(&admin)
            .await
            .expect("connect to test mariadb");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut c)
            .await
            .expect("create database");
        format!("mysql://tandem:tandem@127.0.0.1:{}/{name}", self.port)
    }
}

/// A database URL for `backend` ("sqlite" or "mariadb"), or `None` to skip.
pub async fn database(backend: &str, dir: &Path) -> Option<String> {
    match backend {
        "sqlite" => Some(format!(
            "sqlite://{}?mode=rwc",
            dir.join("api.db").display()
        )),
        _ => {
            let server = tokio::task::spawn_blocking(mariadb)
                .await
                .expect("mariadb start")?;
            Some(server.fresh().await)
        }
    }
}

pub mod cli_child;
pub mod pool;
pub mod receiver;

// ------------------------------------------------------------ fake worker

/// A fake worker pool. Its behaviour follows the input text:
/// `reject…` → 400; `always-500…` → 500; `fail-once…` → 500 on the first
/// call for a job, then success; `busy-once…` → 503 then success;
/// `slow:MS…` → sleeps MS first; `echo-params…` → answers the
/// `X-Tandem-Params` header it got (`none` without one). Success answers
/// the input uppercased, as `text/x-upper`.
pub struct FakeWorker {
    /// Base URL.
    pub url: String,
    /// Calls seen, by job id.
    pub calls: Arc<Mutex<std::collections::HashMap<String, u32>>>,
    stop: CancellationToken,
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FakeWorker {
    /// Starts one on 127.0.0.1:0.
    pub async fn spawn() -> FakeWorker {
        use axum::routing::post;
        let calls: Arc<Mutex<std::collections::HashMap<String, u32>>> = Arc::default();
        let c2 = Arc::clone(&calls);
        let app = axum::Router::new().route(
            "/v1/run",
            post(move |headers: HeaderMap, body: Bytes| {
                let calls = Arc::clone(&c2);
                async move {
                    let job = headers
                        .get("x-tandem-job")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let n = {
                        let mut m = calls.lock().unwrap();
                        let e = m.entry(job).or_insert(0);
                        *e += 1;
                        *e
                    };
                    let text = String::from_utf8_lossy(&body).into_owned();
                    if text.starts_with("echo-params") {
                        let p = headers
                            .get("x-tandem-params")
                            .map_or("none".to_owned(), |v| {
                                String::from_utf8_lossy(v.as_bytes()).into_owned()
                            });
                        return (StatusCode::OK, [("content-type", "text/plain")], p);
                    }
                    if let Some(rest) = text.strip_prefix("slow:") {
                        let ms: u64 = rest
                            .split(|c: char| !c.is_ascii_digit())
                            .next()
                            .unwrap_or("0")
                            .parse()
                            .unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    let ok = (
                        StatusCode::OK,
                        [("content-type", "text/x-upper")],
                        text.to_uppercase(),
                    );
                    let err = |s: StatusCode, m: &'static str| {
                        (s, [("content-type", "text/plain")], m.to_owned())
                    };
                    if text.starts_with("reject") {
                        err(StatusCode::BAD_REQUEST, "bad input")
                    } else if text.starts_with("always-500") {
                        err(StatusCode::INTERNAL_SERVER_ERROR, "boom")
                    } else if text.starts_with("fail-once") && n == 1 {
                        err(StatusCode::INTERNAL_SERVER_ERROR, "first time fails")
                    } else if text.starts_with("busy-once") && n == 1 {
                        err(StatusCode::SERVICE_UNAVAILABLE, "busy")
                    } else {
                        ok
                    }
                }
            }),
        );
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(s2.cancelled_owned())
                .await
        });
        FakeWorker { url, calls, stop }
    }

    /// Total calls.
    pub fn total_calls(&self) -> u32 {
        self.calls.lock().unwrap().values().sum()
    }
}

/// An API config for tests: fast polls and retries.
pub fn config_text(db_url: &str, worker_url: &str, lease: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
database_url = "{db_url}"
lease = "{lease}"
poll_interval = "50ms"
[kinds.upper]
url = "{worker_url}"
max_concurrency = 4
timeout = "5s"
max_attempts = 3
max_input_bytes = 1000
retry_base = "50ms"
retry_max = "200ms"
[kinds.other]
url = "{worker_url}"
max_concurrency = 1
max_attempts = 2
retry_base = "50ms"
retry_max = "100ms"
"#
    )
}

// ---------------------------------------------------------------- replicas

/// An in-process replica.
pub struct Replica {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its database handle (tests look at the tables).
    pub db: Db,
    /// Cancels it.
    pub shutdown: CancellationToken,
    /// Its serve task.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Replica {
    /// Opens the database (migrating it) and serves on 127.0.0.1:0.
    pub async fn start(config_toml: &str) -> Replica {
        let config =
            Arc::new(Config::parse(config_toml, Path::new("test.toml")).expect("test config"));
        let db = Db::open_with(&config.database_url, 16, &config.db)
            .await
            .expect("open db");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let metrics = tandem_api::metrics::install().ok();
        let task = tokio::spawn(tandem_api::run::serve(
            listener,
            config,
            db.clone(),
            metrics,
            shutdown.clone(),
        ));
        Replica {
            addr,
            db,
            shutdown,
            task,
        }
    }

    /// Graceful stop.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stops in time")
            .unwrap()
            .unwrap();
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A `tandem api` replica in a child process (this test binary re-run with
/// `TANDEM_API_TEST_CHILD`), so it can be SIGKILLed.
pub struct ChildReplica {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The process.
    pub child: Child,
}

impl ChildReplica {
    /// Runs `test_name` of this binary as a replica with `config_toml`.
    pub fn spawn(test_name: &str, config_toml: &str, dir: &Path, tag: &str) -> ChildReplica {
        let cfg = dir.join(format!("{tag}.toml"));
        std::fs::write(&cfg, config_toml).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env("TANDEM_API_TEST_CHILD", &cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest prints "test replica_child ... " before it.
                if let Some((_, a)) = line.split_once("LISTENING ")
                    && let Ok(a) = a.trim().parse::<SocketAddr>()
                {
                    let _ = tx.send(a);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("child replica came up");
        ChildReplica { addr, child }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for ChildReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side: when `TANDEM_API_TEST_CHILD` names a config, serve it
/// until killed, announcing the address on stdout.
pub fn child_main() {
    let Ok(cfg) = std::env::var("TANDEM_API_TEST_CHILD") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let text = std::fs::read_to_string(&cfg).unwrap();
        let r = Replica::start(&text).await;
        println!("LISTENING {}", r.addr);
        r.shutdown.cancelled().await;
    });
}

// ------------------------------------------------------------ HTTP client

/// One answer: the shared test client's.
pub use tandem_test_support::http::Response as Answer;

/// The API's JSON error shape, `{"error": {"code", "message"}}`.
pub trait ErrorBody {
    /// `error.code` of a JSON error, or "".
    fn code(&self) -> String;
}

impl ErrorBody for Answer {
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// Sends one request, on a fresh connection, to `url` (`http://IP:port/...`).
pub async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Answer {
    let mut req = Request::new(method, "/").headers(extra).body(body);
    if let Some(t) = token {
        req = req.bearer(t);
    }
    req.send_url(url)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// `POST /v1/jobs` with a JSON body.
pub async fn post_job(base: &str, token: &str, body: serde_json::Value) -> Answer {
    call(
        "POST",
        &format!("{base}/v1/jobs"),
        Some(token),
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Waits for job `id` to reach `done` or `failed`; returns its JSON.
pub async fn wait_finished(base: &str, token: &str, id: &str) -> serde_json::Value {
    let what = format!("job {id} finished");
    eventually(Duration::from_secs(30), &what, || async {
        let a = call("GET", &format!("{base}/v1/jobs/{id}"), Some(token), &[], "").await;
        assert_eq!(a.status, 200, "{:?}", a.body);
        let j = a.json();
        if j["status"] == "done" || j["status"] == "failed" {
            Ok(j)
        } else {
            Err(j)
        }
    })
    .await
}

/// One scalar from the database.
pub async fn count(db: &Db, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}
