//! `[[vrrp]]` instances.

use std::net::Ipv4Addr;

use super::*;
use crate::config::vrrp::{AdvertInterval, Priority, Version, Vrid};

const MINIMAL_VRRP: &str = r#"
[[vrrp]]
name = "vi1"
interface = "eth0"
virtual_router_id = 51
virtual_ips = ["198.18.0.100/24"]
"#;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

#[test]
fn vrrp_without_services_is_valid_and_defaults_apply() {
    let c = ok(MINIMAL_VRRP);
    assert!(c.services.is_empty());
    assert_eq!(
        c.vrrp,
        vec![VrrpConfig {
            name: "vi1".into(),
            interface: "eth0".into(),
            vrid: Vrid::new(51).unwrap(),
            priority: Priority(100),
            version: Version::V3,
            advert_interval: AdvertInterval::from_centis(10).unwrap(),
            preempt: true,
            preempt_delay: Duration::ZERO,
            virtual_ips: vec![(ip("198.18.0.100"), 24)],
            unicast_src_ip: None,
            unicast_peers: vec![],
            auth_pass: None,
            track: vec![],
            notify: None,
            notify_timeout: Duration::from_secs(5),
            garp: GarpConfig {
                delay: Duration::from_secs(5),
                repeat: 5,
                interval: Duration::ZERO,
                refresh: Duration::ZERO,
            },
        }]
    );
    assert!(!c.vrrp[0].is_unicast());
}

#[test]
fn every_key_is_kept() {
    let c = ok(&format!(
        r#"{MINIMAL_SERVICE}
[[vrrp]]
name = "v2-peer"
interface = "br-lan.10"
virtual_router_id = 255
priority = 255
version = 2
advert_interval = "3s"
preempt = false
preempt_delay = "1000s"
virtual_ips = ["198.18.0.100/32", "198.18.1.1/16"]
unicast_src_ip = "198.18.0.2"
unicast_peers = ["198.18.0.3", "198.18.0.4"]
auth_pass = "12345678"
track = [{{ service = "api", weight = -254 }}, {{ interface = "eth1" }}, {{ interface = "eth2", weight = 254 }}]
notify = ["/usr/local/bin/notify", "--x"]
notify_timeout = "250ms"
garp_master_delay = "0s"
garp_master_repeat = 100
garp_interval = "1s"
garp_master_refresh = "60s"
"#
    ));
    let v = &c.vrrp[0];
    assert_eq!(
        (v.vrid.get(), v.priority.get(), v.version.number()),
        (255, 255, 2)
    );
    assert_eq!(v.advert_interval.as_duration(), Duration::from_secs(3));
    assert!(!v.preempt);
    assert_eq!(v.preempt_delay, Duration::from_secs(1000));
    assert_eq!(
        v.virtual_ips,
        vec![(ip("198.18.0.100"), 32), (ip("198.18.1.1"), 16)]
    );
    assert_eq!(v.unicast_src_ip, Some(ip("198.18.0.2")));
    assert_eq!(v.unicast_peers, vec![ip("198.18.0.3"), ip("198.18.0.4")]);
    assert!(v.is_unicast());
    assert_eq!(v.auth_pass.as_deref(), Some("12345678"));
    assert_eq!(
        v.track,
        vec![
            Track {
                target: TrackTarget::Service("api".into()),
                weight: -254
            },
            Track {
                target: TrackTarget::Interface("eth1".into()),
                weight: 0
            },
            Track {
                target: TrackTarget::Interface("eth2".into()),
                weight: 254
            },
        ]
    );
    assert_eq!(
        v.notify,
        Some(vec!["/usr/local/bin/notify".into(), "--x".into()])
    );
    assert_eq!(v.notify_timeout, Duration::from_millis(250));
    assert_eq!(
        v.garp,
        GarpConfig {
            delay: Duration::ZERO,
            repeat: 100,
            interval: Duration::from_secs(1),
            refresh: Duration::from_secs(60),
        }
    );
}

#[test]
fn advert_interval_default_follows_the_version() {
    let c = ok(&MINIMAL_VRRP.replace("name = \"vi1\"", "name = \"vi1\"\nversion = 2"));
    assert_eq!(
        c.vrrp[0].advert_interval.as_duration(),
        Duration::from_secs(1)
    );
    for (written, want) in [("\"10ms\"", 10), ("\"40.95s\"", 40_950), ("\"1s\"", 1000)] {
        let c = ok(&MINIMAL_VRRP.replace(
            "name = \"vi1\"",
            &format!("name = \"vi1\"\nadvert_interval = {written}"),
        ));
        assert_eq!(
            c.vrrp[0].advert_interval.as_duration(),
            Duration::from_millis(want)
        );
    }
}

#[test]
fn same_vrid_or_vip_on_another_interface_is_fine() {
    let c = ok(&format!(
        "{MINIMAL_VRRP}{}",
        MINIMAL_VRRP.replace("vi1", "vi2").replace("eth0", "eth1")
    ));
    assert_eq!(c.vrrp.len(), 2);
}

#[test]
fn bad_vrrp_values() {
    insta::assert_snapshot!(errors(
        r#"[[vrrp]]
name = "my vip"
interface = "a-very-long-ifname0"
virtual_router_id = 0
priority = 0
version = 4
preempt = "yes"
preempt_delay = "1001s"
virtual_ips = ["198.18.0.100", "198.18.0.101/33", "224.0.0.18/32", "::1/128", 5]
unicast_src_ip = "0.0.0.0"
unicast_peers = ["255.255.255.255", "198.18.0.300", "2001:db8::1"]
notify = ["notify.sh"]
notify_timeout = "0s"
garp_master_delay = "soon"
garp_master_repeat = 0
garp_interval = "2s"
garp_master_refresh = "500ms"
bogus = true

[[vrrp]]
name = "v"
interface = "eth0:1"
virtual_router_id = 256
priority = 256
virtual_ips = []
unicast_peers = "198.18.0.3"
auth_pass = ""
track = "api"

[[vrrp]]
interface = "."
"#
    ));
}

