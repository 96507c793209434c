//! `[service.health]`, its per-backend override, `all_down` and `sorry`.

use super::*;

/// A service `api` on 127.0.0.1:8080 with `service_extra` in its table
/// (health keys go in `[service.health]` written there), then two backends.
fn service(service_extra: &str, backends: &str) -> String {
    format!("[[service]]\nname = \"api\"\nlisten = \"127.0.0.1:8080\"\n{service_extra}\n{backends}")
}

const TWO_BACKENDS: &str = r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8082"
"#;

fn backend_health(c: &Config, i: usize) -> &HealthConfig {
    c.services[0].backends[i]
        .health
        .as_ref()
        .expect("backend has checks")
}

#[test]
fn no_health_table_means_no_probes_and_default_passive_fall() {
    let c = ok(&service("", TWO_BACKENDS));
    for b in &c.services[0].backends {
        assert_eq!(b.health, None);
        assert_eq!(b.passive_fall, 3);
    }
}

#[test]
fn an_empty_health_table_is_tcp_with_haproxy_defaults() {
    let c = ok(&service("[service.health]", TWO_BACKENDS));
    let h = backend_health(&c, 0);
    assert_eq!(
        *h,
        HealthConfig {
            check: HealthCheck::Tcp,
            interval: Duration::from_secs(2),
            fastinter: Duration::from_secs(2),
            downinter: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            alpha: false,
            jitter: Duration::from_millis(200),
            port: None,
            slow_start: Duration::ZERO,
        }
    );
    assert_eq!(backend_health(&c, 1), h);
    assert_eq!(c.services[0].backends[0].passive_fall, 3);
}

#[test]
fn http_defaults_and_status_forms() {
    let c = ok(&service("[service.health]\nkind = \"http\"", TWO_BACKENDS));
    let HealthCheck::Http(h) = &backend_health(&c, 0).check else {
        panic!("not http")
    };
    assert_eq!(h.path, "/");
    assert_eq!(h.host, None);
    assert_eq!(h.expect_body, None);
    assert!(h.expects(200) && h.expects(399) && !h.expects(400) && !h.expects(199));

    for (written, want) in [
        ("204", vec![(204, 204)]),
        ("\"204\"", vec![(204, 204)]),
        ("\"200-299\"", vec![(200, 299)]),
        (
            "[200, \"300-302\", 404]",
            vec![(200, 200), (300, 302), (404, 404)],
        ),
    ] {
        let c = ok(&service(
            &format!("[service.health]\nkind = \"http\"\nexpect_status = {written}"),
            TWO_BACKENDS,
        ));
        let HealthCheck::Http(h) = &backend_health(&c, 0).check else {
            panic!("not http")
        };
        let got: Vec<(u16, u16)> = h.expect_status.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(got, want, "{written}");
    }
}

#[test]
fn derived_defaults_follow_the_resolved_interval() {
    let c = ok(&service(
        "[service.health]\ninterval = \"5s\"",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
interval = "1s"
"#,
    ));
    let a = backend_health(&c, 0);
    assert_eq!(
        (a.interval, a.fastinter, a.downinter, a.jitter),
        (
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_millis(500)
        )
    );
    let b = backend_health(&c, 1);
    assert_eq!(
        (b.interval, b.fastinter, b.downinter, b.jitter),
        (
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_secs(1),
            Duration::from_millis(100)
        )
    );
}

#[test]
fn backend_keys_override_the_services_key_by_key() {
    let c = ok(&service(
        r#"[service.health]
kind = "http"
path = "/healthz"
host = "api.example"
rise = 5
jitter = "0s"
passive_fall = 0
port = 9000"#,
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[service.backend.health]
path = "/ready"
fall = 1
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
kind = "tcp"
[[service.backend]]
address = "127.0.0.1:8083"
[service.backend.health]
kind = "exec"
command = ["/bin/true"]
passive_fall = 7
"#,
    ));
    let bs = &c.services[0].backends;
    // Same kind: the service's http keys pass down, the backend's win.
    let a = backend_health(&c, 0);
    let HealthCheck::Http(http) = &a.check else {
        panic!("not http")
    };
    assert_eq!(http.path, "/ready");
    assert_eq!(http.host.as_deref(), Some("api.example"));
    assert_eq!(
        (a.rise, a.fall, a.jitter, a.port),
        (5, 1, Duration::ZERO, Some(9000))
    );
    assert_eq!(bs[0].passive_fall, 0);
    // tcp: common keys and `port` pass down, the http ones do not apply.
    let b = backend_health(&c, 1);
    assert_eq!(
        (&b.check, b.rise, b.port),
        (&HealthCheck::Tcp, 5, Some(9000))
    );
    // exec: no port.
    let e = backend_health(&c, 2);
    assert_eq!(
        e.check,
        HealthCheck::Exec(ExecCheck {
            command: vec!["/bin/true".into()]
        })
    );
    assert_eq!((e.port, e.rise, bs[2].passive_fall), (None, 5, 7));
}

#[test]
fn alpha_is_off_by_default_and_inherited_like_rise_and_fall() {
    let c = ok(&service("[service.health]", TWO_BACKENDS));
    assert!(!backend_health(&c, 0).alpha, "start up by default");
    let c = ok(&service(
        "[service.health]\nalpha = true",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
alpha = false
[[service.backend]]
address = "127.0.0.1:8083"
[service.backend.health]
kind = "exec"
command = ["/bin/true"]
"#,
    ));
    let alpha: Vec<bool> = (0..3).map(|i| backend_health(&c, i).alpha).collect();
    // A common key: it passes down even to a backend of another kind.
    assert_eq!(alpha, [true, false, true]);
}

