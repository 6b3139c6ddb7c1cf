//! Response Rate Limiting (RRL) of UDP answers, in the manner of BIND, Knot and NSD: a spoofed
//! flood of queries cannot turn this server into an amplifier aimed at the spoofed address.
//!
//! Responses are grouped by *client prefix* (the source address cut to `ipv4_prefix` or
//! `ipv6_prefix` bits) and *response*: the same answer for a name, an NXDOMAIN of one zone
//! (random-subdomain floods share one group), or any error (REFUSED, FORMERR, SERVFAIL...; all of
//! a prefix's errors share one group). Each group has a token bucket: it earns
//! `responses_per_second` tokens at each second boundary, never more than `responses_per_second`
//! in hand, and spends one per response. A response without a token is limited; the bucket may
//! go into debt down to `responses_per_second * window`, so a flood stays limited until it has
//! been quiet for up to `window`. Every `slip`-th limited response is sent truncated (TC=1, no
//! records) so that a real client behind the prefix retries over TCP; the others are dropped.
//! A client that sends at most `responses_per_second` identical queries in every second of the
//! server's clock is therefore never limited.
//!
//! Memory is fixed: a table of [`TABLE_SIZE`] buckets, one `AtomicU64` each (512 KiB), indexed
//! by a hash of (prefix, response). A group whose bucket holds another group's tag takes the
//! bucket over (as NSD does), so the table never grows and never needs cleaning. The hash is
//! keyed with a random seed per process, so an attacker cannot aim collisions at a victim.
//!
//! [`Rrl::check`] takes `&self` and is lock-free (one load and usually one compare-exchange), so
//! several UDP worker tasks can share one `Rrl` behind an `Arc`. TCP answers are never checked:
//! a TCP client has proved its address.
//!
//! [`apply`] is the one step between a verdict and the bytes a UDP loop sends. It first asks
//! whether the client is exempt (`server.rrl.exempt`, by default loopback, the client networks
//! and the networks discovered from Kubernetes): a binary search over the few merged ranges the
//! routing table keeps; an exempt client skips RRL entirely, and costs less than a check.
//!
//! Imports only `config` (for [`RrlConfig`]), `model` (for [`NetSet`]) and `metrics`; [`key`]
//! reads the responses.

mod key;

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ::metrics::counter;

use crate::config::RrlConfig;
use crate::metrics::RRL_LIMITED;
use crate::model::NetSet;

pub use key::{Kind, ResponseKey, truncate_in_place, truncated};

/// The number of buckets (a power of two).
pub const TABLE_SIZE: usize = 1 << 16;

/// What to do with a UDP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it as it is.
    Send,
    /// Send it truncated instead: [`truncated`] of it (TC=1, no records).
    Slip,
    /// Send nothing.
    Drop,
}

/// RRL's verdict on a UDP `response` to `client`, applied: true when it is to be sent, as it
/// is, or (slipped) cut down in place to its truncated form. Without a limiter, or for a client
/// in `exempt` (the routing table's [`rrl_exempt`](crate::routing::RoutingTable::rrl_exempt)),
/// always true, and nothing is counted: an exempt client is neither limited nor slipped.
pub fn apply(rrl: Option<&Rrl>, exempt: &NetSet, client: IpAddr, response: &mut Vec<u8>, now: Instant) -> bool {
    let Some(rrl) = rrl else { return true };
    if exempt.contains(client) {
        return true;
    }
    match rrl.check(client, ResponseKey::from_response(response), now) {
        Verdict::Send => true,
        Verdict::Slip => truncate_in_place(response),
        Verdict::Drop => false,
    }
}

