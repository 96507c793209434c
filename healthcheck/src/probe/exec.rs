//! The exec probe: a command whose exit status is the verdict (keepalived's
//! `MISC_CHECK`).
//!
//! The command runs with stdin, stdout and stderr on `/dev/null` (output is
//! discarded; a chatty script cannot fill a pipe and block), the balancer's
//! environment plus [`ExecProbe::env`], and in a new process group
//! (`setpgid(0, 0)` in the child, so its pgid is its pid). Exit 0 means up.
//!
//! At the timeout the *whole group* gets SIGKILL (`killpg`), not just the
//! direct child: a shell script's `curl` or `sleep` must not outlive the check.
//! SIGKILL rather than SIGTERM-then-wait because a health check that ignores
//! the timeout has no cleanup worth waiting for, and the next probe must not be
//! delayed. The direct child is then reaped; killed grandchildren are reaped by
//! their new parent (init or a subreaper). The same kill happens if the probe
//! is dropped mid-run (checker shutdown or target removed).
//!
//! The process group ID stays reserved while the unreaped leader exists, so
//! the kill cannot hit an unrelated group. After a normal exit the group is
//! left alone: once the leader is reaped its pgid may be reused.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{Outcome, ProbeError, timeout_detail};

/// A command to run as a health check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecProbe {
    /// Program path, or a name looked up in `PATH`.
    pub program: String,
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
}

impl ExecProbe {
    pub fn new(program: &str, args: &[&str]) -> Self {
        ExecProbe {
            program: program.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
        }
    }

    pub fn validate(&self) -> Result<(), ProbeError> {
        if self.program.is_empty() {
            return Err(ProbeError::EmptyProgram);
        }
        Ok(())
    }

    pub(super) async fn run(&self, timeout: Duration) -> (Outcome, String) {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            // If we are dropped before reaping, tokio reaps in the background.
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return (Outcome::SpawnError, format!("spawn {}: {e}", self.program)),
        };
        let mut group = GroupKiller(child.id().and_then(|id| i32::try_from(id).ok()));
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => {
                // Reaped: the pgid may be reused from now on.
                group.disarm();
                match (
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                ) {
                    (Some(0), _) => (Outcome::Ok, "exit 0".to_string()),
                    (Some(code), _) => (Outcome::ExitFailure, format!("exit {code}")),
                    (None, Some(sig)) => (Outcome::ExitFailure, format!("killed by signal {sig}")),
                    (None, None) => (Outcome::ExitFailure, format!("{status}")),
                }
            }
            Ok(Err(e)) => {
                group.kill();
                (Outcome::SpawnError, format!("wait: {e}"))
            }
            Err(_) => {
                group.kill();
                // SIGKILL cannot be ignored: this returns promptly.
                let _ = child.wait().await;
                (Outcome::Timeout, timeout_detail(timeout))
            }
        }
    }
}

/// Kills a process group once, at the latest when dropped, unless disarmed.
struct GroupKiller(Option<i32>);

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (group already gone) is fine.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Probe;
    use std::time::Instant;
    use tandem_test_support::eventually;

    async fn run(p: ExecProbe, timeout: Duration) -> (Outcome, String, Duration) {
        let out = Probe::Exec(p).run(timeout).await;
        (out.outcome, out.detail, out.duration)
    }

    #[tokio::test]
    async fn exit_status_is_the_verdict() {
        let t = Duration::from_secs(5);
        let (o, d, _) = run(ExecProbe::new("true", &[]), t).await;
        assert_eq!((o, d.as_str()), (Outcome::Ok, "exit 0"));
        let (o, d, _) = run(ExecProbe::new("false", &[]), t).await;
        assert_eq!((o, d.as_str()), (Outcome::ExitFailure, "exit 1"));
        let (o, d, _) = run(ExecProbe::new("sh", &["-c", "exit 3"]), t).await;
        assert_eq!((o, d.as_str()), (Outcome::ExitFailure, "exit 3"));
        let (o, d, _) = run(ExecProbe::new("sh", &["-c", "kill -9 $$"]), t).await;
        assert_eq!(
            (o, d.as_str()),
            (Outcome::ExitFailure, "killed by signal 9")
        );
    }

    #[tokio::test]
    async fn env_is_passed_and_output_discarded() {
        let mut p = ExecProbe::new("sh", &["-c", "yes | head -c 1000000; test \"$WANT\" = up"]);
        p.env.push(("WANT".into(), "up".into()));
        let (o, d, _) = run(p, Duration::from_secs(5)).await;
        assert_eq!((o, d.as_str()), (Outcome::Ok, "exit 0"));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let (o, d, _) = run(
            ExecProbe::new("/nonexistent/tandem-check", &[]),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(o, Outcome::SpawnError);
        assert!(d.starts_with("spawn /nonexistent/tandem-check: "), "{d}");
    }

    /// Live (non-zombie) processes whose process group is `pgid`, from /proc.
    fn live_members(pgid: i32) -> Vec<i32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() > 2 && f[2] == pgid.to_string() && f[0] != "Z" {
                found.push(pid);
            }
        }
        found
    }

    #[tokio::test]
    async fn a_child_ignoring_sigterm_is_killed_with_its_group_at_the_timeout() {
        let dir = std::env::temp_dir().join(format!("tandem-hc-exec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!(
            "echo $$ > {}; trap '' TERM; sleep 30 & sleep 30; wait",
            pidfile.display()
        );
        let start = Instant::now();
        let (o, d, took) = run(
            ExecProbe::new("sh", &["-c", &script]),
            Duration::from_millis(500),
        )
        .await;
        let elapsed = start.elapsed();
        assert_eq!((o, d.as_str()), (Outcome::Timeout, "timeout after 500ms"));
        assert!(
            elapsed < Duration::from_secs(3),
            "returned after {elapsed:?}"
        );
        assert!(took >= Duration::from_millis(500));
        let pgid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // SIGKILL is delivered at once, but /proc may lag a moment: bounded wait.
        gone(pgid, "the timed-out probe's group gone").await;
        println!("exec timeout 500ms: probe returned after {elapsed:?}, group {pgid} gone");
    }

    #[tokio::test]
    async fn dropping_a_running_probe_kills_its_group() {
        let dir = std::env::temp_dir().join(format!("tandem-hc-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("pid");
        let script = format!("echo $$ > {}; sleep 30", pidfile.display());
        let probe = Probe::Exec(ExecProbe::new("sh", &["-c", &script]));
        let fut = probe.run(Duration::from_secs(60));
        // Run until the script has written its pid, then drop the future.
        tokio::select! {
            _ = fut => panic!("probe finished early"),
            _ = eventually(Duration::from_secs(5), "the script started", || async {
                std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
            }) => {}
        }
        let pgid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        gone(pgid, "the dropped probe's group gone").await;
    }

    /// Waits (3 s at most) until process group `pgid` has no live member.
    async fn gone(pgid: i32, what: &str) {
        eventually(
            Duration::from_secs(3),
            &format!("{what} (group {pgid})"),
            || async {
                let left = live_members(pgid);
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("members {left:?}"))
                }
            },
        )
        .await;
    }
}
