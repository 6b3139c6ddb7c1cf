//! The full path: hickory decodes the message, a `RequestHandler` (in production our
//! [`Handler`](super::Handler)) answers it, hickory encodes the response. It takes what
//! [`answer`](super::answer) leaves: other opcodes and classes, several questions, names
//! outside the codec's alphabet, malformed Client Subnet options (FORMERR), EDNS versions
//! above 0 (BADVERS). A message hickory cannot decode whose header reads is answered FORMERR.
//!
//! It costs many times the fast path per query (an owned copy of the message, hickory's decoded
//! `Request` and records, an async handler), which is why the fast path takes all it can.

use std::net::SocketAddr;

use hickory_proto::op::MessageType;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use tracing::debug;

use super::Transport;
use crate::dns::codec::capture::Capture;
use crate::dns::codec::response::formerr;

/// The full path's response to one message from `src`; `None` when nothing is to be sent (a
/// response, a packet shorter than a header, a handler that sent nothing).
pub async fn respond<H: RequestHandler>(
    handler: &H,
    packet: &[u8],
    src: SocketAddr,
    transport: Transport,
) -> Option<Vec<u8>> {
    let protocol = match transport {
        Transport::Udp => Protocol::Udp,
        Transport::Tcp => Protocol::Tcp,
    };
    match Request::from_bytes(packet.to_vec(), src, protocol) {
        Ok(request) => {
            if request.metadata.message_type == MessageType::Response {
                return None;
            }
            let capture = Capture::new(protocol);
            handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            Some(capture.take()).filter(|bytes| !bytes.is_empty())
        }
        Err(error) => {
            debug!(client = %src, %error, transport = transport.label(), "undecodable query answered FORMERR");
            formerr(packet)
        }
    }
}
