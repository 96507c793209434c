//! `tandem up` from start to stop: check the ports, write the configs,
//! create the API key, start the pieces in dependency order (workers, the
//! API, balancer), print how to use the stack, then wait for Ctrl-C,
//! SIGTERM or a dead child, and stop everything.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::configs::write_configs;
use crate::ports::{Ports, SPAN};
use crate::procs::{Proc, spawn, stop_all, wait_healthy, wait_http};
use crate::{API_REPLICAS, KINDS, UpArgs};

/// Where the stack lives: the binary it runs, its directory, its ports.
struct Stack {
    /// This very binary: every piece is one of its subcommands.
    exe: PathBuf,
    /// `--dir`, absolute: configs and the database.
    dir: PathBuf,
    /// `DIR/logs`: one log file per process.
    logs: PathBuf,
    ports: Ports,
}

/// `tandem up`: Ok(SUCCESS) after Ctrl-C or SIGTERM, Ok(FAILURE) when a
/// piece does not start or one dies; Err before anything was started.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the tandem binary")?;
    let dir = std::path::absolute(&args.dir)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let stack = Stack {
        exe,
        dir,
        logs,
        ports: Ports { base: args.port },
    };
    check_ports_free(&stack.ports)?;
    write_configs(&stack.dir, &stack.ports)?;
    let key = create_key(&stack)?;

    let mut procs: Vec<Proc> = Vec::new();
    if let Err(e) = start_all(&stack, &mut procs).await {
        eprintln!("tandem up: {e:#}\nlogs: {}", stack.logs.display());
        stop_all(&mut procs).await;
        return Ok(ExitCode::FAILURE);
    }
    print_ready(&stack, &key);
    let code = supervise(&stack, &mut procs).await?;
    stop_all(&mut procs).await;
    println!("tandem up: stopped");
    Ok(code)
}

fn check_ports_free(ports: &Ports) -> anyhow::Result<()> {
    for off in 0..SPAN {
        let a = ports.at(off);
        if std::net::TcpListener::bind(a).is_err() {
            bail!(
                "port {a} is in use; pick another range with --port (the stack uses 40 ports from --port)"
            );
        }
    }
    Ok(())
}

/// Creates the stack's API key before the API starts (which also
/// creates the database and applies the migrations); returns the key.
fn create_key(stack: &Stack) -> anyhow::Result<String> {
    let out = std::process::Command::new(&stack.exe)
        .args(["api", "keys", "create", "--name", "tandem-up", "-c"])
        .arg(stack.dir.join("api-1.toml"))
        .output()
        .context("creating an API key")?;
    if !out.status.success() {
        bail!(
            "tandem api keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Starts the workers, then the API replica(s), then the balancer, each
/// once the one before answers; done when the balancer reports every
/// backend up. What was started is in `procs`, also on error.
async fn start_all(stack: &Stack, procs: &mut Vec<Proc>) -> anyhow::Result<()> {
    let (exe, dir, logs, ports) = (&stack.exe, &stack.dir, &stack.logs, &stack.ports);
    for (k, kind) in KINDS.iter().enumerate() {
        for i in 0..2 {
            let name = format!("worker-{kind}-{}", i + 1);
            let cfg = dir.join(format!("{name}.toml"));
            procs.push(spawn(
                exe,
                &["worker", "run", "--kind", kind, "-c"],
                &cfg,
                logs,
                &name,
            )?);
            wait_http(ports.worker(k, i), "/readyz", procs).await?;
        }
    }
    for i in 0..API_REPLICAS {
        let name = format!("api-{}", i + 1);
        procs.push(spawn(
            exe,
            &["api", "run", "-c"],
            &dir.join(format!("{name}.toml")),
            logs,
            &name,
        )?);
        wait_http(ports.api(i), "/readyz", procs).await?;
    }
    procs.push(spawn(
        exe,
        &["lb", "run", "-c"],
        &dir.join("lb.toml"),
        logs,
        "lb",
    )?);
    wait_healthy(ports.lb_metrics(), procs).await
}

/// The ready banner: URLs, the key, a `curl` example, how to stop.
fn print_ready(stack: &Stack, key: &str) {
    let api = stack.ports.api_vip();
    // The binary running now, so the client example works as printed.
    let bin = std::env::current_exe().map_or_else(|_| "tandem".into(), |p| p.display().to_string());
    println!(
        "tandem up: ready (balancer, {}, 2 workers each of {}) in {}\n\
         \n  API (through the balancer)  http://{api}\n  status page                 http://{}/\n  \
         metrics                     http://{}/metrics\n  API key                     {key}\n  \
         logs                        {}\n\
         \nTry:\n  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n       \
         -d '{{\"kind\":\"text\",\"input\":\"the quick brown fox jumps over the lazy dog\"}}' http://{api}/v1/jobs\n  \
         curl -s -H 'Authorization: Bearer {key}' 'http://{api}/v1/jobs/JOB_ID?wait=30s'\n  \
         curl -s -H 'Authorization: Bearer {key}' http://{api}/v1/jobs/JOB_ID/result\n\
         \nOr with the client:\n  export TANDEM_URL=http://{api} TANDEM_KEY={key}\n  \
         {bin} jobs submit text --input 'the quick brown fox jumps over the lazy dog' --wait\n  \
         {bin} jobs result JOB_ID\n\
         \nCtrl-C stops everything.",
        api_replicas_text(),
        KINDS.join(", "),
        stack.dir.display(),
        stack.ports.lb_metrics(),
        stack.ports.lb_metrics(),
        stack.logs.display()
    );
}

/// "1 API replica" or "N API replicas", from [`API_REPLICAS`], for the
/// ready banner.
fn api_replicas_text() -> String {
    match API_REPLICAS {
        1 => "1 API replica".to_string(),
        n => format!("{n} API replicas"),
    }
}

/// Waits for Ctrl-C or SIGTERM (SUCCESS) or a child's exit (FAILURE,
/// named with its log).
async fn supervise(stack: &Stack, procs: &mut [Proc]) -> anyhow::Result<ExitCode> {
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
            let log = stack.logs.join(format!("{name}.log"));
            eprintln!("tandem up: {name} exited ({st}); see {}; stopping", log.display());
            ExitCode::FAILURE
        }
    };
    Ok(code)
}
