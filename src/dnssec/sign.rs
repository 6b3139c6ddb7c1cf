//! Signing a zone's content ahead of time: every RRset the table can answer with, the DNSKEY,
//! CDS and CDNSKEY sets, and the NSEC chain. Signatures of the previous table are reused for
//! every RRset whose records, TTL and keys are unchanged and whose signatures have more than
//! the refresh margin left, so a health flip or a small change signs little or nothing.

use std::collections::HashMap;
use std::time::Duration;

use super::keys::SigningKey;
use super::wire;
use crate::model::Name;
use std::sync::Arc;

use crate::routing::{GeoSigs, RawSet, SetKey, SignedZone, Sigs, ZoneContent};

/// RRSIG inception is this far before the signing time, for validators whose clocks are
/// behind.
pub const BACKDATE: u64 = 3600;

pub const DNSKEY: u16 = 48;
pub const CDS: u16 = 59;
pub const CDNSKEY: u16 = 60;
pub const RRSIG: u16 = 46;
pub const NSEC: u16 = 47;

/// How a zone is signed.
pub struct Lifetimes {
    pub validity: Duration,
    pub refresh: Duration,
}

/// What one signing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// RRsets signed now.
    pub signed: usize,
    /// RRsets whose signatures were taken from the previous table.
    pub reused: usize,
}

struct Ctx<'a> {
    apex: &'a Name,
    keys: &'a [SigningKey],
    inception: u32,
    expiration: u32,
    /// Signatures expiring before this are made again.
    keep_until: u64,
    stats: Stats,
}

impl Ctx<'_> {
    /// The signatures of the RRset `rtype` at `owner` of `rdatas` (canonical RDATA, any
    /// order): `previous` when it signed the same records, else new ones.
    fn sigs(
        &mut self,
        owner: &str,
        rtype: u16,
        ttl: u32,
        rdatas: &mut Vec<Vec<u8>>,
        key: SetKey,
        previous: Option<&Sigs>,
    ) -> Sigs {
        if let Some(p) = previous
            && p.key == key
            && p.original_ttl == ttl
            && u64::from(p.expires) > self.keep_until
        {
            self.stats.reused += 1;
            return p.clone();
        }
        self.stats.signed += 1;
        rdatas.sort();
        rdatas.dedup();
        // The key sets are signed by the keys the parent's DS names (KSKs, CSKs); the rest by
        // the zone-signing keys (ZSKs, CSKs).
        let keys = matches!(rtype, DNSKEY | CDS | CDNSKEY);
        let signers = self.keys.iter().filter(|k| if keys { k.role.signs_keys() } else { k.role.signs_zone() });
        let rrsigs = signers.map(|k| self.rrsig(k, owner, rtype, ttl, rdatas)).collect();
        Sigs { original_ttl: ttl, key, expires: self.expiration, rrsigs }
    }

    /// One RRSIG's RDATA (RFC 4034, section 3): the fields, then the signature over them and
    /// the RRset in canonical form.
    fn rrsig(&self, key: &SigningKey, owner: &str, rtype: u16, ttl: u32, sorted: &[Vec<u8>]) -> Box<[u8]> {
        let mut rdata = Vec::with_capacity(128);
        rdata.extend_from_slice(&rtype.to_be_bytes());
        rdata.push(key.algorithm.number());
        rdata.push(wire::labels(owner));
        rdata.extend_from_slice(&ttl.to_be_bytes());
        rdata.extend_from_slice(&self.expiration.to_be_bytes());
        rdata.extend_from_slice(&self.inception.to_be_bytes());
        rdata.extend_from_slice(&key.key_tag().to_be_bytes());
        wire::push_name(self.apex.as_str(), &mut rdata);
        let data = wire::signed_data(&rdata, owner, rtype, ttl, sorted.iter().map(Vec::as_slice));
        rdata.extend_from_slice(&key.sign(&data));
        rdata.into()
    }

    fn raw_set(&mut self, owner: &str, rtype: u16, ttl: u32, rdata: Vec<Vec<u8>>, previous: Option<&RawSet>) -> RawSet {
        let key = joined(&rdata);
        let mut sorted = rdata.clone();
        let sigs = self.sigs(owner, rtype, ttl, &mut sorted, key, previous.map(|p| &p.sigs));
        RawSet { rtype, ttl, rdata: rdata.into_iter().map(Vec::into_boxed_slice).collect(), sigs }
    }
}

