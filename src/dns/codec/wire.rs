//! Small zero-copy readers of the raw query bytes, for what hickory's decoded message no longer
//! shows (the exact length of the Client Subnet option).

/// The length of the first Client Subnet option's data in the OPT record of `msg`, or `None`
/// when there is none or the message cannot be walked.
pub fn ecs_option_len(msg: &[u8]) -> Option<usize> {
    let count = |i: usize| -> Option<usize> { Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]) as usize) };
    let (qd, an, ns, ar) = (count(4)?, count(6)?, count(8)?, count(10)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    for _ in 0..an + ns + ar {
        pos = skip_name(msg, pos)?;
        let rtype = count(pos)?;
        let rdlen = count(pos + 8)?;
        let rdata = pos + 10;
        let end = rdata.checked_add(rdlen)?;
        if end > msg.len() {
            return None;
        }
        if rtype == 41 {
            let mut o = rdata;
            while o + 4 <= end {
                let (code, len) = (count(o)?, count(o + 2)?);
                if code == 8 {
                    return Some(len);
                }
                o += 4 + len;
            }
            return None;
        }
        pos = end;
    }
    None
}

/// True when the first question's name uses a compression pointer (nothing to point at yet in
/// a question: such a query is malformed, and echoing it would make the response unparseable).
pub fn question_has_pointer(msg: &[u8]) -> bool {
    let mut pos = 12;
    while let Some(&len) = msg.get(pos) {
        match len {
            0 => return false,
            l if l & 0xc0 != 0 => return true,
            l => pos += 1 + l as usize,
        }
    }
    false
}

/// Skips a (possibly compressed) name starting at `pos`; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l if l & 0xc0 == 0 => pos += 1 + l as usize,
            _ => return None,
        }
    }
}

/// The number of address octets an ECS option must carry for `source_prefix` bits.
pub fn ecs_address_octets(source_prefix: u8) -> usize {
    (source_prefix as usize).div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::super::test_query::TestQuery;
    use super::*;

    #[test]
    fn finds_the_ecs_option_length() {
        // One question "a." A IN; OPT with ECS 1/24/0 81.2.69.
        let m = TestQuery::new(1, "a.", 1).flags(0x0100).edns(1024).ecs(1, 24, 0, &[81, 2, 69]).bytes();
        assert_eq!(ecs_option_len(&m), Some(7));
        assert_eq!(ecs_option_len(&m[..20]), None, "truncated");
        let no_opt = TestQuery::new(1, "a.", 1).flags(0x0100).bytes();
        assert_eq!(ecs_option_len(&no_opt), None);
        assert_eq!(ecs_address_octets(24), 3);
        assert_eq!(ecs_address_octets(25), 4);
        assert_eq!(ecs_address_octets(0), 0);
    }
}
