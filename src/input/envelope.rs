//! Our rsyslog envelope (`docs/event-schema.md`, "The envelope"), in its three versions:
//!
//! * version 3 (shipped): `QAB3` and eight tab-separated fields, the message last and raw
//!   ([`Parser::parse_envelope_v3`]). The wiring sets no `$.` variable on the way: each variable
//!   makes rsyslog give the message a JSON object with a 16-slot hash table, and the two of
//!   version 2 doubled what a queued message costs (1,817 bytes instead of 950: BENCHMARKS.md).
//!   The unique stamp is rsyslog's `%uuid%`, made by a filter at the top of each destination's
//!   ruleset before its action queues the message, and kept with it (also on disk); the cluster
//!   is the input's name (`qab-<cluster>`) unless a ruleset set `$.cluster` (shared ports);
//! * version 2: `QAB2` and seven fields, numbered by mmsequence in a `$.` variable. Still read,
//!   and so is version 3 from a configuration that still numbers with mmsequence (a hand-edited
//!   `50-deliver.conf` kept on upgrade): such a line gets the id its version 2 line had;
//! * version 1: one JSON object per message with the cluster, sender, time, rsyslog's `%uuid%`
//!   and the message. Still read, so that lines written by an older template (journals of dead
//!   instances, messages in rsyslog's queues during an upgrade) are delivered, with the same ids.
//!   The template's exact rendering is read by a fast path without serde
//!   ([`Parser::parse_envelope_fast`]); anything else JSON-shaped goes through [`super::json`].
//!
//! Every version ends in [`Parser::finish_envelope`], which applies the envelope's rules and
//! parses the message it carries.

use super::{err, fields, LineMeta, ParseError, Parsed, Parser};
use crate::event::Event;
use crate::time::parse_rfc3339_prefix;

/// What opens a version 2 envelope line.
pub(super) const V2_PREFIX: &str = "QAB2\t";
/// What opens a version 3 envelope line.
pub(super) const V3_PREFIX: &str = "QAB3\t";

/// The first `N` tab-separated fields of `rest`, the last one taking the rest of the line (the
/// message, raw). Fields missing at the end are empty: the line's trailing blanks were trimmed,
/// and an empty message or host name takes its tab with it.
fn split_fields<const N: usize>(rest: &str) -> [&str; N] {
    let mut f = [""; N];
    let mut start = 0;
    for (i, slot) in f.iter_mut().enumerate() {
        if start > rest.len() {
            break; // the missing trailing fields stay empty
        }
        // Cut at ASCII tabs: char boundaries. The message takes the rest of the line.
        let end = if i + 1 == N { rest.len() } else { memchr::memchr(b'\t', &rest.as_bytes()[start..]).map_or(rest.len(), |p| start + p) };
        *slot = &rest[start..end];
        start = end + 1;
    }
    f
}

/// `gen` is rsyslog's `timegenerated`, `/` and mmsequence's number when the configuration
/// numbers messages (version 2's `qab_deliver`); `true` when it carries that number.
fn gen_is_numbered(gen: &str) -> bool {
    gen.rsplit_once('/').is_some_and(|(_, seq)| !seq.is_empty())
}

fn check_gen(gen: &str) -> Result<(), ParseError> {
    if gen.len() > 128 || !gen.bytes().all(|b| b.is_ascii_graphic()) {
        return err(format!("envelope gen {} is not up to 128 printable ASCII characters", fields::shown(gen)));
    }
    Ok(())
}

/// What a version 2 line lacks, which a mix of file versions that an upgrade can leave causes:
/// a destination file of version 2 (`template="qab_envelope"`) beside a `qab_deliver` that no
/// longer numbers messages, or beside cluster rulesets that no longer set `$.cluster` (version
/// 3 names the cluster by the listener, which version 2's template does not carry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Gap {
    /// Neither mmsequence's number in `gen` nor a uuid: the id is the hash of a line that
    /// identical messages received together share.
    Stamp,
    /// No cluster.
    Cluster,
}

