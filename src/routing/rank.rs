//! Precomputed site rankings over the whole IPv4 space, one table per set of sites.
//!
//! A geo answer depends on the client only through the order of the name's sites by distance.
//! Walking the GeoIP database once, ranking its sites for every location in it, and merging
//! neighbouring networks whose ranking is the same gives a sorted list of address ranges: the
//! query path then finds a client's ranking with a short binary search instead of a walk down
//! the database's tree and a record decode, and the range around the client is exactly the
//! block that gets the same answer, so the ECS scope can be the widest prefix inside it (the
//! same answer for the whole block, whatever the health of the sites, since health only
//! filters the ranking).
//!
//! A table is built by a pure function ([`RankTable::build`], about a second for a City
//! database). Builds of the routing table only ask for tables ([`RankTables::slot`]); whoever
//! owns the process's threads fills the slots they asked for (`load::Loaded::fill_rankings`,
//! run by the app in the background and by `check` before it answers). Until a slot is
//! filled, and for names whose table was not built, queries take the per-query decision,
//! which gives the same answers with the GeoIP network's prefix as scope.
//!
//! The two large arrays of a table live wherever its filler puts them ([`Words`]): on the heap
//! as built, or in memory the app asks to back with huge pages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::model::{Location, Locator, SiteId, UnitVector};

/// How many of the nearest sites a table keeps per range. A name with more sites is answered
/// from the table while one of its first `RANKED` sites can answer; beyond that (every one of
/// them down or without addresses) the per-query decision takes over.
pub const RANKED: usize = 8;

/// A lookup's first step indexes the ranges by the address's first `JUMP_BITS` bits (a table of
/// 4 << JUMP_BITS bytes), then searches only that block's ranges.
const JUMP_BITS: u32 = 18;

/// Filler after the last ranked site of a name with fewer than `RANKED` sites.
const NONE: u8 = u8::MAX;

/// At most this many distinct site sets get a table per GeoIP database (each costs a walk of the
/// database and a few MB): the names sharing the commonest sets are served from tables.
const MAX_TABLES: usize = 8;

/// Read-only words of a rank table's arrays, wherever they are kept.
pub trait Words<T>: Send + Sync {
    fn words(&self) -> &[T];
}

impl<T: Send + Sync> Words<T> for Vec<T> {
    fn words(&self) -> &[T] {
        self
    }
}

/// Sites of a name ranked for every IPv4 address.
pub struct RankTable {
    /// Each range as its first address (high 32 bits; ascending, the first is 0) and its
    /// ranking (low 32 bits, an index into `orders`): one word, so a lookup reads one cache
    /// line for both.
    ranges: Box<dyn Words<u64>>,
    /// Rankings: positions in the name's site list, nearest first, `NONE` after the last site.
    orders: Vec<[u8; RANKED]>,
    /// One entry per block of addresses with the same first `JUMP_BITS` bits. A block inside
    /// one range: [`WHOLE`], the widest prefix (5 bits at [`PREFIX_SHIFT`]) and the ranking
    /// (the low bits), so a lookup there reads this table alone (1 MiB, which mostly stays in
    /// cache). Else the range holding the block's first address: a lookup searches on from it.
    jump: Box<dyn Words<u32>>,
    /// Blocks inside one range (for the log).
    whole_blocks: usize,
}

/// Marks a [`RankTable::jump`] entry that holds its block's answer.
const WHOLE: u32 = 1 << 31;
/// Where a whole block's prefix length (at most `JUMP_BITS`) sits in its entry.
const PREFIX_SHIFT: u32 = 26;
/// A whole block's ranking: an index into `orders` below this fits in its entry.
const CLASS_MASK: u32 = (1 << PREFIX_SHIFT) - 1;

/// A client's ranking from a [`RankTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ranked<'a> {
    /// Positions in the name's site list, nearest first (at most [`RANKED`]).
    pub order: &'a [u8],
    /// The widest prefix around the client within which every address is ranked the same.
    pub prefix_len: u8,
}

