//! `MockHttp`: a local HTTP/1.1 server standing in for the HTTP destinations, with failure
//! injection controlled from the test.
//!
//! It listens on `127.0.0.1:<free port>`, runs one thread per connection, keeps connections alive
//! (HTTP/1.1 default; `Connection: close` honoured), requires `Content-Length` on requests with a
//! body (no chunked requests: 411), answers `Expect: 100-continue`, and decodes
//! `Content-Encoding: gzip` bodies. Every request is recorded ([`Request`]). Three contracts:
//!
//! - **Splunk HEC**, `POST /services/collector/event` (also `/services/collector` and
//!   `/services/collector/event/1.0`): `Authorization: Splunk <token>` (missing: 401 code 2,
//!   malformed: 401 code 3, wrong token: 403 code 4 "Invalid token", as real Splunk answers),
//!   body = concatenated JSON objects each with an `event`; `{"text":"Success","code":0}`.
//!   Empty body: 400 code 5 "No data"; unparsable or marked object: 400 code 6 "Invalid data
//!   format" with `invalid-event-number`; no `event`: 400 code 12; blank `event`: 400 code 13.
//!   On a 400 the events before the bad one are kept (Splunk indexes them), unless
//!   [`MockHttp::set_hec_partial_accept`]`(false)`. `GET /services/collector/health`: code 17.
//! - **Elasticsearch bulk**, `POST /_bulk` or `/<index>/_bulk`: NDJSON action/source pairs,
//!   `create` and `index` with or without `_id`; `Content-Type` must be JSON or NDJSON (406),
//!   body must end with `\n` (400). Replies with the real shape
//!   `{"took":..,"errors":..,"items":[{"create":{"_index":..,"_id":..,"status":201,..}}]}`;
//!   `create` of an existing `_id` is item status 409 `version_conflict_engine_exception`;
//!   `index` overwrites (200, `_version` + 1). Documents are stored by (index, id).
//!   `GET /` answers like an ES 8 node.
//! - **NDJSON**, `POST` to any other path: each non-empty line must be JSON; all-or-nothing 400.
//!
//! Failure injection (at any time, from the test thread): [`refuse_connections`] (stop listening
//! and close open connections) and [`listen_again`] (same port); [`fail_next`] N requests or
//! [`fail_for`] a duration with a status (503, 429, 500, ...); [`drop_next`] N requests (read, then
//! close without an answer); [`reject_marker`] (HEC: 400 code 6 at that event; bulk: item 400
//! `mapper_parsing_exception`; NDJSON: 400); [`bulk_item_429`] for selected bulk items;
//! [`set_delay`] before every answer (a slow destination).
//!
//! [`refuse_connections`]: MockHttp::refuse_connections
//! [`listen_again`]: MockHttp::listen_again
//! [`fail_next`]: MockHttp::fail_next
//! [`fail_for`]: MockHttp::fail_for
//! [`drop_next`]: MockHttp::drop_next
//! [`reject_marker`]: MockHttp::reject_marker
//! [`bulk_item_429`]: MockHttp::bulk_item_429
//! [`set_delay`]: MockHttp::set_delay

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::try_wait_for;

/// How long an idle keep-alive connection is kept open by the server.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// The query string (after `?`), or empty.
    pub query: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body after gzip decoding.
    pub body: Vec<u8>,
    /// Body bytes on the wire (before decoding).
    pub wire_len: usize,
    /// Whether the body was gzip-encoded.
    pub gzip: bool,
    /// The status answered; 0 when the request was dropped without an answer.
    pub status: u16,
    /// The response body sent.
    pub response: String,
    /// Which accepted connection carried it (1, 2, ...).
    pub connection: u64,
    pub received: Instant,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    /// The decoded body as text (lossy).
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A stored Elasticsearch document.
#[derive(Debug, Clone)]
pub struct EsDoc {
    pub index: String,
    pub id: String,
    pub source: Value,
    /// 1 when created; + 1 for every `index` overwrite.
    pub version: u64,
}

/// The outcome of one bulk item (every attempt is kept, in order).
#[derive(Debug, Clone)]
pub struct BulkItem {
    /// `create` or `index`
    pub action: String,
    pub index: String,
    pub id: String,
    pub status: u16,
    pub source: Value,
}

