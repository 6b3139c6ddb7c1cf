//! TCP hardening: our own TCP loop (src/dns/transport/tcp.rs) started directly on 127.0.0.1:0
//! with the real handler, and the running app: idle connections do not block new clients,
//! pipelined queries are all answered in order, the global and per-client limits hold (making
//! room by closing the oldest waiting connection; more in tcp_lockout.rs), idle and
//! half-sent connections are closed on time, a connection ends after its query budget, and a
//! panicking connection does not take the listener down. Also the `server.tcp` / `server.rrl`
//! config keys.

mod common;
#[path = "support/inproc.rs"]
mod inproc;

use geodns::dns::tcp;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::dns::{connect_from, query, read_framed};
use common::wire::WireQuery;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use tcp::{TcpLimits, spawn_tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

fn limits() -> TcpLimits {
    TcpLimits {
        max_connections: 1024,
        max_connections_per_client: 32,
        idle_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(5),
        max_queries_per_connection: 1000,
    }
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn serve_with<H: RequestHandler>(handler: H, limits: TcpLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = spawn_tcp(listener, handler, limits, shutdown.clone());
    Server { addr, shutdown, task }
}

async fn serve(limits: TcpLimits) -> Server {
    serve_with(inproc::example_handler(), limits).await
}

fn framed(m: &Message) -> Vec<u8> {
    frame(&m.to_vec().unwrap())
}

/// `bytes` with TCP's two-byte length prefix.
fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Asks one question on an open stream and returns the answer.
async fn ask(stream: &mut TcpStream, name: &str) -> Message {
    let q = query(name, RecordType::A);
    stream.write_all(&framed(&q)).await.expect("write");
    let reply = tokio::time::timeout(Duration::from_secs(2), read_framed(stream)).await.expect("an answer in time");
    let reply = Message::from_vec(&reply).expect("the answer decodes");
    assert_eq!(reply.metadata.id, q.metadata.id);
    reply
}

/// True when the server closes the stream within `within` (EOF or reset), without sending data.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected data from the server"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn five_hundred_idle_connections_do_not_stop_a_new_client() {
    let s = serve(limits()).await;
    // 500 idle connections from 20 source addresses (25 each, under the per-client limit).
    let mut idle = Vec::new();
    for i in 0..500 {
        idle.push(connect_from(s.addr, &format!("127.0.1.{}", 1 + i % 20)).await);
    }
    let started = Instant::now();
    let mut fresh = connect_from(s.addr, "127.0.0.1").await;
    let reply = ask(&mut fresh, "app.geo.example.").await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?}", started.elapsed());
    // One of the idle ones is still served too.
    let reply = ask(&mut idle[250], "static.geo.example.").await;
    assert_eq!(reply.answers.len(), 1);
    s.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), s.task).await.expect("the listener stops on shutdown").unwrap();
}

#[tokio::test]
async fn the_running_app_answers_a_new_client_beside_500_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, &[("81.2.69.0/24", 51.5, -0.1, "GB")]);
    let running = common::server::start(&common::server::test_config(&db), dir.path()).await;
    let addr = common::server::v4(&running);
    let mut idle = Vec::new();
    for i in 0..500 {
        idle.push(connect_from(addr, &format!("127.0.2.{}", 1 + i % 20)).await);
    }
    let started = Instant::now();
    let reply = common::dns::tcp(addr, &query("app.geo.example.", RecordType::A)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(started.elapsed() < Duration::from_secs(1), "answered in {:?}", started.elapsed());
}

#[tokio::test]
async fn pipelined_queries_are_all_answered_in_order() {
    let s = serve(limits()).await;
    let mut stream = connect_from(s.addr, "127.0.0.1").await;
    let names = ["app.geo.example.", "static.geo.example.", "nope.geo.example.", "other.org.", "www.geo.example."];
    let queries: Vec<Message> = (0..50).map(|i| query(names[i % names.len()], RecordType::A)).collect();
    // All 50 in one write.
    let burst: Vec<u8> = queries.iter().flat_map(framed).collect();
    stream.write_all(&burst).await.unwrap();
    for (i, q) in queries.iter().enumerate() {
        let reply =
            tokio::time::timeout(Duration::from_secs(2), read_framed(&mut stream)).await.expect("an answer in time");
        let reply = Message::from_vec(&reply).expect("decodes");
        assert_eq!(reply.metadata.id, q.metadata.id, "answer {i} in order");
        assert_eq!(reply.queries[0].name(), q.queries[0].name());
    }
}