#[test]
fn advert_interval_must_fit_the_version() {
    insta::assert_snapshot!(errors(
        r#"[[vrrp]]
name = "a"
interface = "eth0"
virtual_router_id = 1
virtual_ips = ["198.18.0.100/24"]
advert_interval = "15ms"
[[vrrp]]
name = "b"
interface = "eth0"
virtual_router_id = 2
virtual_ips = ["198.18.0.101/24"]
advert_interval = "41s"
[[vrrp]]
name = "c"
interface = "eth0"
virtual_router_id = 3
version = 3
virtual_ips = ["198.18.0.102/24"]
advert_interval = "5ms"
[[vrrp]]
name = "d"
interface = "eth0"
virtual_router_id = 4
version = 2
virtual_ips = ["198.18.0.103/24"]
advert_interval = "100ms"
[[vrrp]]
name = "e"
interface = "eth0"
virtual_router_id = 5
version = 2
virtual_ips = ["198.18.0.104/24"]
advert_interval = "256s"
[[vrrp]]
name = "f"
interface = "eth0"
virtual_router_id = 6
version = 7
virtual_ips = ["198.18.0.105/24"]
advert_interval = "100ms"
"#
    ));
}

#[test]
fn duplicates_within_and_across_instances() {
    insta::assert_snapshot!(errors(
        r#"[[vrrp]]
name = "a"
interface = "eth0"
virtual_router_id = 51
virtual_ips = ["198.18.0.100/24", "198.18.0.100/32"]
unicast_src_ip = "198.18.0.2"
unicast_peers = ["198.18.0.3", "198.18.0.3", "198.18.0.2"]

[[vrrp]]
name = "a"
interface = "eth0"
virtual_router_id = 51
virtual_ips = ["198.18.0.100/24"]

[[vrrp]]
name = "c"
interface = "eth1"
virtual_router_id = 51
virtual_ips = ["198.18.0.100/24"]
"#
    ));
}

#[test]
fn auth_pass_is_v2_only() {
    insta::assert_snapshot!(errors(
        r#"[[vrrp]]
name = "a"
interface = "eth0"
virtual_router_id = 1
virtual_ips = ["198.18.0.100/24"]
auth_pass = "secret"

[[vrrp]]
name = "b"
interface = "eth0"
virtual_router_id = 2
version = 3
virtual_ips = ["198.18.0.101/24"]
auth_pass = "secret"

[[vrrp]]
name = "c"
interface = "eth0"
virtual_router_id = 3
version = 2
virtual_ips = ["198.18.0.102/24"]
auth_pass = "123456789"
"#
    ));
}

#[test]
fn track_entries() {
    insta::assert_snapshot!(errors(&format!(
        r#"{MINIMAL_SERVICE}
[[service]]
name = "broken"
listen = "127.0.0.1:9"

[[vrrp]]
name = "a"
interface = "eth0"
virtual_router_id = 1
virtual_ips = ["198.18.0.100/24"]
track = [
  {{ service = "nope" }},
  {{ service = "api", interface = "eth1" }},
  {{ weight = -50 }},
  {{ interface = "eth1", weight = -255 }},
  {{ interface = "eth1/x" }},
  "api",
  {{ service = "api", wieght = 1 }},
  {{ service = "broken" }},
  {{ service = "api" }},
  {{ service = "api", weight = 10 }},
]
"#
    )));
}

#[test]
fn track_without_services_says_there_are_none() {
    let e = errors(&MINIMAL_VRRP.replace(
        "virtual_ips",
        "track = [{ service = \"api\" }]\nvirtual_ips",
    ));
    assert!(e.contains("(it has none)"), "{e}");
}

#[test]
fn missing_vrrp_keys() {
    insta::assert_snapshot!(errors("[[vrrp]]\npriority = 1\n"));
}

/// One file with health, policy and VRRP mistakes together: every one is
/// reported, in file order, at its own line:column.
#[test]
fn a_file_with_many_new_mistakes() {
    let text = r#"[[service]]
name = "api"
listen = "127.0.0.1:80"
all_down = "all"
sorry = "127.0.0.1:90"
[service.health]
kind = "tcp"
path = "/healthz"
jitter = "3s"
[[service.backend]]
address = "127.0.0.1:8081"
[service.backend.health]
kind = "exec"

[[vrrp]]
name = "a"
interface = "eth0"
virtual_router_id = 7
virtual_ips = ["198.18.0.100/24"]
advert_interval = "1.5s"
version = 2
track = [{ service = "apx" }]
[[vrrp]]
name = "b"
interface = "eth0"
virtual_router_id = 7
virtual_ips = ["198.18.0.100/32"]
auth_pass = "x"
"#;
    let e = parse(text).unwrap_err();
    let got: Vec<(usize, usize, &str)> = e
        .errors()
        .iter()
        .map(|e| (e.line, e.column, e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (5, 9, "service[0].sorry"),
            (8, 1, "service[0].health.path"),
            (9, 10, "service[0].health.jitter"),
            (12, 1, "service[0].backend[0].health.command"),
            (20, 19, "vrrp[0].advert_interval"),
            (22, 22, "vrrp[0].track[0].service"),
            (26, 21, "vrrp[1].virtual_router_id"),
            (27, 16, "vrrp[1].virtual_ips[0]"),
            (28, 13, "vrrp[1].auth_pass"),
        ]
    );
    insta::assert_snapshot!(e.to_string());
}
