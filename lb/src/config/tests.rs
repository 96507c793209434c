//! Whole-file tests: defaults, the example file, and a snapshot of the
//! rendered messages for every class of error (`snapshots/`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

mod health;
mod persistence;
mod vrrp;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse(text, Path::new("lb.toml"))
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

/// The rendered errors, as `tandem lb check` prints them.
fn errors(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("parsed without error: {c:#?}"),
        Err(e) => e.to_string(),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const MINIMAL_SERVICE: &str = r#"
[[service]]
name = "api"
listen = "127.0.0.1:8080"
[[service.backend]]
address = "127.0.0.1:8081"
"#;

#[test]
fn empty_file_is_all_defaults() {
    let c = ok("");
    assert_eq!(c.source, Path::new("lb.toml"));
    assert!(!c.node.name.is_empty());
    assert!(c.node.workers >= 1);
    assert_eq!(c.node.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.node.connection_log, Some(tracing::Level::INFO));
    assert_eq!(c.admin.socket, Path::new("/run/tandem/lb.sock"));
    assert_eq!(c.metrics.listen, None);
    assert!(c.services.is_empty());
    assert!(c.vrrp.is_empty());
}

#[test]
fn service_defaults() {
    let c = ok(MINIMAL_SERVICE);
    let s = &c.services[0];
    assert_eq!(s.name, "api");
    assert_eq!(s.listen, addr("127.0.0.1:8080"));
    assert_eq!(s.scheduler, SchedulerKind::Wlc);
    assert_eq!(s.connect_timeout, Duration::from_secs(2));
    assert_eq!(s.idle_timeout, Duration::from_secs(300));
    assert_eq!(s.retries, 2);
    assert_eq!(s.max_connections, 10_000);
    assert_eq!(s.proxy_protocol, ProxyProtocol::Off);
    assert_eq!(s.all_down, AllDown::Refuse);
    assert_eq!(s.persistence, None);
    assert_eq!(
        s.backends,
        vec![BackendConfig {
            name: "127.0.0.1:8081".into(),
            address: addr("127.0.0.1:8081"),
            weight: 100,
            max_connections: None,
            health: None,
            passive_fall: 3,
        }]
    );
    assert!(c.service("api").is_some());
    assert!(c.service("nope").is_none());
}

#[test]
fn explicit_values_are_kept() {
    let c = ok(r#"
[node]
name = "lb-2.example"
workers = 3
shutdown_grace = "1m30s"
connection_log = "off"
[admin]
socket = "/tmp/lb.sock"
[metrics]
listen = "[::1]:9310"
[[service]]
name = "w"
listen = "[2001:db8::1]:443"
scheduler = "maglev"
connect_timeout = "250ms"
idle_timeout = "1.5h"
retries = 0
max_connections = 1
proxy_protocol = "v1"
[[service.backend]]
name = "w1"
address = "[2001:db8::2]:8081"
weight = 0
max_connections = 7
"#);
    assert_eq!(c.node.name, "lb-2.example");
    assert_eq!(c.node.workers, 3);
    assert_eq!(c.node.shutdown_grace, Duration::from_secs(90));
    assert_eq!(c.node.connection_log, None);
    assert_eq!(c.admin.socket, Path::new("/tmp/lb.sock"));
    assert_eq!(c.metrics.listen, Some(addr("[::1]:9310")));
    let s = &c.services[0];
    assert_eq!(s.listen, addr("[2001:db8::1]:443"));
    assert_eq!(s.scheduler, SchedulerKind::Maglev);
    assert_eq!(s.connect_timeout, Duration::from_millis(250));
    assert_eq!(s.idle_timeout, Duration::from_secs(5400));
    assert_eq!((s.retries, s.max_connections), (0, 1));
    assert_eq!(s.proxy_protocol, ProxyProtocol::V1);
    let b = &s.backends[0];
    assert_eq!(
        (b.name.as_str(), b.weight, b.max_connections),
        ("w1", 0, Some(7))
    );
}

#[test]
fn every_scheduler_and_log_level_name_is_accepted() {
    for kind in SchedulerKind::ALL {
        let text = MINIMAL_SERVICE.replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:8080\"\nscheduler = \"{kind}\""),
        );
        assert_eq!(ok(&text).services[0].scheduler, kind);
    }
    for (name, level) in [
        ("error", tracing::Level::ERROR),
        ("trace", tracing::Level::TRACE),
    ] {
        let c = ok(&format!("[node]\nconnection_log = \"{name}\""));
        assert_eq!(c.node.connection_log, Some(level));
    }
}

#[test]
fn inline_tables_are_accepted_too() {
    let c = ok(
        r#"service = [{ name = "a", listen = "127.0.0.1:1", backend = [{ address = "127.0.0.1:2" }] }]"#,
    );
    assert_eq!(c.services[0].backends[0].address, addr("127.0.0.1:2"));
}

