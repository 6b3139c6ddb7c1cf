//! A hostile client sharing an address cannot lock out TCP: when the per-client or the global
//! connection limit is reached, the oldest connection that is idle or stalled mid-message is
//! closed to make room for the new one. Real TCP sockets on loopback, from chosen 127.0.0.x
//! source addresses: against the running app with its default `server.tcp` limits (32 per
//! client, 1024 in all), and against the TCP loop started directly with the same limits.

mod common;
#[path = "support/inproc.rs"]
mod inproc;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::dns::{connect_from, query, read_framed};
use geodns::dns::tcp::{TcpLimits, spawn_tcp};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The bound: a new query is answered within this while the connections are held
/// (timed once the server has taken all of them in: see [`until_all_accepted`]).
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// For the tests about which connection goes, not how fast: a bound that only a hang exceeds.
const EVENTUALLY: Duration = Duration::from_secs(10);
/// The defaults of `server.tcp`.
const PER_CLIENT: usize = 32;
const HELD: usize = 200;

/// The defaults, but timeouts long enough that no held connection times out during a test.
fn limits() -> TcpLimits {
    TcpLimits {
        max_connections: 1024,
        max_connections_per_client: PER_CLIENT,
        idle_timeout: Duration::from_secs(60),
        read_timeout: Duration::from_secs(60),
        max_queries_per_connection: 1000,
    }
}

struct Loop {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Loop {
    async fn start(limits: TcpLimits) -> Loop {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = spawn_tcp(listener, inproc::example_handler(), limits, shutdown.clone());
        Loop { addr, shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("the listener stops").unwrap();
    }
}

/// A query with TCP's two-byte length prefix.
fn framed(m: &Message) -> Vec<u8> {
    let bytes = m.to_vec().unwrap();
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&bytes);
    out
}

/// Writes `bytes` (a framed query, or the rest of one) and reads one answer, within `within`;
/// `None` when none came in time or the connection was closed.
async fn answer(stream: &mut TcpStream, bytes: &[u8], within: Duration) -> Option<Message> {
    tokio::time::timeout(within, async {
        stream.write_all(bytes).await.ok()?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.ok()?;
        Message::from_vec(&buf).ok()
    })
    .await
    .ok()
    .flatten()
}

/// Connects from `src` and asks one question, all within `within`; the time it took and the
/// connection, still open. Panics when there is no answer in time.
async fn new_query(server: SocketAddr, src: &str, within: Duration) -> (Duration, TcpStream) {
    let started = Instant::now();
    let q = query("app.geo.example.", RecordType::A);
    let (reply, stream) = tokio::time::timeout(within, async {
        let mut stream = connect_from(server, src).await;
        stream.write_all(&framed(&q)).await.expect("write");
        (read_framed(&mut stream).await, stream)
    })
    .await
    .unwrap_or_else(|_| panic!("no answer within {within:?} for a new connection from {src}"));
    let reply = Message::from_vec(&reply).expect("the answer decodes");
    assert_eq!(reply.metadata.id, q.metadata.id);
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.answers.len(), 1);
    (started.elapsed(), stream)
}

/// True when the server has closed `stream` (EOF, or a reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("unexpected data from the server"),
        Err(_) => false,
    }
}

/// Opens [`HELD`] connections from `src`; with `stall`, each sends one byte of a length prefix
/// and nothing more.
async fn hold(server: SocketAddr, src: &str, stall: bool) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let mut c = connect_from(server, src).await;
        if stall {
            c.write_all(&[0]).await.expect("write one byte");
        }
        held.push(c);
    }
    held
}

/// Waits until the server has accepted all of `held` (one client's [`HELD`] connections): a
/// connect completes in the kernel before the server accepts it, so the new query would
/// otherwise queue behind the backlog. Accepting the last one closed the
/// `HELD - PER_CLIENT`-th oldest (indexes from 0), the last to make room.
async fn until_all_accepted(held: &mut [TcpStream]) {
    let last_closed = HELD - PER_CLIENT - 1;
    assert!(closed_within(&mut held[last_closed], Duration::from_secs(30)).await, "the server took in the {HELD}");
}

async fn running_app() -> (geodns::app::Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, &[("81.2.69.0/24", 51.5, -0.1, "GB")]);
    let text = common::server::test_config(&db);
    assert!(!text.contains("tcp:"), "the test config keeps the default TCP limits");
    (common::server::start(&text, dir.path()).await, dir)
}

#[tokio::test]
async fn the_running_app_answers_a_new_query_beside_200_idle_connections_from_the_same_address() {
    let (app, _dir) = running_app().await;
    let addr = common::server::v4(&app);
    let mut held = hold(addr, "127.0.3.1", false).await;
    until_all_accepted(&mut held).await;
    let (took, _new) = new_query(addr, "127.0.3.1", ANSWER_WITHIN).await;
    eprintln!("answered in {took:?} beside {HELD} idle connections from the same address");
    // The oldest idle connection was closed to make room (EOF, not a timeout).
    assert!(closed_within(&mut held[0], Duration::from_secs(5)).await, "the oldest was closed");
    app.stop().await;
}

