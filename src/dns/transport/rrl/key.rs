//! What RRL reads from an encoded response: the [`ResponseKey`] that groups it (its rcode and
//! the name it is about), and its truncated form for a slip. Walks the wire bytes directly,
//! bounded against pointer loops; never fails (what it cannot walk is keyed as an error).

/// The kind of a response, for grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A NOERROR response (answer, NODATA, referral): grouped by the question name.
    Answer,
    /// An NXDOMAIN: grouped by the zone (the owner of the SOA in the authority section).
    NxDomain,
    /// Any other rcode: one group per client prefix.
    Error,
}

/// Which response a [`Rrl::check`](super::Rrl::check) is about: a kind and a hash of the name
/// that identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseKey {
    pub(super) kind: Kind,
    pub(super) name: u64,
}

impl ResponseKey {
    /// The key of a response about `name` (text, `"app.geo.example."`; case and a trailing dot
    /// are ignored). For [`Kind::NxDomain`] pass the zone, for [`Kind::Error`] anything (it is
    /// not used).
    pub fn new(kind: Kind, name: &str) -> Self {
        let name = match kind {
            Kind::Error => 0,
            _ => fnv(name.trim_end_matches('.').bytes()),
        };
        ResponseKey { kind, name }
    }

    /// The key of an encoded response: its rcode, and the question name (NOERROR) or the zone of
    /// the SOA in the authority section (NXDOMAIN; the question name when there is no SOA).
    /// Never fails: anything it cannot walk is an [`Kind::Error`].
    pub fn from_response(msg: &[u8]) -> Self {
        let error = ResponseKey { kind: Kind::Error, name: 0 };
        if msg.len() < 12 {
            return error;
        }
        let rcode = msg[3] & 0x0f;
        let kind = match rcode {
            0 => Kind::Answer,
            3 => Kind::NxDomain,
            _ => return error,
        };
        let Some(qname) = wire_name_hash(msg, 12) else {
            return error;
        };
        if kind == Kind::NxDomain
            && let Some(zone) = soa_owner_hash(msg)
        {
            return ResponseKey { kind, name: zone };
        }
        ResponseKey { kind, name: qname }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// Cuts an encoded response down, in place, to its truncated form for [`Verdict::Slip`]: the
/// header with TC=1 and no records, and the question. False (and `response` unchanged) when it
/// is shorter than a header.
///
/// [`Verdict::Slip`]: super::Verdict::Slip
pub fn truncate_in_place(response: &mut Vec<u8>) -> bool {
    if response.len() < 12 {
        return false;
    }
    let qd = u16::from_be_bytes([response[4], response[5]]);
    // Keep the question when there is exactly one and it can be walked; else send none.
    let question_end =
        if qd == 1 { skip_name(response, 12).map(|p| p + 4).filter(|&e| e <= response.len()) } else { None };
    response.truncate(question_end.unwrap_or(12));
    response[2] |= 0x02; // TC
    response[4..12].fill(0);
    if question_end.is_some() {
        response[5] = 1;
    }
    true
}

/// The truncated form of an encoded response ([`truncate_in_place`] on a copy); `None` when
/// `response` is shorter than a header.
pub fn truncated(response: &[u8]) -> Option<Vec<u8>> {
    let mut out = response.to_vec();
    truncate_in_place(&mut out).then_some(out)
}

/// FNV-1a over lower-cased bytes: the same name in any case hashes alike.
fn fnv(bytes: impl Iterator<Item = u8>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash of the (uncompressed or compressed) wire name at `pos`, as the text form would hash
/// in [`ResponseKey::new`] ("a.b", no trailing dot). `None` when it cannot be walked.
fn wire_name_hash(msg: &[u8], mut pos: usize) -> Option<u64> {
    let mut text = [0u8; 256];
    let mut len = 0;
    // Bounded: at most 128 labels or pointers before giving up (loops in pointers).
    for _ in 0..128 {
        let l = *msg.get(pos)? as usize;
        match l {
            0 => return Some(fnv(text[..len].iter().copied())),
            l if l & 0xc0 == 0xc0 => pos = ((l & 0x3f) << 8) | *msg.get(pos + 1)? as usize,
            l if l & 0xc0 == 0 => {
                let label = msg.get(pos + 1..pos + 1 + l)?;
                if len + l + 1 > text.len() {
                    return None;
                }
                if len > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                text[len..len + l].copy_from_slice(label);
                len += l;
                pos += 1 + l;
            }
            _ => return None,
        }
    }
    None
}

/// Skips a name at `pos`; the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..128 {
        let l = *msg.get(pos)?;
        match l {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l if l & 0xc0 == 0 => pos += 1 + l as usize,
            _ => return None,
        }
    }
    None
}

/// The hash of the owner of the first SOA record in the authority section.
fn soa_owner_hash(msg: &[u8]) -> Option<u64> {
    let count = |i: usize| -> Option<usize> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]) as usize) };
    let (qd, an, ns) = (count(4)?, count(6)?, count(8)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    for i in 0..an + ns {
        let owner = pos;
        pos = skip_name(msg, pos)?;
        let rtype = count(pos)?;
        let rdlen = count(pos + 8)?;
        if i >= an && rtype == 6 {
            return wire_name_hash(msg, owner);
        }
        pos = pos.checked_add(10 + rdlen)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response: header, question `name` A IN, `an` answers, then an SOA in authority owned by `zone`.
    fn response(rcode: u8, name: &[&str], zone: Option<&[&str]>) -> Vec<u8> {
        let mut m = vec![0xab, 0xcd, 0x84, rcode, 0, 1, 0, 0, 0, u8::from(zone.is_some()), 0, 0];
        for l in name {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        if let Some(zone) = zone {
            for l in zone {
                m.push(l.len() as u8);
                m.extend_from_slice(l.as_bytes());
            }
            m.extend_from_slice(&[0, 0, 6, 0, 1, 0, 0, 0, 60, 0, 2, 0xc0, 12]);
        }
        m
    }

    #[test]
    fn keys_from_encoded_responses() {
        let answer = response(0, &["App", "GEO", "example"], None);
        assert_eq!(ResponseKey::from_response(&answer), ResponseKey::new(Kind::Answer, "app.geo.example."));
        let nx = response(3, &["nope", "geo", "example"], Some(&["geo", "example"]));
        assert_eq!(ResponseKey::from_response(&nx), ResponseKey::new(Kind::NxDomain, "geo.example"));
        let nx2 = response(3, &["other", "geo", "example"], Some(&["geo", "example"]));
        assert_eq!(ResponseKey::from_response(&nx), ResponseKey::from_response(&nx2), "one group per zone");
        assert_eq!(ResponseKey::from_response(&response(5, &["x"], None)).kind(), Kind::Error);
        assert_eq!(ResponseKey::from_response(&[1, 2, 3]).kind(), Kind::Error);
        assert_eq!(ResponseKey::from_response(&answer[..14]).kind(), Kind::Error, "a cut name");
        // A pointer loop is walked a bounded number of times.
        let mut looped = answer.clone();
        looped.truncate(12);
        looped.extend_from_slice(&[0xc0, 12]);
        assert_eq!(ResponseKey::from_response(&looped).kind(), Kind::Error);
    }

    #[test]
    fn truncated_keeps_the_header_and_question_only() {
        let nx = response(3, &["nope", "geo", "example"], Some(&["geo", "example"]));
        let t = truncated(&nx).unwrap();
        assert_eq!(t.len(), 12 + 18 + 4);
        assert_eq!(&t[..2], &[0xab, 0xcd]);
        assert_eq!(t[2] & 0x02, 0x02, "TC");
        assert_eq!(&t[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert!(t.len() <= nx.len());
        assert_eq!(truncated(&nx[..12]).unwrap().len(), 12);
        assert_eq!(truncated(&nx[..20]).unwrap().len(), 12, "a cut question is left out");
        assert!(truncated(&nx[..11]).is_none());
    }
}
