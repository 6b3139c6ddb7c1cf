//! Reading an UPDATE message (RFC 2136 section 2) from its bytes into geodns's terms, with the
//! TSIG record (RFC 8945) it ends with. Reads names with compression pointers; record data of
//! the types geodns can hold becomes [`RData`], any other type `None`.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::model::{Caa, Change, Mx, Name, Prereq, RData, RType, Srv};

pub const CLASS_IN: u16 = 1;
pub const CLASS_NONE: u16 = 254;
pub const CLASS_ANY: u16 = 255;
pub const TYPE_TSIG: u16 = 250;
const TYPE_OPT: u16 = 41;

/// A malformed message (FORMERR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The TSIG record of a message.
#[derive(Debug, Clone)]
pub struct Tsig {
    /// Where the TSIG record starts: the signed part of the message ends here.
    pub start: usize,
    pub key: Name,
    pub algorithm: Name,
    pub time: u64,
    pub fudge: u16,
    pub mac: Vec<u8>,
    pub original_id: u16,
    pub error: u16,
    pub other: Vec<u8>,
}

/// An UPDATE message as read.
#[derive(Debug, Clone)]
pub struct Message {
    pub zone: Name,
    /// Where the zone section ends (a response echoes `msg[12..zone_end]`).
    pub zone_end: usize,
    pub prereqs: Vec<Prereq>,
    pub changes: Vec<Change>,
    pub tsig: Option<Tsig>,
}

fn u16_at(msg: &[u8], at: usize) -> Result<u16, Malformed> {
    msg.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(Malformed("message cut short"))
}

fn u32_at(msg: &[u8], at: usize) -> Result<u32, Malformed> {
    Ok((u32::from(u16_at(msg, at)?) << 16) | u32::from(u16_at(msg, at + 2)?))
}

/// Reads a name at `at`: the name and where the bytes after it start.
pub fn read_name(msg: &[u8], mut at: usize) -> Result<(Name, usize), Malformed> {
    let bad = Malformed("bad name");
    let mut text = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at).ok_or(bad.clone())? as usize;
        match len {
            0 => {
                let next = end.unwrap_or(at + 1);
                if text.is_empty() {
                    return Ok((Name::root(), next));
                }
                return Name::parse_absolute(&text).map(|n| (n, next)).map_err(|_| Malformed("unsupported name"));
            }
            l if l & 0xC0 == 0xC0 => {
                let ptr = (usize::from(u16_at(msg, at)?)) & 0x3FFF;
                end.get_or_insert(at + 2);
                if ptr >= at {
                    return Err(bad);
                }
                at = ptr;
            }
            l if l < 64 => {
                let label = msg.get(at + 1..at + 1 + l).ok_or(bad.clone())?;
                text.extend(label.iter().map(|&b| b as char));
                text.push('.');
                at += 1 + l;
            }
            _ => return Err(bad),
        }
    }
    Err(bad)
}

/// One resource record's fields; its data is `msg[rdata..rdata + rdlen]`.
struct Rr {
    name: Name,
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata: usize,
    rdlen: usize,
    start: usize,
}

fn read_rr(msg: &[u8], start: usize) -> Result<(Rr, usize), Malformed> {
    let (name, at) = read_name(msg, start)?;
    let rtype = u16_at(msg, at)?;
    let class = u16_at(msg, at + 2)?;
    let ttl = u32_at(msg, at + 4)?;
    let rdlen = usize::from(u16_at(msg, at + 8)?);
    let rdata = at + 10;
    if rdata + rdlen > msg.len() {
        return Err(Malformed("record data cut short"));
    }
    Ok((Rr { name, rtype, class, ttl, rdata, rdlen, start }, rdata + rdlen))
}

