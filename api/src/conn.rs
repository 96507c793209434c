//! Accepting connections: the PROXY protocol header, then HTTP/1.1.
//!
//! The balancer forwards TCP, so the API's peer is the balancer; the client's
//! address arrives in a PROXY protocol header (v1 text or v2 binary) that
//! precedes the HTTP bytes. We read that header ourselves, with a short
//! timeout, before hyper sees the stream; whatever we read past it is handed
//! back to hyper first through [`Prefixed`].
//!
//! In `optional` mode a direct connection works too. The two headers differ
//! from HTTP within their first six bytes (`"PROXY "` and the v2 signature
//! `\r\n\r\n\0\r\n...`; no HTTP method starts with either), so we read until
//! the bytes can only be one or the other and never block a direct client
//! that sent a short request.
//!
//! A header is believed only from a trusted peer (`proxy_protocol_from`,
//! HAProxy's `accept-proxy` limited by `src`): anyone else who reaches the
//! replica directly could otherwise write any client address into the
//! request log and the rate limiter's view. From an untrusted peer, a
//! connection that starts like a header is closed as soon as its first six
//! bytes say so (`required` closes at once); a plain HTTP request from it
//! is served in `optional` mode, under the peer's own address.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tandem_proxy_protocol::{self as proxy_protocol, V2_SIGNATURE};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::ProxyProtocol;

/// Largest header read (v2 with TLVs may exceed v1's 107 bytes).
const MAX_HEADER: usize = 4096;

/// Why a connection was closed before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The header did not arrive in time.
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    /// `required` mode and the bytes are not a header.
    #[error("connection without the required PROXY header")]
    Missing,
    /// A header, or `required` mode, from a peer not in `proxy_protocol_from`.
    #[error("PROXY header from a peer not in proxy_protocol_from")]
    Untrusted,
    /// A malformed header.
    #[error("bad PROXY header: {0}")]
    Bad(String),
    /// Reading failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

const V1_PREFIX: &[u8] = b"PROXY ";

/// Could `buf` still grow into a PROXY header?
fn maybe_header(buf: &[u8]) -> bool {
    let v1 = &V1_PREFIX[..buf.len().min(V1_PREFIX.len())];
    let v2 = &V2_SIGNATURE[..buf.len().min(V2_SIGNATURE.len())];
    buf.starts_with(v1) || buf.starts_with(v2)
}

impl AcceptError {
    /// The `reason` label of `tandem_api_proxy_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AcceptError::Timeout(_) => "timeout",
            AcceptError::Missing => "missing",
            AcceptError::Untrusted => "untrusted",
            AcceptError::Bad(_) => "bad",
            AcceptError::Io(_) => "io",
        }
    }
}

