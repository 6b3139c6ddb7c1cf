//! Every file under `deploy/` is checked here: Kubernetes objects parse into their k8s-openapi
//! types (with no field silently ignored), the RBAC rules cover exactly what the watchers read,
//! the Deployment runs non-root with no capability (port 53 through the unprivileged-port
//! sysctl), the Service publishes 53 over UDP and TCP, every geodns config (in a ConfigMap or a
//! file) parses and validates, Secrets are placeholder templates, and scripts parse. A file this
//! test does not know how to check fails it, so nothing in `deploy/` goes unchecked.
//!
//! Beside it: `images` (the image and every tag are the crate version, never `latest`) and
//! `examples` (the homelab and multi-region overlays, rendered by `kubectl kustomize`).

mod examples;
mod images;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_yaml_ng::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deploy_dir() -> PathBuf {
    repo().join("deploy")
}

/// Where the multi-region example mounts the other clusters' kubeconfigs
/// (`<cluster>.kubeconfig`, from Secrets `geodns-kubeconfig-<cluster>`).
const KUBECONFIG_DIR: &str = "/var/run/secrets/geodns";

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// One parsed YAML document with where it came from.
struct Doc {
    file: PathBuf,
    index: usize,
    value: Value,
}

impl Doc {
    fn at(&self) -> String {
        format!("{} (document {})", rel(&self.file), self.index + 1)
    }
}

fn rel(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap_or(path).display().to_string()
}

fn read_yaml_docs(file: &Path) -> Vec<Doc> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(file).unwrap();
    let mut docs = Vec::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value =
            Value::deserialize(de).unwrap_or_else(|e| panic!("{} document {}: not YAML: {e}", rel(file), index + 1));
        if value.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        docs.push(Doc { file: file.to_owned(), index, value });
    }
    assert!(!docs.is_empty(), "{}: no YAML documents", rel(file));
    docs
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key).and_then(Value::as_str)
}

/// Parses a Kubernetes object into its k8s-openapi type, checking `apiVersion` and that the
/// type kept every field written (k8s-openapi ignores unknown fields; a typo like
/// `readOnlyRootFileSystem` must not pass silently).
fn typed<T>(doc: &Doc) -> T
where
    T: k8s_openapi::Resource + serde::de::DeserializeOwned + serde::Serialize,
{
    let api_version = get_str(&doc.value, "apiVersion").unwrap_or("");
    assert_eq!(api_version, T::API_VERSION, "{}: apiVersion of a {}", doc.at(), T::KIND);
    let object: T = serde_yaml_ng::from_value(doc.value.clone())
        .unwrap_or_else(|e| panic!("{}: not a valid {}: {e}", doc.at(), T::KIND));
    let written = serde_json::to_value(&doc.value).unwrap();
    let kept = serde_json::to_value(&object).unwrap();
    let mut lost = Vec::new();
    contained(&written, &kept, String::new(), &mut lost);
    assert!(lost.is_empty(), "{}: fields unknown to {} (typos?): {lost:?}", doc.at(), T::KIND);
    object
}

/// Records in `lost` every path of `written` that `kept` does not hold with the same value.
fn contained(written: &serde_json::Value, kept: &serde_json::Value, path: String, lost: &mut Vec<String>) {
    use serde_json::Value as J;
    match (written, kept) {
        (J::Object(w), J::Object(k)) => {
            for (key, wv) in w {
                let p = format!("{path}.{key}");
                match k.get(key) {
                    Some(kv) => contained(wv, kv, p, lost),
                    None if wv.is_null() => {}
                    None => lost.push(p),
                }
            }
        }
        (J::Array(w), J::Array(k)) if w.len() == k.len() => {
            for (i, (wv, kv)) in w.iter().zip(k).enumerate() {
                contained(wv, kv, format!("{path}[{i}]"), lost);
            }
        }
        (w, k) if w == k => {}
        _ => lost.push(path),
    }
}

#[derive(Default)]
struct Found {
    deployments: Vec<(String, Deployment)>,
    services: Vec<(String, Service)>,
    service_accounts: Vec<(String, ServiceAccount)>,
    cluster_roles: Vec<(String, ClusterRole)>,
    bindings: Vec<(String, ClusterRoleBinding)>,
    /// The dynamic-update store's Role and binding (deploy/examples/updates).
    roles: Vec<(String, Role)>,
    role_bindings: Vec<(String, RoleBinding)>,
    config_maps: Vec<(String, ConfigMap)>,
    secrets: Vec<(String, Secret)>,
    pdbs: Vec<(String, PodDisruptionBudget)>,
    namespaces: Vec<(String, Namespace)>,
    /// geodns configs: where, and the parsed config.
    configs: Vec<(String, geodns::config::Config)>,
    service_monitors: Vec<(String, Value)>,
    kustomizations: Vec<PathBuf>,
    /// Image references written in manifests (`image:` anywhere), with where.
    images: Vec<(String, String)>,
    /// Zones the CoreDNS snippets forward, without the trailing dot.
    corefile_zones: Vec<String>,
    scripts: usize,
    scrape_configs: usize,
    /// Alerting rule groups: the PrometheusRule's and the plain rule file's, with where.
    rule_groups: Vec<(String, Value)>,
    rule_tests: usize,
    corefile_snippets: usize,
    markdown: usize,
    dashboards: usize,
}

