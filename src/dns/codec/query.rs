//! A zero-copy reader of the common query: one question, class IN, and at most an OPT record
//! with an optional Client Subnet option. Anything else is left to hickory's full decoder.
//!
//! The reader borrows the packet and writes only the question name's text ([`sys::read_name`]:
//! lowered through a 256-entry table, one load per byte and no branch on the character class)
//! into a [`NameBuf`] its caller keeps: the UDP loop keeps one per batch slot, so the parses of a whole batch can
//! be kept for its answers (see `transport::warm`) without copying names around.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::dns::sys;

pub use crate::dns::sys::MAX_NAME_TEXT;

/// A query the fast path can answer, borrowed from the packet and from the [`NameBuf`] its
/// name was written into.
#[derive(Debug)]
pub struct FastQuery<'a> {
    pub id: u16,
    /// The header's flag bytes, 2 and 3 (RD and CD are copied into the response).
    pub flags: [u8; 2],
    /// The question as on the wire: name, type and class (copied into the response, so the
    /// name's case is preserved).
    pub question: &'a [u8],
    /// The name in canonical text ("app.geo.example."), lower case.
    pub name: &'a str,
    pub qtype: u16,
    pub edns: Option<Edns>,
}

/// Room for a question name as lower-case dotted text, given to [`parse`]. The caller keeps it
/// (the UDP loop, one per slot of a batch), so the name is written once, where it is read
/// from, and a parsed query is a few words, not a 256-byte copy.
pub struct NameBuf([u8; MAX_NAME_TEXT]);

impl NameBuf {
    pub const fn new() -> Self {
        NameBuf([0; MAX_NAME_TEXT])
    }
}

impl Default for NameBuf {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub dnssec_ok: bool,
    pub ecs: Option<EcsOption>,
}

/// A Client Subnet option as sent, not yet validated against RFC 7871's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcsOption {
    pub family: u16,
    pub source_prefix: u8,
    pub scope_prefix: u8,
    /// The address octets sent, zero-padded to the family's length.
    pub address: IpAddr,
    pub address_octets: usize,
}

/// A packet as [`parse`] read it: the query, or why the full decoder takes it (or nobody does).
pub type Parsed<'a> = Result<FastQuery<'a>, NotFast>;

/// Why a packet is not for the fast path (the full decoder takes it, or it is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFast {
    /// Shorter than a header, or a response (QR=1): never answered.
    Drop,
    /// Anything else unusual: the full decoder answers it (FORMERR, NOTIMP, BADVERS, ...).
    Slow,
}

fn u16_at(msg: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]))
}

/// Reads a query for the fast path; its name's text goes into `name`.
pub fn parse<'a>(msg: &'a [u8], name: &'a mut NameBuf) -> Parsed<'a> {
    if msg.len() < 12 || msg[2] & 0x80 != 0 {
        return Err(NotFast::Drop);
    }
    let slow = NotFast::Slow;
    // Opcode QUERY; counts: one question, no answers or authority, at most one additional.
    if msg[2] & 0x78 != 0 {
        return Err(slow);
    }
    let count = |i| u16_at(msg, i).ok_or(slow);
    if count(4)? != 1 || count(6)? != 0 || count(8)? != 0 || count(10)? > 1 {
        return Err(slow);
    }
    let (name, mut pos) = sys::read_name(msg, 12, &mut name.0).ok_or(slow)?;
    let qtype = u16_at(msg, pos).ok_or(slow)?;
    let qclass = u16_at(msg, pos + 2).ok_or(slow)?;
    if qclass != 1 {
        return Err(slow);
    }
    let question = &msg[12..pos + 4];
    pos += 4;
    let edns = if count(10)? == 1 { Some(parse_opt(msg, pos)?) } else { None };
    if edns.is_none() && pos != msg.len() {
        return Err(slow);
    }
    Ok(FastQuery { id: u16::from_be_bytes([msg[0], msg[1]]), flags: [msg[2], msg[3]], question, name, qtype, edns })
}

/// Reads the OPT record at `pos`, which must end the message.
fn parse_opt(msg: &[u8], pos: usize) -> Result<Edns, NotFast> {
    let slow = NotFast::Slow;
    // Root owner, type OPT.
    if msg.get(pos) != Some(&0) || u16_at(msg, pos + 1) != Some(41) {
        return Err(slow);
    }
    let udp_size = u16_at(msg, pos + 3).ok_or(slow)?;
    let (ext_rcode, version) = (*msg.get(pos + 5).ok_or(slow)?, *msg.get(pos + 6).ok_or(slow)?);
    let flags = u16_at(msg, pos + 7).ok_or(slow)?;
    let rdlen = u16_at(msg, pos + 9).ok_or(slow)? as usize;
    let start = pos + 11;
    if ext_rcode != 0 || version != 0 || start + rdlen != msg.len() {
        return Err(slow);
    }
    let mut ecs = None;
    let mut o = start;
    while o < msg.len() {
        let code = u16_at(msg, o).ok_or(slow)?;
        let len = u16_at(msg, o + 2).ok_or(slow)? as usize;
        let data = msg.get(o + 4..o + 4 + len).ok_or(slow)?;
        if code == 8 {
            if ecs.is_some() {
                return Err(slow);
            }
            ecs = Some(parse_ecs(data)?);
        }
        o += 4 + len;
    }
    Ok(Edns { udp_size, dnssec_ok: flags & 0x8000 != 0, ecs })
}