/// The rate limiter. Share it between UDP workers with an `Arc`.
pub struct Rrl {
    /// Written and read by every UDP worker with atomic compare-exchange; no lock, because a
    /// flood makes this the hottest shared state in the server. Layout of each bucket: tag (16
    /// bits) | second stamp (16 bits) | slip counter (8 bits) | balance (24 bits, signed).
    table: Box<[AtomicU64]>,
    epoch: Instant,
    rate: i32,
    /// The most negative balance: `-(rate * window)`, within the 24-bit field.
    floor: i32,
    window_secs: u16,
    slip: u8,
    v4_prefix: u8,
    v6_prefix: u8,
    seed: std::collections::hash_map::RandomState,
    /// `geodns_rrl_limited_total{action}` handles, registered once: building a labelled key per
    /// limited response would double the cost of the flood path. Create the `Rrl` after
    /// `metrics::install()` (as the app does before binding), or these count nowhere.
    slipped: ::metrics::Counter,
    dropped: ::metrics::Counter,
}

const BALANCE_BITS: u32 = 24;
const BALANCE_MIN: i32 = -(1 << (BALANCE_BITS - 1));
const BALANCE_MAX: i32 = (1 << (BALANCE_BITS - 1)) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    tag: u16,
    stamp: u16,
    slips: u8,
    balance: i32,
}

impl Bucket {
    fn unpack(v: u64) -> Bucket {
        let raw = (v & ((1 << BALANCE_BITS) - 1)) as u32;
        // Sign-extend the 24-bit balance.
        let balance = ((raw << (32 - BALANCE_BITS)) as i32) >> (32 - BALANCE_BITS);
        Bucket { tag: (v >> 48) as u16, stamp: (v >> 32) as u16, slips: (v >> 24) as u8, balance }
    }

    fn pack(self) -> u64 {
        let balance = (self.balance.clamp(BALANCE_MIN, BALANCE_MAX) as u32) & ((1 << BALANCE_BITS) - 1);
        (u64::from(self.tag) << 48) | (u64::from(self.stamp) << 32) | (u64::from(self.slips) << 24) | u64::from(balance)
    }
}

impl Rrl {
    /// A limiter with the given settings (validated by `config`; out-of-range values are clamped).
    /// `None` when RRL is disabled.
    pub fn new(config: &RrlConfig) -> Option<Rrl> {
        if !config.enabled {
            return None;
        }
        let rate = config.responses_per_second.clamp(1, BALANCE_MAX as u32) as i32;
        let window_secs = config.window.as_secs().clamp(1, 3600) as u16;
        let floor = (i64::from(rate) * i64::from(window_secs)).min(i64::from(-BALANCE_MIN)) as i32;
        Some(Rrl {
            table: (0..TABLE_SIZE).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            rate,
            floor: -floor,
            window_secs,
            slip: config.slip.min(255) as u8,
            v4_prefix: config.ipv4_prefix.min(32),
            v6_prefix: config.ipv6_prefix.min(128),
            seed: std::collections::hash_map::RandomState::new(),
            slipped: counter!(RRL_LIMITED, "action" => "slip"),
            dropped: counter!(RRL_LIMITED, "action" => "drop"),
        })
    }

    /// Decides the fate of one UDP response to `client`. Counts limited responses in
    /// `geodns_rrl_limited_total{action}`.
    pub fn check(&self, client: IpAddr, key: ResponseKey, now: Instant) -> Verdict {
        let verdict = self.decide(client, key, now);
        match verdict {
            Verdict::Send => {}
            Verdict::Slip => self.slipped.increment(1),
            Verdict::Drop => self.dropped.increment(1),
        }
        verdict
    }

