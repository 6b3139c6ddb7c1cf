//! An in-process fake Kubernetes API server for integration tests, driven through the real
//! kube client via a generated kubeconfig.
//!
//! It speaks the HTTP/1.1 list/watch protocol kube-rs watchers use, for three cluster-wide
//! collections: `/api/v1/services`, `/apis/discovery.k8s.io/v1/endpointslices` and
//! `/api/v1/nodes`, plus `/version`:
//! - list: every object of the kind with `metadata.resourceVersion` (one global counter, as
//!   etcd's), no pagination (`limit` is ignored, no `continue` token);
//! - watch (`?watch=true&resourceVersion=N`): a chunked stream of `{"type":..,"object":..}`
//!   lines replaying the recorded events after N, then live ones; `BOOKMARK`s every 500 ms
//!   when `allowWatchBookmarks=true`; closed after `timeoutSeconds`;
//! - 410 Gone: resuming from a resourceVersion older than the last [`FakeKube::compact`] gets
//!   a 200 stream holding one `ERROR` event with code 410 (what kube-apiserver sends), and open
//!   watches get that event when `compact` runs, so the client must re-list.
//!
//! ConfigMaps are also served namespaced, read and written as kube-apiserver does it:
//! - `GET /api/v1/namespaces/NS/configmaps/NAME`: the object, or 404 with a `Status` body;
//! - `POST /api/v1/namespaces/NS/configmaps`: create (201), or 409 `AlreadyExists`;
//! - `PUT /api/v1/namespaces/NS/configmaps/NAME`: replace, when the body's
//!   `metadata.resourceVersion` is the stored one (or absent: unconditional), else 409
//!   `Conflict` with a `Status` body; 404 when the object does not exist;
//! - list and watch of `/api/v1/namespaces/NS/configmaps` (and `/api/v1/configmaps`) with the
//!   `fieldSelector=metadata.name=NAME` that kube's `watch_object` sends, through the same
//!   history, watch events and 410 handling as the other kinds.
//!
//! [`FakeKube::before_next_write`] plays another writer: it changes the stored object just
//! before the next create or replace is handled, so that one conflicts as it would in a race.
//!
//! [`FakeKube::stop`] closes the listener and every connection; [`FakeKube::restart`] binds the
//! same port again and compacts (a restarted apiserver's watch cache starts at the current
//! revision), so clients re-list and see what changed while it was down.
//!
//! Limits: no label selectors, field selectors on `metadata.name` only, namespaced paths and
//! writes through HTTP for ConfigMaps only (tests change the other kinds with
//! [`FakeKube::apply`] / [`FakeKube::delete`]), no PATCH or DELETE through HTTP, no protobuf,
//! no streaming lists (`sendInitialEvents`), no authentication.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The collections served: (kind, apiVersion, list path).
const KINDS: [(&str, &str, &str); 4] = [
    ("Service", "v1", "/api/v1/services"),
    ("EndpointSlice", "discovery.k8s.io/v1", "/apis/discovery.k8s.io/v1/endpointslices"),
    ("Node", "v1", "/api/v1/nodes"),
    ("ConfigMap", "v1", "/api/v1/configmaps"),
];

/// Kinds also served under `/api/v1/namespaces/NS/RESOURCE[/NAME]`, read and written.
const NAMESPACED: [(&str, &str); 1] = [("configmaps", "ConfigMap")];

/// (namespace, name) of an object.
type Key = (String, String);

/// Another writer's change to a stored object ([`FakeKube::before_next_write`]).
type Change = Box<dyn FnOnce(&mut Value) + Send>;

const BOOKMARK_EVERY: Duration = Duration::from_millis(500);