/// Record data of the types geodns holds; `None` for other types.
fn rdata(msg: &[u8], rr: &Rr) -> Result<Option<RData>, Malformed> {
    let data = &msg[rr.rdata..rr.rdata + rr.rdlen];
    let bad = Malformed("bad record data");
    let name_at = |at: usize| -> Result<Name, Malformed> {
        let (n, end) = read_name(msg, at)?;
        if end != rr.rdata + rr.rdlen { Err(Malformed("bad record data")) } else { Ok(n) }
    };
    Ok(Some(match RType::from_code(rr.rtype) {
        RType::A => RData::A(Ipv4Addr::from(<[u8; 4]>::try_from(data).map_err(|_| bad)?)),
        RType::Aaaa => RData::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(data).map_err(|_| bad)?)),
        RType::Ns => RData::Ns(name_at(rr.rdata)?),
        RType::Cname => RData::Cname(name_at(rr.rdata)?),
        RType::Mx => RData::Mx(Mx { preference: u16_at(msg, rr.rdata)?, exchange: name_at(rr.rdata + 2)? }),
        RType::Srv => RData::Srv(Srv {
            priority: u16_at(msg, rr.rdata)?,
            weight: u16_at(msg, rr.rdata + 2)?,
            port: u16_at(msg, rr.rdata + 4)?,
            target: name_at(rr.rdata + 6)?,
        }),
        RType::Txt => {
            // The character-strings joined (geodns holds a TXT record as one text).
            let (mut text, mut at) = (Vec::new(), 0);
            while at < data.len() {
                let l = data[at] as usize;
                text.extend_from_slice(data.get(at + 1..at + 1 + l).ok_or(bad.clone())?);
                at += 1 + l;
            }
            RData::Txt(String::from_utf8_lossy(&text).into_owned())
        }
        RType::Caa => {
            let (&flags, rest) = data.split_first().ok_or(bad.clone())?;
            let (&tag_len, rest) = rest.split_first().ok_or(bad.clone())?;
            let tag = rest.get(..tag_len as usize).ok_or(bad)?;
            RData::Caa(Caa {
                critical: flags & 0x80 != 0,
                tag: String::from_utf8_lossy(tag).into_owned(),
                value: String::from_utf8_lossy(&rest[tag_len as usize..]).into_owned(),
            })
        }
        _ => return Ok(None),
    }))
}

