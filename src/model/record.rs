use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::Name;

/// Record types geodns serves, plus any other type a query may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RType {
    A,
    Ns,
    Cname,
    Soa,
    Mx,
    Txt,
    Aaaa,
    Srv,
    Caa,
    /// ANY (RFC 8482 answers it with one RRset).
    Any,
    /// Zone transfers (AXFR, IXFR): refused.
    Transfer,
    /// Every other type, by number.
    Other(u16),
}

impl RType {
    /// The types a zone's `records:` may hold, by their config spelling.
    pub const CONFIGURABLE: [(&'static str, RType); 7] = [
        ("A", RType::A),
        ("AAAA", RType::Aaaa),
        ("CNAME", RType::Cname),
        ("TXT", RType::Txt),
        ("MX", RType::Mx),
        ("SRV", RType::Srv),
        ("CAA", RType::Caa),
    ];

    pub fn from_code(code: u16) -> Self {
        match code {
            1 => RType::A,
            2 => RType::Ns,
            5 => RType::Cname,
            6 => RType::Soa,
            15 => RType::Mx,
            16 => RType::Txt,
            28 => RType::Aaaa,
            33 => RType::Srv,
            257 => RType::Caa,
            255 => RType::Any,
            251 | 252 => RType::Transfer,
            other => RType::Other(other),
        }
    }

    /// The type's number on the wire (AXFR for `Transfer`).
    pub fn code(self) -> u16 {
        match self {
            RType::A => 1,
            RType::Ns => 2,
            RType::Cname => 5,
            RType::Soa => 6,
            RType::Mx => 15,
            RType::Txt => 16,
            RType::Aaaa => 28,
            RType::Srv => 33,
            RType::Caa => 257,
            RType::Any => 255,
            RType::Transfer => 252,
            RType::Other(n) => n,
        }
    }

    /// Parses a type mnemonic as written on a command line or in a test file ("A", "aaaa", "TYPE65").
    pub fn parse(text: &str) -> Option<Self> {
        let upper = text.to_ascii_uppercase();
        Some(match upper.as_str() {
            "A" => RType::A,
            "NS" => RType::Ns,
            "CNAME" => RType::Cname,
            "SOA" => RType::Soa,
            "MX" => RType::Mx,
            "TXT" => RType::Txt,
            "AAAA" => RType::Aaaa,
            "SRV" => RType::Srv,
            "CAA" => RType::Caa,
            "ANY" => RType::Any,
            "AXFR" | "IXFR" => RType::Transfer,
            _ => RType::Other(upper.strip_prefix("TYPE")?.parse().ok()?),
        })
    }
}

impl fmt::Display for RType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RType::A => f.write_str("A"),
            RType::Ns => f.write_str("NS"),
            RType::Cname => f.write_str("CNAME"),
            RType::Soa => f.write_str("SOA"),
            RType::Mx => f.write_str("MX"),
            RType::Txt => f.write_str("TXT"),
            RType::Aaaa => f.write_str("AAAA"),
            RType::Srv => f.write_str("SRV"),
            RType::Caa => f.write_str("CAA"),
            RType::Any => f.write_str("ANY"),
            RType::Transfer => f.write_str("AXFR"),
            RType::Other(n) => write!(f, "TYPE{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    pub exchange: Name,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: Name,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caa {
    pub critical: bool,
    pub tag: String,
    pub value: String,
}

/// Record data in geodns's own terms; the DNS layer turns it into wire records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(Name),
    Ns(Name),
    Soa(Box<Soa>),
    /// One TXT record: its text (split into 255-octet strings on the wire).
    Txt(String),
    Mx(Mx),
    Srv(Srv),
    Caa(Caa),
}

impl RData {
    pub fn rtype(&self) -> RType {
        match self {
            RData::A(_) => RType::A,
            RData::Aaaa(_) => RType::Aaaa,
            RData::Cname(_) => RType::Cname,
            RData::Ns(_) => RType::Ns,
            RData::Soa(_) => RType::Soa,
            RData::Txt(_) => RType::Txt,
            RData::Mx(_) => RType::Mx,
            RData::Srv(_) => RType::Srv,
            RData::Caa(_) => RType::Caa,
        }
    }
}

impl RData {
    /// Appends the record data in wire form. The names that may be compressed (CNAME, NS, SOA,
    /// MX targets) are written by `name`, so that a message writer can compress them and the
    /// canonical form (RFC 4034) can write them whole; an SRV target is never compressed
    /// (RFC 2782). TXT text goes in strings of at most 255 bytes.
    pub fn write(&self, out: &mut Vec<u8>, mut name: impl FnMut(&str, &mut Vec<u8>)) {
        match self {
            RData::A(a) => out.extend_from_slice(&a.octets()),
            RData::Aaaa(a) => out.extend_from_slice(&a.octets()),
            RData::Cname(n) | RData::Ns(n) => name(n.as_str(), out),
            RData::Soa(s) => {
                name(s.mname.as_str(), out);
                name(s.rname.as_str(), out);
                for v in [s.serial, s.refresh, s.retry, s.expire, s.minimum] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
            }
            RData::Txt(t) => {
                let mut bytes = t.as_bytes();
                loop {
                    let n = bytes.len().min(255);
                    out.push(n as u8);
                    out.extend_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if bytes.is_empty() {
                        break;
                    }
                }
            }
            RData::Mx(m) => {
                out.extend_from_slice(&m.preference.to_be_bytes());
                name(m.exchange.as_str(), out);
            }
            RData::Srv(s) => {
                for v in [s.priority, s.weight, s.port] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                write_name(s.target.as_str(), out);
            }
            RData::Caa(c) => {
                out.push(if c.critical { 0x80 } else { 0 });
                out.push(c.tag.len() as u8);
                out.extend_from_slice(c.tag.as_bytes());
                out.extend_from_slice(c.value.as_bytes());
            }
        }
    }
}

/// Appends `name` (text, the root as "." or "") in wire form, uncompressed.
pub fn write_name(name: &str, out: &mut Vec<u8>) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

impl fmt::Display for RData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RData::A(ip) => write!(f, "{ip}"),
            RData::Aaaa(ip) => write!(f, "{ip}"),
            RData::Cname(n) | RData::Ns(n) => write!(f, "{n}"),
            RData::Soa(s) => {
                write!(f, "{} {} {} {} {} {} {}", s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum)
            }
            RData::Txt(t) => write!(f, "{t:?}"),
            RData::Mx(m) => write!(f, "{} {}", m.preference, m.exchange),
            RData::Srv(s) => write!(f, "{} {} {} {}", s.priority, s.weight, s.port, s.target),
            RData::Caa(c) => write!(f, "{} {} {:?}", u8::from(c.critical) * 128, c.tag, c.value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_round_trip() {
        for (code, t) in [(1, RType::A), (28, RType::Aaaa), (255, RType::Any), (252, RType::Transfer)] {
            assert_eq!(RType::from_code(code), t);
        }
        assert_eq!(RType::from_code(99), RType::Other(99));
        for code in [1, 2, 5, 6, 15, 16, 28, 33, 257, 255, 252, 99] {
            assert_eq!(RType::from_code(code).code(), code);
        }
        assert_eq!(RType::parse("aaaa"), Some(RType::Aaaa));
        assert_eq!(RType::parse("TYPE65"), Some(RType::Other(65)));
        assert_eq!(RType::parse("bogus"), None);
        assert_eq!(RType::Other(65).to_string(), "TYPE65");
    }
}
