//! The balancer's data plane on loopback with real sockets: integrity,
//! half-close, retries, limits, reload under load, drain.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `[[service]]` named "svc"; a listen port of 0 is replaced by a free
/// port (the config rightly refuses port 0).
fn service(listen: &str, scheduler: &str, extra: &str, backends: &[String]) -> String {
    let free;
    let listen = if listen.ends_with(":0") {
        free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        free.as_str()
    } else {
        listen
    };
    let mut s = format!(
        "[[service]]\nname = \"svc\"\nlisten = \"{listen}\"\nscheduler = \"{scheduler}\"\n{extra}\n"
    );
    for b in backends {
        s.push_str(&format!("[[service.backend]]\n{b}\n"));
    }
    s
}

/// Two data-plane workers whatever the machine has, so every test here runs
/// through a `SO_REUSEPORT` group of two sockets and two runtimes.
fn node() -> String {
    "[node]\nworkers = 2\nconnection_log = \"debug\"\n[admin]\nsocket = \"/nonexistent/not-used-by-library-tests.sock\"\n".to_string()
}

/// A balancer with one rr service "svc" in front of `be` alone.
async fn single(be: &Backend) -> std::sync::Arc<tandem_lb::runtime::Balancer> {
    balancer(
        &(node()
            + &service(
                "127.0.0.1:0",
                "rr",
                "",
                &[format!("address = \"{}\"", be.addr)],
            )),
    )
    .await
}

