//! Canonical wire forms (RFC 4034, section 6.2): names uncompressed and in lower case (the
//! model keeps them lower case), record data as the fast path's encoder writes it.

use crate::model::RData;

/// `name` (canonical text) in wire form.
pub fn name(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 1);
    push_name(name, &mut out);
    out
}

pub use crate::model::write_name as push_name;

/// The number of labels of `name`, the root not counted (an RRSIG's labels field).
pub fn labels(name: &str) -> u8 {
    name.split('.').filter(|l| !l.is_empty()).count() as u8
}

/// The canonical RDATA of `data`: as the encoders write it, with no name compressed.
pub fn rdata(data: &RData) -> Vec<u8> {
    let mut out = Vec::new();
    data.write(&mut out, push_name);
    out
}

/// The data an RRSIG signs (RFC 4034, section 3.1.8.1): the RRSIG's RDATA up to its signature
/// (`rrsig_fields`, the signer's name in canonical form), then each record of the RRset as
/// owner, type, class IN, the original TTL, RDATA length and RDATA; `sorted` is the canonical
/// RDATA in canonical order, without duplicates. The signer and the verifier both call this.
pub fn signed_data<'a>(
    rrsig_fields: &[u8],
    owner: &str,
    rtype: u16,
    original_ttl: u32,
    sorted: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut data = Vec::with_capacity(rrsig_fields.len() + 128);
    data.extend_from_slice(rrsig_fields);
    let owner_wire = name(owner);
    for r in sorted {
        data.extend_from_slice(&owner_wire);
        data.extend_from_slice(&rtype.to_be_bytes());
        data.extend_from_slice(&1u16.to_be_bytes());
        data.extend_from_slice(&original_ttl.to_be_bytes());
        data.extend_from_slice(&(r.len() as u16).to_be_bytes());
        data.extend_from_slice(r);
    }
    data
}

/// An NSEC type bitmap (RFC 4034, section 4.1.2) of `types`, ascending.
pub fn type_bitmap(types: impl IntoIterator<Item = u16>) -> Vec<u8> {
    let mut windows: Vec<(u8, [u8; 32])> = Vec::new();
    for t in types {
        let (w, bit) = ((t >> 8) as u8, (t & 0xff) as usize);
        if windows.last().is_none_or(|(lw, _)| *lw != w) {
            windows.push((w, [0; 32]));
        }
        let bits = &mut windows.last_mut().expect("just pushed").1;
        bits[bit / 8] |= 0x80 >> (bit % 8);
    }
    let mut out = Vec::new();
    for (w, bits) in windows {
        let len = bits.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        out.push(w);
        out.push(len as u8);
        out.extend_from_slice(&bits[..len]);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn type_bitmaps_are_rfc_4034s() {
        // RFC 4034, section 4.3: A MX RRSIG NSEC TYPE1234.
        let bitmap = super::type_bitmap([1, 15, 46, 47, 1234]);
        let mut want = vec![0x00, 0x06, 0x40, 0x01, 0x00, 0x00, 0x00, 0x03, 0x04, 0x1b];
        want.extend_from_slice(&[0; 26]);
        want.push(0x20);
        assert_eq!(bitmap, want);
    }
}
