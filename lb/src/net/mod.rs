//! The network edge for VRRP: everything that talks to the kernel.
//!
//! - [`netlink`]: interface lookup, link state, VIP add/remove over rtnetlink
//!   (never by running `ip`).
//! - [`vrrp_socket`]: the raw IP protocol 112 socket, multicast or unicast.
//! - [`garp`]: gratuitous ARP through a packet socket.
//!
//! These modules only move bytes; the decisions are the pure state machine's
//! (`crate::vrrp::machine`).

pub mod garp;
pub mod netlink;
pub mod vrrp_socket;
