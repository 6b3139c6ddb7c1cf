//! Where a rank table's two large arrays are kept: memory asked to be backed by transparent
//! huge pages. A lookup touches two random places of a few MB; the kernel's network stack, run
//! between two queries, evicts the page table entries of 4 KiB pages, so each lookup would
//! also pay for page walks. Only advice: without huge pages (disabled, or none free) the words
//! work the same, and a table that cannot be mapped stays on the heap.

use zerocopy::{FromBytes, IntoBytes};

use crate::routing::{RankTable, RankTable6, Rankings, Words};

/// Transparent huge page size on x86-64 and arm64 (4 KiB base pages).
const HUGE_PAGE: usize = 2 << 20;

/// Words in an anonymous mapping, starting at a huge page boundary.
struct Huge<T> {
    map: memmap2::MmapMut,
    /// Where the words start in `map`.
    offset: usize,
    len: usize,
    _words: std::marker::PhantomData<T>,
}

impl<T: zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::Immutable> Huge<T> {
    fn new(words: &[T]) -> Option<Self> {
        let bytes = std::mem::size_of_val(words);
        let mut map = memmap2::MmapMut::map_anon(bytes + HUGE_PAGE).ok()?;
        let offset = (HUGE_PAGE - map.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
        let _ = map.advise(memmap2::Advice::HugePage);
        map[offset..offset + bytes].copy_from_slice(words.as_bytes());
        Some(Huge { map, offset, len: words.len(), _words: std::marker::PhantomData })
    }
}

impl<T: zerocopy::FromBytes + zerocopy::Immutable + Send + Sync> Words<T> for Huge<T> {
    fn words(&self) -> &[T] {
        let bytes = &self.map[self.offset..self.offset + self.len * std::mem::size_of::<T>()];
        <[T]>::ref_from_bytes(bytes).expect("the offset is a multiple of the word size")
    }
}

/// `tables`, with their arrays moved to huge-page-backed memory where it can be mapped.
pub(super) fn place(tables: Rankings) -> Rankings {
    Rankings { v4: tables.v4.map(place_v4), v6: tables.v6.map(place_v6) }
}

fn place_v4(table: RankTable) -> RankTable {
    let (ranges, jump) = table.words();
    match (Huge::new(ranges), Huge::new(jump)) {
        (Some(r), Some(j)) => table.with_words(Box::new(r), Box::new(j)),
        _ => table,
    }
}

fn place_v6(table: RankTable6) -> RankTable6 {
    let [classes, index] = table.words();
    match (Huge::new(table.key_words()), Huge::new(classes), Huge::new(index)) {
        (Some(k), Some(c), Some(i)) => table.with_words(Box::new(k), [Box::new(c), Box::new(i)]),
        _ => table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_read_back_the_same_from_an_aligned_mapping() {
        let words: Vec<u64> = (0..100_000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let huge = Huge::new(&words).expect("an anonymous mapping");
        assert_eq!(huge.words(), &words[..]);
        assert_eq!(huge.words().as_ptr() as usize % HUGE_PAGE, 0);
    }
}
