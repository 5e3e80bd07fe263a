//! Syslog headers in front of a Qumulo body, in every shape rsyslog writes or forwards:
//!
//! * `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG` (RFC 5424, what Qumulo sends on the wire);
//! * `<PRI>Mmm dd hh:mm:ss HOST TAG MSG` (RFC 3164) and `<PRI>TIMESTAMP HOST TAG MSG`
//!   (`RSYSLOG_ForwardFormat`);
//! * `TIMESTAMP HOST TAG MSG` (`RSYSLOG_FileFormat`) and `Mmm dd hh:mm:ss HOST TAG MSG`
//!   (`RSYSLOG_TraditionalFileFormat`), the lines Qumulo's own broker reads.
//!
//! The tag (`qumulo`, `qumulo:`, `qumulo[123]:`) is optional: a token that starts with `{` or
//! contains a comma is the body, never a tag. The hostname is optional too (RFC 3164 relays and
//! rsyslog's local messages omit it): a first token that ends with `:` and is a tag name
//! (`qumulo:`, `qumulo[42]:`) is the tag, and the line has no hostname. Timestamps are RFC 3339
//! with or without a zone (none is UTC) or RFC 3164 (see [`crate::time`]); a line that starts
//! like a timestamp but is not a valid one is an error naming it, never read as a bare body.
//! A UTF-8 byte order mark at the start of the body is dropped.

use crate::time::{scan_bsd, scan_rfc3339, Timestamp};

/// What a header carried, borrowed from the line.
#[derive(Debug, PartialEq)]
pub struct Header<'a> {
    pub time: Option<Timestamp>,
    pub hostname: &'a str,
    pub body: &'a str,
    /// The program that logged the line (RFC 3164 tag without `[pid]:`, RFC 5424 APP-NAME);
    /// empty when the line has none.
    pub app: &'a str,
}

/// `sshd[42]:` -> `sshd`.
fn tag_name(tag: &str) -> &str {
    let t = tag.strip_suffix(':').unwrap_or(tag);
    t.split_once('[').map_or(t, |(n, _)| n)
}

/// Outcome of looking for a syslog header.
#[derive(Debug, PartialEq)]
pub enum HeaderResult<'a> {
    /// The line has no recognisable header (it may be a bare body).
    None,
    Found(Header<'a>),
    /// It starts like a syslog line but is broken; the reason says how.
    Malformed(String),
}

fn split_token(s: &str) -> (&str, &str) {
    match super::scan::first_of(s.as_bytes(), 0, [b' ']) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn nil(s: &str) -> &str {
    if s == "-" {
        ""
    } else {
        s
    }
}

/// Looks for a syslog header at the start of `line`.
pub fn parse_header<'a>(line: &'a str, now: &Timestamp) -> HeaderResult<'a> {
    let bytes = line.as_bytes();
    let mut rest = line;
    if bytes.first() == Some(&b'<') {
        // Look for '>' in the first bytes only (by byte: the line may hold multi-byte chars there).
        let Some(close) = bytes[..bytes.len().min(6)].iter().position(|&b| b == b'>') else {
            return HeaderResult::Malformed("syslog PRI '<n>' is not closed".into());
        };
        let pri = &line[1..close];
        if pri.is_empty() || !pri.bytes().all(|b| b.is_ascii_digit()) || pri.parse::<u32>().map_or(true, |p| p > 191) {
            return HeaderResult::Malformed("syslog PRI is not a number from 0 to 191".into());
        }
        rest = &line[close + 1..];
        if let Some(after_version) = rest.strip_prefix("1 ") {
            return parse_rfc5424(after_version);
        }
        return match parse_time_host_tag(rest, now) {
            HeaderResult::None => HeaderResult::Malformed("no timestamp after the syslog PRI".into()),
            other => other,
        };
    }
    parse_time_host_tag(rest, now)
}

