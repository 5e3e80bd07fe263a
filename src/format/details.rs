//! Writing the event's `details` (the input's extra fields, compact JSON object text) as a JSON
//! object value, so that no `details` text can break or forge the structure of a JSON record.
//!
//! The contract, stated in `docs/formats.md` ("What a field can never do"):
//!
//! * `details` is always written as one JSON object under its own key (`details`,
//!   `qumulo.details`, `unmapped.details`) and never merged into the model's keys, so an input
//!   key named like a model field (`path`, `operation`, `cluster`...) can neither clash with nor
//!   override it.
//! * No object in it carries a key twice, at any depth. A repeated key keeps the position of its
//!   first occurrence and the value of its last (what `JSON.parse`, Python's `json` and
//!   `serde_json` read from such text, and so what the classifier saw).
//! * Text that is not one JSON object (impossible from the parser, possible for an [`Event`]
//!   built by other code) is written as `{"_raw":"<the text as a JSON string>"}`; so is an
//!   object nested deeper than [`MAX_DEPTH`] levels.
//! * A `\u` escape of a lone surrogate (which strict readers refuse) is read as U+FFFD.
//!
//! Cost: details the JSON parser vouches for ([`Event::details_vouched`]: it refused duplicate
//! keys at every depth while reading them, wrote them compactly, and no backslash is in them, so
//! no key holds an escape and no `\u` escape can be a surrogate) are copied as they are. Other
//! details (built by other code) take one validating scan with no allocation ([`is_clean_object`]: keys compared as raw
//! bytes, at most [`FAST_KEYS`] open keys and [`FAST_DEPTH`] levels) and one copy. Anything the
//! scan does not vouch for (an escape in a key, a surrogate escape, too many keys, a duplicate,
//! invalid text) takes the slow path, which parses into a tree (allocating), merges duplicates
//! and writes the result compactly.
//!
//! [`Event`]: crate::event::Event

use super::jsonw::{write_str, NEEDS_ESCAPE};
use crate::event::Event;

/// Deepest nesting (the details object itself is level 1) written as JSON; deeper text is
/// written as `_raw`. The parser's input never nests this deep (`serde_json` stops at 128).
pub const MAX_DEPTH: usize = 128;
/// Limits of the allocation-free scan; beyond them the slow path decides.
const FAST_DEPTH: usize = 16;
const FAST_KEYS: usize = 32;

/// Appends the event's `details` as a JSON object value (see the module docs for the rules).
pub fn write_details(out: &mut Vec<u8>, ev: &Event) {
    if ev.details_vouched {
        // Debug builds (every test) check the vouch, so that code changing `details` after the
        // parser without clearing the flag is caught rather than trusted.
        debug_assert!(
            {
                let mut checked = Vec::new();
                write_checked(&mut checked, &ev.details);
                checked == ev.details.as_bytes()
            },
            "details vouched for but not what the checked path writes: {}",
            ev.details
        );
        out.extend_from_slice(ev.details.as_bytes());
    } else {
        write_checked(out, &ev.details);
    }
}

/// The path for details nobody vouched for: the scan, then the slow path if the scan cannot
/// vouch for them either.
fn write_checked(out: &mut Vec<u8>, details: &str) {
    if is_clean_object(details.as_bytes()) {
        out.extend_from_slice(details.as_bytes());
    } else {
        write_details_slow(out, details);
    }
}

/// True when `b` is exactly one JSON object (no surrounding whitespace) whose keys hold no
/// escape and never repeat within an object, with no surrogate escape anywhere, within the
/// fast-scan limits (and at most 64 KiB long, so key offsets fit 16 bits). False says "take the slow path", not "invalid".
pub fn is_clean_object(b: &[u8]) -> bool {
    if b.first() != Some(&b'{') || b.last() != Some(&b'}') || b.len() > u16::MAX as usize {
        return false;
    }
    let mut s = Scan { b, i: 0, keys: [(0, 0); FAST_KEYS], nkeys: 0 };
    s.object(1) && s.i == b.len()
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    /// The keys of the objects open on the path to the current position, as byte ranges.
    keys: [(u16, u16); FAST_KEYS],
    nkeys: usize,
}

