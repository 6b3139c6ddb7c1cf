//! The journal of a zone's dynamic records: a file of records, each a whole snapshot of the
//! zone's dynamic records after one applied update, appended and fsynced before the update is
//! acknowledged. On start-up the last complete record is the state.
//!
//! A record: `GDJ1`, the payload's length (u32, big-endian), the first 8 bytes of the payload's
//! SHA-256, the payload (JSON). A record cut short or whose checksum does not match (a crash
//! mid-write) ends the journal: it and anything after it are discarded (and cut off the file,
//! so later records follow a good one). The state is then the previous record's: an update is
//! either wholly there or not at all. When the file passes [`COMPACT_BYTES`], it is replaced
//! (write, fsync, rename, fsync of the directory) by one record of the current state.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Caa, DynamicNode, DynamicZone, Mx, Name, RData, Srv};

const MAGIC: &[u8; 4] = b"GDJ1";
const HEADER: usize = 4 + 4 + 8;
/// A journal larger than this is compacted to one record at the next append.
pub const COMPACT_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("journal {path:?}: {source}")]
pub struct JournalError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// An open journal, appended to by its zone's single writer (the app's update task).
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
}

/// What opening a journal found.
pub struct Opened {
    pub journal: Journal,
    /// The state of the last complete record; `None` for a new or empty journal.
    pub state: Option<DynamicZone>,
    /// Bytes of a torn or corrupt tail that were discarded.
    pub discarded: u64,
}

impl Journal {
    /// Opens (creating) the journal at `path`, reads its last complete record and cuts off a
    /// torn tail.
    pub fn open(path: &Path) -> Result<Opened, JournalError> {
        let err = |source| JournalError { path: path.to_owned(), source };
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(err)?;
        let (state, good) = last_record(&bytes);
        let discarded = (bytes.len() - good) as u64;
        if discarded > 0 {
            file.set_len(good as u64).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        Ok(Opened { journal: Journal { path: path.to_owned(), file, len: good as u64 }, state, discarded })
    }

    /// Appends a snapshot and fsyncs it: once this returns, the state survives a crash.
    pub fn append(&mut self, state: &DynamicZone) -> Result<(), JournalError> {
        let record = encode(state);
        if self.len + record.len() as u64 > COMPACT_BYTES {
            return self.compact(&record);
        }
        let err = |source| JournalError { path: self.path.clone(), source };
        self.file.write_all(&record).map_err(err)?;
        self.file.sync_data().map_err(err)?;
        self.len += record.len() as u64;
        Ok(())
    }

    fn compact(&mut self, record: &[u8]) -> Result<(), JournalError> {
        let err = |source| JournalError { path: self.path.clone(), source };
        let tmp = self.path.with_extension("compacting");
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(record).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)?;
        if let Some(dir) = self.path.parent() {
            let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(err)?;
        self.len = record.len() as u64;
        Ok(())
    }
}

/// The state a journal holds, read without changing it (`geodns check`): `None` when the
/// file does not exist yet or holds no complete record.
pub fn read(path: &Path) -> Result<Option<DynamicZone>, JournalError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(last_record(&bytes).0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JournalError { path: path.to_owned(), source }),
    }
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest = ring::digest::digest(&ring::digest::SHA256, payload);
    digest.as_ref()[..8].try_into().expect("SHA-256 is 32 bytes")
}

/// One record's bytes.
pub fn encode(state: &DynamicZone) -> Vec<u8> {
    let payload = serde_json::to_vec(&Snapshot::from(state)).expect("a snapshot always serialises");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    out
}

/// A zone's dynamic records as the JSON a journal record holds (also the text other stores keep,
/// such as a ConfigMap's).
pub fn to_json(state: &DynamicZone) -> String {
    serde_json::to_string(&Snapshot::from(state)).expect("a snapshot always serialises")
}

/// The records [`to_json`] wrote; `None` when the text is not such a document.
pub fn from_json(text: &str) -> Option<DynamicZone> {
    serde_json::from_str::<Snapshot>(text).ok()?.into_state()
}

/// The last complete record's state and the length of the good prefix.
fn last_record(bytes: &[u8]) -> (Option<DynamicZone>, usize) {
    let (mut state, mut at) = (None, 0);
    while bytes.len() - at >= HEADER {
        let h = &bytes[at..at + HEADER];
        if &h[..4] != MAGIC {
            break;
        }
        let len = u32::from_be_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if checksum(payload) != h[8..16] {
            break;
        }
        let Ok(snapshot) = serde_json::from_slice::<Snapshot>(payload) else { break };
        let Some(s) = snapshot.into_state() else { break };
        state = Some(s);
        at += HEADER + len;
    }
    (state, at)
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    serial: Option<u32>,
    names: Vec<(String, u32, Vec<Data>)>,
}

#[derive(Serialize, Deserialize)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Cname(String),
    Ns(String),
    Txt(String),
    Mx(u16, String),
    Srv(u16, u16, u16, String),
    Caa(bool, String, String),
}

impl From<&DynamicZone> for Snapshot {
    fn from(z: &DynamicZone) -> Self {
        let data = |d: &RData| match d {
            RData::A(ip) => Some(Data::A(*ip)),
            RData::Aaaa(ip) => Some(Data::Aaaa(*ip)),
            RData::Cname(n) => Some(Data::Cname(n.as_str().to_owned())),
            RData::Ns(n) => Some(Data::Ns(n.as_str().to_owned())),
            RData::Txt(t) => Some(Data::Txt(t.clone())),
            RData::Mx(m) => Some(Data::Mx(m.preference, m.exchange.as_str().to_owned())),
            RData::Srv(s) => Some(Data::Srv(s.priority, s.weight, s.port, s.target.as_str().to_owned())),
            RData::Caa(c) => Some(Data::Caa(c.critical, c.tag.clone(), c.value.clone())),
            RData::Soa(_) => None, // never a dynamic record (the apex is refused)
        };
        Snapshot {
            serial: z.serial,
            names: z
                .names
                .iter()
                .map(|(n, node)| (n.as_str().to_owned(), node.ttl, node.rdata.iter().filter_map(data).collect()))
                .collect(),
        }
    }
}

impl Snapshot {
    fn into_state(self) -> Option<DynamicZone> {
        let name = |s: &str| Name::parse_absolute(s).ok();
        let mut out = DynamicZone { serial: self.serial, names: Default::default() };
        for (n, ttl, data) in self.names {
            let mut rdata = Vec::new();
            for d in data {
                rdata.push(match d {
                    Data::A(ip) => RData::A(ip),
                    Data::Aaaa(ip) => RData::Aaaa(ip),
                    Data::Cname(t) => RData::Cname(name(&t)?),
                    Data::Ns(t) => RData::Ns(name(&t)?),
                    Data::Txt(t) => RData::Txt(t),
                    Data::Mx(p, t) => RData::Mx(Mx { preference: p, exchange: name(&t)? }),
                    Data::Srv(p, w, port, t) => RData::Srv(Srv { priority: p, weight: w, port, target: name(&t)? }),
                    Data::Caa(critical, tag, value) => RData::Caa(Caa { critical, tag, value }),
                });
            }
            out.names.insert(name(&n)?, DynamicNode { ttl, rdata });
        }
        Some(out)
    }
}