fn check_doc(doc: &Doc, found: &mut Found) {
    let at = doc.at();
    collect_images(&at, &doc.value, &mut found.images);
    let kind = get_str(&doc.value, "kind");
    match kind {
        Some("Deployment") => found.deployments.push((at, typed(doc))),
        Some("Service") => found.services.push((at, typed(doc))),
        Some("ServiceAccount") => found.service_accounts.push((at, typed(doc))),
        Some("ClusterRole") => found.cluster_roles.push((at, typed(doc))),
        Some("ClusterRoleBinding") => found.bindings.push((at, typed(doc))),
        Some("Role") => found.roles.push((at, typed(doc))),
        Some("RoleBinding") => found.role_bindings.push((at, typed(doc))),
        Some("PodDisruptionBudget") => found.pdbs.push((at, typed(doc))),
        Some("Namespace") => found.namespaces.push((at, typed(doc))),
        Some("Secret") => {
            let secret: Secret = typed(doc);
            check_secret(&at, &secret);
            found.secrets.push((at, secret));
        }
        Some("ConfigMap") => {
            let cm: ConfigMap = typed(doc);
            check_config_map(&at, &cm, found);
            found.config_maps.push((at, cm));
        }
        Some("Kustomization") => {
            check_kustomization(doc);
            found.kustomizations.push(doc.file.parent().unwrap().to_owned());
        }
        Some("ServiceMonitor") => {
            check_service_monitor(doc);
            found.service_monitors.push((at, doc.value.clone()));
        }
        Some("PrometheusRule") => {
            assert_eq!(get_str(&doc.value, "apiVersion"), Some("monitoring.coreos.com/v1"), "{at}: apiVersion");
            let groups = get(&doc.value, "spec").and_then(|s| get(s, "groups"));
            let groups = groups.unwrap_or_else(|| panic!("{at}: spec.groups"));
            check_rule_groups(&at, groups);
            found.rule_groups.push((at, groups.clone()));
        }
        Some(other) => panic!("{at}: kind {other:?} is not one this test knows how to check"),
        None if get(&doc.value, "groups").is_some() => {
            let groups = get(&doc.value, "groups").expect("checked");
            check_rule_groups(&at, groups);
            found.rule_groups.push((at, groups.clone()));
        }
        // promtool's rule unit tests; .ci/run runs them.
        None if get(&doc.value, "rule_files").is_some() && get(&doc.value, "tests").is_some() => found.rule_tests += 1,
        None if get(&doc.value, "scrape_configs").is_some() => {
            check_scrape_configs(doc);
            found.scrape_configs += 1;
        }
        None => panic!("{at}: a YAML document with no `kind` and no `scrape_configs`: unknown"),
    }
}

fn check_config_map(at: &str, cm: &ConfigMap, found: &mut Found) {
    let labels = cm.metadata.labels.clone().unwrap_or_default();
    if labels.get("app.kubernetes.io/component").map(String::as_str) == Some("updates") {
        // A dynamic-update store, made empty ahead of time (geodns fills it).
        assert!(cm.data.as_ref().is_none_or(BTreeMap::is_empty), "{at}: an update store is shipped empty");
        return;
    }
    let data = cm.data.as_ref().unwrap_or_else(|| panic!("{at}: ConfigMap without data"));
    let mut checked = 0;
    for (key, text) in data {
        if key == "config.yaml" {
            let config = geodns::config::parse(text, Path::new("/etc/geodns"))
                .unwrap_or_else(|e| panic!("{at}: config.yaml is not a valid geodns config:\n{:#?}", e.problems()));
            check_geodns_config(at, &config);
            found.configs.push((at.to_owned(), config));
            checked += 1;
        } else if key.ends_with(".server") || key.ends_with(".override") {
            // A CoreDNS Corefile snippet for k3s's coredns-custom ConfigMap.
            assert_eq!(cm.metadata.name.as_deref(), Some("coredns-custom"), "{at}: CoreDNS snippet");
            assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"), "{at}: CoreDNS snippet");
            found.corefile_zones.push(check_corefile(at, key, text));
            found.corefile_snippets += 1;
            checked += 1;
        } else {
            panic!("{at}: ConfigMap key {key:?} is not one this test knows how to check");
        }
    }
    assert!(checked > 0, "{at}: empty ConfigMap");
}

/// Every `image:` value in a manifest, however deep (pod templates, CronJobs, ...).
fn collect_images(at: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                match (k.as_str(), v.as_str()) {
                    (Some("image"), Some(image)) => out.push((at.to_owned(), image.to_owned())),
                    _ => collect_images(at, v, out),
                }
            }
        }
        Value::Sequence(s) => s.iter().for_each(|v| collect_images(at, v, out)),
        _ => {}
    }
}

/// A geodns config kept as a file (the multi-region overlays generate their ConfigMap from it).
fn check_config_file(file: &Path, found: &mut Found) {
    let at = rel(file);
    let text = std::fs::read_to_string(file).unwrap();
    let config = geodns::config::parse(&text, Path::new("/etc/geodns"))
        .unwrap_or_else(|e| panic!("{at}: not a valid geodns config:\n{:#?}", e.problems()));
    check_geodns_config(&at, &config);
    found.configs.push((at, config));
}