/// The first [`V2Gap`] of `line` (a BOM and blanks before it ignored), if it is a version 2
/// envelope that has one.
pub fn v2_line_gap(line: &[u8]) -> Option<V2Gap> {
    let line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
    let start = line.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(line.len());
    let rest = line[start..].strip_prefix(V2_PREFIX.as_bytes())?;
    let mut f = rest.splitn(5, |&b| b == b'\t');
    let (gen, uuid, _time, cluster) = (f.next()?, f.next().unwrap_or_default(), f.next(), f.next().unwrap_or_default());
    let numbered = std::str::from_utf8(gen).is_ok_and(gen_is_numbered);
    if !numbered && uuid.is_empty() {
        Some(V2Gap::Stamp)
    } else if cluster.is_empty() {
        Some(V2Gap::Cluster)
    } else {
        None
    }
}

/// The cluster a version 3 envelope names: `$.cluster` when a ruleset set it (a shared port
/// chooses by the sender's address), else the input's name without `qab-` (each cluster's own
/// listener is named `qab-<cluster>`), else none.
fn cluster_of<'a>(cluster: &'a str, input: &'a str) -> &'a str {
    if !cluster.is_empty() {
        cluster
    } else {
        input.strip_prefix("qab-").unwrap_or("")
    }
}

/// The version 2 line that a configuration numbering with mmsequence rendered for the message
/// whose version 3 line is `line` (`QAB2`, `gen`, an empty `uuid`, `time`, `cluster` and the
/// rest from `fromhost_ip` on, byte for byte), into `out`; `false` if `line` is not one.
/// Hashing it gives such a message the id its version 2 line had: a message numbered before an
/// upgrade, journaled by an old instance and sent again afterwards is one event, not two.
pub(super) fn v2_line_of_v3(line: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(at) = memchr::memmem::find(line, V3_PREFIX.as_bytes()) else { return false };
    let rest = &line[at + V3_PREFIX.len()..];
    let mut f: [&[u8]; 5] = [b""; 5];
    let mut start = 0;
    for slot in f.iter_mut() {
        let Some(p) = memchr::memchr(b'\t', &rest[start..]) else { return false };
        *slot = &rest[start..start + p];
        start += p + 1;
    }
    let [gen, _uuid, time, cluster, _input] = f;
    out.clear();
    out.extend_from_slice(&line[..at]);
    out.extend_from_slice(V2_PREFIX.as_bytes());
    for part in [gen, b"", time, cluster] {
        out.extend_from_slice(part);
        out.push(b'\t');
    }
    out.extend_from_slice(&rest[start..]);
    true
}

impl Parser {
    /// A version 2 envelope: `QAB2`, then `gen`, `uuid`, `time`, `cluster`, `fromhost_ip`,
    /// `hostname` and `msg`, separated by one tab each; `msg` is the rest of the line, raw. No
    /// field but `msg` may hold a tab (rsyslog's `escape-cc` writes control characters as `#ooo`).
    /// `gen` (rsyslog's `timegenerated` and a sequence number) is not read: it only makes the
    /// line, and so the id hashed from it, unique per received message. `uuid` is empty except
    /// for messages that entered rsyslog's queues under the version 1 configuration (their
    /// `$.qab_uuid`): it is then the id, as it was in version 1.
    pub(super) fn parse_envelope_v2(
        &mut self,
        s: &str,
        ev: &mut Event,
        meta: &mut LineMeta<'_>,
        depth: u8,
    ) -> Result<Parsed, ParseError> {
        let [gen, uuid, time, cluster, fromhost, hostname, msg] = split_fields::<7>(&s[V2_PREFIX.len()..]);
        check_gen(gen)?;
        ev.cluster.push_str(cluster);
        ev.fromhost_ip.push_str(fromhost);
        ev.node.push_str(hostname);
        self.finish_envelope(ev, meta, Some(time), Some(uuid), msg, depth)
    }