/// What watch connections are told.
#[derive(Clone, Debug)]
enum Notice {
    /// An event at `rv` for objects of `kind`.
    Event { rv: u64, kind: &'static str, key: Key, line: Arc<str> },
    /// History before `rv` was dropped: send 410 and end.
    Compacted,
}

#[derive(Default)]
struct State {
    /// Global resourceVersion: bumped by every change.
    rv: u64,
    /// Resuming from a revision below this is answered with 410 Gone.
    oldest: u64,
    /// kind -> (namespace, name) -> object.
    objects: BTreeMap<&'static str, BTreeMap<(String, String), Value>>,
    /// Every event since the last compaction, in order: (rv, kind, object, event line).
    history: Vec<(u64, &'static str, Key, Arc<str>)>,
    /// Run on the stored object before the next create or replace (another writer's change).
    before_write: Option<Change>,
}

struct Shared {
    state: Mutex<State>,
    /// Live events to open watches. Sent while holding `state`, so a watch that snapshots the
    /// history and subscribes under the same lock misses nothing and sees nothing twice.
    notices: broadcast::Sender<Notice>,
    lists: AtomicU64,
    watches: AtomicU64,
    /// Creates and replaces accepted, and refused with 409 Conflict.
    writes: AtomicU64,
    conflicts: AtomicU64,
}

/// The fake API server. Methods that change objects work whether it runs or not.
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl FakeKube {
    /// Binds 127.0.0.1:0 and starts serving.
    pub async fn start() -> Self {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (notices, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            state: Mutex::new(State { rv: 1, oldest: 1, ..State::default() }),
            notices,
            lists: AtomicU64::new(0),
            watches: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
        });
        let mut fake = FakeKube { addr, shared, running: None };
        fake.serve(listener);
        fake
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Number of list requests served (a re-list shows up here).
    pub fn list_requests(&self) -> u64 {
        self.shared.lists.load(Ordering::SeqCst)
    }

    /// Number of watch requests served.
    pub fn watch_requests(&self) -> u64 {
        self.shared.watches.load(Ordering::SeqCst)
    }

    /// Creates and replaces accepted through HTTP.
    pub fn write_requests(&self) -> u64 {
        self.shared.writes.load(Ordering::SeqCst)
    }

    /// Writes refused with 409 Conflict (a stale resourceVersion, or a create of an object
    /// that exists).
    pub fn conflicts(&self) -> u64 {
        self.shared.conflicts.load(Ordering::SeqCst)
    }

    /// Before the next create or replace through HTTP is handled, changes the stored object
    /// (of any kind and name) with `change` as another writer would: a new resourceVersion
    /// and a MODIFIED event. A replace based on the old version then gets 409 Conflict.
    pub fn before_next_write(&self, change: impl FnOnce(&mut Value) + Send + 'static) {
        self.shared.state.lock().expect("fake state lock").before_write = Some(Box::new(change));
    }

    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().expect("fake state lock").rv
    }

    /// Creates or replaces an object (any serializable k8s-openapi value or JSON with `kind`
    /// and `metadata.name`); sets `metadata.resourceVersion` and `uid`, records an ADDED or
    /// MODIFIED event and notifies open watches. Returns the new resourceVersion.
    pub fn apply(&self, object: impl serde::Serialize) -> u64 {
        let mut object = serde_json::to_value(object).expect("object serializes");
        let kind = kind_of(object["kind"].as_str().expect("object has a kind"));
        let key = key_of(&object);
        let mut state = self.shared.state.lock().expect("fake state lock");
        state.rv += 1;
        let rv = state.rv;
        stamp(&mut object, kind, &key, rv);
        let previous = state.objects.entry(kind).or_default().insert(key.clone(), object.clone());
        let kind_word = if previous.is_some() { "MODIFIED" } else { "ADDED" };
        record(&self.shared, &mut state, kind, kind_word, object);
        rv
    }

