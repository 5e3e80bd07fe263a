//! Input: turns one line, in any shape rsyslog or CloudWatch produces, into one [`Event`].
//!
//! Shapes are detected per line, never configured (see `docs/event-schema.md`, "Input"):
//! our JSON envelope, a bare Qumulo body (CSV or JSON), a CloudWatch `message` object or export
//! object, a row of the CloudWatch console's ASCII table, and any of those behind a syslog header
//! (RFC 5424, RFC 3164, `RSYSLOG_FileFormat`, `RSYSLOG_TraditionalFileFormat`). The [`Parser`]
//! keeps its buffers and the classifier's memory across lines.

pub mod csv;
pub mod fields;
pub mod json;
mod scan;
pub mod syslog;

use std::fmt;

use xxhash_rust::xxh3::xxh3_128;

use crate::classify::Classifier;
use crate::event::{Event, SourceFormat};
use crate::time::{parse_rfc3339_prefix, Timestamp};

use self::syslog::{parse_header, HeaderResult};

/// Latest epoch millisecond a CloudWatch timestamp may hold: 9999-12-31T23:59:59.999Z, the last
/// instant RFC 3339 can write. Earlier than the epoch is refused too.
pub const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;

/// A CloudWatch epoch-millisecond timestamp, refused outside 1970..=9999.
fn cloudwatch_time(ms: i64) -> Result<Timestamp, ParseError> {
    if (0..=MAX_EPOCH_MILLIS).contains(&ms) {
        Ok(Timestamp::from_epoch_millis(ms))
    } else {
        err(format!("CloudWatch timestamp {ms} is out of range (1970 to 9999)"))
    }
}

