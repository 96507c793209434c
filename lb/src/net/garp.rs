//! Gratuitous ARP (RFC 826 packet format; RFC 5227 §3 and RFC 5798 §6.4.2
//! for its use): on becoming master, tell the segment that each VIP now
//! lives at our MAC so switches and neighbours update at once.
//!
//! We send what keepalived sends: an ARP *request* to the broadcast address,
//! with sender and target protocol address both the VIP, sender hardware
//! address our MAC and target hardware address ff:ff:ff:ff:ff:ff (RFC 5227
//! suggests zero; keepalived sends all-ones and we match it byte for byte). It goes out through an
//! AF_PACKET socket bound to the interface, so it needs no route and no ARP
//! table entry.

use std::io;
use std::net::Ipv4Addr;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;

/// Builds the 42-byte Ethernet frame of a gratuitous ARP for `vip`.
pub fn frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]); // Ethernet destination: broadcast
    f[6..12].copy_from_slice(&mac); // Ethernet source
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // htype: Ethernet
    f[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes()); // ptype: IPv4
    f[18] = 6; // hlen
    f[19] = 4; // plen
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // op: request
    f[22..28].copy_from_slice(&mac); // sender hardware address
    f[28..32].copy_from_slice(&vip.octets()); // sender protocol address
    f[32..38].copy_from_slice(&[0xff; 6]); // target hardware address, as keepalived
    f[38..42].copy_from_slice(&vip.octets()); // target protocol address
    f
}

/// A packet socket bound to one interface for sending ARP frames.
pub struct GarpSender {
    fd: std::os::fd::OwnedFd,
    ifindex: u32,
}

impl GarpSender {
    pub fn open(ifindex: u32) -> io::Result<GarpSender> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2) call; the result is checked before use and
        // owned by OwnedFd from then on.
        #[allow(unsafe_code)]
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                (ETH_P_ARP).to_be() as libc::c_int,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        #[allow(unsafe_code)]
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        Ok(GarpSender { fd, ifindex })
    }

    /// Sends one gratuitous ARP for `vip` from `mac`. Non-blocking in
    /// practice: one small frame to a packet socket's send queue.
    pub fn send(&self, mac: [u8; 6], vip: Ipv4Addr) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let f = frame(mac, vip);
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        #[allow(unsafe_code)]
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ARP.to_be();
        sll.sll_ifindex = self.ifindex as i32;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: the buffer and address pointers are valid for the lengths
        // given, for the duration of the call.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                libc::MSG_DONTWAIT,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
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
