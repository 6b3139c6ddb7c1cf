//! The example overlays: the k3s homelab (one stretched cluster).

use geodns::config::{ClusterPlacement, Config};

use crate::check_everything;

pub const REGIONS: [&str; 4] = ["london", "frankfurt", "seattle", "singapore"];

fn site_names(config: &Config) -> Vec<&str> {
    config.sites.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn homelab_overlay_is_one_stretched_cluster() {
    let found = check_everything();
    let homelab: Vec<_> = found.configs.iter().filter(|(at, _)| at.contains("examples/homelab/")).collect();
    assert_eq!(homelab.len(), 1, "the homelab config");
    let config = &homelab[0].1;
    assert_eq!(site_names(config), REGIONS);
    assert_eq!(config.kubernetes.len(), 1, "one stretched cluster");
    assert_eq!(config.kubernetes[0].placement, ClusterPlacement::Label("topology.kubernetes.io/region".into()));
    // The example app Service carries the hostname annotation.
    let app = found
        .services
        .iter()
        .find(|(at, _)| at.contains("examples/homelab/"))
        .map(|(_, s)| s)
        .expect("the example annotated Service");
    let ann = app.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(ann.get("geodns.io/hostname").map(String::as_str), Some("app.geo.example"));
}
