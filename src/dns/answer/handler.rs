//! The full path's request handler: one hickory request in, one response out. Checks what
//! makes a request unanswerable (opcode, class, EDNS version, malformed ECS), asks the current
//! routing table, and builds hickory's response; counts every query it answers. [`Handler`]
//! also hands the fast path the table being served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use ::metrics::{counter, histogram};
use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Record};
use hickory_proto::serialize::binary::BinDecoder;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponseBuilder, Queries};
use tracing::{debug, warn};

use super::Transport;
use super::metrics::answer_counter;
use crate::dns::codec::ecs::Ecs;
use crate::dns::codec::response::MAX_UDP_PAYLOAD;
use crate::dns::codec::{convert, rcode, wire};
use crate::dns::update::{self, UpdateService};
use crate::metrics;
use crate::model::Name;
use crate::routing::{Answer, Query, Rcode, RoutingTable};

/// Answers queries from the routing table currently published.
#[derive(Clone)]
pub struct Handler {
    /// Written only by the app's builder task (one `store` per new snapshot); read here with one
    /// `load` per query. ArcSwap because reads must never block or wait for a rebuild.
    table: Arc<ArcSwap<RoutingTable>>,
    /// Where authenticated UPDATE messages go (`None`: every update is refused).
    updates: Option<Arc<dyn UpdateService>>,
}

impl Handler {
    pub fn new(table: Arc<ArcSwap<RoutingTable>>) -> Self {
        Handler { table, updates: None }
    }

    /// A handler that hands UPDATE messages to `updates`.
    pub fn with_updates(table: Arc<ArcSwap<RoutingTable>>, updates: Arc<dyn UpdateService>) -> Self {
        Handler { table, updates: Some(updates) }
    }

    /// The full path of this server: UPDATE messages to the update service (with TSIG, on
    /// their own bytes), everything else to [`full::respond`](super::full::respond).
    pub async fn respond_full(&self, packet: &[u8], src: SocketAddr, transport: Transport) -> Option<Vec<u8>> {
        if update::is_update(packet) {
            return Some(update::respond(self.updates.as_deref(), packet, src).await);
        }
        super::full::respond(self, packet, src, transport).await
    }

    /// The table being served (one atomic load; do not hold it across an await).
    pub fn table(&self) -> arc_swap::Guard<Arc<RoutingTable>> {
        self.table.load()
    }
}

/// What the handler decided before any records were built. One per request, on the stack and
/// moved once: the size difference between the variants costs nothing a box would save.
#[allow(clippy::large_enum_variant)]
enum Reply {
    /// An error with no records; `with_edns` puts an OPT record in the response.
    Error(ResponseCode),
    Answer(Answer),
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let started = Instant::now();
        let request_edns = request.edns.as_ref();
        let mut ecs: Option<Ecs> = None;
        let reply = match classify(request) {
            Err(code) => Reply::Error(code),
            Ok(()) => {
                // Validated ECS, or FORMERR.
                match request_edns.and_then(|e| e.option(EdnsCode::Subnet)) {
                    Some(EdnsOption::Subnet(cs)) => {
                        match Ecs::from_option(cs, wire::ecs_option_len(request.as_slice())) {
                            Ok(e) => {
                                ecs = Some(e);
                                Reply::Answer(self.resolve(request, ecs.as_ref()))
                            }
                            Err(error) => {
                                debug!(%error, src = %request.src(), "malformed ECS option");
                                Reply::Error(ResponseCode::FormErr)
                            }
                        }
                    }
                    _ => Reply::Answer(self.resolve(request, None)),
                }
            }
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        let mut edns_out = request_edns.map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            e.set_version(0);
            e.set_dnssec_ok(req.flags().dnssec_ok);
            e
        });

        let (answers, authority, additional) = match reply {
            Reply::Error(code) => {
                metadata.response_code = code;
                (Vec::new(), Vec::new(), Vec::new())
            }
            Reply::Answer(answer) => {
                metadata.authoritative = answer.rcode != Rcode::Refused;
                metadata.response_code = rcode::hickory(answer.rcode);
                if let (Some(ecs), Some(edns)) = (&ecs, edns_out.as_mut())
                    && answer.rcode != Rcode::Refused
                {
                    edns.options_mut().insert(EdnsOption::Subnet(ecs.reply(answer.scope)));
                    histogram!(metrics::ECS_SCOPE).record(f64::from(answer.scope));
                }

                records(request, &answer)
            }
        };

        let code = metadata.response_code;
        // A FORMERR carries no question: the question may be what is malformed (a compression
        // pointer in it would point into the response header).
        let no_question = Queries::read(&mut BinDecoder::new(&[]), 0).expect("reading zero questions cannot fail");
        let queries = if code == ResponseCode::FormErr { &no_question } else { &request.queries };
        let mut builder = MessageResponseBuilder::new(queries, None);
        if let Some(edns) = &edns_out {
            builder.edns(edns);
        }
        let message = builder.build(metadata, answers.iter(), authority.iter(), std::iter::empty(), additional.iter());
        let sent = response.send_response(message).await;
        let transport = match request.protocol() {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            _ => "other",
        };
        counter!(metrics::QUERIES, "transport" => transport, "rcode" => rcode::hickory_label(code)).increment(1);
        counter!(metrics::QUERIES_ECS, "ecs" => if ecs.is_some() { "present" } else { "absent" }).increment(1);
        histogram!(metrics::QUERY_DURATION).record(started.elapsed().as_secs_f64());
        match sent {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, src = %request.src(), "failed to send response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(hickory_proto::op::Header { metadata, counts: Default::default() })
            }
        }
    }
}

