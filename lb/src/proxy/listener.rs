//! Listening sockets.
//!
//! Kernel behaviour relied upon:
//! - `SO_REUSEADDR` lets a restarted balancer bind while old connections on
//!   the port sit in TIME_WAIT.
//! - `IP_FREEBIND` (`IPV6_FREEBIND` for v6) lets a bind succeed on an address
//!   not (yet) assigned to any interface: the backup node listens on the VIP
//!   before VRRP moves it here, so takeover needs no bind at the worst moment.
//! - `TCP_NODELAY` set on the listening socket is inherited by every socket
//!   accept(2) returns (the accepted socket is a clone of the listener's), so
//!   clients get it without a setsockopt each (see `conn`).
//! - The backlog is the kernel's accept queue; it is capped by
//!   `net.core.somaxconn`. Connection limits are enforced after accept,
//!   where an excess connection can be refused at once and counted.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Accept-queue length asked of the kernel (capped by somaxconn).
const BACKLOG: i32 = 4096;

/// Binds a listening TCP socket on `addr` with SO_REUSEADDR and IP_FREEBIND.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let domain = Domain::for_address(addr);
    let sock = Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_tcp_nodelay(true)?;
    match addr {
        SocketAddr::V4(_) => sock.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            sock.set_freebind_v6(true)?;
            sock.set_only_v6(true)?;
        }
    }
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    TcpListener::from_std(sock.into())
}

/// Raises the soft open-file limit to the hard limit and returns it.
/// Every proxied connection costs two descriptors (plus pipes while data
/// flows), so the default soft limit of 1024 would cap us near 500 clients.
pub fn raise_nofile_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn freebind_allows_an_address_this_host_does_not_have() {
        // 198.18.0.0/15 is reserved for benchmarking; no interface here has it,
        // so a plain bind would fail with EADDRNOTAVAIL. Nothing is sent.
        let addr: SocketAddr = "198.18.255.254:0".parse().unwrap();
        let l = bind(addr).expect("IP_FREEBIND bind on an unassigned address");
        assert_eq!(l.local_addr().unwrap().ip(), addr.ip());
    }

    #[tokio::test]
    async fn accepted_sockets_inherit_tcp_nodelay() {
        // conn relies on this instead of a setsockopt per client.
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let _c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        let (s, _) = l.accept().await.unwrap();
        assert!(
            s.nodelay().unwrap(),
            "TCP_NODELAY inherited from the listener"
        );
    }

    #[tokio::test]
    async fn rebinding_the_same_port_after_close_works() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        bind(addr).expect("SO_REUSEADDR rebind");
    }
}