#[tokio::test]
async fn the_running_app_answers_a_new_query_beside_200_stalled_connections_from_the_same_address() {
    let (app, _dir) = running_app().await;
    let addr = common::server::v4(&app);
    let mut held = hold(addr, "127.0.3.2", true).await;
    until_all_accepted(&mut held).await;
    let (took, _new) = new_query(addr, "127.0.3.2", ANSWER_WITHIN).await;
    eprintln!("answered in {took:?} beside {HELD} connections stalled after one byte of the length prefix");
    app.stop().await;
}

/// Which of the held connections the server closed, and which still answer: the evicted ones
/// read EOF (promptly, long before any timeout), the others answer a query.
async fn closed_and_answering(held: &mut [TcpStream], rest: impl Fn() -> Vec<u8>) -> (Vec<usize>, Vec<usize>) {
    let (mut closed, mut answering) = (Vec::new(), Vec::new());
    for (i, c) in held.iter_mut().enumerate() {
        match answer(c, &rest(), Duration::from_secs(5)).await {
            Some(reply) => {
                assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                answering.push(i);
            }
            None => {
                assert!(closed_within(c, Duration::from_secs(5)).await, "connection {i}: neither answered nor closed");
                closed.push(i);
            }
        }
    }
    (closed, answering)
}

#[tokio::test]
async fn the_oldest_idle_connections_are_the_ones_closed_and_the_rest_still_answer() {
    let s = Loop::start(limits()).await;
    let mut held = hold(s.addr, "127.0.4.1", false).await;
    let _new = new_query(s.addr, "127.0.4.1", EVENTUALLY).await;
    // 200 held + 1 new, 32 per client: the 169 oldest were closed, in accept order.
    let q = framed(&query("static.geo.example.", RecordType::A));
    let (closed, answering) = closed_and_answering(&mut held, || q.clone()).await;
    assert_eq!(closed, (0..HELD - PER_CLIENT + 1).collect::<Vec<_>>());
    assert_eq!(answering, (HELD - PER_CLIENT + 1..HELD).collect::<Vec<_>>());
    s.stop().await;
}

#[tokio::test]
async fn stalled_connections_are_closed_to_make_room_and_the_rest_can_finish_their_query() {
    let s = Loop::start(limits()).await;
    let mut held = hold(s.addr, "127.0.4.2", true).await;
    let _new = new_query(s.addr, "127.0.4.2", EVENTUALLY).await;
    // Each survivor sends the rest of its query (the length's second byte and the message).
    let q = framed(&query("static.geo.example.", RecordType::A));
    let (closed, answering) = closed_and_answering(&mut held, || q[1..].to_vec()).await;
    assert_eq!(closed.len(), HELD - PER_CLIENT + 1, "closed: {closed:?}");
    assert_eq!(answering.len(), PER_CLIENT - 1, "answering: {answering:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_working_connection_outlives_200_idle_ones_from_its_own_address() {
    let s = Loop::start(limits()).await;
    let mut working = connect_from(s.addr, "127.0.4.3").await;
    let mut held = Vec::new();
    for i in 0..HELD {
        held.push(connect_from(s.addr, "127.0.4.3").await);
        if i % 10 == 0 {
            let q = framed(&query("app.geo.example.", RecordType::A));
            assert!(answer(&mut working, &q, Duration::from_secs(5)).await.is_some(), "working, after {i} idle");
        }
    }
    let q = framed(&query("static.geo.example.", RecordType::A));
    assert!(answer(&mut working, &q, Duration::from_secs(5)).await.is_some(), "still working");
    // The idle ones were closed instead, oldest first.
    assert!(closed_within(&mut held[0], Duration::from_secs(5)).await);
    s.stop().await;
}

#[tokio::test]
async fn at_the_global_limit_the_oldest_waiting_connection_of_any_address_is_closed() {
    let s = Loop::start(TcpLimits { max_connections: 100, ..limits() }).await;
    // 100 idle connections from 10 addresses, 10 each: the global limit, under the per-client one.
    let mut held = Vec::new();
    for i in 0..100 {
        held.push(connect_from(s.addr, &format!("127.0.5.{}", 1 + i % 10)).await);
    }
    // New clients from addresses of their own are answered (and stay connected); each takes
    // the place of the oldest waiting connection, whoever holds it.
    let mut new = Vec::new();
    for k in 0..5 {
        new.push(new_query(s.addr, &format!("127.0.6.{}", 1 + k), EVENTUALLY).await.1);
    }
    let q = framed(&query("static.geo.example.", RecordType::A));
    let (closed, answering) = closed_and_answering(&mut held, || q.clone()).await;
    assert_eq!(closed, [0, 1, 2, 3, 4]);
    assert_eq!(answering.len(), 95);
    s.stop().await;
}
