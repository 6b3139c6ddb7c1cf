//! The IPv6 table: the space as ranges of /64s, each with its ranking.
//!
//! Keys are the first 64 bits of an address: ECS sources are /56 or /48 in practice, and
//! GeoIP databases place most IPv6 networks at /64 or wider. A /64 that the database splits
//! finer (networks of different places inside it) is [`SPLIT`]: its pieces, keyed by the
//! address's last 64 bits, are searched in a second, small list. Addresses the database
//! aliases to its IPv4 data (`::ffff:0:0/96`, `2002::/16`) are [`PER_ADDRESS`]: lookups there
//! return `None` and the per-query decision answers them, as it answers every address without
//! a table.
//!
//! IPv6 space is sparse and its ranges crowd into a few places (some /30s hold tens of
//! thousands of networks), so the index is a tree: the jump table on the first 18 bits, and
//! below every block holding more than [`DENSE`] ranges, a node on its next 8 bits, and so on.
//! A lookup reads one entry a level, and an entry holds the answer as soon as one range holds
//! its whole block; else it searches at most [`DENSE`] ranges.

use std::sync::Arc;

use super::order::{RANKED, Ranker, ranked};
use super::{JUMP_BITS, Ranked, WHOLE, Words, widest_prefix};
use crate::model::{Locator, RangeLocation};

/// Where a [`WHOLE`] entry's prefix length (0-64: seven bits) sits; the ranking below it.
const PREFIX_SHIFT: u32 = 24;
/// A whole entry's ranking: an index into the orders below this fits in its entry.
const CLASS_MASK: u32 = (1 << PREFIX_SHIFT) - 1;

/// An index entry that is neither [`WHOLE`] nor a range index: `SUB` and the number of its
/// block's node (the block's own index, one level down).
const SUB: u32 = 1 << 30;
/// A block holding more than this many ranges gets a node.
const DENSE: usize = 16;
/// A node indexes its block by its next `NODE_BITS` bits (1 KiB a node).
const NODE_BITS: u32 = 8;

/// The ranking of a range whose addresses may be ranked differently: ask per address.
const PER_ADDRESS: u32 = u32::MAX;
/// The ranking of a /64 split finer: `SPLIT` and the split's number (in [`Fine::splits`]).
const SPLIT: u32 = 1 << 31;

/// Sites of a name ranked for every IPv6 address.
pub struct RankTable6 {
    /// Each range's first /64 (the address's first 64 bits), ascending; the first is 0.
    keys: Box<dyn Words<u64>>,
    /// Each range's ranking: an index into `orders`, [`SPLIT`] and a split's number, or
    /// [`PER_ADDRESS`].
    classes: Box<dyn Words<u32>>,
    /// The pieces of the /64s split finer.
    fine: Fine,
    /// Rankings, shared with the set's IPv4 table.
    orders: Arc<[[u8; RANKED]]>,
    /// The index, one array: first the jump table, one entry per block of keys with the same
    /// first `JUMP_BITS` bits: [`WHOLE`], the widest prefix and the ranking when one range
    /// holds the block, [`SUB`] and a node number for a dense block, else the range holding
    /// the block's first key; then the dense blocks' nodes, `1 << NODE_BITS` entries each,
    /// encoded the same way (node `n` is entries `n << NODE_BITS` on). One array, so a lookup
    /// asks its filler for it once, however deep it goes.
    index: Box<dyn Words<u32>>,
    whole_blocks: usize,
}

/// The ranges a walk makes: first keys and rankings, and the pieces of split /64s.
#[derive(Default)]
pub(super) struct Ranges {
    keys: Vec<u64>,
    classes: Vec<u32>,
    fine: Fine,
}

/// The pieces of the /64s a database splits finer: each piece's first address's last 64 bits
/// and ranking (as [`RankTable6::classes`]'), and each split's (first piece, count).
#[derive(Default)]
struct Fine {
    keys: Vec<u64>,
    classes: Vec<u32>,
    splits: Vec<(u32, u32)>,
}

impl RankTable6 {
    /// The table of `ranges`, with its index; `None` when it has too many ranges to index.
    pub(super) fn new(ranges: Ranges, orders: Arc<[[u8; RANKED]]>) -> Option<RankTable6> {
        let Ranges { mut keys, mut classes, mut fine } = ranges;
        if keys.len() >= SUB as usize || keys.first() != Some(&0) {
            return None;
        }
        // The walk grew these by doubling: keep what the table reads, not up to twice that.
        keys.shrink_to_fit();
        classes.shrink_to_fit();
        fine.keys.shrink_to_fit();
        fine.classes.shrink_to_fit();
        fine.splits.shrink_to_fit();
        // The jump table, then the nodes as `entry` appends them.
        let mut index = vec![0; 1 << JUMP_BITS];
        let (mut i, mut whole_blocks) = (0, 0);
        for h in 0..(1u64 << JUMP_BITS) {
            let e = entry(&keys, &classes, &mut i, h << (64 - JUMP_BITS), JUMP_BITS, &mut index);
            whole_blocks += usize::from(e & WHOLE != 0);
            index[h as usize] = e;
        }
        index.shrink_to_fit();
        Some(RankTable6 {
            keys: Box::new(keys),
            classes: Box::new(classes),
            fine,
            orders,
            index: Box::new(index),
            whole_blocks,
        })
    }

