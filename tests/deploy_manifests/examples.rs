//! The example overlays, as `kubectl kustomize` renders them: the k3s homelab (one stretched
//! cluster, DNS pods on the host network of the glue nodes) and the multi-region install (one
//! overlay per region, the other clusters reached with read-only kubeconfigs), and dynamic
//! updates kept in a ConfigMap (its Role, the empty object, the TSIG Secret volume).

use std::collections::BTreeSet;
use std::path::Path;

use geodns::config::{ClusterPlacement, Config};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{KUBECONFIG_DIR, check_everything, deploy_dir, get, get_str, render, rendered, rendered_config};

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
    assert_eq!(config.kubernetes.clusters.len(), 1, "one stretched cluster");
    assert_eq!(
        config.kubernetes.clusters[0].placement,
        ClusterPlacement::Label("topology.kubernetes.io/region".into())
    );
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

/// One overlay per region: each config lists its own cluster with the in-cluster config at its
/// own site and the other three by kubeconfig; apart from that the four configs are the same.
#[test]
fn multi_region_overlays_differ_only_in_their_own_cluster() {
    let found = check_everything();
    let dir = deploy_dir().join("examples/multi-region");
    let mut shared = None;
    for region in REGIONS {
        let at = format!("deploy/examples/multi-region/{region}/config.yaml");
        let config = &found.configs.iter().find(|(a, _)| *a == at).unwrap_or_else(|| panic!("{at}")).1;
        assert_eq!(site_names(config), REGIONS, "{at}: sites");
        let names: BTreeSet<&str> = config.kubernetes.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, BTreeSet::from(REGIONS), "{at}: one cluster per region");
        for c in &config.kubernetes.clusters {
            let site = config.site_id(&c.name).unwrap_or_else(|| panic!("{at}: no site {:?}", c.name));
            assert_eq!(c.placement, ClusterPlacement::Site(site), "{at}: cluster {:?} is at its own site", c.name);
            let in_cluster = c.kubeconfig.is_none() && c.context.is_none();
            assert_eq!(in_cluster, c.name == region, "{at}: only {region} uses the in-cluster config");
        }
        // The same everywhere but for the clusters.
        let rest = format!(
            "{:?}",
            (
                &config.server.dns_listen,
                &config.geoip,
                &config.sites,
                &config.client_networks,
                &config.health_checks,
                &config.zones
            )
        );
        match &shared {
            None => shared = Some(rest),
            Some(first) => assert_eq!(first, &rest, "{at}: differs from london's outside `kubernetes:`"),
        }

        // The overlay builds with that config and mounts every other cluster's kubeconfig.
        let docs = render(&dir.join(region));
        let built = rendered_config(&docs);
        assert_eq!(format!("{:?}", built.kubernetes), format!("{:?}", config.kubernetes), "{region}: built config");
        let d = deployment(&docs);
        let pod = d.spec.unwrap().template.spec.unwrap();
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == KUBECONFIG_DIR)
            .unwrap_or_else(|| panic!("{region}: a volume at {KUBECONFIG_DIR}"));
        let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
        let mut files = BTreeSet::new();
        for source in volume.projected.as_ref().expect("a projected volume").sources.iter().flatten() {
            let secret = source.secret.as_ref().expect("Secrets only");
            assert_eq!(secret.optional, Some(true), "{region}: a region has no Secret for its own cluster");
            for item in secret.items.iter().flatten() {
                assert_eq!(secret.name, format!("geodns-kubeconfig-{}", item.path.trim_end_matches(".kubeconfig")));
                files.insert(Path::new(KUBECONFIG_DIR).join(&item.path));
            }
        }
        for c in config.kubernetes.clusters.iter().filter(|c| c.name != region) {
            assert!(files.contains(c.kubeconfig.as_ref().unwrap()), "{region}: {:?} is not mounted", c.kubeconfig);
        }
    }

    // A kubeconfig template per cluster, and the read-only identity they hold a token of.
    let templates: BTreeSet<&str> = found
        .secrets
        .iter()
        .filter_map(|(_, s)| s.metadata.name.as_deref()?.strip_prefix("geodns-kubeconfig-"))
        .collect();
    assert_eq!(templates, BTreeSet::from(REGIONS), "one kubeconfig template per cluster");
    let token = found
        .secrets
        .iter()
        .find(|(at, s)| {
            at.contains("reader-rbac.yaml") && s.type_.as_deref() == Some("kubernetes.io/service-account-token")
        })
        .map(|(_, s)| s)
        .expect("the token Secret in reader-rbac.yaml");
    let sa = token.metadata.annotations.as_ref().unwrap()["kubernetes.io/service-account.name"].as_str();
    assert!(
        found
            .service_accounts
            .iter()
            .any(|(at, s)| at.contains("reader-rbac.yaml") && s.metadata.name.as_deref() == Some(sa)),
        "the token's ServiceAccount {sa:?} is in reader-rbac.yaml"
    );
    // Its binding gives that ServiceAccount the reader role (whose rules the RBAC test checks).
    let binding: &ClusterRoleBinding = found
        .bindings
        .iter()
        .find(|(at, _)| at.contains("reader-rbac.yaml"))
        .map(|(_, b)| b)
        .expect("the reader binding");
    assert!(
        found
            .cluster_roles
            .iter()
            .any(|(at, r)| at.contains("reader-rbac.yaml") && r.metadata.name.as_ref() == Some(&binding.role_ref.name))
    );
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!((subjects[0].kind.as_str(), subjects[0].name.as_str()), ("ServiceAccount", sa));
    // The script applies that file.
    let script = std::fs::read_to_string(dir.join("make-reader-kubeconfig.sh")).unwrap();
    assert!(script.contains("reader-rbac.yaml") && script.contains("geodns-kubeconfig-$name"));
}