impl RankTable {
    /// Ranks `sites` (location and name, in the name's configured order) for every IPv4 range
    /// the locator knows. `None` when the locator cannot enumerate its data, or has more than
    /// `u32::MAX` rankings (not a real database).
    pub fn build(locator: &dyn Locator, sites: &[(UnitVector, &str)]) -> Option<RankTable> {
        let ranked = sites.len().min(RANKED);
        let mut orders: Vec<[u8; RANKED]> = Vec::new();
        let mut order_ids: HashMap<[u8; RANKED], u32> = HashMap::new();
        let mut by_location: HashMap<(u64, u64), u32> = HashMap::new();
        let mut ranges: Vec<u64> = Vec::new();
        let mut intern = |order: [u8; RANKED]| -> u32 {
            *order_ids.entry(order).or_insert_with(|| {
                orders.push(order);
                (orders.len() - 1) as u32
            })
        };
        // No location: the configured order.
        let mut configured = [NONE; RANKED];
        for (i, slot) in configured.iter_mut().enumerate().take(ranked) {
            *slot = i as u8;
        }
        let unlocated = intern(configured);
        let mut idx: Vec<usize> = Vec::with_capacity(sites.len());
        let mut rank = |loc: Location| -> [u8; RANKED] {
            let u = loc.unit();
            idx.clear();
            idx.extend(0..sites.len());
            // As `RoutingTable::decide`: nearest first, ties by site name.
            idx.sort_by(|&a, &b| {
                u.dot(&sites[b].0).total_cmp(&u.dot(&sites[a].0)).then_with(|| sites[a].1.cmp(sites[b].1))
            });
            let mut order = [NONE; RANKED];
            for (slot, &i) in order.iter_mut().zip(idx.iter()) {
                *slot = i as u8;
            }
            order
        };
        let complete = locator.for_each_ipv4_range(&mut |first, _last, location| {
            let class = match location {
                None => unlocated,
                Some(loc) => {
                    *by_location.entry((loc.lat.to_bits(), loc.lon.to_bits())).or_insert_with(|| intern(rank(loc)))
                }
            };
            if ranges.last().map(|&r| r as u32) != Some(class) {
                ranges.push((u64::from(first) << 32) | u64::from(class));
            }
        });
        if !complete || ranges.first().map(|&r| r >> 32) != Some(0) || sites.len() > usize::from(NONE) {
            return None;
        }
        orders.shrink_to_fit();
        if ranges.len() >= WHOLE as usize {
            return None;
        }
        let mut jump = Vec::with_capacity(1 << JUMP_BITS);
        let (mut i, mut whole_blocks) = (0, 0);
        let first = |r: u64| (r >> 32) as u32;
        for h in 0..(1u32 << JUMP_BITS) {
            let at = h << (32 - JUMP_BITS);
            let end = at | (u32::MAX >> JUMP_BITS);
            while i + 1 < ranges.len() && first(ranges[i + 1]) <= at {
                i += 1;
            }
            let last = ranges.get(i + 1).map_or(u32::MAX, |&r| first(r) - 1);
            let class = ranges[i] as u32;
            if last >= end && class <= CLASS_MASK {
                // Every address of the block gets this ranking and the same widest prefix (a
                // block of up to JUMP_BITS bits around any of them is the same block).
                let prefix = u32::from(widest_prefix(at, first(ranges[i]), last));
                jump.push(WHOLE | (prefix << PREFIX_SHIFT) | class);
                whole_blocks += 1;
            } else {
                jump.push(i as u32);
            }
        }
        Some(RankTable { ranges: Box::new(ranges), orders, jump: Box::new(jump), whole_blocks })
    }

    /// The range words and the jump words, for a caller that keeps them elsewhere
    /// ([`RankTable::with_words`]).
    pub fn words(&self) -> (&[u64], &[u32]) {
        (self.ranges.words(), self.jump.words())
    }

    /// This table with its two arrays kept in `ranges` and `jump`, which must hold the same
    /// words as [`RankTable::words`].
    pub fn with_words(self, ranges: Box<dyn Words<u64>>, jump: Box<dyn Words<u32>>) -> RankTable {
        assert!(ranges.words() == self.ranges.words() && jump.words() == self.jump.words(), "the same words");
        RankTable { ranges, jump, ..self }
    }

