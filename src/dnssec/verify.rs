//! Validating what a server returns, as a resolver would (RFC 4035, section 5): DS to DNSKEY
//! (a key's digest), RRSIG to RRset (the signature over the canonical form, its signer, labels,
//! type, original TTL and validity period), and NSEC proofs of NXDOMAIN and NODATA. Pure
//! functions over canonical wire bytes: the caller queries (`geodns check --server --dnssec`),
//! and the signed data is made by the same [`wire::signed_data`] the signer uses.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};

use super::keys::{ds_digest, key_tag};
use super::sign::{CDNSKEY, CDS, DNSKEY, NSEC, RRSIG};
use super::wire;
use crate::model::Name;
use crate::routing::canonical_cmp;

/// CNAME's type number: an NSEC proving NODATA must not hold it either.
const CNAME: u16 = 5;

/// A record as received, in canonical form: owner lower case, RDATA with no compressed name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub owner: Name,
    pub rtype: u16,
    pub ttl: u32,
    pub rdata: Vec<u8>,
}

/// An RRSIG's fields (RFC 4034, section 3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rrsig {
    pub type_covered: u16,
    pub algorithm: u8,
    pub labels: u8,
    pub original_ttl: u32,
    pub expiration: u32,
    pub inception: u32,
    pub key_tag: u16,
    pub signer: Name,
    pub signature: Vec<u8>,
    /// The RDATA before the signature: the start of the signed data.
    fields: Vec<u8>,
}

impl Rrsig {
    pub fn parse(rdata: &[u8]) -> Option<Rrsig> {
        let u16_at = |i: usize| Some(u16::from_be_bytes(rdata.get(i..i + 2)?.try_into().ok()?));
        let u32_at = |i: usize| Some(u32::from_be_bytes(rdata.get(i..i + 4)?.try_into().ok()?));
        let (signer, end) = read_name(rdata, 18)?;
        Some(Rrsig {
            type_covered: u16_at(0)?,
            algorithm: *rdata.get(2)?,
            labels: *rdata.get(3)?,
            original_ttl: u32_at(4)?,
            expiration: u32_at(8)?,
            inception: u32_at(12)?,
            key_tag: u16_at(16)?,
            signer,
            signature: rdata[end..].to_vec(),
            fields: rdata[..end].to_vec(),
        })
    }
}

/// A DNSKEY (or CDNSKEY) record's fields (RFC 4034, section 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dnskey {
    pub flags: u16,
    pub protocol: u8,
    pub algorithm: u8,
    pub public: Vec<u8>,
    pub tag: u16,
    /// The whole RDATA, as DS digests cover it.
    pub rdata: Vec<u8>,
}

impl Dnskey {
    pub fn parse(rdata: &[u8]) -> Option<Dnskey> {
        if rdata.len() < 5 {
            return None;
        }
        Some(Dnskey {
            flags: u16::from_be_bytes([rdata[0], rdata[1]]),
            protocol: rdata[2],
            algorithm: rdata[3],
            public: rdata[4..].to_vec(),
            tag: key_tag(rdata),
            rdata: rdata.to_vec(),
        })
    }

    /// A zone key (flags bit 7, RFC 4034 section 2.1.1) of protocol 3: one that may sign.
    pub fn is_zone_key(&self) -> bool {
        self.flags & 0x0100 != 0 && self.protocol == 3
    }
}

impl std::fmt::Display for Dnskey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DNSKEY {} (flags {}, algorithm {})", self.tag, self.flags, self.algorithm)
    }
}

/// A DS (or CDS) record's fields (RFC 4034, section 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ds {
    pub key_tag: u16,
    pub algorithm: u8,
    pub digest_type: u8,
    pub digest: Vec<u8>,
}

