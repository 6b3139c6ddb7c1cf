//! The IPv6 table: the space as ranges of /64s, each with its ranking.
//!
//! Keys are the first 64 bits of an address: ECS sources are /56 or /48 in practice, and
//! GeoIP databases place IPv6 networks of /64 or wider. A /64 that the database splits finer
//! (with networks of different places inside it), or that it aliases to its IPv4 data
//! (`::ffff:0:0/96`, `2002::/16`), is marked [`MIXED`]: lookups there return `None` and the
//! per-query decision answers them, as it answers every address without a table.

use std::sync::Arc;

use super::order::{RANKED, Ranker, ranked};
use super::{CLASS_MASK, JUMP_BITS, PREFIX_SHIFT, Ranked, WHOLE, Words, widest_prefix};
use crate::model::{Locator, RangeLocation};

/// The ranking of a range whose addresses may be ranked differently: ask per address.
const MIXED: u32 = u32::MAX;

/// Sites of a name ranked for every IPv6 /64.
pub struct RankTable6 {
    /// Each range's first /64 (the address's first 64 bits), ascending; the first is 0.
    keys: Box<dyn Words<u64>>,
    /// Each range's ranking: an index into `orders`, or [`MIXED`].
    classes: Box<dyn Words<u32>>,
    /// Rankings, shared with the set's IPv4 table.
    orders: Arc<[[u8; RANKED]]>,
    /// One entry per block of keys with the same first `JUMP_BITS` bits: [`WHOLE`], the widest
    /// prefix and the ranking when one range holds the block, else the range holding the
    /// block's first key.
    jump: Box<dyn Words<u32>>,
    whole_blocks: usize,
}

/// The ranges a walk makes: first keys and rankings.
#[derive(Default)]
pub(super) struct Ranges {
    keys: Vec<u64>,
    classes: Vec<u32>,
}

impl RankTable6 {
    /// The table of `ranges`, with its jump table; `None` when it has too many ranges to index.
    pub(super) fn new(ranges: Ranges, orders: Arc<[[u8; RANKED]]>) -> Option<RankTable6> {
        let Ranges { keys, classes } = ranges;
        if keys.len() >= WHOLE as usize || keys.first() != Some(&0) {
            return None;
        }
        let mut jump = Vec::with_capacity(1 << JUMP_BITS);
        let (mut i, mut whole_blocks) = (0, 0);
        for h in 0..(1u64 << JUMP_BITS) {
            let at = h << (64 - JUMP_BITS);
            let end = at | (u64::MAX >> JUMP_BITS);
            while i + 1 < keys.len() && keys[i + 1] <= at {
                i += 1;
            }
            let last = keys.get(i + 1).map_or(u64::MAX, |&k| k - 1);
            let class = classes[i];
            if last >= end && class <= CLASS_MASK {
                let prefix = u32::from(widest_prefix(at, keys[i], last));
                jump.push(WHOLE | (prefix << PREFIX_SHIFT) | class);
                whole_blocks += 1;
            } else {
                jump.push(i as u32);
            }
        }
        Some(RankTable6 {
            keys: Box::new(keys),
            classes: Box::new(classes),
            orders,
            jump: Box::new(jump),
            whole_blocks,
        })
    }

