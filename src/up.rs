//! `tandem up`: a complete local stack on loopback for a first look.
//!
//! It starts, as child processes of this same binary: two workers of each
//! kind (thumbnail, text, exec), two API replicas sharing one SQLite file,
//! and the balancer fronting the API replicas and one pool per worker kind.
//! The dispatchers reach the workers through the balancer, as in production.
//! It creates an API key, waits until every piece answers and every backend
//! is healthy, prints the URLs, the key and a `curl` example, and on Ctrl-C
//! (or SIGTERM) stops everything: the balancer first, so no new request
//! lands on a stopping replica, then the API replicas, then the workers.
//!
//! Everything lives in one directory (`--dir`, default `./tandem-up`):
//! generated configs, the database, and one log file per process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Directory for configs, the SQLite database and logs.
    #[arg(long, default_value = "tandem-up")]
    pub dir: PathBuf,
    /// First port of the range used on 127.0.0.1 (the API is served here;
    /// the stack uses this port and the next 39).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
}

const KINDS: [&str; 3] = ["thumbnail", "text", "exec"];
/// How long start-up may take before `tandem up` gives up.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The port plan, all on 127.0.0.1.
struct Ports {
    base: u16,
}

impl Ports {
    fn api_vip(&self) -> SocketAddr {
        self.at(0)
    }
    fn kind_vip(&self, k: usize) -> SocketAddr {
        self.at(1 + k as u16)
    }
    fn lb_metrics(&self) -> SocketAddr {
        self.at(9)
    }
    fn api(&self, i: usize) -> SocketAddr {
        self.at(10 + i as u16)
    }
    fn worker(&self, k: usize, i: usize) -> SocketAddr {
        self.at(20 + 2 * k as u16 + i as u16)
    }
    fn at(&self, off: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + off))
    }
}

struct Proc {
    name: String,
    child: Child,
}