#[test]
fn alpha_must_be_a_boolean() {
    insta::assert_snapshot!(errors(&service(
        "[service.health]\nalpha = \"yes\"",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[service.backend.health]
alpha = 1
"#,
    )));
}

#[test]
fn a_backend_may_have_checks_its_service_has_not() {
    let c = ok(&service(
        "",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
slow_start = "30s"
"#,
    ));
    assert_eq!(c.services[0].backends[0].health, None);
    let b = backend_health(&c, 1);
    assert_eq!(
        (&b.check, b.slow_start),
        (&HealthCheck::Tcp, Duration::from_secs(30))
    );
}

#[test]
fn all_down_policies() {
    let policy = |extra: &str| ok(&service(extra, TWO_BACKENDS)).services[0].all_down;
    assert_eq!(policy(""), AllDown::Refuse);
    assert_eq!(policy("all_down = \"refuse\""), AllDown::Refuse);
    assert_eq!(policy("all_down = \"all\""), AllDown::All);
    assert_eq!(
        policy("sorry = \"127.0.0.1:8090\""),
        AllDown::Sorry(addr("127.0.0.1:8090"))
    );
}

#[test]
fn keys_of_another_kind_name_the_kind() {
    let e = errors(&service(
        r#"[service.health]
path = "/x"
command = ["/bin/true"]"#,
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service]]
name = "b"
listen = "127.0.0.1:8081"
[service.health]
kind = "http"
port = 81
command = ["/bin/true"]
[[service.backend]]
address = "127.0.0.1:8081"
[service.backend.health]
expect_body = "ok"
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
kind = "exec"
command = ["/bin/true"]
port = 9000
expect_status = 200
"#,
    ));
    insta::assert_snapshot!(e);
}

#[test]
fn exec_needs_a_command_with_an_absolute_program() {
    insta::assert_snapshot!(errors(&service(
        "[service.health]\nkind = \"exec\"",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
command = []
[[service.backend]]
address = "127.0.0.1:8083"
[service.backend.health]
command = ["check.sh", "a\u0000b"]
[[service.backend]]
address = "127.0.0.1:8084"
[service.backend.health]
command = "/bin/check --all"
"#,
    )));
}

#[test]
fn exec_without_command_is_reported_where_the_kind_is_set() {
    // The service has no checks; one backend asks for exec without a
    // command: one error, at that backend.
    let e = parse(&service(
        "",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[service.backend.health]
kind = "exec"
"#,
    ))
    .unwrap_err();
    assert_eq!(e.len(), 1, "{e}");
    assert_eq!(e.errors()[0].path, "service[0].backend[0].health.command");
    assert_eq!(e.errors()[0].kind, ErrorKind::Missing);
}

#[test]
fn bad_health_values() {
    insta::assert_snapshot!(errors(&service(
        r#"[service.health]
kind = "icmp"
interval = "0s"
fastinter = "500us"
downinter = 5
timeout = "0.5ms"
rise = 0
fall = 101
jitter = "-1s"
slow_start = "soon"
passive_fall = -1
bogus = 1"#,
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service]]
name = "h"
listen = "127.0.0.1:8081"
[service.health]
kind = "http"
port = 0
path = "healthz"
host = "a b"
expect_status = ["200-", 600, "299-200", true]
expect_body = ""
[[service.backend]]
address = "127.0.0.1:8081"
[service.backend.health]
path = "/a b"
expect_status = []
"#,
    )));
}

#[test]
fn jitter_must_be_less_than_interval() {
    insta::assert_snapshot!(errors(&service(
        "[service.health]\njitter = \"2s\"",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service]]
name = "b"
listen = "127.0.0.1:8081"
[service.health]
jitter = "500ms"
[[service.backend]]
address = "127.0.0.1:8081"
[service.backend.health]
interval = "400ms"
[[service.backend]]
address = "127.0.0.1:8082"
[service.backend.health]
jitter = "5s"
[[service.backend]]
address = "127.0.0.1:8083"
"#,
    )));
}

#[test]
fn sorry_conflicts_and_loops() {
    insta::assert_snapshot!(errors(&service(
        "all_down = \"all\"\nsorry = \"127.0.0.1:8090\"",
        r#"
[[service.backend]]
address = "127.0.0.1:8081"
[[service]]
name = "b"
listen = "127.0.0.1:81"
sorry = "127.0.0.1:81"
[[service.backend]]
address = "127.0.0.1:8081"
[[service]]
name = "c"
listen = "127.0.0.1:82"
all_down = "panic"
sorry = "0.0.0.0:80"
[[service.backend]]
address = "127.0.0.1:8081"
"#,
    )));
}

#[test]
fn an_inherited_kind_is_named_with_its_origin() {
    let e = errors(&service(
        "[service.health]\nkind = \"exec\"\ncommand = [\"/bin/true\"]",
        "[[service.backend]]\naddress = \"127.0.0.1:8081\"\n[service.backend.health]\npath = \"/x\"\n",
    ));
    assert_eq!(
        e,
        "lb.toml:10:1: service[0].backend[0].health.path = \"/x\": only used by kind \"http\", \
         and this check's kind is \"exec\" (from service[0].health.kind); valid: the keys of \
         kind \"exec\": kind, interval, fastinter, downinter, timeout, rise, fall, alpha, \
         jitter, slow_start, passive_fall, command"
    );
}

#[test]
fn an_unknown_service_kind_is_one_error() {
    // The backend's `path` is not judged against a kind nobody knows.
    let e = parse(&service(
        "[service.health]\nkind = \"htp\"\npath = \"/a\"",
        "[[service.backend]]\naddress = \"127.0.0.1:8081\"\n[service.backend.health]\npath = \"/x\"\n",
    ))
    .unwrap_err();
    assert_eq!(e.len(), 1, "{e}");
    assert_eq!(e.errors()[0].path, "service[0].health.kind");
}
