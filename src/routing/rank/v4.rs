//! The IPv4 table: the space as ranges of 32-bit addresses, each with its ranking.

use std::sync::Arc;

use super::order::{RANKED, Ranker, ranked};
use super::{CLASS_MASK, JUMP_BITS, PREFIX_SHIFT, Ranked, WHOLE, Words, widest_prefix};
use crate::model::{Locator, UnitVector};

/// Sites of a name ranked for every IPv4 address.
pub struct RankTable {
    /// Each range as its first address (high 32 bits; ascending, the first is 0) and its
    /// ranking (low 32 bits, an index into `orders`): one word, so a lookup reads one cache
    /// line for both.
    ranges: Box<dyn Words<u64>>,
    /// Rankings: positions in the name's site list, nearest first, `NONE` after the last site
    /// (shared with the set's IPv6 table).
    orders: Arc<[[u8; RANKED]]>,
    /// One entry per block of addresses with the same first `JUMP_BITS` bits. A block inside
    /// one range: [`WHOLE`], the widest prefix (5 bits at [`PREFIX_SHIFT`]) and the ranking
    /// (the low bits), so a lookup there reads this table alone (1 MiB, which mostly stays in
    /// cache). Else the range holding the block's first address: a lookup searches on from it.
    jump: Box<dyn Words<u32>>,
    /// Blocks inside one range (for the log).
    whole_blocks: usize,
}

impl RankTable {
    /// Ranks `sites` (location and name, in the name's configured order) for every IPv4 range
    /// the locator knows (see [`super::Rankings::build`], which also ranks IPv6).
    pub fn build(locator: &dyn Locator, sites: &[(UnitVector, &str)]) -> Option<RankTable> {
        super::Rankings::build(locator, sites).v4
    }

    /// The table of `ranges` (as [`ranges`] makes them), with its jump table; `None` when it
    /// has too many ranges to index (not a real database).
    pub(super) fn new(ranges: Vec<u64>, orders: Arc<[[u8; RANKED]]>) -> Option<RankTable> {
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
                let prefix = u32::from(widest_prefix32(at, first(ranges[i]), last));
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
        self.ranked(ranges[i] as u32 as usize, widest_prefix32(addr, first(i), last))
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
        Ranked { order: ranked(&self.orders, class), prefix_len }
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
        self.ranges() * 8 + self.orders.len() * RANKED + self.jump.words().len() * 4
    }

    /// The share of address blocks answered from the jump table alone, in percent.
    pub fn whole_blocks_pct(&self) -> usize {
        (100 * self.whole_blocks) >> JUMP_BITS
    }
}

/// [`super::widest_prefix`] for 32-bit addresses: the same bits at the top of 64-bit keys,
/// the range's last address extended with ones.
pub(super) fn widest_prefix32(addr: u32, first: u32, last: u32) -> u8 {
    let up = |a: u32| u64::from(a) << 32;
    widest_prefix(up(addr), up(first), up(last) | u64::from(u32::MAX))
}

/// The IPv4 ranges of `locator`, each as its first address (high 32 bits) and ranking (low 32
/// bits), neighbours of the same ranking merged; `None` when the locator cannot enumerate its
/// IPv4 data.
pub(super) fn ranges(locator: &dyn Locator, ranker: &mut Ranker<'_>) -> Option<Vec<u64>> {
    let mut ranges: Vec<u64> = Vec::new();
    let complete = locator.for_each_ipv4_range(&mut |first, _last, location| {
        let class = ranker.class(location);
        if ranges.last().map(|&r| r as u32) != Some(class) {
            ranges.push((u64::from(first) << 32) | u64::from(class));
        }
    });
    (complete && ranges.first().map(|&r| r >> 32) == Some(0)).then_some(ranges)
}
