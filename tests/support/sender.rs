//! Numbered Qumulo audit lines and a TCP sender for them.
//!
//! Each generated event carries its number `n` in the path `/share/file-<n>.txt` (and in the
//! file id), so whatever a destination received can be mapped back to the events sent:
//! [`event_number`] finds the number in any delivered record (raw line, JSON, CEF, ...), and
//! [`Tally`] counts which numbers arrived, which are missing and which came more than once.
//!
//! Lines are framed as Qumulo sends them, RFC 3164 over TCP with a newline after each:
//! `<134>Jun  6 14:52:28 q-node-1 qumulo <body>`.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The RFC 3164 header Qumulo puts before each body (PRI 134 = local0.info).
pub const SYSLOG_PREFIX: &str = "<134>Jun  6 14:52:28 q-node-1 qumulo ";

/// Which Qumulo body shape to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `10.0.0.1,"AD\alice",smb2,fs_write_data,ok,<n>,"/share/file-<n>.txt",""`
    Csv,
    /// A JSON object with valid escapes (`"AD\\alice"`).
    Json,
    /// The JSON object as some Qumulo versions write it, with a lone backslash (`"AD\alice"`),
    /// which is not strict JSON.
    JsonLoneBackslash,
}

/// The CSV body of event `n`.
pub fn csv_body(n: u64) -> String {
    format!("10.0.0.1,\"AD\\alice\",smb2,fs_write_data,ok,{n},\"/share/file-{n}.txt\",\"\"")
}

/// The JSON body of event `n` (strict JSON).
pub fn json_body(n: u64) -> String {
    format!(
        concat!(
            r#"{{"user_ip":"10.0.0.1","user_id":{{"name":"AD\\alice","auth_id":"500","sid":"S-1-5-21-1-2-3-500"}},"#,
            r#""protocol":"smb2","operation":"fs_write_data","status":"ok","#,
            r#""details":{{"file_id":"{n}","path":"/share/file-{n}.txt","target":""}}}}"#
        ),
        n = n
    )
}

/// The body of event `n` in `shape`.
pub fn body(shape: Shape, n: u64) -> String {
    match shape {
        Shape::Csv => csv_body(n),
        Shape::Json => json_body(n),
        Shape::JsonLoneBackslash => json_body(n).replace(r"AD\\alice", r"AD\alice"),
    }
}

/// `body` framed as Qumulo sends it: [`SYSLOG_PREFIX`] + body (no newline).
pub fn syslog_line(body: &str) -> String {
    format!("{SYSLOG_PREFIX}{body}")
}

/// The framed syslog line of event `n` (no newline).
pub fn qumulo_line(shape: Shape, n: u64) -> String {
    syslog_line(&body(shape, n))
}

/// Framed lines for every number in `range`.
pub fn qumulo_lines(shape: Shape, range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|n| qumulo_line(shape, n)).collect()
}

/// The event number in a delivered record: the digits in the first `file-<n>.txt`. `None` if
/// the record has none.
pub fn event_number(record: &str) -> Option<u64> {
    let mut rest = record;
    while let Some(i) = rest.find("file-") {
        let after = &rest[i + 5..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(".txt") {
            return after[..digits].parse().ok();
        }
        rest = after;
    }
    None
}

/// Counts event numbers seen in delivered records.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// number -> how many times it arrived
    pub counts: BTreeMap<u64, usize>,
    /// records in which no event number was found
    pub unnumbered: Vec<String>,
}

