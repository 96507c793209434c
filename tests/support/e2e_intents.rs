//! What the end-to-end scenario's client asks of each job beyond "run
//! it" (issue 14, item 7), and how it checks that the job ended in exactly
//! the state it asked for.
//!
//! - `Plain`: submitted, then checked at the end (done, correct result).
//! - `Wait`: after its 202 the client asks `GET /v1/jobs/{id}?wait=10s`
//!   through the VIP, again while the answer is not final (a wait held by
//!   a replica that is killed breaks and is asked again), and must see
//!   `done` that way.
//! - `Webhook`: submitted with a `callback_url` to the receiver the test
//!   runs on the client's address; every one must be delivered at least
//!   once, signed with the key's secret, with status `done`.
//! - `CancelQueued`: a job of the `parked` kind, whose URL has no service
//!   behind it: its first attempt is refused at once and it waits an hour
//!   for the next. The client waits until it is queued after that attempt,
//!   then cancels it: the answer must be 200 `cancelled`.
//! - `CancelRunning`: a job of the `sleepy` kind (an exec worker that
//!   sleeps 3 s before it answers): the client waits until it is running,
//!   then cancels it: 200 `cancelled`, and it must stay cancelled with no
//!   result when the worker's late answer comes back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::e2e_stack::{Response, http};

/// What the client does with a job after its 202.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Plain,
    Wait,
    Webhook,
    CancelQueued,
    CancelRunning,
}

impl Intent {
    /// Job `i`'s intent: one in eight waits, one in eight has a webhook,
    /// one in forty of each cancel.
    pub fn of(i: usize) -> Intent {
        match (i % 8, i % 40) {
            (_, 5) => Intent::CancelQueued,
            (_, 13) => Intent::CancelRunning,
            (1, _) => Intent::Wait,
            (3, _) => Intent::Webhook,
            _ => Intent::Plain,
        }
    }

    /// The kind a cancel target is submitted as (the others keep theirs).
    pub fn kind(self) -> Option<&'static str> {
        match self {
            Intent::CancelQueued => Some("parked"),
            Intent::CancelRunning => Some("sleepy"),
            _ => None,
        }
    }
}

/// What the client saw while following its job.
#[derive(Debug, Default)]
pub struct Followed {
    /// `?wait=` requests answered with a state that was not final.
    pub wait_timeouts: u32,
    /// Transport failures retried (a wait or cancel broken by a kill).
    pub retries: u32,
    /// A cancel target that finished before the client saw it running
    /// (its status requests were stuck in a VIP handover meanwhile): the
    /// cancel was answered 409 `already_finished`, and the job must be
    /// done with its result.
    pub escaped: bool,
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null)
}

/// One request, retried on transport errors and 5xx for `patience`.
fn retried(
    vip: SocketAddr,
    method: &str,
    path: &str,
    auth: &str,
    patience: Duration,
    seen: &mut Followed,
) -> Result<Response, String> {
    let deadline = Instant::now() + patience;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http(vip, method, path, &[("Authorization", auth)], b"") {
            Ok(r) if r.status < 500 => return Ok(r),
            Ok(r) => last = format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
            Err(e) => last = format!("{e:?}"),
        }
        seen.retries += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{method} {path}: still failing after {patience:?}: {last}"
    ))
}