/// Checks what makes a request unanswerable before routing: opcode, question count, class,
/// EDNS version.
fn classify(request: &Request) -> Result<(), ResponseCode> {
    if request.metadata.message_type != MessageType::Query {
        return Err(ResponseCode::FormErr);
    }
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    if let Some(edns) = &request.edns
        && edns.version() > 0
    {
        return Err(ResponseCode::BADVERS);
    }
    let queries = request.queries.queries();
    if queries.len() != 1 || wire::question_has_pointer(request.as_slice()) {
        return Err(ResponseCode::FormErr);
    }
    if !matches!(queries[0].query_class(), DNSClass::IN) {
        return Err(ResponseCode::Refused);
    }
    Ok(())
}

impl Handler {
    fn resolve(&self, request: &Request, ecs: Option<&Ecs>) -> Answer {
        let q = &request.queries.queries()[0];
        let name = Name::from_ascii_lossy(&q.name().to_string());
        let rtype = convert::rtype(q.query_type());
        let client = Ecs::client(ecs, request.src().ip());
        let table = self.table.load();
        let answer = table.resolve(&Query { name: &name, rtype, client, ecs_source: ecs.map(|e| e.source_prefix) });
        if let Some(d) = &answer.decision
            && let Some(series) = d.answered_from.first().and_then(|&site| table.answer_series_of(&d.name, site))
        {
            answer_counter(&table, series).increment(1);
        }
        debug!(
            name = %name, rtype = %rtype, client = %client, rcode = ?answer.rcode,
            answers = answer.answers.len(), scope = answer.scope, "query"
        );
        answer
    }
}

/// Hickory records for an answer. Owners equal to the question keep the question's spelling
/// (0x20 case randomisation survives); other owners are written in canonical lower case.
fn records(request: &Request, answer: &Answer) -> (Vec<Record>, Vec<Record>, Vec<Record>) {
    let question = request.queries.queries()[0].original().name();
    let qname = Name::from_ascii_lossy(&question.to_ascii());
    let convert_all = |recs: &[crate::routing::Rec]| -> Vec<Record> {
        recs.iter()
            .map(|r| {
                let owner = if r.owner == qname { question.clone() } else { convert::name(&r.owner) };
                convert::record(owner, r.ttl, &r.data)
            })
            .collect()
    };
    (convert_all(&answer.answers), convert_all(&answer.authority), convert_all(&answer.additional))
}
