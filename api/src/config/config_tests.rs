//! The API config's parser: defaults, locations of errors, every key.

use super::*;

fn parse(s: &str) -> Result<Config, String> {
    Config::parse(s, Path::new("api.toml")).map_err(|e| e.to_string())
}

#[test]
fn defaults_use_sqlite_in_the_state_dir() {
    let c = parse("state_dir = \"/tmp/x\"\n[kinds.text]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
    assert_eq!(c.database_url, "sqlite:///tmp/x/api.db?mode=rwc");
    let k = &c.kinds["text"];
    assert_eq!(
        (k.max_concurrency, k.max_attempts),
        (DEFAULT_MAX_CONCURRENCY, 5)
    );
    assert_eq!(c.proxy_protocol, ProxyProtocol::Optional);
}

#[test]
fn errors_name_line_and_path() {
    let e = parse("[kinds.text]\nurl = \"http://a:1\"\ntimeout = \"5 parsecs\"\n").unwrap_err();
    assert!(
        e.starts_with("api.toml:3:11: kinds.text.timeout = \"5 parsecs\": not a duration"),
        "{e}"
    );
    let e = parse("lisen = \"1.2.3.4:5\"\n").unwrap_err();
    assert!(e.contains("lisen") && e.contains("unknown key"), "{e}");
    let e = parse("[kinds.text]\nurl = \"ftp://a\"\n").unwrap_err();
    assert!(e.contains("kinds.text.url"), "{e}");
    let e = parse("database_url = \"postgres://x\"\n").unwrap_err();
    assert!(e.contains("unsupported database"), "{e}");
}

#[test]
fn every_error_is_reported_with_its_location() {
    let e = parse(
        "listen = \"127.0.0.1:8080\"\nlease = \"30\"\ndefault_burst = 0\n\
         [kinds.text]\nurl = \"http://127.0.0.1:9\"\nconcurrency = 0\n\
         [kinds.thumbnail]\ntimeout = \"1w\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        "api.toml:2:9: lease = \"30\": not a duration: a number needs a unit (ms, s, m, h or d); \
         valid: a duration such as \"250ms\", \"2s\" or \"5m\", greater than zero\n\
         api.toml:3:17: default_burst = 0: out of range; valid: an integer from 1 to 4294967295\n\
         api.toml:6:15: kinds.text.concurrency = 0: out of range; valid: an integer from 1 to 16384\n\
         api.toml:7:1: kinds.thumbnail.url: missing required key; valid: http://HOST:PORT, such as \
         \"http://198.18.0.100:8001\" (workers speak plain HTTP behind the balancer)\n\
         api.toml:8:11: kinds.thumbnail.timeout = \"1w\": not a duration: unknown unit \"w\" \
         (units: ms, s, m, h, d); valid: a duration such as \"250ms\", \"2s\" or \"5m\", greater than zero"
    );
}

#[test]
fn durations_use_the_shared_grammar() {
    let c = parse(
        "request_log_retention = \"1d12h\"\nlease = \"1.5s\"\n\
         [kinds.text]\nurl = \"http://a:1\"\nretry_max = \"1m30s\"\n",
    )
    .unwrap();
    assert_eq!(c.request_log_retention, Duration::from_secs(36 * 3600));
    assert_eq!(c.lease, Duration::from_millis(1500));
    assert_eq!(c.kinds["text"].retry_max, Duration::from_secs(90));
    let e = parse("lease = \"0s\"\n").unwrap_err();
    assert!(
        e.starts_with("api.toml:1:9: lease = \"0s\": out of range"),
        "{e}"
    );
}

#[test]
fn bad_kind_names_and_rates_are_located() {
    let e = parse("default_rate = -1.5\n[kinds.\"a b\"]\nurl = \"http://a:1\"\n").unwrap_err();
    assert_eq!(
        e,
        "api.toml:1:16: default_rate = -1.5: out of range; valid: a number of requests per \
         second greater than zero, such as 10.0\n\
         api.toml:2:8: kinds.a b: not a kind name; valid: 1 to 64 characters from A-Z a-z 0-9 _ -"
    );
    let c = parse("default_rate = 3\n").unwrap();
    assert_eq!(c.default_rate, 3.0);
}

#[test]
fn database_settings_default_safe_and_are_located() {
    let c = parse("").unwrap();
    assert_eq!(c.db, DbSettings::default());
    assert_eq!(c.db.sqlite_synchronous, SqliteSync::Full);
    let c = parse("sqlite_synchronous = \"normal\"\nsubmit_window = \"0ms\"\nsubmit_batch = 1\n")
        .unwrap();
    assert_eq!(c.db.sqlite_synchronous, SqliteSync::Normal);
    assert_eq!((c.db.submit_window, c.db.submit_batch), (Duration::ZERO, 1));
    let e = parse(
        "sqlite_synchronous = \"off\"\nsubmit_window = \"1s\"\nsubmit_batch = 1001\n\
         sqlite_busy_timeout = \"0s\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e,
        "api.toml:1:22: sqlite_synchronous = \"off\": unknown synchronous mode; valid: one of full, normal\n\
         api.toml:2:17: submit_window = \"1s\": out of range; valid: a duration from \"0ms\" to \"100ms\", such as \"2ms\"\n\
         api.toml:3:16: submit_batch = 1001: out of range; valid: an integer from 1 to 1000\n\
         api.toml:4:23: sqlite_busy_timeout = \"0s\": out of range; valid: a duration such as \"250ms\", \"2s\" or \"5m\", greater than zero"
    );
}

#[test]
fn mariadb_scheme_is_mysql() {
    let c = parse("database_url = \"mariadb://u:p@127.0.0.1/t\"\n").unwrap();
    assert_eq!(c.database_url, "mysql://u:p@127.0.0.1/t");
}

#[test]
fn proxy_sources_default_to_this_host_and_bad_ones_are_located() {
    let c = parse("").unwrap();
    assert_eq!(
        c.proxy_protocol_from
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["127.0.0.0/8", "::1/128"]
    );
    let c = parse("proxy_protocol_from = [\"198.18.0.10\", \"198.18.1.0/24\"]\n").unwrap();
    assert_eq!(
        c.proxy_protocol_from
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>(),
        ["198.18.0.10/32", "198.18.1.0/24"]
    );
    assert!(
        parse("proxy_protocol_from = []\n")
            .unwrap()
            .proxy_protocol_from
            .is_empty()
    );
    let e = parse("proxy_protocol_from = [\"198.18.0.10/33\", \"lb1\"]\n").unwrap_err();
    assert_eq!(
        e,
        "api.toml:1:24: proxy_protocol_from[0] = \"198.18.0.10/33\": prefix \"33\" is not 0 to 32; \
         valid: an array of CIDRs or addresses, such as [\"198.18.0.10/32\", \"198.18.0.11\"]\n\
         api.toml:1:42: proxy_protocol_from[1] = \"lb1\": \"lb1\" is not an IP address; \
         valid: an array of CIDRs or addresses, such as [\"198.18.0.10/32\", \"198.18.0.11\"]"
    );
}

#[test]
fn http_timeouts_default_and_must_outlast_wait_max() {
    let kind = "[kinds.text]\nurl = \"http://127.0.0.1:9\"\n";
    let c = parse(kind).unwrap();
    assert_eq!(c.http, HttpTimeouts::default());
    assert!(c.http.request > c.lifecycle.wait_max);
    let c = parse(&format!(
        "header_read_timeout = \"2s\"\nkeepalive_timeout = \"1s\"\nrequest_timeout = \"70s\"\n{kind}"
    ))
    .unwrap();
    let s = Duration::from_secs;
    assert_eq!(
        (c.http.header_read, c.http.keepalive, c.http.request),
        (s(2), s(1), s(70))
    );
    let e = parse(&format!("request_timeout = \"60s\"\n{kind}")).unwrap_err();
    assert!(
        e.starts_with("api.toml:1:19: request_timeout = \"60s\"")
            && e.contains("longer than wait_max (1m)"),
        "{e}"
    );
    let e = parse(&format!("wait_max = \"2m\"\n{kind}")).unwrap_err();
    assert!(
        e.contains("wait_max") && e.contains("raise request_timeout"),
        "{e}"
    );
    let e = parse(&format!("header_read_timeout = \"0s\"\n{kind}")).unwrap_err();
    assert!(e.contains("header_read_timeout"), "{e}");
}
