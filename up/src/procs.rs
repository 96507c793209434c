//! The stack's child processes: started one by one, each waited for until
//! it answers (the balancer: until every backend is up), and stopped in
//! reverse start order.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::http;

/// How long start-up may take before `tandem up` gives up.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// One child process and the name its log file and messages use.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

/// Starts `exe ARGS CONFIG` as `name`, its stdout and stderr in
/// `logs/NAME.log`; killed if dropped.
pub fn spawn(
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

/// Fails if a started process has exited.
fn check_alive(procs: &mut [Proc]) -> anyhow::Result<()> {
    for p in procs.iter_mut() {
        if let Ok(Some(st)) = p.child.try_wait() {
            bail!("{} exited during start-up ({st})", p.name);
        }
    }
    Ok(())
}

/// Waits until `addr` answers `GET path` with 200, failing if a process
/// exits first or [`READY_WITHIN`] passes.
pub async fn wait_http(addr: SocketAddr, path: &str, procs: &mut [Proc]) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        check_alive(procs)?;
        if http::get(addr, path).await.is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("http://{addr}{path} did not answer 200 within {READY_WITHIN:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the balancer reports every backend of every service up.
pub async fn wait_healthy(metrics: SocketAddr, procs: &mut [Proc]) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        check_alive(procs)?;
        if let Some(body) = http::get(metrics, "/status.json").await
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

/// SIGTERM in reverse start order (balancer, API, workers), each
/// given 15 s before SIGKILL.
pub async fn stop_all(procs: &mut Vec<Proc>) {
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
