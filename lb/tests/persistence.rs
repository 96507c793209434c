//! Client persistence on loopback: clients are told apart by their source
//! address (127.0.0.2, 127.0.0.3, ...: all of 127/8 is loopback on Linux),
//! two tagged backends behind `rr`, which alternates when nothing pins.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use tandem_lb::runtime::Balancer;
use tandem_lb::runtime::status::PersistenceStatus;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// A config with one `rr` service "svc" on `listen` in front of backends
/// "a" and "b", with `extra` in the service table.
fn config(listen: SocketAddr, extra: &str, a: &Backend, b: &Backend) -> String {
    format!(
        "[node]\nworkers = 2\nconnection_log = \"off\"\n\
         [admin]\nsocket = \"/nonexistent/not-used-by-library-tests.sock\"\n\
         [[service]]\nname = \"svc\"\nlisten = \"{listen}\"\nscheduler = \"rr\"\n{extra}\n\
         [[service.backend]]\nname = \"a\"\naddress = \"{}\"\n\
         [[service.backend]]\nname = \"b\"\naddress = \"{}\"\n",
        a.addr, b.addr
    )
}

async fn two_backends() -> (Backend, Backend) {
    (
        Backend::spawn(Behaviour::Tagged("a".into())).await,
        Backend::spawn(Behaviour::Tagged("b".into())).await,
    )
}

/// Connects from `127.0.0.<host>` and reads the backend's tag line; the
/// connection is returned open.
async fn tag_from(host: u8, addr: SocketAddr) -> (String, TcpStream) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))
        .unwrap();
    let mut s = sock.connect(addr).await.expect("connect to the balancer");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
        .await
        .expect("tag within 5 s")
        .expect("read tag")
        == 1
        && byte[0] != b'\n'
    {
        line.push(byte[0]);
    }
    (String::from_utf8(line).unwrap(), s)
}

/// The tags of `n` connections from `127.0.0.<host>`, one after the other,
/// each closed before the next.
async fn tags(host: u8, addr: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(tag_from(host, addr).await.0);
    }
    out
}

fn persistence(bal: &Balancer) -> PersistenceStatus {
    bal.status().services[0]
        .persistence
        .clone()
        .expect("persistence is on")
}