/// Which bulk items get an injected 429 (`es_rejected_execution_exception`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemSelector {
    /// No item.
    None,
    /// Items whose source line contains this text.
    Containing(String),
    /// The next N items (across requests).
    NextN(u64),
    /// Every Nth item (counting all items received).
    EveryNth(u64),
}

#[derive(Debug)]
struct Faults {
    fail_next: u64,
    fail_next_status: u16,
    fail_until: Option<(Instant, u16)>,
    drop_next: u64,
    delay: Duration,
    marker: Option<String>,
    item_429: ItemSelector,
    hec_token: String,
    hec_partial_accept: bool,
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    hec_events: Vec<Value>,
    es_docs: HashMap<(String, String), EsDoc>,
    es_order: Vec<(String, String)>,
    es_items: Vec<BulkItem>,
    es_items_seen: u64,
    es_seq: u64,
    ndjson: Vec<(String, Value)>,
}

struct Ctl {
    /// A listener waiting for the acceptor to take it.
    pending: Option<TcpListener>,
    /// The acceptor holds a listener.
    listening: bool,
    /// The test asked the acceptor to drop its listener.
    stop: bool,
}

struct Inner {
    port: u16,
    state: Mutex<State>,
    faults: Mutex<Faults>,
    ctl: Mutex<Ctl>,
    ctl_cond: Condvar,
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    /// Requests read completely (answered or still being answered).
    received: AtomicU64,
    shutdown: AtomicBool,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn ctl(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The mock HTTP server. Dropping it stops it and closes every connection.
pub struct MockHttp {
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

/// The HEC token [`MockHttp::start`] expects.
pub const DEFAULT_HEC_TOKEN: &str = "test-token";

impl MockHttp {
    /// Starts the server on a free loopback port, expecting HEC token [`DEFAULT_HEC_TOKEN`].
    pub fn start() -> MockHttp {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("MockHttp: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        let inner = Arc::new(Inner {
            port,
            state: Mutex::new(State::default()),
            faults: Mutex::new(Faults {
                fail_next: 0,
                fail_next_status: 503,
                fail_until: None,
                drop_next: 0,
                delay: Duration::ZERO,
                marker: None,
                item_429: ItemSelector::None,
                hec_token: DEFAULT_HEC_TOKEN.to_string(),
                hec_partial_accept: true,
            }),
            ctl: Mutex::new(Ctl { pending: Some(listener), listening: false, stop: false }),
            ctl_cond: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            received: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
        });
        let i2 = inner.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("mockhttp-accept-{port}"))
            .spawn(move || acceptor(i2))
            .expect("spawn acceptor");
        let m = MockHttp { inner, acceptor: Some(acceptor) };
        m.wait_listening(true);
        m
    }

    /// Starts the server expecting HEC token `token`.
    pub fn start_with_hec_token(token: &str) -> MockHttp {
        let m = MockHttp::start();
        m.set_hec_token(token);
        m
    }

    pub fn port(&self) -> u16 {
        self.inner.port
    }
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.inner.port))
    }
    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.inner.port)
    }
    /// `http://127.0.0.1:<port>/services/collector/event`
    pub fn hec_url(&self) -> String {
        format!("{}/services/collector/event", self.url())
    }

    // ---- failure injection ----

    /// Stops listening (new connections are refused: ECONNREFUSED) and closes every open
    /// connection. Returns once the port is closed.
    pub fn refuse_connections(&self) {
        {
            let mut c = self.inner.ctl();
            c.stop = true;
            c.pending = None;
            self.inner.ctl_cond.notify_all();
        }
        self.wait_listening(false);
        let conns: Vec<TcpStream> = self.inner.conns.lock().unwrap().drain().map(|(_, s)| s).collect();
        for s in conns {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port (retrying the bind for up to 10 s). Returns once listening.
    pub fn listen_again(&self) {
        let port = self.inner.port;
        let mut last_err = None;
        let listener = try_wait_for(Duration::from_secs(10), || match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(l) => Some(l),
            Err(e) => {
                last_err = Some(e);
                None
            }
        })
        .unwrap_or_else(|| panic!("MockHttp: cannot listen on port {port} again within 10 s: {last_err:?}"));
        {
            let mut c = self.inner.ctl();
            c.stop = false;
            c.pending = Some(listener);
            self.inner.ctl_cond.notify_all();
        }
        self.wait_listening(true);
    }

    /// Whether the server accepts connections now.
    pub fn is_listening(&self) -> bool {
        self.inner.ctl().listening
    }

    fn wait_listening(&self, want: bool) {
        let g = self.inner.ctl();
        let (g, res) = self
            .inner
            .ctl_cond
            .wait_timeout_while(g, Duration::from_secs(10), |c| c.listening != want)
            .unwrap_or_else(|e| e.into_inner());
        drop(g);
        if res.timed_out() {
            panic!("MockHttp: acceptor did not reach listening={want} within 10 s");
        }
    }

    /// Answers the next `n` requests with `status` (and a contract-shaped error body), storing
    /// nothing from them.
    pub fn fail_next(&self, n: u64, status: u16) {
        let mut f = self.inner.faults();
        f.fail_next = n;
        f.fail_next_status = status;
    }

    /// Answers every request with `status` for `d` from now.
    pub fn fail_for(&self, d: Duration, status: u16) {
        self.inner.faults().fail_until = Some((Instant::now() + d, status));
    }

    /// Reads the next `n` requests completely, then closes their connections without an answer.
    pub fn drop_next(&self, n: u64) {
        self.inner.faults().drop_next = n;
    }

    /// Rejects records containing `marker` (see the module doc for each contract's answer).
    pub fn reject_marker(&self, marker: &str) {
        self.inner.faults().marker = Some(marker.to_string());
    }

    /// Answers bulk items chosen by `sel` with item status 429.
    pub fn bulk_item_429(&self, sel: ItemSelector) {
        self.inner.faults().item_429 = sel;
    }

    /// Waits `d` before every answer.
    pub fn set_delay(&self, d: Duration) {
        self.inner.faults().delay = d;
    }

    /// Changes the expected HEC token.
    pub fn set_hec_token(&self, token: &str) {
        self.inner.faults().hec_token = token.to_string();
    }

    /// Whether a HEC 400 keeps the events before the bad one (default true, as Splunk).
    pub fn set_hec_partial_accept(&self, on: bool) {
        self.inner.faults().hec_partial_accept = on;
    }

    /// Removes every injected fault (fail, drop, marker, 429 items, delay); does not re-listen.
    pub fn clear_faults(&self) {
        let mut f = self.inner.faults();
        f.fail_next = 0;
        f.fail_until = None;
        f.drop_next = 0;
        f.delay = Duration::ZERO;
        f.marker = None;
        f.item_429 = ItemSelector::None;
    }

    // ---- accessors ----

    /// Every request so far, in the order they were answered.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.state().requests.clone()
    }
    pub fn request_count(&self) -> usize {
        self.inner.state().requests.len()
    }
    /// Requests read completely so far, including those still waiting for their answer (a
    /// [`set_delay`](Self::set_delay) in progress): `requests_received() > request_count()`
    /// means a request is in flight.
    pub fn requests_received(&self) -> u64 {
        self.inner.received.load(Ordering::SeqCst)
    }
    /// How many requests got this status.
    pub fn count_status(&self, status: u16) -> usize {
        self.inner.state().requests.iter().filter(|r| r.status == status).count()
    }
    /// Connections accepted so far (keep-alive reuse shows as fewer connections than requests).
    pub fn connections_accepted(&self) -> u64 {
        self.inner.next_conn.load(Ordering::SeqCst) - 1
    }
    /// Accepted HEC events (each the whole object: time, host, source, sourcetype, index, event).
    pub fn hec_events(&self) -> Vec<Value> {
        self.inner.state().hec_events.clone()
    }
    /// Stored ES documents, one per (index, id), in order of first creation.
    pub fn es_docs(&self) -> Vec<EsDoc> {
        let s = self.inner.state();
        s.es_order.iter().map(|k| s.es_docs[k].clone()).collect()
    }
    /// Every bulk item answered so far, including rejected ones.
    pub fn es_items(&self) -> Vec<BulkItem> {
        self.inner.state().es_items.clone()
    }
    /// Bulk items answered 409 (duplicate `create`).
    pub fn es_conflicts(&self) -> usize {
        self.inner.state().es_items.iter().filter(|i| i.status == 409).count()
    }
    /// Distinct (index, id) stored.
    pub fn es_unique_ids(&self) -> usize {
        self.inner.state().es_docs.len()
    }
    /// Accepted NDJSON records with the path they were posted to.
    pub fn ndjson_records(&self) -> Vec<(String, Value)> {
        self.inner.state().ndjson.clone()
    }
    /// Every record accepted by any contract, as compact JSON text, in order of acceptance: HEC
    /// events (whole objects), ES sources of successful items (201/200, so an overwrite counts
    /// again), NDJSON lines. Feed it to `sender::Tally::of`.
    pub fn accepted_records(&self) -> Vec<String> {
        let s = self.inner.state();
        let mut out: Vec<String> = s.hec_events.iter().map(Value::to_string).collect();
        out.extend(s.es_items.iter().filter(|i| i.status < 300).map(|i| i.source.to_string()));
        out.extend(s.ndjson.iter().map(|(_, v)| v.to_string()));
        out
    }
    /// Waits until [`accepted_records`](Self::accepted_records) has at least `n` records and
    /// returns them. Panics with the request log after `timeout`.
    pub fn wait_for_records(&self, n: usize, timeout: Duration) -> Vec<String> {
        self.wait_until(timeout, &format!("{n} accepted records"), |m| {
            let r = m.accepted_records();
            (r.len() >= n).then_some(r)
        })
    }
    /// Waits until at least `n` requests were answered; returns them all.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Request> {
        self.wait_until(timeout, &format!("{n} requests"), |m| {
            let r = m.requests();
            (r.len() >= n).then_some(r)
        })
    }
    /// Polls `cond` until it returns `Some`; panics after `timeout` with a summary of the requests.
    pub fn wait_until<T>(&self, timeout: Duration, what: &str, mut cond: impl FnMut(&MockHttp) -> Option<T>) -> T {
        match try_wait_for(timeout, || cond(self)) {
            Some(v) => v,
            None => panic!("MockHttp: timed out after {timeout:?} waiting for {what}\n{}", self.summary()),
        }
    }
    /// A short text summary of what the server saw (for panic messages).
    pub fn summary(&self) -> String {
        let s = self.inner.state();
        let mut out = format!(
            "MockHttp on port {}: {} connections, {} requests, {} HEC events, {} ES docs ({} items), {} NDJSON records\n",
            self.inner.port,
            self.connections_accepted(),
            s.requests.len(),
            s.hec_events.len(),
            s.es_docs.len(),
            s.es_items.len(),
            s.ndjson.len()
        );
        let skip = s.requests.len().saturating_sub(20);
        for r in &s.requests[skip..] {
            let body = r.body_str();
            let head: String = body.chars().take(160).collect();
            out.push_str(&format!(
                "  {} {} -> {} ({} bytes{}) {:?} => {}\n",
                r.method,
                r.path,
                r.status,
                r.body.len(),
                if r.gzip { ", gzip" } else { "" },
                head,
                r.response.chars().take(160).collect::<String>()
            ));
        }
        out
    }
}

