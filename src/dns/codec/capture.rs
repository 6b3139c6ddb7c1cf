//! One way to turn a hickory response into bytes: [`Capture`] encodes it (truncated to what the
//! transport allows) into a buffer its caller takes and sends. Used by the UDP and TCP loops,
//! the benchmarks, the fuzz targets and the in-process tests.

use std::sync::{Arc, Mutex};

use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::{NetError, xfer::Protocol};
use hickory_server::server::{ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

/// A response handler that keeps the encoded response.
#[derive(Clone)]
pub struct Capture {
    /// Written once by `send_response`; taken by the caller after the handler returns.
    out: Arc<Mutex<Vec<u8>>>,
    protocol: Protocol,
}

impl Capture {
    pub fn new(protocol: Protocol) -> Self {
        Capture { out: Arc::new(Mutex::new(Vec::new())), protocol }
    }

    /// The encoded response (empty when the handler sent none).
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.out.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // UDP: the client's EDNS size (at least 512), or 512 without EDNS; TCP: everything.
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload().max(512)),
            _ => u16::MAX,
        };
        let request_meta = *response.metadata();
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(error) => {
                // As hickory does: an answer that cannot be encoded becomes a bare SERVFAIL.
                tracing::warn!(%error, "cannot encode a response; sending SERVFAIL");
                let mut metadata = Metadata::response_from_request(&request_meta);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header { metadata, counts: HeaderCounts::default() };
                buf.clear();
                hickory_proto::serialize::binary::BinEncodable::emit(&header, &mut BinEncoder::new(&mut buf))
                    .map_err(|e| NetError::from(e.to_string()))?;
                ResponseInfo::from(header)
            }
        };
        *self.out.lock().unwrap_or_else(|e| e.into_inner()) = buf;
        Ok(info)
    }
}
