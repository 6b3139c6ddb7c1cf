//! The UDP server loop: one loop per socket (several sockets share each address with
//! SO_REUSEPORT, so the kernel spreads queries over them). Common queries take the fast path
//! (zero-copy parse, direct encoding); everything else goes through hickory's full decoder and
//! our [`Handler`]. On Linux each socket has a thread of its own that blocks in `recvmmsg`,
//! reads up to 32 queries per call and sends the fast path's answers with one `sendmmsg`;
//! elsewhere a runtime task takes one datagram at a time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
#[cfg(not(target_os = "linux"))]
use std::time::Instant;

use ::metrics::{Counter, Histogram, counter, histogram};
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
#[cfg(not(target_os = "linux"))]
use tracing::debug;

use super::capture::Capture;
use super::fast::{self, Fast};
use super::handler::Handler;
use super::query::{self, NotFast};
use super::rrl::{self, ResponseKey, Rrl, Verdict};
use crate::metrics;
use crate::routing::{AnswerSeries, Rcode, RoutingTable};

/// Serves one UDP socket until `shutdown` is cancelled.
pub async fn serve(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    #[cfg(target_os = "linux")]
    batch::serve(socket, handler, rrl, shutdown).await;
    #[cfg(not(target_os = "linux"))]
    serve_one_at_a_time(socket, handler, rrl, shutdown).await;
}

/// The portable loop: one `recv_from` and one `send_to` per query.
#[cfg(not(target_os = "linux"))]
async fn serve_one_at_a_time(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(super::MAX_UDP_PAYLOAD as usize);
    let mut name = query::NameBuf::new();
    let mut m = Metrics::new();
    loop {
        let (n, src) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    // ICMP errors from earlier sends surface here on some systems; keep going.
                    debug!(%error, "UDP receive error");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let started = Instant::now();
        let packet = &buf[..n];
        let q = match query::parse(packet, &mut name) {
            Ok(q) => q,
            Err(NotFast::Drop) => continue,
            Err(NotFast::Slow) => {
                slow(&socket, &handler, rrl.as_deref(), packet, src).await;
                continue;
            }
        };
        let table = handler.table();
        match fast::answer(&table, &q, src.ip(), &mut out) {
            Fast::Answered(info) => {
                if m.sample_due() {
                    m.duration.record(started.elapsed().as_secs_f64());
                    m.record(&info, true);
                } else {
                    m.record(&info, false);
                }
                m.flush(&table);
                drop(table);
                send(&socket, rrl.as_deref(), &out, src).await;
            }
            Fast::Slow => {
                drop(table);
                slow(&socket, &handler, rrl.as_deref(), packet, src).await;
            }
        }
    }
}

/// The Linux loop: a thread per socket; `recvmmsg` drains up to [`batch::BATCH`] queries per
/// system call, the fast path answers them in turn, and one `sendmmsg` sends the answers.
/// Queries for the full handler are answered (and sent) as they come, in between.
#[cfg(target_os = "linux")]
mod batch;

/// Sends a response, unless response rate limiting says to drop it or send it truncated.
#[cfg(not(target_os = "linux"))]
async fn send(socket: &UdpSocket, rrl: Option<&Rrl>, response: &[u8], dst: SocketAddr) {
    let verdict =
        rrl.map_or(Verdict::Send, |r| r.check(dst.ip(), ResponseKey::from_response(response), Instant::now()));
    let result = match verdict {
        Verdict::Send => socket.send_to(response, dst).await,
        Verdict::Slip => match rrl::truncated(response) {
            Some(t) => socket.send_to(&t, dst).await,
            None => return,
        },
        Verdict::Drop => return,
    };
    if let Err(error) = result {
        debug!(%error, %dst, "UDP send error");
    }
}

/// Metric handles registered once per socket task. [`Metrics::record`] only counts in plain
/// integers; [`Metrics::flush`] adds the counts to the shared counters once per batch.
struct Metrics {
    queries: [Counter; 4],
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
    /// Fast-path queries seen, for [`Metrics::sample_due`].
    sample: u32,
}

/// The UDP fast path times one query in this many, and records the ECS scope of the same one
/// (documented in docs/operations.md): the histograms' distributions stay true, their counts
/// are a sample. `geodns_queries_total` counts every query.
const SAMPLE_EVERY: u32 = 16;