    /// Deletes an object by kind ("Service", "EndpointSlice", "Node"), namespace ("" for
    /// cluster-scoped) and name; records a DELETED event. Returns whether it existed.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) -> bool {
        let kind = kind_of(kind);
        let mut state = self.shared.state.lock().expect("fake state lock");
        let Some(mut object) = state.objects.entry(kind).or_default().remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return false;
        };
        state.rv += 1;
        object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
        record(&self.shared, &mut state, kind, "DELETED", object);
        true
    }

    /// A copy of a stored object.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.shared.state.lock().expect("fake state lock");
        state.objects.get(kind_of(kind))?.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }

    /// Drops the event history: resuming from any revision seen so far gets 410 Gone, and
    /// open watches get a 410 `ERROR` event and end.
    pub fn compact(&self) {
        let mut state = self.shared.state.lock().expect("fake state lock");
        // Bump the revision so that even a client that has seen the latest event is too old.
        state.rv += 1;
        state.oldest = state.rv;
        state.history.clear();
        let _ = self.shared.notices.send(Notice::Compacted);
    }

    /// Closes the listener and every open connection (lists and watches). Objects remain and
    /// can be changed while stopped.
    pub async fn stop(&mut self) {
        if let Some((token, task)) = self.running.take() {
            token.cancel();
            task.await.expect("fake server task ends cleanly");
        }
    }

    /// Serves again on the same port, compacting first (see the module doc).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.compact();
        // The port was ours a moment ago; SO_REUSEADDR covers TIME_WAIT. Retry briefly in
        // case the old socket is still being torn down.
        let mut last = None;
        for _ in 0..50 {
            match bind(self.addr) {
                Ok(listener) => {
                    self.serve(listener);
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot rebind {}: {:?}", self.addr, last);
    }

    fn serve(&mut self, listener: TcpListener) {
        let token = CancellationToken::new();
        let shared = self.shared.clone();
        let stop = token.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(connection(stream, shared.clone(), stop.clone()));
                    }
                }
            }
            drop(listener);
            // Every connection ends on the token; wait so that stop() returns with all closed.
            while connections.join_next().await.is_some() {}
        });
        self.running = Some((token, task));
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some((token, _)) = self.running.take() {
            token.cancel();
        }
    }
}

/// Sets the server-owned metadata of an object stored at `rv`.
fn stamp(object: &mut Value, kind: &str, key: &Key, rv: u64) {
    let meta = object["metadata"].as_object_mut().expect("object has metadata");
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    meta.entry("uid").or_insert_with(|| json!(format!("uid-{}-{}-{}", kind, key.0, key.1)));
    meta.entry("creationTimestamp").or_insert_with(|| json!("2026-01-01T00:00:00Z"));
}

/// Records an event at the current revision and tells open watches (under the state lock).
fn record(shared: &Shared, state: &mut State, kind: &'static str, event: &str, object: Value) {
    let rv = state.rv;
    let key = key_of(&object);
    let line: Arc<str> = Arc::from(format!("{}\n", json!({ "type": event, "object": object })));
    state.history.push((rv, kind, key.clone(), line.clone()));
    let _ = shared.notices.send(Notice::Event { rv, kind, key, line });
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

fn kind_of(kind: &str) -> &'static str {
    KINDS
        .iter()
        .map(|(k, _, _)| *k)
        .find(|k| *k == kind)
        .unwrap_or_else(|| panic!("the fake serves Service, EndpointSlice, Node and ConfigMap, not {kind}"))
}

fn key_of(object: &Value) -> (String, String) {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or_default().to_owned(),
        meta["name"].as_str().expect("object has metadata.name").to_owned(),
    )
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// What a request's path names: a collection of `kind` (in one namespace, or all), or one
/// object of it.
struct Target {
    kind: &'static str,
    api_version: &'static str,
    namespace: Option<String>,
    name: Option<String>,
}

