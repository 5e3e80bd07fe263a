//! A tiny allocation-free JSON object writer shared by the JSON-shaped formats (canonical JSON,
//! ECS, OCSF) and by the sinks that wrap events (Splunk HEC, Elasticsearch bulk).
//!
//! Strings are escaped here, by a hand-tuned table-driven loop (eight plain bytes at a time:
//! a measured hot path), with exactly serde_json's output: a test checks the two agree on
//! arbitrary strings, so the output is always valid JSON. Keys are written as given and must
//! be plain ASCII identifiers (they are compile-time constants everywhere).


/// Which bytes need escaping in a JSON string: `"`, `\` and control characters.
const fn escape_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
}
pub(crate) static NEEDS_ESCAPE: [bool; 256] = escape_table();

/// Appends `s` as a JSON string literal (quotes included). Runs of plain bytes are copied
/// whole; escaping follows RFC 8259 (short escapes where they exist, `\u00XX` otherwise).
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if !needs_escape(bytes) {
        // The common case: one check over the whole string, one reservation, one copy.
        let n = bytes.len();
        out.reserve(n + 2);
        let len = out.len();
        // SAFETY: `reserve` made room for `n + 2` bytes after `len`; all of them are written
        // before `set_len` (u8 needs no drop, so nothing is lost if a write could panic: none can).
        unsafe {
            let p = out.as_mut_ptr().add(len);
            *p = b'"';
            copy_short(bytes, p.add(1));
            *p.add(n + 1) = b'"';
            out.set_len(len + n + 2);
        }
        return;
    }
    write_str_escaping(out, bytes);
}

/// Copies `src` to `dst`. Most strings of an event are under 16 bytes, where a call to
/// `memcpy` costs more than the copy: those are copied with two overlapping loads and stores.
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes of writes and not overlap `src`.
#[inline(always)]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    let n = src.len();
    let s = src.as_ptr();
    unsafe {
        if n >= 16 {
            std::ptr::copy_nonoverlapping(s, dst, n);
        } else if n >= 8 {
            let (a, b) = (s.cast::<u64>().read_unaligned(), s.add(n - 8).cast::<u64>().read_unaligned());
            dst.cast::<u64>().write_unaligned(a);
            dst.add(n - 8).cast::<u64>().write_unaligned(b);
        } else if n >= 4 {
            let (a, b) = (s.cast::<u32>().read_unaligned(), s.add(n - 4).cast::<u32>().read_unaligned());
            dst.cast::<u32>().write_unaligned(a);
            dst.add(n - 4).cast::<u32>().write_unaligned(b);
        } else {
            for i in 0..n {
                *dst.add(i) = *s.add(i);
            }
        }
    }
}

/// True if any byte of `b` needs escaping in a JSON string (exact: SWAR over whole words,
/// the last word overlapping the previous one, a table lookup for strings under 8 bytes).
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    let n = b.len();
    if n < 8 {
        return b.iter().any(|&c| NEEDS_ESCAPE[c as usize]);
    }
    let mut i = 0;
    while i + 8 <= n {
        if word_needs_escape(u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))) {
            return true;
        }
        i += 8;
    }
    i < n && word_needs_escape(u64::from_le_bytes(b[n - 8..].try_into().expect("8 bytes")))
}

#[inline(never)]
fn write_str_escaping(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip eight plain bytes at a time (SWAR): no byte < 0x20, no '"', no '\\'.
        if i + 8 <= bytes.len() {
            let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
            if !word_needs_escape(w) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if !NEEDS_ESCAPE[b as usize] {
            i += 1;
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// True if any byte of `w` is below 0x20, a `"` or a `\\`. Exact for the word as a whole
/// (the per-byte flags of the zero-byte trick may be wrong above a true hit, never the answer).
#[inline]
pub(crate) fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))) != 0
}

