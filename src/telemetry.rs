//! Logging set-up. Per-query events are at debug level only; hickory's own per-request logs
//! are held at warn by default because they cost more than answering.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter used when neither `--log` nor `RUST_LOG` says otherwise.
pub const DEFAULT_FILTER: &str = "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn";

/// Installs the global subscriber (logs to stderr). `directives` overrides `RUST_LOG`.
pub fn init(directives: Option<&str>) {
    let filter = match directives {
        Some(d) => EnvFilter::new(d),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
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