/// Counts since the last [`Metrics::flush`].
#[derive(Default)]
struct Pending {
    queries: [u64; 4],
    ecs_present: u64,
    ecs_absent: u64,
    /// Answers by answer series (a batch answers a few names: a short list).
    answers: Vec<(u32, u64)>,
}

impl Metrics {
    fn new() -> Self {
        let q = |rcode: &'static str| counter!(metrics::QUERIES, "transport" => "udp", "rcode" => rcode);
        Metrics {
            queries: [q("noerror"), q("nxdomain"), q("servfail"), q("refused")],
            ecs_present: counter!(metrics::QUERIES_ECS, "ecs" => "present"),
            ecs_absent: counter!(metrics::QUERIES_ECS, "ecs" => "absent"),
            scope: histogram!(metrics::ECS_SCOPE),
            duration: histogram!(metrics::QUERY_DURATION),
            series: Vec::new(),
            series_generation: 0,
            by_label: HashMap::new(),
            pending: Pending::default(),
            sample: 0,
        }
    }

    /// Whether to time this query and record its scope: true for one query in
    /// [`SAMPLE_EVERY`] (histograms cost more per value than a whole fast-path answer).
    fn sample_due(&mut self) -> bool {
        // The first query, then every SAMPLE_EVERY-th: each socket that answers n queries
        // records ceil(n / SAMPLE_EVERY) of them.
        let due = self.sample.is_multiple_of(SAMPLE_EVERY);
        self.sample = self.sample.wrapping_add(1);
        due
    }

    /// Counts one fast-path answer (the caller records its duration in `self.duration`), and
    /// its ECS scope when `sampled`.
    fn record(&mut self, info: &fast::Answered, sampled: bool) {
        let i = match info.rcode {
            Rcode::NoError => 0,
            Rcode::NxDomain => 1,
            Rcode::ServFail => 2,
            Rcode::Refused => 3,
        };
        self.pending.queries[i] += 1;
        if info.ecs {
            self.pending.ecs_present += 1;
            if sampled && info.rcode != Rcode::Refused {
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
    fn flush(&mut self, table: &RoutingTable) {
        let p = &mut self.pending;
        for (counter, n) in self.queries.iter().zip(&mut p.queries) {
            if *n > 0 {
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
                by_label.entry(label.clone()).or_insert_with(|| super::handler::answer_counter(table, label)).clone()
            });
            counter.increment(n);
        }
    }
}

/// The full path: hickory decodes, our handler answers, hickory encodes.
#[cfg(not(target_os = "linux"))]
async fn slow(socket: &Arc<UdpSocket>, handler: &Handler, rrl: Option<&Rrl>, packet: &[u8], src: SocketAddr) {
    if let Some(bytes) = slow_response(handler, packet, src).await {
        send(socket, rrl, &bytes, src).await;
    }
}

/// The full path's response to one UDP query: hickory decodes, our handler answers, hickory
/// encodes. `None` when nothing is to be sent (a response, a packet too short for a header).
async fn slow_response(handler: &Handler, packet: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
        Ok(request) => {
            if request.metadata.message_type == MessageType::Response {
                return None;
            }
            let capture = Capture::new(Protocol::Udp);
            handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            Some(capture.take()).filter(|bytes| !bytes.is_empty())
        }
        // A readable header gets FORMERR (with no question); anything shorter is dropped.
        Err(_) => formerr(packet),
    }
}

/// FORMERR for a packet whose header can be read; `None` for responses and short packets.
pub fn formerr(packet: &[u8]) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    metadata.response_code = ResponseCode::FormErr;
    let mut out = Vec::with_capacity(12);
    Header { metadata, counts: HeaderCounts::default() }.emit(&mut BinEncoder::new(&mut out)).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formerr_mirrors_the_id_and_drops_responses() {
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        let r = super::formerr(&q).unwrap();
        assert_eq!(r.len(), 12);
        assert_eq!(&r[..2], &[0xab, 0xcd]);
        assert_eq!(r[2] & 0x80, 0x80);
        assert_eq!(r[3] & 0x0f, 1);
        q[2] |= 0x80;
        assert!(super::formerr(&q).is_none());
        assert!(super::formerr(&q[..5]).is_none());
    }
}