/// `TIMESTAMP [HOST] [TAG] BODY` with an RFC 3339 or BSD timestamp.
fn parse_time_host_tag<'a>(s: &'a str, now: &Timestamp) -> HeaderResult<'a> {
    let b = s.as_bytes();
    let scanned = if b.first().is_some_and(u8::is_ascii_digit) {
        scan_rfc3339(b)
    } else if b.first().is_some_and(u8::is_ascii_uppercase) {
        scan_bsd(b, now)
    } else {
        Ok(None)
    };
    let (time, used) = match scanned {
        Ok(Some(found)) => found,
        Ok(None) => return HeaderResult::None,
        Err(why) => return HeaderResult::Malformed(why),
    };
    let Some(after_time) = s[used..].strip_prefix(' ') else {
        return HeaderResult::Malformed("timestamp is not followed by a hostname".into());
    };
    let after_time = after_time.trim_start_matches(' ');
    let (first, after_first) = split_token(after_time);
    if is_tag(first) {
        // `<134>Jun 6 14:52:28 qumulo: body`: a tag and no hostname.
        return HeaderResult::Found(Header { time: Some(time), hostname: "", body: body_of(after_first), app: tag_name(first) });
    }
    let (hostname, after_host) = (first, after_first);
    if hostname.is_empty() || after_host.is_empty() {
        return HeaderResult::Malformed("syslog header has no message after the hostname".into());
    }
    let (tag, after_tag) = split_token(after_host);
    let (body, app) = if tag.bytes().any(|b| matches!(b, b'{' | b',' | b'"')) { (after_host, "") } else { (after_tag, tag_name(tag)) };
    HeaderResult::Found(Header { time: Some(time), hostname, body: body_of(body), app })
}

/// A tag followed by its colon: `name:` or `name[pid]:`, the name 1 to 48 of `[A-Za-z0-9_.-/]`
/// (RFC 3164 allows 32 alphanumerics; rsyslog accepts longer, RFC 5424 APP-NAME is 48).
/// A hostname never ends with `:` this way (an IPv6 address holds other colons).
fn is_tag(token: &str) -> bool {
    let Some(name) = token.strip_suffix(':') else {
        return false;
    };
    let name = match name.strip_suffix(']').and_then(|n| n.split_once('[')) {
        Some((name, pid)) if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) => name,
        Some(_) => return false,
        None => name,
    };
    !name.is_empty() && name.len() <= 48 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
}

/// The body after the header: leading spaces and a byte order mark dropped.
#[inline]
fn body_of(s: &str) -> &str {
    let s = s.trim_start_matches(' ');
    // By bytes: a `char` pattern costs a UTF-8 decode on every line.
    if s.as_bytes().starts_with("\u{feff}".as_bytes()) {
        &s[3..]
    } else {
        s
    }
}

/// RFC 5424 after `<PRI>1 `: `TIMESTAMP HOST APP PROCID MSGID SD [MSG]`.
fn parse_rfc5424(s: &str) -> HeaderResult<'_> {
    let (ts, rest) = split_token(s);
    let time = if ts == "-" {
        None
    } else {
        match scan_rfc3339(ts.as_bytes()) {
            Ok(Some((t, used))) if used == ts.len() => Some(t),
            Err(why) => return HeaderResult::Malformed(format!("RFC 5424 {why}")),
            _ => return HeaderResult::Malformed(format!("RFC 5424 timestamp {} is not RFC 3339", super::fields::shown(ts))),
        }
    };
    let (hostname, rest) = split_token(rest);
    let (app, rest) = split_token(rest);
    let (_procid, rest) = split_token(rest);
    let (_msgid, rest) = split_token(rest);
    if rest.is_empty() {
        return HeaderResult::Malformed("RFC 5424 header is incomplete".into());
    }
    let body = if let Some(r) = rest.strip_prefix('-') {
        r
    } else if rest.starts_with('[') {
        match skip_structured_data(rest) {
            Some(r) => r,
            None => return HeaderResult::Malformed("RFC 5424 structured data is not closed".into()),
        }
    } else {
        return HeaderResult::Malformed("RFC 5424 structured data must be '-' or '[...]'".into());
    };
    let body = body.strip_prefix(' ').unwrap_or(body);
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    HeaderResult::Found(Header { time, hostname: nil(hostname), body, app: nil(app) })
}

