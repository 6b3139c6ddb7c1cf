//! Precomputed site rankings over the whole address space, IPv4 and IPv6, one set per set of
//! sites.
//!
//! A geo answer depends on the client only through the order of the name's sites by distance.
//! Walking the GeoIP database once, ranking its sites for every location in it, and merging
//! neighbouring networks whose ranking is the same gives a sorted list of address ranges: the
//! query path then finds a client's ranking with a short search instead of a walk down the
//! database's tree and a record decode, and the range around the client is exactly the block
//! that gets the same answer, so the ECS scope can be the widest prefix inside it (the same
//! answer for the whole block, whatever the health of the sites, since health only filters the
//! ranking).
//!
//! - [`order`]: rankings of one site set, interned (a table names a ranking by its index).
//! - [`v4`]: the IPv4 table ([`RankTable`]): 32-bit ranges, a jump table on the first 18 bits.
//! - [`v6`]: the IPv6 table ([`RankTable6`]): ranges of /64s (ECS and GeoIP data stop there;
//!   the rare /64 a database splits finer is left to the per-query decision), the same jump
//!   table on the first 18 bits.
//!
//! Tables are built by a pure function ([`Rankings::build`], about a second a family for a City
//! database). Builds of the routing table only ask for them ([`RankTables::slot`]); whoever
//! owns the process's threads fills the slots they asked for (`load::Loaded::fill_rankings`,
//! run by the app in the background and by `check` before it answers). Until a slot is
//! filled, and for names whose table was not built, queries take the per-query decision, which
//! gives the same answers with the GeoIP network's prefix as scope.
//!
//! A table's large arrays live wherever its filler puts them ([`Words`]): on the heap as built,
//! or in memory the app asks to back with huge pages.

mod order;
mod v4;
mod v6;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::model::{Locator, SiteId, UnitVector};

pub use order::RANKED;
pub use v4::RankTable;
pub use v6::RankTable6;

/// At most this many distinct site sets get tables per GeoIP database (each costs a walk of the
/// database and a few MB): the names sharing the commonest sets are served from tables.
const MAX_TABLES: usize = 8;

/// A lookup's first step indexes the ranges by the address's first `JUMP_BITS` bits (a table of
/// 4 << JUMP_BITS bytes), then searches only that block's ranges.
const JUMP_BITS: u32 = 18;
/// Marks a jump entry that holds its block's answer.
const WHOLE: u32 = 1 << 31;
/// Where a whole block's prefix length (at most `JUMP_BITS`) sits in its entry.
const PREFIX_SHIFT: u32 = 26;
/// A whole block's ranking: an index into the orders below this fits in its entry.
const CLASS_MASK: u32 = (1 << PREFIX_SHIFT) - 1;

/// Read-only words of a rank table's arrays, wherever they are kept.
pub trait Words<T>: Send + Sync {
    fn words(&self) -> &[T];
}

impl<T: Send + Sync> Words<T> for Vec<T> {
    fn words(&self) -> &[T] {
        self
    }
}

/// A client's ranking from a rank table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranked<'a> {
    /// Positions in the name's site list, nearest first (at most [`RANKED`]).
    pub order: &'a [u8],
    /// The widest prefix around the client within which every address is ranked the same, in
    /// the client's family (0-32, or 0-128 for IPv6).
    pub prefix_len: u8,
}

/// The shortest prefix length whose block around `addr` lies within `first..=last` (`addr`
/// is inside it), for 64-bit keys. The block of length `len` starts at or after `first`
/// exactly when `addr` and `first - 1` differ within the first `len` bits, and ends at or
/// before `last` exactly when `addr` and `last + 1` do.
fn widest_prefix(addr: u64, first: u64, last: u64) -> u8 {
    let from_below = if first == 0 { 0 } else { (addr ^ (first - 1)).leading_zeros() + 1 };
    let from_above = if last == u64::MAX { 0 } else { (addr ^ (last + 1)).leading_zeros() + 1 };
    from_below.max(from_above) as u8
}

/// Both families' tables of one site set, sharing their rankings.
pub struct Rankings {
    pub v4: Option<RankTable>,
    pub v6: Option<RankTable6>,
}

impl Rankings {
    /// Ranks `sites` (location and name, in the name's configured order) for every address the
    /// locator knows. A family is `None` when the locator cannot enumerate it, or the set is
    /// too large (more than 254 sites, or more than 2^26 distinct rankings: not real data).
    pub fn build(locator: &dyn Locator, sites: &[(UnitVector, &str)]) -> Rankings {
        let Some(mut ranker) = order::Ranker::new(sites) else { return Rankings { v4: None, v6: None } };
        let v4 = v4::ranges(locator, &mut ranker);
        let v6 = v6::ranges(locator, &mut ranker);
        let orders = ranker.finish();
        Rankings {
            v4: v4.and_then(|r| RankTable::new(r, orders.clone())),
            v6: v6.and_then(|r| RankTable6::new(r, orders)),
        }
    }
}

/// The tables of one site set: asked for by a build, filled by whoever builds tables.
pub struct RankSlot {
    /// The set's sites in the names' configured order, with their locations.
    sites: Vec<(UnitVector, String)>,
    /// Set once.
    tables: OnceLock<Rankings>,
}

impl RankSlot {
    /// The IPv4 table, once built.
    pub fn get(&self) -> Option<&RankTable> {
        self.tables.get().and_then(|t| t.v4.as_ref())
    }

    /// The IPv6 table, once built.
    pub fn get6(&self) -> Option<&RankTable6> {
        self.tables.get().and_then(|t| t.v6.as_ref())
    }

    /// Built, or known not to be built.
    pub fn settled(&self) -> bool {
        self.tables.get().is_some()
    }

    /// The sites to rank, with their locations and names (what [`Rankings::build`] takes).
    pub fn sites(&self) -> Vec<(UnitVector, &str)> {
        self.sites.iter().map(|(v, n)| (*v, n.as_str())).collect()
    }

    /// Settles the slot with `tables`; a slot already settled keeps its tables.
    pub fn fill(&self, tables: Rankings) {
        let _ = self.tables.set(tables);
    }
}

/// The slots of one GeoIP database, by site set, shared by every routing table built over it
/// (so a rebuild for a health change reuses them). Written by builds (a new site set gets a
/// slot), read by the filler; the lock is held for a map lookup or insert only.
#[derive(Default)]
pub struct RankTables {
    slots: Mutex<HashMap<Vec<SiteId>, Arc<RankSlot>>>,
}

impl RankTables {
    pub fn new() -> Self {
        RankTables::default()
    }

    /// The slot for `sites` (the name's sites in configured order, with their locations and
    /// names), made unfilled the first time it is asked for. `None` once [`MAX_TABLES`] site
    /// sets have slots.
    pub fn slot(&self, sites: &[SiteId], locations: &[(UnitVector, String)]) -> Option<Arc<RankSlot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(sites) {
            return Some(slot.clone());
        }
        if slots.len() >= MAX_TABLES || sites.is_empty() {
            return None;
        }
        let slot = Arc::new(RankSlot { sites: locations.to_vec(), tables: OnceLock::new() });
        slots.insert(sites.to_vec(), slot.clone());
        Some(slot)
    }

    /// The slots asked for and not filled yet.
    pub fn pending(&self) -> Vec<Arc<RankSlot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|s| !s.settled()).cloned().collect()
    }
}

#[cfg(test)]
mod tests;