/// A CloudWatch timestamp's text: epoch milliseconds, an integer as CloudWatch writes it (a
/// fraction, an exponent, a `+` or spaces are refused, in every CloudWatch shape alike; the
/// range is checked by [`cloudwatch_time`]).
fn cloudwatch_millis(ts: &str) -> Result<i64, ParseError> {
    let digits = ts.strip_prefix('-').unwrap_or(ts);
    if digits.is_empty() || digits.len() > 40 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!("CloudWatch timestamp {} is not epoch milliseconds", fields::shown(ts)));
    }
    match ts.parse::<i64>() {
        Ok(ms) => Ok(ms),
        Err(_) => err(format!("CloudWatch timestamp {ts} is out of range (1970 to 9999)")),
    }
}

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
    /// Off in tests, to compare the envelope fast path with the general JSON path.
    envelope_fast_path: bool,
    /// Reused buffer for the id hash input (cluster, NUL, line): one-shot xxh3 over a
    /// contiguous buffer is much cheaper than the streaming hasher for lines this short.
    hash_input: Vec<u8>,
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
            envelope_fast_path: true,
            hash_input: Vec::with_capacity(1024),
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
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
            _ => {
                let buf = &mut self.hash_input;
                buf.clear();
                buf.extend_from_slice(ev.cluster.as_bytes());
                buf.push(0);
                buf.extend_from_slice(line);
                write_hex128(&mut ev.id, xxh3_128(buf));
            }
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
                    if h.body.starts_with('{') {
                        self.parse_json(h.body, ev, meta, depth + 1)
                    } else {
                        self.parse_csv(h.body, ev)
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

    /// The envelope's fields are in `ev` (cluster, node, fromhost_ip); `time`, `uuid` and `msg`
    /// are its other values. Parses the message it carries and merges the two.
    fn finish_envelope(
        &mut self,
        ev: &mut Event,
        meta: &mut LineMeta<'_>,
        time: Option<&str>,
        uuid: Option<&str>,
        msg: &str,
        depth: u8,
    ) -> Result<Parsed, ParseError> {
        let cluster = std::mem::take(&mut ev.cluster);
        let node = std::mem::take(&mut ev.node);
        let fromhost = std::mem::take(&mut ev.fromhost_ip);
        let restore = |ev: &mut Event, cluster: String, node: String, fromhost: String| {
            if !cluster.is_empty() {
                ev.cluster = cluster;
            }
            if ev.node.is_empty() {
                ev.node = node;
            }
            ev.fromhost_ip = fromhost;
        };
        // (The early errors leave the envelope's cluster, node and fromhost_ip out of `ev`.)
        if let Some(t) = time.filter(|t| !t.is_empty()) {
            match parse_rfc3339_prefix(t.as_bytes()) {
                Some((ts, n)) if n == t.len() => meta.time = Some(ts),
                _ => return err(format!("envelope time {t:?} is not RFC 3339")),
            }
        }
        if let Some(u) = uuid {
            if !u.is_empty() && !is_envelope_uuid(u) {
                return err(format!("envelope uuid {} is not an id (1 to 64 letters, digits and '-')", fields::shown(u)));
            }
            let mut buf = std::mem::take(&mut self.env_uuid);
            buf.clear();
            buf.push_str(u);
            meta.uuid = Some(buf);
        }
        if memchr::memchr2(b'\n', b'\r', msg.as_bytes()).is_some() {
            return err("envelope message holds a line break (rsyslog escapes them on receipt; this one was not received as one message)");
        }
        let body = msg.trim_matches(|c| c == ' ' || c == '\t');
        let body = body.strip_prefix('\u{feff}').unwrap_or(body);
        if body.is_empty() {
            return err("envelope message is empty");
        }
        ev.clear();
        let result = {
            let mut inner = LineMeta { time: meta.time, hostname: "", uuid: None };
            let r = self.parse_shape(body, ev, &mut inner, depth + 1);
            if meta.time.is_none() {
                meta.time = inner.time;
            }
            if ev.node.is_empty() && node.is_empty() {
                ev.node.push_str(inner.hostname);
            }
            r
        };
        restore(ev, cluster, node, fromhost);
        match result? {
            Parsed::Skip => err("envelope message is not an audit record"),
            Parsed::Event => Ok(Parsed::Event),
        }
    }

    /// The envelope exactly as our rsyslog template renders it, read without serde: one JSON
    /// object, no whitespace between tokens, each of the keys `v` (digits), `cluster`,
    /// `fromhost_ip`, `hostname`, `time`, `uuid` and `msg` (strings) at most once, in any order,
    /// `msg` present, strings with only the escapes `\" \\ \/ \b \f \n \r \t` and no
    /// control characters. `None` for anything else (another key, `\u` escapes, whitespace, a
    /// CloudWatch or Qumulo object...): the general JSON path then reads it, with the same result
    /// for everything this accepts (a test compares the two).
    fn parse_envelope_fast(
        &mut self,
        s: &str,
        ev: &mut Event,
        meta: &mut LineMeta<'_>,
        depth: u8,
    ) -> Option<Result<Parsed, ParseError>> {
        let b = s.as_bytes();
        if b.len() < 2 || b[0] != b'{' || b[b.len() - 1] != b'}' {
            return None;
        }
        let mut msg = std::mem::take(&mut self.env_msg);
        let mut uuid = std::mem::take(&mut self.env_uuid_raw);
        let mut time = std::mem::take(&mut self.env_time);
        let mut seen = 0u8;
        let ok = (|| -> Option<()> {
            let mut i = 1;
            loop {
                // "key":
                let (key_end, next) = plain_key(b, i)?;
                let key = &b[i + 1..key_end];
                i = next;
                let (bit, dst): (u8, Option<&mut String>) = match key {
                    b"v" => (1, None),
                    b"cluster" => (2, Some(&mut ev.cluster)),
                    b"fromhost_ip" => (4, Some(&mut ev.fromhost_ip)),
                    b"hostname" => (8, Some(&mut ev.node)),
                    b"time" => (16, Some(&mut time)),
                    b"uuid" => (32, Some(&mut uuid)),
                    b"msg" => (64, Some(&mut msg)),
                    _ => return None,
                };
                if seen & bit != 0 {
                    return None;
                }
                seen |= bit;
                match dst {
                    None => {
                        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                        if digits == 0 {
                            return None;
                        }
                        // As the general path does with a key it does not model (the envelope
                        // code clears it again; it is seen only if the envelope is refused).
                        ev.details.push(if ev.details.is_empty() { '{' } else { ',' });
                        ev.details.push_str("\"v\":");
                        ev.details.push_str(&s[i..i + digits]);
                        i += digits;
                    }
                    Some(dst) => {
                        dst.clear();
                        i = unescape_json_string(s, i, dst)?;
                    }
                }
                match b.get(i)? {
                    b',' => i += 1,
                    b'}' if i == b.len() - 1 => {
                        if !ev.details.is_empty() {
                            ev.details.push('}');
                        }
                        return Some(());
                    }
                    _ => return None,
                }
            }
        })();
        let result = if ok.is_some() && seen & 64 != 0 {
            let time_opt = (seen & 16 != 0).then_some(time.as_str());
            let uuid_opt = (seen & 32 != 0).then_some(uuid.as_str());
            Some(self.finish_envelope(ev, meta, time_opt, uuid_opt, &msg, depth))
        } else {
            // Not ours to read: undo what was filled and let the general path start afresh.
            ev.cluster.clear();
            ev.fromhost_ip.clear();
            ev.node.clear();
            ev.details.clear();
            None
        };
        self.env_msg = msg;
        self.env_uuid_raw = uuid;
        self.env_time = time;
        result
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

    /// A row of the CloudWatch console's ASCII export: `| 1717679548000 | {...} |`.
    fn parse_cloudwatch_row<'a>(&mut self, s: &'a str, ev: &mut Event, meta: &mut LineMeta<'a>, depth: u8) -> Result<Parsed, ParseError> {
        let inner = s[1..].trim_start();
        // Header, border or separator row. A border holds nothing but '-', '|', '+' and spaces,
        // so a data row whose timestamp starts with '-' is an error, not silently skipped.
        let border = inner.bytes().all(|b| matches!(b, b'-' | b'|' | b'+' | b' '));
        if border || inner.starts_with("timestamp") {
            return Ok(Parsed::Skip);
        }
        let Some((ts, rest)) = inner.split_once('|') else {
            return err("CloudWatch table row has no message column");
        };
        let row_time = cloudwatch_time(cloudwatch_millis(ts.trim())?)?;
        let msg = rest.trim();
        let msg = msg.strip_suffix('|').unwrap_or(msg).trim_end();
        if !msg.starts_with('{') {
            return err("CloudWatch table row message is not a JSON object");
        }
        let parsed = self.parse_json(msg, ev, meta, depth + 1)?;
        if ev.source_format != SourceFormat::CloudWatch && ev.time.is_some() {
            return Ok(parsed);
        }
        ev.time = Some(row_time);
        Ok(parsed)
    }
}

