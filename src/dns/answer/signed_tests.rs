//! The quick answers to DO queries against the general path they shortcut: byte for byte the
//! same response, and the same counts, for every kind of name, client and health state.

use std::net::IpAddr;
use std::sync::Arc;

use super::super::codec::query::{NameBuf, parse};
use super::super::codec::test_query::TestQuery;
use super::super::testing::example_config_text;
use super::*;
use crate::dnssec::{Algorithm, Lifetimes, SigningKey, ZoneKeys, keys, sign_table};
use crate::routing::{Inputs, RankTables, Rankings, build_with};

/// Every DO query the quick path answers gets the bytes the general path (`resolve`, then
/// `signed_answer`) gives, with one key and with two (a rollover: two RRSIGs per set), for
/// geo names (plain, `max_answers`, `all_down: nodata`) from IPv4, IPv6 and client-network
/// clients with and without ECS, NXDOMAIN, NODATA, the apex, static names and CNAMEs, with
/// sites down, over UDP sizes that fit and that truncate, and over TCP.
#[test]
fn quick_do_answers_are_the_general_do_answers() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let config = crate::config::parse(&example_config_text(), &dir).unwrap();
    let apex = Name::from_canonical("geo.example.");
    let lifetimes = || Lifetimes {
        validity: std::time::Duration::from_secs(86_400 * 14),
        refresh: std::time::Duration::from_secs(86_400 * 7),
    };
    let (ecdsa, ed25519) =
        (keys::generate(Algorithm::EcdsaP256Sha256).unwrap(), keys::generate(Algorithm::Ed25519).unwrap());
    let key_sets = [vec![&ecdsa], vec![&ecdsa, &ed25519]];
    let subnets: Vec<Option<(IpAddr, u8)>> = vec![
        None,
        Some(("81.2.69.0".parse().unwrap(), 24)),
        Some(("103.6.148.0".parse().unwrap(), 22)),
        Some(("5.9.0.0".parse().unwrap(), 16)),
        Some(("8.8.8.0".parse().unwrap(), 24)),
        Some(("10.42.7.0".parse().unwrap(), 24)),
        Some(("10.43.0.0".parse().unwrap(), 16)),
        Some(("2a01:4f8::".parse().unwrap(), 32)),
        Some(("2001:4860:4860::".parse().unwrap(), 48)),
        Some(("2400:cb00:2048:100::".parse().unwrap(), 56)),
        Some(("0.0.0.0".parse().unwrap(), 0)),
    ];
    let names = [
        ("app.geo.example.", 1),
        ("APP.Geo.example.", 28),
        ("app.geo.example.", 255),
        ("app.geo.example.", 16),
        ("pool.geo.example.", 1),
        ("pool.geo.example.", 28),
        ("drop.geo.example.", 1),
        ("drop.geo.example.", 28),
        ("www.geo.example.", 1),
        ("static.geo.example.", 1),
        ("static.geo.example.", 28),
        ("v6.geo.example.", 28),
        ("ent.geo.example.", 1),
        ("Ent.geo.example.", 28),
        ("host.ent.geo.example.", 1),
        ("nope.geo.example.", 1),
        ("a.b.nope.geo.example.", 16),
        ("zzz.geo.example.", 28),
        ("a.host.ent.geo.example.", 1),
        ("0.geo.example.", 1),
        ("b.geo.example.", 1),
        ("appx.geo.example.", 1),
        ("a.app.geo.example.", 28),
        ("x.static.geo.example.", 1),
        ("zzzz.www.geo.example.", 1),
        ("-.geo.example.", 1),
        ("geo.example.", 6),
        ("GEO.example.", 6),
        ("geo.example.", 2),
        ("geo.example.", 1),
        ("geo.example.", 16),
        ("ns1.geo.example.", 1),
        ("ns1.geo.example.", 28),
        ("www.geo.example.", 5),
        ("other.example.", 1),
    ];
    let db = Arc::new(crate::geoip::GeoIpDb::open(config.geoip.as_ref().unwrap()).unwrap());
    let ranks = RankTables::new();
    let sites_down: [&[usize]; 4] = [&[], &[0, 2], &[1], &[0, 1, 2, 3]];
    let (mut total, mut quick_geo, mut quick_static, mut quick_negative) = (0, 0, 0, 0);
    for down in sites_down {
        let inputs = Inputs { sites_down: down.iter().copied().collect(), ..Inputs::default() };
        for keys in &key_sets {
            let built = build_with(&config, db.clone(), Some(&ranks), None, Arc::new(inputs.clone()), 1);
            // The rank tables (of the site lists, whatever their health) made once, as the app does.
            for slot in ranks.pending() {
                slot.fill(Rankings::build(&*db, &slot.sites()));
            }
            let table = built.table();
            let zones = [ZoneKeys {
                apex: apex.clone(),
                keys: keys.iter().map(|k| SigningKey::from_pem(k).unwrap()).collect(),
                lifetimes: lifetimes(),
            }];
            let (sigs, _) = sign_table(table, &zones, 1_800_000_000, None);
            table.set_signed(Arc::new(sigs));
            for (name, qtype) in names {
                for subnet in &subnets {
                    for (transport, size) in
                        [(Transport::Udp, 1232), (Transport::Udp, 512), (Transport::Udp, 4096), (Transport::Tcp, 1232)]
                    {
                        let mut with_do = TestQuery::new(0xbeef, name, qtype).flags(0x0110).edns(size).dnssec_ok();
                        if let Some((addr, prefix)) = *subnet {
                            with_do = with_do.subnet(addr, prefix);
                        }
                        let packet = with_do.bytes();
                        let mut text = NameBuf::new();
                        let q = parse(&packet, &mut text).unwrap();
                        for src in ["127.0.0.1", "10.43.1.1", "::1"] {
                            let src: IpAddr = src.parse().unwrap();
                            let (mut a, mut b) = (Vec::new(), Vec::new());
                            let fa = answer_with(table, &q, src, transport, &mut a, true);
                            let fb = answer_with(table, &q, src, transport, &mut b, false);
                            let what = format!(
                                "{name} {qtype} {subnet:?} {transport:?} {size} from {src}, down {down:?}, {} keys",
                                keys.len()
                            );
                            assert_eq!(a, b, "{what}");
                            match (fa, fb) {
                                (Outcome::Answered(x), Outcome::Answered(y)) => {
                                    assert_eq!(
                                        (x.rcode, x.ecs, x.scope, x.answers),
                                        (y.rcode, y.ecs, y.scope, y.answers),
                                        "{what}"
                                    );
                                }
                                other => panic!("{what}: {other:?}"),
                            }
                            total += 1;
                            // Which quick path answered (the same call answer_with makes).
                            let ecs = q.edns.and_then(|e| e.ecs).map(|o| {
                                let cs =
                                    hickory_proto::rr::rdata::opt::ClientSubnet::new(o.address, o.source_prefix, 0);
                                super::super::codec::ecs::Ecs::from_option(&cs, Some(4 + o.address_octets)).unwrap()
                            });
                            let client = super::super::codec::ecs::Ecs::client(ecs.as_ref(), src);
                            let source = ecs.map(|e| e.source_prefix);
                            let rtype = RType::from_code(qtype);
                            let mut c = Vec::new();
                            if signed::quick_answer(table, &q, rtype, client, source, ecs.as_ref(), 1232, &mut c)
                                .is_some()
                            {
                                if table.quick_geo(q.name, rtype, client, source).is_some() {
                                    quick_geo += 1;
                                } else if table.quick_static(q.name, rtype).is_some() {
                                    quick_static += 1;
                                } else {
                                    quick_negative += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // Most geo and negative queries take the quick path; the rest are compared all the same.
    assert!(quick_geo * 10 > total, "quick geo answers: {quick_geo} of {total}");
    assert!(quick_static * 20 > total, "quick static answers: {quick_static} of {total}");
    assert!(quick_negative * 5 > total, "quick negative answers: {quick_negative} of {total}");
}