impl Ds {
    pub fn parse(rdata: &[u8]) -> Option<Ds> {
        if rdata.len() < 5 {
            return None;
        }
        Some(Ds {
            key_tag: u16::from_be_bytes([rdata[0], rdata[1]]),
            algorithm: rdata[2],
            digest_type: rdata[3],
            digest: rdata[4..].to_vec(),
        })
    }

    /// Whether this DS, at `owner`, names `key`: the same tag and algorithm, and the digest of
    /// the key's RDATA.
    pub fn matches(&self, owner: &Name, key: &Dnskey) -> bool {
        self.key_tag == key.tag
            && self.algorithm == key.algorithm
            && ds_digest(owner.as_str(), &key.rdata, self.digest_type).is_some_and(|d| d == self.digest)
    }
}

impl std::fmt::Display for Ds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DS {} {} {}", self.key_tag, self.algorithm, self.digest_type)
    }
}

/// A trust anchor as given in zone-file syntax: a DS (what the parent holds) or a DNSKEY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    Ds(Name, Ds),
    Dnskey(Name, Dnskey),
}

impl Anchor {
    pub fn owner(&self) -> &Name {
        match self {
            Anchor::Ds(n, _) | Anchor::Dnskey(n, _) => n,
        }
    }
}

/// Reads DS and DNSKEY records in zone-file syntax (`geo.example. 3600 IN DS 6997 13 2 20C2...`,
/// as `geodns dnssec ds` and `dig` print them; TTL and class optional, `;` comments, digests and
/// keys may be split by spaces or parentheses). Every line that is neither is reported with
/// its number.
pub fn parse_anchors(text: &str) -> Result<Vec<Anchor>, Vec<String>> {
    let mut anchors = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").replace(['(', ')'], " ");
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        match parse_anchor(&fields) {
            Ok(a) => anchors.push(a),
            Err(e) => problems.push(format!("line {}: {e}", i + 1)),
        }
    }
    if problems.is_empty() { Ok(anchors) } else { Err(problems) }
}

