//! geodns: a GeoDNS authoritative server and health-checking load balancer.
//!
//! The crate in data-flow order:
//! - [`model`]: plain types every layer speaks (sites, names, records, the `Locator` trait).
//! - [`config`]: the YAML file -> validated [`config::Config`], every problem with its path.
//! - [`geoip`]: MaxMind-format databases -> `model::GeoHit` (implements `model::Locator`).
//! - [`sources`]: run-time inputs on watch channels: health probes, the Kubernetes API (and
//!   the ConfigMap that stores dynamic updates).
//! - [`routing`]: pure core; builds immutable `RoutingTable` snapshots and answers queries.
//! - [`dnssec`]: keys and signing ahead of time: a table's signed zones -> RRSIGs and NSEC.
//! - [`updates`]: dynamic updates (RFC 2136): policy, prerequisites, changes, the journal.
//! - [`load`]: the load step `serve` and `check` share: config + GeoIP -> routing tables.
//! - [`dns`]: the hickory boundary; sockets -> wire queries -> routing answers -> sockets, ECS
//!   (RFC 7871), response rate limiting.
//! - [`app`]: composition root for `serve`: loads, builds, publishes the snapshot, runs listeners.
//! - [`check`]: composition root for `geodns check`: same load -> build path, no sockets.
//! - [`cli`]: command-line definitions shared by the binary and its tests.

pub mod admin;
pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod dns;
pub mod dnssec;
pub mod geoip;
pub mod load;
pub mod metrics;
pub mod model;
pub mod routing;
pub mod sources;
pub mod telemetry;
pub mod updates;
