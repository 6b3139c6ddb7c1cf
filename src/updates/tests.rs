use std::path::Path;

use super::*;
use crate::config;

fn zone() -> ZoneConfig {
    let text = r#"
sites: { lon: { location: [51.5, -0.1] } }
tsig_keys:
  acme: { algorithm: hmac-sha256, secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0" }
  other: { algorithm: hmac-sha256, secret: "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0" }
zones:
  geo.example.:
    soa: { mname: ns1, rname: hostmaster, serial: 10 }
    ns: [ns1]
    records: { www: { A: 192.0.2.1 } }
    geo: { app: { sites: { lon: [192.0.2.10] } } }
    updates:
      journal: geo.journal
      allow: [ { key: acme, names: ["_acme-challenge.*"] } ]
"#;
    config::parse(text, Path::new("/tmp")).expect("valid").zones.remove(0)
}

fn n(s: &str) -> Name {
    Name::parse_absolute(s).unwrap()
}

fn req(key: &str, prereqs: Vec<Prereq>, changes: Vec<Change>) -> UpdateRequest {
    UpdateRequest { zone: n("geo.example."), key: n(key), prereqs, changes }
}

fn add_txt(name: &str, text: &str) -> Change {
    Change::Add { name: n(name), rtype: RType::Txt, ttl: 60, data: Some(RData::Txt(text.into())) }
}

const CHALLENGE: &str = "_acme-challenge.app.geo.example.";

#[test]
fn add_then_delete_advances_the_serial() {
    let z = zone();
    let added =
        apply(&z, &DynamicZone::default(), &req("acme", vec![], vec![add_txt(CHALLENGE, "tok")])).unwrap().unwrap();
    assert_eq!(added.serial, Some(11));
    assert_eq!(added.names[&n(CHALLENGE)].rdata, vec![RData::Txt("tok".into())]);
    let del = Change::DeleteRr { name: n(CHALLENGE), rtype: RType::Txt, data: Some(RData::Txt("tok".into())) };
    let deleted = apply(&z, &added, &req("acme", vec![], vec![del])).unwrap().unwrap();
    assert!(deleted.names.is_empty());
    assert_eq!(deleted.serial, Some(12));
    // A no-op changes nothing, not even the serial.
    let again = Change::DeleteRrset { name: n(CHALLENGE), rtype: RType::Txt };
    assert_eq!(apply(&z, &deleted, &req("acme", vec![], vec![again])).unwrap(), None);
}

#[test]
fn policy_refusals() {
    let z = zone();
    let cur = DynamicZone::default();
    let refused = |r: UpdateRequest| apply(&z, &cur, &r).unwrap_err().rcode;
    assert_eq!(refused(req("other", vec![], vec![add_txt(CHALLENGE, "x")])), UpdateRcode::Refused);
    assert_eq!(refused(req("acme", vec![], vec![add_txt("app.geo.example.", "x")])), UpdateRcode::Refused);
    assert_eq!(refused(req("acme", vec![], vec![add_txt("www.geo.example.", "x")])), UpdateRcode::Refused);
    let ns = Change::Add { name: n("geo.example."), rtype: RType::Ns, ttl: 60, data: Some(RData::Ns(n("evil."))) };
    assert_eq!(refused(req("acme", vec![], vec![ns])), UpdateRcode::Refused);
    let a = Change::Add { name: n(CHALLENGE), rtype: RType::A, ttl: 60, data: Some(RData::A([192, 0, 2, 9].into())) };
    assert_eq!(refused(req("acme", vec![], vec![add_txt(CHALLENGE, "ok"), a])), UpdateRcode::Refused);
    assert_eq!(refused(req("acme", vec![], vec![add_txt("other.example.", "x")])), UpdateRcode::NotZone);
    assert_eq!(
        refused(req("acme", vec![], vec![add_txt("_acme-challenge.*.geo.example.", "x")])),
        UpdateRcode::Refused
    );
}

#[test]
fn prerequisites() {
    let z = zone();
    let cur = apply(&z, &DynamicZone::default(), &req("acme", vec![], vec![add_txt(CHALLENGE, "a")])).unwrap().unwrap();
    let check = |p: Prereq| {
        apply(&z, &cur, &req("acme", vec![p], vec![add_txt(CHALLENGE, "b")])).map(|_| ()).map_err(|r| r.rcode)
    };
    assert_eq!(check(Prereq::NameInUse(n(CHALLENGE))), Ok(()));
    assert_eq!(check(Prereq::NameInUse(n("nope.geo.example."))), Err(UpdateRcode::NxDomain));
    assert_eq!(check(Prereq::NameNotInUse(n(CHALLENGE))), Err(UpdateRcode::YxDomain));
    assert_eq!(check(Prereq::NameNotInUse(n("nope.geo.example."))), Ok(()));
    assert_eq!(check(Prereq::NameInUse(n("app.geo.example."))), Ok(()));
    assert_eq!(check(Prereq::RrsetExists(n(CHALLENGE), RType::Txt)), Ok(()));
    assert_eq!(check(Prereq::RrsetExists(n(CHALLENGE), RType::A)), Err(UpdateRcode::NxRrset));
    assert_eq!(check(Prereq::RrsetNotExists(n(CHALLENGE), RType::Txt)), Err(UpdateRcode::YxRrset));
    assert_eq!(check(Prereq::RrsetEquals(n(CHALLENGE), RType::Txt, vec![Some(RData::Txt("a".into()))])), Ok(()));
    assert_eq!(
        check(Prereq::RrsetEquals(n(CHALLENGE), RType::Txt, vec![Some(RData::Txt("z".into()))])),
        Err(UpdateRcode::NxRrset)
    );
}

#[test]
fn cname_and_other_data_do_not_mix() {
    let z = zone();
    let cur = apply(&z, &DynamicZone::default(), &req("acme", vec![], vec![add_txt(CHALLENGE, "a")])).unwrap().unwrap();
    assert!(matches!(cur.names[&n(CHALLENGE)].rdata.as_slice(), [RData::Txt(_)]));
}

#[test]
fn journal_keeps_the_last_whole_record_and_drops_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.journal");
    let z = zone();
    let one = apply(&z, &DynamicZone::default(), &req("acme", vec![], vec![add_txt(CHALLENGE, "1")])).unwrap().unwrap();
    let two = apply(&z, &one, &req("acme", vec![], vec![add_txt(CHALLENGE, "2")])).unwrap().unwrap();
    let mut j = journal::Journal::open(&path).unwrap().journal;
    j.append(&one).unwrap();
    j.append(&two).unwrap();
    drop(j);
    let opened = journal::Journal::open(&path).unwrap();
    assert_eq!(opened.state.as_ref(), Some(&two));
    drop(opened);
    // A third record cut at every length: the state is the second, never part of the third.
    let full = std::fs::read(&path).unwrap();
    let three = apply(&z, &two, &req("acme", vec![], vec![add_txt(CHALLENGE, "3")])).unwrap().unwrap();
    let record = journal::encode(&three);
    for cut in 0..record.len() {
        let mut bytes = full.clone();
        bytes.extend_from_slice(&record[..cut]);
        std::fs::write(&path, &bytes).unwrap();
        let opened = journal::Journal::open(&path).unwrap();
        assert_eq!(opened.state.as_ref(), Some(&two), "cut at {cut}");
        assert_eq!(opened.discarded, cut as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full.len() as u64);
    }
    // A flipped byte in the last record's payload: that record is discarded.
    let mut bytes = full.clone();
    bytes.extend_from_slice(&record);
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(journal::Journal::open(&path).unwrap().state.as_ref(), Some(&two));
}
