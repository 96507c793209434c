//! Test hosts as Linux network namespaces joined by a bridge: the test bed
//! of the VRRP, soak and end-to-end tests.
//!
//! The project's network rules for tests, which this module enforces:
//! - addresses only from 198.18.0.0/15 (RFC 2544 benchmarking space), one
//!   /24 per topology, chosen among those no route of the root namespace
//!   touches, so that a topology attached to the root namespace
//!   ([`TopologyBuilder::root`]) cannot shadow a route of the machine;
//! - namespace and interface names unique to the topology (the pid and a
//!   per-process counter), so tests and test processes run side by side;
//! - no default route anywhere: nothing of the bed can leave it (the root
//!   namespace, if attached, gains only the connected route of the /24);
//! - everything removed on every exit path: [`Topology`]'s `Drop` on
//!   success and on panic (also a panic half-way through building, since
//!   each host is registered before it is configured), and a [`Janitor`]
//!   process for the exits where no destructor runs (SIGKILL, a runner's
//!   SIGTERM to the test's process group).
//!
//! Layout: a "switch" namespace holds bridge `br0`; each host namespace
//! gets `eth0`, one end of a veth pair whose other end is a bridge port.
//! Cutting a host's link ([`Topology::set_link`]) downs the bridge port, so
//! the host sees carrier loss, as when a cable is pulled.
//!
//! ```no_run
//! use tandem_test_support::netns::Topology;
//! let t = Topology::builder().host("lb1", 11).host("cl", 50).build();
//! let out = t.exec("cl", &["ping", "-c1", &t.get("lb1").ip.to_string()]);
//! ```

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether this process may create namespaces. When not root it fails the
/// test under `CI=true` and otherwise prints a visible SKIPPED line;
/// returns false to skip.
pub fn require_root(test: &str) -> bool {
    // /proc/self belongs to the effective uid.
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return true;
    }
    let msg = format!("{test}: needs root to create network namespaces (run scripts/test as root)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    // Straight to the stderr handle: libtest captures eprintln! of a passing
    // test, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
    false
}

/// Runs a command (`ip ...`) and returns its output, whatever its status.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