fn target(path: &str) -> Option<Target> {
    if let Some(&(kind, api_version, _)) = KINDS.iter().find(|(_, _, p)| *p == path) {
        return Some(Target { kind, api_version, namespace: None, name: None });
    }
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let mut parts = rest.split('/');
    let namespace = parts.next()?.to_owned();
    let resource = parts.next()?;
    let name = parts.next().map(str::to_owned);
    if parts.next().is_some() {
        return None;
    }
    let &(_, kind) = NAMESPACED.iter().find(|(r, _)| *r == resource)?;
    Some(Target { kind, api_version: "v1", namespace: Some(namespace), name })
}

/// `%XX` escapes of a query value decoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The objects a list or watch wants: in `namespace` if given, named by the field selector if
/// one is given (`metadata.name=NAME`, the only field the fake understands).
struct Filter {
    namespace: Option<String>,
    name: Option<String>,
}

impl Filter {
    fn new(target: &Target, request: &Request) -> Self {
        let name = request.query.get("fieldSelector").and_then(|f| {
            let f = percent_decode(f);
            f.strip_prefix("metadata.name=").map(str::to_owned)
        });
        Filter { namespace: target.namespace.clone(), name }
    }

    fn wants(&self, key: &Key) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == key.0) && self.name.as_ref().is_none_or(|n| *n == key.1)
    }
}

/// Serves requests on one connection until the client closes it, a watch ends, or `stop`.
async fn connection(mut stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    let mut buf = Vec::new();
    loop {
        let request = tokio::select! {
            _ = stop.cancelled() => return,
            r = read_request(&mut stream, &mut buf) => match r {
                Some(r) => r,
                None => return,
            },
        };
        let keep_going = tokio::select! {
            _ = stop.cancelled() => return,
            k = respond(&mut stream, &shared, request) => k,
        };
        if !keep_going {
            return;
        }
    }
}

/// Reads one request head (bodies are skipped by Content-Length); `None` on EOF or garbage.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let mut first = lines.next()?.split(' ');
            let method = first.next()?.to_owned();
            let target = first.next()?.to_owned();
            let body_len: usize = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            let total = end + 4 + body_len;
            while buf.len() < total {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..total].to_vec();
            buf.drain(..total);
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let query = query
                .split('&')
                .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            return Some(Request { method, path: path.to_owned(), query, body });
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Answers one request; false when the connection must close afterwards.
async fn respond(stream: &mut TcpStream, shared: &Shared, request: Request) -> bool {
    if request.path == "/version" {
        let info = json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "fake",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
            "compiler": "gc", "platform": "linux/amd64",
        });
        return send_json(stream, 200, &info).await;
    }
    let Some(target) = target(&request.path) else {
        let body = status_body(404, "NotFound", &format!("the fake does not serve {}", request.path));
        return send_json(stream, 404, &body).await;
    };
    let (kind, api_version) = (target.kind, target.api_version);
    match (request.method.as_str(), &target.name) {
        ("GET", None) => {}
        ("GET", Some(_)) => {
            let (code, body) = get_one(shared, &target);
            return send_json(stream, code, &body).await;
        }
        ("POST", None) | ("PUT", Some(_)) if target.namespace.is_some() => {
            let (code, body) = write(shared, &target, &request);
            return send_json(stream, code, &body).await;
        }
        _ => {
            let body =
                status_body(405, "MethodNotAllowed", &format!("the fake does not {} {}", request.method, request.path));
            return send_json(stream, 405, &body).await;
        }
    }
    let filter = Filter::new(&target, &request);
    let watch = matches!(request.query.get("watch").map(String::as_str), Some("true" | "1"));
    if !watch {
        shared.lists.fetch_add(1, Ordering::SeqCst);
        let body = {
            let state = shared.state.lock().expect("fake state lock");
            let items: Vec<Value> = state
                .objects
                .get(kind)
                .map(|m| m.iter().filter(|(k, _)| filter.wants(k)).map(|(_, o)| o.clone()).collect())
                .unwrap_or_default();
            json!({
                "kind": format!("{kind}List"),
                "apiVersion": api_version,
                "metadata": { "resourceVersion": state.rv.to_string() },
                "items": items,
            })
        };
        return send_json(stream, 200, &body).await;
    }
    shared.watches.fetch_add(1, Ordering::SeqCst);
    watch_stream(stream, shared, kind, &filter, &request).await;
    false
}

