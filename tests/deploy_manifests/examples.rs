//! The example overlays, as `kubectl kustomize` renders them: the k3s homelab (one stretched
//! cluster, DNS pods on the host network of the glue nodes).

use geodns::config::{ClusterPlacement, Config};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{check_everything, deploy_dir, get, get_str, render, rendered};

pub const REGIONS: [&str; 4] = ["london", "frankfurt", "seattle", "singapore"];

fn site_names(config: &Config) -> Vec<&str> {
    config.sites.iter().map(|s| s.name.as_str()).collect()
}

fn deployment(docs: &[serde_yaml_ng::Value]) -> Deployment {
    serde_yaml_ng::from_value(rendered(docs, "Deployment", "geodns").clone()).unwrap()
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

/// k3s's ServiceLB publishes port 53 on every node and source-NATs what reaches a node without
/// a geodns pod, so the homelab's DNS pods answer on the host network of labelled nodes.
#[test]
fn homelab_dns_pods_run_on_the_host_network_of_labelled_nodes() {
    let docs = render(&deploy_dir().join("examples/homelab"));
    let d = deployment(&docs);
    let spec = d.spec.as_ref().unwrap();
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_network, Some(true), "hostNetwork");
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"), "cluster names still resolve");
    let selector = pod.node_selector.clone().unwrap_or_default();
    assert_eq!(selector.get("geodns.io/dns-server").map(String::as_str), Some("true"), "pinned to the DNS nodes");
    // Kubernetes refuses namespaced sysctls in the host's network namespace.
    let psc = pod.security_context.as_ref().unwrap();
    assert!(psc.sysctls.as_deref().unwrap_or_default().is_empty(), "no pod sysctls with hostNetwork");
    // Still non-root with no capability.
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user.or(psc.run_as_user), Some(65532));
    assert!(sc.capabilities.as_ref().and_then(|c| c.add.clone()).unwrap_or_default().is_empty());
    // One pod per node holds port 53: a rollout can only replace, not surge.
    let rolling = spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref()).expect("rollingUpdate");
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(0)), "maxSurge");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)), "maxUnavailable");
    // The DNS Service is no longer a LoadBalancer (ServiceLB), only a ClusterIP for CoreDNS.
    let svc: Service = serde_yaml_ng::from_value(rendered(&docs, "Service", "geodns").clone()).unwrap();
    let svc = svc.spec.unwrap();
    assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(svc.external_traffic_policy, None, "externalTrafficPolicy is only for LoadBalancer and NodePort");
    // Host networking is allowed only by the privileged Pod Security level.
    let ns = rendered(&docs, "Namespace", "geodns");
    let labels = get(get(ns, "metadata").unwrap(), "labels").unwrap();
    assert_eq!(get_str(labels, "pod-security.kubernetes.io/enforce"), Some("privileged"));
}