/// Clients pinned to backends "a" and "b" now.
fn pinned(bal: &Balancer) -> (u64, u64) {
    let st = bal.status();
    let b = &st.services[0].backends;
    (b[0].pinned, b[1].pinned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_keeps_its_backend_while_on_and_alternates_while_off() {
    let (a, b) = two_backends().await;
    let on = balancer(&config(
        free_addr().await,
        "persistence_timeout = \"5m\"",
        &a,
        &b,
    ))
    .await;
    let addr = on.bound_addr("svc").unwrap();
    let first = tags(2, addr, 20).await;
    assert!(first.iter().all(|t| *t == first[0]), "pinned: {first:?}");
    // Another client is a new key: rr gives it the other backend, and it
    // stays there too.
    let second = tags(3, addr, 20).await;
    assert!(second.iter().all(|t| *t == second[0]), "pinned: {second:?}");
    assert_ne!(first[0], second[0], "rr moved on for the new client");
    let p = persistence(&on);
    assert_eq!((p.entries, p.capacity), (2, 65_536));
    assert_eq!(
        (p.hits, p.misses),
        (38, 2),
        "one miss per client, then hits"
    );
    assert_eq!(pinned(&on), (1, 1));
    assert_eq!(
        (p.timeout.as_str(), p.granularity.as_str()),
        ("5m", "255.255.255.255")
    );

    let off = balancer(&config(free_addr().await, "", &a, &b)).await;
    let seen = tags(2, off.bound_addr("svc").unwrap(), 20).await;
    let on_a = seen.iter().filter(|t| *t == "a").count();
    assert_eq!(on_a, 10, "rr alternates without persistence: {seen:?}");
    let st = off.status();
    assert_eq!(st.services[0].persistence, None);
    assert_eq!(st.services[0].backends[0].pinned, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_netmask_pins_a_whole_network() {
    let (a, b) = two_backends().await;
    let extra = "persistence_timeout = \"5m\"\npersistence_granularity = \"255.255.255.0\"";
    let bal = balancer(&config(free_addr().await, extra, &a, &b)).await;
    let addr = bal.bound_addr("svc").unwrap();
    let mut seen = Vec::new();
    for host in 2..12 {
        seen.extend(tags(host, addr, 2).await);
    }
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "one /24, one backend: {seen:?}"
    );
    assert_eq!(persistence(&bal).entries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_pinned_backend_moves_the_client_and_the_new_pin_stays() {
    let (a, b) = two_backends().await;
    let bal = balancer(&config(
        free_addr().await,
        "persistence_timeout = \"5m\"",
        &a,
        &b,
    ))
    .await;
    let addr = bal.bound_addr("svc").unwrap();
    let (was, _open) = tag_from(2, addr).await;
    let other = if was == "a" { "b" } else { "a" };
    bal.set_drain("svc", &was, true).unwrap();
    // Its connection still open, the client is released all the same.
    assert_eq!(tags(2, addr, 5).await, vec![other; 5], "moved off {was}");
    bal.set_drain("svc", &was, false).unwrap();
    assert_eq!(
        tags(2, addr, 5).await,
        vec![other; 5],
        "the new pick is remembered, undraining {was} does not move it back"
    );
    let (pa, pb) = pinned(&bal);
    assert_eq!(pa + pb, 1);
    assert_eq!(if other == "a" { pa } else { pb }, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_lives_while_connections_are_open_and_expires_after_the_timeout() {
    let (a, b) = two_backends().await;
    let bal = balancer(&config(
        free_addr().await,
        "persistence_timeout = \"300ms\"",
        &a,
        &b,
    ))
    .await;
    let addr = bal.bound_addr("svc").unwrap();
    let (tag, held) = tag_from(2, addr).await;
    // No expiry while a connection is open: this waits out three timeouts
    // (and several sweeps) on purpose, to show an absence.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(persistence(&bal).entries, 1, "kept while open");
    assert_eq!(tags(2, addr, 3).await, vec![tag.clone(); 3]);
    drop(held);
    let misses = persistence(&bal).misses;
    eventually(Duration::from_secs(5), "the entry expires", || async {
        persistence(&bal).entries == 0
    })
    .await;
    // The next connection is scheduled afresh.
    tag_from(2, addr).await;
    assert_eq!(persistence(&bal).misses, misses + 1);
    assert_eq!(persistence(&bal).entries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_survive_a_reload_and_go_when_persistence_is_turned_off() {
    let (a, b) = two_backends().await;
    let c = Backend::spawn(Behaviour::Tagged("c".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    let listen = free_addr().await;
    let on = "persistence_timeout = \"5m\"";
    std::fs::write(&path, config(listen, on, &a, &b)).unwrap();
    let cfg = tandem_lb::config::Config::load(&path).unwrap();
    let bal = Balancer::start(cfg, Default::default()).await.unwrap();
    let (was, _) = tag_from(2, listen).await;
    // A reload that keeps the pinned backend (and adds one) keeps the pin.
    let with_c = config(listen, on, &a, &b)
        + &format!(
            "[[service.backend]]\nname = \"c\"\naddress = \"{}\"\n",
            c.addr
        );
    std::fs::write(&path, with_c).unwrap();
    bal.reload().await.unwrap();
    assert_eq!(tags(2, listen, 6).await, vec![was.clone(); 6]);
    assert_eq!(persistence(&bal).entries, 1);
    // Persistence off: no table, rr alternates.
    std::fs::write(&path, config(listen, "", &a, &b)).unwrap();
    bal.reload().await.unwrap();
    assert_eq!(bal.status().services[0].persistence, None);
    let seen = tags(2, listen, 6).await;
    assert!(seen.iter().any(|t| *t != was), "no longer pinned: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pinned_backend_overflows_one_connection_without_unpinning() {
    let (a, b) = two_backends().await;
    let listen = free_addr().await;
    // Backend "a" takes one connection at a time.
    let text = config(listen, "persistence_timeout = \"5m\"", &a, &b).replacen(
        "name = \"a\"\n",
        "name = \"a\"\nmax_connections = 1\n",
        1,
    );
    let bal = balancer(&text).await;
    // rr's first pick is the first backend: the client is pinned to a.
    let (tag, held) = tag_from(2, listen).await;
    assert_eq!(tag, "a");
    let (overflow, _) = tag_from(2, listen).await;
    assert_eq!(
        overflow, "b",
        "a is full: this one connection goes elsewhere"
    );
    drop(held);
    // Still pinned to a whenever it has room (a close reaches the balancer
    // asynchronously, so wait for a's slot before each connection).
    for _ in 0..3 {
        eventually(Duration::from_secs(5), "a has room again", || async {
            bal.status().services[0].backends[0].active == 0
        })
        .await;
        assert_eq!(tag_from(2, listen).await.0, "a");
    }
    let p = persistence(&bal);
    assert_eq!((p.entries, p.hits, p.misses), (1, 3, 2));
}
