//! Test hosts as Linux network namespaces, joined by a bridge.
//!
//! Rules (the project's network rule for tests): addresses only from
//! 198.18.0.0/15, a subnet and namespace names unique to each topology, no
//! default route (nothing can leave the test bed), and everything removed
//! when the [`Topology`] is dropped, on success and on panic alike.
//!
//! Layout: a "switch" namespace holds a bridge; each host namespace gets a
//! veth pair whose far end is enslaved to the bridge. Cutting a host's link
//! (`set_link(host, false)`) downs the far end, so the host sees carrier loss.
//!
//! A [`Janitor`] covers the exits where no destructor runs.
#![allow(dead_code)]

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Fails (under CI=true) or skips (otherwise) when not root. Returns false to skip.
pub fn require_root(test: &str) -> bool {
    // /proc/self belongs to the effective uid (nix's geteuid needs a
    // feature this crate does not enable).
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
/// given. A bed's Drop cleans up itself and then drops the janitor, which
/// finds nothing left; the janitor covers the exits where no destructor
/// runs: the test process SIGKILLed, or SIGTERMed by a runner's timeout
/// (nextest's terminate-after), which signals the test's process group
/// (the janitor is not in it).
pub struct Janitor {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Janitor {
    /// None if `setsid` or `sh` cannot be run (the bed still cleans up on drop).
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
    /// without dropping the bed. No spaces in `path`.
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

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: Ipv4Addr,
    /// Interface name inside the host namespace.
    pub ifname: String,
    /// The veth end on the bridge, in the switch namespace.
    pub port: String,
}

pub struct Topology {
    pub switch_ns: String,
    pub prefix: String,
    /// Third octet of 198.18.X.0/24 (or 198.19.X.0/24): this topology's subnet.
    pub net: [u8; 3],
    pub hosts: Vec<Host>,
    /// Removes the namespaces (and the processes in them) if the test dies
    /// without unwinding; dropped after them in [`Drop`].
    janitor: Option<Janitor>,
}

impl Topology {
    /// A new empty test bed with its own switch and /24.
    pub fn new() -> Topology {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        // Unique across concurrently running test processes and tests: the
        // pid and a per-process counter pick the subnet and the names.
        let n = (pid.wrapping_mul(31).wrapping_add(seq)) % 512;
        let net = [198, 18 + (n / 256) as u8, (n % 256) as u8];
        let prefix = format!("td{}x{}", pid % 100_000, seq);
        let switch_ns = format!("{prefix}-sw");
        // A leftover from a crashed run of the same pid is removed first.
        let _ = run(&["ip", "netns", "del", &switch_ns]);
        must(&["ip", "netns", "add", &switch_ns]);
        let janitor = Janitor::spawn(&prefix, "true");
        let t = Topology {
            switch_ns,
            prefix,
            net,
            hosts: Vec::new(),
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

    /// The address .`host` in this topology's subnet.
    pub fn addr(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], host)
    }

    /// Adds a host with address .`octet`/24 on interface `eth0`.
    pub fn host(&mut self, name: &str, octet: u8) -> &Host {
        let ns = format!("{}-{}", self.prefix, name);
        let _ = run(&["ip", "netns", "del", &ns]);
        must(&["ip", "netns", "add", &ns]);
        let idx = self.hosts.len();
        let port = format!("p{idx}");
        // Interface names in the root namespace are at most 15 bytes and
        // must not collide with other tests' pairs: t<pid>_<seq>_<idx>[b].
        let tmp = format!("t{}_{idx}", &self.prefix[2..].replace('x', "_"));
        // Create the pair in the root namespace, then move each end.
        must(&[
            "ip",
            "link",
            "add",
            &tmp,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{tmp}b"),
        ]);
        must(&["ip", "link", "set", &tmp, "netns", &ns]);
        must(&[
            "ip",
            "link",
            "set",
            &format!("{tmp}b"),
            "netns",
            &self.switch_ns,
        ]);
        let ip = self.addr(octet);
        let ex = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", ns.as_str()];
            full.extend_from_slice(args);
            must(&full);
        };
        ex(&["ip", "link", "set", &tmp, "name", "eth0"]);
        ex(&["ip", "link", "set", "lo", "up"]);
        ex(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ex(&["ip", "link", "set", "eth0", "up"]);
        self.sw(&["ip", "link", "set", &format!("{tmp}b"), "name", &port]);
        self.sw(&["ip", "link", "set", &port, "master", "br0"]);
        self.sw(&["ip", "link", "set", &port, "up"]);
        self.hosts.push(Host {
            name: name.to_string(),
            ns,
            ip,
            ifname: "eth0".into(),
            port,
        });
        self.hosts.last().unwrap()
    }

    pub fn get(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// A command to run inside host `name`'s namespace.
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
        // Deleting a namespace destroys its veth ends (and so their peers).
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
        }
        let _ = run(&["ip", "netns", "del", &self.switch_ns]);
        drop(self.janitor.take());
    }
}
