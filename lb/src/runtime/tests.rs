//! The balancer's side of the VRRP wiring ([`super::VrrpLink`]): status
//! shows what VRRP publishes, and a reload hands VRRP the new instances and
//! returns only once they are applied.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::*;

const CONFIG: &str = r#"
[[service]]
name = "api"
listen = "127.0.0.1:PORT"
[[service.backend]]
address = "127.0.0.1:9"

[[vrrp]]
name = "vi1"
interface = "eth0"
priority = 100
virtual_ips = ["198.18.0.100/24"]
virtual_router_id = 51
"#;

fn vrrp_status(state: &str) -> VrrpStatus {
    VrrpStatus {
        instance: "vi1".into(),
        interface: "eth0".into(),
        vrid: 51,
        version: 3,
        state: state.into(),
        priority: 100,
        configured_priority: 100,
        master: None,
        vips: vec!["198.18.0.100/24".into()],
        tracks_down: Vec::new(),
    }
}

#[tokio::test]
async fn status_shows_vrrp_and_reload_waits_for_vrrp_to_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lb.toml");
    // A port free a moment ago (the config refuses port 0).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(&path, CONFIG.replace("PORT", &port.to_string())).unwrap();
    let (status, status_rx) = watch::channel(Vec::new());
    let (reload, mut reloads) = mpsc::channel(1);
    let opts = Options {
        splice: false,
        drain_file: None,
        vrrp: Some(VrrpLink {
            status: status_rx,
            reload,
        }),
    };
    let bal = Balancer::start(Config::load(&path).unwrap(), opts)
        .await
        .unwrap();
    assert!(bal.status().vrrp.is_empty());
    status.send_replace(vec![vrrp_status("backup")]);
    assert_eq!(bal.status().vrrp, [vrrp_status("backup")]);

    let reloading = tokio::spawn({
        let bal = bal.clone();
        async move { bal.reload().await }
    });
    let req = tokio::time::timeout(Duration::from_secs(10), reloads.recv())
        .await
        .expect("a reload asks VRRP to apply")
        .unwrap();
    assert_eq!(req.configs.len(), 1);
    assert_eq!(req.configs[0].name, "vi1");
    assert!(!reloading.is_finished(), "the reload waits for VRRP");
    req.done.send(()).unwrap();
    let summary = reloading.await.unwrap().unwrap();
    assert_eq!(summary.listeners_kept, 1);
    bal.shutdown(Duration::from_secs(1)).await;
}
