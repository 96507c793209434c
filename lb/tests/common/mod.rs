//! Test fixtures for the balancer: backends on loopback, a balancer built
//! from TOML text, and (from tandem-test-support) the bounded wait and the
//! HTTP client. Everything binds 127.0.0.1:0.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tandem_lb::config::Config;
use tandem_lb::runtime::{Balancer, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The bounded wait of every Tandem test: `(within, what, condition)`.
pub use tandem_test_support::eventually;

/// What a test backend does with each connection.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Copies what it reads back; shuts its write side at EOF.
    Echo,
    /// Writes `tag\n` at once, then echoes.
    Tagged(String),
    /// The payload protocol of [`transfer`].
    Payload,
    /// Reads and discards; never writes; holds the connection until EOF.
    Hold,
}

/// A loopback backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub async fn spawn(b: Behaviour) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::spawn_on(l, b)
    }

    pub fn spawn_on(l: TcpListener, b: Behaviour) -> Backend {
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let b = b.clone();
                tokio::spawn(async move {
                    let _ = serve(s, b).await;
                });
            }
        });
        Backend {
            addr,
            accepted,
            task,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(mut s: TcpStream, b: Behaviour) -> std::io::Result<()> {
    match b {
        Behaviour::Echo => echo(s).await,
        Behaviour::Tagged(tag) => {
            s.write_all(format!("{tag}\n").as_bytes()).await?;
            echo(s).await
        }
        Behaviour::Payload => payload_server(s).await,
        Behaviour::Hold => {
            let mut buf = [0u8; 1024];
            while s.read(&mut buf).await? > 0 {}
            Ok(())
        }
    }
}

async fn echo(s: TcpStream) -> std::io::Result<()> {
    let (mut r, mut w) = s.into_split();
    tokio::io::copy(&mut r, &mut w).await?;
    w.shutdown().await
}

/// An address on which nothing listens (connects are refused).
pub async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A free loopback port right now (for configs that must name a port).
pub async fn free_addr() -> SocketAddr {
    refused_addr().await
}

/// Builds a balancer from TOML text.
pub async fn balancer(toml: &str) -> Arc<Balancer> {
    let cfg = Config::parse(toml, std::path::Path::new("test.toml"))
        .unwrap_or_else(|e| panic!("config: {e}"));
    Balancer::start(cfg, Options::default())
        .await
        .expect("balancer starts")
}

/// Deterministic byte stream (xorshift64*), 8 bytes at a time.
pub fn stream_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// 64-bit digest of a byte stream, fed in pieces.
#[derive(Default, Clone, Copy)]
pub struct Digest {
    h: u64,
    n: u64,
}

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            // FNV-1a over bytes, position folded in through the count.
            self.h = (self.h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.n += data.len() as u64;
    }
    pub fn value(&self) -> u64 {
        self.h ^ self.n.rotate_left(32)
    }
}

/// Payload protocol, server side: reads an 16-byte header (len to send,
/// seed), then concurrently streams `len` bytes of `stream_bytes(seed)` and
/// digests everything the client sends until EOF; finally writes the
/// 8-byte digest of what it received and closes.
async fn payload_server(s: TcpStream) -> std::io::Result<()> {
    let (mut r, mut w) = s.into_split();
    let mut hdr = [0u8; 16];
    r.read_exact(&mut hdr).await?;
    let len = u64::from_le_bytes(hdr[..8].try_into().unwrap()) as usize;
    let seed = u64::from_le_bytes(hdr[8..].try_into().unwrap());
    let writer = async move {
        let data = stream_bytes(seed, len);
        w.write_all(&data).await?;
        Ok::<_, std::io::Error>(w)
    };
    let reader = async move {
        let mut d = Digest::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            d.update(&buf[..n]);
        }
        Ok::<_, std::io::Error>(d.value())
    };
    let (w, digest) = tokio::try_join!(writer, reader)?;
    let mut w = w;
    w.write_all(&digest.to_le_bytes()).await?;
    w.shutdown().await
}

/// Payload protocol, client side: sends `up` random bytes and receives `down`
/// bytes through `addr`, both at once; asserts both arrive byte-identical.
pub async fn transfer(addr: SocketAddr, up: usize, down: usize, seed: u64) {
    let s = TcpStream::connect(addr).await.expect("connect to balancer");
    let (mut r, mut w) = s.into_split();
    let sent = stream_bytes(seed ^ 0xA5A5, up);
    let mut sent_digest = Digest::default();
    sent_digest.update(&sent);
    let writer = async move {
        let mut hdr = Vec::with_capacity(16);
        hdr.extend_from_slice(&(down as u64).to_le_bytes());
        hdr.extend_from_slice(&seed.to_le_bytes());
        w.write_all(&hdr).await?;
        w.write_all(&sent).await?;
        w.shutdown().await?; // half-close: the answer must still arrive
        Ok::<_, std::io::Error>(w)
    };
    let reader = async move {
        let mut got = Vec::with_capacity(down + 8);
        r.read_to_end(&mut got).await?;
        Ok::<_, std::io::Error>(got)
    };
    let (_w, got) = tokio::try_join!(writer, reader).expect("transfer I/O");
    assert_eq!(
        got.len(),
        down + 8,
        "bytes received from the backend (payload + digest)"
    );
    let mut want = Digest::default();
    want.update(&stream_bytes(seed, down));
    let mut have = Digest::default();
    have.update(&got[..down]);
    assert!(
        have.value() == want.value(),
        "download of {down} bytes corrupted"
    );
    let echoed = u64::from_le_bytes(got[down..].try_into().unwrap());
    assert_eq!(
        echoed,
        sent_digest.value(),
        "upload of {up} bytes corrupted"
    );
}

/// Connects and reads the backend's tag line.
pub async fn tag_of(addr: SocketAddr) -> std::io::Result<(String, TcpStream)> {
    let mut s = TcpStream::connect(addr).await?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before tag",
            ));
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    Ok((String::from_utf8_lossy(&line).into_owned(), s))
}