    /// The ranking of `addr` and the widest prefix around it ranked the same.
    pub fn lookup(&self, addr: u32) -> Ranked<'_> {
        let j = *self.jump_of(addr);
        if j & WHOLE != 0 {
            return self.ranked((j & CLASS_MASK) as usize, ((j & !WHOLE) >> PREFIX_SHIFT) as u8);
        }
        // The block's ranges follow its first: gallop to bracket `addr`, then search between.
        let ranges = self.ranges.words();
        let first = |i: usize| (ranges[i] >> 32) as u32;
        let (mut base, mut step) = (j as usize, 1);
        while base + step < ranges.len() && first(base + step) <= addr {
            base += step;
            step *= 2;
        }
        let end = (base + step).min(ranges.len());
        let i = base + ranges[base..end].partition_point(|&r| (r >> 32) as u32 <= addr) - 1;
        let last = if i + 1 < ranges.len() { first(i + 1) - 1 } else { u32::MAX };
        self.ranked(ranges[i] as u32 as usize, widest_prefix(addr, first(i), last))
    }

    /// Where [`lookup`](Self::lookup) of `addr` reads first: its block's jump entry. For a
    /// caller that asks the CPU to fetch it ahead of the lookup.
    pub fn jump_entry(&self, addr: u32) -> *const u8 {
        (&raw const *self.jump_of(addr)).cast()
    }

    /// Where the lookup of `addr` reads next (reading the jump entry to know): the first range
    /// of its block, or `None` when the jump entry holds the answer.
    pub fn first_range(&self, addr: u32) -> Option<*const u8> {
        let j = *self.jump_of(addr);
        (j & WHOLE == 0).then(|| self.ranges.words().as_ptr().wrapping_add(j as usize).cast())
    }

    /// The jump entry of `addr`'s block.
    fn jump_of(&self, addr: u32) -> &u32 {
        &self.jump.words()[(addr >> (32 - JUMP_BITS)) as usize]
    }

    fn ranked(&self, class: usize, prefix_len: u8) -> Ranked<'_> {
        let order = &self.orders[class];
        let len = order.iter().position(|&p| p == NONE).unwrap_or(RANKED);
        Ranked { order: &order[..len], prefix_len }
    }

    /// Blocks of 2^(32 - JUMP_BITS) addresses answered from the jump table alone.
    pub fn whole_blocks(&self) -> usize {
        self.whole_blocks
    }

    /// Number of ranges (for memory estimates and tests).
    pub fn ranges(&self) -> usize {
        self.ranges.words().len()
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ranges() * 8 + self.orders.capacity() * RANKED + self.jump.words().len() * 4
    }

    /// The share of address blocks answered from the jump table alone, in percent.
    pub fn whole_blocks_pct(&self) -> usize {
        (100 * self.whole_blocks) >> JUMP_BITS
    }
}

/// The shortest prefix length whose block around `addr` lies within `first..=last` (`addr`
/// is inside it). The block of length `len` starts at or after `first` exactly when `addr` and
/// `first - 1` differ within the first `len` bits, and ends at or before `last` exactly when
/// `addr` and `last + 1` do.
fn widest_prefix(addr: u32, first: u32, last: u32) -> u8 {
    let from_below = if first == 0 { 0 } else { (addr ^ (first - 1)).leading_zeros() + 1 };
    let from_above = if last == u32::MAX { 0 } else { (addr ^ (last + 1)).leading_zeros() + 1 };
    from_below.max(from_above) as u8
}

/// The table of one site set: asked for by a build, filled by whoever builds tables.
pub struct RankSlot {
    /// The set's sites in the names' configured order, with their locations.
    sites: Vec<(UnitVector, String)>,
    /// Set once: `Some` table, or `None` when none can be built (see [`RankTable::build`]).
    table: OnceLock<Option<RankTable>>,
}

impl RankSlot {
    /// The table, once built.
    pub fn get(&self) -> Option<&RankTable> {
        self.table.get().and_then(Option::as_ref)
    }

    /// Built, or known not to be built.
    pub fn settled(&self) -> bool {
        self.table.get().is_some()
    }

