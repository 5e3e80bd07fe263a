//! Input: turns one line, in any shape rsyslog or CloudWatch produces, into one [`Event`].
//!
//! Shapes are detected per line, never configured (see `docs/event-schema.md`, "Input"):
//! our envelope (versions 3 and 2, tab-separated, or version 1, JSON), a bare Qumulo body (CSV or JSON), a CloudWatch `message` object or export
//! object, a row of the CloudWatch console's ASCII table, and any of those behind a syslog header
//! (RFC 5424, RFC 3164, `RSYSLOG_FileFormat`, `RSYSLOG_TraditionalFileFormat`). The [`Parser`]
//! keeps its buffers and the classifier's memory across lines.
//!
//! This file dispatches on the shape; each shape has its own module: `syslog` (headers), `csv`,
//! `json` (syslog JSON, CloudWatch objects, the general envelope path), `envelope` (our rsyslog
//! envelope and its fast path), `cloudwatch` (timestamps and table rows). Whatever the shape,
//! the event's fields are then checked against their types in one place, `fields`, and the id
//! is derived in `id`.

mod cloudwatch;
pub mod csv;
mod envelope;
pub mod fields;
mod id;
pub mod json;
mod scan;
pub mod syslog;

pub use cloudwatch::MAX_EPOCH_MILLIS;
pub use envelope::{v2_line_gap, V2Gap};
pub use id::line_hash;

use std::fmt;

use crate::classify::Classifier;
use crate::event::Event;
use crate::time::Timestamp;

use self::cloudwatch::{cloudwatch_millis, cloudwatch_time};
use self::syslog::{parse_header, HeaderResult};

/// Default longest line accepted (bytes, without the newline).
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Why a line was not an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseError {}

fn err<T>(reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { reason: reason.into() })
}

/// A line that was understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// `ev` now holds an event.
    Event,
    /// Not an event and not an error: an empty line, or a CloudWatch table border or header.
    Skip,
}

/// How the cluster name is chosen when the line does not carry one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClusterSource {
    /// Leave it empty.
    #[default]
    None,
    /// Always this name (`--cluster`, `[cluster] name`). The envelope's `cluster` still wins.
    Fixed(String),
    /// From the sending node's hostname `<cluster>-<node>` (`q-varonis-1` -> `q-varonis`).
    FromHostname,
}

/// Parser options.
#[derive(Clone, Debug)]
pub struct ParserOptions {
    pub max_line: usize,
    pub cluster: ClusterSource,
    pub type_cache_entries: usize,
}

impl Default for ParserOptions {
    fn default() -> Self {
        ParserOptions {
            max_line: DEFAULT_MAX_LINE,
            cluster: ClusterSource::None,
            type_cache_entries: crate::classify::DEFAULT_TYPE_CACHE_ENTRIES,
        }
    }
}

/// Line parser with reusable state. One per thread.
pub struct Parser {
    opts: ParserOptions,
    csv: csv::CsvParser,
    pub classifier: Classifier,
    now: Timestamp,
    lines_since_now: u32,
    /// Set by [`Parser::set_now`]: "now" is fixed and never refreshed from the clock.
    now_pinned: bool,
    /// Reused buffers for the envelope's message, uuid (as read, and as handed to the id) and
    /// time, so an envelope costs no allocation (taken while in use: a nested envelope simply
    /// gets fresh ones).
    env_msg: String,
    env_uuid: String,
    env_uuid_raw: String,
    env_time: String,
    /// The last envelope time read and its value.
    env_time_last: (String, Timestamp),
    /// Off in tests, to compare the envelope fast path with the general JSON path.
    envelope_fast_path: bool,
    /// Reused buffer for the id hash input (cluster, NUL, line): one-shot xxh3 over a
    /// contiguous buffer is much cheaper than the streaming hasher for lines this short.
    hash_input: Vec<u8>,
    /// Reused buffer for the version 2 line of a numbered version 3 line (its id).
    v2_line: Vec<u8>,
}