/// The canonical RDATAs joined, each after its length: a fixed RRset's [`SetKey`].
fn joined(rdatas: &[Vec<u8>]) -> SetKey {
    let mut sorted: Vec<&Vec<u8>> = rdatas.iter().collect();
    sorted.sort();
    let mut out = Vec::new();
    for r in sorted {
        out.extend_from_slice(&(r.len() as u16).to_be_bytes());
        out.extend_from_slice(r);
    }
    out.into()
}

/// Signs `content` with `keys` at `now` (seconds since the epoch), reusing what it can of
/// `previous` (the same zone signed for the table before).
pub fn sign_zone(
    content: &ZoneContent,
    keys: &[SigningKey],
    lifetimes: &Lifetimes,
    now: u64,
    previous: Option<&SignedZone>,
) -> (SignedZone, Stats) {
    // Other keys, or the same keys in other roles (a CSK and a KSK share their DNSKEY): nothing
    // signed before can be kept.
    let dnskeys: Vec<Box<[u8]>> =
        keys.iter().map(|k| [&[k.role as u8][..], &k.dnskey()].concat().into_boxed_slice()).collect();
    let previous = previous.filter(|p| p.keys == dnskeys && p.apex == content.apex);
    let mut ctx = Ctx {
        apex: &content.apex,
        keys,
        // Signature times are serial numbers (RFC 4034, section 3.1.5): seconds mod 2^32.
        inception: now.saturating_sub(BACKDATE) as u32,
        expiration: (now + lifetimes.validity.as_secs()) as u32,
        keep_until: now + lifetimes.refresh.as_secs(),
        stats: Stats::default(),
    };
    let apex = content.apex.as_str();

    let mut fixed = HashMap::with_capacity(content.plain.len());
    for set in &content.plain {
        let mut rdatas: Vec<Vec<u8>> = set.rdata.iter().map(wire::rdata).collect();
        let key = joined(&rdatas);
        let id = (set.owner.clone(), set.rtype);
        let prev = previous.and_then(|p| p.fixed.get(&id));
        fixed.insert(id, ctx.sigs(set.owner.as_str(), set.rtype, set.ttl, &mut rdatas, key, prev));
    }

    let mut geo = HashMap::with_capacity(content.geo.len());
    for g in &content.geo {
        let id = (g.owner.clone(), g.rtype);
        let prev = previous.and_then(|p| p.geo.get(&id));
        // The same addresses as before, and their signatures good for long enough: all kept.
        if g.unchanged
            && let Some(p) = prev.filter(|p| u64::from(p.expires) > ctx.keep_until)
        {
            ctx.stats.reused += p.sets.len();
            geo.insert(id, p.clone());
            continue;
        }
        let sets = crate::routing::geo_answer_sets(&g.route, g.rtype == 28);
        let mut out = GeoSigs { expires: u32::MAX, sets: HashMap::with_capacity(sets.len()) };
        for set in sets {
            let key = crate::routing::address_key(&set);
            let mut rdatas: Vec<Vec<u8>> = set.iter().map(wire::rdata).collect();
            let p = prev.and_then(|p| p.sets.get(&key));
            let sigs = ctx.sigs(g.owner.as_str(), g.rtype, g.ttl, &mut rdatas, key.clone(), p);
            out.expires = out.expires.min(sigs.expires);
            out.sets.insert(key, sigs);
        }
        geo.insert(id, Arc::new(out));
    }

    // DNSKEY, CDS, CDNSKEY: the zone's TTL (its NS set's).
    let ttl = content.plain.iter().find(|p| p.owner == content.apex && p.rtype == 2).map_or(3600, |p| p.ttl);
    let prev_apex = |rtype| previous.and_then(|p| p.apex_sets.iter().find(|s| s.rtype == rtype));
    let dnskey_rdata: Vec<Vec<u8>> = keys.iter().map(SigningKey::dnskey).collect();
    // CDS and CDNSKEY: what the parent's DS should name, the secure entry points alone.
    let entry_points = || keys.iter().filter(|k| k.role.signs_keys());
    let cds_rdata: Vec<Vec<u8>> = entry_points().map(|k| k.ds(&content.apex)).collect();
    let cdnskey_rdata: Vec<Vec<u8>> = entry_points().map(SigningKey::dnskey).collect();
    let apex_sets = vec![
        ctx.raw_set(apex, DNSKEY, ttl, dnskey_rdata, prev_apex(DNSKEY)),
        ctx.raw_set(apex, CDS, ttl, cds_rdata, prev_apex(CDS)),
        ctx.raw_set(apex, CDNSKEY, ttl, cdnskey_rdata, prev_apex(CDNSKEY)),
    ];

    // The NSEC chain over every name that exists, the last pointing back to the apex: the
    // previous one whole when made from the same names and types (a flip changes neither).
    let chain_hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (content.negative_ttl, &content.names).hash(&mut h);
        h.finish()
    };
    let (nsec, chain_expires) =
        match previous.filter(|p| p.chain_hash == chain_hash && u64::from(p.chain_expires) > ctx.keep_until) {
            Some(p) => {
                ctx.stats.reused += p.nsec.len();
                (p.nsec.clone(), p.chain_expires)
            }
            None => {
                let chain = nsec_chain(&mut ctx, content, previous);
                let expires = chain.iter().map(|(_, s)| s.sigs.expires).min().unwrap_or(ctx.expiration);
                (Arc::new(chain), expires)
            }
        };

    let expires = fixed
        .values()
        .map(|s| s.expires)
        .chain(geo.values().map(|g| g.expires))
        .chain(apex_sets.iter().map(|s| s.sigs.expires))
        .chain([chain_expires])
        .min()
        .unwrap_or(ctx.expiration);
    let zone = SignedZone {
        apex: content.apex.clone(),
        keys: dnskeys,
        fixed,
        geo,
        apex_sets,
        nsec,
        chain_hash,
        chain_expires,
        expires,
    };
    (zone, ctx.stats)
}