fn parse_ecs(data: &[u8]) -> Result<EcsOption, NotFast> {
    let slow = NotFast::Slow;
    let family = u16_at(data, 0).ok_or(slow)?;
    let (source_prefix, scope_prefix) = (*data.get(2).ok_or(slow)?, *data.get(3).ok_or(slow)?);
    let octets = &data[4..];
    let address = match family {
        1 if octets.len() <= 4 => {
            // Shifted into a word (a byte-wise copy into an array read back as one word makes
            // the processor wait for the bytes' stores).
            let bits = octets.iter().enumerate().fold(0u32, |a, (i, &b)| a | u32::from(b) << (24 - 8 * i));
            IpAddr::V4(Ipv4Addr::from(bits))
        }
        2 if octets.len() <= 16 => {
            let mut a = [0u8; 16];
            a[..octets.len()].copy_from_slice(octets);
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return Err(slow),
    };
    Ok(EcsOption { family, source_prefix, scope_prefix, address, address_octets: octets.len() })
}

#[cfg(test)]
mod tests {
    use super::super::test_query::TestQuery;
    use super::*;

    /// [`super::parse`] with a name buffer of its own (leaked: a test's few hundred bytes).
    fn parse(msg: &[u8]) -> Result<FastQuery<'_>, NotFast> {
        super::parse(msg, Box::leak(Box::new(NameBuf::new())))
    }

    fn query(name: &str, qtype: u16) -> TestQuery {
        TestQuery::new(0x1234, name, qtype).flags(0x0100)
    }

    #[test]
    fn reads_the_common_query() {
        let m = query("ApP.geo.Example.", 1).bytes();
        let q = parse(&m).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name, "app.geo.example.");
        assert_eq!(q.qtype, 1);
        assert_eq!(&q.question[..4], &[3, b'A', b'p', b'P']);
        assert!(q.edns.is_none());
        let root = query(".", 6).bytes();
        assert_eq!(parse(&root).unwrap().name, ".");
    }

    #[test]
    fn reads_edns_and_ecs() {
        let m = query("app.geo.example.", 28).dnssec_ok().ecs(1, 24, 0, &[81, 2, 69]).option(10, &[1, 2]).bytes();
        let q = parse(&m).unwrap();
        let e = q.edns.unwrap();
        assert_eq!(e.udp_size, 1232);
        assert!(e.dnssec_ok);
        let ecs = e.ecs.unwrap();
        assert_eq!((ecs.family, ecs.source_prefix, ecs.scope_prefix, ecs.address_octets), (1, 24, 0, 3));
        assert_eq!(ecs.address, "81.2.69.0".parse::<IpAddr>().unwrap());
        let v6 = query("a.", 1).dnssec_ok().ecs(2, 48, 0, &[0x2a, 0x01, 0x04, 0xf8, 0, 1]).bytes();
        assert_eq!(parse(&v6).unwrap().edns.unwrap().ecs.unwrap().address, "2a01:4f8:1::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn leaves_the_unusual_to_the_full_decoder() {
        let ok = query("app.", 1).bytes();
        let mut response = ok.clone();
        response[2] |= 0x80;
        assert_eq!(parse(&response).unwrap_err(), NotFast::Drop);
        assert_eq!(parse(&ok[..11]).unwrap_err(), NotFast::Drop);
        let notify = query("app.", 1).flags(0x2000).bytes(); // opcode 4
        assert_eq!(parse(&notify).unwrap_err(), NotFast::Slow);
        assert_eq!(parse(&ok[..ok.len() - 1]).unwrap_err(), NotFast::Slow, "truncated question");
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(parse(&trailing).unwrap_err(), NotFast::Slow);
        let chaos = query("app.", 1).class(3).bytes();
        assert_eq!(parse(&chaos).unwrap_err(), NotFast::Slow);
        let mut bad_label = query("a b.", 1).bytes();
        assert_eq!(parse(&bad_label).unwrap_err(), NotFast::Slow);
        bad_label[13] = 0xc0; // a compression pointer
        assert_eq!(parse(&bad_label).unwrap_err(), NotFast::Slow);
        // EDNS version 1, and a bad ECS family, go to the full decoder (BADVERS, FORMERR).
        let v1 = query("app.", 1).dnssec_ok().edns_version(1).bytes();
        assert_eq!(parse(&v1).unwrap_err(), NotFast::Slow);
        assert_eq!(parse(&query("app.", 1).dnssec_ok().ecs(9, 0, 0, &[]).bytes()).unwrap_err(), NotFast::Slow);
    }
}
