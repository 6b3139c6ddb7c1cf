//! Packet bytes -> `Request::from_bytes` -> the real handler (config/example.yaml) -> the
//! encoded response, which must parse and echo the query's ID. Undecodable packets are what the
//! listeners answer FORMERR or drop; they are not the handler's to see.
#![no_main]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use geodns::dns::Handler;
use hickory_proto::op::Message;
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::{NetError, xfer::Protocol};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use libfuzzer_sys::fuzz_target;

#[derive(Clone)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

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
        let max = response.edns().map_or(512, |e| e.max_payload());
        let mut buf = Vec::new();
        let mut encoder = BinEncoder::new(&mut buf);
        encoder.set_max_size(max);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(|e| NetError::from(e.to_string()))?;
        *self.0.lock().unwrap() = Some(buf);
        Ok(info)
    }
}

struct Fixture {
    handler: Handler,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/example.yaml");
        let loaded = geodns::app::load(&path).expect("the example config loads");
        let table = loaded.build(&Default::default(), 1);
        Fixture {
            handler: Handler::new(Arc::new(ArcSwap::from_pointee(table))),
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
    let Ok(request) = Request::from_bytes(data.to_vec(), src, Protocol::Udp) else {
        return;
    };
    let capture = Capture(Arc::new(Mutex::new(None)));
    f.rt.block_on(
        f.handler
            .handle_request::<_, TokioTime>(&request, capture.clone()),
    );
    let response = capture
        .0
        .lock()
        .unwrap()
        .take()
        .expect("the handler always responds");
    let message = Message::from_vec(&response).expect("the response parses");
    assert_eq!(
        message.metadata.id,
        u16::from_be_bytes([data[0], data[1]]),
        "the response echoes the ID"
    );
});