/// The envelope's `uuid`: rsyslog's `%uuid%` is 32 hex digits; any id of 1 to 64 letters,
/// digits and `-` is taken, nothing that could break out of a field of an output format.
fn is_envelope_uuid(u: &str) -> bool {
    u.len() <= 64 && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `"key":` at `i` with a key of plain ASCII letters and `_`: (index of the closing quote,
/// index after the colon).
fn plain_key(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let len = b[i + 1..].iter().take_while(|c| c.is_ascii_lowercase() || **c == b'_').count();
    let end = i + 1 + len;
    (b.get(end) == Some(&b'"') && b.get(end + 1) == Some(&b':')).then_some((end, end + 2))
}

/// Appends the contents of the JSON string starting with the quote at `s[i]` to `out` and
/// returns the index after its closing quote. `None` for a `\u` escape, an unknown escape or a
/// control character (the general path handles or rejects those).
fn unescape_json_string(s: &str, i: usize, out: &mut String) -> Option<usize> {
    use crate::format::jsonw::{word_needs_escape, NEEDS_ESCAPE};
    let b = s.as_bytes();
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut start = i + 1;
    let mut j = start;
    loop {
        // The next '"', '\\' or control character: eight plain bytes at a time, then bytewise.
        while j + 8 <= b.len() && !word_needs_escape(u64::from_le_bytes(b[j..j + 8].try_into().expect("8 bytes"))) {
            j += 8;
        }
        while j < b.len() && !NEEDS_ESCAPE[b[j] as usize] {
            j += 1;
        }
        let c = *b.get(j)?;
        if c < 0x20 {
            return None;
        }
        // Cut at ASCII bytes ('"' or '\\'): char boundaries.
        out.push_str(&s[start..j]);
        if c == b'"' {
            return Some(j + 1);
        }
        let c = match b.get(j + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            _ => return None,
        };
        out.push(c);
        j += 2;
        start = j;
    }
}

/// What headers and envelopes around the body said.
#[derive(Default)]
struct LineMeta<'a> {
    time: Option<Timestamp>,
    hostname: &'a str,
    uuid: Option<String>,
}

/// `q-varonis-1` -> `q-varonis`: the part before the last `-` when what follows is a number.
pub fn cluster_from_hostname(host: &str) -> Option<&str> {
    let (cluster, node) = host.rsplit_once('-')?;
    (!cluster.is_empty() && !node.is_empty() && node.bytes().all(|b| b.is_ascii_digit())).then_some(cluster)
}

fn write_hex128(out: &mut String, v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, slot) in buf.iter_mut().enumerate() {
        *slot = HEX[((v >> ((31 - i) * 4)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"));
}

/// Hash helper kept public for tests and tools that need the same id derivation.
pub fn line_hash(cluster: &str, line: &[u8]) -> String {
    let mut buf = Vec::with_capacity(cluster.len() + 1 + line.len());
    buf.extend_from_slice(cluster.as_bytes());
    buf.push(0);
    buf.extend_from_slice(line);
    let mut s = String::with_capacity(32);
    write_hex128(&mut s, xxh3_128(&buf));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn cloudwatch_timestamps_out_of_range_are_errors() {
        let mut p = Parser::new(ParserOptions::default());
        let mut ev = Event::default();
        let msg = r#"{\"ip_address\": \"1.2.3.4\", \"user\": \"u\", \"protocol\": \"api\", \"operation\": \"fs_read_data\", \"result\": \"ok\", \"object_id\": \"1\", \"path_1\": \"/x\", \"path_2\": \"\"}"#;
        for ms in ["-1", "-9223372036854775808", "253402300800000", "9223372036854775807"] {
            let export = format!(r#"{{"timestamp": {ms}, "message": "{msg}"}}"#);
            let e = p.parse(export.as_bytes(), &mut ev).unwrap_err();
            assert!(e.reason.contains("out of range"), "{e}");
            let row = format!("| {ms} | {} |", msg.replace("\\\"", "\""));
            let e = p.parse(row.as_bytes(), &mut ev).unwrap_err();
            assert!(e.reason.contains("out of range"), "{e}");
        }
        let export = format!(r#"{{"timestamp": 253402300799999, "message": "{msg}"}}"#);
        p.parse(export.as_bytes(), &mut ev).unwrap();
        assert_eq!(ev.time.unwrap().to_rfc3339(), "9999-12-31T23:59:59.999Z");
    }

    /// The envelope fast path gives exactly what the general JSON path gives (event, result and
    /// error text), on random envelopes and near-envelopes; and it does take the usual ones.
    #[test]
    fn envelope_fast_path_matches_the_json_path() {
        let now = parse_rfc3339_prefix(b"2026-03-01T00:00:00Z").unwrap().0;
        let mut fast = Parser::new(ParserOptions::default());
        let mut slow = Parser::new(ParserOptions::default());
        fast.set_now(now);
        slow.set_now(now);
        slow.envelope_fast_path = false;
        let bodies = [
            r#" 10.20.0.1,\"AD\\bob\",smb2,fs_list_directory,ok,100000,\"\/hr\/dir-0\/\",\"\""#,
            r#" {\"user_id\": {\"sid\": \"S-1-5\", \"auth_id\": \"1201\", \"name\": \"CORP\\\\carol\"}, \"user_ip\": \"10.21.0.2\", \"protocol\": \"smb2\", \"operation\": \"fs_read_data\", \"status\": \"ok\", \"details\": {\"file_id\": \"1\", \"path\": \"\/p\", \"size\": 7}}"#,
            r#"Jun  6 14:52:28 q-1 qumulo 1.2.3.4,\"u\",api,fs_open,ok,1,\"\/p\",\"\""#,
            r#"{\"v\":1,\"cluster\":\"inner\",\"msg\":\"1.2.3.4,u,api,fs_open,ok,1,\/p,\"}"#,
            r#" 10.20.0.1,"AD\bob",smb2,fs_list_directory,ok,1,"\/hr","""#,
            "", "  ", "not an audit line", r#"\u00e9"#, "a\tb", r#"{\"x\":1}"#,
        ];
        let strs = [
            "", "c1", "q-prod-1", "10.0.0.5", "2024-06-06T14:52:00+00:00", "2026-01-02T03:04:05.123456Z",
            "bogus", "44A3731004BB49338FB9F91064C27F7A", r#"a\"b"#, r#"a\\b"#, r#"\/x"#, r#"\u0041"#,
            r#"\q"#, "é", "tab\there", "raw\u{1}ctl", r#"\n\r\b\f\t"#,
        ];
        let keys = ["v", "cluster", "fromhost_ip", "hostname", "time", "uuid", "msg", "msg", "msg", "other", "user_ip"];
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut fast_taken, mut total) = (0, 0);
        for round in 0..30_000 {
            let mut line = String::from("{");
            let nkeys = 1 + next(8);
            for k in 0..nkeys {
                if k > 0 {
                    line.push_str(if next(25) == 0 { ", " } else { "," });
                }
                let key = keys[next(keys.len())];
                line.push_str(&format!("\"{key}\":"));
                if next(30) == 0 {
                    line.push(' ');
                }
                match (key, next(12)) {
                    ("v", r) if r < 10 => line.push('1'),
                    (_, 0) => line.push_str("null"),
                    (_, 1) => line.push_str("42"),
                    ("msg", _) => line.push_str(&format!("\"{}\"", bodies[next(bodies.len())])),
                    _ => line.push_str(&format!("\"{}\"", strs[next(strs.len())])),
                }
            }
            line.push('}');
            if round % 3 == 0 {
                // the shape our template renders, always
                line = format!(
                    r#"{{"v":1,"cluster":"{}","fromhost_ip":"10.0.0.1","hostname":"{}","time":"{}","uuid":"{}","msg":"{}"}}"#,
                    strs[next(4)], strs[next(4)], strs[4 + next(3)], strs[7], bodies[next(3)]
                );
            }
            let (mut e1, mut e2) = (Event::default(), Event::default());
            let r1 = fast.parse(line.as_bytes(), &mut e1);
            let r2 = slow.parse(line.as_bytes(), &mut e2);
            assert_eq!(r1, r2, "result for {line}");
            assert_eq!(e1, e2, "event for {line}");
            total += 1;
            let mut probe = Event::default();
            let mut meta = LineMeta::default();
            if fast.parse_envelope_fast(&line, &mut probe, &mut meta, 0).is_some() {
                fast_taken += 1;
            }
        }
        assert!(fast_taken * 3 > total, "the fast path took only {fast_taken} of {total} lines");
    }

    #[test]
    fn hex128_is_big_endian_lowercase() {
        let mut s = String::new();
        write_hex128(&mut s, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(s, "0123456789abcdeffedcba9876543210");
    }

    #[test]
    fn ids_are_stable_and_per_cluster() {
        let mut p = Parser::new(ParserOptions::default());
        let mut ev = Event::default();
        let line = b"1.1.1.1,\"u\",api,fs_open,ok,1,\"/p\",\"\"";
        p.parse(line, &mut ev).unwrap();
        let id1 = ev.id.clone();
        assert_eq!(id1, line_hash("", line));
        p.parse(line, &mut ev).unwrap();
        assert_eq!(ev.id, id1);
        let mut p2 = Parser::new(ParserOptions { cluster: ClusterSource::Fixed("c2".into()), ..Default::default() });
        p2.parse(line, &mut ev).unwrap();
        assert_ne!(ev.id, id1);
        assert_eq!(ev.id.len(), 32);
    }
}