    /// The ranking of `addr` and the widest prefix around it ranked the same; `None` where the
    /// table leaves the decision to the per-query path.
    pub fn lookup(&self, addr: u128) -> Option<Ranked<'_>> {
        let key = (addr >> 64) as u64;
        let index = self.index.words();
        let mut j = index[(key >> (64 - JUMP_BITS)) as usize];
        let mut bits = JUMP_BITS;
        while j & (WHOLE | SUB) == SUB {
            j = index[node_entry(j, key, bits)];
            bits += NODE_BITS;
        }
        if j & WHOLE != 0 {
            return Some(self.ranked((j & CLASS_MASK) as usize, ((j & !WHOLE) >> PREFIX_SHIFT) as u8));
        }
        let (keys, classes) = (self.keys.words(), self.classes.words());
        // The range is one of the block's (at most DENSE, from `j`): start loading their
        // rankings now, so that miss overlaps the search's instead of following it.
        let block = j as usize..(j as usize + DENSE).min(classes.len());
        std::hint::black_box((classes.get(block.start).copied(), classes.get(block.end - 1).copied()));
        let (mut base, mut step) = (j as usize, 1);
        while base + step < keys.len() && keys[base + step] <= key {
            base += step;
            step *= 2;
        }
        let end = (base + step).min(keys.len());
        let i = base + keys[base..end].partition_point(|&k| k <= key) - 1;
        let class = classes[i];
        if class == PER_ADDRESS {
            return None;
        }
        if class & SPLIT != 0 {
            return self.split(class & !SPLIT, addr as u64);
        }
        let last = if i + 1 < keys.len() { keys[i + 1] - 1 } else { u64::MAX };
        Some(self.ranked(class as usize, widest_prefix(key, keys[i], last)))
    }

    /// The ranking of `low` (an address's last 64 bits) in split /64 number `split`.
    fn split(&self, split: u32, low: u64) -> Option<Ranked<'_>> {
        let (first, count) = self.fine.splits[split as usize];
        let (first, count) = (first as usize, count as usize);
        let keys = &self.fine.keys[first..first + count];
        let i = keys.partition_point(|&k| k <= low) - 1;
        let class = self.fine.classes[first + i];
        if class == PER_ADDRESS {
            return None;
        }
        let last = keys.get(i + 1).map_or(u64::MAX, |&k| k - 1);
        Some(self.ranked(class as usize, 64 + widest_prefix(low, keys[i], last)))
    }

    /// Where [`lookup`](Self::lookup) of `addr` reads first: its block's jump entry. For a
    /// caller that asks the CPU to fetch it ahead of the lookup.
    pub fn jump_entry(&self, addr: u128) -> *const u8 {
        (&raw const *self.jump_of((addr >> 64) as u64)).cast()
    }

    /// Where the lookup of `addr` reads next: its dense block's node entry, or the first key of
    /// its block, or `None` when the jump entry holds the answer.
    pub fn first_range(&self, addr: u128) -> Option<*const u8> {
        let key = (addr >> 64) as u64;
        let j = *self.jump_of(key);
        if j & WHOLE != 0 {
            None
        } else if j & SUB != 0 {
            Some((&raw const self.index.words()[node_entry(j, key, JUMP_BITS)]).cast())
        } else {
            Some(self.keys.words().as_ptr().wrapping_add(j as usize).cast())
        }
    }

    fn jump_of(&self, key: u64) -> &u32 {
        &self.index.words()[(key >> (64 - JUMP_BITS)) as usize]
    }

    fn ranked(&self, class: usize, prefix_len: u8) -> Ranked<'_> {
        Ranked { order: ranked(&self.orders, class), prefix_len }
    }

    /// The arrays (classes, index), for a caller that keeps them elsewhere
    /// ([`RankTable6::with_words`]).
    pub fn words(&self) -> [&[u32]; 2] {
        [self.classes.words(), self.index.words()]
    }

    /// The range keys, for a caller that keeps them elsewhere.
    pub fn key_words(&self) -> &[u64] {
        self.keys.words()
    }

    /// This table with its arrays kept in `keys` and `rest` (classes, index), which must hold
    /// the same words as [`RankTable6::key_words`] and [`RankTable6::words`].
    pub fn with_words(self, keys: Box<dyn Words<u64>>, rest: [Box<dyn Words<u32>>; 2]) -> RankTable6 {
        assert!(keys.words() == self.key_words(), "the same keys");
        let [classes, index] = rest;
        assert!([classes.words(), index.words()] == self.words(), "the same words");
        RankTable6 { keys, classes, index, ..self }
    }

    /// Number of ranges.
    pub fn ranges(&self) -> usize {
        self.keys.words().len()
    }

    /// The /64s the database splits finer.
    pub fn splits(&self) -> usize {
        self.fine.splits.len()
    }

    /// Blocks of 2^(64 - JUMP_BITS) /64s answered from the jump table alone, in percent.
    pub fn whole_blocks_pct(&self) -> usize {
        (100 * self.whole_blocks) >> JUMP_BITS
    }

    /// Bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.ranges() * 12 + self.index.words().len() * 4 + self.fine.keys.len() * 12 + self.fine.splits.len() * 8
    }
}