fn check_geodns_config(at: &str, config: &geodns::config::Config) {
    let s = &config.server;
    assert!(
        s.dns_listen.iter().any(|a| a.port() == 53 && a.ip().is_unspecified()),
        "{at}: dns_listen should be 0.0.0.0:53 (the container port), got {:?}",
        s.dns_listen
    );
    let admin = s.admin_listen.unwrap_or_else(|| panic!("{at}: admin_listen is needed for the probes"));
    assert_eq!(admin.port(), 9153, "{at}: admin_listen port (the container's admin port)");
    assert!(admin.ip().is_unspecified(), "{at}: admin_listen must be reachable by the kubelet probes");
    assert_eq!(
        config.geoip.as_deref(),
        Some(Path::new("/usr/share/geodns/geo-whois-asn-country.mmdb")),
        "{at}: the GeoIP database where the image ships it"
    );
    assert!(!config.kubernetes.clusters.is_empty(), "{at}: a kubernetes section with the in-cluster cluster");
    // The pod's own cluster through the in-cluster config; any other through a kubeconfig
    // mounted from a Secret, with the context named after the cluster.
    let (own, others): (Vec<_>, Vec<_>) =
        config.kubernetes.clusters.iter().partition(|c| c.kubeconfig.is_none() && c.context.is_none());
    assert_eq!(own.len(), 1, "{at}: exactly one cluster with the in-cluster config (no kubeconfig, no context)");
    for c in others {
        let (Some(path), Some(context)) = (&c.kubeconfig, &c.context) else {
            panic!("{at}: cluster {:?}: another cluster needs both kubeconfig and context", c.name)
        };
        assert_eq!(context, &c.name, "{at}: cluster {:?}: its kubeconfig context is named after it", c.name);
        assert_eq!(
            path,
            &Path::new(KUBECONFIG_DIR).join(format!("{context}.kubeconfig")),
            "{at}: cluster {:?}: kubeconfig where the Secret is mounted",
            c.name
        );
    }
    assert!(!config.zones.is_empty(), "{at}: no zones");
    // Kubernetes may feed every geo name here, and a site that loses power loses its API server
    // too: readiness alone cannot take it out, probes can.
    for zone in &config.zones {
        for name in &zone.geo {
            assert!(name.health_check.is_some(), "{at}: geo name {:?} needs a health_check", name.name);
        }
    }
}

/// A Secret in `deploy/` is never a real credential: either a request for a ServiceAccount
/// token (the cluster fills it in) or a kubeconfig template whose every credential is a
/// `REPLACE_WITH_...` placeholder.
fn check_secret(at: &str, secret: &Secret) {
    assert!(secret.data.is_none(), "{at}: a Secret with data: credentials do not belong in Git");
    let name = secret.metadata.name.as_deref().unwrap_or("");
    if secret.type_.as_deref() == Some("kubernetes.io/service-account-token") {
        let sa = secret.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/service-account.name"));
        assert!(sa.is_some(), "{at}: a token Secret names its ServiceAccount");
        assert!(secret.string_data.is_none(), "{at}: the token controller fills a token Secret in");
        return;
    }
    let data = secret.string_data.as_ref().unwrap_or_else(|| panic!("{at}: stringData"));
    assert_eq!(data.keys().collect::<Vec<_>>(), ["kubeconfig"], "{at}: one key, kubeconfig");
    let kubeconfig: Value = serde_yaml_ng::from_str(&data["kubeconfig"])
        .unwrap_or_else(|e| panic!("{at}: the kubeconfig is not YAML: {e}"));
    assert_eq!(get_str(&kubeconfig, "kind"), Some("Config"), "{at}: kubeconfig kind");
    let only = |key: &str| -> &Value {
        let list = get(&kubeconfig, key).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(list.len(), 1, "{at}: the kubeconfig has one entry in {key}");
        &list[0]
    };
    let (cluster, user, context) = (only("clusters"), only("users"), only("contexts"));
    let context_name = get_str(context, "name").unwrap_or("");
    assert_eq!(name, format!("geodns-kubeconfig-{context_name}"), "{at}: Secret named after its context");
    assert_eq!(get_str(&kubeconfig, "current-context"), Some(context_name), "{at}: current-context");
    let ctx = get(context, "context").unwrap_or_else(|| panic!("{at}: context"));
    assert_eq!(get_str(ctx, "cluster"), get_str(cluster, "name"), "{at}: the context's cluster");
    assert_eq!(get_str(ctx, "user"), get_str(user, "name"), "{at}: the context's user");
    let cluster = get(cluster, "cluster").unwrap_or_else(|| panic!("{at}: cluster"));
    let user = get(user, "user").unwrap_or_else(|| panic!("{at}: user"));
    for (what, value) in [
        ("server", get_str(cluster, "server")),
        ("certificate-authority-data", get_str(cluster, "certificate-authority-data")),
        ("token", get_str(user, "token")),
    ] {
        let value = value.unwrap_or_else(|| panic!("{at}: the kubeconfig has no {what}"));
        assert!(value.contains("REPLACE_WITH_"), "{at}: {what} should be a REPLACE_WITH_ placeholder, got {value:?}");
    }
}

/// A shell script shipped in `deploy/`: bash, executable, and it parses.
fn check_script(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let at = rel(file);
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.starts_with("#!/usr/bin/env bash\n"), "{at}: starts with #!/usr/bin/env bash");
    assert!(text.contains("set -euo pipefail"), "{at}: set -euo pipefail");
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "{at}: not executable");
    let out = std::process::Command::new("bash").arg("-n").arg(file).output().expect("bash");
    assert!(out.status.success(), "{at}: bash -n: {}", String::from_utf8_lossy(&out.stderr));
}

/// Checks a CoreDNS server block and returns the zone it forwards.
fn check_corefile(at: &str, key: &str, text: &str) -> String {
    assert_eq!(text.matches('{').count(), text.matches('}').count(), "{at}: {key}: unbalanced braces");
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(
        first.trim_end().ends_with('{') && first.contains(":53"),
        "{at}: {key}: should open a server block like `geo.example:53 {{`, got {first:?}"
    );
    let zone = first.trim().split(":53").next().unwrap().trim_end_matches('.').to_owned();
    let forward = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("forward "))
        .unwrap_or_else(|| panic!("{at}: {key}: no forward line"));
    let targets: Vec<&str> = forward.trim_end_matches('{').split_whitespace().skip(2).collect();
    assert!(!targets.is_empty(), "{at}: {key}: forward with no target");
    for t in targets {
        // CoreDNS forward takes addresses, not names.
        let addr = t.trim_start_matches("dns://");
        assert!(
            addr.parse::<std::net::IpAddr>().is_ok() || addr.parse::<std::net::SocketAddr>().is_ok(),
            "{at}: {key}: forward target {t:?} is not an address"
        );
    }
    zone
}

