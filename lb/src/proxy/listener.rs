//! Listening sockets: one per data-plane worker for every address.
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
//! - `SO_REUSEPORT` (socket(7)): sockets of one user that all set it before
//!   bind(2) may bind the same address; the kernel then puts each new
//!   connection in the accept queue of one of them, by a hash of its
//!   addresses and ports. With `workers = N` every address gets a group of N
//!   such sockets, one per worker thread (see `workers`), so no accept is
//!   shared between threads. A connection already queued on one socket of
//!   the group is lost if that socket closes, so a group lives and dies
//!   whole: reload keeps it or closes it, never part of it.
//! - The same option would let our bind join a group that another process
//!   of the same user already listens with (a second balancer started by
//!   mistake), and share its clients in silence. So before a group is bound
//!   on a fixed port, a plain bind without it must succeed: a listener
//!   already there makes it fail with `EADDRINUSE`, as one socket always
//!   did. (TIME_WAIT sockets do not: SO_REUSEADDR.)

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// Accept-queue length asked of the kernel (capped by somaxconn).
const BACKLOG: i32 = 4096;

/// Binds a listening TCP socket on `addr` with SO_REUSEADDR and IP_FREEBIND.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::from_std(socket(addr, false, true)?.into())
}

/// Binds the `n` listening sockets of `addr`, one per worker thread: one
/// plain socket for `n == 1`, else a `SO_REUSEPORT` group (see the module
/// doc). Port 0 is resolved by the first socket and the others take the
/// same port. The sockets are not yet registered with any runtime.
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    if n <= 1 {
        return Ok(vec![socket(addr, false, true)?.into()]);
    }
    if addr.port() != 0 {
        // Fails with EADDRINUSE if anything listens there already.
        drop(socket(addr, false, false)?);
    }
    let first = socket(addr, true, true)?;
    let bound = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listening socket has no IP address"))?;
    let mut group = vec![first.into()];
    for _ in 1..n {
        group.push(socket(bound, true, true)?.into());
    }
    Ok(group)
}

/// A non-blocking TCP socket bound to `addr` (SO_REUSEADDR, IP_FREEBIND,
/// TCP_NODELAY for its clients), listening if `listen`.
fn socket(addr: SocketAddr, reuse_port: bool, listen: bool) -> io::Result<Socket> {
    let domain = Domain::for_address(addr);
    let sock = Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.set_tcp_nodelay(true)?;
    match addr {
        SocketAddr::V4(_) => sock.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            sock.set_freebind_v6(true)?;
            sock.set_only_v6(true)?;
        }
    }
    sock.bind(&addr.into())?;
    if listen {
        sock.listen(BACKLOG)?;
    }
    Ok(sock)
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

    #[test]
    fn a_group_shares_one_port_and_every_socket_gets_connections() {
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = group[0].local_addr().unwrap();
        assert_eq!(group[1].local_addr().unwrap(), addr);
        for l in &group {
            l.set_nonblocking(true).unwrap();
        }
        // The kernel hashes each connection's ports over the group: with
        // fresh client ports, both sockets receive some within a few dozen.
        let mut got = [0usize; 2];
        let mut clients = Vec::new();
        for _ in 0..200 {
            clients.push(std::net::TcpStream::connect(addr).unwrap());
            for (i, l) in group.iter().enumerate() {
                while l.accept().is_ok() {
                    got[i] += 1;
                }
            }
            if got[0] > 0 && got[1] > 0 {
                break;
            }
        }
        assert!(got[0] > 0 && got[1] > 0, "accepted per socket: {got:?}");
    }

    #[test]
    fn a_group_will_not_join_a_port_someone_listens_on() {
        // A second balancer on the same address must fail as it always did,
        // not share the first one's clients through SO_REUSEPORT, also when
        // the first one listens with a group itself.
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let e = bind_group(plain.local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let e = bind_group(group[0].local_addr().unwrap(), 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[tokio::test]
    async fn rebinding_the_same_port_after_close_works() {
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        bind(addr).expect("SO_REUSEADDR rebind");
    }
}
