//! `geodns check --config FILE`: what the config serves, in a few lines.

use std::path::Path;

use serde::Serialize;

use crate::load::Loaded;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub config: String,
    pub zones: Vec<ZoneSummary>,
    pub sites: Vec<SiteSummary>,
    pub client_networks: usize,
    pub health_checks: Vec<String>,
    pub kubernetes_clusters: Vec<String>,
    pub geoip: Option<GeoIpSummary>,
}

#[derive(Debug, Serialize)]
pub struct ZoneSummary {
    pub apex: String,
    pub static_names: usize,
    pub geo_names: Vec<GeoNameSummary>,
    /// Records applied by dynamic updates, when the zone takes updates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic: Option<DynamicSummary>,
}

/// A zone's dynamic records and where they come from (its journal, or its ConfigMap).
#[derive(Debug, Serialize)]
pub struct DynamicSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// `NAMESPACE/NAME in cluster CLUSTER`, for a zone kept in Kubernetes (check does not
    /// contact the API: the records listed are none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configmap: Option<String>,
    /// The SOA serial served with them.
    pub serial: u32,
    /// `NAME TTL TYPE DATA`, one per record.
    pub records: Vec<String>,
    /// Why the journal could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn dynamic(zone: &crate::config::ZoneConfig) -> Option<DynamicSummary> {
    let updates = zone.updates.as_ref()?;
    let (state, error) = match &updates.store {
        crate::config::UpdateStore::Journal(path) => match crate::updates::journal::read(path) {
            Ok(state) => (state.unwrap_or_default(), None),
            Err(e) => (Default::default(), Some(e.to_string())),
        },
        crate::config::UpdateStore::ConfigMap(_) => (Default::default(), None),
    };
    let records = state
        .names
        .iter()
        .flat_map(|(name, node)| node.rdata.iter().map(move |d| format!("{name} {} {} {d}", node.ttl, d.rtype())))
        .collect();
    Some(DynamicSummary {
        journal: updates.store.journal().map(|p| p.display().to_string()),
        configmap: match &updates.store {
            crate::config::UpdateStore::ConfigMap(c) => {
                Some(format!("{}/{} in cluster {}", c.namespace, c.name, c.cluster))
            }
            crate::config::UpdateStore::Journal(_) => None,
        },
        serial: crate::updates::served_serial(zone, &state),
        records,
        error,
    })
}

#[derive(Debug, Serialize)]
pub struct GeoNameSummary {
    pub name: String,
    pub sites: Vec<String>,
    pub ttl: u32,
    pub all_down: &'static str,
    pub health_check: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SiteSummary {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Serialize)]
pub struct GeoIpSummary {
    pub path: String,
    pub database_type: String,
    pub build_date: String,
    pub ip_version: u16,
}

pub fn summarise(loaded: &Loaded, path: &Path) -> Summary {
    let c = &loaded.config;
    Summary {
        config: path.display().to_string(),
        zones: c
            .zones
            .iter()
            .map(|z| ZoneSummary {
                apex: z.apex.to_string(),
                static_names: z.records.len(),
                dynamic: dynamic(z),
                geo_names: z
                    .geo
                    .iter()
                    .map(|g| GeoNameSummary {
                        name: g.name.to_string(),
                        sites: g.sites.iter().map(|(s, _)| c.sites[*s].name.clone()).collect(),
                        ttl: g.ttl,
                        all_down: g.all_down.as_str(),
                        health_check: g.health_check.clone(),
                    })
                    .collect(),
            })
            .collect(),
        sites: c
            .sites
            .iter()
            .map(|s| SiteSummary { name: s.name.clone(), latitude: s.location.lat, longitude: s.location.lon })
            .collect(),
        client_networks: c.client_networks.len(),
        health_checks: c.health_checks.keys().cloned().collect(),
        kubernetes_clusters: c.kubernetes.clusters.iter().map(|k| k.name.clone()).collect(),
        geoip: loaded.geoip.as_ref().map(|db| {
            let m = db.metadata();
            GeoIpSummary {
                path: db.path().display().to_string(),
                database_type: m.database_type.clone(),
                build_date: date(m.build_epoch),
                ip_version: m.ip_version,
            }
        }),
    }
}

pub fn render(s: &Summary) -> String {
    let mut out = format!("{}: OK\n", s.config);
    for z in &s.zones {
        out.push_str(&format!(
            "zone       {} ({} static names, {} geo names)\n",
            z.apex,
            z.static_names,
            z.geo_names.len()
        ));
        for g in &z.geo_names {
            out.push_str(&format!(
                "  geo      {} -> {} (ttl {}, all_down {}{})\n",
                g.name,
                if g.sites.is_empty() { "(sites from kubernetes)".to_owned() } else { g.sites.join(", ") },
                g.ttl,
                g.all_down,
                g.health_check.as_ref().map_or(String::new(), |h| format!(", health check {h}"))
            ));
        }
        if let Some(d) = &z.dynamic {
            if let Some(configmap) = &d.configmap {
                out.push_str(&format!(
                    "  updates  kept in the ConfigMap {configmap} (served as read from the API; check does not contact it)\n"
                ));
            }
            if let Some(journal) = &d.journal {
                out.push_str(&format!(
                    "  updates  {} dynamic records, serial {}, from journal {}{}\n",
                    d.records.len(),
                    d.serial,
                    journal,
                    d.error.as_ref().map_or(String::new(), |e| format!(" (unreadable: {e})"))
                ));
            }
            for r in &d.records {
                out.push_str(&format!("  dynamic  {r}\n"));
            }
        }
    }
    let sites: Vec<String> = s.sites.iter().map(|x| format!("{} ({}, {})", x.name, x.latitude, x.longitude)).collect();
    out.push_str(&format!("sites      {}\n", sites.join(", ")));
    out.push_str(&format!("networks   {} client_networks entries\n", s.client_networks));
    if !s.health_checks.is_empty() {
        out.push_str(&format!("checks     {}\n", s.health_checks.join(", ")));
    }
    if !s.kubernetes_clusters.is_empty() {
        out.push_str(&format!("clusters   {}\n", s.kubernetes_clusters.join(", ")));
    }
    match &s.geoip {
        Some(g) => out.push_str(&format!(
            "geoip      {}: {}, built {}, IPv{}\n",
            g.path,
            g.database_type,
            g.build_date,
            if g.ip_version == 6 { "4+IPv6".to_owned() } else { g.ip_version.to_string() }
        )),
        None => out.push_str("geoip      none (clients are placed by client_networks only)\n"),
    }
    out
}

/// "YYYY-MM-DD" for a Unix time (proleptic Gregorian calendar, UTC).
pub(super) fn date(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates() {
        assert_eq!(super::date(0), "1970-01-01");
        assert_eq!(super::date(1_700_000_000), "2023-11-14");
        assert_eq!(super::date(951_782_400), "2000-02-29");
    }
}