fn check_kustomization(doc: &Doc) {
    let at = doc.at();
    let dir = doc.file.parent().unwrap();
    assert_eq!(get_str(&doc.value, "apiVersion"), Some("kustomize.config.k8s.io/v1beta1"), "{at}: apiVersion");
    let name = doc.file.file_name().unwrap();
    assert_eq!(name, "kustomization.yaml", "{at}: kustomize only reads kustomization.yaml");
    let mut refs = Vec::new();
    for key in ["resources", "components"] {
        for r in get(&doc.value, key).and_then(Value::as_sequence).into_iter().flatten() {
            refs.push(r.as_str().unwrap_or_else(|| panic!("{at}: {key} entries are paths")).to_owned());
        }
    }
    for p in get(&doc.value, "patches").and_then(Value::as_sequence).into_iter().flatten() {
        match (get_str(p, "path"), get_str(p, "patch")) {
            (Some(path), None) => refs.push(path.to_owned()),
            (None, Some(inline)) => {
                let _: Value =
                    serde_yaml_ng::from_str(inline).unwrap_or_else(|e| panic!("{at}: inline patch is not YAML: {e}"));
                assert!(get(p, "target").is_some(), "{at}: an inline patch needs a target");
            }
            _ => panic!("{at}: a patch needs exactly one of path and patch"),
        }
    }
    assert!(!refs.is_empty() || get(&doc.value, "patches").is_some(), "{at}: lists nothing");
    for r in refs {
        let target = dir.join(&r);
        assert!(target.exists(), "{at}: {r:?} does not exist");
        if target.is_dir() {
            assert!(target.join("kustomization.yaml").is_file(), "{at}: {r:?} is not a kustomization");
        }
    }
}

fn check_service_monitor(doc: &Doc) {
    let at = doc.at();
    assert_eq!(get_str(&doc.value, "apiVersion"), Some("monitoring.coreos.com/v1"), "{at}: apiVersion");
    let spec = get(&doc.value, "spec").unwrap_or_else(|| panic!("{at}: no spec"));
    let labels = get(spec, "selector")
        .and_then(|s| get(s, "matchLabels"))
        .and_then(Value::as_mapping)
        .unwrap_or_else(|| panic!("{at}: spec.selector.matchLabels"));
    assert!(!labels.is_empty(), "{at}: empty selector");
    let endpoints =
        get(spec, "endpoints").and_then(Value::as_sequence).unwrap_or_else(|| panic!("{at}: spec.endpoints"));
    assert!(!endpoints.is_empty(), "{at}: no endpoints");
    for e in endpoints {
        assert_eq!(get_str(e, "path"), Some("/metrics"), "{at}: endpoint path");
        assert!(get_str(e, "port").is_some(), "{at}: endpoint port (by name)");
    }
}

/// Alerting rules: each has a name, an expression naming only metrics `src/metrics.rs`
/// defines, a severity and a summary.
fn check_rule_groups(at: &str, groups: &Value) {
    let defined = defined_metrics();
    let groups = groups.as_sequence().unwrap_or_else(|| panic!("{at}: groups is a list"));
    let mut alerts = 0;
    for rule in groups.iter().flat_map(|g| get(g, "rules").and_then(Value::as_sequence).into_iter().flatten()) {
        let name = get_str(rule, "alert").unwrap_or_else(|| panic!("{at}: a rule without an alert name"));
        let expr = get_str(rule, "expr").unwrap_or_else(|| panic!("{at}: {name}: no expr"));
        for metric in metric_names(expr) {
            assert!(defined.contains_key(&metric), "{at}: {name}: {metric} is not defined in src/metrics.rs");
        }
        assert!(get(rule, "labels").and_then(|l| get_str(l, "severity")).is_some(), "{at}: {name}: severity");
        assert!(get(rule, "annotations").and_then(|a| get_str(a, "summary")).is_some(), "{at}: {name}: summary");
        alerts += 1;
    }
    assert!(alerts > 0, "{at}: no alerts");
}

fn check_scrape_configs(doc: &Doc) {
    let at = doc.at();
    let jobs = get(&doc.value, "scrape_configs")
        .and_then(Value::as_sequence)
        .unwrap_or_else(|| panic!("{at}: scrape_configs is a list"));
    assert!(!jobs.is_empty(), "{at}: no scrape jobs");
    for job in jobs {
        let name = get_str(job, "job_name").unwrap_or_else(|| panic!("{at}: a job without job_name"));
        assert_eq!(get_str(job, "metrics_path"), Some("/metrics"), "{at}: job {name}: metrics_path");
        assert!(
            get(job, "static_configs").is_some() || get(job, "kubernetes_sd_configs").is_some(),
            "{at}: job {name}: no targets (static_configs or kubernetes_sd_configs)"
        );
        for sc in get(job, "static_configs").and_then(Value::as_sequence).into_iter().flatten() {
            for t in get(sc, "targets").and_then(Value::as_sequence).into_iter().flatten() {
                let t = t.as_str().unwrap_or("");
                assert!(t.ends_with(":9153"), "{at}: job {name}: target {t:?} is not the admin port");
            }
        }
    }
}