    /// The sites to rank, with their locations and names (what [`RankTable::build`] takes).
    pub fn sites(&self) -> Vec<(UnitVector, &str)> {
        self.sites.iter().map(|(v, n)| (*v, n.as_str())).collect()
    }

    /// Settles the slot with `table`; a slot already settled keeps its table.
    pub fn fill(&self, table: Option<RankTable>) {
        let _ = self.table.set(table);
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
        let slot = Arc::new(RankSlot { sites: locations.to_vec(), table: OnceLock::new() });
        slots.insert(sites.to_vec(), slot.clone());
        Some(slot)
    }

    /// The slots asked for and not filled yet.
    pub fn pending(&self) -> Vec<Arc<RankSlot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|s| !s.settled()).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GeoHit;
    use std::net::IpAddr;

    /// 0.0.0.0/1 in London, 128.0.0.0/2 in Singapore, the rest unknown.
    struct Halves;
    impl Locator for Halves {
        fn locate(&self, _ip: IpAddr) -> GeoHit {
            GeoHit::default()
        }
        fn for_each_ipv4_range(&self, f: &mut dyn FnMut(u32, u32, Option<Location>)) -> bool {
            f(0, 0x3fff_ffff, Some(Location::new(51.5, -0.1)));
            f(0x4000_0000, 0x7fff_ffff, Some(Location::new(51.6, -0.2)));
            f(0x8000_0000, 0xbfff_ffff, Some(Location::new(1.35, 103.8)));
            f(0xc000_0000, u32::MAX, None);
            true
        }
    }

    fn sites() -> Vec<(UnitVector, &'static str)> {
        vec![(Location::new(1.35, 103.82).unit(), "singapore"), (Location::new(51.51, -0.13).unit(), "london")]
    }

    #[test]
    fn ranks_ranges_and_merges_equal_neighbours() {
        let t = RankTable::build(&Halves, &sites()).unwrap();
        // The two London quarters merge; so do Singapore and the unknown quarter, whose
        // configured order (singapore, london) is Singapore's ranking too.
        assert_eq!(t.ranges(), 2);
        assert_eq!(t.lookup(0x1234_5678), Ranked { order: &[1, 0], prefix_len: 1 });
        assert_eq!(t.lookup(0x8000_0001), Ranked { order: &[0, 1], prefix_len: 1 });
        assert_eq!(t.lookup(0xffff_ffff), Ranked { order: &[0, 1], prefix_len: 1 });
        let reversed = [sites()[1], sites()[0]];
        let t = RankTable::build(&Halves, &reversed).unwrap();
        assert_eq!(t.ranges(), 3, "unknown addresses keep the configured order (london first)");
        assert_eq!(t.lookup(0x8000_0001), Ranked { order: &[1, 0], prefix_len: 2 });
        assert_eq!(t.lookup(0xc000_0001), Ranked { order: &[0, 1], prefix_len: 2 });
        assert_eq!(t.lookup(0x0000_0001), Ranked { order: &[0, 1], prefix_len: 1 });
    }

    /// Ranges of pseudo-random lengths (1 address to a /12), each at one of three places or
    /// none.
    struct Patchwork;
    impl Patchwork {
        fn each(f: &mut dyn FnMut(u32, u32, Option<Location>)) {
            let places = [
                Some(Location::new(51.5, -0.1)),
                Some(Location::new(1.3, 103.8)),
                None,
                Some(Location::new(52.0, 0.0)),
            ];
            let (mut at, mut x) = (0u64, 12345u32);
            while at <= u64::from(u32::MAX) {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let len = 1 + u64::from(x >> 12);
                let last = (at + len - 1).min(u64::from(u32::MAX));
                f(at as u32, last as u32, places[(x & 3) as usize]);
                at = last + 1;
            }
        }
    }
    impl Locator for Patchwork {
        fn locate(&self, _ip: IpAddr) -> GeoHit {
            GeoHit::default()
        }
        fn for_each_ipv4_range(&self, f: &mut dyn FnMut(u32, u32, Option<Location>)) -> bool {
            Patchwork::each(f);
            true
        }
    }

    #[test]
    fn lookups_match_a_scan_of_the_ranges() {
        let t = RankTable::build(&Patchwork, &sites()).unwrap();
        // Both kinds of block are looked up below: inside one range, and split between several.
        assert!(t.whole_blocks() > 1000 && t.whole_blocks() < (1 << JUMP_BITS) - 1000, "{}", t.whole_blocks());
        let mut all = Vec::new();
        Patchwork::each(&mut |a, b, l| all.push((a, b, l)));
        let london = |l: &Option<Location>| l.is_some_and(|l| l.lon < 50.0);
        let mut x = 99u32;
        for _ in 0..20_000 {
            x = x.wrapping_mul(22_695_477).wrapping_add(1);
            let i = all.partition_point(|r| r.0 <= x) - 1;
            let got = t.lookup(x);
            // `sites()` lists singapore, then london: places near London rank [1, 0]; Singapore
            // and unknown places (the configured order) [0, 1].
            let ranking = |l: &Option<Location>| -> [u8; 2] { if l.is_some() && london(l) { [1, 0] } else { [0, 1] } };
            let want = ranking(&all[i].2);
            assert_eq!(got.order, want, "{x:#x}");
            // Every range the scope block touches ranks the same.
            let mask = if got.prefix_len == 0 { 0 } else { u32::MAX << (32 - got.prefix_len) };
            let (lo, hi) = (x & mask, x | !mask);
            let (from, to) = (all.partition_point(|r| r.0 <= lo) - 1, all.partition_point(|r| r.0 <= hi));
            assert!(all[from..to].iter().all(|r| ranking(&r.2) == want), "{x:#x} /{}", got.prefix_len);
            // And the block is the widest: one bit wider would take in another ranking.
            if got.prefix_len > 0 {
                let wider = u32::MAX.checked_shl(33 - u32::from(got.prefix_len)).unwrap_or(0);
                let (lo, hi) = (x & wider, x | !wider);
                let (from, to) = (all.partition_point(|r| r.0 <= lo) - 1, all.partition_point(|r| r.0 <= hi));
                assert!(all[from..to].iter().any(|r| ranking(&r.2) != want), "{x:#x} could be wider");
            }
        }
    }

    #[test]
    fn widest_prefix_stays_inside_the_range() {
        assert_eq!(widest_prefix(5, 0, u32::MAX), 0);
        assert_eq!(widest_prefix(0x0a00_0001, 0x0a00_0000, 0x0aff_ffff), 8);
        // 10.0.0.0-10.2.255.255: 10.1.2.3 fits in 10.0.0.0/15, not /14.
        assert_eq!(widest_prefix(0x0a01_0203, 0x0a00_0000, 0x0a02_ffff), 15);
        assert_eq!(widest_prefix(0x0a02_0203, 0x0a00_0000, 0x0a02_ffff), 16);
        assert_eq!(widest_prefix(7, 7, 7), 32);
    }

    #[test]
    fn a_locator_without_enumeration_gets_no_table() {
        assert!(RankTable::build(&crate::model::NoLocator, &sites()).is_none());
    }

    #[test]
    fn slots_are_shared_and_filled_by_their_caller() {
        let tables = RankTables::new();
        let locs: Vec<(UnitVector, String)> = sites().into_iter().map(|(v, n)| (v, n.to_owned())).collect();
        let a = tables.slot(&[3, 1], &locs).unwrap();
        let b = tables.slot(&[3, 1], &locs).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(tables.pending().len(), 1);
        assert!(!a.settled() && a.get().is_none());
        a.fill(RankTable::build(&Halves, &a.sites()));
        assert!(tables.pending().is_empty());
        assert_eq!(b.get().unwrap().lookup(1).order, &[1, 0]);
        // Kept elsewhere, the same words answer the same.
        let t = RankTable::build(&Halves, &sites()).unwrap();
        let (ranges, jump) = t.words();
        let (ranges, jump) = (ranges.to_vec(), jump.to_vec());
        let moved = t.with_words(Box::new(ranges), Box::new(jump));
        assert_eq!(moved.lookup(0x8000_0001), Ranked { order: &[0, 1], prefix_len: 1 });
    }
}
