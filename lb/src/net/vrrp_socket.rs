//! The raw socket VRRP speaks over: IPv4 protocol 112.
//!
//! Kernel behaviour relied upon:
//! - A raw IPv4 socket without IP_HDRINCL receives whole IP packets (header
//!   included) and sends a payload that the kernel wraps in a header; the
//!   header's TTL comes from IP_TTL (unicast) or IP_MULTICAST_TTL (multicast):
//!   both are set to 255 as RFC 5798 §5.1.1.3 requires, and TOS to 0xc0
//!   (CS6, internetwork control) as keepalived sends.
//! - SO_BINDTODEVICE pins both directions to the VRRP interface, and
//!   IP_MULTICAST_IF names it for multicast sends, so 224.0.0.18 needs no
//!   multicast route. The group is joined on that interface by index.
//! - IP_MULTICAST_LOOP is off: we must not hear our own adverts.
//! - The source address must be the primary address, which the v3
//!   checksum's pseudo-header covers. For multicast, IP_MULTICAST_IF given
//!   that *address* makes the kernel use it as the source (`mc_addr`). The
//!   socket is NOT bound to it: a raw socket bound to a local address only
//!   receives packets whose destination is that address (`raw_v4_match`
//!   compares the bound address with the packet's daddr), so it would never
//!   see adverts to 224.0.0.18. For unicast the socket is bound, which both
//!   picks the source and keeps only adverts addressed to us.

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// IANA protocol number of VRRP.
pub const IPPROTO_VRRP: i32 = 112;
/// RFC 5798 §5.1.1.2: the IPv4 multicast group of VRRP.
pub const VRRP_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
}

impl VrrpSocket {
    /// Opens the socket on `ifname` (index `ifindex`), sending from `src`.
    /// With `multicast`, joins 224.0.0.18 on that interface.
    pub fn open(
        ifname: &str,
        ifindex: u32,
        src: Ipv4Addr,
        multicast: bool,
    ) -> io::Result<VrrpSocket> {
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(IPPROTO_VRRP)),
        )?;
        s.bind_device(Some(ifname.as_bytes()))?;
        if !multicast {
            s.bind(&SocketAddr::V4(SocketAddrV4::new(src, 0)).into())?;
        }
        s.set_ttl_v4(255)?;
        s.set_tos_v4(0xc0)?;
        if multicast {
            s.set_multicast_ttl_v4(255)?;
            s.set_multicast_loop_v4(false)?;
            s.set_multicast_if_v4(&src)?;
            s.join_multicast_v4_n(&VRRP_GROUP, &InterfaceIndexOrAddress::Index(ifindex))?;
        }
        // SAFETY: `s` is an open socket that the AsyncFd owns from here on;
        // socket2::Socket always returns the same descriptor from as_raw_fd
        // and closes it only on drop, after the registration is gone.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register(s) }.map_err(|e| e.into_parts().1)?;
        Ok(VrrpSocket { fd })
    }

    /// Receives one whole IPv4 packet (header included).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            // socket2's `Read` for `&Socket` is recv(2) into an initialised
            // buffer, with no cast to `MaybeUninit` on our side.
            let r = guard.try_io(|s| {
                let mut socket: &Socket = s.get_ref();
                socket.read(buf)
            });
            match r {
                Ok(res) => return res,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one VRRP message (the kernel adds the IPv4 header) to `dst`.
    pub async fn send(&self, payload: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        let to: socket2::SockAddr = SocketAddr::V4(SocketAddrV4::new(dst, 0)).into();
        self.fd
            .async_io(Interest::WRITABLE, |s| s.send_to(payload, &to).map(|_| ()))
            .await
    }
}
