//! The end-to-end test bed: host namespaces on one bridge, plus one veth
//! from the test's own (root) namespace onto that bridge, so the test
//! process itself is the client and can time a connect to the VIP exactly.
//!
//! Network rules of the project's tests: addresses only from 198.18.0.0/15;
//! a /24 and names unique to this bed (the /24 is also checked against the
//! root namespace's routes, since this bed adds one there); no default route
//! anywhere (the root namespace gains only the connected route of its /24,
//! so nothing of the bed can leave it); everything removed on drop, on
//! success and on panic alike.
//!
//! Written apart from `netns.rs` (shared with the VRRP tests) because of the
//! root attachment, reusing its command runners and root check; the
//! namespace layout is the same: a "switch" namespace
//! holds bridge `br0`, each host gets `eth0` whose veth peer is a bridge
//! port.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

pub use crate::support::netns::require_root;
use crate::support::netns::{Janitor, must, run};

pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
}

pub struct Bed {
    /// Short unique tag: names of namespaces and root interfaces.
    tag: String,
    switch_ns: String,
    /// 198.19.X.0/24.
    net: [u8; 3],
    pub hosts: Vec<Host>,
    /// The root namespace's end of the client veth, once attached.
    root_if: Option<String>,
    /// Kills the processes in this bed's namespaces, deletes them and the
    /// root veth, and removes the scratch paths, if the test dies without
    /// unwinding (see [`Janitor`]).
    janitor: Option<Janitor>,
}

impl Bed {
    /// A bridge in its own namespace and a /24 no route of the root
    /// namespace touches.
    pub fn new() -> Bed {
        let pid = std::process::id();
        let routes =
            String::from_utf8_lossy(&run(&["ip", "-4", "route", "show", "table", "all"]).stdout)
                .into_owned();
        // 198.19.0.0/16 here; the shared netns helper mostly picks from
        // 198.18/16 and never adds routes to the root namespace anyway.
        let third = (0..256u32)
            .map(|i| ((pid.wrapping_mul(7919) + i) % 256) as u8)
            .find(|x| !routes.contains(&format!("198.19.{x}.")))
            .expect("a free /24 in 198.19.0.0/16");
        let tag = format!("e{}", pid % 1_000_000);
        let switch_ns = format!("{tag}-sw");
        let _ = run(&["ip", "netns", "del", &switch_ns]);
        must(&["ip", "netns", "add", &switch_ns]);
        let janitor = Janitor::spawn(&tag, &format!("ip link del {tag}0a 2>/dev/null"));
        let bed = Bed {
            tag,
            switch_ns,
            net: [198, 19, third],
            hosts: Vec::new(),
            root_if: None,
            janitor,
        };
        bed.sw(&["ip", "link", "add", "br0", "type", "bridge"]);
        // No STP, no forwarding delay: a port forwards as soon as it is up.
        bed.sw(&[
            "ip",
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        bed.sw(&["ip", "link", "set", "br0", "up"]);
        bed
    }

    fn sw(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.switch_ns];
        full.extend_from_slice(args);
        must(&full);
    }

    /// The address .`octet` of this bed's /24.
    pub fn addr(&self, octet: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], octet)
    }

    /// A veth pair `{tag}{idx}a` / `{tag}{idx}b` in the root namespace
    /// (names of at most 15 bytes); `b` is moved to the switch and enslaved.
    fn pair(&self, idx: usize) -> (String, String) {
        let a = format!("{}{idx}a", self.tag);
        let b = format!("{}{idx}b", self.tag);
        let _ = run(&["ip", "link", "del", &a]);
        must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        must(&["ip", "link", "set", &b, "netns", &self.switch_ns]);
        self.sw(&["ip", "link", "set", &b, "master", "br0"]);
        self.sw(&["ip", "link", "set", &b, "up"]);
        (a, b)
    }

    /// Adds host `name` with `eth0` at .`octet`/24; returns its address.
    pub fn host(&mut self, name: &str, octet: u8) -> Ipv4Addr {
        let ns = format!("{}-{name}", self.tag);
        let _ = run(&["ip", "netns", "del", &ns]);
        must(&["ip", "netns", "add", &ns]);
        let ip = self.addr(octet);
        // Registered before it is configured, so Drop removes it whatever fails next.
        self.hosts.push(Host {
            name: name.to_string(),
            ns: ns.clone(),
            ip,
        });
        let (a, _) = self.pair(self.hosts.len());
        must(&["ip", "link", "set", &a, "netns", &ns]);
        let ex = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", ns.as_str()];
            full.extend_from_slice(args);
            must(&full);
        };
        ex(&["ip", "link", "set", &a, "name", "eth0"]);
        ex(&["ip", "link", "set", "lo", "up"]);
        ex(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ex(&["ip", "link", "set", "eth0", "up"]);
        ip
    }

    /// Puts the test process on the bridge at .`octet`/24: only the
    /// connected route of the /24 is added, no default route.
    pub fn attach_root(&mut self, octet: u8) -> Ipv4Addr {
        let (a, _) = self.pair(0);
        self.root_if = Some(a.clone());
        let ip = self.addr(octet);
        must(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &a]);
        must(&["ip", "link", "set", &a, "up"]);
        ip
    }

    /// Has the janitor remove `path` (recursively) if this process dies
    /// without dropping the bed. No spaces in `path`.
    pub fn remove_on_crash(&mut self, path: &Path) {
        if let Some(j) = self.janitor.as_mut() {
            j.remove_on_crash(path);
        }
    }

    pub fn get(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// `program` to be run inside host `name`'s namespace.
    pub fn cmd(&self, name: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.get(name).ns, program]);
        c
    }

    /// Whether `ip` is configured on host `name`'s eth0.
    pub fn has_addr(&self, name: &str, ip: Ipv4Addr) -> bool {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.get(name).ns,
            "ip",
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/"))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Deleting the root end destroys its peer; deleting a namespace
        // destroys the veths inside it (and so their peers).
        if let Some(a) = &self.root_if {
            let _ = run(&["ip", "link", "del", a]);
        }
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.switch_ns]);
        drop(self.janitor.take());
    }
}
