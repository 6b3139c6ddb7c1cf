//! Metric names, their labels and units, in one place. Every name has the `geodns_` prefix and
//! a unit suffix; every label has a closed set of values (or values bounded by the config:
//! geo names, sites, health checks, endpoints, clusters).
//!
//! The Prometheus recorder is installed once per process by [`install`]; the admin server
//! renders it.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
pub const PROBES: &str = "geodns_probes_total";
/// Counter. Health state flips by `check`, `endpoint` and `to` (up, down).
pub const HEALTH_FLIPS: &str = "geodns_health_flips_total";
/// Gauge. 1 when an endpoint is up or not yet judged (fail-open), 0 when down; by `check`, `endpoint`.
pub const ENDPOINT_UP: &str = "geodns_endpoint_up";
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
/// Counter. Kubernetes watch errors by `cluster`.
pub const KUBE_WATCH_ERRORS: &str = "geodns_kube_watch_errors_total";
/// Gauge. Seconds since each cluster's last successful sync, by `cluster`.
pub const KUBE_SYNC_AGE: &str = "geodns_kube_last_sync_age_seconds";
/// Gauge. 1 while a cluster's API server is reachable, by `cluster`.
pub const KUBE_CONNECTED: &str = "geodns_kube_connected";
/// Gauge, per cluster: 1 once its first full list is in. A 0 after `kubernetes.sync_timeout`
/// is a cluster the instance went ready without (`/status` says `sync_timed_out`).
pub const KUBE_SYNCED: &str = "geodns_kube_synced";
/// Counter. UDP responses held back by response rate limiting, by `action` (slip: sent
/// truncated with TC=1; drop: not sent).
pub const RRL_LIMITED: &str = "geodns_rrl_limited_total";
/// Counter. UPDATE messages (RFC 2136) answered, by `result`: the response code (NOERROR,
/// REFUSED, NXRRSET, ...), or the TSIG error of a NOTAUTH (BADKEY, BADSIG, BADTIME).
pub const UPDATES: &str = "geodns_updates_total";
/// Gauge, always 1, labelled with `version`.
pub const BUILD_INFO: &str = "geodns_build_info";

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