    /// The ranking of `addr` and the widest prefix around it ranked the same; `None` where the
    /// table leaves the decision to the per-query path.
    pub fn lookup(&self, addr: u128) -> Option<Ranked<'_>> {
        let key = (addr >> 64) as u64;
        let j = *self.jump_of(key);
        if j & WHOLE != 0 {
            return Some(self.ranked((j & CLASS_MASK) as usize, ((j & !WHOLE) >> PREFIX_SHIFT) as u8));
        }
        let keys = self.keys.words();
        let (mut base, mut step) = (j as usize, 1);
        while base + step < keys.len() && keys[base + step] <= key {
            base += step;
            step *= 2;
        }
        let end = (base + step).min(keys.len());
        let i = base + keys[base..end].partition_point(|&k| k <= key) - 1;
        let class = self.classes.words()[i];
        if class == MIXED {
            return None;
        }
        let last = if i + 1 < keys.len() { keys[i + 1] - 1 } else { u64::MAX };
        Some(self.ranked(class as usize, widest_prefix(key, keys[i], last)))
    }

    /// Where [`lookup`](Self::lookup) of `addr` reads first: its block's jump entry. For a
    /// caller that asks the CPU to fetch it ahead of the lookup.
    pub fn jump_entry(&self, addr: u128) -> *const u8 {
        (&raw const *self.jump_of((addr >> 64) as u64)).cast()
    }

    /// Where the lookup of `addr` reads next: the first key of its block, or `None` when the
    /// jump entry holds the answer.
    pub fn first_range(&self, addr: u128) -> Option<*const u8> {
        let j = *self.jump_of((addr >> 64) as u64);
        (j & WHOLE == 0).then(|| self.keys.words().as_ptr().wrapping_add(j as usize).cast())
    }

    fn jump_of(&self, key: u64) -> &u32 {
        &self.jump.words()[(key >> (64 - JUMP_BITS)) as usize]
    }

    fn ranked(&self, class: usize, prefix_len: u8) -> Ranked<'_> {
        Ranked { order: ranked(&self.orders, class), prefix_len }
    }

    /// The arrays, for a caller that keeps them elsewhere ([`RankTable6::with_words`]).
    pub fn words(&self) -> (&[u64], &[u32], &[u32]) {
        (self.keys.words(), self.classes.words(), self.jump.words())
    }

    /// This table with its arrays kept in `keys`, `classes` and `jump`, which must hold the
    /// same words as [`RankTable6::words`].
    pub fn with_words(
        self,
        keys: Box<dyn Words<u64>>,
        classes: Box<dyn Words<u32>>,
        jump: Box<dyn Words<u32>>,
    ) -> RankTable6 {
        let (k, c, j) = self.words();
        assert!(keys.words() == k && classes.words() == c && jump.words() == j, "the same words");
        RankTable6 { keys, classes, jump, ..self }
    }

    /// Number of ranges.
    pub fn ranges(&self) -> usize {
        self.keys.words().len()
    }

    /// Blocks of 2^(64 - JUMP_BITS) /64s answered from the jump table alone, in percent.
    pub fn whole_blocks_pct(&self) -> usize {
        (100 * self.whole_blocks) >> JUMP_BITS
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ranges() * 12 + self.jump.words().len() * 4
    }
}

/// Turns a walk's ranges of addresses into ranges of /64s, a /64 with more than one ranking
/// inside it made [`MIXED`].
#[derive(Default)]
struct Blocks {
    out: Ranges,
    /// The /64 being filled by ranges that start or end inside it, with its ranking so far.
    open: Option<(u64, u32)>,
}

impl Blocks {
    /// Ranges from `key` on have `class` (merged with the previous range when it is the same).
    fn emit(&mut self, key: u64, class: u32) {
        if self.out.classes.last() != Some(&class) {
            self.out.keys.push(key);
            self.out.classes.push(class);
        }
    }

    fn partial(&mut self, key: u64, class: u32) {
        self.open = match self.open {
            Some((k, c)) if k == key => Some((k, if c == class { c } else { MIXED })),
            _ => Some((key, class)),
        };
    }

    fn close(&mut self) {
        if let Some((key, class)) = self.open.take() {
            self.emit(key, class);
        }
    }

    /// The addresses `first..=last` have `class`.
    fn add(&mut self, first: u128, last: u128, class: u32) {
        let (kf, kl) = ((first >> 64) as u64, (last >> 64) as u64);
        let (starts_block, ends_block) = (first as u64 == 0, last as u64 == u64::MAX);
        let mut full = kf;
        if !starts_block || (kf == kl && !ends_block) {
            self.partial(kf, class);
            if kf == kl {
                if ends_block {
                    self.close();
                }
                return;
            }
            // The range runs on past its first /64: that one ends inside this range.
            self.close();
            full = kf + 1;
        }
        if ends_block {
            self.emit(full, class);
        } else {
            if kl > full {
                self.emit(full, class);
            }
            self.partial(kl, class);
        }
    }
}

/// The IPv6 ranges of `locator`; `None` when it cannot enumerate its IPv6 data.
pub(super) fn ranges(locator: &dyn Locator, ranker: &mut Ranker<'_>) -> Option<Ranges> {
    let mut blocks = Blocks::default();
    let complete = locator.for_each_ipv6_range(&mut |first, last, place| {
        let class = match place {
            RangeLocation::At(location) => ranker.class(Some(location)),
            RangeLocation::Nowhere => ranker.class(None),
            RangeLocation::PerAddress => MIXED,
        };
        blocks.add(first, last, class);
    });
    blocks.close();
    (complete && blocks.out.keys.first() == Some(&0)).then_some(blocks.out)
}
