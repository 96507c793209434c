//! `persistence_timeout` and its companions.

use super::*;

fn service(extra: &str) -> String {
    format!(
        "[[service]]\nname = \"api\"\nlisten = \"127.0.0.1:8080\"\n{extra}\n\
         [[service.backend]]\naddress = \"127.0.0.1:8081\"\n"
    )
}

fn persistence(extra: &str) -> Option<Persistence> {
    ok(&service(extra)).services[0].persistence
}

#[test]
fn off_unless_a_timeout_is_set() {
    assert_eq!(persistence(""), None);
    assert_eq!(persistence("persistence_timeout = \"0s\""), None);
    // Companions alone have no effect (so the timeout alone turns it off).
    assert_eq!(
        persistence("persistence_timeout = \"0s\"\npersistence_granularity = \"255.255.0.0\""),
        None
    );
}

#[test]
fn defaults_and_explicit_values() {
    assert_eq!(
        persistence("persistence_timeout = \"300s\""),
        Some(Persistence {
            timeout: Duration::from_secs(300),
            v4_prefix: 32,
            v6_prefix: 128,
            max_entries: Persistence::DEFAULT_MAX_ENTRIES,
        })
    );
    let p = persistence(
        "persistence_timeout = \"1h\"\npersistence_granularity = \"255.255.255.0\"\n\
         persistence_granularity_v6 = 64\npersistence_max_entries = 1000",
    )
    .unwrap();
    assert_eq!(
        (p.timeout, p.v4_prefix, p.v6_prefix, p.max_entries),
        (Duration::from_secs(3600), 24, 64, 1000)
    );
    assert_eq!(p.v4_netmask().to_string(), "255.255.255.0");
    for (mask, len) in [("0.0.0.0", 0), ("128.0.0.0", 1), ("255.255.254.0", 23)] {
        let text = format!("persistence_timeout = \"1s\"\npersistence_granularity = \"{mask}\"");
        assert_eq!(persistence(&text).unwrap().v4_prefix, len, "{mask}");
    }
}

#[test]
fn bad_persistence_values() {
    insta::assert_snapshot!(errors(&service(
        r#"persistence_timeout = "5 minutes"
persistence_granularity = "255.0.255.0"
persistence_granularity_v6 = 129
persistence_max_entries = 0"#
    )));
    let rendered: Vec<String> = ["24", "\"/20\"", "\"a.b.c.d\""]
        .iter()
        .map(|v| {
            errors(&service(&format!(
                "persistence_timeout = \"5m\"\npersistence_granularity = {v}"
            )))
        })
        .collect();
    insta::assert_snapshot!("prefix_lengths_name_their_netmask", rendered.join("\n"));
}