/// Markdown: not empty, and every relative link points at a file that exists.
fn check_markdown(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.trim_start().starts_with('#'), "{}: should start with a heading", rel(file));
    for (i, _) in text.match_indices("](") {
        let rest = &text[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let link = rest[..end].split('#').next().unwrap();
        if link.is_empty() || link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let target = file.parent().unwrap().join(link);
        assert!(target.exists(), "{}: broken link {link:?}", rel(file));
    }
}

/// A Grafana dashboard (JSON model).
fn check_dashboard(file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", rel(file)));
    assert!(
        v.get("panels").and_then(|p| p.as_array()).is_some_and(|p| !p.is_empty()),
        "{}: a Grafana dashboard needs panels",
        rel(file)
    );
    assert!(v.get("title").and_then(|t| t.as_str()).is_some(), "{}: dashboard title", rel(file));
    check_dashboard_metrics(file, &v);
}

/// The metric names `src/metrics.rs` defines (its `pub const NAME: &str = "geodns_...";`
/// lines), each with whether its doc comment says it is a histogram.
fn defined_metrics() -> BTreeMap<String, bool> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut defined = BTreeMap::new();
    let mut doc = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix("///") {
            doc.push_str(comment.trim());
            doc.push(' ');
            continue;
        }
        if line.starts_with("pub const ")
            && let Some(start) = line.find("= \"geodns_")
            && let Some(name) = line[start + 3..].strip_suffix("\";")
        {
            defined.insert(name.to_owned(), doc.starts_with("Histogram"));
        }
        doc.clear();
    }
    assert!(defined.len() >= 10, "src/metrics.rs: found only {defined:?}; has the constant syntax changed?");
    defined
}

