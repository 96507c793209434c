//! `exec` over HTTP, with `sh -c` scripts standing in for the operator's
//! command. Every script ends by itself within seconds even if the worker
//! failed to kill it.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::ErrorBody;
use common::{Worker, eventually};
use tandem_worker::config::Kind;

/// An `[exec]` section running `script` under /bin/sh with a fixed PATH.
fn sh(script: &str, extra: &str) -> String {
    format!(
        "[exec]\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\nenv = {{ PATH = \"/usr/bin:/bin\" }}\n{extra}"
    )
}

#[tokio::test]
async fn stdin_in_stdout_out_with_configured_content_type() {
    let w = Worker::start(
        Kind::Exec,
        &sh("tr a-z A-Z", "content_type = \"text/plain\"\n"),
    )
    .await;
    let r = w
        .post("/v1/run", Some("text/plain"), b"hello, worker\n".to_vec())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.content_type(), "text/plain");
    assert_eq!(r.text(), "HELLO, WORKER\n");

    // A large input through a pipe both ways (more than a pipe buffer).
    let big: Vec<u8> = (0..400_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let r = w.post("/v1/run", None, big.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.to_vec(), big.to_ascii_uppercase());
}

#[tokio::test]
async fn environment_is_cleared_except_what_config_allows() {
    // SAFETY-free way to prove clearing: the test process has HOME and
    // CARGO_* set; the child must see only FOO and PATH (pass_env).
    assert!(std::env::var_os("CARGO_PKG_NAME").is_some() || std::env::var_os("HOME").is_some());
    let w = Worker::start(
        Kind::Exec,
        "[exec]\ncommand = [\"/usr/bin/env\"]\npass_env = [\"PATH\", \"TANDEM_SURELY_UNSET_VAR\"]\nenv = { FOO = \"bar baz\" }\n",
    )
    .await;
    let r = w.post("/v1/run", None, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got: BTreeSet<String> = r.text().lines().map(str::to_owned).collect();
    let want: BTreeSet<String> = [
        "FOO=bar baz".to_owned(),
        format!("PATH={}", std::env::var("PATH").unwrap()),
    ]
    .into();
    assert_eq!(got, want);
}

#[tokio::test]
async fn non_zero_exit_fails_with_the_tail_of_stderr() {
    let w = Worker::start(
        Kind::Exec,
        &sh(
            "cat >/dev/null; i=0; while [ $i -lt 500 ]; do echo noise-$i >&2; i=$((i+1)); done; echo 'the real reason' >&2; exit 3",
            "stderr_tail_bytes = 64\n",
        ),
    )
    .await;
    let r = w.post("/v1/run", None, b"input".to_vec()).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "command_failed");
    let msg = r.error_message();
    assert!(msg.contains("exit status 3"), "{msg}");
    assert!(msg.contains("the real reason"), "{msg}");
    assert!(!msg.contains("noise-1\\n"), "only the tail: {msg}");
}

/// Whether `pid` is gone or a zombie (killed, not yet reaped by whoever
/// inherited it).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test]
async fn timeout_kills_the_whole_group_even_when_sigterm_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    // The shell ignores SIGTERM and starts a grandchild in its group that
    // does too; both would outlive the test if only the child were killed.
    let script = format!(
        "trap '' TERM; (trap '' TERM; sleep 30) & echo $! > {p}.tmp; echo $$ >> {p}.tmp; mv {p}.tmp {p}; wait",
        p = pidfile.display()
    );
    let w = Worker::start(Kind::Exec, &sh(&script, "timeout = \"500ms\"\n")).await;
    let started = Instant::now();
    let r = w.post("/v1/run", None, Vec::new()).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.error_code(), "timeout");
    // Wall-clock bound: the 500 ms timeout, then the kill of a group that
    // ignores SIGTERM; 10 s is far above both and fails only a worker that
    // waits for the 30 s sleep.
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let pids: Vec<i32> = std::fs::read_to_string(&pidfile)
        .expect("script wrote its pids")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    eventually(Duration::from_secs(5), "group killed", || {
        let all_dead = pids.iter().all(|&p| dead(p));
        async move { all_dead }
    })
    .await;
    w.assert_healthy().await;
}

