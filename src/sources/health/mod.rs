//! Active health checks: HTTP/HTTPS/TCP probes of every (check, address) pair in use, judged
//! by rise/fall hysteresis and published as an immutable [`HealthSnapshot`] on a watch channel.
//!
//! - [`state`]: the pure hysteresis state machine and the probe outcome vocabulary.
//! - [`probe`]: one probe attempt over the network (the reqwest/rustls boundary).
//! - [`scheduler`]: the probe tasks, the global concurrency limit, the single-writer snapshot.
//!
//! Imports `model` and `config` only; never routing, dns, admin or app (the composition root
//! turns [`HealthSnapshot::down`] into `routing::Inputs::endpoint_down`).

mod aggregator;
pub mod probe;
pub mod scheduler;
pub mod state;

pub use probe::{ClientError, Clients, install_crypto_provider};
pub use scheduler::{
    EndpointHealth, HealthSnapshot, MAX_IN_FLIGHT_PROBES, Monitor, NOT_YET_CHECKED, NetProber, PROBE_RESULTS, Prober,
    Target, spawn, spawn_with,
};
pub use state::{FailReason, Flip, Hysteresis, Outcome, State};
