//! The UDP loop under a burst: 200 distinct queries sent from one socket without waiting, so the
//! server reads them in batches (recvmmsg on Linux); every one is answered exactly once, with its
//! own ID and question. Over IPv4 and IPv6 loopback; fast-path and full-handler queries mixed.
//! A shorter burst has every fourth query padded (EDNS padding) to between 513 and 20,000 bytes:
//! long datagrams in a batch are read whole and answered like the rest.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::server::{start, test_config, v4, v6};
use common::wire::WireQuery;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use socket2::{Domain, Socket, Type};
use tokio::net::UdpSocket;

const BURST: u16 = 200;
const DEADLINE: Duration = Duration::from_secs(10);

/// Query `i` of the burst: ID 1000 + i, one of several names and types; every seventh is CHAOS
/// class (the full handler's path, answered in between the batch's fast-path answers).
fn burst_query(i: u16) -> Message {
    let (name, rtype) = match i % 5 {
        0 => (format!("nx{i}.geo.example."), RecordType::A),
        1 => ("static.geo.example.".to_owned(), RecordType::A),
        2 => ("v6.geo.example.".to_owned(), RecordType::AAAA),
        _ => ("app.geo.example.".to_owned(), RecordType::A),
    };
    let mut q = Query::query(Name::from_ascii(&name).unwrap(), rtype);
    if i.is_multiple_of(7) {
        q.set_query_class(DNSClass::CH);
    }
    let mut m = Message::new(1000 + i, MessageType::Query, OpCode::Query);
    m.add_query(q);
    m
}

/// A client socket with a receive buffer large enough to hold the whole burst's answers.
fn client(server: SocketAddr) -> UdpSocket {
    let bind: SocketAddr = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().unwrap();
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, None).unwrap();
    socket.set_recv_buffer_size(4 << 20).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket.bind(&bind.into()).unwrap();
    UdpSocket::from_std(socket.into()).unwrap()
}

/// Query `i`'s bytes; `padded`, every fourth gets an OPT record whose padding option (RFC
/// 7830) makes the datagram 513, 1,400, 4,000 or 20,000 bytes long.
fn burst_bytes(i: u16, query: &Message, padded: bool) -> Vec<u8> {
    let bytes = query.to_vec().unwrap();
    if !padded || !i.is_multiple_of(4) {
        return bytes;
    }
    let want = [513, 1400, 4000, 20_000][usize::from(i / 4) % 4];
    assert_eq!(&bytes[10..12], &[0, 0], "no additional records yet");
    let q = &query.queries[0];
    let long = WireQuery::new(query.metadata.id, &q.name().to_ascii(), u16::from(q.query_type()))
        .class(u16::from(q.query_class()))
        .padded_to(want)
        .bytes();
    // The same query, with the OPT record (payload 1232) that pads it.
    assert_eq!((&long[..10], &long[12..bytes.len()]), (&bytes[..10], &bytes[12..]));
    assert_eq!((long.len(), &long[10..12]), (want, &[0, 1][..]));
    long
}

/// Sends queries 0..`count` without waiting, then checks that each is answered once.
async fn burst(server: SocketAddr) {
    burst_of(server, BURST, false).await;
}

async fn burst_of(server: SocketAddr, count: u16, padded: bool) {
    let socket = client(server);
    let queries: HashMap<u16, Message> = (0..count).map(|i| (1000 + i, burst_query(i))).collect();
    let mut long = 0;
    for i in 0..count {
        let bytes = burst_bytes(i, &queries[&(1000 + i)], padded);
        long += usize::from(bytes.len() > 512);
        socket.send_to(&bytes, server).await.unwrap();
    }
    assert_eq!(long, if padded { usize::from(count.div_ceil(4)) } else { 0 });
    let mut answered: HashMap<u16, usize> = HashMap::new();
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while answered.len() < usize::from(count) {
        let (n, from) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{server}: only {} of {count} queries answered in time", answered.len()))
            .unwrap();
        assert_eq!(from, server);
        let reply = Message::from_vec(&buf[..n]).expect("the answer decodes");
        let id = reply.metadata.id;
        let query = queries.get(&id).unwrap_or_else(|| panic!("{server}: answer with unknown ID {id}"));
        assert_eq!(reply.metadata.message_type, MessageType::Response);
        assert_eq!(reply.queries, query.queries, "{server}: ID {id} answers its own question");
        let name = query.queries[0].name().to_ascii();
        let want = if query.queries[0].query_class() == DNSClass::CH {
            None
        } else if name.starts_with("nx") {
            Some(ResponseCode::NXDomain)
        } else {
            Some(ResponseCode::NoError)
        };
        if let Some(want) = want {
            assert_eq!(reply.metadata.response_code, want, "{server}: {name}");
            assert_eq!(reply.answers.is_empty(), want == ResponseCode::NXDomain, "{server}: {name}");
        }
        *answered.entry(id).or_default() += 1;
    }
    // Nothing more arrives: no query was answered twice.
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await {
        let (n, _) = r.unwrap();
        let id = Message::from_vec(&buf[..n]).map(|m| m.metadata.id);
        panic!("{server}: an extra datagram after all {count} answers (ID {id:?})");
    }
    assert!(answered.values().all(|&n| n == 1));
}

