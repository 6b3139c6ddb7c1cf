//! The rankings of one site set: for a location, the name's sites nearest first (ties by site
//! name, as the per-query decision orders them), interned so that a table stores a ranking as
//! a small index, and computed once per distinct location of the database.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{Location, UnitVector};

/// How many of the nearest sites a table keeps per range. A name with more sites is answered
/// from the table while one of its first `RANKED` sites can answer; beyond that (every one of
/// them down or without addresses) the per-query decision takes over.
pub const RANKED: usize = 8;

/// Filler after the last ranked site of a name with fewer than `RANKED` sites.
pub(super) const NONE: u8 = u8::MAX;

/// Makes the rankings of a table build, for the IPv4 and the IPv6 walk alike.
pub(super) struct Ranker<'a> {
    sites: &'a [(UnitVector, &'a str)],
    orders: Vec<[u8; RANKED]>,
    ids: HashMap<[u8; RANKED], u32>,
    /// By the location's bits: many networks share a location (a city, a country centroid).
    by_location: HashMap<(u64, u64), u32>,
    /// Scratch for sorting.
    idx: Vec<usize>,
    unlocated: u32,
}

impl<'a> Ranker<'a> {
    /// `None` for more sites than a ranking can name.
    pub(super) fn new(sites: &'a [(UnitVector, &'a str)]) -> Option<Self> {
        if sites.len() > usize::from(NONE) {
            return None;
        }
        let mut r = Ranker {
            sites,
            orders: Vec::new(),
            ids: HashMap::new(),
            by_location: HashMap::new(),
            idx: Vec::with_capacity(sites.len()),
            unlocated: 0,
        };
        // No location: the configured order.
        let mut configured = [NONE; RANKED];
        for (i, slot) in configured.iter_mut().enumerate().take(sites.len().min(RANKED)) {
            *slot = i as u8;
        }
        r.unlocated = r.intern(configured);
        Some(r)
    }

    fn intern(&mut self, order: [u8; RANKED]) -> u32 {
        *self.ids.entry(order).or_insert_with(|| {
            self.orders.push(order);
            (self.orders.len() - 1) as u32
        })
    }

    /// The ranking of a place (an index into the finished orders).
    pub(super) fn class(&mut self, location: Option<Location>) -> u32 {
        let Some(loc) = location else { return self.unlocated };
        if let Some(&class) = self.by_location.get(&(loc.lat.to_bits(), loc.lon.to_bits())) {
            return class;
        }
        let u = loc.unit();
        let sites = self.sites;
        self.idx.clear();
        self.idx.extend(0..sites.len());
        // As `RoutingTable::decide`: nearest first, ties by site name.
        self.idx.sort_by(|&a, &b| {
            u.dot(&sites[b].0).total_cmp(&u.dot(&sites[a].0)).then_with(|| sites[a].1.cmp(sites[b].1))
        });
        let mut order = [NONE; RANKED];
        for (slot, &i) in order.iter_mut().zip(self.idx.iter()) {
            *slot = i as u8;
        }
        let class = self.intern(order);
        self.by_location.insert((loc.lat.to_bits(), loc.lon.to_bits()), class);
        class
    }

    /// The rankings made, by index.
    pub(super) fn finish(mut self) -> Arc<[[u8; RANKED]]> {
        self.orders.shrink_to_fit();
        self.orders.into()
    }
}

/// The ranking `class` of `orders`, cut at its last site.
pub(super) fn ranked(orders: &[[u8; RANKED]], class: usize) -> &[u8] {
    let order = &orders[class];
    let len = order.iter().position(|&p| p == NONE).unwrap_or(RANKED);
    &order[..len]
}
