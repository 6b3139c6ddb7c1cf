//! Metric names, their labels and units, in one place. Every name has the `geodns_` prefix and
//! a unit suffix; every label has a closed set of values (or values bounded by the config:
//! geo names, sites, health checks, endpoints, clusters).
//!
//! The Prometheus recorder is installed once per process by [`install`]; the admin server
//! renders it. Series labelled by things that come and go (endpoints, clusters, names and
//! sites) are not recorded: the admin server writes them at scrape time from the status the
//! server publishes ("Scrape time" below), so a series ends when its endpoint, cluster or
//! name does, and each server in a process (tests) reports its own.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{KeyName, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

mod exposition;

pub use exposition::Exposition;

/// Counter. Queries answered, by `transport` (udp, tcp) and `rcode` (noerror, nxdomain,
/// servfail, refused, formerr, notimp, badvers, other).
pub const QUERIES: &str = "geodns_queries_total";
/// Counter. Queries by `ecs` (present, absent).
pub const QUERIES_ECS: &str = "geodns_queries_ecs_total";
/// Histogram. The ECS scope prefix length returned, for queries that carried ECS.
pub const ECS_SCOPE: &str = "geodns_ecs_scope_prefix_length";
/// Histogram. Time from a decoded query to its encoded response, in seconds.
pub const QUERY_DURATION: &str = "geodns_query_duration_seconds";
/// Counter. Geo answers by `name` and `site` (the first site answered from).
pub const ANSWERS: &str = "geodns_answers_total";
/// Counter. Probe results by `check`, `endpoint` and `result` (pass, or a failure kind).
/// Written at scrape time from the health snapshot: only endpoints probed now.
pub const PROBES: &str = "geodns_probes_total";
/// Counter. Health state flips by `check`, `endpoint` and `to` (up, down). Scrape time.
pub const HEALTH_FLIPS: &str = "geodns_health_flips_total";
/// Gauge. 1 when an endpoint is up or not yet judged (fail-open), 0 when down; by `check`,
/// `endpoint`. Scrape time: an endpoint that is no longer probed has no series.
pub const ENDPOINT_UP: &str = "geodns_endpoint_up";
/// Gauge. 1 when a site serves a geo name (healthy, ready and not drained), 0 when not; by
/// `name` and `site`, from the routing table being served. Scrape time, at most
/// [`SITE_UP_SERIES_LIMIT`] series.
pub const SITE_UP: &str = "geodns_site_up";
/// Gauge. The (name, site) pairs left out of [`SITE_UP`] by its series limit.
pub const SITE_UP_OMITTED: &str = "geodns_site_up_omitted_series";
/// Counter. Routing table rebuilds by `result` (ok, failed).
pub const REBUILDS: &str = "geodns_table_rebuilds_total";
/// Histogram. Time to build a routing table, in seconds.
pub const BUILD_DURATION: &str = "geodns_table_build_duration_seconds";
/// Gauge. The generation of the table being served.
pub const GENERATION: &str = "geodns_table_generation";
/// Gauge. The earliest expiration of the signatures the table served carries, as a Unix time
/// in seconds (absent for unsigned configs). Alert when it comes within a few days of now.
pub const DNSSEC_EXPIRY: &str = "geodns_dnssec_earliest_expiry_timestamp_seconds";
/// Counter. Config (and GeoIP database) reloads by `result` (ok, failed).
pub const RELOADS: &str = "geodns_config_reloads_total";
/// Gauge. 1 when the last config load (the start, or the last reload) succeeded, 0 when the
/// last reload was rejected. Scrape time.
pub const RELOAD_OK: &str = "geodns_config_last_reload_successful";
/// Gauge. When the config being served was loaded (Unix seconds). Scrape time.
pub const RELOAD_OK_AT: &str = "geodns_config_last_reload_success_timestamp_seconds";
/// Counter. Kubernetes watch errors by `cluster`. Scrape time.
pub const KUBE_WATCH_ERRORS: &str = "geodns_kube_watch_errors_total";
/// Gauge. When each cluster's API server last delivered list or watch data (a completed
/// list, a watch event, a bookmark), Unix seconds, by `cluster`. Scrape time.
pub const KUBE_LAST_SYNC: &str = "geodns_kube_last_sync_timestamp_seconds";
/// Gauge. 1 while a cluster's API server is reachable, by `cluster`. Scrape time.
pub const KUBE_CONNECTED: &str = "geodns_kube_connected";
/// Gauge, per cluster: 1 once its first full list is in. A 0 after `kubernetes.sync_timeout`
/// is a cluster the instance went ready without (`/status` says `sync_timed_out`). Scrape time.
pub const KUBE_SYNCED: &str = "geodns_kube_synced";
/// Counter. UDP responses held back by response rate limiting, by `action` (slip: sent
/// truncated with TC=1; drop: not sent).
pub const RRL_LIMITED: &str = "geodns_rrl_limited_total";
/// Counter. UPDATE messages (RFC 2136) answered, by `result`: the response code (NOERROR,
/// REFUSED, NXRRSET, ...), or the TSIG error of a NOTAUTH (BADKEY, BADSIG, BADTIME).
pub const UPDATES: &str = "geodns_updates_total";
/// Gauge, always 1, labelled with `version`.
pub const BUILD_INFO: &str = "geodns_build_info";

