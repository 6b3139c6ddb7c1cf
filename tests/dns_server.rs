//! The server end to end: started in-process on 127.0.0.1:0 and [::1]:0, queried over real UDP
//! and TCP sockets with hickory-proto messages, located with a GeoIP database the test writes.

mod common;

use std::net::IpAddr;
use std::path::PathBuf;

use common::dns::{self, BOTH, addresses, ask, ecs, query, rcode, with_ecs, with_edns};
use common::server::{start, test_config, v4, v6};
use common::wire::WireQuery;
use hickory_proto::op::{Edns, ResponseCode};
use hickory_proto::rr::RecordType;

/// Networks on five continents, at the coordinates of a city in each.
const FIXTURE: &[(&str, f64, f64, &str)] = &[
    ("81.2.69.0/24", 51.5, -0.1, "GB"),
    ("2.0.0.0/12", 48.86, 2.35, "FR"),
    ("5.9.0.0/16", 52.52, 13.40, "DE"),
    ("31.0.0.0/16", 52.23, 21.01, "PL"),
    ("24.0.0.0/12", 40.71, -74.0, "US"),
    ("8.8.8.0/24", 37.4, -122.1, "US"),
    ("200.160.0.0/20", -23.55, -46.63, "BR"),
    ("1.0.16.0/20", 35.68, 139.69, "JP"),
    ("1.128.0.0/11", -33.87, 151.21, "AU"),
    ("103.6.148.0/22", 1.29, 103.85, "SG"),
    ("2a01:4f8::/32", 52.52, 13.40, "DE"),
    ("2001:4860::/32", 37.4, -122.1, "US"),
    ("2400:cb00::/32", 1.29, 103.85, "SG"),
    ("2a02:c7f::/32", 51.5, -0.1, "GB"),
];

fn fixture_db(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&path, FIXTURE);
    path
}

