//! `exec`: the operator's command, with the input on stdin and the result
//! from stdout.
//!
//! The command comes from the config only; a request supplies bytes, never
//! arguments. The child runs:
//! - with a cleared environment plus `pass_env` (copied from ours) and `env`,
//!   and, when the job has parameters, `TANDEM_PARAMS` set to them
//!   ([`crate::params::EXEC_ENV`]): the `X-Tandem-Params` value as received,
//!   a JSON object in compact ASCII. The worker checks only that it is an
//!   object; what the names mean is the command's business, as its input
//!   is. An environment variable rather than arguments because the command
//!   line stays the operator's alone (a request never adds a word to it),
//!   and a variable cannot be mistaken for an option. It wins over a
//!   `TANDEM_PARAMS` in `env` or `pass_env`; without parameters it is not
//!   set by the worker at all, as before parameters existed;
//! - in a new process group (`process_group(0)`: `setpgid(0, 0)` in the
//!   child), so a timeout can kill it *and everything it started* with one
//!   `killpg(SIGKILL)`: SIGKILL cannot be trapped, unlike the SIGTERM a
//!   `trap '' TERM` shell ignores;
//! - with stdout read up to `max_output_bytes + 1`: one byte past the cap
//!   proves the cap was exceeded, and the group is killed at once rather than
//!   left blocked on a full pipe;
//! - with only the last `stderr_tail_bytes` of stderr kept, for the failure
//!   message.
//!
//! The group is killed before the child is reaped after *every* run: when it
//! ends early (timeout, cap, or the request future dropped because the client
//! went away) and when the command exits by itself, with success or not, so
//! nothing it started in the background (`sleep 300 &`) outlives the run
//! and piles up over thousands of jobs. A process group id stays allocated
//! while its leader is an unreaped zombie or any member lives, so killing
//! before reaping cannot hit a group that reused the id: after a normal exit
//! the worker waits with `waitid(WNOWAIT)`, which leaves the zombie
//! unreaped, kills the group, then reaps.

