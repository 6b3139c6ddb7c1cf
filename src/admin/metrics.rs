//! The series written at scrape time from the published [`Status`]: everything labelled by
//! something that can go away (an endpoint, a cluster, a geo name or site), so that its series
//! ends when it does, and the config reload state of this server.

use super::Status;
use crate::metrics::{
    ENDPOINT_UP, Exposition, HEALTH_FLIPS, KUBE_CONNECTED, KUBE_LAST_SYNC, KUBE_SYNCED, KUBE_WATCH_ERRORS, PROBES,
    RELOAD_OK, RELOAD_OK_AT, SITE_UP, SITE_UP_OMITTED, SITE_UP_SERIES_LIMIT,
};

/// The scrape-time families of `status`, at most `site_up_limit` `geodns_site_up` series.
pub fn render(status: &Status, site_up_limit: usize) -> String {
    let mut e = Exposition::new();
    let bool = |b: bool| if b { 1.0 } else { 0.0 };

    // Prometheus's own convention (prometheus_config_last_reload_successful): the start is
    // the first load; a rejected reload keeps the time of the config still served.
    let ok = status.config.last_reload.as_ref().is_none_or(|r| r.result == "ok");
    e.family(RELOAD_OK).sample(RELOAD_OK, &[], bool(ok));
    e.family(RELOAD_OK_AT).sample(RELOAD_OK_AT, &[], status.config.loaded_at);

    let endpoints = &status.endpoints;
    if !endpoints.is_empty() {
        e.family(ENDPOINT_UP);
        for ep in endpoints {
            e.sample(ENDPOINT_UP, &[("check", &ep.check), ("endpoint", &ep.address)], bool(ep.verdict_up));
        }
        e.family(PROBES);
        for ep in endpoints {
            for (result, n) in &ep.results {
                e.sample(PROBES, &[("check", &ep.check), ("endpoint", &ep.address), ("result", result)], *n as f64);
            }
        }
        e.family(HEALTH_FLIPS);
        for ep in endpoints {
            for (to, n) in [("up", ep.flips[0]), ("down", ep.flips[1])].into_iter().filter(|(_, n)| *n > 0) {
                e.sample(HEALTH_FLIPS, &[("check", &ep.check), ("endpoint", &ep.address), ("to", to)], n as f64);
            }
        }
    }

    let clusters = &status.kubernetes;
    if !clusters.is_empty() {
        e.family(KUBE_CONNECTED);
        for c in clusters {
            e.sample(KUBE_CONNECTED, &[("cluster", &c.name)], bool(c.connected));
        }
        e.family(KUBE_SYNCED);
        for c in clusters {
            e.sample(KUBE_SYNCED, &[("cluster", &c.name)], bool(c.synced));
        }
        e.family(KUBE_WATCH_ERRORS);
        for c in clusters {
            e.sample(KUBE_WATCH_ERRORS, &[("cluster", &c.name)], c.watch_errors as f64);
        }
        // A cluster that never delivered anything has no timestamp: `absent()` or
        // `geodns_kube_synced == 0` tells it.
        e.family(KUBE_LAST_SYNC);
        for c in clusters {
            if let Some(at) = c.last_sync {
                e.sample(KUBE_LAST_SYNC, &[("cluster", &c.name)], at);
            }
        }
    }

    let (mut written, mut omitted) = (0usize, 0usize);
    let names = status.names.sorted();
    let sites = status.names.sites();
    if !names.is_empty() {
        e.family(SITE_UP);
        for g in names {
            // Whole names only: a name's sites are all there or none is.
            if written + g.sites.len() > site_up_limit {
                omitted += g.sites.len();
                continue;
            }
            let name = g.name.to_string();
            for s in g.sites.iter() {
                e.sample(SITE_UP, &[("name", &name), ("site", &sites[s.site].name)], bool(s.up));
            }
            written += g.sites.len();
        }
    }
    e.family(SITE_UP_OMITTED).sample(SITE_UP_OMITTED, &[], omitted as f64);
    e.into_string()
}

/// [`render`] with the server's limit.
pub fn render_status(status: &Status) -> String {
    render(status, SITE_UP_SERIES_LIMIT)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::admin::{ConfigStatus, Names, ReloadStatus};
    use crate::routing::Inputs;

    fn status(names: usize) -> Status {
        let mut yaml = String::from(
            "sites:\n  london: { location: [51.51, -0.13] }\n  frankfurt: { location: [50.11, 8.68] }\n\
             zones:\n  geo.example.:\n    soa: { mname: ns1, rname: hostmaster, serial: 1 }\n    ns: [ns1]\n\
             \x20   records: { ns1: { A: [192.0.2.53] } }\n    geo:\n",
        );
        for i in 0..names {
            yaml.push_str(&format!("      n{i}: {{ sites: {{ london: [192.0.2.1], frankfurt: [192.0.2.2] }} }}\n"));
        }
        let config = crate::config::parse(&yaml, Path::new(".")).unwrap();
        let table =
            crate::routing::build(&config, Arc::new(crate::model::NoLocator), Inputs::default(), 1).into_table();
        Status { names: Names(Some(table)), ..Status::default() }
    }

    fn lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))).collect()
    }

    #[test]
    fn site_up_writes_whole_names_up_to_the_limit_and_counts_the_rest() {
        let s = status(3);
        let all = render(&s, 100);
        assert_eq!(lines(&all, SITE_UP).len(), 6, "{all}");
        assert!(all.contains("geodns_site_up{name=\"n0.geo.example.\",site=\"london\"} 1\n"));
        assert_eq!(lines(&all, SITE_UP_OMITTED), ["geodns_site_up_omitted_series 0"]);
        // A limit of 5 series: two whole names (4 series) fit, the third's 2 are counted.
        let capped = render(&s, 5);
        let written = lines(&capped, SITE_UP);
        assert_eq!(written.len(), 4);
        assert!(written.iter().all(|l| !l.contains("n2.geo.example.")), "names in order: {written:?}");
        assert_eq!(lines(&capped, SITE_UP_OMITTED), ["geodns_site_up_omitted_series 2"]);
    }

    #[test]
    fn the_reload_state_is_the_last_attempts() {
        let mut s = Status {
            config: ConfigStatus { loaded_at: 1_700_000_000.5, ..ConfigStatus::default() },
            ..Status::default()
        };
        let text = render(&s, 10);
        assert_eq!(lines(&text, RELOAD_OK), ["geodns_config_last_reload_successful 1"]);
        assert_eq!(lines(&text, RELOAD_OK_AT), ["geodns_config_last_reload_success_timestamp_seconds 1700000000.5"]);
        s.config.last_reload = Some(ReloadStatus { at: 1_700_000_100.0, result: "failed", error: Some("bad".into()) });
        let text = render(&s, 10);
        assert_eq!(lines(&text, RELOAD_OK), ["geodns_config_last_reload_successful 0"]);
        assert_eq!(lines(&text, RELOAD_OK_AT), ["geodns_config_last_reload_success_timestamp_seconds 1700000000.5"]);
        assert!(
            lines(&text, ENDPOINT_UP).is_empty() && !text.contains("# TYPE geodns_endpoint_up"),
            "no endpoints, no family"
        );
    }
}