/// The NSEC records of `content`'s names, each signed (or its previous signatures reused).
fn nsec_chain(ctx: &mut Ctx<'_>, content: &ZoneContent, previous: Option<&SignedZone>) -> Vec<(Name, RawSet)> {
    let prev_nsec: HashMap<&Name, &RawSet> =
        previous.map(|p| p.nsec.iter().map(|(n, s)| (n, s)).collect()).unwrap_or_default();
    let mut nsec = Vec::with_capacity(content.names.len());
    for (i, (name, types)) in content.names.iter().enumerate() {
        let next = content.names.get(i + 1).map_or(&content.apex, |(n, _)| n);
        let mut all = types.clone();
        all.extend([RRSIG, NSEC]);
        if *name == content.apex {
            all.extend([DNSKEY, CDS, CDNSKEY]);
        }
        let mut rdata = wire::name(next.as_str());
        rdata.extend_from_slice(&wire::type_bitmap(all));
        let set = ctx.raw_set(name.as_str(), NSEC, content.negative_ttl, vec![rdata], prev_nsec.get(name).copied());
        nsec.push((name.clone(), set));
    }
    nsec
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::dnssec::keys::{self, Algorithm};
    use crate::model::NoLocator;
    use crate::routing::{Built, Inputs, build};

    const CONFIG: &str = r#"
sites:
  a: { location: [51.5, -0.1] }
  b: { location: [50.1, 8.7] }
  c: { location: [1.3, 103.8] }
zones:
  geo.example.:
    soa: { mname: ns1.geo.example., rname: hostmaster.geo.example., serial: 1 }
    ns: [ns1.geo.example.]
    records:
      ns1: { A: [192.0.2.53] }
      host.ent: { A: [192.0.2.54] }
    geo:
      app: { sites: { a: [192.0.2.1], b: [192.0.2.2], c: [192.0.2.3, "2001:db8::3"] } }
      two: { max_answers: 2, all_down: nodata, sites: { a: [192.0.2.11], b: [192.0.2.12], c: [192.0.2.13] } }
"#;

    fn table(text: &str, inputs: Inputs) -> Built {
        let config = crate::config::parse(text, Path::new(".")).unwrap();
        build(&config, Arc::new(NoLocator), inputs, 1)
    }

    fn zone_keys() -> Vec<SigningKey> {
        vec![SigningKey::from_pem(&keys::generate(Algorithm::EcdsaP256Sha256).unwrap()).unwrap()]
    }

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_800_000_000;

    fn sign(built: &Built, keys: &[SigningKey], now: u64, previous: Option<&Built>) -> (SignedZone, Stats) {
        let lifetimes = Lifetimes { validity: Duration::from_secs(14 * DAY), refresh: Duration::from_secs(7 * DAY) };
        let apex = Name::parse_absolute("geo.example.").unwrap();
        let prev = previous.map(|p| p.table().signed().unwrap().zones[0].clone());
        let content = built.table().zone_content(&apex, previous.map(|p| &**p.table())).unwrap();
        let (zone, stats) = sign_zone(&content, keys, &lifetimes, now, prev.as_ref());
        let signed = crate::routing::Signed { zones: vec![zone.clone()] };
        built.table().set_signed(Arc::new(signed));
        (zone, stats)
    }

    #[test]
    fn signatures_are_reused_until_the_refresh_margin_and_made_again_for_changes() {
        let keys = zone_keys();
        let first = table(CONFIG, Inputs::default());
        let (zone, stats) = sign(&first, &keys, NOW, None);
        assert_eq!(stats.reused, 0);
        // app: 3 sites + all (A), 1 (AAAA); two: max_answers 2 over 3 sites: 3 singles + 3 pairs.
        let a = &zone.geo[&(Name::parse_absolute("app.geo.example.").unwrap(), 1)];
        assert_eq!(a.sets.len(), 4);
        assert_eq!(zone.geo[&(Name::parse_absolute("two.geo.example.").unwrap(), 1)].sets.len(), 6);
        // apex, ent, host.ent, ns1, app, two: the chain.
        let chain: Vec<&str> = zone.nsec.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            chain,
            [
                "geo.example.",
                "app.geo.example.",
                "ent.geo.example.",
                "host.ent.geo.example.",
                "ns1.geo.example.",
                "two.geo.example."
            ]
        );
        let signed = stats.signed;
        assert!(zone.expires as u64 == NOW + 14 * DAY);
        let rrsig = &zone.fixed[&(Name::parse_absolute("geo.example.").unwrap(), 6)].rrsigs[0];
        assert_eq!(u32::from_be_bytes(rrsig[12..16].try_into().unwrap()) as u64, NOW - BACKDATE, "inception");

        // A day later, nothing changed: everything reused (geo names wholesale).
        let second = table(CONFIG, Inputs::default());
        let (zone2, stats) = sign(&second, &keys, NOW + DAY, Some(&first));
        assert_eq!(stats.signed, 0);
        assert!(Arc::ptr_eq(&zone2.nsec, &zone.nsec), "the NSEC chain is shared whole");
        assert!(stats.reused >= signed - 2, "{stats:?}");

        // Every site of `two` down (all_down: nodata): its NSEC changes (no A any more); the
        // answers' signatures do not.
        let down = Inputs { sites_down: [0, 1, 2].into(), ..Inputs::default() };
        let third = table(CONFIG, down);
        let (zone3, stats) = sign(&third, &keys, NOW + DAY, Some(&second));
        assert_eq!(stats.signed, 1, "{stats:?}: the one NSEC");
        let (_, nsec) = zone3.nsec_at("two.geo.example.").unwrap();
        assert_ne!(nsec.rdata, zone.nsec_at("two.geo.example.").unwrap().1.rdata);

        // Within the refresh margin of expiry: all made again, expiring later.
        let fourth = table(CONFIG, Inputs::default());
        let (zone4, stats) = sign(&fourth, &keys, NOW + 8 * DAY, Some(&third));
        assert_eq!(stats.reused, 0, "{stats:?}");
        assert_eq!(zone4.expires as u64, NOW + 22 * DAY);

        // Another key: nothing reused. An address changed: that name's sets only.
        let (_, stats) = sign(&table(CONFIG, Inputs::default()), &zone_keys(), NOW + 8 * DAY, Some(&fourth));
        assert_eq!(stats.reused, 0);
        let changed = CONFIG.replace("c: [192.0.2.3,", "c: [192.0.2.33,");
        let (_, stats) = sign(&table(&changed, Inputs::default()), &keys, NOW + 8 * DAY, Some(&fourth));
        // app A: c's set and the union are new; the other two reused.
        assert_eq!(stats.signed, 2, "{stats:?}");
    }

    /// The key tag of an RRSIG's RDATA.
    fn signer(rrsig: &[u8]) -> u16 {
        u16::from_be_bytes([rrsig[16], rrsig[17]])
    }

    #[test]
    fn a_split_signs_the_key_sets_with_the_ksk_and_the_rest_with_the_zsk() {
        use crate::dnssec::Role;
        let key =
            |role| SigningKey::from_pem(&keys::generate(Algorithm::EcdsaP256Sha256).unwrap()).unwrap().with_role(role);
        let (ksk, zsk) = (key(Role::KeySigning), key(Role::ZoneSigning));
        let (ksk_tag, zsk_tag) = (ksk.key_tag(), zsk.key_tag());
        assert_eq!((ksk.flags, zsk.flags), (257, 256));
        let (zone, _) = sign(&table(CONFIG, Inputs::default()), &[ksk, zsk], NOW, None);
        let apex = |rtype| zone.apex_set(rtype).unwrap();
        // DNSKEY: both keys, signed by the KSK alone; CDS and CDNSKEY: the KSK alone.
        assert_eq!(apex(DNSKEY).rdata.len(), 2);
        for rtype in [DNSKEY, CDS, CDNSKEY] {
            let tags: Vec<u16> = apex(rtype).sigs.rrsigs.iter().map(|r| signer(r)).collect();
            assert_eq!(tags, [ksk_tag], "{rtype} signed by the KSK");
        }
        assert_eq!(apex(CDS).rdata.len(), 1);
        assert_eq!(u16::from_be_bytes([apex(CDS).rdata[0][0], apex(CDS).rdata[0][1]]), ksk_tag, "the KSK's DS");
        assert_eq!(apex(CDNSKEY).rdata.len(), 1);
        assert_eq!(&apex(CDNSKEY).rdata[0][..2], &257u16.to_be_bytes());
        // Everything else: the ZSK alone.
        let others = zone
            .fixed
            .values()
            .chain(zone.geo.values().flat_map(|g| g.sets.values()))
            .chain(zone.nsec.iter().map(|(_, s)| &s.sigs));
        let mut count = 0;
        for sigs in others {
            let tags: Vec<u16> = sigs.rrsigs.iter().map(|r| signer(r)).collect();
            assert_eq!(tags, [zsk_tag]);
            count += 1;
        }
        assert!(count > 10, "{count} RRsets");
        // A CSK next to the split (a migration): it signs everything, and is a secure entry point.
        let csk = key(Role::Combined);
        let csk_tag = csk.key_tag();
        let (zone, _) =
            sign(&table(CONFIG, Inputs::default()), &[key(Role::KeySigning), key(Role::ZoneSigning), csk], NOW, None);
        assert_eq!(zone.apex_set(CDS).unwrap().rdata.len(), 2);
        let soa = &zone.fixed[&(Name::parse_absolute("geo.example.").unwrap(), 6)];
        assert_eq!(soa.rrsigs.len(), 2);
        assert!(soa.rrsigs.iter().any(|r| signer(r) == csk_tag));

        // The same key moved from CSK to KSK (its DNSKEY unchanged, flags 257 both): its role
        // changed, so nothing signed before is kept (the zone's RRsets are the ZSK's now).
        let (a, z) =
            (keys::generate(Algorithm::EcdsaP256Sha256).unwrap(), keys::generate(Algorithm::EcdsaP256Sha256).unwrap());
        let as_role = |pem: &str, role| SigningKey::from_pem(pem).unwrap().with_role(role);
        let before = table(CONFIG, Inputs::default());
        sign(&before, &[as_role(&a, Role::Combined), as_role(&z, Role::ZoneSigning)], NOW, None);
        let after = table(CONFIG, Inputs::default());
        let (_, stats) =
            sign(&after, &[as_role(&a, Role::KeySigning), as_role(&z, Role::ZoneSigning)], NOW, Some(&before));
        assert_eq!(stats.reused, 0, "{stats:?}");
    }
}