    /// A version 3 envelope: `QAB3`, then `gen`, `uuid`, `time`, `cluster`, `input`,
    /// `fromhost_ip`, `hostname` and `msg`, separated by one tab each; `msg` is the rest of the
    /// line, raw. `uuid` (rsyslog's `%uuid%`, made before the action queues) is the id, unless `gen`
    /// carries mmsequence's number: then the configuration is version 2's (`%uuid%` was made
    /// late, by each action, and is not stable) and the id is that of the version 2 line
    /// ([`v2_line_of_v3`]). The cluster is [`cluster_of`] `cluster` and `input`.
    pub(super) fn parse_envelope_v3(
        &mut self,
        s: &str,
        ev: &mut Event,
        meta: &mut LineMeta<'_>,
        depth: u8,
    ) -> Result<Parsed, ParseError> {
        let [gen, uuid, time, cluster, input, fromhost, hostname, msg] = split_fields::<8>(&s[V3_PREFIX.len()..]);
        check_gen(gen)?;
        let numbered = gen_is_numbered(gen);
        ev.cluster.push_str(cluster_of(cluster, input));
        ev.fromhost_ip.push_str(fromhost);
        ev.node.push_str(hostname);
        meta.v2_id = numbered;
        self.finish_envelope(ev, meta, Some(time), (!numbered).then_some(uuid), msg, depth)
    }