/// Every `geodns_*` name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("geodns_") {
        let word_before = rest[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        if !word_before {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every PromQL expression in a dashboard: panel targets (rows' nested panels too),
/// annotation queries and templating queries, each with where it is.
fn dashboard_exprs(v: &serde_json::Value) -> Vec<(String, String)> {
    fn panels(list: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p.get("title").and_then(|t| t.as_str()).unwrap_or("?");
            for t in p.get("targets").and_then(|t| t.as_array()).into_iter().flatten() {
                if let Some(e) = t.get("expr").and_then(|e| e.as_str()) {
                    out.push((format!("panel {title:?}"), e.to_owned()));
                }
            }
            if let Some(nested) = p.get("panels") {
                panels(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    panels(&v["panels"], &mut out);
    for a in v["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a.get("expr").and_then(|e| e.as_str()) {
            out.push((format!("annotation {:?}", a["name"]), e.to_owned()));
        }
    }
    for t in v["templating"]["list"].as_array().into_iter().flatten() {
        let q = match &t["query"] {
            serde_json::Value::String(s) => Some(s.clone()),
            q => q.get("query").and_then(|q| q.as_str()).map(str::to_owned),
        };
        if let Some(q) = q.filter(|_| t["type"] == "query") {
            out.push((format!("variable {:?}", t["name"]), q));
        }
    }
    out
}

/// Every panel queries the `${DS_PROMETHEUS}` data source variable, and every `geodns_*`
/// metric a query names is one `src/metrics.rs` defines (histograms with their Prometheus
/// series suffixes `_bucket`, `_sum`, `_count`).
fn check_dashboard_metrics(file: &Path, v: &serde_json::Value) {
    let at = rel(file);
    assert!(
        v["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["name"] == "DS_PROMETHEUS" && t["type"] == "datasource"),
        "{at}: a `DS_PROMETHEUS` data source variable"
    );
    assert!(v["schemaVersion"].as_u64().is_some_and(|s| s >= 36), "{at}: schemaVersion");
    let mut ids = BTreeSet::new();
    let mut stack: Vec<&serde_json::Value> = vec![&v["panels"]];
    while let Some(list) = stack.pop() {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            assert!(ids.insert(p["id"].as_u64()), "{at}: panel {title:?}: duplicate or missing id");
            assert!(p["gridPos"].is_object(), "{at}: panel {title:?}: gridPos");
            if p["type"] == "row" {
                stack.push(&p["panels"]);
                continue;
            }
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{at}: panel {title:?}: data source");
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            assert!(targets.iter().any(|t| t["expr"].is_string()), "{at}: panel {title:?}: no query");
        }
    }

    let defined = defined_metrics();
    let exprs = dashboard_exprs(v);
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (place, expr) in &exprs {
        for name in metric_names(expr) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| defined.get(*b) == Some(&true));
            match base {
                Some(b) => used.insert(b.to_owned()),
                None if defined.contains_key(&name) => used.insert(name.clone()),
                None => {
                    unknown.push(format!("{place}: {name}"));
                    false
                }
            };
        }
    }
    assert!(unknown.is_empty(), "{at}: metrics not defined in src/metrics.rs: {unknown:#?}");
    assert!(!used.is_empty(), "{at}: queries no geodns_ metric");
}

fn check_everything() -> Found {
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    assert!(!files.is_empty(), "deploy/ is empty");
    let mut found = Found::default();
    for file in &files {
        match file.extension().and_then(|e| e.to_str()) {
            Some("yaml") if file.file_name().is_some_and(|n| n == "config.yaml") => {
                check_config_file(file, &mut found);
            }
            Some("yaml" | "yml") => {
                for doc in read_yaml_docs(file) {
                    check_doc(&doc, &mut found);
                }
            }
            Some("md") => {
                check_markdown(file);
                found.markdown += 1;
            }
            Some("json") => {
                check_dashboard(file);
                found.dashboards += 1;
            }
            Some("sh") => {
                check_script(file);
                found.scripts += 1;
            }
            _ => panic!("{}: a file this test does not know how to check", rel(file)),
        }
    }
    found
}

fn in_base(at: &str) -> bool {
    at.starts_with("deploy/base/")
}

fn one<'a, T>(items: &'a [(String, T)], what: &str) -> &'a T {
    let base: Vec<_> = items.iter().filter(|(at, _)| in_base(at)).collect();
    assert_eq!(base.len(), 1, "deploy/base should hold exactly one {what}");
    &base[0].1
}

#[test]
fn every_file_in_deploy_parses_and_checks() {
    let found = check_everything();
    assert!(found.kustomizations.len() >= 7, "the base, homelab and multi-region overlays");
    assert_eq!(found.corefile_snippets, 1, "the CoreDNS forward snippet");
    assert!(found.scripts >= 1, "the multi-region kubeconfig script");
    assert!(found.secrets.len() >= 5, "the multi-region token Secret and kubeconfig templates");
    assert_eq!(found.service_monitors.len(), 1, "the ServiceMonitor");
    assert_eq!(found.scrape_configs, 1, "the Prometheus scrape config");
    // The PrometheusRule and the plain rule file hold the same groups; promtool tests them.
    assert_eq!(found.rule_groups.len(), 2, "the PrometheusRule and the rule file: {:?}", found.rule_groups);
    assert_eq!(
        found.rule_groups[0].1, found.rule_groups[1].1,
        "{} and {} differ",
        found.rule_groups[0].0, found.rule_groups[1].0
    );
    assert_eq!(found.rule_tests, 1, "the promtool rule tests");
    assert!(found.configs.len() >= 2, "the base config and the homelab config");
    assert!(found.markdown >= 1);
    assert!(found.dashboards >= 1, "the Grafana dashboard");

    // The CoreDNS snippet forwards the zone that every shipped config serves.
    assert!(!found.corefile_zones.is_empty());
    let example = geodns::config::load(&repo().join("config/example.yaml")).expect("config/example.yaml");
    let configs = found.configs.iter().map(|(at, c)| (at.as_str(), c)).chain([("config/example.yaml", &example)]);
    for (at, config) in configs {
        for zone in &found.corefile_zones {
            let apex = format!("{zone}.");
            assert!(
                config.zones.iter().any(|z| z.apex.as_str() == apex),
                "{at}: does not serve {apex}, the zone deploy/coredns forwards"
            );
        }
    }
}

/// The metric-name check itself: it finds names in PromQL, accepts histogram suffixes only on
/// histograms, and rejects names `src/metrics.rs` does not define.
#[test]
fn dashboard_metric_check_catches_unknown_names() {
    assert_eq!(
        metric_names("sum by (le) (rate(geodns_query_duration_seconds_bucket{x=\"geodns_no\"}[5m])) / not_geodns_x"),
        ["geodns_query_duration_seconds_bucket", "geodns_no"]
    );
    let defined = defined_metrics();
    assert_eq!(defined.get("geodns_query_duration_seconds"), Some(&true));
    assert_eq!(defined.get("geodns_queries_total"), Some(&false));
    let dashboard = |expr: &str| {
        serde_json::json!({
            "title": "t", "schemaVersion": 39,
            "templating": { "list": [{ "name": "DS_PROMETHEUS", "type": "datasource" }] },
            "panels": [{ "id": 1, "title": "p", "type": "timeseries", "gridPos": {},
                         "datasource": { "uid": "${DS_PROMETHEUS}" },
                         "targets": [{ "expr": expr }] }]
        })
    };
    let file = deploy_dir().join("grafana/test.json");
    check_dashboard_metrics(&file, &dashboard("rate(geodns_queries_total[5m])"));
    check_dashboard_metrics(&file, &dashboard("rate(geodns_query_duration_seconds_count[5m])"));
    for bad in ["rate(geodns_querys_total[5m])", "rate(geodns_queries_total_count[5m])"] {
        let result = std::panic::catch_unwind(|| check_dashboard_metrics(&file, &dashboard(bad)));
        assert!(result.is_err(), "{bad} should be rejected");
    }
}

#[test]
fn cluster_role_covers_exactly_what_the_watchers_read() {
    let found = check_everything();
    assert!(!found.cluster_roles.is_empty(), "no ClusterRole in deploy/");
    let want: BTreeSet<(String, String)> = [("", "services"), ("discovery.k8s.io", "endpointslices"), ("", "nodes")]
        .into_iter()
        .map(|(g, r)| (g.to_owned(), r.to_owned()))
        .collect();
    let verbs: BTreeSet<String> = ["get", "list", "watch"].into_iter().map(String::from).collect();
    for (at, role) in &found.cluster_roles {
        assert!(role.aggregation_rule.is_none(), "{at}: no aggregation");
        let mut covered = BTreeSet::new();
        for rule in role.rules.iter().flatten() {
            let rule_verbs: BTreeSet<String> = rule.verbs.iter().cloned().collect();
            assert_eq!(rule_verbs, verbs, "{at}: verbs of {rule:?}");
            assert!(rule.non_resource_urls.is_none(), "{at}: nonResourceURLs");
            assert!(rule.resource_names.is_none(), "{at}: resourceNames would break list/watch");
            for g in rule.api_groups.iter().flatten() {
                for r in rule.resources.iter().flatten() {
                    covered.insert((g.clone(), r.clone()));
                }
            }
        }
        assert_eq!(covered, want, "{at}: rules must cover exactly services, endpointslices and nodes");
    }
    // The binding ties that role to the ServiceAccount the Deployment runs as.
    let role = one(&found.cluster_roles, "ClusterRole");
    let binding = one(&found.bindings, "ClusterRoleBinding");
    let sa = one(&found.service_accounts, "ServiceAccount");
    let deployment = one(&found.deployments, "Deployment");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.as_deref().unwrap_or_default();
    assert_eq!(subjects.len(), 1, "one subject: the geodns ServiceAccount");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), sa.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, sa.metadata.namespace);
    let pod = deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name, sa.metadata.name);
}