async fn server() -> (tempfile::TempDir, geodns::app::Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, &[("81.2.69.0/24", 51.5, -0.1, "GB")]);
    let running = start(&test_config(&db), dir.path()).await;
    (dir, running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_ipv4_is_answered_once_per_query() {
    let (_dir, s) = server().await;
    burst(v4(&s)).await;
    // And again: the loop is still serving after a burst.
    burst(v4(&s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_ipv6_is_answered_once_per_query() {
    let (_dir, s) = server().await;
    burst(v6(&s)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_padded_queries_in_a_burst_are_read_whole() {
    let (_dir, s) = server().await;
    burst_of(v4(&s), 40, true).await;
    burst_of(v6(&s), 40, true).await;
}

/// Names in the large table: more than `routing::MANY_NAMES`, so the UDP loop looks each
/// batch's names up ahead before answering (src/dns/transport/warm.rs).
const MANY: u16 = 1500;

/// Geo name `i` of the large table: its own address at London and at Singapore.
fn many_addr(site: u8, i: u16) -> String {
    format!("10.{site}.{}.{}", i / 256, i % 256)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_against_a_table_of_many_names_gets_each_name_its_own_nearest_answer() {
    assert!(usize::from(MANY) > geodns::routing::MANY_NAMES);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("city.mmdb");
    common::mmdb::write_city_db(&db, &[("81.2.69.0/24", 51.5, -0.1, "GB"), ("103.6.148.0/22", 1.3, 103.8, "SG")]);
    let mut text = test_config(&db);
    for i in 0..MANY {
        text.push_str(&format!(
            "      n{i}: {{ sites: {{ london: [{}], singapore: [{}] }} }}\n",
            many_addr(1, i),
            many_addr(2, i)
        ));
    }
    let s = start(&text, dir.path()).await;
    let server = v4(&s);
    let socket = client(server);
    // Every query asks for a different name, half from London and half from Singapore.
    let query = |i: u16| {
        let subnet = if i.is_multiple_of(2) { "81.2.69.0/24" } else { "103.6.148.0/24" };
        let mut m = common::dns::with_ecs(
            common::dns::query(&format!("n{}.geo.example.", (i * 7) % MANY), RecordType::A),
            subnet,
        );
        m.metadata.id = i;
        m
    };
    // Sent in waves of 100 without waiting (so the server reads them in batches), each wave
    // after the last one's answers (so none overflows the server's receive buffer).
    let mut answered = vec![false; usize::from(MANY)];
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut sent = 0;
    while answered.iter().any(|a| !a) {
        if answered[..sent].iter().all(|a| *a) && sent < usize::from(MANY) {
            for i in sent..(sent + 100).min(usize::from(MANY)) {
                socket.send_to(&query(i as u16).to_vec().unwrap(), server).await.unwrap();
            }
            sent = (sent + 100).min(usize::from(MANY));
        }
        let (n, _) = tokio::time::timeout_at(deadline, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{} of {MANY} answered in time", answered.iter().filter(|a| **a).count()))
            .unwrap();
        let reply = Message::from_vec(&buf[..n]).expect("the answer decodes");
        let i = reply.metadata.id;
        assert!(i < MANY && !answered[usize::from(i)], "ID {i} answered once");
        answered[usize::from(i)] = true;
        let name = (i * 7) % MANY;
        let site = if i.is_multiple_of(2) { 1 } else { 2 };
        let got: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        assert_eq!(
            got,
            [many_addr(site, name)],
            "ID {i}: n{name} from {}",
            ["", "London", "Singapore"][usize::from(site)]
        );
    }
}