/// The updates example: each zone kept in Kubernetes names a ConfigMap that the overlay ships
/// (empty), a Role grants exactly get/list/watch/update on that one name (geodns replaces the object, never patches it) and nothing
/// else (no create: it cannot be limited to a name), bound to the Deployment's ServiceAccount,
/// and every TSIG secret_file is in the mounted Secret.
#[test]
fn updates_overlay_grants_write_on_its_one_configmap_only() {
    use geodns::config::{TsigSecret, UpdateStore};
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

    let docs = render(&deploy_dir().join("examples/updates"));
    let config = rendered_config(&docs);
    let d = deployment(&docs);
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let sa = pod.service_account_name.clone().expect("a ServiceAccount");
    let stores: Vec<_> = config
        .zones
        .iter()
        .filter_map(|z| match &z.updates.as_ref()?.store {
            UpdateStore::ConfigMap(c) => Some(c.clone()),
            UpdateStore::Journal(_) => None,
        })
        .collect();
    assert_eq!(stores.len(), 1, "one zone kept in a ConfigMap");
    let clusters: Vec<_> = config.kubernetes.clusters.iter().collect();
    for store in &stores {
        let home = clusters.iter().find(|c| c.name == store.cluster).expect("the home cluster");
        assert!(home.kubeconfig.is_none() && home.context.is_none(), "the home cluster is this one (in-cluster)");
        let cm: ConfigMap = serde_yaml_ng::from_value(rendered(&docs, "ConfigMap", &store.name).clone()).unwrap();
        assert_eq!(cm.metadata.namespace.as_deref(), Some(store.namespace.as_str()));
        assert!(cm.data.unwrap_or_default().is_empty(), "shipped empty");

        let role: Role = serde_yaml_ng::from_value(rendered(&docs, "Role", "geodns-updates").clone()).unwrap();
        assert_eq!(role.metadata.namespace.as_deref(), Some(store.namespace.as_str()));
        let rules = role.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1, "one rule");
        let rule = &rules[0];
        assert_eq!(rule.api_groups.as_deref(), Some(&[String::new()][..]), "the core group");
        assert_eq!(rule.resources.as_deref(), Some(&["configmaps".to_owned()][..]));
        assert_eq!(rule.resource_names.as_deref(), Some(&[store.name.clone()][..]), "that one ConfigMap");
        let verbs: BTreeSet<&str> = rule.verbs.iter().map(String::as_str).collect();
        assert_eq!(verbs, BTreeSet::from(["get", "list", "watch", "update"]));

        let binding: RoleBinding =
            serde_yaml_ng::from_value(rendered(&docs, "RoleBinding", "geodns-updates").clone()).unwrap();
        assert_eq!(binding.metadata.namespace.as_deref(), Some(store.namespace.as_str()));
        assert_eq!((binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()), ("Role", "geodns-updates"));
        let subjects = binding.subjects.unwrap_or_default();
        assert_eq!(subjects.len(), 1);
        assert_eq!((subjects[0].kind.as_str(), subjects[0].name.as_str()), ("ServiceAccount", sa.as_str()));
    }
    // No other role in the build writes anything.
    for kind in ["Role", "ClusterRole"] {
        for doc in docs.iter().filter(|v| get_str(v, "kind") == Some(kind)) {
            let name = get(doc, "metadata").and_then(|m| get_str(m, "name")).unwrap_or_default();
            if name == "geodns-updates" {
                continue;
            }
            let rules = get(doc, "rules").and_then(serde_yaml_ng::Value::as_sequence).cloned().unwrap_or_default();
            for rule in rules {
                let verbs =
                    get(&rule, "verbs").and_then(serde_yaml_ng::Value::as_sequence).cloned().unwrap_or_default();
                for v in verbs {
                    assert!(matches!(v.as_str(), Some("get" | "list" | "watch")), "{kind} {name}: {v:?}");
                }
            }
        }
    }
    // Every key's secret_file is in a Secret volume mounted read-only.
    let c = &pod.containers[0];
    let secret_dirs: Vec<String> = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| {
            m.read_only == Some(true) && pod.volumes.iter().flatten().any(|v| v.name == m.name && v.secret.is_some())
        })
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(!config.tsig_keys.is_empty(), "a TSIG key");
    for key in &config.tsig_keys {
        let TsigSecret::File(path) = &key.secret else { panic!("{}: a key from the Secret, not inline", key.name) };
        let dir = path.parent().unwrap().to_string_lossy().into_owned();
        assert!(
            secret_dirs.contains(&dir),
            "{}: {} is not in a mounted Secret ({secret_dirs:?})",
            key.name,
            path.display()
        );
    }
}
