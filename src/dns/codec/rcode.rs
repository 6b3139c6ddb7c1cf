//! Response codes: a routing answer's [`Rcode`] on the wire and in hickory's terms, and any
//! response code as the `rcode` label of `geodns_queries_total`. Each mapping is written here
//! once; the writers, the full handler and the metrics all go through it.

use hickory_proto::op::ResponseCode;

use crate::routing::Rcode;

/// The wire value (RFC 1035 section 4.1.1) of a routing answer's code.
pub const fn wire(r: Rcode) -> u8 {
    match r {
        Rcode::NoError => 0,
        Rcode::ServFail => 2,
        Rcode::NxDomain => 3,
        Rcode::Refused => 5,
    }
}

/// hickory's code for a routing answer's, for the full path's encoder.
pub fn hickory(r: Rcode) -> ResponseCode {
    ResponseCode::from_low(wire(r))
}

/// The `rcode` label of a response code (its 12-bit value, EDNS extended codes included): a
/// closed set.
pub const fn label(code: u16) -> &'static str {
    match code {
        0 => "noerror",
        1 => "formerr",
        2 => "servfail",
        3 => "nxdomain",
        4 => "notimp",
        5 => "refused",
        16 => "badvers",
        _ => "other",
    }
}

/// The label of hickory's code (the full handler's responses).
pub fn hickory_label(code: ResponseCode) -> &'static str {
    label(u16::from(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_routing_code_means_the_same_everywhere() {
        for (r, code, name) in [
            (Rcode::NoError, ResponseCode::NoError, "noerror"),
            (Rcode::NxDomain, ResponseCode::NXDomain, "nxdomain"),
            (Rcode::ServFail, ResponseCode::ServFail, "servfail"),
            (Rcode::Refused, ResponseCode::Refused, "refused"),
        ] {
            assert_eq!(hickory(r), code);
            assert_eq!(label(u16::from(wire(r))), name);
            assert_eq!(hickory_label(code), name);
        }
        assert_eq!(hickory_label(ResponseCode::FormErr), "formerr");
        assert_eq!(hickory_label(ResponseCode::NotImp), "notimp");
        assert_eq!(hickory_label(ResponseCode::BADVERS), "badvers");
        assert_eq!(hickory_label(ResponseCode::YXDomain), "other");
    }
}