#[tokio::test]
async fn background_processes_do_not_outlive_a_run_that_succeeds_or_fails() {
    // The `sleep` is in the command's group, holds none of its pipes (so
    // the run ends at once) and would live 30 s if the worker left it. Its
    // pid goes to stdout (read on success) and stderr (quoted on failure);
    // with job parameters the command fails.
    let script = "sleep 30 </dev/null >/dev/null 2>&1 & echo $!; echo $! >&2; \
                  tr a-z A-Z; [ -z \"$TANDEM_PARAMS\" ] || exit 3";
    let w = Worker::start(Kind::Exec, &sh(script, "")).await;
    let ok = w.post("/v1/run", None, b"hi\n".to_vec()).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().ends_with("HI\n"), "{}", ok.text());
    let failed = w.run_with_params("{}", None, Vec::new()).await;
    assert_eq!(failed.status, 502, "{}", failed.text());

    let pids = [ok.text(), failed.error_message()].map(|text| {
        let digits: String = text
            .split_once("end of stderr: \"")
            .map_or(text.as_str(), |(_, tail)| tail)
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits
            .parse::<i32>()
            .unwrap_or_else(|_| panic!("no pid in {text:?}"))
    });
    for pid in pids {
        eventually(
            Duration::from_secs(5),
            "the run's background sleep is gone",
            || async move { dead(pid) },
        )
        .await;
    }
    w.assert_healthy().await;
}

#[tokio::test]
async fn huge_stdout_is_cut_and_the_command_killed() {
    let w = Worker::start(
        Kind::Exec,
        &sh(
            "yes 'all work and no play'",
            "max_output_bytes = 100000\ntimeout = \"20s\"\n",
        ),
    )
    .await;
    let started = Instant::now();
    let r = w.post("/v1/run", None, Vec::new()).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "output_too_large");
    assert!(r.error_message().contains("100000 bytes"), "{}", r.text());
    // Killed at the cap, not at the timeout. Wall-clock bound: producing
    // 100 kB takes milliseconds; 10 s of margin still fails a worker that
    // stops the command only at its 20 s timeout.
    assert!(started.elapsed() < Duration::from_secs(10));

    // Exactly at the cap is fine.
    let w = Worker::start(
        Kind::Exec,
        &sh("head -c 100000 /dev/zero", "max_output_bytes = 100000\n"),
    )
    .await;
    let r = w.post("/v1/run", None, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), 100_000);
    w.assert_healthy().await;
}

#[tokio::test]
async fn missing_program_is_a_spawn_failure() {
    let w = Worker::start(Kind::Exec, "[exec]\ncommand = [\"/nonexistent/tool\"]\n").await;
    let r = w.post("/v1/run", None, Vec::new()).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.error_code(), "spawn_failed");
    assert!(
        r.error_message().contains("/nonexistent/tool"),
        "{}",
        r.text()
    );
    w.assert_healthy().await;
}

#[tokio::test]
async fn job_parameters_reach_the_command_as_tandem_params() {
    // The config sets its own TANDEM_PARAMS: the job's value wins, and
    // without a header the config's is what the command sees, as before.
    let w = Worker::start(
        Kind::Exec,
        "[exec]\ncommand = [\"/usr/bin/env\"]\nenv = { FOO = \"1\", TANDEM_PARAMS = \"from-config\" }\n",
    )
    .await;
    let params = r#"{"lang":"caf\u00e9","n":[1,2]}"#;
    let r = w.run_with_params(params, None, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got: BTreeSet<String> = r.text().lines().map(str::to_owned).collect();
    let want: BTreeSet<String> = ["FOO=1".to_owned(), format!("TANDEM_PARAMS={params}")].into();
    assert_eq!(got, want);

    let r = w.post("/v1/run", None, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("TANDEM_PARAMS=from-config\n"),
        "{}",
        r.text()
    );

    // Not an object: refused before the command runs.
    let r = w.run_with_params("[1]", None, Vec::new()).await;
    assert_eq!((r.status, r.error_code().as_str()), (422, "bad_param"));
    assert!(
        r.error_message()
            .starts_with("X-Tandem-Params: is an array, not an object"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn without_parameters_tandem_params_is_not_set() {
    let w = Worker::start(Kind::Exec, "[exec]\ncommand = [\"/usr/bin/env\"]\n").await;
    let r = w.post("/v1/run", None, Vec::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "", "an empty environment");
}
