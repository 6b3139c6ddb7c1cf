//! Dynamic updates (RFC 2136) in geodns's own terms: what an UPDATE message asks, what came of
//! it, and the dynamic records applied updates leave, which every table build takes as input.

use std::collections::BTreeMap;

use super::{Name, RData, RType};

/// A prerequisite (RFC 2136 section 2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prereq {
    NameInUse(Name),
    NameNotInUse(Name),
    RrsetExists(Name, RType),
    RrsetNotExists(Name, RType),
    /// The RRset exists with exactly these records (value-dependent); `None` for data of a
    /// type geodns cannot hold (such an RRset never exists here).
    RrsetEquals(Name, RType, Vec<Option<RData>>),
}

impl Prereq {
    pub fn name(&self) -> &Name {
        match self {
            Prereq::NameInUse(n)
            | Prereq::NameNotInUse(n)
            | Prereq::RrsetExists(n, _)
            | Prereq::RrsetNotExists(n, _)
            | Prereq::RrsetEquals(n, _, _) => n,
        }
    }
}

/// One change of the update section (RFC 2136 section 2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add a record; `data` is `None` for a type geodns cannot hold (refused by policy).
    Add {
        name: Name,
        rtype: RType,
        ttl: u32,
        data: Option<RData>,
    },
    DeleteRrset {
        name: Name,
        rtype: RType,
    },
    /// Delete every RRset at the name.
    DeleteName {
        name: Name,
    },
    DeleteRr {
        name: Name,
        rtype: RType,
        data: Option<RData>,
    },
}

impl Change {
    pub fn name(&self) -> &Name {
        match self {
            Change::Add { name, .. }
            | Change::DeleteRrset { name, .. }
            | Change::DeleteName { name }
            | Change::DeleteRr { name, .. } => name,
        }
    }

    /// The type changed (`Any` for a whole name).
    pub fn rtype(&self) -> RType {
        match self {
            Change::Add { rtype, .. } | Change::DeleteRrset { rtype, .. } | Change::DeleteRr { rtype, .. } => *rtype,
            Change::DeleteName { .. } => RType::Any,
        }
    }
}

/// An authenticated UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRequest {
    pub zone: Name,
    /// The TSIG key that signed it (verified).
    pub key: Name,
    pub prereqs: Vec<Prereq>,
    pub changes: Vec<Change>,
}

/// The response codes of an UPDATE (RFC 2136 section 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateRcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    Refused,
    YxDomain,
    YxRrset,
    NxRrset,
    NotAuth,
    NotZone,
}

impl UpdateRcode {
    pub fn code(self) -> u8 {
        match self {
            UpdateRcode::NoError => 0,
            UpdateRcode::FormErr => 1,
            UpdateRcode::ServFail => 2,
            UpdateRcode::NxDomain => 3,
            UpdateRcode::Refused => 5,
            UpdateRcode::YxDomain => 6,
            UpdateRcode::YxRrset => 7,
            UpdateRcode::NxRrset => 8,
            UpdateRcode::NotAuth => 9,
            UpdateRcode::NotZone => 10,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateRcode::NoError => "NOERROR",
            UpdateRcode::FormErr => "FORMERR",
            UpdateRcode::ServFail => "SERVFAIL",
            UpdateRcode::NxDomain => "NXDOMAIN",
            UpdateRcode::Refused => "REFUSED",
            UpdateRcode::YxDomain => "YXDOMAIN",
            UpdateRcode::YxRrset => "YXRRSET",
            UpdateRcode::NxRrset => "NXRRSET",
            UpdateRcode::NotAuth => "NOTAUTH",
            UpdateRcode::NotZone => "NOTZONE",
        }
    }
}

/// The records one name holds by dynamic update (one TTL for all, as static nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicNode {
    pub ttl: u32,
    pub rdata: Vec<RData>,
}

/// A zone's dynamic records and the serial its SOA has after the last applied update.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DynamicZone {
    /// `None` before the first applied update (the config's serial is served).
    pub serial: Option<u32>,
    pub names: BTreeMap<Name, DynamicNode>,
}

/// Every zone's dynamic records: an input of every table build.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dynamic {
    pub zones: BTreeMap<Name, DynamicZone>,
}

/// RFC 1982 serial arithmetic: true when `a` is after `b`.
pub fn serial_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}
