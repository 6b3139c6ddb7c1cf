//! The fast path's metrics, counted by the loop that answers: one [`Metrics`] per UDP socket
//! (its thread, or its task on the portable loop) and per TCP connection. The full path's
//! handler counts its own queries.
//!
//! Cheap per query because nothing shared is touched per query: [`Metrics::answered`] adds to
//! plain integers, and [`Metrics::flush`] adds them to the shared counters once per batch (and
//! before the full path, so counts never wait behind a slow query). The answer counter is found
//! by its index in the table, its handle resolved once per table. The two histograms cost more
//! per value than a whole fast-path answer, so UDP records them for one query in
//! [`SAMPLE_EVERY`]: their distributions stay true, their counts are a sample
//! (docs/operations.md); `geodns_queries_total` counts every query. TCP records every query.

use std::collections::HashMap;
use std::time::Instant;

use ::metrics::{Counter, Histogram, counter, histogram};

use super::{Answered, Transport};
use crate::dns::codec::rcode;
use crate::metrics;
use crate::routing::{AnswerSeries, Rcode, RoutingTable};

/// The UDP fast path times one query in this many, and records the ECS scope of the same one.
pub const SAMPLE_EVERY: u32 = 16;

/// Response codes by their wire value: room for every code the fast path answers with.
const CODES: usize = 6;

/// Metric handles registered once per loop, and the counts not yet added to them.
pub struct Metrics {
    /// `geodns_queries_total` by the response code's wire value, for the codes an answer from
    /// the routing table can have.
    queries: [Option<Counter>; CODES],
    ecs_present: Counter,
    ecs_absent: Counter,
    scope: Histogram,
    duration: Histogram,
    /// Answer counters by [`RoutingTable::answer_series`] index, resolved as first used, for the
    /// table of generation `series_generation` (indexes may mean other labels in another).
    series: Vec<Option<Counter>>,
    series_generation: u64,
    /// Answer counters by label, kept across tables (a rebuild keeps most of them).
    by_label: HashMap<AnswerSeries, Counter>,
    pending: Pending,
    /// Queries seen, for [`Metrics::sample_due`].
    sample: u32,
    sample_every: u32,
}

/// Counts since the last [`Metrics::flush`].
#[derive(Default)]
struct Pending {
    queries: [u64; CODES],
    ecs_present: u64,
    ecs_absent: u64,
    /// Answers by answer series (a batch answers a few names: a short list).
    answers: Vec<(u32, u64)>,
}

impl Metrics {
    pub fn new(transport: Transport) -> Self {
        let mut queries: [Option<Counter>; CODES] = Default::default();
        for code in [Rcode::NoError, Rcode::NxDomain, Rcode::ServFail, Rcode::Refused] {
            let wire = rcode::wire(code);
            queries[usize::from(wire)] = Some(
                counter!(metrics::QUERIES, "transport" => transport.label(), "rcode" => rcode::label(u16::from(wire))),
            );
        }
        Metrics {
            queries,
            ecs_present: counter!(metrics::QUERIES_ECS, "ecs" => "present"),
            ecs_absent: counter!(metrics::QUERIES_ECS, "ecs" => "absent"),
            scope: histogram!(metrics::ECS_SCOPE),
            duration: histogram!(metrics::QUERY_DURATION),
            series: Vec::new(),
            series_generation: 0,
            by_label: HashMap::new(),
            pending: Pending::default(),
            sample: 0,
            sample_every: match transport {
                Transport::Udp => SAMPLE_EVERY,
                Transport::Tcp => 1,
            },
        }
    }

    /// Whether to time this query and record its scope: true for one query in the transport's
    /// sample (histograms cost more per value than a whole fast-path answer). Call it as the
    /// query's work starts; pass the time to [`Metrics::answered`].
    pub fn sample_due(&mut self) -> bool {
        // The first query, then every n-th: a loop that answers q queries records ceil(q / n).
        let due = self.sample.is_multiple_of(self.sample_every);
        self.sample = self.sample.wrapping_add(1);
        due
    }

    /// Counts one fast-path answer; `started` (when its query was sampled) times it and
    /// records its ECS scope.
    pub fn answered(&mut self, info: &Answered, started: Option<Instant>) {
        if let Some(started) = started {
            self.duration.record(started.elapsed().as_secs_f64());
        }
        self.pending.queries[usize::from(rcode::wire(info.rcode))] += 1;
        if info.ecs {
            self.pending.ecs_present += 1;
            if started.is_some() && info.rcode != Rcode::Refused {
                self.scope.record(f64::from(info.scope));
            }
        } else {
            self.pending.ecs_absent += 1;
        }
        if let Some(series) = info.answers {
            match self.pending.answers.iter_mut().find(|(s, _)| *s == series) {
                Some((_, n)) => *n += 1,
                None => self.pending.answers.push((series, 1)),
            }
        }
    }

    /// Adds the counts since the last flush to the shared counters. `table` is the one the
    /// answers counted since then came from.
    pub fn flush(&mut self, table: &RoutingTable) {
        let p = &mut self.pending;
        for (counter, n) in self.queries.iter().zip(&mut p.queries) {
            if *n > 0
                && let Some(counter) = counter
            {
                counter.increment(std::mem::take(n));
            }
        }
        for (counter, n) in [(&self.ecs_present, &mut p.ecs_present), (&self.ecs_absent, &mut p.ecs_absent)] {
            if *n > 0 {
                counter.increment(std::mem::take(n));
            }
        }
        if p.answers.is_empty() {
            return;
        }
        if self.series_generation != table.generation || self.series.len() != table.answer_series().len() {
            self.series.clear();
            self.series.resize(table.answer_series().len(), None);
            self.series_generation = table.generation;
            // Labels of names long gone (reloads) are let go now and then.
            if self.by_label.len() > 2 * table.answer_series().len() + 1024 {
                self.by_label.clear();
            }
        }
        let (by_index, by_label) = (&mut self.series, &mut self.by_label);
        for (series, n) in self.pending.answers.drain(..) {
            let Some(label) = table.answer_series().get(series as usize) else { continue };
            let counter = by_index[series as usize].get_or_insert_with(|| {
                by_label.entry(label.clone()).or_insert_with(|| answer_counter(table, label)).clone()
            });
            counter.increment(n);
        }
    }
}

/// The `name` label of the answers counted per site ([`AnswerSeries::Other`]).
pub const OTHER_NAMES: &str = "(other)";

/// The answer counter `series` labels (`geodns_answers_total`).
pub fn answer_counter(table: &RoutingTable, series: &AnswerSeries) -> Counter {
    let (name, site) = match series {
        AnswerSeries::Named(name, site) => (name.to_string(), *site),
        AnswerSeries::Other(site) => (OTHER_NAMES.to_owned(), *site),
    };
    let site = table.sites().get(site).map_or_else(String::new, |s| s.name.clone());
    counter!(metrics::ANSWERS, "name" => name, "site" => site)
}
