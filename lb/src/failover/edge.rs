//! What an instance touches outside its process, behind two small traits so
//! that the event loop ([`super::instance`]) runs unchanged against the
//! kernel ([`Kernel`]) and, in tests, against a simulated segment under
//! paused tokio time (no root, no sleeping, deterministic task order).
//!
//! - [`Opener`]: looks the interface up, removes VIPs a crashed predecessor
//!   left on it (issue 4 item 7: before anything else), opens the sockets,
//!   and watches the links; yields an [`Opened`].
//! - [`Edge`]: the opened instance's I/O: receive and send adverts, add and
//!   remove VIPs, send one gratuitous ARP.

use std::future::Future;
use std::io;
use std::net::Ipv4Addr;

use tokio::sync::watch;

use super::FailoverError;
use crate::config::{TrackTarget, VrrpConfig};
use crate::net::garp::GarpSender;
use crate::net::netlink::{Netlink, watch_link};
use crate::net::vrrp_socket::VrrpSocket;

/// One instance's I/O.
pub trait Edge: Send + Sync + 'static {
    /// The next IP packet (header included) for protocol 112.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
    /// Sends one VRRP payload to `dst` (the group or a unicast peer).
    fn send(&self, payload: &[u8], dst: Ipv4Addr) -> impl Future<Output = io::Result<()>> + Send;
    fn add_vip(&self, ip: Ipv4Addr, prefix: u8) -> impl Future<Output = io::Result<()>> + Send;
    fn del_vip(&self, ip: Ipv4Addr, prefix: u8) -> impl Future<Output = io::Result<()>> + Send;
    /// Forgets the interface's learned neighbours (link back after a cut;
    /// see `Netlink::flush_neighbours`). Returns how many went.
    fn flush_neighbours(&self) -> impl Future<Output = io::Result<usize>> + Send;
    /// Whether [`Edge::garp`] can send at all (a packet socket and a MAC).
    fn can_garp(&self) -> bool;
    /// One gratuitous ARP for `vip` from this interface.
    fn garp(&self, vip: Ipv4Addr) -> io::Result<()>;
}

/// An instance's kernel resources, open.
pub struct Opened<E> {
    pub edge: E,
    /// Our primary address on the VRRP interface (advert source, tie-break).
    pub primary: Ipv4Addr,
    /// Carrier of the VRRP interface.
    pub link: watch::Receiver<bool>,
    /// One receiver per `track` entry that is an interface, by track index.
    pub iface_tracks: Vec<(usize, watch::Receiver<bool>)>,
}

/// Opens instances.
pub trait Opener: Send + Sync + 'static {
    type Edge: Edge;
    fn open(
        &self,
        cfg: &VrrpConfig,
    ) -> impl Future<Output = Result<Opened<Self::Edge>, FailoverError>> + Send;
}

/// The real thing: netlink, a raw IP socket, a packet socket.
pub struct Kernel;

pub struct KernelEdge {
    nl: Netlink,
    ifindex: u32,
    sock: VrrpSocket,
    garp: Option<(GarpSender, [u8; 6])>,
}

impl Opener for Kernel {
    type Edge = KernelEdge;

    async fn open(&self, cfg: &VrrpConfig) -> Result<Opened<KernelEdge>, FailoverError> {
        let name = cfg.name.clone();
        let iface_err = |source: io::Error| FailoverError::Interface {
            instance: name.clone(),
            interface: cfg.interface.clone(),
            source,
        };
        let nl = Netlink::connect().map_err(&iface_err)?;
        let link = nl.link(&cfg.interface).await.map_err(&iface_err)?;
        let addrs = nl.ipv4_addrs(link.index).await.map_err(&iface_err)?;
        let is_vip = |ip: &Ipv4Addr| cfg.virtual_ips.iter().any(|(v, _)| v == ip);
        let primary = match cfg.unicast_src_ip {
            Some(ip) => ip,
            None => addrs
                .iter()
                .map(|(ip, _)| *ip)
                .find(|ip| !is_vip(ip))
                .ok_or_else(|| FailoverError::NoAddress {
                    instance: name.clone(),
                    interface: cfg.interface.clone(),
                })?,
        };
        remove_stale_vips(&nl, link.index, &addrs, cfg)
            .await
            .map_err(&iface_err)?;
        let sock = VrrpSocket::open(&cfg.interface, link.index, primary, !cfg.is_unicast())
            .map_err(|source| FailoverError::Socket {
                instance: name.clone(),
                source,
            })?;
        let garp = match (GarpSender::open(link.index), link.mac) {
            (Ok(g), Some(mac)) => Some((g, mac)),
            (Ok(_), None) => None,
            (Err(e), _) => {
                tracing::warn!(instance = %name, error = %e, "no gratuitous ARP (packet socket failed)");
                None
            }
        };
        let link_rx = watch_link(&cfg.interface).await.map_err(&iface_err)?;
        let mut iface_tracks = Vec::new();
        for (i, t) in cfg.track.iter().enumerate() {
            if let TrackTarget::Interface(ifname) = &t.target {
                let rx = watch_link(ifname)
                    .await
                    .map_err(|source| FailoverError::Interface {
                        instance: name.clone(),
                        interface: ifname.clone(),
                        source,
                    })?;
                iface_tracks.push((i, rx));
            }
        }
        Ok(Opened {
            edge: KernelEdge {
                nl,
                ifindex: link.index,
                sock,
                garp,
            },
            primary,
            link: link_rx,
            iface_tracks,
        })
    }
}

impl Edge for KernelEdge {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf).await
    }

    async fn send(&self, payload: &[u8], dst: Ipv4Addr) -> io::Result<()> {
        self.sock.send(payload, dst).await
    }

    async fn add_vip(&self, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.nl.add_addr(self.ifindex, ip, prefix).await
    }

    async fn del_vip(&self, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.nl.del_addr(self.ifindex, ip, prefix).await
    }

    async fn flush_neighbours(&self) -> io::Result<usize> {
        self.nl.flush_neighbours(self.ifindex).await
    }

    fn can_garp(&self) -> bool {
        self.garp.is_some()
    }

    fn garp(&self, vip: Ipv4Addr) -> io::Result<()> {
        match &self.garp {
            Some((sender, mac)) => sender.send(*mac, vip),
            None => Ok(()),
        }
    }
}

/// Removes every VIP of `cfg` that `addrs` (the interface's IPv4 addresses
/// now) shows on interface `ifindex`: a node restarted after a crash must
/// not answer for a VIP before VRRP says it may (issue 4 item 7). Logs each
/// one removed and each that cannot be; returns the first failure.
pub(super) async fn remove_stale_vips(
    nl: &Netlink,
    ifindex: u32,
    addrs: &[(Ipv4Addr, u8)],
    cfg: &VrrpConfig,
) -> io::Result<()> {
    let mut first_err = None;
    for (ip, prefix) in &cfg.virtual_ips {
        if !addrs.iter().any(|(a, _)| a == ip) {
            continue;
        }
        match nl.del_addr(ifindex, *ip, *prefix).await {
            Ok(()) => tracing::warn!(instance = %cfg.name, interface = %cfg.interface, vip = %ip,
                "removed a VIP left on the interface by a previous run"),
            Err(e) => {
                tracing::error!(instance = %cfg.name, vip = %ip, error = %e,
                    "cannot remove a VIP left by a previous run");
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}