/// Skips one or more `[id k="v" ...]` elements (values may hold `\]` and `\"`).
fn skip_structured_data(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        let mut in_quotes = false;
        i += 1;
        loop {
            match b.get(i)? {
                b'\\' if in_quotes => i += 1,
                b'"' => in_quotes = !in_quotes,
                b']' if !in_quotes => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    Some(&s[i..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_rfc3339_prefix;

    fn now() -> Timestamp {
        parse_rfc3339_prefix(b"2026-11-23T00:00:00Z").unwrap().0
    }

    fn found(line: &str) -> Header<'_> {
        match parse_header(line, &now()) {
            HeaderResult::Found(h) => h,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn rsyslog_file_format() {
        let h = found("2023-03-03T14:08:51.058379Z q-varonis-1 qumulo {\"a\":1}");
        assert_eq!(h.hostname, "q-varonis-1");
        assert_eq!(h.body, "{\"a\":1}");
        assert_eq!(h.time.unwrap().to_rfc3339(), "2023-03-03T14:08:51.058379Z");
    }

    #[test]
    fn traditional_file_format_with_padded_day() {
        let h = found("Jun  6 14:52:28 my-machine qumulo 203.0.113.0,\"AD\\alice\",api,rest_login,ok,,\"\",\"\"");
        assert_eq!(h.hostname, "my-machine");
        assert!(h.body.starts_with("203.0.113.0,"));
        assert_eq!(h.time.unwrap().to_rfc3339(), "2026-06-06T14:52:28Z");
    }

    #[test]
    fn tags_in_every_spelling_and_none() {
        for tag in ["qumulo", "qumulo:", "qumulo[42]:"] {
            let line = format!("Jun 6 14:52:28 host {tag} 1.2.3.4,\"u\",api,x,ok,,\"\",\"\"");
            assert!(found(&line).body.starts_with("1.2.3.4,"), "{tag}");
        }
        assert!(found("Jun 6 14:52:28 host 1.2.3.4,\"u\",api,x,ok,,\"\",\"\"").body.starts_with("1.2.3.4,"));
        assert_eq!(found("Jun 6 14:52:28 host {\"k\": 1}").body, "{\"k\": 1}");
    }

    #[test]
    fn rfc3164_with_pri() {
        let h = found("<134>Jun  6 14:52:28 host qumulo: 1.2.3.4,\"u\",api,x,ok,,\"\",\"\"");
        assert_eq!(h.hostname, "host");
        assert!(h.body.starts_with("1.2.3.4"));
    }

    #[test]
    fn rfc5424_nil_and_structured_data() {
        let h = found("<134>1 2023-03-03T14:08:51.058379Z q-1 qumulo - - - {\"x\":1}");
        assert_eq!(h.hostname, "q-1");
        assert_eq!(h.body, "{\"x\":1}");
        let h = found("<134>1 2023-03-03T14:08:51Z q-1 qumulo 77 audit [ex@1 a=\"b\\]c\" d=\"e\"][y@2] \u{feff}body");
        assert_eq!(h.body, "body");
        let h = found("<134>1 - - - - - - body");
        assert_eq!(h.hostname, "");
        assert!(h.time.is_none());
    }

    #[test]
    fn pri_search_never_splits_a_character() {
        // '>' is looked for in the first 6 bytes; a multi-byte char straddling byte 6 once panicked.
        for bad in ["<1234é rest", "<12é>", "<ééé>", "<\u{10348}>", "<134>é", "<134>\u{11730}"] {
            assert!(matches!(parse_header(bad, &now()), HeaderResult::Malformed(_)), "{bad}");
        }
    }

    #[test]
    fn malformed_headers() {
        for bad in ["<134", "<999>Jun 6 14:52:28 h x", "<1>garbage", "<134>1 notatime h a p m - x", "<134>1 2023-03-03T14:08:51Z h a p m [unclosed", "Jun 6 14:52:28 hostonly"] {
            assert!(matches!(parse_header(bad, &now()), HeaderResult::Malformed(_)), "{bad}");
        }
        assert_eq!(parse_header("1.2.3.4,\"u\",api,x,ok,,\"\",\"\"", &now()), HeaderResult::None);
        assert_eq!(parse_header("{\"x\":1}", &now()), HeaderResult::None);
    }
}
