//! Logging set-up. Per-query events are at debug level only; hickory's own per-request logs
//! are held at warn by default because they cost more than answering.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter used when neither `--log` nor `RUST_LOG` says otherwise.
pub const DEFAULT_FILTER: &str = "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn";

/// Added to every filter that does not name the kube client itself: its HTTP layer logs an
/// ERROR for every failed request, which during an API server outage is one line every
/// watcher retry for as long as it lasts. The Kubernetes source logs an outage itself, once
/// when it starts, with a reminder every few minutes, and once when it ends.
const QUIET_KUBE_CLIENT: &str = "kube_client::client::builder=off";

/// The filter for `directives` (or `RUST_LOG`, or the default).
fn filter(directives: Option<&str>) -> String {
    let base = match directives {
        Some(d) => d.to_owned(),
        None => {
            std::env::var(EnvFilter::DEFAULT_ENV).ok().filter(|d| !d.is_empty()).unwrap_or(DEFAULT_FILTER.to_owned())
        }
    };
    if base.contains("kube_client") { base } else { format!("{base},{QUIET_KUBE_CLIENT}") }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One line of text per event, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// fields at the top level (flattened, so pipelines index them without nesting).
    Json,
}

/// Installs the global subscriber (logs to stderr). `directives` overrides `RUST_LOG`.
pub fn init(directives: Option<&str>, format: Format) {
    let filter = EnvFilter::new(filter(directives));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        Format::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        Format::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init(),
    };
}

/// Logs every panic at ERROR, with where it happened, before the default hook runs: a panic
/// in a background task (probes, watchers, admin) ends that task and is never silent.
pub fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        tracing::error!(%location, %message, "panic");
        default(info);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kube_clients_request_errors_are_off_unless_asked_for() {
        assert_eq!(filter(Some("debug")), "debug,kube_client::client::builder=off");
        assert_eq!(filter(Some("info,kube_client=debug")), "info,kube_client=debug");
        assert!(EnvFilter::try_new(filter(Some("warn"))).is_ok());
    }
}