/// Appends the escaped contents of a JSON string literal for `s`, without the quotes (so a
/// string can be written from several pieces). Escapes exactly what JSON requires: `"`, `\\`
/// and control characters.
pub fn write_str_contents(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&b[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(c >> 4) as usize]);
            out.push(HEX[(c & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&b[start..]);
}

/// An open JSON object; fields are appended in call order, `end` closes it.
pub struct JsonObj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObj<'a> {
    pub fn begin(out: &'a mut Vec<u8>) -> JsonObj<'a> {
        out.push(b'{');
        JsonObj { out, first: true }
    }

    // Inlined so that each call site copies its constant key without a memcpy call.
    #[inline(always)]
    fn key(&mut self, key: &str) {
        self.key_and_room(key, 0);
    }

    /// Writes `,"key":` (the comma unless first) and reserves `room` more bytes for the value:
    /// one capacity check per field instead of one per piece (this runs for every field of
    /// every record).
    #[inline(always)]
    fn key_and_room(&mut self, key: &str, room: usize) {
        let k = key.as_bytes();
        self.out.reserve(k.len() + 4 + room);
        let len = self.out.len();
        let comma = usize::from(!self.first);
        // SAFETY: `reserve` made room for `comma + k.len() + 3` bytes after `len`, and exactly
        // those are written before `set_len`.
        unsafe {
            let p = self.out.as_mut_ptr().add(len);
            *p = b',';
            let p = p.add(comma);
            *p = b'"';
            std::ptr::copy_nonoverlapping(k.as_ptr(), p.add(1), k.len());
            *p.add(1 + k.len()) = b'"';
            *p.add(2 + k.len()) = b':';
            self.out.set_len(len + comma + k.len() + 3);
        }
        self.first = false;
    }

    #[inline]
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key_and_room(key, value.len() + 2);
        write_str(self.out, value);
        self
    }

    /// Writes the field only when `value` is not empty (empty means "absent" in the event model).
    #[inline]
    pub fn opt_str(&mut self, key: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.str(key, value);
        }
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        super::write_int(self.out, value);
        self
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
        self
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(b"null");
        self
    }

    /// Writes already-valid JSON text (an object, array, number...) as the value.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
        self
    }

    /// Writes `key` and returns the buffer, for the caller to append the value (valid JSON).
    pub fn raw_key(&mut self, key: &str) -> &mut Vec<u8> {
        self.key(key);
        self.out
    }

    /// Writes a timestamp as an RFC 3339 string.
    pub fn time(&mut self, key: &str, t: &crate::time::Timestamp) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        t.write_rfc3339(self.out);
        self.out.push(b'"');
        self
    }

    /// Writes an array of strings.
    pub fn str_array(&mut self, key: &str, values: &[&str]) -> &mut Self {
        self.key(key);
        self.out.push(b'[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_str(self.out, v);
        }
        self.out.push(b']');
        self
    }

    /// Writes one string value made of the concatenation of `parts` (no intermediate String).
    pub fn str_parts(&mut self, key: &str, parts: &[&str]) -> &mut Self {
        self.key(key);
        self.out.push(b'"');
        for p in parts {
            write_str_contents(self.out, p);
        }
        self.out.push(b'"');
        self
    }

    /// Opens an array under `key`; close it with [`JsonArr::end`] before writing on.
    pub fn arr(&mut self, key: &str) -> JsonArr<'_> {
        self.key(key);
        self.out.push(b'[');
        JsonArr { out: self.out, first: true }
    }

    /// Opens a nested object under `key`; close it with [`JsonObj::end`] before writing on.
    pub fn obj(&mut self, key: &str) -> JsonObj<'_> {
        self.key(key);
        JsonObj::begin(self.out)
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

/// An open JSON array of objects; `end` closes it.
pub struct JsonArr<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonArr<'a> {
    /// Opens the next element, an object; close it with [`JsonObj::end`].
    pub fn obj(&mut self) -> JsonObj<'_> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        JsonObj::begin(self.out)
    }

    pub fn end(self) {
        self.out.push(b']');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_escaping_matches_serde_json() {
        for s in ["plain", "a longer plain string with \"one quote\" in the middle", "12345678\n", "q\"uote", "back\\slash", "nl\nCR\rTAB\t", "\u{1}\u{8}\u{c}\u{1f}\u{7f}", "é😀/", ""] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    /// Every byte that needs escaping, at every position of strings of every length up to 40,
    /// is found by the whole-string check (SWAR words, overlapping tail, short strings).
    #[test]
    fn escape_check_is_exact_at_every_position() {
        for len in 0..40 {
            let plain = "a".repeat(len);
            assert!(!needs_escape(plain.as_bytes()));
            for pos in 0..len {
                for bad in [b'"', b'\\', 0u8, 0x1f, b'\n'] {
                    let mut b = plain.clone().into_bytes();
                    b[pos] = bad;
                    assert!(needs_escape(&b), "len {len} pos {pos} byte {bad}");
                }
                for ok in [b' ', 0x7f, 0x80, 0xff, b'/', b'!', b'#', b'[', b']'] {
                    let mut b = plain.clone().into_bytes();
                    b[pos] = ok;
                    assert!(!needs_escape(&b), "len {len} pos {pos} byte {ok}");
                }
            }
        }
    }

    #[test]
    fn writes_valid_nested_json() {
        let mut out = Vec::new();
        let mut o = JsonObj::begin(&mut out);
        o.str("a", "q\"uote\\ \u{1}").opt_str("skipped", "").int("n", -5).bool("b", true);
        {
            let mut inner = o.obj("inner");
            inner.str("x", "é");
            inner.end();
        }
        o.raw("r", "[1,2]").null("z").str_array("l", &["a", "b"]);
        o.str_parts("p", &["a\"", "\u{1}\n\\", "é"]);
        {
            let mut a = o.arr("objs");
            for i in 0..2 {
                let mut e = a.obj();
                e.int("i", i);
                e.end();
            }
            a.end();
        }
        o.end();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["a"], "q\"uote\\ \u{1}");
        assert_eq!(v["inner"]["x"], "é");
        assert!(v.get("skipped").is_none());
        assert_eq!(v["r"][1], 2);
        assert_eq!(v["l"][1], "b");
        assert!(v["z"].is_null());
        assert_eq!(v["p"], "a\"\u{1}\n\\é");
        assert_eq!(v["objs"][1]["i"], 1);
    }
}
