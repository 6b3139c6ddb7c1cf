//! A set of IP networks asked one question on the query path: does it hold this address?
//! Kept per family as sorted, merged, disjoint address ranges, so the answer is one binary
//! search over a handful of ranges (none at all for an empty family), whatever the number or
//! nesting of the networks it was built from.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSet {
    /// Inclusive ranges, sorted by start, neither overlapping nor touching (IPv4 addresses
    /// widened to `u128`, so one merge and one search serve both families).
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u128::from(u32::from(n.network())), u128::from(u32::from(n.broadcast())))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        NetSet { v4: merge(v4), v6: merge(v6) }
    }

    /// Whether `ip` is in one of the networks. An IPv4-mapped IPv6 address counts as its IPv4
    /// address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => holds(&self.v4, u128::from(u32::from(a))),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => holds(&self.v4, u128::from(u32::from(v4))),
                None => holds(&self.v6, u128::from(a)),
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The number of disjoint ranges kept (merged networks count once).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match out.last_mut() {
            // Overlapping or adjacent: one range.
            Some(prev) if prev.1.checked_add(1).is_none_or(|next| first <= next) => prev.1 = prev.1.max(last),
            _ => out.push((first, last)),
        }
    }
    out
}

fn holds(ranges: &[(u128, u128)], addr: u128) -> bool {
    // The last range starting at or before `addr` is the only one that can hold it.
    let i = ranges.partition_point(|r| r.0 <= addr);
    i > 0 && addr <= ranges[i - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> NetSet {
        NetSet::new(nets.iter().map(|n| n.parse::<IpNet>().unwrap()))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn holds_exactly_the_addresses_of_its_networks() {
        let s = set(&["127.0.0.0/8", "::1/128", "10.42.0.0/16", "fd00:42::/32", "192.0.2.7/32"]);
        for yes in ["127.0.0.1", "127.255.255.255", "10.42.0.0", "10.42.255.255", "192.0.2.7", "::1", "fd00:42:ffff::9"]
        {
            assert!(s.contains(ip(yes)), "{yes}");
        }
        for no in [
            "126.255.255.255",
            "128.0.0.0",
            "10.43.0.0",
            "10.41.255.255",
            "192.0.2.6",
            "192.0.2.8",
            "::2",
            "fd00:43::1",
        ] {
            assert!(!s.contains(ip(no)), "{no}");
        }
        assert!(s.contains(ip("::ffff:127.0.0.1")), "IPv4-mapped counts as IPv4");
        assert!(!NetSet::default().contains(ip("127.0.0.1")) && NetSet::default().is_empty());
    }

    #[test]
    fn nested_overlapping_and_adjacent_networks_merge() {
        let s = set(&["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8", "12.0.0.0/9", "12.128.0.0/9", "0.0.0.0/32"]);
        // 10/8 + 11/8 touch, 12/9 + 12.128/9 touch and touch 11/8: one range; 0.0.0.0 apart.
        assert_eq!(s.ranges(), 2);
        assert!(s.contains(ip("11.255.255.255")) && s.contains(ip("12.200.0.1")) && s.contains(ip("0.0.0.0")));
        assert!(!s.contains(ip("13.0.0.0")) && !s.contains(ip("9.255.255.255")) && !s.contains(ip("0.0.0.1")));
        let all = set(&["0.0.0.0/0", "::/0", "255.255.255.255/32", "ffff::/16"]);
        assert_eq!(all.ranges(), 2);
        assert!(all.contains(ip("255.255.255.255")) && all.contains(ip("ffff:ffff::1")) && all.contains(ip("::")));
    }
}
