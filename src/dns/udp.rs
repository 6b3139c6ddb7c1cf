//! The UDP server loop: one task per socket (several sockets share each address with
//! SO_REUSEPORT, so the kernel spreads queries over the runtime's workers). Common queries take
//! the fast path (zero-copy parse, direct encoding); everything else goes through hickory's full
//! decoder and our [`Handler`], exactly as before.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ::metrics::{Counter, Histogram, counter, histogram};
use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::capture::Capture;
use super::fast::{self, Fast};
use super::handler::Handler;
use super::query::{self, NotFast};
use super::rrl::{self, ResponseKey, Rrl, Verdict};
use crate::metrics;
use crate::model::{Name, SiteId};
use crate::routing::Rcode;

/// Serves one UDP socket until `shutdown` is cancelled.
pub async fn serve(socket: UdpSocket, handler: Handler, rrl: Option<Arc<Rrl>>, shutdown: CancellationToken) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(super::MAX_UDP_PAYLOAD as usize);
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
        let q = match query::parse(packet) {
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
                send(&socket, rrl.as_deref(), &out, src).await;
                m.record(&info, &table, started);
            }
            Fast::Slow => {
                drop(table);
                slow(&socket, &handler, rrl.as_deref(), packet, src).await;
            }
        }
    }
}

/// Sends a response, unless response rate limiting says to drop it or send it truncated.
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

/// Metric handles registered once per socket task, so the per-query cost is an atomic add.
struct Metrics {
    queries: [Counter; 4],
    ecs_present: Counter,
    ecs_absent: Counter,
    scope: Histogram,
    duration: Histogram,
    answers: HashMap<(Name, SiteId), Counter>,
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
            answers: HashMap::new(),
        }
    }

    fn record(&mut self, info: &fast::Answered, table: &crate::routing::RoutingTable, started: Instant) {
        let i = match info.rcode {
            Rcode::NoError => 0,
            Rcode::NxDomain => 1,
            Rcode::ServFail => 2,
            Rcode::Refused => 3,
        };
        self.queries[i].increment(1);
        if info.ecs {
            self.ecs_present.increment(1);
            if info.rcode != Rcode::Refused {
                self.scope.record(f64::from(info.scope));
            }
        } else {
            self.ecs_absent.increment(1);
        }
        if let Some(d) = &info.answer.decision
            && let Some(&site) = d.answered_from.first()
        {
            let key = (d.name.clone(), site);
            if let Some(c) = self.answers.get(&key) {
                c.increment(1);
            } else if let Some(s) = table.sites().get(site) {
                // Bounded by the config's geo names x sites.
                let c = counter!(metrics::ANSWERS, "name" => d.name.to_string(), "site" => s.name.clone());
                c.increment(1);
                self.answers.insert(key, c);
            }
        }
        self.duration.record(started.elapsed().as_secs_f64());
    }
}

/// The full path: hickory decodes, our handler answers, hickory encodes.
async fn slow(socket: &Arc<UdpSocket>, handler: &Handler, rrl: Option<&Rrl>, packet: &[u8], src: SocketAddr) {
    match Request::from_bytes(packet.to_vec(), src, Protocol::Udp) {
        Ok(request) => {
            if request.metadata.message_type == MessageType::Response {
                return;
            }
            let capture = Capture::new(Protocol::Udp);
            handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            let bytes = capture.take();
            if !bytes.is_empty() {
                send(socket, rrl, &bytes, src).await;
            }
        }
        Err(_) => {
            // A readable header gets FORMERR (with no question); anything shorter is dropped.
            if let Some(bytes) = formerr(packet) {
                send(socket, rrl, &bytes, src).await;
            }
        }
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
