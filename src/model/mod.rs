//! The vocabulary every other module speaks: sites and their locations, DNS names and record
//! data, where a client is, sets of networks, and the [`Locator`] trait that GeoIP implements.
//!
//! Owns plain data types only. Imports nothing of ours and no foreign protocol crate (no hickory,
//! kube, maxminddb or reqwest types): those are translated into these types at the edges.

mod geo;
mod name;
mod netset;
mod record;
mod update;

pub use geo::{GeoHit, Location, Locator, NoLocator, RangeLocation, UnitVector};
pub use name::{Name, NameError};
pub use netset::NetSet;
pub use record::{Caa, Mx, RData, RType, Soa, Srv, write_name};
pub use update::{Change, Dynamic, DynamicNode, DynamicZone, Prereq, UpdateRcode, UpdateRequest, serial_after};

/// Index of a site in the configuration's site list (and in every routing table built from it).
pub type SiteId = usize;

/// Addresses of one geo name at one site, discovered at run time (from Kubernetes), as opposed
/// to the addresses written in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The geo name (absolute), from the Service's `geodns.io/hostname` annotation.
    pub name: Name,
    pub site: SiteId,
    pub addrs: Vec<std::net::IpAddr>,
    /// False when the source says the site has no ready endpoint for this name: the site is
    /// then down for the name, whatever the probes say.
    pub ready: bool,
    /// The addresses of `addrs` that an operator drained at the source (the `geodns.io/drain`
    /// annotation on their Service or Node): down for every name, as a forced-down endpoint
    /// is, whatever the probes say.
    pub drained: Vec<std::net::IpAddr>,
    /// Where it came from, for /status and `geodns check` ("cluster/namespace/service").
    pub origin: String,
}
