//! Answer checking for `--record` and `--expect`: a response is reduced to a canonical text
//! (rcode, the AA and TC flags, the answer and authority records with their TTLs, sorted, and
//! the ECS scope), so that two answers compare equal exactly when a client would see the same
//! thing, whatever the order of the records.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// What a query may be answered with: one canonical answer per alternative (one per config,
/// in the order of the expectation file's columns).
pub struct Expect {
    /// Per query (in query-file order): the ids of its acceptable answers, by alternative.
    pub alts: Vec<Vec<u32>>,
    /// Canonical answer text -> id.
    ids: HashMap<String, u32>,
    /// Most alternatives of any query: the width of the per-alternative counts.
    pub width: usize,
}

impl Expect {
    /// Reads an expectation file: one line per query, its acceptable canonical answers
    /// separated by tabs.
    pub fn read(path: &Path, queries: usize) -> io::Result<Expect> {
        let text = fs::read_to_string(path)?;
        let mut ids = HashMap::new();
        let mut alts = Vec::with_capacity(queries);
        let mut width = 0;
        for line in text.lines() {
            let row: Vec<u32> = line
                .split('\t')
                .map(|a| {
                    let next = ids.len() as u32;
                    *ids.entry(a.to_owned()).or_insert(next)
                })
                .collect();
            width = width.max(row.len());
            alts.push(row);
        }
        if alts.len() != queries {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} lines for {queries} queries", alts.len()),
            ));
        }
        Ok(Expect { alts, ids, width })
    }

    /// Bit i set when the answer is alternative i of query `q` (0: a wrong answer).
    pub fn matches(&self, q: usize, canonical: &str) -> u32 {
        let Some(&id) = self.ids.get(canonical) else { return 0 };
        self.alts[q].iter().enumerate().filter(|(_, a)| **a == id).fold(0, |m, (i, _)| m | 1 << i)
    }

    /// The acceptable answers of query `q`, for reporting a wrong one.
    pub fn describe(&self, q: usize) -> Vec<&str> {
        let by_id: HashMap<u32, &str> = self.ids.iter().map(|(s, id)| (*id, s.as_str())).collect();
        self.alts[q].iter().map(|id| by_id[id]).collect()
    }
}

/// Reads a domain name at `at` (following compression pointers), returning it and the offset
/// just after it in the record.
fn name(msg: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(at)? as usize;
        if len & 0xc0 == 0xc0 {
            let ptr = (len & 0x3f) << 8 | *msg.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            at = ptr;
            continue;
        }
        if len == 0 {
            if out.is_empty() {
                out.push('.');
            }
            return Some((out.to_ascii_lowercase(), end.unwrap_or(at + 1)));
        }
        let label = msg.get(at + 1..at + 1 + len)?;
        out.push_str(&String::from_utf8_lossy(label));
        out.push('.');
        at += 1 + len;
    }
    None
}

fn u16_at(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

fn rdata_text(msg: &[u8], rtype: u16, start: usize, rdata: &[u8]) -> String {
    match (rtype, rdata.len()) {
        (1, 4) => Ipv4Addr::from(<[u8; 4]>::try_from(rdata).expect("length checked")).to_string(),
        (28, 16) => Ipv6Addr::from(<[u8; 16]>::try_from(rdata).expect("length checked")).to_string(),
        (5 | 2, _) => name(msg, start).map_or_else(|| "?".into(), |(n, _)| n),
        _ => rdata.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }),
    }
}

/// The canonical text of a response, or `None` when it cannot be parsed.
pub fn canonical(msg: &[u8]) -> Option<String> {
    if msg.len() < 12 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    let (aa, tc) = (msg[2] & 0x04 != 0, msg[2] & 0x02 != 0);
    let qd = u16_at(msg, 4)?;
    let counts = [u16_at(msg, 6)?, u16_at(msg, 8)?, u16_at(msg, 10)?];
    let mut at = 12;
    for _ in 0..qd {
        at = name(msg, at)?.1 + 4;
    }
    let mut sections: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let mut scope = String::from("-");
    for (section, &count) in counts.iter().enumerate() {
        for _ in 0..count {
            let (owner, next) = name(msg, at)?;
            let rtype = u16_at(msg, next)?;
            let ttl = u32::from_be_bytes(msg.get(next + 4..next + 8)?.try_into().ok()?);
            let rdlen = u16_at(msg, next + 8)? as usize;
            let start = next + 10;
            let rdata = msg.get(start..start + rdlen)?;
            at = start + rdlen;
            if section < 2 {
                sections[section].push(format!("{owner} {ttl} {rtype} {}", rdata_text(msg, rtype, start, rdata)));
            } else if rtype == 41 {
                // OPT: find the Client Subnet option (code 8) and keep its scope prefix.
                let mut o = 0;
                while o + 4 <= rdata.len() {
                    let code = u16::from_be_bytes([rdata[o], rdata[o + 1]]);
                    let olen = u16::from_be_bytes([rdata[o + 2], rdata[o + 3]]) as usize;
                    if code == 8 && olen >= 4 && o + 4 + olen <= rdata.len() {
                        scope = format!("{}/{}", rdata[o + 6], rdata[o + 7]);
                    }
                    o += 4 + olen;
                }
            }
        }
    }
    for s in &mut sections {
        s.sort();
    }
    Some(format!(
        "rcode={rcode}{}{} an=[{}] ns=[{}] ecs={scope}",
        if aa { " aa" } else { "" },
        if tc { " tc" } else { "" },
        sections[0].join(","),
        sections[1].join(","),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_any_order_compare_equal() {
        // Header: id, flags (QR AA), rcode 0, qd 1, an 2, ns 0, ar 1.
        let mut head = vec![0, 1, 0x84, 0, 0, 1, 0, 2, 0, 0, 0, 1];
        head.extend_from_slice(b"\x03app\x07example\x00\x00\x01\x00\x01");
        let a1 = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01";
        let a2 = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x02";
        // OPT with ECS 1.2.3.0/24 scope /16.
        let opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0b\x00\x08\x00\x07\x00\x01\x18\x10\x01\x02\x03";
        let one = [&head[..], a1, a2, opt].concat();
        let two = [&head[..], a2, a1, opt].concat();
        let c = canonical(&one).unwrap();
        assert_eq!(c, canonical(&two).unwrap());
        assert_eq!(c, "rcode=0 aa an=[app.example. 60 1 192.0.2.1,app.example. 60 1 192.0.2.2] ns=[] ecs=24/16");
        assert!(canonical(&one[..one.len() - 3]).is_none());
    }
}
