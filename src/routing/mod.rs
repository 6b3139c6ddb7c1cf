//! The pure routing core: builds immutable [`RoutingTable`] snapshots from the validated config
//! and run-time inputs (health), and answers queries from them: which zone, which records, which
//! sites in which order for this client, and the ECS scope that is true for the answer.
//!
//! Imports `model` and `config` only: no hickory, kube, reqwest or maxminddb (GeoIP reaches it
//! through the `model::Locator` trait). No I/O, no clocks, no logging on the query path.

mod build;
mod incremental;
mod placement;
mod rank;
mod resolve;
mod signed;
mod signed_quick;
mod sites;
mod table;

pub use build::{Built, Inputs, build, build_with};
pub use incremental::{AddressIndex, rebuild};
pub use placement::{ClientNetworks, PlacedBy, Placement, max_len, place};
pub use rank::{RANKED, RankSlot, RankTable, RankTable6, RankTables, Ranked, Rankings, Words};
pub use resolve::{Answer, Decision, Query, QuickGeo, QuickNegative, RankedSite, Rcode, Rec, Rule};
pub use signed::{
    GeoSets, GeoSigs, PlainSet, RawSet, SetKey, Signed, SignedZone, Sigs, ZoneContent, address_key, canonical_cmp,
    geo_answer_sets,
};
pub use signed_quick::{Proof, QuickSignedZone, QuickStatic};
pub use table::{AnswerSeries, GeoRoute, GeoSite, MANY_NAMES, MAX_NAMED_ANSWER_SERIES, RoutingTable};

#[cfg(test)]
mod tests;