use std::io;
use std::process::{ExitStatus, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::RunError;
use crate::config::ExecConfig;

/// Runs the configured command on `input`, with the job's `params` (the
/// header value) in its environment, and returns its stdout.
pub async fn run(
    cfg: &ExecConfig,
    input: &[u8],
    params: Option<&str>,
) -> Result<Vec<u8>, RunError> {
    let mut child = command(cfg, params).spawn().map_err(|e| RunError::Spawn {
        program: cfg.command.program.display().to_string(),
        reason: e.to_string(),
    })?;
    // Cannot fail: the child has not been waited for yet, so it has an id.
    let pid = child.id().expect("unreaped child has a pid");
    let mut guard = GroupGuard(Some(Pid::from_raw(pid as i32)));

    let result = tokio::time::timeout(cfg.timeout, exchange(&mut child, cfg, input)).await;
    let (out, err_tail) = match result {
        Err(_elapsed) => {
            return Err(abort(&mut guard, &mut child, RunError::Timeout(cfg.timeout)).await);
        }
        Ok(Err(e)) => return Err(abort(&mut guard, &mut child, e).await),
        Ok(Ok(both)) => both,
    };

    // Both pipes are at EOF, so the child has exited or closed them; the
    // timeout still bounds a child that closed its pipes and kept running.
    match tokio::time::timeout(cfg.timeout, exited(pid)).await {
        // The leader is a zombie, not yet reaped: its group id is still
        // ours. Kill what it left behind (a `cmd &` it never waited for),
        // on success as on failure: nothing a run started outlives it.
        Ok(Ok(())) => guard.kill(),
        // Cannot happen (the child is ours and unreaped); without knowing
        // the leader is unreaped the group id might be reused, so no kill.
        Ok(Err(e)) => {
            tracing::warn!(pid, error = %e, "cannot wait for the command's exit");
            guard.disarm();
        }
        Err(_elapsed) => {
            return Err(abort(&mut guard, &mut child, RunError::Timeout(cfg.timeout)).await);
        }
    }
    let status = child.wait().await.map_err(internal)?;
    if status.success() {
        Ok(out)
    } else {
        Err(RunError::CommandFailed {
            status: describe(status),
            stderr_tail: String::from_utf8_lossy(&err_tail).into_owned(),
        })
    }
}

/// The configured command, not yet started: arguments from the config
/// only, a cleared environment plus `pass_env`, `env` and the job's
/// `params`, `/` as its directory, piped stdio, its own process group.
fn command(cfg: &ExecConfig, params: Option<&str>) -> Command {
    let mut cmd = Command::new(&cfg.command.program);
    cmd.args(&cfg.command.args)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        // Backstop only: the group guard does the real killing.
        .kill_on_drop(true);
    for name in &cfg.pass_env {
        if let Some(value) = std::env::var_os(name.as_str()) {
            cmd.env(name.as_str(), value);
        }
    }
    for (name, value) in &cfg.env {
        cmd.env(name.as_str(), value);
    }
    // Last, so the job's value wins; cannot hold NUL: a header value has none.
    if let Some(params) = params {
        cmd.env(crate::params::EXEC_ENV, params);
    }
    cmd
}

/// Feeds `input` to the child's stdin while reading its stdout (up to
/// `max_output_bytes`) and the tail of its stderr, until all three are
/// done; returns stdout and the stderr tail.
async fn exchange(
    child: &mut Child,
    cfg: &ExecConfig,
    input: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), RunError> {
    let (mut stdin, mut stdout, mut stderr) = (
        child.stdin.take().expect("stdin piped"),
        child.stdout.take().expect("stdout piped"),
        child.stderr.take().expect("stderr piped"),
    );
    let feed = async move {
        // A command may exit without reading all its input; the broken pipe
        // that follows is its business, not a failure of the run.
        let _ = stdin.write_all(input).await;
        drop(stdin);
        Ok::<(), RunError>(())
    };
    let limit = cfg.max_output_bytes;
    let collect = async move {
        let mut out = Vec::new();
        (&mut stdout)
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .await
            .map_err(internal)?;
        if out.len() as u64 > limit {
            return Err(RunError::OutputTooLarge { limit });
        }
        Ok(out)
    };
    let tail = read_tail(&mut stderr, cfg.stderr_tail_bytes);
    let ((), out, tail) = tokio::try_join!(feed, collect, tail)?;
    Ok((out, tail))
}

/// Waits until process `pid` (our unreaped child) has exited, without
/// reaping it (`waitid(WEXITED | WNOWAIT)`), so its process group id stays
/// allocated until [`Child::wait`] reaps it. On a blocking thread: the call
/// blocks; the thread ends when the child does, which a timeout's group
/// kill or `kill_on_drop` ensures.
async fn exited(pid: u32) -> io::Result<()> {
    let pid = Pid::from_raw(pid as i32);
    let wait = move || loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop).map_err(io::Error::from),
        }
    };
    tokio::task::spawn_blocking(wait)
        .await
        .map_err(|join| io::Error::other(format!("wait thread failed: {join}")))?
}

/// Ends a run early: kills the group, then reaps the child (so the group
/// id cannot be reused before the kill), and gives back `error`.
async fn abort(guard: &mut GroupGuard, child: &mut Child, error: RunError) -> RunError {
    guard.kill();
    let _ = child.wait().await;
    error
}

/// Reads `r` to EOF, keeping only its last `keep` bytes.
async fn read_tail<R: AsyncRead + Unpin>(r: &mut R, keep: usize) -> Result<Vec<u8>, RunError> {
    let mut tail = Vec::with_capacity(keep.min(64 * 1024));
    let mut buf = [0u8; 8192];
    loop {
        let n = r.read(&mut buf).await.map_err(internal)?;
        if n == 0 {
            return Ok(tail);
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

fn internal(e: io::Error) -> RunError {
    RunError::Internal(format!("talking to the command: {e}"))
}

/// Kills the child's whole process group: explicitly after a normal exit
/// (before reaping), and when dropped armed: on timeout, on
/// the stdout cap, and when the request future is dropped mid-run.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (group already gone) is the only expected error and
            // means there is nothing left to kill.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