/// Reads an UPDATE message (the caller checked its opcode).
pub fn read(msg: &[u8]) -> Result<Message, Malformed> {
    let (zocount, prcount, upcount, adcount) = (u16_at(msg, 4)?, u16_at(msg, 6)?, u16_at(msg, 8)?, u16_at(msg, 10)?);
    if zocount != 1 {
        return Err(Malformed("the zone section must hold one zone"));
    }
    let (zone, at) = read_name(msg, 12)?;
    if u16_at(msg, at)? != RType::Soa.code() || u16_at(msg, at + 2)? != CLASS_IN {
        return Err(Malformed("the zone must be of type SOA, class IN"));
    }
    let zone_end = at + 4;
    let mut at = zone_end;
    let mut prereqs = Vec::new();
    // Value-dependent prerequisites of one name and type form one RRset (RFC 2136 3.2.3).
    let mut equals: Vec<(Name, RType, Vec<Option<RData>>)> = Vec::new();
    for _ in 0..prcount {
        let (rr, next) = read_rr(msg, at)?;
        at = next;
        let t = RType::from_code(rr.rtype);
        if rr.ttl != 0 {
            return Err(Malformed("a prerequisite's TTL must be 0"));
        }
        match (rr.class, t) {
            (CLASS_ANY, _) if rr.rdlen != 0 => return Err(Malformed("prerequisite with data and class ANY")),
            (CLASS_ANY, RType::Any) => prereqs.push(Prereq::NameInUse(rr.name)),
            (CLASS_ANY, _) => prereqs.push(Prereq::RrsetExists(rr.name, t)),
            (CLASS_NONE, _) if rr.rdlen != 0 => return Err(Malformed("prerequisite with data and class NONE")),
            (CLASS_NONE, RType::Any) => prereqs.push(Prereq::NameNotInUse(rr.name)),
            (CLASS_NONE, _) => prereqs.push(Prereq::RrsetNotExists(rr.name, t)),
            (CLASS_IN, _) => {
                let d = rdata(msg, &rr)?;
                match equals.iter_mut().find(|(n, et, _)| *n == rr.name && *et == t) {
                    Some((_, _, set)) => set.push(d),
                    None => equals.push((rr.name, t, vec![d])),
                }
            }
            _ => return Err(Malformed("prerequisite of an unknown class")),
        }
    }
    prereqs.extend(equals.into_iter().map(|(n, t, set)| Prereq::RrsetEquals(n, t, set)));
    let mut changes = Vec::new();
    for _ in 0..upcount {
        let (rr, next) = read_rr(msg, at)?;
        at = next;
        let t = RType::from_code(rr.rtype);
        let change = match rr.class {
            CLASS_IN if matches!(t, RType::Any | RType::Transfer) || rr.rtype == TYPE_TSIG || rr.rtype == TYPE_OPT => {
                return Err(Malformed("an update cannot add a meta type"));
            }
            CLASS_IN => Change::Add { data: rdata(msg, &rr)?, name: rr.name, rtype: t, ttl: rr.ttl },
            CLASS_ANY if rr.ttl != 0 || rr.rdlen != 0 => return Err(Malformed("a deletion of class ANY has data")),
            CLASS_ANY if t == RType::Any => Change::DeleteName { name: rr.name },
            CLASS_ANY => Change::DeleteRrset { name: rr.name, rtype: t },
            CLASS_NONE if rr.ttl != 0 || t == RType::Any => return Err(Malformed("bad deletion of class NONE")),
            CLASS_NONE => Change::DeleteRr { data: rdata(msg, &rr)?, name: rr.name, rtype: t },
            _ => return Err(Malformed("update of an unknown class")),
        };
        changes.push(change);
    }
    let mut tsig = None;
    for i in 0..adcount {
        let (rr, next) = read_rr(msg, at)?;
        at = next;
        if rr.rtype == TYPE_TSIG {
            if i + 1 != adcount || rr.class != CLASS_ANY {
                return Err(Malformed("TSIG must be the last record, of class ANY"));
            }
            tsig = Some(read_tsig(msg, &rr)?);
        }
    }
    if at != msg.len() {
        return Err(Malformed("bytes after the last record"));
    }
    Ok(Message { zone, zone_end, prereqs, changes, tsig })
}

fn read_tsig(msg: &[u8], rr: &Rr) -> Result<Tsig, Malformed> {
    let (algorithm, at) = read_name(msg, rr.rdata)?;
    let time = (u64::from(u16_at(msg, at)?) << 32) | u64::from(u32_at(msg, at + 2)?);
    let fudge = u16_at(msg, at + 6)?;
    let mac_len = usize::from(u16_at(msg, at + 8)?);
    let mac = msg.get(at + 10..at + 10 + mac_len).ok_or(Malformed("TSIG cut short"))?.to_vec();
    let at = at + 10 + mac_len;
    let original_id = u16_at(msg, at)?;
    let error = u16_at(msg, at + 2)?;
    let other_len = usize::from(u16_at(msg, at + 4)?);
    let other = msg.get(at + 6..at + 6 + other_len).ok_or(Malformed("TSIG cut short"))?.to_vec();
    if at + 6 + other_len != rr.rdata + rr.rdlen {
        return Err(Malformed("bad TSIG length"));
    }
    Ok(Tsig { start: rr.start, key: rr.name.clone(), algorithm, time, fudge, mac, original_id, error, other })
}

/// A name in uncompressed wire form (lower case: the canonical form TSIG digests).
pub fn name_wire(name: &Name, out: &mut Vec<u8>) {
    for label in name.as_str().split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}