/// `GET` of one object: 200 and the object, or 404.
fn get_one(shared: &Shared, target: &Target) -> (u16, Value) {
    let key = (target.namespace.clone().unwrap_or_default(), target.name.clone().unwrap_or_default());
    let state = shared.state.lock().expect("fake state lock");
    match state.objects.get(target.kind).and_then(|m| m.get(&key)) {
        Some(object) => (200, object.clone()),
        None => (404, not_found(target.kind, &key.1)),
    }
}

fn not_found(kind: &str, name: &str) -> Value {
    let resource = format!("{}s", kind.to_ascii_lowercase());
    status_body(404, "NotFound", &format!("{resource} \"{name}\" not found"))
}

/// `POST` (create) to a collection or `PUT` (replace) of one object, as kube-apiserver checks
/// them: the name, the namespace, and for a replace the resourceVersion.
fn write(shared: &Shared, target: &Target, request: &Request) -> (u16, Value) {
    let Ok(mut object) = serde_json::from_slice::<Value>(&request.body) else {
        return (400, status_body(400, "BadRequest", "the body is not JSON"));
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return (422, status_body(422, "Invalid", "metadata.name: Required value"));
    };
    if target.name.as_ref().is_some_and(|n| *n != name) {
        return (400, status_body(400, "BadRequest", "the name of the object does not match the name in the URL"));
    }
    let resource = format!("{}s", target.kind.to_ascii_lowercase());
    object["metadata"]["namespace"] = json!(namespace);
    object["kind"] = json!(target.kind);
    object["apiVersion"] = json!(target.api_version);
    let key = (namespace, name.clone());
    let mut state = shared.state.lock().expect("fake state lock");
    if let Some(change) = state.before_write.take()
        && let Some(mut stored) = state.objects.get(target.kind).and_then(|m| m.get(&key)).cloned()
    {
        change(&mut stored);
        state.rv += 1;
        let rv = state.rv;
        stamp(&mut stored, target.kind, &key, rv);
        state.objects.entry(target.kind).or_default().insert(key.clone(), stored.clone());
        record(shared, &mut state, target.kind, "MODIFIED", stored);
    }
    let existing = state.objects.get(target.kind).and_then(|m| m.get(&key)).cloned();
    let create = request.method == "POST";
    match (&existing, create) {
        (Some(_), true) => {
            shared.conflicts.fetch_add(1, Ordering::SeqCst);
            let message = format!("{resource} \"{name}\" already exists");
            return (409, status_body(409, "AlreadyExists", &message));
        }
        (None, false) => return (404, not_found(target.kind, &name)),
        (Some(old), false) => {
            let sent = object["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty());
            if sent.is_some_and(|v| Some(v) != old["metadata"]["resourceVersion"].as_str()) {
                shared.conflicts.fetch_add(1, Ordering::SeqCst);
                let message = format!(
                    "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
                     please apply your changes to the latest version and try again"
                );
                return (409, status_body(409, "Conflict", &message));
            }
            // The server keeps what it owns.
            for field in ["uid", "creationTimestamp"] {
                object["metadata"][field] = old["metadata"][field].clone();
            }
        }
        (None, true) => {}
    }
    state.rv += 1;
    let rv = state.rv;
    stamp(&mut object, target.kind, &key, rv);
    state.objects.entry(target.kind).or_default().insert(key, object.clone());
    record(shared, &mut state, target.kind, if create { "ADDED" } else { "MODIFIED" }, object.clone());
    shared.writes.fetch_add(1, Ordering::SeqCst);
    (if create { 201 } else { 200 }, object)
}

/// Streams a watch until its timeout, a compaction, a write failure or the connection's end.
async fn watch_stream(stream: &mut TcpStream, shared: &Shared, kind: &'static str, filter: &Filter, request: &Request) {
    let from: u64 = request.query.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bookmarks = request.query.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));

    // Snapshot and subscribe under one lock: nothing is missed or seen twice.
    let (backlog, mut notices, mut seen, gone) = {
        let state = shared.state.lock().expect("fake state lock");
        let gone = from != 0 && from < state.oldest;
        let backlog: Vec<Arc<str>> = if from == 0 || gone {
            Vec::new()
        } else {
            state
                .history
                .iter()
                .filter(|(rv, k, key, _)| *rv > from && *k == kind && filter.wants(key))
                .map(|(_, _, _, line)| line.clone())
                .collect()
        };
        (backlog, shared.notices.subscribe(), state.rv, gone)
    };

    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    if gone {
        let _ = write_chunk(stream, &gone_line(from)).await;
        let _ = stream.write_all(b"0\r\n\r\n").await;
        return;
    }
    for line in backlog {
        if write_chunk(stream, &line).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(BOOKMARK_EVERY);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick(), if bookmarks => {
                let line = bookmark_line(kind, seen);
                if write_chunk(stream, &line).await.is_err() {
                    return;
                }
            }
            notice = notices.recv() => match notice {
                Ok(Notice::Event { rv, kind: k, key, line }) => {
                    seen = seen.max(rv);
                    if k == kind && filter.wants(&key) && write_chunk(stream, &line).await.is_err() {
                        return;
                    }
                }
                Ok(Notice::Compacted) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = write_chunk(stream, &gone_line(seen)).await;
                    break;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
}

fn gone_line(from: u64) -> String {
    let status = status_body(410, "Expired", &format!("too old resource version: {from}"));
    format!("{}\n", json!({ "type": "ERROR", "object": status }))
}

fn bookmark_line(kind: &str, rv: u64) -> String {
    let api_version = KINDS.iter().find(|(k, _, _)| *k == kind).map(|(_, a, _)| *a);
    let object = json!({
        "kind": kind,
        "apiVersion": api_version,
        "metadata": { "resourceVersion": rv.to_string() },
    });
    format!("{}\n", json!({ "type": "BOOKMARK", "object": object }))
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })
}