    /// The envelope's fields are in `ev` (cluster, node, fromhost_ip); `time`, `uuid` and `msg`
    /// are its other values. Parses the message it carries and merges the two.
    pub(super) fn finish_envelope(
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
            // Messages come many to a second: the last time read is usually this one.
            if self.env_time_last.0 == t {
                meta.time = Some(self.env_time_last.1);
            } else {
                match parse_rfc3339_prefix(t.as_bytes()) {
                    Some((ts, n)) if n == t.len() => {
                        meta.time = Some(ts);
                        self.env_time_last.0.clear();
                        self.env_time_last.0.push_str(t);
                        self.env_time_last.1 = ts;
                    }
                    _ => return err(format!("envelope time {t:?} is not RFC 3339")),
                }
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
            let mut inner = LineMeta { time: meta.time, ..Default::default() };
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
    pub(super) fn parse_envelope_fast(
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
                            ev.details_vouched = true; // `{"v":<digits>}`, as the JSON path vouches
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::ParserOptions;

    /// A message rendered by the version 2 template gives the event the version 1 template gave
    /// for it (same uuid: same id); without a uuid the id is the hash of the whole line, so two
    /// messages that differ only in `gen` get two ids, and the same line always the same id.
    #[test]
    fn envelope_v2_reads_as_v1() {
        let now = parse_rfc3339_prefix(b"2026-03-01T00:00:00Z").unwrap().0;
        let mut p = Parser::new(ParserOptions::default());
        p.set_now(now);
        let json = |s: &str| serde_json::to_string(s).unwrap().replace('/', "\\/");
        let bodies = [
            r#" 10.20.0.1,"AD\bob",smb2,fs_list_directory,ok,100000,"/hr/a, b/""q""/dir-0/","""#,
            r#" 2001:db8::1,"CORP\carol",nfs3,fs_rename,ok,7,"/p/x.tmp","/p/x.txt""#,
            r#" 10.20.0.3,"svc",smb2,smb_login,ok,,"","""#,
            r#" {"user_id": {"sid": "S-1-5", "auth_id": "1201", "name": "CORP\\carol"}, "user_ip": "10.21.0.2", "protocol": "smb2", "operation": "fs_read_data", "status": "ok", "details": {"file_id": "1", "path": "/p", "size": 7}}"#,
            "Jun  6 14:52:28 q-1 qumulo 1.2.3.4,u,api,fs_open,ok,1,/p#011tab,",
            "\u{feff}10.0.0.9,u,api,fs_open,ok,1,/p,  ",
        ];
        for (k, body) in bodies.iter().enumerate() {
            for (cluster, host, time) in [("prod", "q-prod-1", "2026-06-06T14:52:28+00:00"), ("c 2", "", ""), ("", "q-2", "2024-01-02T03:04:05.123456Z")] {
                let uuid = format!("{k:032X}");
                let v1 = format!(
                    r#"{{"v":1,"cluster":{},"fromhost_ip":"10.0.0.1","hostname":{},"time":"{time}","uuid":"{uuid}","msg":{}}}"#,
                    json(cluster),
                    json(host),
                    json(body)
                );
                let v2 = |gen: &str, uuid: &str| format!("QAB2\t{gen}\t{uuid}\t{time}\t{cluster}\t10.0.0.1\t{host}\t{body}");
                let (mut e1, mut e2, mut e3, mut e4) = (Event::default(), Event::default(), Event::default(), Event::default());
                let r1 = p.parse(v1.as_bytes(), &mut e1);
                assert_eq!(r1, Ok(Parsed::Event), "{v1}");
                assert_eq!(p.parse(v2("2026-12-02T06:32:40.644157+00:00/7", &uuid).as_bytes(), &mut e2), r1, "{body}");
                assert_eq!(e1, e2, "same uuid, same event: {body}");
                let line = v2("2026-12-02T06:32:40.644157+00:00/8", "");
                assert_eq!(p.parse(line.as_bytes(), &mut e3), r1);
                assert_eq!(e3.id, crate::input::line_hash(&e3.cluster, line.as_bytes()), "the id hashes the line");
                assert_eq!(p.parse(v2("2026-12-02T06:32:40.644157+00:00/9", "").as_bytes(), &mut e4), r1);
                assert_ne!(e3.id, e4.id, "another gen, another id");
                e3.id.clear();
                e4.id.clear();
                e1.id.clear();
                assert_eq!(e1, e3);
                assert_eq!(e3, e4);
            }
        }
    }

    /// Version 3 (shipped): the id is rsyslog's `%uuid%` and the event is the one version 2 gave
    /// with that uuid; the cluster is `$.cluster` when a ruleset set it, else the input's name
    /// without `qab-`, else none. A line numbered by mmsequence (version 2's `qab_deliver`, kept
    /// on upgrade) gets exactly the id and event of its version 2 line, whatever `%uuid%` an
    /// action made for it late.
    #[test]
    fn envelope_v3_reads_as_v2() {
        let now = parse_rfc3339_prefix(b"2026-03-01T00:00:00Z").unwrap().0;
        let mut p = Parser::new(ParserOptions::default());
        p.set_now(now);
        let bodies = [
            r#" 10.20.0.1,"AD\bob",smb2,fs_list_directory,ok,100000,"/hr/a, b/""q""/dir-0/","""#,
            r#" 10.20.0.3,"svc",smb2,smb_login,ok,,"","""#,
            r#" {"user_id": {"sid": "S-1-5", "auth_id": "1201", "name": "CORP\\carol"}, "user_ip": "10.21.0.2", "protocol": "smb2", "operation": "fs_read_data", "status": "ok", "details": {"file_id": "1", "path": "/p", "size": 7}}"#,
            "Jun  6 14:52:28 q-1 qumulo 1.2.3.4,u,api,fs_open,ok,1,/p#011tab,",
            "\u{feff}10.0.0.9,u,api,fs_open,ok,1,/p,  ",
        ];
        let event = |p: &mut Parser, line: &str| {
            let mut ev = Event::default();
            assert_eq!(p.parse(line.as_bytes(), &mut ev), Ok(Parsed::Event), "{line:?}");
            ev
        };
        for (k, body) in bodies.iter().enumerate() {
            for (cluster, host, time) in [("prod", "q-prod-1", "2026-06-06T14:52:28+00:00"), ("c 2", "", ""), ("x", "q-2", "2024-01-02T03:04:05.123456Z")] {
                let uuid = format!("{k:032X}");
                let v2 = |gen: &str, uuid: &str| format!("QAB2\t{gen}\t{uuid}\t{time}\t{cluster}\t10.0.0.1\t{host}\t{body}");
                let v3 = |gen: &str, uuid: &str, cl: &str, input: &str| format!("QAB3\t{gen}\t{uuid}\t{time}\t{cl}\t{input}\t10.0.0.1\t{host}\t{body}");
                let want = event(&mut p, &v2("2026-12-02T06:32:40.644157+00:00/7", &uuid));
                assert_eq!(want.id, uuid);
                let gen = "2026-12-02T06:32:40.644157+00:00/";
                // The cluster's own listener names it; a ruleset's $.cluster wins over any name.
                assert_eq!(event(&mut p, &v3(gen, &uuid, "", &format!("qab-{cluster}"))), want, "{body}");
                assert_eq!(event(&mut p, &v3(gen, &uuid, cluster, "shared-port-514")), want, "{body}");
                // Numbered by mmsequence: the version 2 line's id, not the late uuid.
                let numbered = "2026-12-02T06:32:40.644157+00:00/8";
                let old = event(&mut p, &v2(numbered, ""));
                assert_eq!(old.id, crate::input::line_hash(cluster, v2(numbered, "").as_bytes()));
                for late in ["0123456789ABCDEF0123456789ABCDEF", "FEDCBA9876543210FEDCBA9876543210", ""] {
                    assert_eq!(event(&mut p, &v3(numbered, late, cluster, "shared-port-514")), old, "{body}");
                }
                assert_ne!(event(&mut p, &v3("2026-12-02T06:32:40.644157+00:00/9", &uuid, cluster, "qab-x")).id, old.id, "another number, another id");
            }
        }
        // No $.cluster and an input not named qab-...: no cluster (as version 2 without $.cluster).
        let line = format!("QAB3\tg/\t{}\t\t\timtcp\t10.0.0.1\th\t{}", "A".repeat(32), bodies[0]);
        assert_eq!(event(&mut p, &line).cluster, "");
        // The version 2 line of a version 3 one, byte for byte (a BOM before it, trailing blanks).
        let mut out = Vec::new();
        assert!(v2_line_of_v3("\u{feff}QAB3\tg/1\tU\tt\tc\tqab-c\tip\th\tm \t ".as_bytes(), &mut out));
        assert_eq!(out, "\u{feff}QAB2\tg/1\t\tt\tc\tip\th\tm \t ".as_bytes());
        assert!(!v2_line_of_v3(b"QAB3\tg/1\tU\tt\tc", &mut out), "too few fields: the line itself is hashed");
    }

    #[test]
    fn version_2_gaps_are_recognised() {
        let gap = v2_line_gap;
        assert_eq!(gap(b"QAB2\t2026-12-02T06:32:40.644157+00:00/\t\tt\tc\tip\th\tm"), Some(V2Gap::Stamp));
        assert_eq!(gap(b"QAB2\tg\t\tt"), Some(V2Gap::Stamp));
        assert_eq!(gap("\u{feff} QAB2\tg/\t\tt\tc\tip\th\tm".as_bytes()), Some(V2Gap::Stamp), "after a BOM and a blank");
        assert_eq!(gap(b"QAB2\t2026-12-02T06:32:40.644157+00:00/7\t\tt\tc\tip\th\tm"), None, "numbered");
        assert_eq!(gap(b"QAB2\tg/\tABCDEF\tt\tc\tip\th\tm"), None, "a version 1 uuid");
        assert_eq!(gap(b"QAB2\tg/7\t\tt\t\tip\th\tm"), Some(V2Gap::Cluster));
        assert_eq!(gap(b"QAB3\tg/\t\tt\t\tqab-c\tip\th\tm"), None, "version 3");
        assert_eq!(gap(b"1.2.3.4,u,api,fs_open,ok,1,/p,"), None);
    }

    /// Version 3 keeps version 2's rules; its uuid is checked unless the line is numbered.
    #[test]
    fn envelope_v3_rules() {
        let mut p = Parser::new(ParserOptions::default());
        let body = r#" 10.20.0.1,"AD\bob",smb2,fs_read_data,ok,1,"/p","""#;
        let line = |gen: &str, uuid: &str, time: &str, msg: &str| format!("QAB3\t{gen}\t{uuid}\t{time}\tc\tqab-c\t10.0.0.1\th\t{msg}");
        let t = "2026-06-06T14:52:28Z";
        for (l, want) in [
            (line("g/", "x y", t, body), Some("envelope uuid")),
            (line("g/1", "x y", t, body), None),
            (line("g /", "", t, body), Some("envelope gen")),
            (line("g/", "", "yesterday", body), Some("envelope time")),
            (line("g/", "", t, "a\nb"), Some("envelope message holds a line break")),
            (line("g/", "", t, " "), Some("envelope message is empty")),
            ("QAB3\tg/\tU\t\tc".to_string(), Some("envelope message is empty")),
        ] {
            let mut ev = Event::default();
            match (p.parse(l.as_bytes(), &mut ev), want) {
                (Err(e), Some(w)) => assert!(e.reason.contains(w), "{l:?}: {}", e.reason),
                (Ok(Parsed::Event), None) => {}
                (r, w) => panic!("{l:?}: {r:?}, wanted {w:?}"),
            }
        }
    }

    /// Version 2 keeps version 1's rules, with the same error texts.
    #[test]
    fn envelope_v2_rules() {
        let mut p = Parser::new(ParserOptions::default());
        let body = r#" 10.20.0.1,"AD\bob",smb2,fs_read_data,ok,1,"/p","""#;
        let line = |gen: &str, uuid: &str, time: &str, cluster: &str, ip: &str, host: &str, msg: &str| {
            format!("QAB2\t{gen}\t{uuid}\t{time}\t{cluster}\t{ip}\t{host}\t{msg}")
        };
        let error = |p: &mut Parser, l: &str| {
            let mut ev = Event::default();
            match p.parse(l.as_bytes(), &mut ev) {
                Err(e) => e.reason,
                Ok(r) => panic!("{l:?} was accepted: {r:?}"),
            }
        };
        let t = "2026-06-06T14:52:28Z";
        for (l, want) in [
            (line("g", "", t, "c", "10.0.0.1", "h", "a\rb"), "envelope message holds a line break"),
            (line("g", "", t, "c", "10.0.0.1", "h", "  "), "envelope message is empty"),
            (line("g", "", t, "c", "10.0.0.1", "", ""), "envelope message is empty"),
            (line("g", "x y", t, "c", "10.0.0.1", "h", body), "envelope uuid"),
            (line("g", &"f".repeat(65), t, "c", "10.0.0.1", "h", body), "envelope uuid"),
            (line("g", "", "yesterday", "c", "10.0.0.1", "h", body), "envelope time"),
            (line("g h", "", t, "c", "10.0.0.1", "h", body), "envelope gen"),
            (line(&"g".repeat(129), "", t, "c", "10.0.0.1", "h", body), "envelope gen"),
            (line("g", "", t, "c", "not-an-ip", "h", body), "field 'fromhost_ip'"),
            (line("g", "", t, "c", "10.0.0.1", "h", "not an audit line"), "expected 8 CSV fields"),
            ("QAB2\tg\t\t\tc".to_string(), "envelope message is empty"),
        ] {
            let got = error(&mut p, &l);
            assert!(got.contains(want), "{l:?}: {got}");
        }
        // The same rules as version 1, word for word.
        let v1 = r#"{"v":1,"cluster":"c","time":"yesterday","msg":"x"}"#;
        let v2 = line("g", "", "yesterday", "c", "10.0.0.1", "h", "x");
        assert_eq!(error(&mut p, v1), error(&mut p, &v2));
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
}