/// A balancer started from a config file (so `reload` re-reads it).
async fn from_file(path: &std::path::Path) -> std::sync::Arc<tandem_lb::runtime::Balancer> {
    let cfg = tandem_lb::config::Config::load(path).unwrap_or_else(|e| panic!("config: {e}"));
    tandem_lb::runtime::Balancer::start(cfg, Default::default())
        .await
        .expect("balancer starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_arrive_byte_identical_both_ways() {
    let be = Backend::spawn(Behaviour::Payload).await;
    let bal = single(&be).await;
    let addr = bal.bound_addr("svc").unwrap();
    for (i, size) in [1usize, 1024, 65_536, 1 << 20, 64 << 20]
        .into_iter()
        .enumerate()
    {
        // Different sizes each way, so a swapped direction would show.
        transfer(addr, size, size / 2 + 1, 1000 + i as u64).await;
        transfer(addr, size / 3 + 1, size, 2000 + i as u64).await;
    }
    let st = bal.status();
    let b = &st.services[0].backends[0];
    assert_eq!(b.total, 10, "one backend connection per transfer");
    assert_eq!(b.active, 0);
    let up: u64 = [1usize, 1024, 65_536, 1 << 20, 64 << 20]
        .iter()
        .map(|&s| (s + 16 + s / 3 + 1 + 16) as u64)
        .sum();
    assert_eq!(b.bytes_to_backend, up, "bytes counted client → backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_path_is_byte_identical_too() {
    let be = Backend::spawn(Behaviour::Payload).await;
    let cfg = node()
        + &service(
            "127.0.0.1:0",
            "rr",
            "",
            &[format!("address = \"{}\"", be.addr)],
        );
    let cfg = tandem_lb::config::Config::parse(&cfg, std::path::Path::new("t.toml")).unwrap();
    let opts = tandem_lb::runtime::Options {
        splice: false,
        ..Default::default()
    };
    let bal = tandem_lb::runtime::Balancer::start(cfg, opts)
        .await
        .unwrap();
    let addr = bal.bound_addr("svc").unwrap();
    for (i, size) in [1usize, 65_536, 8 << 20].into_iter().enumerate() {
        transfer(addr, size, size + 7, 3000 + i as u64).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_forwards_fin_and_keeps_the_other_direction() {
    let be = Backend::spawn(Behaviour::Echo).await;
    let bal = single(&be).await;
    let mut s = TcpStream::connect(bal.bound_addr("svc").unwrap())
        .await
        .unwrap();
    s.write_all(b"hello, half-closed world").await.unwrap();
    s.shutdown().await.unwrap(); // FIN to the balancer, which must pass it on
    let mut got = Vec::new();
    // The echo backend only closes after it saw our FIN: reaching EOF here
    // proves the FIN was forwarded, and the data proves the other direction
    // kept flowing after it.
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("EOF arrives: FIN forwarded")
        .unwrap();
    assert_eq!(got, b"hello, half-closed world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_backend_is_retried_and_the_client_sees_no_error() {
    let dead = refused_addr().await;
    let live = Backend::spawn(Behaviour::Tagged("live".into())).await;
    let cfg = node()
        + &service(
            "127.0.0.1:0",
            "rr",
            "retries = 2",
            &[
                format!("name = \"dead\"\naddress = \"{dead}\""),
                format!("name = \"live\"\naddress = \"{}\"", live.addr),
            ],
        );
    let bal = balancer(&cfg).await;
    let addr = bal.bound_addr("svc").unwrap();
    for _ in 0..40 {
        let (tag, _s) = tag_of(addr).await.expect("client sees no error");
        assert_eq!(tag, "live");
    }
    // Passive detection (3 consecutive failed connects by default) takes the
    // dead backend out of rotation, long before `fall` probes would (it
    // starts up, and one refused start-up probe is not `fall`): the retries
    // only covered the picks made before that.
    let st = bal.status();
    let dead_st = st.services[0]
        .backends
        .iter()
        .find(|b| b.name == "dead")
        .unwrap();
    assert_eq!(dead_st.state, "down", "{dead_st:?}");
    assert!(
        dead_st.connect_failures <= 3,
        "down after at most passive_fall failures: {}",
        dead_st.connect_failures
    );
    assert_eq!(st.services[0].no_backend, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_refusing_closes_the_client_and_counts_it() {
    let d1 = refused_addr().await;
    let d2 = refused_addr().await;
    let cfg = node()
        + &service(
            "127.0.0.1:0",
            "rr",
            // Panic mode: both are tried even after health marked them down.
            "retries = 5\nall_down = \"all\"",
            &[format!("address = \"{d1}\""), format!("address = \"{d2}\"")],
        );
    let bal = balancer(&cfg).await;
    // On loopback the balancer's reset can beat the client's own view of
    // the handshake, so connect may fail with ECONNRESET: also a refusal.
    if let Ok(mut s) = TcpStream::connect(bal.bound_addr("svc").unwrap()).await {
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed promptly");
        assert!(matches!(r, Ok(0) | Err(_)), "no data from nowhere");
    }
    eventually(Duration::from_secs(5), "the failure is counted", || async {
        bal.status().services[0].no_backend == 1
    })
    .await;
    let st = bal.status();
    assert_eq!(st.services[0].no_backend, 1);
    // Each backend tried once: retries never repeat a backend for one client.
    let fails: u64 = st.services[0]
        .backends
        .iter()
        .map(|b| b.connect_failures)
        .sum();
    assert_eq!(fails, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_refuses_the_excess_at_once_and_counts_it() {
    let be = Backend::spawn(Behaviour::Tagged("b".into())).await;
    let cfg = node()
        + &service(
            "127.0.0.1:0",
            "rr",
            "max_connections = 2",
            &[format!("address = \"{}\"", be.addr)],
        );
    let bal = balancer(&cfg).await;
    let addr = bal.bound_addr("svc").unwrap();
    let (_, c1) = tag_of(addr).await.unwrap();
    let (_, c2) = tag_of(addr).await.unwrap();
    let started = Instant::now();
    let third = tag_of(addr).await;
    assert!(third.is_err(), "third connection must be refused");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused at once, not queued"
    );
    assert_eq!(bal.status().services[0].refused_max_connections, 1);
    drop((c1, c2));
    eventually(Duration::from_secs(5), "slots freed", || async {
        bal.status().services[0].active == 0
    })
    .await;
    tag_of(addr)
        .await
        .expect("admitted again once below the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_max_connections_overflows_to_another_backend() {
    let a = Backend::spawn(Behaviour::Tagged("a".into())).await;
    let b = Backend::spawn(Behaviour::Tagged("b".into())).await;
    let cfg = node()
        + &service(
            "127.0.0.1:0",
            "wlc",
            "",
            &[
                format!(
                    "name = \"a\"\naddress = \"{}\"\nweight = 256\nmax_connections = 1",
                    a.addr
                ),
                format!("name = \"b\"\naddress = \"{}\"\nweight = 1", b.addr),
            ],
        );
    let bal = balancer(&cfg).await;
    let addr = bal.bound_addr("svc").unwrap();
    let mut held = Vec::new();
    let mut tags = HashMap::new();
    for _ in 0..4 {
        let (t, s) = tag_of(addr).await.unwrap();
        *tags.entry(t).or_insert(0) += 1;
        held.push(s);
    }
    assert_eq!(
        tags.get("a"),
        Some(&1),
        "a holds at most its max_connections: {tags:?}"
    );
    assert_eq!(tags.get("b"), Some(&3), "{tags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_sends_new_connections_elsewhere_and_lets_open_ones_finish() {
    let a = Backend::spawn(Behaviour::Tagged("a".into())).await;
    let b = Backend::spawn(Behaviour::Tagged("b".into())).await;
    let cfg = node()
        + &service(
            "127.0.0.1:0",
            "rr",
            "",
            &[
                format!("name = \"a\"\naddress = \"{}\"", a.addr),
                format!("name = \"b\"\naddress = \"{}\"", b.addr),
            ],
        );
    let bal = balancer(&cfg).await;
    let addr = bal.bound_addr("svc").unwrap();
    // Find a connection on a.
    let mut on_a = None;
    for _ in 0..4 {
        let (t, s) = tag_of(addr).await.unwrap();
        if t == "a" {
            on_a = Some(s);
            break;
        }
    }
    let mut on_a = on_a.expect("rr reaches a");
    bal.set_drain("svc", "a", true).unwrap();
    for _ in 0..20 {
        assert_eq!(
            tag_of(addr).await.unwrap().0,
            "b",
            "drained backend gets no new connection"
        );
    }
    // The open connection to a still works both ways.
    on_a.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    on_a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
    let st = bal.status();
    let a_st = st.services[0]
        .backends
        .iter()
        .find(|x| x.name == "a")
        .unwrap();
    assert_eq!(
        (a_st.state.as_str(), a_st.effective_weight, a_st.active),
        ("drained", 0, 1)
    );
    // Undrain: a is picked again.
    bal.set_drain("svc", "a", false).unwrap();
    let mut seen_a = false;
    for _ in 0..4 {
        seen_a |= tag_of(addr).await.unwrap().0 == "a";
    }
    assert!(seen_a);
    // Unknown names are refused with the valid choices.
    let e = bal.set_drain("svc", "nope", true).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("a, b"), "{e}");
}

/// 20 reloads while clients open new connections and long transfers run:
/// no client connection fails and every transfer completes intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_drop_nothing() {
    let be1 = Backend::spawn(Behaviour::Payload).await;
    let be2 = Backend::spawn(Behaviour::Payload).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let listen = free_addr().await;
    let render = |weight2: u32, scheduler: &str| {
        node()
            + &service(
                &listen.to_string(),
                scheduler,
                "",
                &[
                    format!("name = \"one\"\naddress = \"{}\"", be1.addr),
                    format!(
                        "name = \"two\"\naddress = \"{}\"\nweight = {weight2}",
                        be2.addr
                    ),
                ],
            )
    };
    std::fs::write(&path, render(100, "rr")).unwrap();
    let bal = from_file(&path).await;
    let addr = bal.bound_addr("svc").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let stop = stop.clone();
        let done = done.clone();
        clients.push(tokio::spawn(async move {
            // Bounded: at most 2,000 connections per client and 60 s.
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 2000 && Instant::now() < deadline {
                // Every 10th connection is a long transfer spanning reloads.
                let size = if i.is_multiple_of(10) { 4 << 20 } else { 100 };
                transfer(addr, size, size, c * 100_000 + i).await;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let schedulers = ["rr", "wrr", "lc", "wlc", "sh", "maglev", "p2c"];
    for r in 0..20 {
        let before = done.load(Ordering::Relaxed);
        eventually(Duration::from_secs(30), "clients make progress", || {
            let done = done.clone();
            async move { done.load(Ordering::Relaxed) >= before + 5 }
        })
        .await;
        std::fs::write(
            &path,
            render(1 + r * 10, schedulers[r as usize % schedulers.len()]),
        )
        .unwrap();
        let s = bal.reload().await.expect("reload");
        assert_eq!(s.listeners_kept, 1, "unchanged listener kept");
        assert_eq!(s.listeners_added, 0);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await
            .expect("client task: every transfer completed intact");
    }
    let st = bal.status();
    assert_eq!(st.services[0].no_backend, 0);
    assert_eq!(st.services[0].refused_max_connections, 0);
    let total: u64 = st.services[0].backends.iter().map(|b| b.total).sum();
    assert_eq!(
        total,
        done.load(Ordering::Relaxed) as u64,
        "counters carried across reloads"
    );
}

/// Each address is a group of one socket per worker: the kernel spreads
/// new connections over both workers, and a reload keeps the whole group
/// (both workers still accept after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_accepts_before_and_after_a_reload() {
    let be = Backend::spawn(Behaviour::Payload).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let listen = free_addr().await.to_string();
    let render = |scheduler: &str| {
        node()
            + &service(
                &listen,
                scheduler,
                "",
                &[format!("address = \"{}\"", be.addr)],
            )
    };
    std::fs::write(&path, render("rr")).unwrap();
    let bal = from_file(&path).await;
    let addr = bal.bound_addr("svc").unwrap();
    // 64 connections from fresh client ports: all on one of two sockets
    // would have odds of 2^-63.
    for i in 0..64 {
        transfer(addr, 10, 10, i).await;
    }
    let before = bal.accepted_per_worker();
    assert_eq!(before.len(), 2, "node.workers = 2");
    assert_eq!(before.iter().sum::<u64>(), 64);
    assert!(before.iter().all(|&n| n > 0), "per worker: {before:?}");
    std::fs::write(&path, render("wlc")).unwrap();
    let s = bal.reload().await.unwrap();
    assert_eq!((s.listeners_kept, s.listeners_added), (1, 0));
    for i in 64..128 {
        transfer(addr, 10, 10, i).await;
    }
    let after = bal.accepted_per_worker();
    assert_eq!(after.iter().sum::<u64>(), 128);
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "both sockets of the kept group accept: {before:?} then {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_is_refused_and_the_old_config_keeps_serving() {
    let be = Backend::spawn(Behaviour::Tagged("old".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let listen = free_addr().await;
    let good = node()
        + &service(
            &listen.to_string(),
            "rr",
            "",
            &[format!("address = \"{}\"", be.addr)],
        );
    std::fs::write(&path, &good).unwrap();
    let bal = from_file(&path).await;
    bal.set_drain("svc", &be.addr.to_string(), false).unwrap();
    std::fs::write(
        &path,
        good.replace("scheduler = \"rr\"", "scheduler = \"fastest\""),
    )
    .unwrap();
    let err = bal.reload().await.unwrap_err().to_string();
    assert!(
        err.contains("fastest") && err.contains("lb.toml"),
        "error names file and value: {err}"
    );
    assert_eq!(
        tag_of(listen).await.unwrap().0,
        "old",
        "old config still serves"
    );
    assert_eq!(bal.snapshot().services[0].cfg.scheduler.name(), "rr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_and_removes_listeners_without_touching_open_connections() {
    let be = Backend::spawn(Behaviour::Echo).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let l1 = free_addr().await;
    let l2 = free_addr().await;
    let one = node()
        + &service(
            &l1.to_string(),
            "rr",
            "",
            &[format!("address = \"{}\"", be.addr)],
        );
    let two = node()
        + &service(
            &l2.to_string(),
            "rr",
            "",
            &[format!("address = \"{}\"", be.addr)],
        )
        .replace("name = \"svc\"", "name = \"svc2\"");
    std::fs::write(&path, &one).unwrap();
    let bal = from_file(&path).await;
    let mut open = TcpStream::connect(l1).await.unwrap();
    open.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    open.read_exact(&mut b).await.unwrap();

    std::fs::write(&path, &two).unwrap();
    let s = bal.reload().await.unwrap();
    assert_eq!(
        (s.listeners_kept, s.listeners_added, s.listeners_removed),
        (0, 1, 1)
    );
    eventually(Duration::from_secs(5), "old listener closed", || async {
        TcpStream::connect(l1).await.is_err()
    })
    .await;
    let mut new = TcpStream::connect(l2).await.unwrap();
    new.write_all(b"y").await.unwrap();
    new.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"y");
    // The connection accepted under the old config still flows.
    open.write_all(b"z").await.unwrap();
    open.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_open_connections_within_the_grace_period() {
    let be = Backend::spawn(Behaviour::Echo).await;
    let bal = single(&be).await;
    let addr = bal.bound_addr("svc").unwrap();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"a").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();

    let bal2 = bal.clone();
    let shut = tokio::spawn(async move { bal2.shutdown(Duration::from_secs(30)).await });
    eventually(Duration::from_secs(5), "listener closed", || async {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    // Still open and working during the grace period.
    s.write_all(b"b").await.unwrap();
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"b");
    assert!(!shut.is_finished());
    drop(s);
    let cut = tokio::time::timeout(Duration::from_secs(10), shut)
        .await
        .expect("shutdown ends once the connection closes")
        .unwrap();
    assert_eq!(cut, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cuts_what_is_still_open_after_the_grace_period() {
    let be = Backend::spawn(Behaviour::Hold).await;
    let bal = single(&be).await;
    let mut s = TcpStream::connect(bal.bound_addr("svc").unwrap())
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "connection established", || async {
        bal.status().services[0].backends[0].active == 1
    })
    .await;
    let started = Instant::now();
    let cut = bal.shutdown(Duration::from_millis(300)).await;
    assert_eq!(cut, 1);
    // Wall-clock lower bound: the 300 ms grace is waited in full (timers
    // never fire early), so no margin is needed.
    assert!(started.elapsed() >= Duration::from_millis(300));
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .expect("client sees the close");
    assert!(matches!(r, Ok(0) | Err(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_counters_survive_a_reload() {
    let a = Backend::spawn(Behaviour::Tagged("a".into())).await;
    let b = Backend::spawn(Behaviour::Tagged("b".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let listen = free_addr().await;
    let text = |sched: &str| {
        node()
            + &service(
                &listen.to_string(),
                sched,
                "",
                &[
                    format!("name = \"a\"\naddress = \"{}\"", a.addr),
                    format!("name = \"b\"\naddress = \"{}\"", b.addr),
                ],
            )
    };
    std::fs::write(&path, text("rr")).unwrap();
    let bal = from_file(&path).await;
    for _ in 0..4 {
        tag_of(listen).await.unwrap();
    }
    bal.set_drain("svc", "a", true).unwrap();
    std::fs::write(&path, text("wlc")).unwrap();
    bal.reload().await.unwrap();
    let st = bal.status();
    let a_st = st.services[0]
        .backends
        .iter()
        .find(|x| x.name == "a")
        .unwrap();
    assert_eq!(a_st.state, "drained", "drain carried across the reload");
    assert_eq!(st.services[0].total, 4, "service counter carried");
    assert_eq!(st.services[0].scheduler, "wlc", "the reload did apply");
    for _ in 0..10 {
        assert_eq!(tag_of(listen).await.unwrap().0, "b");
    }
}

/// A backend that reads a PROXY header and answers with the source address
/// it carried, as text.
async fn proxy_header_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 256];
                loop {
                    let n = s.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "EOF before a full PROXY header");
                    buf.extend_from_slice(&chunk[..n]);
                    match tandem_lb::proxy::proxy_protocol::decode(&buf) {
                        Ok(Some((h, used))) => {
                            let rest = String::from_utf8_lossy(&buf[used..]).into_owned();
                            let line = format!("{:?}|{:?}|{rest}\n", h.src, h.dst);
                            s.write_all(line.as_bytes()).await.unwrap();
                            return;
                        }
                        Ok(None) => continue,
                        Err(e) => panic!("bad PROXY header: {e}"),
                    }
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v1_and_v2_carry_the_client_address() {
    for version in ["v1", "v2"] {
        let (be, _task) = proxy_header_backend().await;
        let cfg = node()
            + &service(
                "127.0.0.1:0",
                "rr",
                &format!("proxy_protocol = \"{version}\""),
                &[format!("address = \"{be}\"")],
            );
        let bal = balancer(&cfg).await;
        let listen = bal.bound_addr("svc").unwrap();
        // Connect from a distinctive loopback source so the header is not
        // trivially equal to the balancer's own address.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.7:0".parse().unwrap()).unwrap();
        let mut s = sock.connect(listen).await.unwrap();
        let client = s.local_addr().unwrap();
        // The client's bytes may or may not share the backend's first read
        // with the header; either way they must come after it.
        s.write_all(b"payload").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut got))
            .await
            .unwrap()
            .unwrap();
        let parts: Vec<&str> = got.trim_end().split('|').collect();
        assert_eq!(
            parts[0],
            format!("{:?}", Some(client)),
            "{version}: source = the client"
        );
        assert_eq!(
            parts[1],
            format!("{:?}", Some(listen)),
            "{version}: destination = the service"
        );
        assert!(
            parts[2].is_empty() || parts[2] == "payload",
            "{version}: header followed by the client's bytes: {got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_survives_a_restart_through_the_drain_file() {
    let a = Backend::spawn(Behaviour::Tagged("a".into())).await;
    let b = Backend::spawn(Behaviour::Tagged("b".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let drain_file = dir.path().join("lb.drained");
    let cfg = node()
        + &service(
            "127.0.0.1:0",
            "rr",
            "",
            &[
                format!("name = \"a\"\naddress = \"{}\"", a.addr),
                format!("name = \"b\"\naddress = \"{}\"", b.addr),
            ],
        );
    let start = || async {
        let c = tandem_lb::config::Config::parse(&cfg, std::path::Path::new("t.toml")).unwrap();
        let opts = tandem_lb::runtime::Options {
            drain_file: Some(drain_file.clone()),
            ..Default::default()
        };
        tandem_lb::runtime::Balancer::start(c, opts).await.unwrap()
    };
    let first = start().await;
    first.set_drain("svc", "a", true).unwrap();
    first.shutdown(Duration::from_secs(1)).await;
    drop(first);

    let second = start().await;
    let addr = second.bound_addr("svc").unwrap();
    for _ in 0..6 {
        assert_eq!(
            tag_of(addr).await.unwrap().0,
            "b",
            "a is still drained after the restart"
        );
    }
    second.set_drain("svc", "a", false).unwrap();
    assert!(
        tandem_lb::runtime::drainfile::load(&drain_file)
            .unwrap()
            .is_empty(),
        "enable clears the file"
    );
}
