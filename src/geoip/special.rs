//! Addresses that are never globally routed (private, loopback, link-local, shared CGNAT,
//! multicast, reserved) have no place on the globe, whatever a database says about them: some
//! free databases map 172.16.0.0/12 or 192.168.0.0/16 to a country. Such clients get no
//! location, which routing answers with the configured site order (`client_networks` is the
//! way to place them).
//!
//! The documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)
//! are deliberately *not* listed: test fixtures use them as stand-ins for public networks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 special-purpose networks (RFC 6890 and friends): (network, prefix length).
const V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, broadcast
];

/// IPv6 special-purpose networks: (network, prefix length). IPv4-mapped addresses are
/// checked against [`V4`] separately.
const V6: &[(u128, u8)] = &[
    (0, 128),                 // ::/128 unspecified
    (1, 128),                 // ::1/128 loopback
    (0xfc00_u128 << 112, 7),  // fc00::/7 unique local
    (0xfe80_u128 << 112, 10), // fe80::/10 link-local
    (0xff00_u128 << 112, 8),  // ff00::/8 multicast
];

/// The IPv4 special-purpose networks as (first, last) address ranges, in address order.
pub(crate) fn v4_ranges() -> impl Iterator<Item = (u32, u32)> {
    V4.iter().map(|&(net, len)| (net, net | (u32::MAX >> len)))
}

/// The IPv6 special-purpose networks as (first, last) address ranges, in address order
/// (IPv4-mapped addresses are not among them: see [`v6`]).
pub(crate) fn v6_ranges() -> impl Iterator<Item = (u128, u128)> {
    V6.iter().map(|&(net, len)| (net, net | if len == 128 { 0 } else { u128::MAX >> len }))
}

fn v4(addr: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(addr);
    V4.iter().find(|&&(net, len)| bits & (u32::MAX << (32 - u32::from(len))) == net).map(|&(_, len)| len)
}

fn v6(addr: Ipv6Addr) -> Option<u8> {
    if let Some(mapped) = addr.to_ipv4_mapped() {
        return v4(mapped).map(|len| 96 + len);
    }
    let bits = u128::from(addr);
    V6.iter()
        .find(|&&(net, len)| {
            let mask = if len == 128 { u128::MAX } else { !(u128::MAX >> len) };
            bits & mask == net
        })
        .map(|&(_, len)| len)
}

/// When `ip` is in a special-purpose network, that network's prefix length (in the address's
/// own family): every address in it gets the same (empty) answer.
pub(crate) fn special_purpose(ip: IpAddr) -> Option<u8> {
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(a) => v6(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &str) -> Option<u8> {
        special_purpose(s.parse().unwrap())
    }

    #[test]
    fn private_and_local_addresses() {
        assert_eq!(sp("10.1.2.3"), Some(8));
        assert_eq!(sp("172.16.0.1"), Some(12));
        assert_eq!(sp("172.31.255.255"), Some(12));
        assert_eq!(sp("192.168.1.1"), Some(16));
        assert_eq!(sp("127.0.0.1"), Some(8));
        assert_eq!(sp("100.64.0.1"), Some(10));
        assert_eq!(sp("169.254.9.9"), Some(16));
        assert_eq!(sp("224.0.0.1"), Some(4));
        assert_eq!(sp("255.255.255.255"), Some(4));
        assert_eq!(sp("::"), Some(128));
        assert_eq!(sp("::1"), Some(128));
        assert_eq!(sp("fd12::1"), Some(7));
        assert_eq!(sp("fe80::1"), Some(10));
        assert_eq!(sp("ff02::1"), Some(8));
        assert_eq!(sp("::ffff:192.168.0.1"), Some(112));
    }

    #[test]
    fn public_and_documentation_addresses() {
        for a in [
            "8.8.8.8",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "2001:db8::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "::2",
        ] {
            assert_eq!(sp(a), None, "{a}");
        }
    }
}