async fn write_chunk(stream: &mut TcpStream, data: &str) -> std::io::Result<()> {
    let framed = format!("{:x}\r\n{}\r\n", data.len(), data);
    stream.write_all(framed.as_bytes()).await?;
    stream.flush().await
}

/// Writes a complete JSON response; true (keep the connection) unless the write failed.
async fn send_json(stream: &mut TcpStream, code: u16, body: &Value) -> bool {
    let body = body.to_string();
    let reason = match code {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        405 => "Method Not Allowed",
        410 => "Gone",
        _ => "Error",
    };
    let head =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.is_ok()
        && stream.write_all(body.as_bytes()).await.is_ok()
        && stream.flush().await.is_ok()
}

/// Writes a kubeconfig with one context per (context name, server) pair, each with its own
/// cluster entry and an anonymous user; the first context is current. Returns its path.
pub fn write_kubeconfig(dir: &Path, file: &str, contexts: &[(&str, &FakeKube)]) -> PathBuf {
    let mut clusters = String::new();
    let mut ctxs = String::new();
    let mut users = String::new();
    for (name, fake) in contexts {
        clusters.push_str(&format!("- name: {name}-cluster\n  cluster:\n    server: {}\n", fake.url()));
        ctxs.push_str(&format!("- name: {name}\n  context:\n    cluster: {name}-cluster\n    user: {name}-user\n"));
        users.push_str(&format!("- name: {name}-user\n  user: {{}}\n"));
    }
    let current = contexts.first().map(|(n, _)| *n).unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{ctxs}users:\n{users}\
         current-context: {current}\npreferences: {{}}\n"
    );
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}
