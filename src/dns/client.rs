//! A small DNS client for `geodns check --server`: one query, with an optional Client Subnet,
//! over UDP (retried over TCP when truncated). Answers come back in geodns's own types.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{self, RecordType};
use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::dnssec::verify::Record;
use crate::model::{Mx, Name, RData, RType, Soa, Srv};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not a valid query name")]
    Name(String),
    #[error("no answer from {server} within {timeout:?}")]
    Timeout { server: SocketAddr, timeout: Duration },
    #[error("talking to {server}: {source}")]
    Io { server: SocketAddr, source: std::io::Error },
    #[error("the answer from {server} does not parse: {message}")]
    Decode { server: SocketAddr, message: String },
}

/// A record of a live answer, in geodns's terms where the type is one geodns serves.
#[derive(Debug, Clone)]
pub struct LiveRecord {
    pub owner: Name,
    pub ttl: u32,
    pub rtype: RType,
    /// Our record data when we understand the type; the presentation text otherwise.
    pub data: Option<RData>,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct LiveAnswer {
    /// The response code's mnemonic ("NOERROR", "NXDOMAIN", ...).
    pub rcode: String,
    pub authoritative: bool,
    pub truncated_over_udp: bool,
    pub answers: Vec<LiveRecord>,
    /// The ECS scope prefix of the reply, when it carried a Client Subnet option.
    pub scope: Option<u8>,
}

/// Sends one query (RD clear, EDNS with a 1232-octet UDP size, ECS when `subnet` is given).
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RType,
    subnet: Option<IpNet>,
    timeout: Duration,
) -> Result<LiveAnswer, ClientError> {
    let (reply, truncated) = exchange(server, name, rtype.code(), subnet, false, timeout).await?;
    let scope = reply.edns.as_ref().and_then(|e| match e.option(EdnsCode::Subnet) {
        Some(EdnsOption::Subnet(cs)) => Some(cs.scope_prefix()),
        _ => None,
    });
    Ok(LiveAnswer {
        rcode: rcode_name(reply.metadata.response_code),
        authoritative: reply.metadata.authoritative,
        truncated_over_udp: truncated,
        answers: reply.answers.iter().map(live_record).collect(),
        scope,
    })
}

/// A reply to a DNSSEC query, each section's records in canonical form (owner lower case,
/// RDATA with every name uncompressed) for validation; the OPT record left out.
#[derive(Debug, Clone)]
pub struct SignedReply {
    pub rcode: String,
    pub truncated_over_udp: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

/// Sends one query with the DO bit set (RD clear, EDNS with a 1232-octet UDP size, ECS when
/// `subnet` is given; retried over TCP when truncated), for `geodns check --server --dnssec`.
pub async fn query_dnssec(
    server: SocketAddr,
    name: &str,
    rtype: u16,
    subnet: Option<IpNet>,
    timeout: Duration,
) -> Result<SignedReply, ClientError> {
    let (reply, truncated) = exchange(server, name, rtype, subnet, true, timeout).await?;
    let section = |records: &[rr::Record]| {
        records.iter().filter(|r| r.record_type() != RecordType::OPT).map(canonical_record).collect()
    };
    Ok(SignedReply {
        rcode: rcode_name(reply.metadata.response_code),
        truncated_over_udp: truncated,
        answers: section(&reply.answers),
        authority: section(&reply.authorities),
        additional: section(&reply.additionals),
    })
}

/// One query and its reply (over TCP when the UDP reply was truncated: the `bool`).
async fn exchange(
    server: SocketAddr,
    name: &str,
    rtype: u16,
    subnet: Option<IpNet>,
    dnssec_ok: bool,
    timeout: Duration,
) -> Result<(Message, bool), ClientError> {
    let qname = rr::Name::from_ascii(name).map_err(|_| ClientError::Name(name.to_owned()))?;
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(qname, RecordType::from(rtype)));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(dnssec_ok);
    if let Some(net) = subnet {
        edns.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(net.network(), net.prefix_len(), 0)));
    }
    m.set_edns(edns);
    let bytes = m.to_vec().map_err(|e| ClientError::Decode { server, message: e.to_string() })?;
    let io = |source| ClientError::Io { server, source };
    let exchange = async {
        let reply = udp(server, &bytes).await.map_err(io)?;
        let reply = decode(server, &reply)?;
        if reply.metadata.truncation {
            let full = tcp(server, &bytes).await.map_err(io)?;
            return Ok((decode(server, &full)?, true));
        }
        Ok((reply, false))
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout { server, timeout })?
}