/// Where in the nodes the entry for `key` of the node of entry `j` is, the node's block being
/// the keys that share their first `bits` bits.
fn node_entry(j: u32, key: u64, bits: u32) -> usize {
    let below = 64 - bits - NODE_BITS.min(64 - bits);
    (((j & !SUB) as usize) << NODE_BITS) | ((key >> below) as usize & ((1 << NODE_BITS) - 1))
}

/// The index entry of the block of keys from `at` sharing its first `bits` bits, with `i` the
/// range holding the previous block's first key, advanced to the range holding `at`:
/// [`WHOLE`], the widest prefix and the ranking when that range holds the whole block;
/// [`SUB`] and a new node appended to `index` when the block holds more than [`DENSE`] ranges;
/// else that range's index.
fn entry(keys: &[u64], classes: &[u32], i: &mut usize, at: u64, bits: u32, index: &mut Vec<u32>) -> u32 {
    let end = at | u64::MAX.checked_shr(bits).unwrap_or(0);
    while *i + 1 < keys.len() && keys[*i + 1] <= at {
        *i += 1;
    }
    let last = keys.get(*i + 1).map_or(u64::MAX, |&k| k - 1);
    let class = classes[*i];
    if last >= end && class <= CLASS_MASK {
        return WHOLE | (u32::from(widest_prefix(at, keys[*i], last)) << PREFIX_SHIFT) | class;
    }
    if bits < 64 && keys[*i..].partition_point(|&k| k <= end) > DENSE {
        let node = index.len() >> NODE_BITS;
        index.resize(index.len() + (1 << NODE_BITS), 0);
        let step = NODE_BITS.min(64 - bits);
        let mut j = *i;
        for s in 0..(1u64 << step) {
            let e = entry(keys, classes, &mut j, at | (s << (64 - bits - step)), bits + step, index);
            index[(node << NODE_BITS) + s as usize] = e;
        }
        return SUB | node as u32;
    }
    *i as u32
}

/// Turns a walk's ranges of addresses into ranges of /64s; a /64 with more than one ranking
/// inside it is [`SPLIT`], with its pieces.
#[derive(Default)]
struct Blocks {
    out: Ranges,
    /// The /64 being filled by ranges that start or end inside it, with its pieces so far (the
    /// first address's last 64 bits, and the ranking), neighbours of one ranking merged.
    open: Option<(u64, Vec<(u64, u32)>)>,
}

impl Blocks {
    /// Ranges from `key` on have `class` (merged with the previous range when it is the same).
    fn emit(&mut self, key: u64, class: u32) {
        if self.out.classes.last() != Some(&class) {
            self.out.keys.push(key);
            self.out.classes.push(class);
        }
    }

    /// The addresses of /64 `key` from `low` on (up to the next piece) have `class`.
    fn partial(&mut self, key: u64, low: u64, class: u32) {
        match &mut self.open {
            Some((k, pieces)) if *k == key => {
                if pieces.last().map(|p| p.1) != Some(class) {
                    pieces.push((low, class));
                }
            }
            open => *open = Some((key, vec![(low, class)])),
        }
    }

    fn close(&mut self) {
        let Some((key, pieces)) = self.open.take() else { return };
        match pieces[..] {
            [(_, class)] => self.emit(key, class),
            _ => {
                let fine = &mut self.out.fine;
                let split = SPLIT | fine.splits.len() as u32;
                fine.splits.push((fine.keys.len() as u32, pieces.len() as u32));
                fine.keys.extend(pieces.iter().map(|p| p.0));
                fine.classes.extend(pieces.iter().map(|p| p.1));
                self.emit(key, split);
            }
        }
    }

    /// The addresses `first..=last` have `class`.
    fn add(&mut self, first: u128, last: u128, class: u32) {
        let (kf, kl) = ((first >> 64) as u64, (last >> 64) as u64);
        let (starts_block, ends_block) = (first as u64 == 0, last as u64 == u64::MAX);
        let mut full = kf;
        if !starts_block || (kf == kl && !ends_block) {
            self.partial(kf, first as u64, class);
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
            self.partial(kl, 0, class);
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
            RangeLocation::PerAddress => PER_ADDRESS,
        };
        blocks.add(first, last, class);
    });
    blocks.close();
    let out = blocks.out;
    (complete && out.keys.first() == Some(&0) && out.fine.splits.len() < SPLIT as usize).then_some(out)
}