    fn decide(&self, client: IpAddr, key: ResponseKey, now: Instant) -> Verdict {
        let hash = self.hash(client, key);
        let slot = &self.table[(hash as usize) & (TABLE_SIZE - 1)];
        let tag = (hash >> 48) as u16;
        // Seconds since the limiter started; the 16-bit stamp wraps every 18 hours, which only
        // matters to a bucket left alone for exactly a multiple of that (it is then judged as if
        // touched recently: limited at most one more window).
        let now_secs = now.saturating_duration_since(self.epoch).as_secs() as u16;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let old = Bucket::unpack(current);
            let mut b = if old.tag != tag || current == 0 {
                // A new group (or another group's bucket, taken over).
                Bucket { tag, stamp: now_secs, slips: 0, balance: self.rate }
            } else {
                let elapsed = now_secs.wrapping_sub(old.stamp);
                let earned = i64::from(elapsed) * i64::from(self.rate);
                let balance = if elapsed > self.window_secs {
                    i64::from(self.rate)
                } else {
                    (i64::from(old.balance) + earned).min(i64::from(self.rate))
                };
                Bucket { tag, stamp: now_secs, slips: old.slips, balance: balance as i32 }
            };
            b.balance = (b.balance - 1).max(self.floor);
            let verdict = if b.balance >= 0 {
                Verdict::Send
            } else {
                b.slips = b.slips.wrapping_add(1);
                if self.slip > 0 && b.slips % self.slip == 0 {
                    b.slips = 0;
                    Verdict::Slip
                } else {
                    Verdict::Drop
                }
            };
            match slot.compare_exchange_weak(current, b.pack(), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return verdict,
                Err(actual) => current = actual,
            }
        }
    }

    fn hash(&self, client: IpAddr, key: ResponseKey) -> u64 {
        let mut h = self.seed.build_hasher();
        match client.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & mask32(self.v4_prefix);
                h.write_u8(4);
                h.write_u32(bits);
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & mask128(self.v6_prefix);
                h.write_u8(6);
                h.write_u128(bits);
            }
        }
        h.write_u8(key.kind as u8);
        h.write_u64(key.name);
        // The tag is the top 16 bits, the index the low 16: both from one 64-bit hash.
        h.finish()
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) }
}

fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len.min(128))) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(rate: u32, slip: u32) -> RrlConfig {
        RrlConfig {
            enabled: true,
            responses_per_second: rate,
            window: Duration::from_secs(15),
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn buckets_pack_and_unpack() {
        for b in [
            Bucket { tag: 0xffff, stamp: 0xfffe, slips: 255, balance: BALANCE_MIN },
            Bucket { tag: 1, stamp: 0, slips: 0, balance: BALANCE_MAX },
            Bucket { tag: 0x1234, stamp: 77, slips: 3, balance: -1 },
            Bucket { tag: 0x1234, stamp: 77, slips: 3, balance: 0 },
        ] {
            assert_eq!(Bucket::unpack(b.pack()), b);
        }
    }

    #[test]
    fn a_client_below_the_rate_is_never_limited() {
        let rrl = Rrl::new(&config(20, 2)).unwrap();
        let t0 = Instant::now();
        let key = ResponseKey::new(Kind::Answer, "app.geo.example.");
        // 20 per second for a minute, bunched at the end of each second and at the start of the next.
        for s in 0..60u64 {
            for i in 0..20 {
                let at = t0 + Duration::from_secs(s) + Duration::from_millis(if i < 10 { 990 } else { 0 });
                assert_eq!(rrl.check(ip("192.0.2.1"), key, at), Verdict::Send, "second {s}, response {i}");
            }
        }
    }

    #[test]
    fn a_flood_is_limited_with_every_second_response_slipped() {
        let rrl = Rrl::new(&config(20, 2)).unwrap();
        let t0 = Instant::now();
        let key = ResponseKey::new(Kind::Answer, "app.geo.example.");
        let verdicts: Vec<Verdict> = (0..1000).map(|_| rrl.check(ip("198.51.100.7"), key, t0)).collect();
        assert!(verdicts[..20].iter().all(|v| *v == Verdict::Send));
        let slipped = verdicts[20..].iter().filter(|v| **v == Verdict::Slip).count();
        let dropped = verdicts[20..].iter().filter(|v| **v == Verdict::Drop).count();
        assert_eq!((slipped, dropped), (490, 490));
        // The same prefix, another name: its own budget. Another prefix: its own budget.
        assert_eq!(
            rrl.check(ip("198.51.100.9"), ResponseKey::new(Kind::Answer, "static.geo.example."), t0),
            Verdict::Send
        );
        assert_eq!(rrl.check(ip("203.0.113.1"), key, t0), Verdict::Send);
        // The same /24 shares the flooded budget.
        assert_ne!(rrl.check(ip("198.51.100.200"), key, t0), Verdict::Send);
    }

    #[test]
    fn a_flood_is_remembered_for_the_window_then_forgiven() {
        let rrl = Rrl::new(&config(10, 0)).unwrap();
        let t0 = Instant::now();
        let key = ResponseKey::new(Kind::NxDomain, "geo.example.");
        for _ in 0..1000 {
            rrl.check(ip("198.51.100.7"), key, t0);
        }
        // In debt by rate * window = 150: 14 quiet seconds are not enough...
        assert_eq!(rrl.check(ip("198.51.100.7"), key, t0 + Duration::from_secs(14)), Verdict::Drop);
        // ...but after a full window of quiet it is answered again.
        assert_eq!(rrl.check(ip("198.51.100.7"), key, t0 + Duration::from_secs(31)), Verdict::Send);
    }

    #[test]
    fn slip_one_truncates_all_and_zero_drops_all() {
        let t0 = Instant::now();
        let key = ResponseKey::new(Kind::Error, "");
        let all = Rrl::new(&config(1, 1)).unwrap();
        let none = Rrl::new(&config(1, 0)).unwrap();
        for r in [&all, &none] {
            assert_eq!(r.check(ip("2001:db8::1"), key, t0), Verdict::Send);
        }
        for _ in 0..10 {
            assert_eq!(all.check(ip("2001:db8::2"), key, t0), Verdict::Slip, "same /56");
            assert_eq!(none.check(ip("2001:db8:0:ff::3"), key, t0), Verdict::Drop, "same /56");
        }
        assert_eq!(none.check(ip("2001:db8:0:100::1"), key, t0), Verdict::Send, "another /56");
        assert!(Rrl::new(&RrlConfig { enabled: false, ..config(1, 1) }).is_none());
    }

    #[test]
    fn apply_sends_slips_in_place_or_drops() {
        let t0 = Instant::now();
        let rrl = Rrl::new(&config(1, 2)).unwrap();
        // An answer: header, question "app." A IN, one A record.
        let answer = {
            let mut m = vec![0xab, 0xcd, 0x84, 0, 0, 1, 0, 1, 0, 0, 0, 0, 3, b'a', b'p', b'p', 0, 0, 1, 0, 1];
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            m
        };
        let none = NetSet::default();
        let mut r = answer.clone();
        assert!(apply(None, &none, ip("192.0.2.1"), &mut r, t0), "no limiter: sent");
        assert!(apply(Some(&rrl), &none, ip("192.0.2.1"), &mut r, t0));
        assert_eq!(r, answer, "sent as it is");
        assert!(!apply(Some(&rrl), &none, ip("192.0.2.1"), &mut r, t0), "over the budget: dropped");
        assert_eq!(r, answer);
        // An exempt client in the same prefix: sent whole, every time, and not counted.
        let exempt = NetSet::new(["192.0.2.128/25".parse().unwrap()]);
        for _ in 0..100 {
            assert!(apply(Some(&rrl), &exempt, ip("192.0.2.200"), &mut r, t0), "exempt: sent");
            assert_eq!(r, answer, "exempt: never slipped");
        }
        let capacity = r.capacity();
        assert!(apply(Some(&rrl), &exempt, ip("192.0.2.1"), &mut r, t0), "every second one slipped");
        assert_eq!(Some(r.clone()), truncated(&answer));
        assert_eq!(r.capacity(), capacity, "truncated in place");
    }

    #[test]
    fn concurrent_checks_never_hand_out_more_than_the_budget() {
        let rrl = std::sync::Arc::new(Rrl::new(&config(100, 0)).unwrap());
        let t0 = Instant::now();
        let key = ResponseKey::new(Kind::Answer, "app.geo.example.");
        let sent: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let rrl = rrl.clone();
                    s.spawn(move || {
                        (0..1000).filter(|_| rrl.check(ip("198.51.100.1"), key, t0) == Verdict::Send).count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(sent, 100);
    }
}
