//! The probe targets of the running config and discovery: every address a health-checked geo
//! name can answer with, given to the one health monitor the server has for its whole life.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::AppError;
use crate::config::{self, Config, HealthCheck};
use crate::model::Name;
use crate::sources::health::{self, HealthSnapshot, Monitor, Target};
use crate::sources::kube::KubeSnapshot;

/// The health monitor (one for the server's life, so verdicts outlive reloads and
/// discovery changes) and the targets it was last given.
pub(super) struct Probes {
    pub monitor: Monitor,
    pub rx: watch::Receiver<Arc<HealthSnapshot>>,
    pub clients: health::Clients,
    /// The config's targets (recomputed on reload only: a large config has many).
    pub configured: HashSet<Target>,
    /// Everything the monitor probes: `configured` plus what Kubernetes discovered.
    pub targets: HashSet<Target>,
}

/// Every (check, address) the config's names can answer with.
pub(super) fn configured_targets(config: &Config) -> HashSet<Target> {
    let mut out = HashSet::new();
    for g in config.zones.iter().flat_map(|z| &z.geo) {
        let Some((check, hc)) = g.health_check.as_ref().and_then(|c| config.health_checks.get_key_value(c)) else {
            continue;
        };
        for addr in g.sites.iter().flat_map(|(_, addrs)| addrs) {
            out.insert(Target { check: check.clone(), config: hc.clone(), addr: *addr });
        }
    }
    out
}

/// The configured targets plus every discovered address of a name with a health check:
/// a site that loses power loses its API server too, so only a probe can take its
/// addresses out of the answers.
pub(super) fn all_targets(
    config: &Config,
    configured: &HashSet<Target>,
    kube: Option<&KubeSnapshot>,
) -> HashSet<Target> {
    let mut out = configured.clone();
    let Some(kube) = kube else { return out };
    let checks: HashMap<&Name, (&String, &HealthCheck)> = config
        .zones
        .iter()
        .flat_map(|z| &z.geo)
        .filter_map(|g| Some((&g.name, config.health_checks.get_key_value(g.health_check.as_ref()?)?)))
        .collect();
    for d in &kube.discovered {
        if let Some((check, hc)) = checks.get(&d.name) {
            for addr in &d.addrs {
                out.insert(Target { check: (*check).clone(), config: (*hc).clone(), addr: *addr });
            }
        }
    }
    out
}

pub(super) fn start_probes(config: &Config, shutdown: &CancellationToken) -> Result<Probes, AppError> {
    let clients = health::Clients::new()?;
    verifying_client(config, &clients)?;
    let configured = configured_targets(config);
    let monitor = health::spawn(configured.iter().cloned().collect(), clients.clone(), shutdown.clone());
    let rx = monitor.subscribe();
    Ok(Probes { monitor, rx, clients, targets: configured.clone(), configured })
}

/// Builds the certificate-verifying probe client if a check of `config` needs one: an HTTPS
/// check that verifies cannot run without a CA store, and says so at start or reload rather
/// than at its first probe. Every other check runs without one.
pub(super) fn verifying_client(config: &Config, clients: &health::Clients) -> Result<(), AppError> {
    let verifies = |hc: &HealthCheck| matches!(hc.probe, config::Probe::Http { tls: true, tls_verify: true, .. });
    match config.health_checks.iter().find(|(_, hc)| verifies(hc)) {
        Some((check, _)) => {
            clients.verifying().map_err(|source| AppError::HealthCheckTls { check: check.clone(), source })?;
            Ok(())
        }
        None => Ok(()),
    }
}