/// Follows job `id` as `intent` says; `Err` says how the client's request
/// was not honoured.
pub fn follow(vip: SocketAddr, token: &str, id: &str, intent: Intent) -> Result<Followed, String> {
    let auth = format!("Bearer {token}");
    let mut seen = Followed::default();
    let patience = Duration::from_secs(120);
    match intent {
        Intent::Plain | Intent::Webhook => Ok(seen),
        Intent::Wait => {
            let deadline = Instant::now() + patience;
            while Instant::now() < deadline {
                let path = format!("/v1/jobs/{id}?wait=10s");
                let r = retried(vip, "GET", &path, &auth, patience, &mut seen)?;
                let v = json(&r);
                match v["status"].as_str() {
                    Some("done") => return Ok(seen),
                    Some("queued" | "running") => seen.wait_timeouts += 1,
                    _ => return Err(format!("wait answered {} {v}", r.status)),
                }
            }
            Err(format!("not done after {patience:?} of waits"))
        }
        Intent::CancelQueued | Intent::CancelRunning => {
            let want = if intent == Intent::CancelQueued {
                "queued"
            } else {
                "running"
            };
            let path = format!("/v1/jobs/{id}");
            let deadline = Instant::now() + patience;
            loop {
                let r = retried(vip, "GET", &path, &auth, patience, &mut seen)?;
                let v = json(&r);
                // Queued after its first (refused) attempt, or running.
                let ready = v["status"] == want
                    && (intent == Intent::CancelRunning || v["attempts"].as_u64() >= Some(1));
                if ready {
                    break;
                }
                if v["status"] == "done" && intent == Intent::CancelRunning {
                    let r = retried(vip, "DELETE", &path, &auth, patience, &mut seen)?;
                    let v = json(&r);
                    if r.status == 409 && v["error"]["code"] == "already_finished" {
                        seen.escaped = true;
                        return Ok(seen);
                    }
                    return Err(format!("cancel of a done job answered {} {v}", r.status));
                }
                if Instant::now() > deadline {
                    return Err(format!("never {want}: {v}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let r = retried(vip, "DELETE", &path, &auth, patience, &mut seen)?;
            let v = json(&r);
            if r.status == 200 && v["status"] == "cancelled" {
                Ok(seen)
            } else {
                Err(format!("cancel of a {want} job answered {} {v}", r.status))
            }
        }
    }
}

// ------------------------------------------------------ the webhook receiver

/// One delivery the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub job: String,
    pub event: String,
    pub status: String,
    pub signed: bool,
}

/// HMAC-SHA256 (RFC 2104) over this test's own SHA-256.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&crate::e2e_data::sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let mut inner = pad(0x36);
    inner.extend_from_slice(msg);
    let mut outer = pad(0x5c);
    outer.extend_from_slice(&crate::e2e_data::sha256(&inner));
    crate::e2e_data::sha256(&outer)
}

/// Whether `header` (`t=...,v1=...[,v1=...]`) signs `body` with `secret`.
fn signed(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    let want = crate::e2e_data::hex(&hmac_sha256(secret.as_bytes(), &msg));
    sigs.contains(&want.as_str())
}

/// The receiver: answers 500 to the first delivery of one job in four
/// (so retries happen), 200 to the rest, and records every delivery.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub fn start(ip: std::net::Ipv4Addr, secret: String) -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind((ip, 0)).expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let got: std::sync::Arc<std::sync::Mutex<Vec<Delivery>>> = Default::default();
        let g = got.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let (g, secret) = (g.clone(), secret.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut r = BufReader::new(stream.try_clone().unwrap());
                    let (mut len, mut sig) = (0usize, String::new());
                    let mut line = String::new();
                    while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if lower.starts_with("tandem-signature:") {
                            sig = line["tandem-signature:".len()..].trim().to_owned();
                        }
                        line.clear();
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let d = Delivery {
                        job: v["id"].as_str().unwrap_or("").to_owned(),
                        event: v["event"].as_str().unwrap_or("").to_owned(),
                        status: v["status"].as_str().unwrap_or("").to_owned(),
                        signed: signed(&secret, &sig, &body),
                    };
                    let first = {
                        let mut got = g.lock().unwrap();
                        let first = !got.iter().any(|x| x.job == d.job);
                        got.push(d.clone());
                        first
                    };
                    let fail =
                        first && crate::e2e_data::sha256(d.job.as_bytes())[0].is_multiple_of(4);
                    let status = if fail {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        Receiver { addr, got }
    }

    /// The deliveries for `job` so far.
    pub fn of(&self, job: &str) -> Vec<Delivery> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.job == job)
            .cloned()
            .collect()
    }
}

#[test]
fn hmac_matches_rfc_4231_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        crate::e2e_data::hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
