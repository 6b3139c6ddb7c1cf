//! The real request handler driven in-process, without sockets: a handler built from
//! config/example.yaml, and a `ResponseHandler` that captures the encoded response the way the
//! UDP path encodes it (at most the client's EDNS size, else 512 bytes) or the TCP path does
//! (at most 65,535 bytes).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use geodns::app;
use geodns::dns::{Capture, Handler};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};

/// The handler serving config/example.yaml (every site up).
pub fn example_handler() -> Handler {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let loaded = app::load(&path).expect("the example config loads");
    Handler::new(Arc::new(ArcSwap::new(loaded.build(geodns::routing::Inputs::default(), 1).into_table())))
}

/// What the server does with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not answered: shorter than a header, or a response (QR=1).
    Dropped,
    /// hickory cannot decode it, but the header parses: FORMERR, header only (as hickory's
    /// server loop and src/dns/answer/full.rs answer).
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
            let capture = Capture::new(protocol);
            handler.handle_request::<_, TokioTime>(&request, capture.clone()).await;
            let out = capture.take();
            assert!(!out.is_empty(), "the handler always sends a response");
            Outcome::Answered(out)
        }
    }
}
