//! EDNS Client Subnet (RFC 7871): which address a query is for, validated.

use std::net::IpAddr;

use hickory_proto::rr::rdata::opt::ClientSubnet;

/// A validated ECS option from a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs {
    pub address: IpAddr,
    pub source_prefix: u8,
}

/// Why an ECS option is malformed (answered FORMERR, RFC 7871 section 7.1.1/7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    #[error("source prefix {0} is longer than the address family allows")]
    PrefixTooLong(u8),
    #[error("address has bits set beyond the source prefix")]
    HostBitsSet,
    #[error("scope prefix {0} is not 0 in a query")]
    ScopeInQuery(u8),
    #[error("{octets} address octets for a source prefix of {prefix}")]
    AddressLength { octets: usize, prefix: u8 },
}

impl Ecs {
    /// Validates the option as decoded by hickory (which already rejects unknown families and
    /// an address longer than the option).
    pub fn from_option(cs: &ClientSubnet, option_len: Option<usize>) -> Result<Ecs, EcsError> {
        let address = cs.addr();
        let source = cs.source_prefix();
        let max = match address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if source > max {
            return Err(EcsError::PrefixTooLong(source));
        }
        // The address must be exactly as long as the prefix needs (hickory reads only that).
        if let Some(len) = option_len {
            let octets = len.saturating_sub(4);
            if octets != super::wire::ecs_address_octets(source) {
                return Err(EcsError::AddressLength { octets, prefix: source });
            }
        }
        if cs.scope_prefix() != 0 {
            return Err(EcsError::ScopeInQuery(cs.scope_prefix()));
        }
        let masked = match address {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask32(source)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask128(source)).into()),
        };
        if masked != address {
            return Err(EcsError::HostBitsSet);
        }
        Ok(Ecs { address, source_prefix: source })
    }

    /// The address routing should place: the ECS address, unless the source prefix is 0
    /// (the client asked not to be located by subnet), then the packet's source.
    pub fn client(ecs: Option<&Ecs>, src: IpAddr) -> IpAddr {
        match ecs {
            Some(e) if e.source_prefix > 0 => e.address,
            _ => src.to_canonical(),
        }
    }

    /// The option for the response: family, source prefix and address echoed, with `scope`.
    pub fn reply(&self, scope: u8) -> ClientSubnet {
        ClientSubnet::new(self.address, self.source_prefix, scope)
    }
}

fn mask32(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) }
}

fn mask128(len: u8) -> u128 {
    if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cs(addr: &str, source: u8, scope: u8) -> ClientSubnet {
        ClientSubnet::new(addr.parse().unwrap(), source, scope)
    }

    #[test]
    fn valid_options() {
        let e = Ecs::from_option(&cs("81.2.69.0", 24, 0), None).unwrap();
        assert_eq!(e.source_prefix, 24);
        assert_eq!(Ecs::client(Some(&e), "127.0.0.1".parse().unwrap()), "81.2.69.0".parse::<IpAddr>().unwrap());
        let zero = Ecs::from_option(&cs("0.0.0.0", 0, 0), None).unwrap();
        assert_eq!(Ecs::client(Some(&zero), "127.0.0.1".parse().unwrap()), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(Ecs::from_option(&cs("2001:db8::", 48, 0), None).is_ok());
    }

    #[test]
    fn malformed_options() {
        assert_eq!(Ecs::from_option(&cs("81.2.69.1", 24, 0), None), Err(EcsError::HostBitsSet));
        assert_eq!(Ecs::from_option(&cs("81.2.69.0", 33, 0), None), Err(EcsError::PrefixTooLong(33)));
        assert_eq!(Ecs::from_option(&cs("81.2.69.0", 24, 8), None), Err(EcsError::ScopeInQuery(8)));
        assert_eq!(Ecs::from_option(&cs("2001:db8::1", 64, 0), None), Err(EcsError::HostBitsSet));
        assert_eq!(
            Ecs::from_option(&cs("81.2.69.0", 24, 0), Some(8)),
            Err(EcsError::AddressLength { octets: 4, prefix: 24 })
        );
        assert!(Ecs::from_option(&cs("81.2.69.0", 24, 0), Some(7)).is_ok());
    }

    #[test]
    fn mapped_sources_are_plain_ipv4() {
        let src: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Ecs::client(None, src), "192.0.2.1".parse::<IpAddr>().unwrap());
    }
}