async fn server() -> (tempfile::TempDir, geodns::app::Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fixture_db(&dir);
    let running = start(&test_config(&db), dir.path()).await;
    (dir, running)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn answers_follow_the_nearest_site_for_clients_on_five_continents() {
    let (_dir, s) = server().await;
    let addr = v4(&s);
    // (subnet, expected site address, expected scope). The scope is the widest block around the
    // subnet in which every address ranks the four sites the same, capped at the source prefix.
    // Addresses the fixture does not place rank them in the configured order (london,
    // frankfurt, seattle, singapore), as do London, Paris and Sao Paulo: their blocks reach
    // across the unplaced space up to the nearest network ranked otherwise.
    let cases = [
        ("81.2.69.0/24", "192.0.2.1", 3), // London -> london; 64.0.0.0/3 holds no other ranking
        ("2.1.0.0/16", "192.0.2.1", 7),   // Paris -> london (343 km) before frankfurt (478 km); 2.0.0.0/7
        ("5.9.1.0/24", "192.0.2.2", 16),  // Berlin -> frankfurt; its database network
        ("31.0.5.0/24", "192.0.2.2", 16), // Warsaw -> frankfurt
        ("24.1.2.0/24", "192.0.2.3", 12), // New York -> seattle (3,866 km) before london (5,570 km)
        ("8.8.8.0/24", "192.0.2.3", 24),  // California -> seattle
        ("200.160.1.0/24", "192.0.2.1", 1), // Sao Paulo -> london (9,497 km); 128.0.0.0/1 ranks alike
        ("1.0.16.0/24", "192.0.2.4", 20), // Tokyo -> singapore
        ("1.130.0.0/16", "192.0.2.4", 11), // Sydney -> singapore
        ("103.6.148.0/24", "192.0.2.4", 22), // Singapore -> singapore
    ];
    for t in BOTH {
        for (subnet, want, scope) in cases {
            let reply = ask(t, addr, &with_ecs(query("app.geo.example.", RecordType::A), subnet)).await;
            assert_eq!(rcode(&reply), ResponseCode::NoError, "{t:?} {subnet}");
            assert_eq!(addresses(&reply), [ip(want)], "{t:?} {subnet}");
            assert_eq!(reply.answers[0].ttl, 60);
            let echoed = ecs(&reply).unwrap_or_else(|| panic!("{t:?} {subnet}: ECS echoed"));
            let (net, len) = subnet.split_once('/').unwrap();
            assert_eq!(echoed.addr(), ip(net), "{subnet}");
            assert_eq!(echoed.source_prefix(), len.parse::<u8>().unwrap(), "{subnet}");
            assert_eq!(echoed.scope_prefix(), scope, "{t:?} {subnet}");
        }
    }
}

#[tokio::test]
async fn ipv6_subnets_and_the_ipv6_listener() {
    let (_dir, s) = server().await;
    for addr in [v4(&s), v6(&s)] {
        for t in BOTH {
            for (subnet, want, scope) in [
                ("2a01:4f8:1::/48", "2001:db8::2", 32),
                ("2001:4860:4860::/48", "2001:db8::3", 32),
                ("2400:cb00:2048::/48", "2001:db8::4", 32),
                // GB ranks London first, as the configured order does for every address the
                // database does not place: 2a02::/15 (up to the DE network) all answers London.
                ("2a02:c7f:1:2::/64", "2001:db8::1", 15),
            ] {
                let reply = ask(t, addr, &with_ecs(query("app.geo.example.", RecordType::AAAA), subnet)).await;
                assert_eq!(addresses(&reply), [ip(want)], "{addr} {t:?} {subnet}");
                let echoed = ecs(&reply).expect("ECS echoed");
                assert_eq!(echoed.scope_prefix(), scope, "{subnet}");
            }
        }
    }
}

#[tokio::test]
async fn client_networks_beat_geoip_with_their_own_scope() {
    let (_dir, s) = server().await;
    let reply = dns::udp(v4(&s), &with_ecs(query("app.geo.example.", RecordType::A), "10.42.7.0/24")).await;
    assert_eq!(addresses(&reply), [ip("192.0.2.2")], "10.42.0.0/16 is frankfurt");
    assert_eq!(ecs(&reply).unwrap().scope_prefix(), 16);
    let reply = dns::udp(v4(&s), &with_ecs(query("app.geo.example.", RecordType::AAAA), "fd00:42:1::/48")).await;
    assert_eq!(addresses(&reply), [ip("2001:db8::3")], "fd00:42::/32 is seattle");
    assert_eq!(ecs(&reply).unwrap().scope_prefix(), 32);
}

#[tokio::test]
async fn without_ecs_the_source_address_places_the_client_and_no_ecs_is_returned() {
    let (_dir, s) = server().await;
    for t in BOTH {
        // From 127.0.0.1 (no location): the configured order, London first.
        let reply = ask(t, v4(&s), &with_edns(query("app.geo.example.", RecordType::A), 4096)).await;
        assert_eq!(addresses(&reply), [ip("192.0.2.1")]);
        assert!(reply.edns.is_some(), "EDNS answered with EDNS");
        assert!(ecs(&reply).is_none(), "no ECS in the reply when none was asked");
        let reply = ask(t, v4(&s), &query("app.geo.example.", RecordType::A)).await;
        assert!(reply.edns.is_none(), "no EDNS in the reply when none was asked");
        // ECS with source prefix 0: the source address is used, scope 0.
        let reply = ask(t, v4(&s), &with_ecs(query("app.geo.example.", RecordType::A), "0.0.0.0/0")).await;
        assert_eq!(addresses(&reply), [ip("192.0.2.1")]);
        assert_eq!(ecs(&reply).unwrap().scope_prefix(), 0);
    }
}

#[tokio::test]
async fn header_flags_authoritative_no_recursion_rd_copied() {
    let (_dir, s) = server().await;
    for t in BOTH {
        let mut q = query("static.geo.example.", RecordType::A);
        let reply = ask(t, v4(&s), &q).await;
        assert!(reply.metadata.authoritative);
        assert!(!reply.metadata.recursion_available);
        assert!(reply.metadata.recursion_desired);
        assert_eq!(addresses(&reply), [ip("192.0.2.53")]);
        q.metadata.recursion_desired = false;
        let reply = ask(t, v4(&s), &q).await;
        assert!(!reply.metadata.recursion_desired);
    }
}

#[tokio::test]
async fn static_records_soa_ns_and_glue_at_the_apex() {
    let (_dir, s) = server().await;
    for t in BOTH {
        let reply = ask(t, v4(&s), &query("geo.example.", RecordType::SOA)).await;
        assert_eq!(reply.answers.len(), 1);
        assert!(dns::is_soa(&reply.answers[0].data));
        assert_eq!(reply.answers[0].ttl, 300);
        let reply = ask(t, v4(&s), &query("geo.example.", RecordType::NS)).await;
        assert_eq!(reply.answers.len(), 1);
        assert_eq!(reply.answers[0].data.to_string(), "ns1.geo.example.");
        assert_eq!(reply.additionals.iter().filter_map(|r| r.data.ip_addr()).collect::<Vec<_>>(), [ip("127.0.0.1")]);
        let reply = ask(t, v4(&s), &query("geo.example.", RecordType::TXT)).await;
        assert_eq!(reply.answers[0].data.to_string(), "geo.example GeoDNS zone");
        let reply = ask(t, v4(&s), &query("v6.geo.example.", RecordType::AAAA)).await;
        assert_eq!(addresses(&reply), [ip("2001:db8::53")]);
        // A CNAME to a geo name is answered with the CNAME and the chased geo answer.
        let reply = ask(t, v4(&s), &with_ecs(query("www.geo.example.", RecordType::A), "103.6.148.0/24")).await;
        assert_eq!(reply.answers[0].data.to_string(), "app.geo.example.");
        assert_eq!(addresses(&reply), [ip("192.0.2.4")]);
        assert_eq!(ecs(&reply).unwrap().scope_prefix(), 22);
    }
}

#[tokio::test]
async fn nxdomain_nodata_and_empty_non_terminals_carry_the_soa() {
    let (_dir, s) = server().await;
    for t in BOTH {
        for (name, rtype, code) in [
            ("nope.geo.example.", RecordType::A, ResponseCode::NXDomain),
            ("deep.nope.geo.example.", RecordType::AAAA, ResponseCode::NXDomain),
            ("ent.geo.example.", RecordType::A, ResponseCode::NoError), // empty non-terminal
            ("static.geo.example.", RecordType::AAAA, ResponseCode::NoError), // NODATA
            ("app.geo.example.", RecordType::TXT, ResponseCode::NoError), // NODATA at a geo name
        ] {
            let reply = ask(t, v4(&s), &query(name, rtype)).await;
            assert_eq!(rcode(&reply), code, "{name} {rtype}");
            assert!(reply.metadata.authoritative, "{name}");
            assert!(reply.answers.is_empty(), "{name}");
            assert_eq!(reply.authorities.len(), 1, "{name}");
            assert!(dns::is_soa(&reply.authorities[0].data), "{name}");
            assert_eq!(reply.authorities[0].ttl, 120, "min(SOA TTL 300, minimum 120)");
            assert_eq!(reply.authorities[0].name.to_string(), "geo.example.");
        }
    }
}

#[tokio::test]
async fn names_outside_the_zones_and_zone_transfers_are_refused() {
    let (_dir, s) = server().await;
    for t in BOTH {
        for (name, rtype) in [
            ("example.com.", RecordType::A),
            ("example.", RecordType::SOA),
            ("geo.example.", RecordType::AXFR),
            ("geo.example.", RecordType::IXFR),
        ] {
            let reply = ask(t, v4(&s), &query(name, rtype)).await;
            assert_eq!(rcode(&reply), ResponseCode::Refused, "{t:?} {name} {rtype}");
            assert!(reply.answers.is_empty());
            assert!(!reply.metadata.authoritative, "{name}");
        }
    }
}

#[tokio::test]
async fn any_is_answered_with_one_rrset() {
    let (_dir, s) = server().await;
    for t in BOTH {
        let reply = ask(t, v4(&s), &with_ecs(query("app.geo.example.", RecordType::ANY), "81.2.69.0/24")).await;
        assert_eq!(addresses(&reply), [ip("192.0.2.1")]);
        let reply = ask(t, v4(&s), &query("geo.example.", RecordType::ANY)).await;
        assert_eq!(reply.answers.len(), 1);
        assert!(dns::is_soa(&reply.answers[0].data));
    }
}

#[tokio::test]
async fn question_case_is_preserved() {
    let (_dir, s) = server().await;
    for t in BOTH {
        for name in ["ApP.gEo.ExAmPlE.", "STATIC.GEO.EXAMPLE.", "wWw.GeO.eXaMpLe."] {
            let reply = ask(t, v4(&s), &query(name, RecordType::A)).await;
            assert_eq!(reply.queries[0].name().to_string(), name);
            assert_eq!(reply.answers[0].name.to_string(), name, "answer owner keeps the question's case");
            assert!(reply.answers[0].name.eq_case(reply.queries[0].name()));
        }
    }
}

#[tokio::test]
async fn edns_payload_size_badvers_and_truncation() {
    let (_dir, s) = server().await;
    // The response advertises min(request, 1232).
    let reply = dns::udp(v4(&s), &with_edns(query("static.geo.example.", RecordType::A), 4096)).await;
    assert_eq!(reply.edns.as_ref().unwrap().max_payload(), 1232);
    let reply = dns::udp(v4(&s), &with_edns(query("static.geo.example.", RecordType::A), 800)).await;
    assert_eq!(reply.edns.as_ref().unwrap().max_payload(), 800);
    // EDNS version 1: BADVERS, with an OPT of version 0.
    let mut q = query("static.geo.example.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_version(1);
    q.set_edns(edns);
    for t in BOTH {
        let reply = ask(t, v4(&s), &q).await;
        // BADVERS shares code 16 with BADSIG, which is how a decoder names it.
        assert_eq!(u16::from(rcode(&reply)), 16, "{t:?}: BADVERS");
        assert_eq!(reply.edns.as_ref().expect("OPT in a BADVERS reply").version(), 0);
        assert!(reply.answers.is_empty());
    }
    // "big" has three 200-octet TXT records: over 512 octets.
    let q = query("big.geo.example.", RecordType::TXT);
    let reply = dns::udp(v4(&s), &q).await;
    assert!(reply.metadata.truncation, "no EDNS: 512 octets, so TC");
    assert!(reply.answers.len() < 3);
    let reply = dns::udp(v4(&s), &with_edns(q.clone(), 1232)).await;
    assert!(!reply.metadata.truncation, "fits in 1232");
    assert_eq!(reply.answers.len(), 3);
    let reply = dns::tcp(v4(&s), &q).await;
    assert!(!reply.metadata.truncation, "TCP serves everything");
    assert_eq!(reply.answers.len(), 3);
}

#[tokio::test]
async fn max_answers_takes_addresses_from_sites_in_distance_order() {
    let (_dir, s) = server().await;
    let reply = dns::udp(v4(&s), &with_ecs(query("pool.geo.example.", RecordType::A), "5.9.1.0/24")).await;
    assert_eq!(addresses(&reply), [ip("192.0.2.21"), ip("192.0.2.22"), ip("192.0.2.11")]);
    let reply = dns::udp(v4(&s), &with_ecs(query("pool.geo.example.", RecordType::A), "103.6.148.0/24")).await;
    assert_eq!(addresses(&reply), [ip("192.0.2.41"), ip("192.0.2.21"), ip("192.0.2.22")]);
}

/// A query for app.geo.example. A with RD and a raw ECS option (family, source, scope, address
/// bytes), valid or not.
fn raw_ecs_query(id: u16, family: u16, source: u8, scope: u8, addr: &[u8]) -> Vec<u8> {
    WireQuery::new(id, "app.geo.example.", 1).flags(0x0100).ecs(family, source, scope, addr).bytes()
}

#[tokio::test]
async fn malformed_ecs_gets_formerr() {
    let (_dir, s) = server().await;
    let ok = raw_ecs_query(1, 1, 24, 0, &[81, 2, 69]);
    let reply = hickory_proto::op::Message::from_vec(&dns::udp_raw(v4(&s), &ok).await.unwrap()).unwrap();
    assert_eq!(rcode(&reply), ResponseCode::NoError, "the raw builder makes a valid query");
    assert_eq!(addresses(&reply), [ip("192.0.2.1")]);
    for (why, bytes) in [
        ("host bits beyond the source prefix", raw_ecs_query(2, 1, 24, 0, &[81, 2, 69, 1])),
        ("address bits set beyond the prefix within the last octet", raw_ecs_query(3, 1, 20, 0, &[81, 2, 69])),
        ("source prefix beyond 32", raw_ecs_query(4, 1, 40, 0, &[81, 2, 69, 0, 0])),
        ("scope prefix set in a query", raw_ecs_query(5, 1, 24, 16, &[81, 2, 69])),
        ("unknown family", raw_ecs_query(6, 9, 24, 0, &[81, 2, 69])),
        ("address shorter than the prefix", raw_ecs_query(7, 1, 24, 0, &[81])),
    ] {
        let reply = dns::udp_raw(v4(&s), &bytes).await.unwrap_or_else(|| panic!("{why}: a reply"));
        let reply = hickory_proto::op::Message::from_vec(&reply).unwrap_or_else(|e| panic!("{why}: {e}"));
        assert_eq!(rcode(&reply), ResponseCode::FormErr, "{why}");
        assert_eq!(reply.metadata.id, u16::from_be_bytes([bytes[0], bytes[1]]));
        assert!(reply.answers.is_empty(), "{why}");
    }
}

#[tokio::test]
async fn garbage_gets_formerr_or_silence_and_the_server_keeps_answering() {
    let (_dir, s) = server().await;
    let addr = v4(&s);
    let valid = query("app.geo.example.", RecordType::A).to_vec().unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut packets: Vec<Vec<u8>> = Vec::new();
    for len in 0..valid.len() {
        packets.push(valid[..len].to_vec()); // every truncation of a valid query
    }
    for _ in 0..150 {
        let len = (next() % 300) as usize;
        packets.push((0..len).map(|_| next() as u8).collect()); // random bytes
    }
    for _ in 0..150 {
        let mut p = valid.clone(); // a valid query with a few bytes flipped
        for _ in 0..3 {
            let i = (next() as usize) % p.len();
            p[i] = next() as u8;
        }
        packets.push(p);
    }
    let mut answered = 0;
    for p in &packets {
        let must_answer = p.len() >= 12 && p[2] & 0x80 == 0;
        let wait = std::time::Duration::from_millis(if must_answer { 2000 } else { 50 });
        match dns::udp_raw_wait(addr, p, wait).await {
            Some(reply) => {
                answered += 1;
                assert!(must_answer, "packets shorter than a header and responses (QR=1) are dropped: {p:?}");
                assert!(reply.len() >= 12, "a reply has at least a header");
                assert_eq!(reply[..2], p[..2], "a reply echoes the ID");
                assert!(reply[2] & 0x80 != 0, "a reply has QR set");
                let parsed = hickory_proto::op::Message::from_vec(&reply);
                assert!(parsed.is_ok(), "every reply parses: {parsed:?}");
            }
            None => assert!(!must_answer, "a query with a readable header gets an answer (FORMERR at least): {p:?}"),
        }
    }
    println!("garbage: {answered} of {} packets answered", packets.len());
    assert!(answered > 0, "some of the mutated queries are answerable");
    // Still healthy.
    for t in BOTH {
        let reply = ask(t, addr, &with_ecs(query("app.geo.example.", RecordType::A), "81.2.69.0/24")).await;
        assert_eq!(addresses(&reply), [ip("192.0.2.1")]);
    }
    // A response packet (QR=1) is not answered (no reflection).
    let mut response_bit = valid.clone();
    response_bit[2] |= 0x80;
    assert!(dns::udp_raw_wait(addr, &response_bit, std::time::Duration::from_millis(300)).await.is_none());
}
