//! Packet bytes -> what the server does with them (config/example.yaml): `dns::answer` first,
//! as every listener does; when it leaves the packet to the full path, `Request::from_bytes` ->
//! the real handler. Every response must parse and echo the query's ID. Undecodable packets are
//! what the listeners answer FORMERR or drop; they are not the handler's to see.
#![no_main]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use geodns::dns::{self, Capture, Handler, NameBuf, Outcome, Transport};
use hickory_proto::op::Message;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler};
use libfuzzer_sys::fuzz_target;


struct Fixture {
    handler: Handler,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/example.yaml");
        let loaded = geodns::app::load(&path).expect("the example config loads");
        let table = loaded.build(geodns::routing::Inputs::default(), 1);
        Fixture {
            handler: Handler::new(Arc::new(ArcSwap::new(table.into_table()))),
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The listeners drop these before the handler: shorter than a header, or a response.
    if data.len() < 12 || data[2] & 0x80 != 0 {
        return;
    }
    let f = fixture();
    let src: SocketAddr = "192.0.2.99:5300".parse().unwrap();
    let mut name = NameBuf::new();
    let mut fast = Vec::new();
    let table = f.handler.table();
    match dns::answer(&table, &dns::parse(data, &mut name), src.ip(), Transport::Udp, &mut fast) {
        Outcome::Answered(_) => {
            let message = Message::from_vec(&fast).expect("the fast path's response parses");
            assert_eq!(message.metadata.id, u16::from_be_bytes([data[0], data[1]]), "the fast path echoes the ID");
            assert!(fast.len() <= 1232, "the fast path's UDP response fits");
            return;
        }
        Outcome::Drop => unreachable!("a query with a header is never dropped"),
        Outcome::Full => {}
    }
    drop(table);
    let Ok(request) = Request::from_bytes(data.to_vec(), src, Protocol::Udp) else {
        return;
    };
    let capture = Capture::new(Protocol::Udp);
    f.rt.block_on(
        f.handler
            .handle_request::<_, TokioTime>(&request, capture.clone()),
    );
    let response = capture.take();
    assert!(!response.is_empty(), "the handler always responds");
    let message = Message::from_vec(&response).expect("the response parses");
    assert_eq!(
        message.metadata.id,
        u16::from_be_bytes([data[0], data[1]]),
        "the response echoes the ID"
    );
});
