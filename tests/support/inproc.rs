//! The real request handler driven in-process, without sockets: a handler built from
//! config/example.yaml, and a `ResponseHandler` that captures the encoded response the way the
//! UDP path encodes it (at most the client's EDNS size, else 512 bytes) or the TCP path does
//! (at most 65,535 bytes).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use geodns::app;
use geodns::dns::Handler;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::{NetError, xfer::Protocol};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;

/// The handler serving config/example.yaml (every site up).
pub fn example_handler() -> Handler {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let loaded = app::load(&path).expect("the example config loads");
    Handler::new(Arc::new(ArcSwap::from_pointee(loaded.build(&Default::default(), 1))))
}

/// Captures one encoded response.
#[derive(Clone)]
pub struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    protocol: Protocol,
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
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload()),
            _ => u16::MAX,
        };
        let mut buf = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let info = response.destructive_emit(&mut encoder).map_err(|e| NetError::from(e.to_string()))?;
        *self.out.lock().expect("not poisoned") = Some(buf);
        Ok(info)
    }
}

/// What the server does with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not answered: shorter than a header, or a response (QR=1).
    Dropped,
    /// hickory cannot decode it, but the header parses: FORMERR, header only (as hickory's
    /// server loop and src/dns/tcp.rs answer).
    FormErr(Vec<u8>),
    /// The handler's response.
    Answered(Vec<u8>),
}

/// Runs `bytes` as the server would: drop, FORMERR, or the real handler.
pub async fn answer(handler: &Handler, bytes: &[u8], src: SocketAddr, protocol: Protocol) -> Outcome {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return Outcome::Dropped;
    }
    match Request::from_bytes(bytes.to_vec(), src, protocol) {
        Err(_) => {
            let mut h = [0u8; 12];
            h[..2].copy_from_slice(&bytes[..2]);
            h[2] = 0x80 | (bytes[2] & 0x79);
            h[3] = 1;
            Outcome::FormErr(h.to_vec())
        }
        Ok(request) => {
            let capture = Capture { out: Arc::new(Mutex::new(None)), protocol };
            handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            let out = capture.out.lock().expect("not poisoned").take();
            Outcome::Answered(out.expect("the handler always sends a response"))
        }
    }
}