pub fn main(args: UpArgs) -> anyhow::Result<ExitCode> {
    if args.port > u16::MAX - 40 {
        bail!(
            "--port {}: the stack needs 40 ports from there; valid: 1024 to {}",
            args.port,
            u16::MAX - 40
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the tandem binary")?;
    let dir = std::path::absolute(&args.dir)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let ports = Ports { base: args.port };
    for off in 0..40 {
        let a = ports.at(off);
        if std::net::TcpListener::bind(a).is_err() {
            bail!(
                "port {a} is in use; pick another range with --port (the stack uses 40 ports from --port)"
            );
        }
    }
    write_configs(&dir, &ports)?;

    // The key is created before the replicas start (it also creates the
    // database and applies the migrations).
    let out = std::process::Command::new(&exe)
        .args(["api", "keys", "create", "--name", "tandem-up", "-c"])
        .arg(dir.join("api-1.toml"))
        .output()
        .context("creating an API key")?;
    if !out.status.success() {
        bail!(
            "tandem api keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let mut procs: Vec<Proc> = Vec::new();
    let started = async {
        for (k, kind) in KINDS.iter().enumerate() {
            for i in 0..2 {
                let name = format!("worker-{kind}-{}", i + 1);
                let cfg = dir.join(format!("{name}.toml"));
                procs.push(spawn(
                    &exe,
                    &["worker", "run", "--kind", kind, "-c"],
                    &cfg,
                    &logs,
                    &name,
                )?);
                wait_http(ports.worker(k, i), "/readyz", &mut procs).await?;
            }
        }
        for i in 0..2 {
            let name = format!("api-{}", i + 1);
            procs.push(spawn(
                &exe,
                &["api", "run", "-c"],
                &dir.join(format!("{name}.toml")),
                &logs,
                &name,
            )?);
            wait_http(ports.api(i), "/readyz", &mut procs).await?;
        }
        procs.push(spawn(
            &exe,
            &["lb", "run", "-c"],
            &dir.join("lb.toml"),
            &logs,
            "lb",
        )?);
        wait_healthy(ports.lb_metrics(), &mut procs).await?;
        anyhow::Ok(())
    };
    if let Err(e) = started.await {
        eprintln!("tandem up: {e:#}\nlogs: {}", logs.display());
        stop_all(&mut procs).await;
        return Ok(ExitCode::FAILURE);
    }

    let api = ports.api_vip();
    println!(
        "tandem up: ready (balancer, 2 API replicas, 2 workers each of {}) in {}\n\
         \n  API (through the balancer)  http://{api}\n  status page                 http://{}/\n  \
         metrics                     http://{}/metrics\n  API key                     {key}\n  \
         logs                        {}\n\
         \nTry:\n  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n       \
         -d '{{\"kind\":\"text\",\"input\":\"the quick brown fox jumps over the lazy dog\"}}' http://{api}/v1/jobs\n  \
         curl -s -H 'Authorization: Bearer {key}' http://{api}/v1/jobs/JOB_ID/result\n\
         \nCtrl-C stops everything.",
        KINDS.join(", "),
        dir.display(),
        ports.lb_metrics(),
        ports.lb_metrics(),
        logs.display()
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let died = async {
        loop {
            for p in procs.iter_mut() {
                if let Ok(Some(st)) = p.child.try_wait() {
                    return (p.name.clone(), st);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => { println!("\ntandem up: stopping"); ExitCode::SUCCESS }
        _ = term.recv() => { println!("tandem up: SIGTERM, stopping"); ExitCode::SUCCESS }
        (name, st) = died => {
            eprintln!("tandem up: {name} exited ({st}); see {}; stopping", logs.join(format!("{name}.log")).display());
            ExitCode::FAILURE
        }
    };
    stop_all(&mut procs).await;
    println!("tandem up: stopped");
    Ok(code)
}

fn write_configs(dir: &Path, ports: &Ports) -> anyhow::Result<()> {
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
    };
    for (k, kind) in KINDS.iter().enumerate() {
        for i in 0..2 {
            write(
                &format!("worker-{kind}-{}.toml", i + 1),
                format!(
                    "listen = \"{}\"\n[limits]\nconcurrency = 4\nshutdown_grace = \"10s\"\n\
                     [exec]\n# The demo exec kind upper-cases its input.\ncommand = [\"/usr/bin/tr\", \"a-z\", \"A-Z\"]\n\
                     timeout = \"10s\"\ncontent_type = \"text/plain; charset=utf-8\"\n",
                    ports.worker(k, i)
                ),
            )?;
        }
    }
    let mut kinds = String::new();
    for (k, kind) in KINDS.iter().enumerate() {
        kinds.push_str(&format!(
            "[kinds.{kind}]\nurl = \"http://{}\"\nconcurrency = 4\ntimeout = \"30s\"\nmax_attempts = 5\n",
            ports.kind_vip(k)
        ));
    }
    for i in 0..2 {
        write(
            &format!("api-{}.toml", i + 1),
            format!(
                "listen = \"{}\"\nstate_dir = \"{}\"\nproxy_protocol = \"optional\"\nshutdown_grace = \"10s\"\n{kinds}",
                ports.api(i),
                dir.display()
            ),
        )?;
    }
    let mut lb = format!(
        "# Generated by `tandem up`.\n[node]\nname = \"tandem-up\"\nshutdown_grace = \"10s\"\n\
         [admin]\nsocket = \"{}\"\n[metrics]\nlisten = \"{}\"\n\
         [[service]]\nname = \"api\"\nlisten = \"{}\"\nproxy_protocol = \"v2\"\n\
         [service.health]\nkind = \"http\"\npath = \"/readyz\"\ninterval = \"1s\"\n",
        dir.join("lb.sock").display(),
        ports.lb_metrics(),
        ports.api_vip()
    );
    for i in 0..2 {
        lb.push_str(&format!(
            "[[service.backend]]\nname = \"api-{}\"\naddress = \"{}\"\n",
            i + 1,
            ports.api(i)
        ));
    }
    for (k, kind) in KINDS.iter().enumerate() {
        lb.push_str(&format!(
            "[[service]]\nname = \"{kind}\"\nlisten = \"{}\"\n\
             [service.health]\nkind = \"http\"\npath = \"/healthz\"\ninterval = \"1s\"\n",
            ports.kind_vip(k)
        ));
        for i in 0..2 {
            lb.push_str(&format!(
                "[[service.backend]]\nname = \"{kind}-{}\"\naddress = \"{}\"\n",
                i + 1,
                ports.worker(k, i)
            ));
        }
    }
    write("lb.toml", lb)
}

fn spawn(
    exe: &Path,
    args: &[&str],
    config: &Path,
    logs: &Path,
    name: &str,
) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
    let child = Command::new(exe)
        .args(args)
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        name: name.to_string(),
        child,
    })
}

/// GET `path` on `addr`; Some(body) on a 200.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.starts_with("HTTP/1.1 200").then(|| {
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    })
}

/// Fails if a started process has exited.
fn check_alive(procs: &mut [Proc]) -> anyhow::Result<()> {
    for p in procs.iter_mut() {
        if let Ok(Some(st)) = p.child.try_wait() {
            bail!("{} exited during start-up ({st})", p.name);
        }
    }
    Ok(())
}

async fn wait_http(addr: SocketAddr, path: &str, procs: &mut [Proc]) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        check_alive(procs)?;
        if get(addr, path).await.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("http://{addr}{path} did not answer 200 within {READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the balancer reports every backend of every service up.
async fn wait_healthy(metrics: SocketAddr, procs: &mut [Proc]) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        check_alive(procs)?;
        if let Some(body) = get(metrics, "/status.json").await
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
            && let Some(services) = v["services"].as_array()
            && services.iter().all(|s| {
                s["backends"].as_array().is_some_and(|bs| {
                    bs.iter()
                        .all(|b| b["state"] == "up" && !b["last_probe"].is_null())
                })
            })
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the balancer did not report every backend up within {READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM in reverse start order (balancer, API replicas, workers), each
/// given 15 s before SIGKILL.
async fn stop_all(procs: &mut Vec<Proc>) {
    while let Some(mut p) = procs.pop() {
        if let Some(pid) = p.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(Duration::from_secs(15), p.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("tandem up: {} did not stop within 15 s; killing it", p.name);
                let _ = p.child.kill().await;
            }
        }
    }
}
