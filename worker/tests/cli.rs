//! `tandem worker check` and `run` through `cli::main`, as the binary calls
//! them. In its own test binary because `run` handles this process's
//! SIGTERM.

mod common;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use common::{eventually, request};
use tandem_worker::cli::{WorkerCommand, main};
use tandem_worker::config::{Config, Kind};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/worker.example.toml");

fn same(a: ExitCode, b: ExitCode) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

#[test]
fn example_config_is_valid_for_every_kind() {
    let c = Config::load(Path::new(EXAMPLE)).expect("example parses");
    for kind in Kind::ALL {
        c.check_kind(kind).unwrap();
    }
    assert_eq!(c.limits.concurrency, 4);
    assert_eq!(
        c.exec.as_ref().unwrap().content_type.as_str(),
        "text/plain; charset=utf-8"
    );
    let code = main(WorkerCommand::Check {
        config: EXAMPLE.into(),
        kind: Some(Kind::Exec),
    })
    .unwrap();
    assert!(same(code, ExitCode::SUCCESS));
}

#[test]
fn check_fails_on_a_bad_file_and_on_a_missing_section() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "listen = \"127.0.0.1:1\"\n[limits]\nretry_after = \"1 s\"\n",
    )
    .unwrap();
    let code = main(WorkerCommand::Check {
        config: bad,
        kind: None,
    })
    .unwrap();
    assert!(same(code, ExitCode::FAILURE));

    let no_exec = dir.path().join("no_exec.toml");
    std::fs::write(&no_exec, "listen = \"127.0.0.1:1\"\n").unwrap();
    let ok = main(WorkerCommand::Check {
        config: no_exec.clone(),
        kind: None,
    })
    .unwrap();
    assert!(same(ok, ExitCode::SUCCESS));
    let code = main(WorkerCommand::Check {
        config: no_exec,
        kind: Some(Kind::Exec),
    })
    .unwrap();
    assert!(same(code, ExitCode::FAILURE));

    let missing_program = dir.path().join("missing.toml");
    std::fs::write(
        &missing_program,
        "listen = \"127.0.0.1:1\"\n[exec]\ncommand = [\"/nonexistent/tool\"]\n",
    )
    .unwrap();
    let code = main(WorkerCommand::Check {
        config: missing_program,
        kind: None,
    })
    .unwrap();
    assert!(same(code, ExitCode::FAILURE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn run_serves_until_sigterm_then_exits_zero() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.toml");
    std::fs::write(&file, format!("listen = \"127.0.0.1:{port}\"\n")).unwrap();
    let worker = std::thread::spawn(move || {
        main(WorkerCommand::Run {
            config: file,
            kind: Kind::Text,
        })
    });

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eventually(Duration::from_secs(10), "worker up", || async {
        request(addr, "GET", "/healthz", None, Vec::new())
            .await
            .is_ok_and(|r| r.status == 200)
    })
    .await;
    let r = request(
        addr,
        "POST",
        "/v1/run",
        Some("text/plain"),
        b"a b a".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["top_words"][0]["word"], "a");
    // The recorder `run` installed serves /metrics.
    let m = request(addr, "GET", "/metrics", None, Vec::new())
        .await
        .unwrap();
    assert!(
        m.text()
            .contains("tandem_worker_runs_total{kind=\"text\",outcome=\"ok\"} 1")
    );

    // The signal handlers were installed before the server started, so the
    // answer above proves SIGTERM is caught rather than fatal.
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGTERM).unwrap();
    let code = tokio::task::spawn_blocking(move || worker.join())
        .await
        .unwrap()
        .expect("run thread")
        .expect("run result");
    assert!(same(code, ExitCode::SUCCESS));
    assert!(
        request(addr, "GET", "/healthz", None, Vec::new())
            .await
            .is_err()
    );
}