fn container(deployment: &Deployment) -> &Container {
    let pod = deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container");
    &pod.containers[0]
}

#[test]
fn deployment_runs_two_non_root_replicas_with_no_capability() {
    let found = check_everything();
    let d = one(&found.deployments, "Deployment");
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.as_ref().unwrap();

    // Spread across zones and nodes.
    let keys: BTreeSet<&str> =
        pod.topology_spread_constraints.iter().flatten().map(|c| c.topology_key.as_str()).collect();
    assert!(keys.contains("topology.kubernetes.io/zone"), "spread across zones: {keys:?}");
    assert!(keys.contains("kubernetes.io/hostname"), "spread across nodes: {keys:?}");
    let pod_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    for c in pod.topology_spread_constraints.iter().flatten() {
        let sel = c.label_selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default();
        assert!(!sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "spread selector");
    }

    // Security: non-root, read-only root, no escalation, ALL dropped and none added: port 53
    // comes from the namespaced sysctl, not from NET_BIND_SERVICE (which a non-root process
    // loses at exec unless the binary carries it as a file capability).
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    let c = container(d);
    let sc = c.security_context.as_ref().expect("container securityContext");
    assert_eq!(sc.run_as_non_root.or(psc.run_as_non_root), Some(true), "runAsNonRoot");
    let uid = sc.run_as_user.or(psc.run_as_user);
    assert_eq!(uid, Some(65532), "runAsUser");
    assert_eq!(sc.read_only_root_filesystem, Some(true), "readOnlyRootFilesystem");
    assert_eq!(sc.allow_privilege_escalation, Some(false), "allowPrivilegeEscalation");
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]), "drop ALL");
    assert!(caps.add.as_deref().unwrap_or_default().is_empty(), "no capability added: {:?}", caps.add);
    let sysctls: Vec<(&str, &str)> =
        psc.sysctls.iter().flatten().map(|s| (s.name.as_str(), s.value.as_str())).collect();
    assert_eq!(sysctls, [("net.ipv4.ip_unprivileged_port_start", "53")], "pod sysctls");
    let seccomp = sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref()).expect("seccompProfile");
    assert_eq!(seccomp.type_, "RuntimeDefault");
    assert_ne!(pod.host_network, Some(true));

    // The process: serve with the mounted config.
    assert_eq!(
        c.args.as_deref().unwrap_or_default(),
        ["serve", "--config", "/etc/geodns/config.yaml"].map(String::from)
    );
    assert!(c.image.as_deref().is_some_and(|i| !i.is_empty()), "image");

    // Ports 53/UDP, 53/TCP and the admin port; probes on the admin port.
    let ports: BTreeSet<(i32, String)> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.container_port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        .collect();
    for want in [(53, "UDP"), (53, "TCP"), (9153, "TCP")] {
        assert!(ports.contains(&(want.0, want.1.to_owned())), "container port {want:?}: {ports:?}");
    }
    let admin_name = c.ports.iter().flatten().find(|p| p.container_port == 9153).and_then(|p| p.name.clone());
    for (probe, path) in [(&c.liveness_probe, "/livez"), (&c.readiness_probe, "/readyz")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap_or_else(|| panic!("{path} probe"));
        assert_eq!(get.path.as_deref(), Some(path));
        let on_admin = match &get.port {
            IntOrString::Int(p) => *p == 9153,
            IntOrString::String(name) => Some(name) == admin_name.as_ref(),
        };
        assert!(on_admin, "{path} probe on the admin port");
    }
    let resources = c.resources.as_ref().expect("resources");
    assert!(resources.requests.as_ref().is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory")));
    assert!(resources.limits.as_ref().is_some_and(|r| r.contains_key("memory")), "memory limit");

    // The config comes from the base ConfigMap, mounted at /etc/geodns.
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/geodns")
        .expect("a volume mounted at /etc/geodns");
    let volume = pod.volumes.iter().flatten().find(|v| v.name == mount.name).expect("the config volume");
    let cm_name = volume.config_map.as_ref().map(|c| c.name.clone()).expect("a ConfigMap volume");
    let cm = one(&found.config_maps, "ConfigMap");
    assert_eq!(cm.metadata.name.as_ref(), Some(&cm_name));
    assert!(cm.data.as_ref().is_some_and(|d| d.contains_key("config.yaml")));

    // The kubelet waits longer than the server's own drain.
    let base_config = &found.configs.iter().find(|(at, _)| in_base(at)).expect("the base config").1;
    let grace =
        Duration::from_secs(pod.termination_grace_period_seconds.expect("terminationGracePeriodSeconds") as u64);
    assert!(grace > base_config.server.shutdown_grace, "terminationGracePeriodSeconds above shutdown_grace");

    // The PDB keeps one of them.
    let pdb = one(&found.pdbs, "PodDisruptionBudget").spec.as_ref().unwrap();
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    let sel = pdb.selector.as_ref().and_then(|s| s.match_labels.clone()).unwrap_or_default();
    assert!(!sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "PDB selects the pods");
}

