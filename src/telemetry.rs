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
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