/// Runs a command and fails the test, with its stderr, if it fails.
pub fn must(args: &[&str]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A shell in its own session that waits for EOF on its stdin (held here),
/// then kills every process in the namespaces named `{prefix}-*`, deletes
/// those namespaces, runs `extra` (more shell) and removes the paths it was
/// given. A topology's Drop cleans up itself and then drops the janitor,
/// which finds nothing left; the janitor covers the exits where no
/// destructor runs: the test process SIGKILLed, or SIGTERMed by a runner's
/// timeout (nextest's terminate-after), which signals the test's process
/// group (the janitor is not in it).
pub struct Janitor {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Janitor {
    /// None if `setsid` or `sh` cannot be run (the topology still cleans
    /// up on drop).
    pub fn spawn(prefix: &str, extra: &str) -> Option<Janitor> {
        let script = format!(
            "paths=''; while read -r p; do paths=\"$paths $p\"; done; \
             for ns in $(ip netns list | awk '{{print $1}}' | grep '^{prefix}-'); do \
               ip netns pids \"$ns\" | xargs -r kill -9; ip netns del \"$ns\"; done; \
             {extra}; [ -n \"$paths\" ] && rm -rf $paths; exit 0"
        );
        let mut child = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take();
        Some(Janitor { child, stdin })
    }

    /// Has the janitor remove `path` (recursively) if this process dies
    /// without dropping the topology. No spaces in `path`.
    pub fn remove_on_crash(&mut self, path: &Path) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{}", path.display());
        }
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        // EOF: the janitor runs its cleanup (nothing is left after a clean
        // drop; owners of the paths ignore a missing directory) and exits.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// One host of a topology.
pub struct Host {
    pub name: String,
    /// Its namespace.
    pub ns: String,
    /// Its address on `eth0` (a /24).
    pub ip: Ipv4Addr,
    /// Interface name inside the host namespace.
    pub ifname: String,
    /// The veth end on the bridge, in the switch namespace.
    pub port: String,
}

/// What [`Topology::builder`] will build: hosts, and optionally the test
/// process itself on the bridge.
#[derive(Default)]
#[must_use = "nothing is created until build()"]
pub struct TopologyBuilder {
    hosts: Vec<(String, u8)>,
    root: Option<u8>,
}

impl TopologyBuilder {
    /// A host `name` with `eth0` at .`octet`/24.
    pub fn host(mut self, name: &str, octet: u8) -> TopologyBuilder {
        self.hosts.push((name.to_owned(), octet));
        self
    }

    /// Puts the test process (the root namespace) on the bridge at
    /// .`octet`/24, so it can be the client itself and time a connect
    /// exactly. Only the connected route of the /24 is added there.
    pub fn root(mut self, octet: u8) -> TopologyBuilder {
        self.root = Some(octet);
        self
    }

    /// Creates the switch, then each host, then the root attachment. A
    /// failure panics, and what was created is removed by the unwinding.
    pub fn build(self) -> Topology {
        let mut t = Topology::empty();
        for (name, octet) in &self.hosts {
            t.host(name, *octet);
        }
        if let Some(octet) = self.root {
            t.attach_root(octet);
        }
        t
    }
}

/// Unique per topology within this process.
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running test bed; removed when dropped.
pub struct Topology {
    /// Every namespace and interface name starts with it.
    pub prefix: String,
    pub switch_ns: String,
    /// The /24: 198.18.X.0 or 198.19.X.0.
    pub net: [u8; 3],
    pub hosts: Vec<Host>,
    /// The root namespace's end of its veth, once attached, and its address.
    root: Option<(String, Ipv4Addr)>,
    /// Removes the namespaces (and the processes in them), the root veth
    /// and the scratch paths if the test dies without unwinding; dropped
    /// after them in [`Drop`].
    janitor: Option<Janitor>,
}

impl Topology {
    /// What to build: `Topology::builder().host("lb1", 11).build()`.
    pub fn builder() -> TopologyBuilder {
        TopologyBuilder::default()
    }

    /// The bridge in its own namespace, and this topology's /24.
    fn empty() -> Topology {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let prefix = format!("td{}x{}", pid % 100_000, seq);
        let net = free_subnet(pid.wrapping_mul(31).wrapping_add(seq));
        let switch_ns = format!("{prefix}-sw");
        // A leftover from a crashed run of the same pid is removed first.
        let _ = run(&["ip", "netns", "del", &switch_ns]);
        must(&["ip", "netns", "add", &switch_ns]);
        let janitor = Janitor::spawn(&prefix, &format!("ip link del {prefix}ra 2>/dev/null"));
        let t = Topology {
            prefix,
            switch_ns,
            net,
            hosts: Vec::new(),
            root: None,
            janitor,
        };
        t.sw(&["ip", "link", "add", "br0", "type", "bridge"]);
        // No STP, no forwarding delay: ports forward the moment they are up.
        t.sw(&[
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
        t.sw(&["ip", "link", "set", "br0", "up"]);
        t.sw(&["ip", "link", "set", "lo", "up"]);
        t
    }

    fn sw(&self, args: &[&str]) {
        let mut full = vec!["ip", "netns", "exec", &self.switch_ns];
        full.extend_from_slice(args);
        must(&full);
    }

    /// The address .`octet` in this topology's /24.
    pub fn addr(&self, octet: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], octet)
    }

    /// A veth pair `{prefix}{tag}a` / `{prefix}{tag}b` made in the root
    /// namespace (names of at most 15 bytes); `b` becomes a bridge port
    /// named `port`, up. Returns the `a` end, still in the root namespace.
    fn pair(&self, tag: &str, port: &str) -> String {
        let a = format!("{}{tag}a", self.prefix);
        let b = format!("{}{tag}b", self.prefix);
        let _ = run(&["ip", "link", "del", &a]);
        must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
        must(&["ip", "link", "set", &b, "netns", &self.switch_ns]);
        self.sw(&["ip", "link", "set", &b, "name", port]);
        self.sw(&["ip", "link", "set", port, "master", "br0"]);
        self.sw(&["ip", "link", "set", port, "up"]);
        a
    }

    /// Adds a host with address .`octet`/24 on interface `eth0`.
    pub fn host(&mut self, name: &str, octet: u8) -> &Host {
        let ns = format!("{}-{}", self.prefix, name);
        let _ = run(&["ip", "netns", "del", &ns]);
        must(&["ip", "netns", "add", &ns]);
        let idx = self.hosts.len();
        let port = format!("p{idx}");
        let ip = self.addr(octet);
        // Registered before it is configured, so Drop removes it whatever
        // fails next.
        self.hosts.push(Host {
            name: name.to_string(),
            ns: ns.clone(),
            ip,
            ifname: "eth0".into(),
            port: port.clone(),
        });
        let a = self.pair(&format!("v{idx}"), &port);
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
        self.hosts.last().unwrap()
    }

    /// Puts the test process on the bridge at .`octet`/24 (see
    /// [`TopologyBuilder::root`]); returns its address.
    pub fn attach_root(&mut self, octet: u8) -> Ipv4Addr {
        assert!(self.root.is_none(), "the root namespace is attached once");
        let ip = self.addr(octet);
        let a = self.pair("r", "pr");
        self.root = Some((a.clone(), ip));
        must(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &a]);
        must(&["ip", "link", "set", &a, "up"]);
        ip
    }

    /// The test process's address on the bridge, if attached.
    pub fn root_ip(&self) -> Option<Ipv4Addr> {
        self.root.as_ref().map(|(_, ip)| *ip)
    }

    /// Has the janitor remove `path` (recursively) if this process dies
    /// without dropping the topology. No spaces in `path`.
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

    /// `program`, to be run inside host `name`'s namespace (`ip netns exec`
    /// execs it, so the child's pid is the program's own).
    pub fn cmd(&self, name: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.get(name).ns, program]);
        c
    }

    /// Runs a command in a host and returns its output.
    pub fn exec(&self, name: &str, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", self.get(name).ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Cuts (false) or restores (true) a host's link at the switch: the host
    /// sees carrier loss, as when a cable is pulled.
    pub fn set_link(&self, name: &str, up: bool) {
        let port = self.get(name).port.clone();
        self.sw(&["ip", "link", "set", &port, if up { "up" } else { "down" }]);
    }

    /// Whether `ip` is configured on host `name`'s eth0.
    pub fn has_addr(&self, name: &str, ip: Ipv4Addr) -> bool {
        let out = self.exec(name, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/"))
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting the root end destroys its peer; deleting a namespace
        // destroys the veths inside it (and so their peers).
        if let Some((a, _)) = &self.root {
            let _ = run(&["ip", "link", "del", a]);
        }
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.switch_ns]);
        drop(self.janitor.take());
    }
}

/// A /24 of 198.18.0.0/15 that no route of the root namespace touches,
/// starting the search at `seed` (so concurrent processes spread out).
fn free_subnet(seed: u32) -> [u8; 3] {
    let routes =
        String::from_utf8_lossy(&run(&["ip", "-4", "route", "show", "table", "all"]).stdout)
            .into_owned();
    (0..512u32)
        .map(|i| subnet((seed + i) % 512))
        .find(|n| !routes.contains(&format!("{}.{}.{}.", n[0], n[1], n[2])))
        .expect("a free /24 in 198.18.0.0/15")
}

/// The `n`th /24 of 198.18.0.0/15 (n < 512).
fn subnet(n: u32) -> [u8; 3] {
    [198, 18 + (n / 256) as u8, (n % 256) as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_stay_inside_198_18_0_0_slash_15() {
        assert_eq!(subnet(0), [198, 18, 0]);
        assert_eq!(subnet(255), [198, 18, 255]);
        assert_eq!(subnet(256), [198, 19, 0]);
        assert_eq!(subnet(511), [198, 19, 255]);
    }
}
