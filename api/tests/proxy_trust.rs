//! `proxy_protocol_from`: a PROXY header is believed only from the listed
//! peers, so a client that reaches a replica directly cannot write another
//! client's address into the request log (issue 15, item 3).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tandem_api::keys;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `to` from the loopback address `from` (all of 127.0.0.0/8
/// is this host's), sends `bytes` and reads until the replica closes.
async fn exchange(from: [u8; 4], to: SocketAddr, bytes: &[u8]) -> String {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from((from, 0))).unwrap();
    let mut s: TcpStream = sock.connect(to).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    // A refused connection is closed (or reset) before any answer.
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the replica answers or closes");
    String::from_utf8_lossy(&out).into_owned()
}

fn request(header: &str, token: &str) -> Vec<u8> {
    format!(
        "{header}GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

async fn logged(db: &tandem_api::db::Db, client_like: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM request_log WHERE client LIKE ?")
        .bind(client_like)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_header_from_an_untrusted_peer_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let url = database("sqlite", dir.path()).await.unwrap();
    // The "balancer" is 127.0.0.2; everyone else is a client.
    let r = Replica::start(&format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{url}\"\nproxy_protocol = \"optional\"\n\
         proxy_protocol_from = [\"127.0.0.2/32\"]\n[kinds.upper]\nurl = \"http://127.0.0.1:9\"\n"
    ))
    .await;
    let (_, token) = keys::create(&r.db, "k", 1e6, 1_000_000).await.unwrap();
    let v1 = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 40000 80\r\n");
    let v2 = |src: &str| {
        let src: SocketAddr = format!("{src}:40000").parse().unwrap();
        tandem_proxy_protocol::encode_v2(src, "127.0.0.1:80".parse().unwrap())
    };

    // A client at 127.0.0.1 claims to be 203.0.113.66, in v1 and in v2.
    let forged = exchange(
        [127, 0, 0, 1],
        r.addr,
        &request(&v1("203.0.113.66"), &token),
    )
    .await;
    assert_eq!(forged, "", "a forged v1 header gets no answer");
    let mut bytes = v2("203.0.113.67");
    bytes.extend(request("", &token));
    let forged = exchange([127, 0, 0, 1], r.addr, &bytes).await;
    assert_eq!(forged, "", "a forged v2 header gets no answer");
    // Its plain requests are served, under its own address.
    let plain = exchange([127, 0, 0, 1], r.addr, &request("", &token)).await;
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    // The balancer's header is believed.
    let proxied = exchange(
        [127, 0, 0, 2],
        r.addr,
        &request(&v1("203.0.113.77"), &token),
    )
    .await;
    assert!(proxied.starts_with("HTTP/1.1 200"), "{proxied}");
    let mut bytes = v2("203.0.113.78");
    bytes.extend(request("", &token));
    let proxied = exchange([127, 0, 0, 2], r.addr, &bytes).await;
    assert!(proxied.starts_with("HTTP/1.1 200"), "{proxied}");

    let db = r.db.clone();
    eventually(
        Duration::from_secs(5),
        "the three served requests logged",
        || {
            let db = db.clone();
            async move {
                logged(&db, "127.0.0.1:%").await == 1
                    && logged(&db, "203.0.113.77:%").await == 1
                    && logged(&db, "203.0.113.78:%").await == 1
            }
        },
    )
    .await;
    assert_eq!(
        logged(&r.db, "203.0.113.6%").await,
        0,
        "no forged address logged"
    );
    r.stop().await;
}