impl Scan<'_> {
    #[inline]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => self.string().is_some(),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, lit: &[u8]) -> bool {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        if depth > FAST_DEPTH {
            return false;
        }
        self.i += 1; // '{'
        self.ws();
        if self.peek() == b'}' {
            self.i += 1;
            return true;
        }
        let base = self.nkeys;
        loop {
            if self.peek() != b'"' {
                return false;
            }
            let start = self.i + 1;
            match self.string() {
                Some(false) => {}
                _ => return false, // invalid, or an escape in the key: compare unescaped (slow)
            }
            let key = &self.b[start..self.i - 1];
            if self.keys[base..self.nkeys].iter().any(|&(s, e)| &self.b[s as usize..e as usize] == key) {
                return false;
            }
            if self.nkeys == FAST_KEYS {
                return false;
            }
            self.keys[self.nkeys] = (start as u16, (self.i - 1) as u16);
            self.nkeys += 1;
            self.ws();
            if self.peek() != b':' {
                return false;
            }
            self.i += 1;
            self.ws();
            if !self.value(depth) {
                return false;
            }
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    self.nkeys = base;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        if depth > FAST_DEPTH {
            return false;
        }
        self.i += 1; // '['
        self.ws();
        if self.peek() == b']' {
            self.i += 1;
            return true;
        }
        loop {
            if !self.value(depth) {
                return false;
            }
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    /// Scans a string starting at its opening quote. `Some(had_escape)`, or `None` when it is
    /// invalid, unterminated, or holds a surrogate escape.
    #[inline]
    fn string(&mut self) -> Option<bool> {
        let b = self.b;
        let mut i = self.i + 1;
        let mut escaped = false;
        loop {
            // Plain bytes: one table lookup each, in a tight loop.
            i += b.get(i..)?.iter().position(|&c| NEEDS_ESCAPE[c as usize])?;
            match b[i] {
                b'"' => {
                    self.i = i + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match *b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => {
                            let hex = b.get(i + 2..i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) || matches!(hex[0], b'd' | b'D') && hex[1] >= b'8' {
                                return None; // not hex, or a surrogate (D800-DFFF): the slow path pairs them
                            }
                            i += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None, // a raw control character
            }
        }
    }

    #[inline]
    fn digits(&self, i: usize) -> usize {
        self.b[i..].iter().position(|c| !c.is_ascii_digit()).unwrap_or(self.b.len() - i)
    }

    fn number(&mut self) -> bool {
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i += self.digits(i),
            _ => return false,
        }
        if b.get(i) == Some(&b'.') {
            let n = self.digits(i + 1);
            if n == 0 {
                return false;
            }
            i += 1 + n;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let n = self.digits(i);
            if n == 0 {
                return false;
            }
            i += n;
        }
        self.i = i;
        true
    }
}

/// A parsed JSON value for the slow path: numbers and literals keep their text.
enum Json<'a> {
    Lit(&'a str),
    Str(String),
    Arr(Vec<Json<'a>>),
    Obj(Vec<(String, Json<'a>)>),
}

#[inline(never)]
fn write_details_slow(out: &mut Vec<u8>, details: &str) {
    let mut p = Parser { s: details, i: 0 };
    p.ws();
    let parsed = match p.peek() {
        b'{' => p.value(0),
        _ => None,
    };
    p.ws();
    match parsed {
        Some(v) if p.i == details.len() => write_json(out, &v),
        _ => {
            out.extend_from_slice(b"{\"_raw\":");
            write_str(out, details);
            out.push(b'}');
        }
    }
}

fn write_json(out: &mut Vec<u8>, v: &Json<'_>) {
    match v {
        Json::Lit(t) => out.extend_from_slice(t.as_bytes()),
        Json::Str(s) => write_str(out, s),
        Json::Arr(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_json(out, item);
            }
            out.push(b']');
        }
        Json::Obj(members) => {
            out.push(b'{');
            for (n, (k, item)) in members.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_json(out, item);
            }
            out.push(b'}');
        }
    }
}

/// RFC 8259 parser for the slow path; `None` for anything that is not valid JSON.
struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> u8 {
        self.s.as_bytes().get(self.i).copied().unwrap_or(0)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json<'a>> {
        match self.peek() {
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                let mut members: Vec<(String, Json<'a>)> = Vec::new();
                self.ws();
                if self.peek() == b'}' {
                    self.i += 1;
                    return Some(Json::Obj(members));
                }
                loop {
                    self.ws();
                    if self.peek() != b'"' {
                        return None;
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.peek() != b':' {
                        return None;
                    }
                    self.i += 1;
                    self.ws();
                    let v = self.value(depth + 1)?;
                    match members.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = v, // first position, last value
                        None => members.push((key, v)),
                    }
                    self.ws();
                    match self.peek() {
                        b',' => self.i += 1,
                        b'}' => {
                            self.i += 1;
                            return Some(Json::Obj(members));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == b']' {
                    self.i += 1;
                    return Some(Json::Arr(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(Json::Arr(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(Json::Str),
            _ => {
                let start = self.i;
                let mut scan = Scan { b: self.s.as_bytes(), i: start, keys: [(0, 0); FAST_KEYS], nkeys: 0 };
                let ok = match self.peek() {
                    b't' => scan.literal(b"true"),
                    b'f' => scan.literal(b"false"),
                    b'n' => scan.literal(b"null"),
                    _ => scan.number(),
                };
                if !ok {
                    return None;
                }
                self.i = scan.i;
                Some(Json::Lit(&self.s[start..self.i]))
            }
        }
    }

    /// Reads a string at its opening quote, unescaped; lone surrogates become U+FFFD.
    fn string(&mut self) -> Option<String> {
        let b = self.s.as_bytes();
        let mut out = String::new();
        let mut i = self.i + 1;
        let mut start = i;
        loop {
            let c = *b.get(i)?;
            match c {
                b'"' => {
                    out.push_str(&self.s[start..i]);
                    self.i = i + 1;
                    return Some(out);
                }
                b'\\' => {
                    out.push_str(&self.s[start..i]);
                    let e = *b.get(i + 1)?;
                    i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = hex4(b, i)?;
                            i += 4;
                            let ch = if (0xD800..0xDC00).contains(&hi) && b.get(i..i + 2) == Some(b"\\u") {
                                match hex4(b, i + 2) {
                                    Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                                        i += 6;
                                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                    }
                                    _ => None,
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            out.push(ch.unwrap_or('\u{FFFD}'));
                        }
                        _ => return None,
                    }
                    start = i;
                }
                0..=0x1f => return None,
                _ => i += 1,
            }
        }
    }
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let h = b.get(i..i + 4)?;
    if !h.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(s: &str) -> String {
        let mut out = Vec::new();
        write_details(&mut out, &Event { details: s.into(), ..Event::default() });
        String::from_utf8(out).unwrap()
    }

    /// What the JSON parser vouches for is written exactly as the scan (or the slow path) would
    /// write it; what it does not vouch for holds a backslash.
    #[test]
    fn vouched_details_are_what_the_scan_would_write() {
        let mut parser = crate::input::Parser::new(crate::input::ParserOptions::default());
        let mut ev = Event::default();
        let bodies = [
            r#"{"size": 261456, "offset": 0}"#,
            r#"{"a": {"b": [1, {"c": true}], "d": null}, "e": "x y", "f": -0.5e+3}"#,
            r#"{"k\u0062": 1, "s": "\u00e9", "t": "a\"b"}"#,
            r#"{"deep": [[[[[[[[[[[[[[[[[[[[{"x": 1}]]]]]]]]]]]]]]]]]]]]}"#,
            r#"{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k18":1,"k19":1,"k20":1,"k21":1,"k22":1,"k23":1,"k24":1,"k25":1,"k26":1,"k27":1,"k28":1,"k29":1,"k30":1,"k31":1,"k32":1,"k33":1}"#,
        ];
        let mut vouched = 0;
        for details_in in bodies {
            let line = format!(
                r#"2024-06-06T14:52:28Z q-1 qumulo {{"user_id": {{"sid": "S-1", "auth_id": "1", "name": "u"}}, "user_ip": "10.0.0.1", "protocol": "smb2", "operation": "fs_read_data", "status": "ok", "details": {{"path": "/p", "extra": {details_in}}}, "other": {details_in}}}"#
            );
            parser.parse(line.as_bytes(), &mut ev).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            assert!(!ev.details.is_empty());
            assert_eq!(ev.details_vouched, !ev.details.contains('\\'), "{}", ev.details);
            vouched += usize::from(ev.details_vouched);
            let mut fast = Vec::new();
            write_details(&mut fast, &ev);
            let mut checked = Vec::new();
            write_details(&mut checked, &Event { details: ev.details.clone(), ..Event::default() });
            assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(checked).unwrap());
        }
        assert_eq!(vouched, bodies.len() - 1, "every body without a backslash is vouched for");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "details vouched for but not what the checked path writes")]
    fn a_vouch_that_no_longer_holds_is_caught_in_debug_builds() {
        let ev = Event { details: r#"{"a":1,"a":2}"#.into(), details_vouched: true, ..Event::default() };
        write_details(&mut Vec::new(), &ev);
    }

    #[test]
    fn clean_objects_are_copied() {
        for s in [r#"{}"#, r#"{"size":261456,"offset":0}"#, r#"{"a":{"a":[1,{"a":true}]},"b":"x\n\u00e9"}"#, "{ \"k\" : -0.5e+3 }"] {
            assert!(is_clean_object(s.as_bytes()), "{s}");
            assert_eq!(details(s), s);
        }
    }

    #[test]
    fn duplicates_keep_the_first_position_and_the_last_value() {
        assert_eq!(details(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(details(r#"{"x":{"k":1,"k":{"k":2,"k":3}}}"#), r#"{"x":{"k":{"k":3}}}"#);
        // Equal after unescaping is the same key.
        assert_eq!(details(r#"{"a":1,"\u0061":2}"#), r#"{"a":2}"#);
        // The same key in different objects is no duplicate.
        assert!(is_clean_object(br#"{"a":{"a":1},"b":{"a":2}}"#));
    }

    #[test]
    fn anything_else_is_raw_text() {
        for s in ["not json", "[1]", "\"s\"", "{\"a\":1}x", "{\"a\":1,}", "{\"a\":01}", "{\"a\":\"\u{1}\"}", "{\"a\":1},{\"b\":2}", " "] {
            let v: serde_json::Value = serde_json::from_str(&details(s)).unwrap();
            assert_eq!(v, serde_json::json!({ "_raw": s }), "{s:?}");
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(details(&deep).starts_with("{\"_raw\":"));
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(MAX_DEPTH - 2), "]".repeat(MAX_DEPTH - 2));
        assert_eq!(details(&ok), ok);
    }

    #[test]
    fn surrogates_and_whitespace() {
        assert_eq!(details(r#"{"a":"\ud83d\ude00"}"#), "{\"a\":\"😀\"}");
        assert_eq!(details(r#"{"a":"\ud800x"}"#), "{\"a\":\"\u{FFFD}x\"}");
        assert_eq!(details(" {\"a\" :\n1 } "), r#"{"a":1}"#);
    }
}