#[test]
fn example_file_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lb.example.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.source, path);
    assert_eq!(c.node.name, "lb1");
    assert_eq!(c.metrics.listen, Some(addr("127.0.0.1:9310")));
    assert_eq!(c.services.len(), 2);
    let api = &c.services[0];
    assert_eq!(api.proxy_protocol, ProxyProtocol::V2);
    assert_eq!(api.all_down, AllDown::Refuse);
    assert_eq!(api.backends[0].max_connections, Some(1000));
    assert_eq!(
        api.persistence,
        Some(Persistence {
            timeout: Duration::from_secs(300),
            v4_prefix: 32,
            v6_prefix: 64,
            max_entries: 65_536
        })
    );
    // api-1 has the service's http checks, api-2 its own exec check with
    // the service's common keys.
    let h1 = api.backends[0].health.as_ref().expect("api-1 is checked");
    let HealthCheck::Http(http) = &h1.check else {
        panic!("api-1 is not checked over http: {h1:?}")
    };
    assert_eq!(http.path, "/readyz");
    assert_eq!(http.host.as_deref(), Some("api.internal"));
    assert_eq!(http.expect_body.as_deref(), Some("ok"));
    assert!(http.expects(204) && !http.expects(301));
    assert_eq!(h1.port, Some(8081));
    assert_eq!(h1.fastinter, Duration::from_millis(500));
    assert_eq!(h1.slow_start, Duration::from_secs(30));
    let h2 = api.backends[1].health.as_ref().expect("api-2 is checked");
    assert_eq!(
        h2.check,
        HealthCheck::Exec(ExecCheck {
            command: vec![
                "/usr/local/bin/check-api".into(),
                "--port".into(),
                "8082".into()
            ]
        })
    );
    assert_eq!((h2.port, h2.downinter), (None, Duration::from_secs(5)));
    let thumb = &c.services[1];
    assert_eq!(thumb.all_down, AllDown::Sorry(addr("127.0.0.1:9099")));
    assert_eq!(thumb.backends[1].name, "[::1]:9002");
    assert_eq!(thumb.backends[1].weight, 50);
    assert_eq!(thumb.backends[1].health, None);
    assert_eq!(thumb.backends[1].passive_fall, 3);

    assert_eq!(c.vrrp.len(), 2);
    let v = &c.vrrp[0];
    assert_eq!(
        (v.vrid.get(), v.priority.get(), v.version.number()),
        (51, 150, 3)
    );
    assert_eq!(
        v.track[0],
        Track {
            target: TrackTarget::Service("api".into()),
            weight: -100
        }
    );
    assert_eq!(v.track[1].weight, 0);
    assert!(!v.is_unicast());
    let legacy = &c.vrrp[1];
    assert_eq!(legacy.version.number(), 2);
    assert_eq!(legacy.auth_pass.as_deref(), Some("tandem"));
    assert_eq!(
        legacy.unicast_peers,
        vec!["198.18.1.3".parse::<std::net::Ipv4Addr>().unwrap()]
    );
}

/// Every key the parser knows is set in the example file, where its comment
/// documents it; so is every table.
#[test]
fn example_file_documents_every_key() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("lb.example.toml"))
            .unwrap();
    let keys = parse::every_value_key();
    assert!(keys.len() > 50, "{keys:?}");
    for key in keys {
        let at_line_start = text.lines().any(|l| l.starts_with(&format!("{key} = ")));
        // `track` entries are inline tables.
        let inline =
            text.contains(&format!("{{ {key} = ")) || text.contains(&format!(", {key} = "));
        assert!(
            at_line_start || inline,
            "lb.example.toml does not set {key}"
        );
    }
    for table in [
        "[node]",
        "[admin]",
        "[metrics]",
        "[[service]]",
        "[service.health]",
        "[[service.backend]]",
        "[service.backend.health]",
        "[[vrrp]]",
    ] {
        assert!(
            text.lines().any(|l| l == table),
            "lb.example.toml has no {table}"
        );
    }
}

#[test]
fn load_reports_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(
        e.errors()[0].kind,
        ErrorKind::Read("No such file or directory (os error 2)".into())
    );
    assert_eq!(
        e.to_string(),
        format!(
            "{}: cannot read the file: No such file or directory (os error 2)",
            path.display()
        )
    );
}

