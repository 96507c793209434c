//! Gratuitous ARP (RFC 826 packet format; RFC 5227 §3 and RFC 5798 §6.4.2
//! for its use): on becoming master, tell the segment that each VIP now
//! lives at our MAC so switches and neighbours update at once.
//!
//! We send what keepalived sends: an ARP *request* to the broadcast address,
//! with sender and target protocol address both the VIP, sender hardware
//! address our MAC and target hardware address ff:ff:ff:ff:ff:ff (RFC 5227
//! suggests zero; keepalived sends all-ones and we match it byte for byte).
//! The frame is laid out with `pnet_packet`'s Ethernet and ARP types.
//!
//! Kernel behaviour relied upon (packet(7)):
//! - An `AF_PACKET`/`SOCK_RAW` socket sends the frame as given, Ethernet
//!   header included, on the interface named by the `sockaddr_ll` of each
//!   `sendto`, so it needs no route and no ARP table entry.
//! - Opened with protocol 0 and never bound, the socket receives nothing:
//!   we only send, so no ARP frame the host sees is queued on it.

use std::io;
use std::net::Ipv4Addr;

use pnet_base::MacAddr;
use pnet_packet::MutablePacket;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use socket2::{Domain, SockAddr, SockAddrStorage, Socket, Type};

/// Ethernet header (14) + ARP for IPv4 over Ethernet (28).
const FRAME_LEN: usize = 42;

/// Builds the 42-byte Ethernet frame of a gratuitous ARP for `vip`.
pub fn frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    let mac = MacAddr::from(mac);
    // Cannot fail: the buffer is exactly one Ethernet header plus one ARP
    // packet, the minimum sizes both constructors check for.
    let mut eth = MutableEthernetPacket::new(&mut f).expect("42 bytes hold an Ethernet header");
    eth.set_destination(MacAddr::broadcast());
    eth.set_source(mac);
    eth.set_ethertype(EtherTypes::Arp);
    let mut arp = MutableArpPacket::new(eth.payload_mut()).expect("28 bytes hold an ARP packet");
    arp.set_hardware_type(ArpHardwareTypes::Ethernet);
    arp.set_protocol_type(EtherTypes::Ipv4);
    arp.set_hw_addr_len(6);
    arp.set_proto_addr_len(4);
    arp.set_operation(ArpOperations::Request);
    arp.set_sender_hw_addr(mac);
    arp.set_sender_proto_addr(vip);
    arp.set_target_hw_addr(MacAddr::broadcast()); // as keepalived
    arp.set_target_proto_addr(vip);
    f
}

/// A packet socket that sends ARP frames out of one interface.
pub struct GarpSender {
    socket: Socket,
    /// Where every frame goes: the interface, protocol ARP, broadcast.
    to: SockAddr,
}

impl GarpSender {
    pub fn open(ifindex: u32) -> io::Result<GarpSender> {
        let socket = Socket::new(Domain::PACKET, Type::RAW.nonblocking().cloexec(), None)?;
        let to = link_broadcast(ifindex)?;
        Ok(GarpSender { socket, to })
    }

    /// Sends one gratuitous ARP for `vip` from `mac`. Never blocks: one
    /// small frame to a non-blocking packet socket's send queue.
    pub fn send(&self, mac: [u8; 6], vip: Ipv4Addr) -> io::Result<()> {
        self.socket.send_to(&frame(mac, vip), &self.to).map(|_| ())
    }
}

/// The `sockaddr_ll` of an ARP frame broadcast on interface `ifindex`.
fn link_broadcast(ifindex: u32) -> io::Result<SockAddr> {
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as libc::sa_family_t,
        sll_protocol: EtherTypes::Arp.0.to_be(),
        sll_ifindex: libc::c_int::try_from(ifindex).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface index too large")
        })?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 6,
        sll_addr: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0],
    };
    let mut storage = SockAddrStorage::zeroed();
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // socket2 builds only IP and Unix addresses safely; a link-layer one has
    // to be written into its storage by hand.
    // SAFETY: `sockaddr_ll` is a plain C socket address, smaller than and
    // aligned within `sockaddr_storage` (which holds any address family);
    // the storage is fully initialised with `sll` before `SockAddr::new`
    // reads `len` bytes of it, and `sll_family` says what it holds.
    #[allow(unsafe_code)]
    let to = unsafe {
        *storage.view_as::<libc::sockaddr_ll>() = sll;
        SockAddr::new(storage, len)
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first gratuitous ARP keepalived sent in the captured vectors
    /// (vrrp-v2-adv1#2: lb1 02:00:c6:12:02:0b for VIP 198.18.2.100), byte
    /// for byte. The capture has no Ethernet padding; the NIC adds it.
    #[test]
    fn frame_matches_keepalived_capture() {
        let want =
            "ffffffffffff0200c612020b080600010800060400010200c612020bc6120264ffffffffffffc6120264";
        let f = frame(
            [0x02, 0x00, 0xc6, 0x12, 0x02, 0x0b],
            Ipv4Addr::new(198, 18, 2, 100),
        );
        let hex: String = f.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want.replace(' ', ""));
    }
}
