//! Strict readers for what the broker writes, used by `tests/output_strict.rs` and by the
//! `render_strict` fuzz target (`fuzz/fuzz_targets/render_strict.rs` includes this directory).
//!
//! They are written from the specifications and from the rules in `docs/formats.md` ("What a
//! field can never do"), and share no code with the renderers: a renderer bug cannot hide behind
//! the same bug in its reader. Each reader refuses anything the spec (or our documented rule)
//! does not allow, instead of guessing: a raw control character, an unknown escape, a duplicate
//! key, a header field out of bounds.
//!
//! - [`json`]: RFC 8259, refusing duplicate keys (and a lenient mode that merges them the way
//!   the documented `details` rule does, to compute expectations).
//! - [`rfc5424`]: RFC 5424 syslog messages, header fields and structured data by the ABNF.
//! - [`rfc3164`]: BSD syslog as we document writing it (`<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`).
//! - [`cef`]: CEF rev. 25 header and extension, plus our `\xHH` control-character escape.
//! - [`leef`]: LEEF 2.0 header, delimiter and attributes, plus our value escapes.
#![allow(dead_code)]

pub mod cef;
pub mod json;
pub mod leef;
pub mod rfc3164;
pub mod rfc5424;

/// True for the characters no CEF or LEEF record may carry raw: C0 controls and DEL.
pub fn is_control(c: char) -> bool {
    (c as u32) < 0x20 || c == '\u{7f}'
}

/// Splits an RFC 6587 octet-counted stream into its frames (`LEN SP MSG`...), refusing a
/// malformed length or a frame that runs past the end.
pub fn octet_counted_frames(mut b: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut frames = Vec::new();
    while !b.is_empty() {
        let sp = b.iter().position(|&c| c == b' ').ok_or("no SP after MSG-LEN")?;
        let len = &b[..sp];
        if len.is_empty() || len[0] == b'0' || !len.iter().all(u8::is_ascii_digit) {
            return Err(format!("bad MSG-LEN {:?}", String::from_utf8_lossy(len)));
        }
        let n: usize = std::str::from_utf8(len).unwrap().parse().map_err(|e| format!("MSG-LEN: {e}"))?;
        let rest = &b[sp + 1..];
        if rest.len() < n {
            return Err(format!("frame of {n} bytes, only {} left", rest.len()));
        }
        frames.push(&rest[..n]);
        b = &rest[n..];
    }
    Ok(frames)
}

/// Reads `\xHH` (two lowercase hex digits) at the start of `rest` (just after the `\x`), which
/// our CEF and LEEF rule writes only for control characters.
pub fn hex_escape(rest: &[char]) -> Result<char, String> {
    let hex: String = rest.iter().take(2).collect();
    if hex.len() != 2 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!("bad \\x escape: \\x{hex}"));
    }
    let c = char::from(u8::from_str_radix(&hex, 16).unwrap());
    if !is_control(c) {
        return Err(format!("\\x{hex} escapes a character that is not a control character"));
    }
    Ok(c)
}