/// One file with a mistake of each kind: all are reported, in file order,
/// each at the right line:column.
#[test]
fn several_errors_are_all_reported_with_positions() {
    let text = r#"[node]
workers = "2"
shutdown_grace = "30"

[[service]]
name = "api"
listen = "198.18.0.100:80"
scheduler = "wlcc"
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8082"
  weight = 300
bogus = true

[[service]]
name = "api"
listen = "198.18.0.100:80"
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
            (2, 11, "node.workers"),
            (3, 18, "node.shutdown_grace"),
            (8, 13, "service[0].scheduler"),
            (13, 12, "service[0].backend[1].weight"),
            (14, 1, "service[0].backend[1].bogus"),
            (16, 1, "service[1]"),
            (17, 8, "service[1].name"),
            (18, 10, "service[1].listen"),
        ]
    );
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn syntax_error_keeps_tomls_position() {
    let text = "[node]\nname = \"lb1\nworkers = 2\n";
    let e = parse(text).unwrap_err();
    assert_eq!(e.len(), 1);
    // toml itself says "line 2, column 12" for this input.
    assert_eq!((e.errors()[0].line, e.errors()[0].column), (2, 12));
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn syntax_error_duplicate_key() {
    insta::assert_snapshot!(errors("[node]\nname = \"a\"\nname = \"b\"\n"));
}

#[test]
fn unknown_keys_list_the_valid_ones() {
    insta::assert_snapshot!(errors(
        r#"lisen = "x"
[node]
wrokers = 2
[admin]
path = "/x"
[metrics]
listen = "127.0.0.1:9310"
port = 9310
[[service]]
name = "api"
listen = "127.0.0.1:80"
timeout = "2s"
[[service.backend]]
address = "127.0.0.1:8081"
wieght = 5
[service.extra]
k = 1
"#
    ));
}

#[test]
fn wrong_types() {
    insta::assert_snapshot!(errors(
        r#"node = "lb1"
metrics = 5
[[service]]
name = 7
listen = ["127.0.0.1:80"]
retries = 2.5
connect_timeout = 2
max_connections = "10"
[[service.backend]]
address = "127.0.0.1:8081"
weight = true
"#
    ));
}

#[test]
fn service_written_as_a_plain_table() {
    insta::assert_snapshot!(errors("[service]\nname = \"api\"\n"));
}

#[test]
fn bad_durations() {
    insta::assert_snapshot!(errors(
        r#"[node]
shutdown_grace = "-1s"
[[service]]
name = "api"
listen = "127.0.0.1:80"
connect_timeout = "0s"
idle_timeout = "5 minutes"
[[service.backend]]
address = "127.0.0.1:8081"
[[service]]
name = "b"
listen = "127.0.0.1:81"
connect_timeout = "1s1m"
idle_timeout = "99999999999h"
[[service.backend]]
address = "127.0.0.1:8081"
"#
    ));
}

#[test]
fn bad_addresses() {
    insta::assert_snapshot!(errors(
        r#"[metrics]
listen = "localhost:9310"
[[service]]
name = "a"
listen = "127.0.0.1:0"
[[service.backend]]
address = "127.0.0.1"
[[service.backend]]
address = "::1:8081"
[[service.backend]]
address = "0.0.0.0:8081"
[[service.backend]]
address = "127.0.0.1:65536"
"#
    ));
}

#[test]
fn bad_enums_list_the_valid_names() {
    insta::assert_snapshot!(errors(
        r#"[node]
connection_log = "verbose"
[[service]]
name = "a"
listen = "127.0.0.1:80"
scheduler = "round-robin"
proxy_protocol = "V2"
[[service.backend]]
address = "127.0.0.1:8081"
"#
    ));
}

#[test]
fn duplicate_service_names_and_listens_name_the_first() {
    insta::assert_snapshot!(errors(
        r#"[[service]]
name = "api"
listen = "127.0.0.1:80"
[[service.backend]]
address = "127.0.0.1:8081"

[[service]]
name = "api"
listen = "127.0.0.1:80"
[[service.backend]]
address = "127.0.0.1:8081"

[[service]]
name = "other"
listen = "127.0.0.1:80"
[[service.backend]]
address = "127.0.0.1:8081"
"#
    ));
}

#[test]
fn duplicate_backends_within_a_service() {
    let text = r#"[[service]]
name = "api"
listen = "127.0.0.1:80"
[[service.backend]]
name = "one"
address = "127.0.0.1:8081"
[[service.backend]]
name = "one"
address = "127.0.0.1:8082"
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8083"
[[service.backend]]
name = "127.0.0.1:8083"
address = "127.0.0.1:8084"

[[service]]
name = "other"
listen = "127.0.0.1:81"
[[service.backend]]
name = "one"
address = "127.0.0.1:8081"
"#;
    let e = parse(text).unwrap_err();
    // The third backend repeats only the first's address: one error, not a
    // second one for its defaulted name. The other service may reuse both.
    assert_eq!(e.len(), 3, "{e}");
    insta::assert_snapshot!(e.to_string());
}

#[test]
fn numbers_out_of_range() {
    insta::assert_snapshot!(errors(
        r#"[node]
workers = -1
[[service]]
name = "a"
listen = "127.0.0.1:80"
retries = 17
max_connections = 0
[[service.backend]]
address = "127.0.0.1:8081"
weight = 257
max_connections = 4294967296
[[service.backend]]
address = "127.0.0.1:8082"
weight = 99999999999999999999
"#
    ));
}

#[test]
fn empty_pools() {
    insta::assert_snapshot!(errors(
        r#"[[service]]
name = "a"
listen = "127.0.0.1:80"

[[service]]
name = "b"
listen = "127.0.0.1:81"
backend = []
"#
    ));
}

#[test]
fn missing_required_keys() {
    insta::assert_snapshot!(errors(
        r#"[metrics]

[[service]]
scheduler = "rr"
[[service.backend]]
weight = 1
"#
    ));
}

#[test]
fn bad_names_and_paths() {
    insta::assert_snapshot!(errors(
        r#"[node]
name = ""
[admin]
socket = "lb.sock"
[[service]]
name = "my api"
listen = "127.0.0.1:80"
[[service.backend]]
name = "a/b"
address = "127.0.0.1:8081"
[[service]]
name = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
listen = "127.0.0.1:81"
[[service.backend]]
address = "127.0.0.1:8081"
"#
    ));
}

#[test]
fn metrics_cannot_share_a_service_address() {
    insta::assert_snapshot!(errors(&format!(
        "[metrics]\nlisten = \"127.0.0.1:8080\"\n{MINIMAL_SERVICE}"
    )));
}

/// Shapes TOML allows but this file does not: each gets a precise message.
#[test]
fn odd_shapes() {
    let cases = [
        "[[service.backend]]\naddress = \"127.0.0.1:1\"\n",
        "node.name = 5\nnode.workers = \"x\"\n",
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n[service.backend]\naddress = \"127.0.0.1:1\"\n",
        "service = [1, \"x\"]\n",
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nbackend = [3]\n",
    ];
    let rendered: Vec<String> = cases
        .iter()
        .map(|t| format!("{t}=>\n{}\n", errors(t)))
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Lines mixing valid and invalid keys, values and headers.
    fn line() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec![
            "name",
            "listen",
            "address",
            "weight",
            "workers",
            "retries",
            "scheduler",
            "connect_timeout",
            "socket",
            "bogus",
            "backend",
            "max_connections",
            "kind",
            "interval",
            "jitter",
            "path",
            "command",
            "expect_status",
            "port",
            "all_down",
            "sorry",
            "interface",
            "virtual_router_id",
            "version",
            "advert_interval",
            "virtual_ips",
            "unicast_src_ip",
            "unicast_peers",
            "auth_pass",
            "track",
            "health",
        ]);
        let value = prop::sample::select(vec![
            "\"a\"",
            "\"127.0.0.1:80\"",
            "\"[::1]:1\"",
            "0",
            "-1",
            "300",
            "1.5",
            "true",
            "\"2s\"",
            "\"1m30\"",
            "\"wlc\"",
            "[]",
            "{}",
            "\"/x\"",
            "[1]",
            "\"\"",
            "\"http\"",
            "\"exec\"",
            "\"all\"",
            "\"eth0\"",
            "2",
            "3",
            "\"100ms\"",
            "[\"198.18.0.1/24\"]",
            "[\"/bin/true\"]",
            "[200, \"300-399\"]",
            "[{ service = \"a\" }]",
            "[{ interface = \"a\", service = \"b\" }]",
            "\"198.18.0.1\"",
        ]);
        prop_oneof![
            (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            prop::sample::select(vec![
                "[node]",
                "[admin]",
                "[metrics]",
                "[[service]]",
                "[[service.backend]]",
                "[service.x]",
                "[service.health]",
                "[service.backend.health]",
                "[[vrrp]]",
            ])
            .prop_map(str::to_string),
        ]
    }

    proptest! {
        /// Whatever the mix, parse answers (no panic), and every error has a
        /// position inside the file and renders on one line.
        #[test]
        fn any_mix_is_answered_with_positioned_errors(lines in prop::collection::vec(line(), 0..24)) {
            let text = lines.join("\n");
            if let Err(errs) = parse(&text) {
                prop_assert!(!errs.is_empty());
                let line_count = text.lines().count().max(1);
                for e in errs.errors() {
                    prop_assert!(e.line >= 1 && e.line <= line_count, "{e}");
                    prop_assert!(e.column >= 1, "{e}");
                }
                prop_assert_eq!(errs.to_string().lines().count(), errs.len());
            }
        }
    }
}