impl Parser {
    pub fn new(opts: ParserOptions) -> Parser {
        let classifier = Classifier::new(opts.type_cache_entries);
        Parser {
            opts,
            csv: csv::CsvParser::default(),
            classifier,
            now: Timestamp::now(),
            lines_since_now: 0,
            now_pinned: false,
            env_msg: String::new(),
            env_uuid: String::new(),
            env_uuid_raw: String::new(),
            env_time: String::new(),
            env_time_last: (String::new(), Timestamp { secs: 0, nanos: 0, frac_digits: 0 }),
            envelope_fast_path: true,
            hash_input: Vec::with_capacity(1024),
            v2_line: Vec::new(),
        }
    }

    /// The longest line accepted, in bytes.
    pub fn max_line(&self) -> usize {
        self.opts.max_line
    }

    /// Fixes "now" (for RFC 3164 year inference) for reproducible tests. It stays fixed for
    /// the parser's lifetime (it is no longer refreshed from the clock every 64k lines).
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
        self.lines_since_now = 0;
        self.now_pinned = true;
    }

    /// Parses one line (a trailing `\n` / `\r\n` is ignored) into `ev`.
    pub fn parse(&mut self, line: &[u8], ev: &mut Event) -> Result<Parsed, ParseError> {
        ev.clear();
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.opts.max_line {
            return err(format!("line is {} bytes, longer than the maximum of {}", line.len(), self.opts.max_line));
        }
        if let Some(pos) = memchr::memchr(0, line) {
            return err(format!("line holds a NUL byte at offset {pos}"));
        }
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            Err(e) => return err(format!("line is not valid UTF-8 (at byte {})", e.valid_up_to())),
        };
        // A byte order mark may open a line written by a Windows relay or a file.
        let text = if text.as_bytes().starts_with("\u{feff}".as_bytes()) { &text[3..] } else { text };
        let trimmed = text.trim_matches(|c| c == ' ' || c == '\t');
        if trimmed.is_empty() {
            return Ok(Parsed::Skip);
        }
        self.refresh_now();
        let mut meta = LineMeta::default();
        let parsed = self.parse_shape(trimmed, ev, &mut meta, 0)?;
        if parsed == Parsed::Skip {
            return Ok(Parsed::Skip);
        }
        if ev.time.is_none() {
            ev.time = meta.time;
        }
        if ev.node.is_empty() {
            ev.node.push_str(meta.hostname);
        }
        if ev.cluster.is_empty() {
            match &self.opts.cluster {
                ClusterSource::None => {}
                ClusterSource::Fixed(name) => ev.cluster.push_str(name),
                ClusterSource::FromHostname => {
                    if let Some(c) = cluster_from_hostname(&ev.node) {
                        ev.cluster.push_str(c);
                    }
                }
            }
        }
        match meta.uuid.take() {
            Some(uuid) if !uuid.is_empty() => {
                ev.id.push_str(&uuid);
                self.env_uuid = uuid;
            }
            _ if meta.v2_id => {
                let mut v2 = std::mem::take(&mut self.v2_line);
                let line = if envelope::v2_line_of_v3(line, &mut v2) { &v2[..] } else { line };
                id::push_hash_id(&mut ev.id, &mut self.hash_input, &ev.cluster, line);
                self.v2_line = v2;
            }
            _ => id::push_hash_id(&mut ev.id, &mut self.hash_input, &ev.cluster, line),
        }
        fields::check(ev).map_err(|reason| ParseError { reason })?;
        self.classifier.classify(ev);
        Ok(Parsed::Event)
    }

    fn refresh_now(&mut self) {
        // Year inference needs only a coarse "now": refresh it every 64k lines.
        if self.now_pinned {
            return;
        }
        self.lines_since_now = self.lines_since_now.wrapping_add(1);
        if self.lines_since_now == 65_536 {
            self.now = Timestamp::now();
            self.lines_since_now = 0;
        }
    }

    /// Detects the shape of `s` and fills `ev`; `depth` bounds envelope/header nesting.
    fn parse_shape<'a>(&mut self, s: &'a str, ev: &mut Event, meta: &mut LineMeta<'a>, depth: u8) -> Result<Parsed, ParseError> {
        if depth > 3 {
            return err("too many nested envelopes or headers");
        }
        match s.as_bytes()[0] {
            b'{' => {
                if self.envelope_fast_path {
                    if let Some(result) = self.parse_envelope_fast(s, ev, meta, depth) {
                        return result;
                    }
                }
                self.parse_json(s, ev, meta, depth)
            }
            b'Q' if s.starts_with(envelope::V3_PREFIX) => self.parse_envelope_v3(s, ev, meta, depth),
            b'Q' if s.starts_with(envelope::V2_PREFIX) => self.parse_envelope_v2(s, ev, meta, depth),
            b'|' => self.parse_cloudwatch_row(s, ev, meta, depth),
            b'-' if s.bytes().all(|b| b == b'-') => Ok(Parsed::Skip),
            _ => match parse_header(s, &self.now) {
                HeaderResult::Found(h) => {
                    if meta.time.is_none() {
                        meta.time = h.time;
                    }
                    if meta.hostname.is_empty() {
                        meta.hostname = h.hostname;
                    }
                    if h.body.is_empty() {
                        return err("syslog message has an empty body");
                    }
                    let parsed = if h.body.starts_with('{') { self.parse_json(h.body, ev, meta, depth + 1) } else { self.parse_csv(h.body, ev) };
                    // A line another program logged (sshd, cron) says so, not "bad CSV".
                    match parsed {
                        Err(e) if !h.app.is_empty() && !h.app.eq_ignore_ascii_case("qumulo") => {
                            err(format!("not a Qumulo audit line (logged by {:?}): {}", h.app, e.reason))
                        }
                        other => other,
                    }
                }
                HeaderResult::Malformed(why) => err(why),
                HeaderResult::None => self.parse_csv(s, ev),
            },
        }
    }

    fn parse_csv(&mut self, body: &str, ev: &mut Event) -> Result<Parsed, ParseError> {
        match self.csv.parse(body, ev) {
            Ok(()) => Ok(Parsed::Event),
            Err(reason) => err(reason),
        }
    }

    fn parse_json<'a>(&mut self, s: &'a str, ev: &mut Event, meta: &mut LineMeta<'a>, depth: u8) -> Result<Parsed, ParseError> {
        let mut scratch = String::new();
        let seen = json::parse_object(s, &mut scratch, ev).map_err(|reason| ParseError { reason })?;
        fn text_of(raw: Option<&serde_json::value::RawValue>) -> Result<Option<json::Text<'_>>, ParseError> {
            raw.map(json::raw_text).transpose().map_err(|reason| ParseError { reason })
        }
        if let Some(msg) = seen.msg {
            // Our envelope: keep its metadata, parse the message it carries.
            let time = text_of(seen.envelope_time)?;
            let uuid = text_of(seen.uuid)?;
            return self.finish_envelope(ev, meta, time.as_ref().map(|t| t.0.as_ref()), uuid.as_ref().map(|u| u.0.as_ref()), &msg.0, depth);
        }
        if let Some(message) = seen.cw_message {
            // CloudWatch export object: {"timestamp": ms, "message": "{...}"}, validated as a
            // table row's timestamp is.
            let Some(ts) = seen.cw_timestamp else {
                return err("CloudWatch export object has no timestamp");
            };
            let ts = json::raw_scalar(ts).map_err(|reason| ParseError { reason })?;
            let ms = Some(cloudwatch_millis(&ts)?);
            let body = message.0.into_owned();
            ev.clear();
            if !body.trim_start().starts_with('{') {
                return err("CloudWatch message is not a JSON object");
            }
            let seen_inner = json::parse_object(body.trim(), &mut scratch, ev).map_err(|reason| ParseError { reason })?;
            return self.finish_json(&seen_inner, ev, ms);
        }
        self.finish_json(&seen, ev, None)
    }

    fn finish_json(&mut self, seen: &json::Seen<'_>, ev: &mut Event, cw_ms: Option<i64>) -> Result<Parsed, ParseError> {
        let Some(fmt) = json::source_format(seen) else {
            return err("JSON object is not a Qumulo audit record (no user_id/status or ip_address/result keys)");
        };
        ev.source_format = fmt;
        if ev.operation.is_empty() {
            return err("audit record has no operation");
        }
        if ev.status.is_empty() {
            return err("audit record has no status");
        }
        if let Some(ms) = cw_ms {
            ev.time = Some(cloudwatch_time(ms)?);
        }
        Ok(Parsed::Event)
    }

}

