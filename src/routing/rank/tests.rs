//! Rank table tests: hand-built locators, lookups checked against a scan of the ranges.

use super::v4::RankTable;
use super::*;
use crate::model::GeoHit;
use crate::model::{Location, RangeLocation};
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
        let places =
            [Some(Location::new(51.5, -0.1)), Some(Location::new(1.3, 103.8)), None, Some(Location::new(52.0, 0.0))];
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
    use super::v4::widest_prefix32;
    assert_eq!(widest_prefix32(5, 0, u32::MAX), 0);
    assert_eq!(widest_prefix32(0x0a00_0001, 0x0a00_0000, 0x0aff_ffff), 8);
    // 10.0.0.0-10.2.255.255: 10.1.2.3 fits in 10.0.0.0/15, not /14.
    assert_eq!(widest_prefix32(0x0a01_0203, 0x0a00_0000, 0x0a02_ffff), 15);
    assert_eq!(widest_prefix32(0x0a02_0203, 0x0a00_0000, 0x0a02_ffff), 16);
    assert_eq!(widest_prefix32(7, 7, 7), 32);
    assert_eq!(widest_prefix(7, 7, 7), 64);
    assert_eq!(widest_prefix(5, 0, u64::MAX), 0);
    // 2001:db8::/32 as keys of /64s: a /48 inside it is a /32 block.
    let (first, last) = (0x2001_0db8_0000_0000, 0x2001_0db8_ffff_ffff);
    assert_eq!(widest_prefix(0x2001_0db8_0001_0000, first, last), 32);
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
    a.fill(Rankings::build(&Halves, &a.sites()));
    assert!(a.get6().is_none(), "Halves knows no IPv6");
    assert!(tables.pending().is_empty());
    assert_eq!(b.get().unwrap().lookup(1).order, &[1, 0]);
    // Kept elsewhere, the same words answer the same.
    let t = RankTable::build(&Halves, &sites()).unwrap();
    let (ranges, jump) = t.words();
    let (ranges, jump) = (ranges.to_vec(), jump.to_vec());
    let moved = t.with_words(Box::new(ranges), Box::new(jump));
    assert_eq!(moved.lookup(0x8000_0001), Ranked { order: &[0, 1], prefix_len: 1 });
}

/// IPv6: 2001:db8::/32 split into /48s alternating London and Singapore, a /64 inside
/// 2001:db8:4::/48 split finer (two places inside it), 2002::/16 an alias (per address), the
/// rest unknown.
struct Sixes;
impl Sixes {
    fn each(f: &mut dyn FnMut(u128, u128, RangeLocation)) {
        let at = |lat, lon| RangeLocation::At(Location::new(lat, lon));
        let net = |n: u128, len: u32| (n, n | (u128::MAX >> len));
        let db8: u128 = 0x2001_0db8 << 96;
        f(0, db8 - 1, RangeLocation::Nowhere);
        for i in 0..0x10u128 {
            let (first, last) = net(db8 | (i << 80), 48);
            let place = if i % 2 == 0 { at(51.5, -0.1) } else { at(1.3, 103.8) };
            if i == 4 {
                // One /64 with two places inside it.
                let split = first | (7 << 64);
                f(first, split - 1, place);
                f(split, split | (u128::MAX >> 65), at(1.3, 103.8));
                f(split | (1 << 63), last, place);
            } else {
                f(first, last, place);
            }
        }
        let (alias, alias_last) = net(0x2002 << 112, 16);
        f(db8 | (0x10 << 80), alias - 1, RangeLocation::Nowhere);
        f(alias, alias_last, RangeLocation::PerAddress);
        f(alias_last + 1, u128::MAX, RangeLocation::Nowhere);
    }
}
impl Locator for Sixes {
    fn locate(&self, _ip: IpAddr) -> GeoHit {
        GeoHit::default()
    }
    fn for_each_ipv6_range(&self, f: &mut dyn FnMut(u128, u128, RangeLocation)) -> bool {
        Sixes::each(f);
        true
    }
}

#[test]
fn ipv6_ranks_slash_64s_searches_finer_splits_and_leaves_aliases_to_the_per_query_path() {
    let t = Rankings::build(&Sixes, &sites()).v6.expect("an IPv6 table");
    let addr = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
    // `sites()` lists singapore, then london.
    let london = [1u8, 0];
    let singapore = [0u8, 1];
    let r = t.lookup(addr("2001:db8:2:1::5")).unwrap();
    assert_eq!((r.order, r.prefix_len), (&london[..], 48), "its neighbours are Singapore's");
    let r = t.lookup(addr("2001:db8:1:ff::")).unwrap();
    assert_eq!((r.order, r.prefix_len), (&singapore[..], 48));
    // The /64 split in halves: each half its own ranking and scope.
    assert_eq!(t.splits(), 1);
    let r = t.lookup(addr("2001:db8:4:7::1")).unwrap();
    assert_eq!((r.order, r.prefix_len), (&singapore[..], 65));
    let r = t.lookup(addr("2001:db8:4:7:8000::1")).unwrap();
    assert_eq!((r.order, r.prefix_len), (&london[..], 65));
    let r = t.lookup(addr("2001:db8:4:8::1")).unwrap();
    assert_eq!(r.order, &london[..]);
    assert!(r.prefix_len > 48 && r.prefix_len <= 64, "{}", r.prefix_len);
    let r = t.lookup(addr("2001:db8:4:6::1")).unwrap();
    assert_eq!(r.order, &london[..]);
    // The alias asks per address; unknown space has the configured order.
    assert!(t.lookup(addr("2002:c000:201::1")).is_none());
    let r = t.lookup(addr("2a00:1450::1")).unwrap();
    assert_eq!(r.order, &singapore[..], "no location: the configured order");
    assert_eq!(t.lookup(addr("::1")).unwrap().order, &singapore[..]);
}

#[test]
fn ipv6_lookups_match_a_scan_of_the_ranges() {
    let t = Rankings::build(&Sixes, &sites()).v6.unwrap();
    let mut all: Vec<(u128, u128, RangeLocation)> = Vec::new();
    Sixes::each(&mut |a, b, p| all.push((a, b, p)));
    let ranking = |p: &RangeLocation| -> &'static [u8] {
        match p {
            RangeLocation::At(l) if l.lon < 50.0 => &[1, 0],
            RangeLocation::PerAddress => &[],
            _ => &[0, 1],
        }
    };
    let mut x = 0x2001_0db8_0000_0000u64;
    for _ in 0..50_000 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        // Addresses around 2001:db8::/32 (the split /64 often) and anywhere.
        let key = match x & 3 {
            0 => 0x2001_0db8_0004_0007,
            1 => 0x2001_0db8_0000_0000 | (x >> 44),
            _ => x,
        };
        let a = (u128::from(key) << 64) | u128::from(x.rotate_left(17));
        let holder = &all[all.partition_point(|r| r.0 <= a) - 1];
        match t.lookup(a) {
            None => assert_eq!(holder.2, RangeLocation::PerAddress, "{a:#x}: asked per address"),
            Some(r) => {
                let want = ranking(&holder.2);
                assert_eq!(r.order, want, "{a:#x}");
                // Every range the scope block takes in is ranked the same.
                let host = if r.prefix_len == 0 { u128::MAX } else { u128::MAX >> r.prefix_len };
                let (lo, hi) = (a & !host, a | host);
                for (_, _, p) in all.iter().filter(|r| r.1 >= lo && r.0 <= hi) {
                    assert_eq!(ranking(p), want, "{a:#x}/{} takes in another ranking", r.prefix_len);
                }
            }
        }
    }
}
