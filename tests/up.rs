//! `tandem up` as a new user meets it: one command starts the whole stack
//! on loopback, prints a key and a curl example that works, and Ctrl-C
//! stops every process it started.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tandem_test_support::http::Request;
use tandem_test_support::wait::Wait;

const BIN: &str = env!("CARGO_BIN_EXE_tandem");
/// A 1×1 PNG.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// One API request with the shared test client; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, key: &str, body: &str) -> (u16, Vec<u8>) {
    let r = Request::new(method, path)
        .bearer(key)
        .header("content-type", "application/json")
        .body(body)
        .send_blocking(addr)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, r.body.to_vec())
}

/// The first of 40 consecutive ports on 127.0.0.1 (what `tandem up --port`
/// uses) that are all free now: ranges start at one derived from the pid,
/// so parallel runs rarely meet, and a busy range moves to the next one.
fn free_port_range() -> u16 {
    let first = (std::process::id() % 400) as u16;
    (0..400u16)
        .map(|i| 20_000 + ((first + i) % 400) * 100)
        .find(|&base| {
            (base..base + 40).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok())
        })
        .expect("a free range of 40 ports between 20000 and 59999")
}

#[test]
fn tandem_up_serves_jobs_end_to_end_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_port_range();
    let mut child = Command::new(BIN)
        .args(["up", "--port", &base.to_string(), "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut printed = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(90)) {
            Ok(line) => {
                let done = line.contains("Ctrl-C stops everything");
                printed.push(line);
                if done {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("tandem up not ready within 90 s; printed {printed:?}; stderr {err}");
            }
        }
    }
    println!("tandem up ready in {:?}", started.elapsed());
    let text = printed.join("\n");
    let key = printed
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("API key")
                .map(|k| k.trim().to_string())
        })
        .expect("the key is printed");
    assert!(text.contains("curl"), "a curl example: {text}");
    let api: SocketAddr = format!("127.0.0.1:{base}").parse().unwrap();

    // The printed example, and the two other kinds.
    let jobs = [
        (
            "text",
            r#"{"kind":"text","input":"the quick brown fox jumps over the lazy dog"}"#.to_string(),
        ),
        ("exec", r#"{"kind":"exec","input":"shout"}"#.to_string()),
        (
            "thumbnail",
            format!(
                r#"{{"kind":"thumbnail","input_base64":"{PNG_1X1}","content_type":"image/png"}}"#
            ),
        ),
    ];
    for (kind, body) in jobs {
        let (status, resp) = http(api, "POST", "/v1/jobs", &key, &body);
        assert_eq!(status, 202, "{kind}: {}", String::from_utf8_lossy(&resp));
        let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
        let id = v["id"].as_str().unwrap().to_string();
        let done = Wait::new(Duration::from_secs(30), format!("{kind} done"))
            .every(Duration::from_millis(50));
        done.until_blocking(|| {
            let (_, resp) = http(api, "GET", &format!("/v1/jobs/{id}"), &key, "");
            let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
            assert!(v["status"] != "failed", "{kind} failed: {v}");
            if v["status"] == "done" {
                Ok(())
            } else {
                Err(v)
            }
        });
        let (status, result) = http(api, "GET", &format!("/v1/jobs/{id}/result"), &key, "");
        assert_eq!(status, 200);
        match kind {
            "text" => {
                let v: serde_json::Value = serde_json::from_slice(&result).unwrap();
                assert_eq!(v["words"], 9, "{v}");
            }
            "exec" => assert_eq!(result, b"SHOUT"),
            _ => assert!(result.starts_with(b"\x89PNG"), "a PNG thumbnail"),
        }
    }

    tandem_jobs_against(base, &key, dir.path());

    // Ctrl-C: everything stops, exit 0, nothing left listening.
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let status = Wait::new(Duration::from_secs(60), "tandem up stopped")
        .every(Duration::from_millis(50))
        .until_blocking(|| child.try_wait().unwrap());
    assert!(status.success(), "{status}");
    for off in 0..40 {
        let a: SocketAddr = format!("127.0.0.1:{}", base + off).parse().unwrap();
        assert!(
            TcpStream::connect(a).is_err(),
            "{a} still accepts after stop"
        );
    }
}

/// `tandem jobs`, the README's twin of the curl example, against the stack:
/// the URL and key from the environment, no client file.
fn tandem_jobs_against(base: u16, key: &str, home: &std::path::Path) {
    let jobs = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("jobs")
            .args(args)
            .env("TANDEM_URL", format!("http://127.0.0.1:{base}"))
            .env("TANDEM_KEY", key)
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let json = |s: &str| -> serde_json::Value {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
    };
    let (code, out, err) = jobs(&[
        "submit",
        "text",
        "--input",
        "b a b",
        "--params",
        r#"{"top": 1}"#,
        "--wait",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let job = json(&out);
    assert_eq!(job["status"], "done", "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let (code, out, err) = jobs(&["result", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(json(&out)["words"], 3, "{out}");
    let (code, out, _) = jobs(&["get", &id]);
    assert_eq!(
        (code, json(&out)["status"].clone()),
        (Some(0), "done".into())
    );
    let (code, out, _) = jobs(&["list", "--kind", "text"]);
    assert!(
        code == Some(0)
            && out
                .lines()
                .any(|l| l.starts_with(&id) && l.contains("done")),
        "{out}"
    );

    // A file in, the result to a file.
    let input = home.join("shout.txt");
    std::fs::write(&input, "shout").unwrap();
    let (code, out, err) = jobs(&[
        "submit",
        "exec",
        "--file",
        input.to_str().unwrap(),
        "--wait",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let exec_id = json(&out)["id"].as_str().unwrap().to_owned();
    let output = home.join("shout.out");
    let (code, _, err) = jobs(&["result", &exec_id, "-o", output.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(std::fs::read(&output).unwrap(), b"SHOUT");

    // Refusals name what the API refused and why, with exit status 1.
    let (code, _, err) = jobs(&["cancel", &id]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cancel the job (HTTP 409): already_finished"),
        "{err}"
    );
    let (code, _, err) = jobs(&["submit", "nope", "--input", "x"]);
    assert!(
        code == Some(1) && err.contains("HTTP 422): unknown_kind"),
        "{err}"
    );
    let (code, _, err) = jobs(&["--key", "tk_bogus", "get", &id]);
    assert!(code == Some(1) && err.contains("HTTP 401"), "{err}");
}