/// A record in DNSSEC canonical form (RFC 4034, section 6.2). Types hickory does not know
/// (DNSKEY, RRSIG, NSEC, DS, CDS, CDNSKEY without its dnssec features) keep their RDATA as
/// received: their names are never compressed. Types of geodns's record model are written by
/// the model's own encoder; any other type by hickory's, in canonical form.
fn canonical_record(r: &rr::Record) -> Record {
    let live = live_record(r);
    let rdata = match (&r.data, &live.data) {
        (rr::RData::Unknown { rdata, .. }, _) => rdata.anything.clone(),
        (rr::RData::TXT(_) | rr::RData::CAA(_), _) | (_, None) => {
            let mut out = Vec::new();
            let mut encoder = BinEncoder::new(&mut out);
            encoder.set_canonical_form(true);
            // A record hickory decoded encodes again (a failure leaves the RDATA empty, which
            // then fails verification, as it should).
            let _ = r.data.emit(&mut encoder);
            out
        }
        (_, Some(data)) => {
            let mut out = Vec::new();
            data.write(&mut out, crate::model::write_name);
            out
        }
    };
    Record { owner: live.owner, rtype: u16::from(r.record_type()), ttl: r.ttl, rdata }
}

fn rand_id() -> u16 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    (nanos ^ (nanos >> 16)) as u16
}

fn decode(server: SocketAddr, bytes: &[u8]) -> Result<Message, ClientError> {
    Message::from_vec(bytes).map_err(|e| ClientError::Decode { server, message: e.to_string() })
}

pub fn rcode_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

fn live_record(r: &rr::Record) -> LiveRecord {
    let owner = Name::from_ascii_lossy(&r.name.to_ascii());
    let data = match &r.data {
        rr::RData::A(a) => Some(RData::A(a.0)),
        rr::RData::AAAA(a) => Some(RData::Aaaa(a.0)),
        rr::RData::CNAME(c) => Some(RData::Cname(Name::from_ascii_lossy(&c.0.to_ascii()))),
        rr::RData::NS(n) => Some(RData::Ns(Name::from_ascii_lossy(&n.0.to_ascii()))),
        rr::RData::MX(m) => {
            Some(RData::Mx(Mx { preference: m.preference, exchange: Name::from_ascii_lossy(&m.exchange.to_ascii()) }))
        }
        rr::RData::SOA(s) => Some(RData::Soa(Box::new(Soa {
            mname: Name::from_ascii_lossy(&s.mname.to_ascii()),
            rname: Name::from_ascii_lossy(&s.rname.to_ascii()),
            serial: s.serial,
            refresh: s.refresh as u32,
            retry: s.retry as u32,
            expire: s.expire as u32,
            minimum: s.minimum,
        }))),
        rr::RData::SRV(s) => Some(RData::Srv(Srv {
            priority: s.priority,
            weight: s.weight,
            port: s.port,
            target: Name::from_ascii_lossy(&s.target.to_ascii()),
        })),
        _ => None,
    };
    LiveRecord {
        owner,
        ttl: r.ttl,
        rtype: RType::from_code(u16::from(r.record_type())),
        text: r.data.to_string(),
        data,
    }
}

async fn udp(server: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = match server.ip() {
        IpAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // Ignore anything that is not the answer to this query.
        if n >= 2 && buf[..2] == bytes[..2] {
            return Ok(buf[..n].to_vec());
        }
    }
}

async fn tcp(server: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await?;
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut buf).await?;
    Ok(buf)
}
