//! Translation between geodns's own names and records and hickory's.

use hickory_proto::rr::rdata;
use hickory_proto::rr::{self, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecoder, Restrict};

use crate::model::{Name, RData, RType};

/// A hickory name for one of ours. Our names were validated when the config was loaded, so
/// failure here means a bug; it maps to the root rather than panicking on the query path.
pub fn name(n: &Name) -> rr::Name {
    rr::Name::from_ascii(n.as_str()).unwrap_or_else(|_| rr::Name::root())
}

pub fn rtype(t: RecordType) -> RType {
    RType::from_code(u16::from(t))
}

/// Hickory record data for ours.
pub fn rdata(d: &RData) -> rr::RData {
    match d {
        RData::A(ip) => rr::RData::A(rdata::A(*ip)),
        RData::Aaaa(ip) => rr::RData::AAAA(rdata::AAAA(*ip)),
        RData::Cname(n) => rr::RData::CNAME(rdata::CNAME(name(n))),
        RData::Ns(n) => rr::RData::NS(rdata::NS(name(n))),
        RData::Soa(s) => rr::RData::SOA(rdata::SOA::new(
            name(&s.mname),
            name(&s.rname),
            s.serial,
            s.refresh as i32,
            s.retry as i32,
            s.expire as i32,
            s.minimum,
        )),
        RData::Txt(t) => rr::RData::TXT(rdata::TXT::new(txt_strings(t))),
        RData::Mx(m) => rr::RData::MX(rdata::MX::new(m.preference, name(&m.exchange))),
        RData::Srv(s) => rr::RData::SRV(rdata::SRV::new(s.priority, s.weight, s.port, name(&s.target))),
        RData::Caa(c) => caa(c),
    }
}

/// A TXT record's text as character-strings of at most 255 octets each (split on char bounds).
fn txt_strings(text: &str) -> Vec<String> {
    if text.len() <= 255 {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = rest.len().min(255);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    out
}

/// CAA through its wire form (RFC 8659: flags, tag length, tag, value), which carries any tag.
fn caa(c: &crate::model::Caa) -> rr::RData {
    let mut wire = vec![if c.critical { 0x80 } else { 0 }, c.tag.len() as u8];
    wire.extend_from_slice(c.tag.as_bytes());
    wire.extend_from_slice(c.value.as_bytes());
    let mut decoder = BinDecoder::new(&wire);
    rr::RData::read(&mut decoder, RecordType::CAA, Restrict::new(wire.len() as u16))
        .unwrap_or(rr::RData::Update0(RecordType::CAA))
}

pub fn record(owner: rr::Name, ttl: u32, d: &RData) -> Record {
    Record::from_rdata(owner, ttl, rdata(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_txt_is_split() {
        let long = "x".repeat(600);
        let parts = txt_strings(&long);
        assert_eq!(parts.iter().map(String::len).collect::<Vec<_>>(), vec![255, 255, 90]);
        assert_eq!(txt_strings("short"), vec!["short".to_owned()]);
    }

    #[test]
    fn caa_round_trips() {
        let c = crate::model::Caa { critical: false, tag: "issue".into(), value: "letsencrypt.org".into() };
        let r = caa(&c);
        assert!(matches!(r, rr::RData::CAA(_)), "{r:?}");
    }
}