impl Tally {
    /// Tallies the event numbers of `records`.
    pub fn of<S: AsRef<str>>(records: impl IntoIterator<Item = S>) -> Tally {
        let mut t = Tally::default();
        for r in records {
            match event_number(r.as_ref()) {
                Some(n) => *t.counts.entry(n).or_default() += 1,
                None => t.unnumbered.push(r.as_ref().to_string()),
            }
        }
        t
    }
    /// Numbers in `expected` that never arrived.
    pub fn missing(&self, expected: std::ops::Range<u64>) -> Vec<u64> {
        expected.filter(|n| !self.counts.contains_key(n)).collect()
    }
    /// Numbers that arrived more than once, with their counts.
    pub fn duplicates(&self) -> Vec<(u64, usize)> {
        self.counts.iter().filter(|(_, &c)| c > 1).map(|(&n, &c)| (n, c)).collect()
    }
    /// Numbers that arrived but are outside `expected`.
    pub fn unexpected(&self, expected: std::ops::Range<u64>) -> Vec<u64> {
        self.counts.keys().copied().filter(|n| !expected.contains(n)).collect()
    }
    /// Distinct numbers seen.
    pub fn distinct(&self) -> usize {
        self.counts.len()
    }
    /// Panics (listing the first missing, duplicate and unexpected numbers) unless every number in
    /// `expected` arrived exactly once and nothing else arrived.
    pub fn assert_exactly_once(&self, expected: std::ops::Range<u64>) {
        let (m, d, u) = (self.missing(expected.clone()), self.duplicates(), self.unexpected(expected.clone()));
        if !m.is_empty() || !d.is_empty() || !u.is_empty() || !self.unnumbered.is_empty() {
            panic!(
                "expected events {expected:?} exactly once: {} missing (first {:?}), {} duplicated (first {:?}), \
                 {} unexpected (first {:?}), {} records without a number (first {:?})",
                m.len(),
                &m[..m.len().min(20)],
                d.len(),
                &d[..d.len().min(20)],
                u.len(),
                &u[..u.len().min(20)],
                self.unnumbered.len(),
                self.unnumbered.first()
            );
        }
    }
    /// Panics unless every number in `expected` arrived at least once (duplicates allowed).
    pub fn assert_at_least_once(&self, expected: std::ops::Range<u64>) {
        let m = self.missing(expected.clone());
        if !m.is_empty() {
            panic!("expected events {expected:?} at least once: {} missing (first {:?})", m.len(), &m[..m.len().min(20)]);
        }
    }
}

/// How lines are delimited on the TCP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `<msg>\n` (RFC 6587 non-transparent framing, what Qumulo sends).
    Newline,
    /// `<len> <msg>` (RFC 6587 octet counting).
    OctetCounted,
}

/// Sends `lines` to `addr` on one TCP connection, each followed by `\n` (one is not added if the
/// line already ends with it), as fast as the receiver takes them, then closes the connection.
/// Returns the number of lines sent. Panics if connecting or any write fails or stalls for 30 s.
pub fn send_lines<S: AsRef<str>>(addr: SocketAddr, lines: impl IntoIterator<Item = S>) -> usize {
    send_framed(addr, lines, Framing::Newline)
}

/// [`send_lines`] to `127.0.0.1:port`.
pub fn send_lines_to_port<S: AsRef<str>>(port: u16, lines: impl IntoIterator<Item = S>) -> usize {
    send_lines(SocketAddr::from(([127, 0, 0, 1], port)), lines)
}

/// Sends numbered Qumulo lines for `range` to `addr` (see [`qumulo_line`]).
pub fn send_qumulo(addr: SocketAddr, shape: Shape, range: std::ops::Range<u64>) -> usize {
    send_lines(addr, range.map(|n| qumulo_line(shape, n)))
}

/// Like [`send_lines`] with a choice of framing.
pub fn send_framed<S: AsRef<str>>(addr: SocketAddr, lines: impl IntoIterator<Item = S>, framing: Framing) -> usize {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("sender: cannot connect to {addr}: {e}"));
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("set write timeout");
    let _ = stream.set_nodelay(true);
    let mut w = BufWriter::with_capacity(64 * 1024, &stream);
    let mut sent = 0usize;
    for line in lines {
        let l = line.as_ref();
        let res = match framing {
            Framing::Newline => {
                if l.ends_with('\n') {
                    w.write_all(l.as_bytes())
                } else {
                    w.write_all(l.as_bytes()).and_then(|_| w.write_all(b"\n"))
                }
            }
            Framing::OctetCounted => write!(w, "{} {}", l.len(), l),
        };
        if let Err(e) = res {
            panic!("sender: write to {addr} failed after {sent} lines: {e}");
        }
        sent += 1;
    }
    if let Err(e) = w.flush() {
        panic!("sender: flush to {addr} failed after {sent} lines: {e}");
    }
    drop(w);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    sent
}