fn parse_anchor(fields: &[&str]) -> Result<Anchor, String> {
    let owner = Name::parse_absolute(fields[0]).map_err(|e| format!("{:?}: {e}", fields[0]))?;
    // Skip the optional TTL and class to the type.
    let mut i = 1;
    while i < fields.len() && (fields[i].parse::<u32>().is_ok() || fields[i].eq_ignore_ascii_case("IN")) {
        i += 1;
    }
    let rtype = fields.get(i).ok_or("no record type (expected DS or DNSKEY)")?;
    let rest = &fields[i + 1..];
    let number = |j: usize, what: &str| -> Result<u64, String> {
        rest.get(j).and_then(|f| f.parse().ok()).ok_or_else(|| format!("{rtype}: {what} missing or not a number"))
    };
    if rtype.eq_ignore_ascii_case("DS") {
        let hex: String = rest.get(3..).unwrap_or_default().concat();
        let digest = decode_hex(&hex).ok_or_else(|| format!("DS: digest {hex:?} is not hexadecimal"))?;
        let ds = Ds {
            key_tag: u16::try_from(number(0, "key tag")?).map_err(|_| "DS: key tag above 65535")?,
            algorithm: u8::try_from(number(1, "algorithm")?).map_err(|_| "DS: algorithm above 255")?,
            digest_type: u8::try_from(number(2, "digest type")?).map_err(|_| "DS: digest type above 255")?,
            digest,
        };
        if ds.digest.is_empty() {
            return Err("DS: no digest".into());
        }
        Ok(Anchor::Ds(owner, ds))
    } else if rtype.eq_ignore_ascii_case("DNSKEY") {
        let flags = u16::try_from(number(0, "flags")?).map_err(|_| "DNSKEY: flags above 65535")?;
        let protocol = u8::try_from(number(1, "protocol")?).map_err(|_| "DNSKEY: protocol above 255")?;
        let algorithm = u8::try_from(number(2, "algorithm")?).map_err(|_| "DNSKEY: algorithm above 255")?;
        let b64: String = rest.get(3..).unwrap_or_default().concat();
        let public = STANDARD.decode(&b64).map_err(|_| "DNSKEY: the public key is not base64".to_owned())?;
        let mut rdata = flags.to_be_bytes().to_vec();
        rdata.extend_from_slice(&[protocol, algorithm]);
        rdata.extend_from_slice(&public);
        Ok(Anchor::Dnskey(owner, Dnskey::parse(&rdata).ok_or("DNSKEY: no public key")?))
    } else {
        Err(format!("{rtype}: not a DS or DNSKEY record"))
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// Why an RRset, or a denial, does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no RRSIG")]
    Unsigned,
    #[error("RRSIG RDATA does not parse")]
    Malformed,
    #[error("RRSIG by {tag} covers type {covered}, not {rtype}")]
    TypeCovered { tag: u16, covered: u16, rtype: u16 },
    #[error("RRSIG by {tag}: signer {signer} is not the zone {zone}")]
    Signer { tag: u16, signer: Name, zone: Name },
    #[error("RRSIG by {tag}: labels {labels} is more than the owner's {owner}")]
    Labels { tag: u16, labels: u8, owner: u8 },
    #[error("RRSIG by {tag}: TTL {ttl} served above the original TTL {original}")]
    Ttl { tag: u16, ttl: u32, original: u32 },
    #[error("RRSIG by {tag}: expired {ago} s ago")]
    Expired { tag: u16, ago: i64 },
    #[error("RRSIG by {tag}: not valid for another {wait} s (inception in the future)")]
    NotYetValid { tag: u16, wait: i64 },
    #[error("RRSIG by {tag}: no DNSKEY of the zone has that tag and algorithm {algorithm}")]
    NoKey { tag: u16, algorithm: u8 },
    #[error("RRSIG by {tag}: algorithm {algorithm} is not one geodns verifies (13, 15)")]
    Algorithm { tag: u16, algorithm: u8 },
    #[error("RRSIG by {tag}: the signature does not verify")]
    BadSignature { tag: u16 },
    #[error("an NSEC shows that {0} exists")]
    NameExists(Name),
    #[error("no NSEC covers {0}")]
    NotCovered(Name),
    #[error("no NSEC covers the wildcard {0}")]
    WildcardNotCovered(Name),
    #[error("the NSEC at {owner} says the type {rtype} exists")]
    TypeExists { owner: Name, rtype: u16 },
    #[error("no NSEC at {0} or proving it an empty non-terminal")]
    NoNodataProof(Name),
    #[error("an NSEC RDATA does not parse")]
    MalformedNsec,
}

/// A signature that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub key_tag: u16,
    pub algorithm: u8,
    pub expiration: u32,
}

/// Seconds from `now` (seconds since the epoch) to the signature time `t`, in RFC 1982 serial
/// arithmetic (RFC 4034, section 3.1.5): negative when `t` is past.
pub fn seconds_until(t: u32, now: u64) -> i64 {
    i64::from(t.wrapping_sub(now as u32) as i32)
}

