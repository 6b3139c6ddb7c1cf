//! A small DNS client for the tests: hickory-proto messages over real UDP and TCP sockets.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A query for `name`/`rtype` with RD set and, optionally, EDNS with a UDP size and ECS.
pub fn query(name: &str, rtype: RecordType) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("test names are valid"), rtype));
    m
}

pub fn with_edns(mut m: Message, udp_size: u16) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(udp_size);
    m.set_edns(edns);
    m
}

/// Adds EDNS (if absent, UDP size 1232) with a Client Subnet option "ADDR/LEN".
pub fn with_ecs(m: Message, subnet: &str) -> Message {
    let (addr, len) = subnet.split_once('/').expect("subnet is ADDR/LEN");
    let cs = ClientSubnet::new(addr.parse().expect("address"), len.parse().expect("prefix"), 0);
    let mut m = if m.edns.is_none() { with_edns(m, 1232) } else { m };
    m.edns.as_mut().expect("EDNS was just set").options_mut().insert(EdnsOption::Subnet(cs));
    m
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0x1234);
    NEXT.fetch_add(7919, Ordering::Relaxed)
}

/// Sends over UDP and waits for the response with the same ID.
pub async fn udp(server: SocketAddr, m: &Message) -> Message {
    let bytes = m.to_vec().expect("query encodes");
    let reply = udp_raw(server, &bytes).await.expect("a UDP response within the timeout");
    let reply = Message::from_vec(&reply).expect("response decodes");
    assert_eq!(reply.metadata.id, m.metadata.id, "response echoes the ID");
    reply
}

/// Sends raw bytes over UDP; `None` when nothing comes back within a short wait.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_raw_wait(server, bytes, TIMEOUT).await
}

pub async fn udp_raw_wait(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().unwrap();
    let socket = UdpSocket::bind(bind).await.expect("bind client socket");
    socket.send_to(bytes, server).await.expect("send");
    let mut buf = vec![0u8; 65535];
    match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Sends over TCP (two-byte length prefix) and reads one response.
pub async fn tcp(server: SocketAddr, m: &Message) -> Message {
    let mut stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(server))
        .await
        .expect("connect within the timeout")
        .expect("connect");
    let bytes = m.to_vec().expect("query encodes");
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.expect("write");
    stream.write_all(&bytes).await.expect("write");
    let reply =
        tokio::time::timeout(TIMEOUT, read_framed(&mut stream)).await.expect("a TCP response within the timeout");
    let reply = Message::from_vec(&reply).expect("response decodes");
    assert_eq!(reply.metadata.id, m.metadata.id, "response echoes the ID");
    reply
}

pub async fn read_framed(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.expect("length prefix");
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await.expect("message");
    buf
}

/// Which transport a check runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

pub const BOTH: [Transport; 2] = [Transport::Udp, Transport::Tcp];

pub async fn ask(t: Transport, server: SocketAddr, m: &Message) -> Message {
    match t {
        Transport::Udp => udp(server, m).await,
        Transport::Tcp => tcp(server, m).await,
    }
}

/// The A/AAAA addresses in the answer section, in order.
pub fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers.iter().filter_map(|r| r.data.ip_addr()).collect()
}

/// The Client Subnet option of a response, if any.
pub fn ecs(m: &Message) -> Option<ClientSubnet> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(cs) => Some(*cs),
        _ => None,
    }
}

pub fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

pub fn is_soa(data: &RData) -> bool {
    matches!(data, RData::SOA(_))
}

/// A TCP connection to `server` from a chosen loopback source address (127.0.0.0/8 is all
/// loopback on Linux), connected within 5 s.
pub async fn connect_from(server: SocketAddr, src: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{src}:0").parse().unwrap()).expect("bind a loopback source");
    tokio::time::timeout(Duration::from_secs(5), socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect")
}
