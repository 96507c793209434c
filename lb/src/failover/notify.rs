//! The `notify` queue: one task runs notify commands one at a time, in the
//! order the transitions happened, each bounded by its `notify_timeout`.
//!
//! keepalived's lesson (it grew `notify_fifo` for this): a notify script run
//! inline with the protocol delays adverts while it runs, and scripts run
//! concurrently can finish out of order and leave an external system
//! believing a stale state. Here the protocol tasks only enqueue (an
//! unbounded channel send never waits), and a single worker drains the queue.
//!
//! Arguments are keepalived's, so existing scripts work unchanged:
//! `program args... INSTANCE NAME STATE PRIORITY`.

use std::time::Duration;

use tokio::sync::mpsc;

/// One notify command to run.
#[derive(Debug, Clone)]
pub struct Job {
    /// Program and its configured arguments.
    pub command: Vec<String>,
    pub instance: String,
    /// keepalived's word: MASTER, BACKUP, FAULT or STOP.
    pub state: &'static str,
    pub priority: u8,
    pub timeout: Duration,
}

impl Job {
    /// The full argument vector after the program.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = self.command.iter().skip(1).cloned().collect();
        a.push("INSTANCE".into());
        a.push(self.instance.clone());
        a.push(self.state.into());
        a.push(self.priority.to_string());
        a
    }
}

/// The sending side, cloned into every instance.
pub type Queue = mpsc::UnboundedSender<Job>;

/// Starts the worker; it ends when every [`Queue`] is dropped and the
/// queue is drained.
pub fn spawn() -> (Queue, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    let task = tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            run(&job).await;
        }
    });
    (tx, task)
}

async fn run(job: &Job) {
    let Some(program) = job.command.first() else {
        return;
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(job.args())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(instance = %job.instance, program, error = %e, "notify: cannot start");
            return;
        }
    };
    match tokio::time::timeout(job.timeout, child.wait()).await {
        Ok(Ok(st)) if st.success() => {
            tracing::debug!(instance = %job.instance, state = job.state, "notify done");
        }
        Ok(Ok(st)) => {
            tracing::warn!(instance = %job.instance, state = job.state, status = %st, "notify failed");
        }
        Ok(Err(e)) => {
            tracing::warn!(instance = %job.instance, state = job.state, error = %e, "notify: wait failed");
        }
        Err(_) => {
            tracing::warn!(
                instance = %job.instance,
                state = job.state,
                timeout_ms = job.timeout.as_millis() as u64,
                "notify timed out: killed"
            );
            let _ = child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_argument_order() {
        let j = Job {
            command: vec!["/bin/notify".into(), "--syslog".into()],
            instance: "vip1".into(),
            state: "MASTER",
            priority: 150,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(j.args(), ["--syslog", "INSTANCE", "vip1", "MASTER", "150"]);
    }

    /// Jobs run one at a time, in order, and a job past its timeout is
    /// killed without holding up the next.
    #[tokio::test]
    async fn in_order_one_at_a_time_with_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let script = dir.path().join("n.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"start $3\" >> {l}\n[ \"$3\" = MASTER ] && sleep 5\necho \"end $3\" >> {l}\n",
                l = log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (q, task) = spawn();
        for state in ["BACKUP", "MASTER", "FAULT"] {
            q.send(Job {
                command: vec![script.display().to_string()],
                instance: "i".into(),
                state,
                priority: 100,
                timeout: Duration::from_millis(300),
            })
            .unwrap();
        }
        drop(q);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("queue drained in time")
            .unwrap();
        let got = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            got,
            "start BACKUP\nend BACKUP\nstart MASTER\nstart FAULT\nend FAULT\n"
        );
    }
}