/// Verifies one RRSIG (`rrsig`, its RDATA) over the RRset `records` (one owner, one type, of
/// the zone `zone`) with the zone's `keys` at `now`: RFC 4035, section 5.3.
pub fn verify_rrset(
    zone: &Name,
    records: &[&Record],
    rrsig: &[u8],
    keys: &[Dnskey],
    now: u64,
) -> Result<Verified, VerifyError> {
    let first = records.first().ok_or(VerifyError::Unsigned)?;
    let sig = Rrsig::parse(rrsig).ok_or(VerifyError::Malformed)?;
    let tag = sig.key_tag;
    if sig.type_covered != first.rtype {
        return Err(VerifyError::TypeCovered { tag, covered: sig.type_covered, rtype: first.rtype });
    }
    if sig.signer != *zone || !first.owner.is_in(zone) {
        return Err(VerifyError::Signer { tag, signer: sig.signer.clone(), zone: zone.clone() });
    }
    let owner_labels = wire::labels(first.owner.as_str());
    if sig.labels > owner_labels {
        return Err(VerifyError::Labels { tag, labels: sig.labels, owner: owner_labels });
    }
    if let Some(r) = records.iter().find(|r| r.ttl > sig.original_ttl) {
        return Err(VerifyError::Ttl { tag, ttl: r.ttl, original: sig.original_ttl });
    }
    let left = seconds_until(sig.expiration, now);
    if left < 0 {
        return Err(VerifyError::Expired { tag, ago: -left });
    }
    let wait = seconds_until(sig.inception, now);
    if wait > 0 {
        return Err(VerifyError::NotYetValid { tag, wait });
    }
    let verifier: &dyn ring::signature::VerificationAlgorithm = match sig.algorithm {
        13 => &ECDSA_P256_SHA256_FIXED,
        15 => &ED25519,
        algorithm => return Err(VerifyError::Algorithm { tag, algorithm }),
    };
    let candidates: Vec<&Dnskey> =
        keys.iter().filter(|k| k.tag == tag && k.algorithm == sig.algorithm && k.is_zone_key()).collect();
    if candidates.is_empty() {
        return Err(VerifyError::NoKey { tag, algorithm: sig.algorithm });
    }
    // A wildcard's expansion is signed as the wildcard (RFC 4035, section 5.3.2).
    let signed_owner = if sig.labels < owner_labels {
        let kept: Vec<&str> = first.owner.as_str().split('.').filter(|l| !l.is_empty()).collect();
        format!("*.{}.", kept[kept.len() - usize::from(sig.labels)..].join("."))
    } else {
        first.owner.as_str().to_owned()
    };
    let mut rdatas: Vec<&[u8]> = records.iter().map(|r| r.rdata.as_slice()).collect();
    rdatas.sort();
    rdatas.dedup();
    let data = wire::signed_data(&sig.fields, &signed_owner, first.rtype, sig.original_ttl, rdatas);
    for key in candidates {
        let public = if sig.algorithm == 13 { [&[4u8][..], &key.public].concat() } else { key.public.clone() };
        if UnparsedPublicKey::new(verifier, &public).verify(&data, &sig.signature).is_ok() {
            return Ok(Verified { key_tag: tag, algorithm: sig.algorithm, expiration: sig.expiration });
        }
    }
    Err(VerifyError::BadSignature { tag })
}

/// An NSEC record's fields (RFC 4034, section 4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nsec {
    pub owner: Name,
    pub next: Name,
    bitmap: Vec<u8>,
}

impl Nsec {
    pub fn parse(owner: &Name, rdata: &[u8]) -> Option<Nsec> {
        let (next, end) = read_name(rdata, 0)?;
        Some(Nsec { owner: owner.clone(), next, bitmap: rdata[end..].to_vec() })
    }

    /// Whether the type list holds `rtype`.
    pub fn has(&self, rtype: u16) -> bool {
        let (window, bit) = ((rtype >> 8) as u8, usize::from(rtype & 0xff));
        let mut b = self.bitmap.as_slice();
        while b.len() >= 2 {
            let (w, len) = (b[0], usize::from(b[1]));
            let Some(bits) = b.get(2..2 + len) else { return false };
            if w == window {
                return bits.get(bit / 8).is_some_and(|byte| byte & (0x80 >> (bit % 8)) != 0);
            }
            b = &b[2 + len..];
        }
        false
    }

    /// Whether `name` falls strictly between the owner and the next name (the last NSEC of a
    /// zone, whose next name is the apex, covers everything after its owner).
    pub fn covers(&self, name: &Name) -> bool {
        use std::cmp::Ordering::{Greater, Less};
        let after_owner = canonical_cmp(self.owner.as_str(), name.as_str()) == Less;
        let wraps = canonical_cmp(self.next.as_str(), self.owner.as_str()) != Greater;
        after_owner && (wraps || canonical_cmp(name.as_str(), self.next.as_str()) == Less)
    }
}