/// What headers and envelopes around the body said.
#[derive(Default)]
struct LineMeta<'a> {
    time: Option<Timestamp>,
    hostname: &'a str,
    uuid: Option<String>,
    /// A version 3 line numbered by mmsequence: its id is that of its version 2 line.
    v2_id: bool,
}

/// `q-varonis-1` -> `q-varonis`: the part before the last `-` when what follows is a number.
pub fn cluster_from_hostname(host: &str) -> Option<&str> {
    let (cluster, node) = host.rsplit_once('-')?;
    (!cluster.is_empty() && !node.is_empty() && node.bytes().all(|b| b.is_ascii_digit())).then_some(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339_prefix;

    #[test]
    fn another_programs_line_is_named_as_such() {
        let mut p = Parser::new(ParserOptions::default());
        let mut ev = Event::default();
        for (line, app) in [
            ("<38>Dec  2 10:00:00 host sshd[123]: Accepted password for root from 10.0.0.1 port 22 ssh2", "sshd"),
            ("<134>1 2026-12-02T10:00:00Z host cron 1 - - job done", "cron"),
        ] {
            let e = p.parse(line.as_bytes(), &mut ev).unwrap_err();
            assert!(e.reason.starts_with(&format!("not a Qumulo audit line (logged by \"{app}\")")), "{}", e.reason);
        }
        // Qumulo's own tag, or none: the CSV error itself.
        let e = p.parse(b"<134>Dec  2 10:00:00 host qumulo: 1,2", &mut ev).unwrap_err();
        assert!(e.reason.starts_with("expected 8 CSV fields"), "{}", e.reason);
        assert!(p.parse(b"<134>Dec  2 10:00:00 host qumulo: 10.0.0.1,\"u\",nfs3,fs_read_data,ok,1,\"/a\",\"\"", &mut ev).is_ok());
    }

    #[test]
    fn cluster_names_from_hostnames() {
        assert_eq!(cluster_from_hostname("q-varonis-1"), Some("q-varonis"));
        assert_eq!(cluster_from_hostname("prod-12"), Some("prod"));
        assert_eq!(cluster_from_hostname("lonely"), None);
        assert_eq!(cluster_from_hostname("a-b"), None);
        assert_eq!(cluster_from_hostname("-1"), None);
    }

    #[test]
    fn set_now_stays_fixed_past_the_refresh_interval() {
        let mut p = Parser::new(ParserOptions::default());
        let now = parse_rfc3339_prefix(b"2020-03-01T00:00:00Z").unwrap().0;
        p.set_now(now);
        let mut ev = Event::default();
        for _ in 0..70_000 {
            p.parse(b"", &mut ev).unwrap();
            p.parse(b"Jun 6 14:52:28 h qumulo 1.1.1.1,\"u\",api,fs_open,ok,1,\"/p\",\"\"", &mut ev).unwrap();
        }
        // June 2020 lies in the future of the pinned "now", so the year is 2019.
        assert_eq!(ev.time.unwrap().to_rfc3339(), "2019-06-06T14:52:28Z");
    }


}