impl Drop for MockHttp {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        self.inner.ctl_cond.notify_all();
        for (_, s) in self.inner.conns.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn acceptor(inner: Arc<Inner>) {
    loop {
        // Wait for a listener (or shutdown).
        let listener = {
            let mut c = inner.ctl();
            loop {
                if inner.shutdown.load(Ordering::SeqCst) {
                    c.listening = false;
                    inner.ctl_cond.notify_all();
                    return;
                }
                if let Some(l) = c.pending.take() {
                    c.listening = true;
                    inner.ctl_cond.notify_all();
                    break l;
                }
                c = inner.ctl_cond.wait_timeout(c, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
            }
        };
        listener.set_nonblocking(true).expect("listener nonblocking");
        loop {
            if inner.shutdown.load(Ordering::SeqCst) || inner.ctl().stop {
                drop(listener);
                let mut c = inner.ctl();
                c.listening = false;
                inner.ctl_cond.notify_all();
                break;
            }
            let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, 20) };
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let id = inner.next_conn.fetch_add(1, Ordering::SeqCst);
                    if let Ok(clone) = stream.try_clone() {
                        inner.conns.lock().unwrap().insert(id, clone);
                    }
                    let i2 = inner.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("mockhttp-conn-{id}"))
                        .spawn(move || {
                            serve_connection(&i2, stream, id);
                            i2.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                        });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// Reads more bytes into `buf`; Ok(false) on EOF or when the server shuts down / idles out.
fn fill(inner: &Inner, stream: &mut TcpStream, buf: &mut Vec<u8>, idle_since: Instant, limit: Duration) -> bool {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        if inner.shutdown.load(Ordering::SeqCst) || idle_since.elapsed() > limit {
            return false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return false,
            Ok(k) => {
                buf.extend_from_slice(&chunk[..k]);
                return true;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

fn serve_connection(inner: &Inner, mut stream: TcpStream, conn: u64) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // ---- head ----
        let idle = Instant::now();
        let head_end = loop {
            if let Some(p) = find(&buf, b"\r\n\r\n") {
                break p;
            }
            if buf.len() > MAX_HEAD {
                let _ = write_response(&mut stream, 431, "{\"error\":\"request head too large\"}", true, &[]);
                return;
            }
            if !fill(inner, &mut stream, &mut buf, idle, IDLE_TIMEOUT) {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_string();
        let mut parts = request_line.split(' ');
        let (method, target, version) = (
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
            parts.next().unwrap_or_default().to_string(),
        );
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
            .collect();
        let hdr = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        if method.is_empty() || !version.starts_with("HTTP/1.") {
            let _ = write_response(&mut stream, 400, "{\"error\":\"bad request line\"}", true, &[]);
            return;
        }
        let conn_hdr = hdr("connection").unwrap_or_default().to_ascii_lowercase();
        let close = if version == "HTTP/1.0" { !conn_hdr.contains("keep-alive") } else { conn_hdr.contains("close") };
        if hdr("transfer-encoding").is_some() {
            let _ = write_response(&mut stream, 411, "{\"error\":\"Content-Length required (chunked not supported)\"}", true, &[]);
            return;
        }
        let clen = match hdr("content-length") {
            Some(v) => match v.parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    let _ = write_response(&mut stream, 400, "{\"error\":\"bad Content-Length\"}", true, &[]);
                    return;
                }
            },
            None if method == "POST" || method == "PUT" => {
                let _ = write_response(&mut stream, 411, "{\"error\":\"Content-Length required\"}", true, &[]);
                return;
            }
            None => 0,
        };
        if hdr("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && buf.len() < clen
            && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        // ---- body ----
        let started = Instant::now();
        while buf.len() < clen {
            if !fill(inner, &mut stream, &mut buf, started, Duration::from_secs(30)) {
                return;
            }
        }
        let wire: Vec<u8> = buf.drain(..clen).collect();
        inner.received.fetch_add(1, Ordering::SeqCst);
        let gzip = hdr("content-encoding").is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (target.clone(), String::new()),
        };
        let mut req = Request {
            method,
            path,
            query,
            headers: headers.clone(),
            body: Vec::new(),
            wire_len: wire.len(),
            gzip,
            status: 0,
            response: String::new(),
            connection: conn,
            received: Instant::now(),
        };
        let decoded = if gzip {
            let mut out = Vec::new();
            match flate2::read::MultiGzDecoder::new(&wire[..]).read_to_end(&mut out) {
                Ok(_) => Ok(out),
                Err(e) => Err(e),
            }
        } else {
            Ok(wire)
        };
        // ---- answer ----
        let (status, body, extra): (u16, String, Vec<(String, String)>) = match decoded {
            Err(e) => {
                req.body = Vec::new();
                (400, json!({"error": format!("bad gzip body: {e}")}).to_string(), vec![])
            }
            Ok(b) => {
                req.body = b;
                let (delay, action) = decide_fault(inner, &req);
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
                match action {
                    FaultAction::Drop => {
                        req.status = 0;
                        inner.state().requests.push(req);
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    FaultAction::Fail(st) => (st, error_body(&req.path, st), vec![]),
                    FaultAction::None => handle(inner, &req),
                }
            }
        };
        req.status = status;
        req.response = body.clone();
        inner.state().requests.push(req);
        if write_response(&mut stream, status, &body, close, &extra).is_err() || close {
            return;
        }
    }
}

enum FaultAction {
    None,
    Fail(u16),
    Drop,
}

fn decide_fault(inner: &Inner, _req: &Request) -> (Duration, FaultAction) {
    let mut f = inner.faults();
    let delay = f.delay;
    if f.drop_next > 0 {
        f.drop_next -= 1;
        return (delay, FaultAction::Drop);
    }
    if f.fail_next > 0 {
        f.fail_next -= 1;
        return (delay, FaultAction::Fail(f.fail_next_status));
    }
    if let Some((until, st)) = f.fail_until {
        if Instant::now() < until {
            return (delay, FaultAction::Fail(st));
        }
        f.fail_until = None;
    }
    (delay, FaultAction::None)
}

fn is_hec(path: &str) -> bool {
    matches!(path, "/services/collector/event" | "/services/collector/event/1.0" | "/services/collector")
}

fn is_bulk(path: &str) -> bool {
    path == "/_bulk" || (path.ends_with("/_bulk") && path.matches('/').count() == 2)
}

/// A contract-shaped error body for an injected failure status.
fn error_body(path: &str, status: u16) -> String {
    if is_hec(path) {
        match status {
            503 => json!({"text": "Server is busy", "code": 9}),
            _ => json!({"text": "Internal server error", "code": 8}),
        }
        .to_string()
    } else if is_bulk(path) || path == "/" {
        let ty = if status == 429 { "es_rejected_execution_exception" } else { "unavailable_shards_exception" };
        json!({"error": {"root_cause": [{"type": ty, "reason": "mock: injected failure"}], "type": ty,
               "reason": "mock: injected failure"}, "status": status})
        .to_string()
    } else {
        json!({"error": "mock: injected failure", "status": status}).to_string()
    }
}

fn handle(inner: &Inner, req: &Request) -> (u16, String, Vec<(String, String)>) {
    let p = req.path.as_str();
    match (req.method.as_str(), p) {
        ("GET", "/services/collector/health") | ("GET", "/services/collector/health/1.0") => {
            (200, json!({"text": "HEC is healthy", "code": 17}).to_string(), vec![])
        }
        ("GET", "/") | ("HEAD", "/") => (
            200,
            json!({"name": "mock", "cluster_name": "mock", "version": {"number": "8.11.0", "build_flavor": "default"},
                   "tagline": "You Know, for Search"})
            .to_string(),
            vec![("X-elastic-product".to_string(), "Elasticsearch".to_string())],
        ),
        ("POST", p) if is_hec(p) => hec(inner, req),
        ("POST", p) if is_bulk(p) => bulk(inner, req),
        ("POST", _) => ndjson(inner, req),
        _ => (404, json!({"error": "not found"}).to_string(), vec![]),
    }
}

fn hec(inner: &Inner, req: &Request) -> (u16, String, Vec<(String, String)>) {
    let (token, partial, marker) = {
        let f = inner.faults();
        (f.hec_token.clone(), f.hec_partial_accept, f.marker.clone())
    };
    let auth = match req.header("authorization") {
        None => return (401, json!({"text": "Token is required", "code": 2}).to_string(), vec![]),
        Some(a) => a.to_string(),
    };
    let Some(given) = auth.strip_prefix("Splunk ") else {
        return (401, json!({"text": "Invalid authorization", "code": 3}).to_string(), vec![]);
    };
    if given.trim() != token {
        return (403, json!({"text": "Invalid token", "code": 4}).to_string(), vec![]);
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return (400, json!({"text": "No data", "code": 5}).to_string(), vec![]);
    }
    let mut events = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(&req.body).into_iter::<Value>();
    let mut start = 0usize;
    let mut error: Option<(usize, Value)> = None;
    loop {
        let i = events.len();
        let next = stream.next();
        let end = stream.byte_offset();
        let raw = &req.body[start.min(end)..end];
        start = end;
        match next {
            None => break,
            Some(Err(_)) => {
                error = Some((i, json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i})));
                break;
            }
            Some(Ok(v)) => {
                let marked = marker.as_ref().is_some_and(|m| contains(raw, m.as_bytes()));
                let bad = if !v.is_object() || marked {
                    Some(json!({"text": "Invalid data format", "code": 6, "invalid-event-number": i}))
                } else {
                    match v.get("event") {
                        None => Some(json!({"text": "Event field is required", "code": 12, "invalid-event-number": i})),
                        Some(Value::Null) => {
                            Some(json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": i}))
                        }
                        Some(Value::String(s)) if s.trim().is_empty() => {
                            Some(json!({"text": "Event field cannot be blank", "code": 13, "invalid-event-number": i}))
                        }
                        _ => None,
                    }
                };
                if let Some(b) = bad {
                    error = Some((i, b));
                    break;
                }
                events.push(v);
            }
        }
    }
    if let Some((_, body)) = error {
        if partial {
            inner.state().hec_events.extend(events);
        }
        return (400, body.to_string(), vec![]);
    }
    inner.state().hec_events.extend(events);
    (200, json!({"text": "Success", "code": 0}).to_string(), vec![])
}

fn es_request_error(status: u16, ty: &str, reason: &str) -> (u16, String, Vec<(String, String)>) {
    (
        status,
        json!({"error": {"root_cause": [{"type": ty, "reason": reason}], "type": ty, "reason": reason}, "status": status})
            .to_string(),
        vec![],
    )
}

fn bulk(inner: &Inner, req: &Request) -> (u16, String, Vec<(String, String)>) {
    let started = Instant::now();
    let ct = req.header("content-type").unwrap_or("").to_string();
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if mime != "application/json" && mime != "application/x-ndjson" {
        return (
            406,
            json!({"error": format!("Content-Type header [{ct}] is not supported"), "status": 406}).to_string(),
            vec![],
        );
    }
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return es_request_error(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;");
    }
    if req.body.last() != Some(&b'\n') {
        return es_request_error(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]");
    }
    let path_index = req.path.strip_suffix("/_bulk").map(|s| s.trim_start_matches('/')).filter(|s| !s.is_empty());
    // Parse every pair first: a malformed action line fails the whole request, as in ES.
    struct Op {
        action: String,
        index: String,
        id: Option<String>,
        raw: Vec<u8>,
    }
    let mut ops = Vec::new();
    let mut lines = req.body.split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace));
    while let Some((ln, line)) = lines.next() {
        let meta: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => return es_request_error(400, "x_content_parse_exception", &format!("[{}:1] {e}", ln + 1)),
        };
        let Some((action, params)) = meta.as_object().and_then(|o| (o.len() == 1).then(|| o.iter().next()).flatten()) else {
            return es_request_error(400, "illegal_argument_exception", &format!("Malformed action/metadata line [{}]", ln + 1));
        };
        if action != "create" && action != "index" {
            return es_request_error(
                400,
                "illegal_argument_exception",
                &format!(
                    "Malformed action/metadata line [{}], expected one of [create, index] (mock) but found [{action}]",
                    ln + 1
                ),
            );
        }
        let index = params.get("_index").and_then(Value::as_str).map(str::to_string).or(path_index.map(str::to_string));
        let Some(index) = index else {
            return es_request_error(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;");
        };
        let id = params.get("_id").and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_u64().map(|n| n.to_string())));
        let Some((_, src)) = lines.next() else {
            return es_request_error(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]");
        };
        ops.push(Op { action: action.clone(), index, id, raw: src.to_vec() });
    }
    let marker = inner.faults().marker.clone();
    let mut items = Vec::new();
    let mut errors = false;
    let mut st = inner.state();
    for op in ops {
        st.es_items_seen += 1;
        let seen = st.es_items_seen;
        let id = op.id.clone().unwrap_or_else(|| {
            st.es_seq += 1;
            format!("auto-{}", st.es_seq)
        });
        let source: Result<Value, String> = serde_json::from_slice(&op.raw).map_err(|e| e.to_string());
        let reject_429 = {
            let mut f = inner.faults();
            match f.item_429.clone() {
                ItemSelector::None => false,
                ItemSelector::Containing(s) => contains(&op.raw, s.as_bytes()),
                ItemSelector::NextN(n) => {
                    f.item_429 = if n <= 1 { ItemSelector::None } else { ItemSelector::NextN(n - 1) };
                    n > 0
                }
                ItemSelector::EveryNth(n) => n > 0 && seen % n == 0,
            }
        };
        let (status, item) = if reject_429 {
            let reason = "rejected execution of coordinating operation [mock: injected 429]";
            (429, json!({"_index": op.index, "_id": id, "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": reason}}))
        } else if source.is_err() || !source.as_ref().unwrap().is_object() || marker.as_ref().is_some_and(|m| contains(&op.raw, m.as_bytes())) {
            let reason = match &source {
                Err(e) => format!("failed to parse: {e}"),
                Ok(_) => "failed to parse (mock: rejected record)".to_string(),
            };
            (400, json!({"_index": op.index, "_id": id, "status": 400,
                "error": {"type": "mapper_parsing_exception", "reason": reason}}))
        } else {
            let key = (op.index.clone(), id.clone());
            let src = source.clone().unwrap();
            st.es_seq += 1;
            let seq = st.es_seq;
            match (op.action.as_str(), st.es_docs.get_mut(&key)) {
                ("create", Some(doc)) => {
                    let reason = format!("[{id}]: version conflict, document already exists (current version [{}])", doc.version);
                    (409, json!({"_index": op.index, "_id": id, "status": 409,
                        "error": {"type": "version_conflict_engine_exception", "reason": reason,
                                  "index": op.index, "shard": "0", "index_uuid": "mock-uuid"}}))
                }
                (_, Some(doc)) => {
                    doc.version += 1;
                    doc.source = src;
                    (200, json!({"_index": op.index, "_id": id, "_version": doc.version, "result": "updated",
                        "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq, "_primary_term": 1,
                        "status": 200}))
                }
                (_, None) => {
                    st.es_docs.insert(key.clone(), EsDoc { index: op.index.clone(), id: id.clone(), source: src, version: 1 });
                    st.es_order.push(key);
                    (201, json!({"_index": op.index, "_id": id, "_version": 1, "result": "created",
                        "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq, "_primary_term": 1,
                        "status": 201}))
                }
            }
        };
        errors |= status >= 300;
        st.es_items.push(BulkItem {
            action: op.action.clone(),
            index: op.index.clone(),
            id,
            status,
            source: source.unwrap_or(Value::Null),
        });
        items.push(json!({ op.action: item }));
    }
    drop(st);
    let took = started.elapsed().as_millis() as u64;
    (200, json!({"took": took, "errors": errors, "items": items}).to_string(), vec![])
}

fn ndjson(inner: &Inner, req: &Request) -> (u16, String, Vec<(String, String)>) {
    let marker = inner.faults().marker.clone();
    let mut recs = Vec::new();
    for (i, line) in req.body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if marker.as_ref().is_some_and(|m| contains(line, m.as_bytes())) {
            return (400, json!({"error": format!("line {} rejected (mock marker)", i + 1)}).to_string(), vec![]);
        }
        match serde_json::from_slice::<Value>(line) {
            Ok(v) => recs.push(v),
            Err(e) => return (400, json!({"error": format!("line {} is not JSON: {e}", i + 1)}).to_string(), vec![]),
        }
    }
    let n = recs.len();
    inner.state().ndjson.extend(recs.into_iter().map(|v| (req.path.clone(), v)));
    (200, json!({"ok": true, "records": n}).to_string(), vec![])
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        406 => "Not Acceptable",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn write_response(
    stream: &mut TcpStream,
    status: u16,
    body: &str,
    close: bool,
    extra: &[(String, String)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out)?;
    stream.flush()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || find(hay, needle).is_some()
}