/// The NSEC records among `records`.
pub fn nsecs(records: &[Record]) -> Result<Vec<Nsec>, VerifyError> {
    records
        .iter()
        .filter(|r| r.rtype == NSEC)
        .map(|r| Nsec::parse(&r.owner, &r.rdata).ok_or(VerifyError::MalformedNsec))
        .collect()
}

/// Checks the proof that `qname` does not exist (RFC 4035, section 5.4): an NSEC covers it, and
/// an NSEC covers the wildcard at its closest encloser. Returns the closest encloser.
pub fn prove_nxdomain(qname: &Name, nsecs: &[Nsec]) -> Result<Name, VerifyError> {
    // An NSEC at the name, or one whose next name is below it: the name exists.
    if nsecs.iter().any(|n| n.owner == *qname || (n.covers(qname) && n.next.is_in(qname))) {
        return Err(VerifyError::NameExists(qname.clone()));
    }
    let cover = nsecs.iter().find(|n| n.covers(qname)).ok_or_else(|| VerifyError::NotCovered(qname.clone()))?;
    // The closest encloser: the longest ancestor of the name that exists, which the covering
    // NSEC's owner or next name descends from.
    let encloser = [common_ancestor(qname, &cover.owner), common_ancestor(qname, &cover.next)]
        .into_iter()
        .max_by_key(|n| wire::labels(n.as_str()))
        .expect("two candidates");
    let wildcard = Name::from_ascii_lossy(&format!("*.{}", encloser.as_str()));
    if nsecs.iter().any(|n| n.covers(&wildcard)) {
        Ok(encloser)
    } else {
        Err(VerifyError::WildcardNotCovered(wildcard))
    }
}

/// Checks the proof that `qname` has no `qtype` records (RFC 4035, section 5.4): the NSEC at
/// the name leaves out the type (and CNAME), or an NSEC proves the name an empty non-terminal
/// (it covers the name and its next name is below it).
pub fn prove_nodata(qname: &Name, qtype: u16, nsecs: &[Nsec]) -> Result<(), VerifyError> {
    if let Some(n) = nsecs.iter().find(|n| n.owner == *qname) {
        for t in [qtype, CNAME] {
            if n.has(t) {
                return Err(VerifyError::TypeExists { owner: n.owner.clone(), rtype: t });
            }
        }
        return Ok(());
    }
    if nsecs.iter().any(|n| n.covers(qname) && n.next.is_in(qname) && n.next != *qname) {
        return Ok(());
    }
    Err(VerifyError::NoNodataProof(qname.clone()))
}

/// The longest name both `a` and `b` are in.
fn common_ancestor(a: &Name, b: &Name) -> Name {
    let la: Vec<&str> = a.as_str().split('.').filter(|l| !l.is_empty()).rev().collect();
    let lb: Vec<&str> = b.as_str().split('.').filter(|l| !l.is_empty()).rev().collect();
    let mut common: Vec<&str> = la.iter().zip(&lb).take_while(|(x, y)| x == y).map(|(x, _)| *x).collect();
    common.reverse();
    if common.is_empty() { Name::from_ascii_lossy(".") } else { Name::from_ascii_lossy(&common.join(".")) }
}