#[tokio::test]
async fn at_the_per_client_and_global_limits_the_oldest_waiting_connection_makes_room() {
    let s = serve(TcpLimits { max_connections: 6, max_connections_per_client: 4, ..limits() }).await;
    let mut first = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from(s.addr, "127.0.0.1").await;
        ask(&mut c, "static.geo.example.").await; // accepted and registered
        first.push(c);
    }
    // A fifth from the same address is served; the client's oldest idle one is closed for it.
    let mut fifth = connect_from(s.addr, "127.0.0.1").await;
    ask(&mut fifth, "static.geo.example.").await;
    assert!(closed_within(&mut first[0], Duration::from_secs(2)).await, "per-client limit: the oldest closed");
    let mut second = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(s.addr, "127.0.0.2").await;
        ask(&mut c, "static.geo.example.").await;
        second.push(c);
    }
    // Six open: a third address is served too, in the place of the oldest waiting connection
    // of any client (first[1], idle since its answer).
    let mut third = connect_from(s.addr, "127.0.0.3").await;
    ask(&mut third, "static.geo.example.").await;
    assert!(closed_within(&mut first[1], Duration::from_secs(2)).await, "global limit: the oldest closed");
    // The others were left alone.
    for c in first[2..].iter_mut().chain(second.iter_mut()).chain([&mut fifth]) {
        ask(c, "app.geo.example.").await;
    }
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let s = serve(TcpLimits { idle_timeout: Duration::from_millis(300), ..limits() }).await;
    let mut c = connect_from(s.addr, "127.0.0.1").await;
    ask(&mut c, "app.geo.example.").await;
    let started = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(2), "closed after {waited:?}");
}

#[tokio::test]
async fn a_half_sent_query_is_closed_after_the_read_timeout() {
    let s = serve(TcpLimits { read_timeout: Duration::from_millis(300), ..limits() }).await;
    let mut c = connect_from(s.addr, "127.0.0.1").await;
    let whole = framed(&query("app.geo.example.", RecordType::A));
    c.write_all(&whole[..whole.len() / 2]).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(2), "closed after {waited:?}");
    // One byte of the length prefix alone counts as a started query too.
    let mut c = connect_from(s.addr, "127.0.0.1").await;
    c.write_all(&[0]).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn a_connection_is_closed_after_its_query_budget() {
    let s = serve(TcpLimits { max_queries_per_connection: 3, ..limits() }).await;
    let mut c = connect_from(s.addr, "127.0.0.1").await;
    let burst: Vec<u8> = (0..5).flat_map(|_| framed(&query("app.geo.example.", RecordType::A))).collect();
    c.write_all(&burst).await.unwrap();
    for _ in 0..3 {
        let reply = tokio::time::timeout(Duration::from_secs(2), read_framed(&mut c)).await.expect("answered");
        Message::from_vec(&reply).expect("decodes");
    }
    assert!(closed_within(&mut c, Duration::from_secs(2)).await, "closed after 3 answers");
}