/// At most this many `geodns_site_up` series are written per scrape (names in alphabetical
/// order, each with all its sites); the rest are counted in `geodns_site_up_omitted_series`.
/// 10,000 series is a few hundred kilobytes of exposition: 1,000 names at 10 sites.
pub const SITE_UP_SERIES_LIMIT: usize = 10_000;

/// The Prometheus type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Every metric family the server exports, with its type and HELP text: the single source of
/// both the `# HELP` lines and the table in docs/operations.md (a test holds them equal).
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (QUERIES, Kind::Counter, "DNS queries answered, by transport and response code."),
    (QUERIES_ECS, Kind::Counter, "DNS queries by whether they carried EDNS Client Subnet."),
    (ECS_SCOPE, Kind::Histogram, "ECS scope prefix length returned to queries that carried ECS."),
    (QUERY_DURATION, Kind::Histogram, "Seconds from a decoded query to its encoded response."),
    (ANSWERS, Kind::Counter, "Geo answers by name and the first site answered from."),
    (PROBES, Kind::Counter, "Health probe results by check, endpoint and result (pass or the failure kind)."),
    (HEALTH_FLIPS, Kind::Counter, "Health state changes by check, endpoint and new state."),
    (ENDPOINT_UP, Kind::Gauge, "1 if a probed endpoint is up or not yet judged, 0 if down."),
    (SITE_UP, Kind::Gauge, "1 if a site serves a geo name (healthy, ready, not drained), 0 if not."),
    (SITE_UP_OMITTED, Kind::Gauge, "Name and site pairs left out of geodns_site_up by its series limit."),
    (REBUILDS, Kind::Counter, "Routing table rebuilds by result."),
    (BUILD_DURATION, Kind::Histogram, "Seconds to build a routing table."),
    (GENERATION, Kind::Gauge, "Generation of the routing table being served."),
    (DNSSEC_EXPIRY, Kind::Gauge, "Unix time the earliest signature of the served table expires."),
    (RELOADS, Kind::Counter, "Config and GeoIP database reloads by result."),
    (UPDATES, Kind::Counter, "Dynamic updates (RFC 2136) by result."),
    (RELOAD_OK, Kind::Gauge, "1 if the last config load or reload succeeded, 0 if the last reload was rejected."),
    (RELOAD_OK_AT, Kind::Gauge, "Unix time the config being served was loaded."),
    (KUBE_WATCH_ERRORS, Kind::Counter, "Kubernetes list and watch errors by cluster."),
    (KUBE_LAST_SYNC, Kind::Gauge, "Unix time a cluster's API server last delivered a list, watch event or bookmark."),
    (KUBE_CONNECTED, Kind::Gauge, "1 while a cluster's API server answers, 0 during an outage."),
    (KUBE_SYNCED, Kind::Gauge, "1 once a cluster's first full list is in."),
    (RRL_LIMITED, Kind::Counter, "UDP responses held back by response rate limiting, by action."),
    (BUILD_INFO, Kind::Gauge, "Always 1, labelled with the geodns version."),
];

/// The type and HELP text of `name` (one of [`FAMILIES`]).
pub fn family(name: &str) -> (Kind, &'static str) {
    FAMILIES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, kind, help)| (*kind, *help))
        .unwrap_or_else(|| panic!("metric {name} is not listed in metrics::FAMILIES"))
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(QUERY_DURATION.to_owned()),
                &[1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(ECS_SCOPE.to_owned()),
                    &[0.0, 8.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 56.0, 64.0, 128.0],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full(BUILD_DURATION.to_owned()),
                    &[1e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0],
                )
            })
            .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        // Described on the recorder itself, not through the global macros: another recorder
        // may be the global one (a test harness), and ours must still say what each metric is.
        // Families written at scrape time (see `admin`) carry their own HELP lines.
        for (name, kind, help) in FAMILIES {
            let (name, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
            match kind {
                Kind::Counter => recorder.describe_counter(name, None, help),
                Kind::Gauge => recorder.describe_gauge(name, None, help),
                Kind::Histogram => recorder.describe_histogram(name, None, help),
            }
        }
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); ours still renders what
        // is recorded through it.
        let _ = metrics::set_global_recorder(recorder);
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Runs the recorder's upkeep (histogram bucket maintenance) periodically until cancelled.
pub async fn upkeep(every: Duration, shutdown: tokio_util::sync::CancellationToken) {
    let handle = install();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => handle.run_upkeep(),
            _ = shutdown.cancelled() => return,
        }
    }
}
