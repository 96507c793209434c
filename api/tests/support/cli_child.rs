//! A replica run the way systemd runs it: `tandem api run -c FILE`'s own
//! code (`tandem_api::cli::main`, signals, sd-notify, the descriptor limit)
//! in a child process, this test binary re-run with
//! `TANDEM_API_TEST_CLI`. Its log lines (the `tandem` binary's format,
//! on stdout here) are kept for the test to read.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The child process and what it logged so far.
pub struct CliReplica {
    /// Where it listens (from its "api listening" line).
    pub addr: SocketAddr,
    /// The process.
    pub child: Child,
    /// Every log line so far, in order.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl CliReplica {
    /// Runs `test_name` of this binary as `tandem api run -c CONFIG`,
    /// started with a soft descriptor limit of `soft_nofile` if given (by
    /// the shell's `ulimit -Sn`, then exec: the pid stays the replica's).
    pub fn spawn(test_name: &str, config: &Path, soft_nofile: Option<u64>) -> CliReplica {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match soft_nofile {
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -Sn {n} && exec \"$0\" \"$@\"")])
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env("TANDEM_API_TEST_CLI", config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line.contains("api listening")
                    && let Some(a) = field(&line, "addr")
                    && let Ok(a) = a.parse::<SocketAddr>()
                {
                    let _ = tx.send(a);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child replica came up");
        CliReplica { addr, child, log }
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The log lines containing every one of `needles`.
    pub fn logged(&self, needles: &[&str]) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .cloned()
            .collect()
    }

    /// Sends `sig` (a libc signal number, by the `kill` command).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.child.id());
    }
}

impl Drop for CliReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` of a tracing line (values end at a space).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split_whitespace().next()
}

/// The child side: when `TANDEM_API_TEST_CLI` names a config, run
/// `tandem api run -c` on it (logging as the `tandem` binary does, to
/// stdout) and exit with its code.
pub fn cli_child_main() {
    let Ok(cfg) = std::env::var("TANDEM_API_TEST_CLI") else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .init();
    let cmd = tandem_api::cli::ApiCommand::Run { config: cfg.into() };
    let code = match tandem_api::cli::main(cmd) {
        Ok(c) if c == std::process::ExitCode::SUCCESS => 0,
        Ok(_) => 1,
        Err(e) => {
            println!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
