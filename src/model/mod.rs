//! The vocabulary every other module speaks: sites and their locations, DNS names and record
//! data, where a client is, and the [`Locator`] trait that GeoIP implements.
//!
//! Owns plain data types only. Imports nothing of ours and no foreign protocol crate (no hickory,
//! kube, maxminddb or reqwest types): those are translated into these types at the edges.

mod geo;
mod name;
mod record;

pub use geo::{GeoHit, Location, Locator, NoLocator};
pub use name::{Name, NameError};
pub use record::{Caa, Mx, RData, RType, Soa, Srv};

/// Index of a site in the configuration's site list (and in every routing table built from it).
pub type SiteId = usize;