#[test]
fn service_publishes_dns_over_udp_and_tcp() {
    let found = check_everything();
    let d = one(&found.deployments, "Deployment");
    let pod_labels: BTreeMap<String, String> =
        d.spec.as_ref().unwrap().template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let c = container(d);
    let dns = found
        .services
        .iter()
        .find(|(at, s)| in_base(at) && s.metadata.name.as_deref() == Some("geodns"))
        .map(|(_, s)| s)
        .expect("the geodns Service in deploy/base");
    let spec = dns.spec.as_ref().unwrap();
    let ports: BTreeSet<(i32, String)> =
        spec.ports.iter().flatten().map(|p| (p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into()))).collect();
    assert!(ports.contains(&(53, "UDP".into())), "53/UDP: {ports:?}");
    assert!(ports.contains(&(53, "TCP".into())), "53/TCP: {ports:?}");
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"), "keep client source addresses");

    // Every Service in the base selects the geodns pods and targets a real container port.
    for (at, svc) in found.services.iter().filter(|(at, _)| in_base(at)) {
        let spec = svc.spec.as_ref().unwrap();
        let sel = spec.selector.clone().unwrap_or_default();
        assert!(!sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "{at}: selector");
        for p in spec.ports.iter().flatten() {
            let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
            let hit = c.ports.iter().flatten().any(|cp| {
                cp.protocol.clone().unwrap_or_else(|| "TCP".into()) == proto
                    && match &p.target_port {
                        Some(IntOrString::String(n)) => cp.name.as_ref() == Some(n),
                        Some(IntOrString::Int(n)) => cp.container_port == *n,
                        None => cp.container_port == p.port,
                    }
            });
            assert!(hit, "{at}: port {:?} targets no container port", p.name);
        }
    }

    // The ServiceMonitor selects a Service with its port name.
    for (at, sm) in &found.service_monitors {
        let spec = get(sm, "spec").unwrap();
        let labels = get(get(spec, "selector").unwrap(), "matchLabels").unwrap().as_mapping().unwrap();
        let port = get_str(&get(spec, "endpoints").unwrap().as_sequence().unwrap()[0], "port").unwrap();
        let hit = found.services.iter().filter(|(at, _)| in_base(at)).any(|(_, s)| {
            let svc_labels = s.metadata.labels.clone().unwrap_or_default();
            labels.iter().all(|(k, v)| svc_labels.get(k.as_str().unwrap()).map(String::as_str) == v.as_str())
                && s.spec.as_ref().unwrap().ports.iter().flatten().any(|p| p.name.as_deref() == Some(port))
        });
        assert!(hit, "{at}: selects no base Service with a port named {port:?}");
    }
}

/// `kubectl kustomize DIR`, parsed: what `kubectl apply -k DIR` would send.
/// Needs kubectl on the PATH (`.ci/run` installs Debian's `kubernetes-client` when it is missing).
fn render(dir: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let out = match std::process::Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "kubectl is needed to build {} ({e}); install it (Debian: apt-get install kubernetes-client)",
            rel(dir)
        ),
    };
    assert!(out.status.success(), "kubectl kustomize {}: {}", rel(dir), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text).map(|de| Value::deserialize(de).unwrap()).collect()
}

/// The one object of `kind` named `name` in a build.
fn rendered<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let hits: Vec<_> = docs
        .iter()
        .filter(|v| {
            get_str(v, "kind") == Some(kind) && get(v, "metadata").and_then(|m| get_str(m, "name")) == Some(name)
        })
        .collect();
    assert_eq!(hits.len(), 1, "one {kind} {name}");
    hits[0]
}

/// The geodns config in a build's ConfigMap.
fn rendered_config(docs: &[Value]) -> geodns::config::Config {
    let cm: ConfigMap = serde_yaml_ng::from_value(rendered(docs, "ConfigMap", "geodns").clone()).unwrap();
    let text = cm.data.as_ref().and_then(|d| d.get("config.yaml")).expect("config.yaml");
    geodns::config::parse(text, Path::new("/etc/geodns"))
        .unwrap_or_else(|e| panic!("built config: {:#?}", e.problems()))
}

/// `kubectl kustomize` builds every kustomization (offline), so the overlays' patches apply.
#[test]
fn kustomizations_build() {
    let found = check_everything();
    let built: BTreeSet<String> = found.kustomizations.iter().map(|d| rel(d)).collect();
    let mut want = vec!["base".to_owned(), "examples/homelab".to_owned(), "examples/multi-region/shared".to_owned()];
    want.extend(examples::REGIONS.map(|r| format!("examples/multi-region/{r}")));
    for dir in want {
        assert!(built.contains(&format!("deploy/{dir}")), "deploy/{dir} is not a kustomization: {built:?}");
    }
    for dir in &found.kustomizations {
        let docs = render(dir);
        // The built output parses too, and any ConfigMap config in it is valid.
        let mut kinds = BTreeSet::new();
        for v in docs {
            kinds.insert(get_str(&v, "kind").unwrap_or("").to_owned());
            if get_str(&v, "kind") == Some("ConfigMap") {
                let cm: ConfigMap = serde_yaml_ng::from_value(v).unwrap();
                if let Some(text) = cm.data.as_ref().and_then(|d| d.get("config.yaml")) {
                    geodns::config::parse(text, Path::new("/etc/geodns"))
                        .unwrap_or_else(|e| panic!("{}: built config: {:#?}", rel(dir), e.problems()));
                }
            }
        }
        for kind in ["Deployment", "Service", "ConfigMap", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"] {
            assert!(kinds.contains(kind), "{}: the build lacks a {kind}", rel(dir));
        }
        // Templates and token requests are applied by hand or by the script, never by an overlay.
        assert!(!kinds.contains("Secret"), "{}: a build applies a Secret", rel(dir));
    }
}