#[tokio::test]
async fn malformed_messages_get_formerr_or_close() {
    let s = serve(limits()).await;
    let mut c = connect_from(s.addr, "127.0.0.1").await;
    // A header that promises a question that is not there: FORMERR with the ID, connection kept.
    let header = WireQuery::header(0xbeef).flags(0x0100).questions(1).bytes();
    assert_eq!(header.len(), 12);
    c.write_all(&frame(&header)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(2), read_framed(&mut c)).await.expect("answered");
    assert_eq!(reply.len(), 12);
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.id, 0xbeef);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    ask(&mut c, "app.geo.example.").await;
    // A response (QR=1) is ignored; the next query is still answered.
    let mut response = query("app.geo.example.", RecordType::A).to_vec().unwrap();
    response[2] |= 0x80;
    c.write_all(&(response.len() as u16).to_be_bytes()).await.unwrap();
    c.write_all(&response).await.unwrap();
    ask(&mut c, "static.geo.example.").await;
    // Fewer than 12 bytes: closed.
    c.write_all(&frame(&header[..5])).await.unwrap();
    assert!(closed_within(&mut c, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_block_others() {
    let s = serve(TcpLimits { idle_timeout: Duration::from_millis(500), ..limits() }).await;
    let mut hog = connect_from(s.addr, "127.0.0.9").await;
    let burst: Vec<u8> = (0..1000).flat_map(|_| framed(&query("app.geo.example.", RecordType::TXT))).collect();
    // Written from another task: the hog never reads, so this may stall on a full window.
    let writer = tokio::spawn(async move {
        let _ = hog.write_all(&burst).await;
        hog
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut other = connect_from(s.addr, "127.0.0.1").await;
    let started = Instant::now();
    ask(&mut other, "app.geo.example.").await;
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(writer);
}

/// Panics on names starting with "panic"; answers the rest with the real handler.
struct Panicky(geodns::dns::Handler);

#[async_trait::async_trait]
impl RequestHandler for Panicky {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
        if request.queries.queries().first().is_some_and(|q| q.name().to_ascii().starts_with("panic")) {
            panic!("test handler panics on purpose");
        }
        self.0.handle_request::<R, T>(request, response).await
    }
}

#[tokio::test]
async fn a_panicking_connection_does_not_take_the_listener_down() {
    let s =
        serve_with(Panicky(inproc::example_handler()), TcpLimits { max_connections_per_client: 2, ..limits() }).await;
    for _ in 0..3 {
        let mut bad = connect_from(s.addr, "127.0.0.1").await;
        bad.write_all(&framed(&query("panic.geo.example.", RecordType::A))).await.unwrap();
        assert!(closed_within(&mut bad, Duration::from_secs(2)).await, "the panicking connection is closed");
    }
    // The panicked connections' slots were released (limit 2 per client) and others are served.
    let mut a = connect_from(s.addr, "127.0.0.1").await;
    let mut b = connect_from(s.addr, "127.0.0.1").await;
    ask(&mut a, "app.geo.example.").await;
    ask(&mut b, "app.geo.example.").await;
    assert!(!s.task.is_finished());
}

#[test]
fn tcp_and_rrl_keys_are_validated_with_their_paths() {
    let base = "sites: { a: { location: [0, 0] } }\nzones: { x.: { soa: { mname: ns.x., rname: h.x., serial: 1 }, ns: ns.x., records: { ns: { A: 127.0.0.1 } } } }\n";
    let c = geodns::config::parse(base, Path::new(".")).expect("valid");
    assert!(c.server.rrl.enabled);
    assert_eq!((c.server.rrl.responses_per_second, c.server.rrl.slip), (200, 2));
    assert_eq!((c.server.rrl.ipv4_prefix, c.server.rrl.ipv6_prefix), (24, 56));
    assert_eq!(c.server.rrl.window, Duration::from_secs(15));
    assert_eq!((c.server.tcp.max_connections, c.server.tcp.max_connections_per_client), (1024, 32));
    assert_eq!(c.server.tcp.idle_timeout, Duration::from_secs(10));
    assert_eq!(c.server.tcp_timeout, Duration::from_secs(10));

    let set = format!(
        "server:\n  tcp_timeout: 3s\n  rrl: {{ enabled: false, responses_per_second: 50, window: 5s, slip: 0, ipv4_prefix: 32, ipv6_prefix: 64 }}\n  tcp: {{ max_connections: 100, max_connections_per_client: 5, read_timeout: 2s, max_queries_per_connection: 10 }}\n{base}"
    );
    let c = geodns::config::parse(&set, Path::new(".")).expect("valid");
    assert!(!c.server.rrl.enabled);
    assert_eq!(c.server.rrl.responses_per_second, 50);
    assert_eq!(c.server.tcp.idle_timeout, Duration::from_secs(3), "tcp_timeout is the idle timeout");
    assert_eq!(tcp::TcpLimits::from(&c.server.tcp).max_queries_per_connection, 10);

    let bad = format!(
        "server:\n  tcp_timeout: 3s\n  rrl: {{ responses_per_second: 0, slip: 11, ipv4_prefix: 33, window: 0s }}\n  tcp: {{ idle_timeout: 4s, max_connections: 0, read_timeout: 0s }}\n{base}"
    );
    let problems: Vec<String> = match geodns::config::parse(&bad, Path::new(".")) {
        Err(e) => e.problems().iter().map(|p| p.to_string()).collect(),
        Ok(_) => panic!("invalid"),
    };
    for want in [
        "server.rrl.responses_per_second: 0 is out of range 1-100000",
        "server.rrl.slip: 11 is out of range 0-10",
        "server.rrl.ipv4_prefix: 33 is out of range 0-32",
        "server.rrl.window: must be between 1s and 1h",
        "server.tcp.max_connections: 0 is out of range 1-1000000",
        "server.tcp.read_timeout: must be more than 0",
        "server.tcp_timeout: set either tcp_timeout or tcp.idle_timeout, not both",
    ] {
        assert!(problems.iter().any(|p| p == want), "missing {want:?} in {problems:#?}");
    }
    let unknown = format!("server:\n  tcp: {{ max_conns: 1 }}\n{base}");
    assert!(geodns::config::parse(&unknown, Path::new(".")).is_err());
    let _ = IpAddr::from([127, 0, 0, 1]);
}