/// Reads the PROXY header according to `mode`, believing one only if
/// `trusted` (the peer is in `proxy_protocol_from`). Returns the client
/// address (the header's source, else `peer`) and the bytes read past the
/// header.
pub async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    (mode, trusted): (ProxyProtocol, bool),
    timeout: Duration,
) -> Result<(SocketAddr, Vec<u8>), AcceptError> {
    match (mode, trusted) {
        (ProxyProtocol::Off, _) => return Ok((peer, Vec::new())),
        (ProxyProtocol::Required, false) => return Err(AcceptError::Untrusted),
        _ => {}
    }
    let work = async {
        let mut buf = Vec::with_capacity(256);
        loop {
            if !buf.is_empty() && !maybe_header(&buf) {
                return if mode == ProxyProtocol::Optional {
                    Ok((peer, buf))
                } else {
                    Err(AcceptError::Missing)
                };
            }
            let complete_prefix = buf.len() >= V1_PREFIX.len();
            // Six bytes that are still a header's start are no HTTP method.
            if complete_prefix && !trusted {
                return Err(AcceptError::Untrusted);
            }
            if complete_prefix {
                match proxy_protocol::decode(&buf) {
                    Ok(Some((h, n))) => {
                        // LOCAL (health checks from the balancer itself) or
                        // UNKNOWN family: the peer is the client.
                        let client = h.src.unwrap_or(peer);
                        return Ok((client, buf.split_off(n)));
                    }
                    Ok(None) => {}
                    Err(e) => return Err(AcceptError::Bad(e.to_string())),
                }
            }
            if buf.len() >= MAX_HEADER {
                return Err(AcceptError::Bad("header too long".into()));
            }
            let mut chunk = [0u8; 512];
            let want = chunk.len().min(MAX_HEADER - buf.len());
            let n = stream.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(AcceptError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| AcceptError::Timeout(timeout))?
}

/// A stream that yields `prefix` before reading from `inner`.
pub struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Prefixed {
    /// Wraps `inner`, replaying `prefix` first.
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Prefixed {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let pos = self.pos;
            buf.put_slice(&self.prefix[pos..pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn accept_with(
        sent: &[u8],
        mode: ProxyProtocol,
    ) -> Result<(SocketAddr, Vec<u8>), AcceptError> {
        accept_from(sent, (mode, true)).await
    }

    async fn accept_from(
        sent: &[u8],
        mode: (ProxyProtocol, bool),
    ) -> Result<(SocketAddr, Vec<u8>), AcceptError> {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        c.write_all(sent).await.unwrap();
        let (mut s, peer) = l.accept().await.unwrap();
        read_header(&mut s, peer, mode, Duration::from_secs(2)).await
    }

    /// The client every header below names.
    const SRC: &str = "203.0.113.7:5555";

    /// A v1 and a v2 header naming [`SRC`], each followed by a request line.
    fn headed_requests() -> [Vec<u8>; 2] {
        let src: SocketAddr = SRC.parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:80".parse().unwrap();
        [
            proxy_protocol::encode_v1(src, dst),
            proxy_protocol::encode_v2(src, dst),
        ]
        .map(|mut sent| {
            sent.extend_from_slice(b"GET / HTTP/1.1\r\n");
            sent
        })
    }

    #[tokio::test]
    async fn v1_v2_and_direct() {
        let src: SocketAddr = SRC.parse().unwrap();
        for sent in headed_requests() {
            let (client, rest) = accept_with(&sent, ProxyProtocol::Required).await.unwrap();
            assert_eq!(client, src);
            assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        }
        // POST starts with 'P' like PROXY: still a direct connection.
        let (client, rest) = accept_with(b"POST /v1/jobs HTTP/1.1\r\n", ProxyProtocol::Optional)
            .await
            .unwrap();
        assert_eq!(client.ip().to_string(), "127.0.0.1");
        assert_eq!(rest, b"POST /v1/jobs HTTP/1.1\r\n");
        assert!(matches!(
            accept_with(b"GET / HTTP/1.1\r\n", ProxyProtocol::Required).await,
            Err(AcceptError::Missing)
        ));
        assert!(matches!(
            accept_with(b"PROXY BOGUS\r\n", ProxyProtocol::Optional).await,
            Err(AcceptError::Bad(_))
        ));
    }

    #[tokio::test]
    async fn silence_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (mut s, peer) = l.accept().await.unwrap();
        let mode = (ProxyProtocol::Optional, true);
        let r = read_header(&mut s, peer, mode, Duration::from_millis(50)).await;
        assert!(matches!(r, Err(AcceptError::Timeout(_))));
    }

    /// A peer outside `proxy_protocol_from`: no header of its is believed,
    /// whatever it claims; its plain requests are its own.
    #[tokio::test]
    async fn an_untrusted_peer_cannot_name_the_client() {
        use ProxyProtocol::{Optional, Required};
        let src: SocketAddr = SRC.parse().unwrap();
        for sent in headed_requests() {
            for mode in [Optional, Required] {
                let r = accept_from(&sent, (mode, false)).await;
                assert!(matches!(r, Err(AcceptError::Untrusted)), "{mode:?}: {r:?}");
                assert_eq!(r.unwrap_err().reason(), "untrusted");
            }
            // The same bytes from a trusted peer are believed.
            let (client, _) = accept_from(&sent, (Optional, true)).await.unwrap();
            assert_eq!(client, src);
        }
        let (client, rest) = accept_from(b"GET / HTTP/1.1\r\n", (Optional, false))
            .await
            .unwrap();
        assert_eq!(client.ip().to_string(), "127.0.0.1");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        assert!(matches!(
            accept_from(b"GET / HTTP/1.1\r\n", (Required, false)).await,
            Err(AcceptError::Untrusted)
        ));
    }
}