/// A name in uncompressed wire form at `at`, as canonical text, and the offset after it.
pub fn read_name(data: &[u8], mut at: usize) -> Option<(Name, usize)> {
    let mut text = String::new();
    loop {
        let len = usize::from(*data.get(at)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = data.get(at + 1..at + 1 + len)?;
        text.push_str(&String::from_utf8_lossy(label));
        text.push('.');
        at += 1 + len;
    }
    if text.is_empty() {
        text.push('.');
    }
    Some((Name::from_ascii_lossy(&text), at + 1))
}

/// Names of the DNSSEC types, for messages.
pub fn type_name(rtype: u16) -> String {
    match rtype {
        DNSKEY => "DNSKEY".into(),
        CDS => "CDS".into(),
        CDNSKEY => "CDNSKEY".into(),
        RRSIG => "RRSIG".into(),
        NSEC => "NSEC".into(),
        43 => "DS".into(),
        other => crate::model::RType::from_code(other).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnssec::keys::{self, Algorithm, SigningKey};
    use crate::dnssec::sign::{Lifetimes, sign_zone};
    use crate::model::NoLocator;
    use crate::routing::{Inputs, SignedZone, build};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    const NOW: u64 = 1_800_000_000;
    const CONFIG: &str = r#"
sites:
  a: { location: [51.5, -0.1] }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1 }
    ns: [ns1.geo.example.]
    records:
      ns1: { A: [192.0.2.53] }
      www: { A: [192.0.2.80, 192.0.2.81], TXT: ["hello"] }
      host.ent: { A: [192.0.2.54] }
"#;

    fn name(s: &str) -> Name {
        Name::parse_absolute(s).unwrap()
    }

    /// The zone signed with a new key of `alg` at NOW; the key.
    fn signed(alg: Algorithm) -> (SignedZone, SigningKey) {
        let config = crate::config::parse(CONFIG, Path::new(".")).unwrap();
        let built = build(&config, Arc::new(NoLocator), Inputs::default(), 1);
        let key = SigningKey::from_pem(&keys::generate(alg).unwrap()).unwrap();
        let content = built.table().zone_content(&name("geo.example."), None).unwrap();
        let lifetimes = Lifetimes { validity: Duration::from_secs(14 * 86_400), refresh: Duration::from_secs(86_400) };
        let (zone, _) = sign_zone(&content, std::slice::from_ref(&key), &lifetimes, NOW, None);
        (zone, key)
    }

    fn www_a() -> Vec<Record> {
        [[192, 0, 2, 81], [192, 0, 2, 80]]
            .into_iter()
            .map(|ip| Record { owner: name("www.geo.example."), rtype: 1, ttl: 300, rdata: ip.to_vec() })
            .collect()
    }

    fn dnskeys(key: &SigningKey) -> Vec<Dnskey> {
        vec![Dnskey::parse(&key.dnskey()).unwrap()]
    }

    #[test]
    fn signatures_made_by_the_signer_verify_and_a_flipped_byte_does_not() {
        for alg in [Algorithm::EcdsaP256Sha256, Algorithm::Ed25519] {
            let (zone, key) = signed(alg);
            let apex = name("geo.example.");
            let sig = &zone.fixed[&(name("www.geo.example."), 1)].rrsigs[0];
            let records = www_a();
            let refs: Vec<&Record> = records.iter().collect();
            let keys = dnskeys(&key);
            let ok = verify_rrset(&apex, &refs, sig, &keys, NOW).unwrap();
            assert_eq!(ok.key_tag, key.key_tag());
            assert_eq!(u64::from(ok.expiration), NOW + 14 * 86_400);
            // A served TTL below the original is fine; above it is not.
            let mut lower = records.clone();
            lower[0].ttl = 60;
            assert!(verify_rrset(&apex, &lower.iter().collect::<Vec<_>>(), sig, &keys, NOW).is_ok());
            let mut higher = records.clone();
            higher[1].ttl = 301;
            assert!(matches!(
                verify_rrset(&apex, &higher.iter().collect::<Vec<_>>(), sig, &keys, NOW),
                Err(VerifyError::Ttl { .. })
            ));
            // One byte flipped: in the signature, in the records, in the signed fields.
            let mut bad_sig = sig.to_vec();
            *bad_sig.last_mut().unwrap() ^= 1;
            assert_eq!(
                verify_rrset(&apex, &refs, &bad_sig, &keys, NOW),
                Err(VerifyError::BadSignature { tag: ok.key_tag })
            );
            let mut bad_data = records.clone();
            bad_data[0].rdata[3] ^= 1;
            assert_eq!(
                verify_rrset(&apex, &bad_data.iter().collect::<Vec<_>>(), sig, &keys, NOW),
                Err(VerifyError::BadSignature { tag: ok.key_tag })
            );
            let mut bad_ttl = sig.to_vec();
            bad_ttl[7] ^= 1; // original TTL 300 -> 301: still above the served TTL, not what was signed
            assert_eq!(
                verify_rrset(&apex, &refs, &bad_ttl, &keys, NOW),
                Err(VerifyError::BadSignature { tag: ok.key_tag })
            );
            // Another key with the same tag would be needed: another key is no key.
            let other = SigningKey::from_pem(&keys::generate(alg).unwrap()).unwrap();
            assert!(matches!(
                verify_rrset(&apex, &refs, sig, &dnskeys(&other), NOW),
                Err(VerifyError::NoKey { .. } | VerifyError::BadSignature { .. })
            ));
        }
    }

    #[test]
    fn time_type_signer_and_labels_are_checked() {
        let (zone, key) = signed(Algorithm::EcdsaP256Sha256);
        let apex = name("geo.example.");
        let keys = dnskeys(&key);
        let sig = &zone.fixed[&(name("www.geo.example."), 1)].rrsigs[0];
        let records = www_a();
        let refs: Vec<&Record> = records.iter().collect();
        // Valid from an hour before signing to 14 days after.
        assert!(verify_rrset(&apex, &refs, sig, &keys, NOW - 3600).is_ok());
        assert!(matches!(
            verify_rrset(&apex, &refs, sig, &keys, NOW - 3601),
            Err(VerifyError::NotYetValid { wait: 1, .. })
        ));
        assert!(matches!(
            verify_rrset(&apex, &refs, sig, &keys, NOW + 14 * 86_400 + 5),
            Err(VerifyError::Expired { ago: 5, .. })
        ));
        // The TXT set's signature over the A set; the zone's signature claimed for another.
        let txt_sig = &zone.fixed[&(name("www.geo.example."), 16)].rrsigs[0];
        assert!(matches!(
            verify_rrset(&apex, &refs, txt_sig, &keys, NOW),
            Err(VerifyError::TypeCovered { covered: 16, rtype: 1, .. })
        ));
        assert!(matches!(verify_rrset(&name("example."), &refs, sig, &keys, NOW), Err(VerifyError::Signer { .. })));
        // Served at a shorter name than signed: labels 3 > 2.
        let moved: Vec<Record> = records.iter().map(|r| Record { owner: name("geo.example."), ..r.clone() }).collect();
        assert!(matches!(
            verify_rrset(&apex, &moved.iter().collect::<Vec<_>>(), sig, &keys, NOW),
            Err(VerifyError::Labels { labels: 3, owner: 2, .. })
        ));
        assert_eq!(seconds_until(5, u64::from(u32::MAX) - 4), 10, "serial arithmetic wraps");
    }

    #[test]
    fn ds_matches_its_key_only() {
        let (_, key) = signed(Algorithm::EcdsaP256Sha256);
        let apex = name("geo.example.");
        let ds = Ds::parse(&key.ds(&apex)).unwrap();
        let dnskey = Dnskey::parse(&key.dnskey()).unwrap();
        assert!(ds.matches(&apex, &dnskey));
        assert!(!ds.matches(&name("other.example."), &dnskey));
        let (_, other) = signed(Algorithm::EcdsaP256Sha256);
        assert!(!ds.matches(&apex, &Dnskey::parse(&other.dnskey()).unwrap()));
        // As printed, read back; with the digest split, comments and no TTL or class.
        let text = format!("{}\n; a comment\n", key.ds_text(&apex, 3600));
        assert_eq!(parse_anchors(&text).unwrap(), vec![Anchor::Ds(apex.clone(), ds.clone())]);
        let hex: String = ds.digest.iter().map(|b| format!("{b:02x}")).collect();
        let split = format!("geo.example. DS ( {} 13 2 {} {} ) ; parent", ds.key_tag, &hex[..32], &hex[32..]);
        assert_eq!(parse_anchors(&split).unwrap(), vec![Anchor::Ds(apex.clone(), ds)]);
        let dnskey_text = key.dnskey_text(&apex, 300);
        assert_eq!(parse_anchors(&dnskey_text).unwrap(), vec![Anchor::Dnskey(apex, dnskey)]);
        let errors = parse_anchors("geo.example. IN DS 1 13 2 XYZ\ngeo.example. A 192.0.2.1\n").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].starts_with("line 1: DS: digest"), "{errors:?}");
        assert!(errors[1].starts_with("line 2: A: not a DS or DNSKEY"), "{errors:?}");
    }

    #[test]
    fn nsec_proofs_from_the_signed_chain() {
        let (zone, _) = signed(Algorithm::EcdsaP256Sha256);
        let chain: Vec<Nsec> = zone.nsec.iter().map(|(n, s)| Nsec::parse(n, &s.rdata[0]).unwrap()).collect();
        // geo.example. -> ent -> host.ent -> ns1 -> www -> geo.example.
        assert_eq!(chain.len(), 5);
        let at = |owner: &str| chain.iter().find(|n| n.owner.as_str() == owner).unwrap().clone();
        assert!(at("www.geo.example.").has(1) && at("www.geo.example.").has(16) && !at("www.geo.example.").has(28));
        assert!(at("geo.example.").has(DNSKEY) && at("geo.example.").has(6));
        // NXDOMAIN: the covering NSEC and the wildcard's (at the apex: the apex's own NSEC).
        let nx = name("foo.geo.example.");
        let proof = [at("host.ent.geo.example."), at("geo.example.")];
        assert_eq!(prove_nxdomain(&nx, &proof).unwrap(), name("geo.example."));
        assert_eq!(prove_nxdomain(&nx, &proof[..1]), Err(VerifyError::WildcardNotCovered(name("*.geo.example."))));
        assert_eq!(prove_nxdomain(&nx, &proof[1..]), Err(VerifyError::NotCovered(nx.clone())));
        // After the last name: the last NSEC wraps to the apex.
        assert!(prove_nxdomain(&name("zzz.geo.example."), &[at("www.geo.example."), at("geo.example.")]).is_ok());
        // Below a name that does not exist: the encloser is still the apex.
        assert!(
            prove_nxdomain(&name("a.nope.geo.example."), &[at("host.ent.geo.example."), at("geo.example.")]).is_ok()
        );
        // A name that exists is no NXDOMAIN.
        assert!(prove_nxdomain(&name("ns1.geo.example."), &chain).is_err());
        // NODATA: the name's own NSEC without the type; an empty non-terminal.
        assert!(prove_nodata(&name("www.geo.example."), 28, &[at("www.geo.example.")]).is_ok());
        assert_eq!(
            prove_nodata(&name("www.geo.example."), 1, &[at("www.geo.example.")]),
            Err(VerifyError::TypeExists { owner: name("www.geo.example."), rtype: 1 })
        );
        assert!(prove_nodata(&name("ent.geo.example."), 1, &[at("ent.geo.example.")]).is_ok());
        let skipping = Nsec { next: name("host.ent.geo.example."), ..at("geo.example.") };
        assert!(
            prove_nodata(&name("ent.geo.example."), 1, std::slice::from_ref(&skipping)).is_ok(),
            "covered, next below"
        );
        assert_eq!(
            prove_nxdomain(&name("ent.geo.example."), &[skipping, at("geo.example.")]),
            Err(VerifyError::NameExists(name("ent.geo.example.")))
        );
        assert!(prove_nodata(&name("nope.geo.example."), 1, &[at("ns1.geo.example.")]).is_err());
    }
}
