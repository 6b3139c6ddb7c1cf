//! The `kubernetes` section: the clusters to watch and how their Services are placed.

use std::path::Path;

use super::super::wire;
use super::*;

/// The `kubernetes` section: its clusters, each placed by a site or a node label.
pub(super) fn kubernetes(
    v: &mut V,
    path: &P,
    k: &wire::Kubernetes,
    site_ids: &HashMap<&str, SiteId>,
    base: &Path,
) -> KubernetesConfig {
    let mut clusters = Vec::new();
    let mut names = HashSet::new();
    for (i, c) in k.clusters.iter().enumerate() {
        let path = path.key("clusters").idx(i);
        if c.name.is_empty() {
            v.err(&path.key("name"), "a cluster needs a name");
        } else if !names.insert(c.name.as_str()) {
            v.err(&path.key("name"), format!("cluster {:?} is listed more than once", c.name));
        }
        let placement = match (&c.site, &c.site_label) {
            (Some(site), None) => v.site(&path.key("site"), site, site_ids).map(ClusterPlacement::Site),
            (None, Some(label)) if !label.is_empty() => Some(ClusterPlacement::Label(label.clone())),
            (None, Some(_)) => {
                v.err(&path.key("site_label"), "must not be empty");
                None
            }
            (Some(_), Some(_)) => {
                v.err(&path, "set either site (one cluster per site) or site_label (a stretched cluster), not both");
                None
            }
            (None, None) => {
                v.err(&path, "set site (one cluster per site) or site_label (a stretched cluster)");
                None
            }
        };
        if let Some(placement) = placement {
            clusters.push(ClusterConfig {
                name: c.name.clone(),
                kubeconfig: c.kubeconfig.as_ref().map(|p| base.join(p)),
                context: c.context.clone(),
                placement,
            });
        }
    }
    if k.clusters.is_empty() {
        v.err(&path.key("clusters"), "list at least one cluster, or remove the kubernetes section");
    }
    let sync_timeout = v.duration(&path.key("sync_timeout"), k.sync_timeout.as_deref(), DEFAULT_KUBE_SYNC_TIMEOUT);
    if sync_timeout.is_zero() {
        v.err(&path.key("sync_timeout"), "must be above 0");
    }
    KubernetesConfig { clusters, sync_timeout }
}
