//! The types of an event's fields, checked once per event whatever the input shape
//! (`docs/event-schema.md`, "Field types"), so that a wrong field is an error naming the field,
//! never a silently wrong security record:
//!
//! * `client_ip` and `fromhost_ip`: an IPv4 or IPv6 address, written exactly as it came (an
//!   IPv6 zone id `fe80::1%eth0` and IPv4-mapped `::ffff:192.0.2.1` kept as they are), or empty;
//! * `protocol`, `operation`, `status`: Qumulo tokens, 1 to 128 letters, digits, `_`, `-` and
//!   `.`: a new name is accepted, a string that cannot be a name (spaces, quotes, brackets,
//!   control characters) is not. `protocol` may be empty, `operation` and `status` may not;
//! * `file_id`: decimal digits (at most 40), kept exactly, or empty;
//! * `node`: a host name or address: 1 to 255 printable characters without spaces, or empty;
//! * `cluster`: any text without control characters other than tab;
//! * the user's name, sid and auth id and the paths: any text. A file name may hold any
//!   character but `/` and NUL, so refusing some would let a user hide their accesses from the
//!   SIEM by naming a file oddly; every output format escapes what it must instead.
//!
//! The checks run on the hot path: each is a byte loop over a short string, and the address
//! parse is std's (no allocation).

use std::net::{IpAddr, Ipv6Addr};

use crate::event::Event;

/// Longest protocol, operation or status name accepted.
pub const MAX_TOKEN: usize = 128;
/// Most digits a file id may have (Qumulo's ids are 64-bit; some room for wider ones).
pub const MAX_FILE_ID_DIGITS: usize = 40;
/// Longest node name (RFC 1035 names are shorter; RFC 5424's HOSTNAME field allows 255).
pub const MAX_NODE: usize = 255;

/// Byte classes, one bit each, so that every field check is one table lookup per byte.
const TOKEN: u8 = 1; // `[A-Za-z0-9_.-]`
const DIGIT: u8 = 2; // `[0-9]`
const NODE: u8 = 4; // anything but space, C0 controls and DEL
const PRINTABLE: u8 = 8; // printable ASCII or tab (the fast path of `is_text`)
const DIGIT_OR_DOT: u8 = 16; // `[0-9.]` (the IPv4 fast path)

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut k = 0;
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.' {
            k |= TOKEN;
        }
        if c.is_ascii_digit() {
            k |= DIGIT | DIGIT_OR_DOT;
        }
        if c == b'.' {
            k |= DIGIT_OR_DOT;
        }
        if c > 0x20 && c != 0x7f {
            k |= NODE;
        }
        if (c >= 0x20 && c < 0x7f) || c == b'\t' {
            k |= PRINTABLE;
        }
        t[b] = k;
        b += 1;
    }
    t
};

/// True if every byte of `s` has `class`. Eight lookups are ANDed before one branch: these
/// checks run on every field of every event, and the branch per byte was most of their cost.
#[inline]
fn all_of(s: &[u8], class: u8) -> bool {
    let mut words = s.chunks_exact(8);
    for w in &mut words {
        let k = CLASS[w[0] as usize]
            & CLASS[w[1] as usize]
            & CLASS[w[2] as usize]
            & CLASS[w[3] as usize]
            & CLASS[w[4] as usize]
            & CLASS[w[5] as usize]
            & CLASS[w[6] as usize]
            & CLASS[w[7] as usize];
        if k & class == 0 {
            return false;
        }
    }
    words.remainder().iter().fold(class, |k, &b| k & CLASS[b as usize]) != 0
}

/// A Qumulo token: 1 to [`MAX_TOKEN`] of `[A-Za-z0-9_.-]`.
#[inline]
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TOKEN && all_of(s.as_bytes(), TOKEN)
}

/// Decimal digits only, 1 to [`MAX_FILE_ID_DIGITS`] of them.
#[inline]
pub fn is_file_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FILE_ID_DIGITS && all_of(s.as_bytes(), DIGIT)
}

/// An IPv4 or IPv6 address as std reads it, or an IPv6 address with a zone id
/// (`fe80::1%eth0`; the zone is 1 to 64 of `[A-Za-z0-9_.-]`).
pub fn is_ip(s: &str) -> bool {
    if let Some(v4) = is_plain_ipv4(s.as_bytes()) {
        return v4;
    }
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    match s.split_once('%') {
        Some((addr, zone)) => {
            !zone.is_empty() && zone.len() <= 64 && all_of(zone.as_bytes(), TOKEN) && addr.parse::<Ipv6Addr>().is_ok()
        }
        None => false,
    }
}

/// The hot path of [`is_ip`] (nearly every client address is IPv4): `Some(valid)` for a string
/// of digits and dots, decided exactly as std's `Ipv4Addr` parser decides (four parts of 1 to 3
/// digits, each at most 255, no leading zero); `None` for anything else, which std then reads.
/// One pass; a test checks it against std on every string of up to 7 digits and dots and on
/// random longer ones.
#[inline]
fn is_plain_ipv4(b: &[u8]) -> Option<bool> {
    if b.len() > 15 || !all_of(b, DIGIT_OR_DOT) {
        return None;
    }
    // `d(i)`: the digit at `i`, or 10 and above for a dot or the end.
    let d = |i: usize| b.get(i).map_or(10, |&c| c.wrapping_sub(b'0'));
    let mut i = 0;
    for part in 0..4 {
        if part != 0 {
            if b.get(i) != Some(&b'.') {
                return Some(false);
            }
            i += 1;
        }
        let (d0, d1) = (d(i), d(i + 1));
        if d0 >= 10 {
            return Some(false); // an empty part
        }
        if d1 >= 10 {
            i += 1;
            continue;
        }
        let d2 = d(i + 2);
        if d0 == 0 {
            return Some(false); // a leading zero
        }
        if d2 >= 10 {
            i += 2;
            continue;
        }
        if u32::from(d0) * 100 + u32::from(d1) * 10 + u32::from(d2) > 255 {
            return Some(false);
        }
        i += 3; // a fourth digit is then where a dot or the end must be
    }
    Some(i == b.len())
}

/// A host name or address as a syslog header or the older CSV variant carries it.
#[inline]
pub fn is_node(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NODE && all_of(s.as_bytes(), NODE)
}

/// No control character other than tab (C0, DEL; C1 controls are U+0080..U+009F).
#[inline]
pub fn is_text(s: &str) -> bool {
    // Fast path: printable ASCII and tab, which is what nearly every field is.
    if all_of(s.as_bytes(), PRINTABLE) {
        return true;
    }
    !s.chars().any(|c| c.is_control() && c != '\t')
}

/// Shortens a field's value for an error message (a hostile line may hold kilobytes there).
pub fn shown(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

/// Checks every field of a parsed event against its type; the error names the field.
pub fn check(ev: &Event) -> Result<(), String> {
    if !ev.client_ip.is_empty() && !is_ip(&ev.client_ip) {
        return Err(format!("field 'client_ip' is not an IP address: {}", shown(&ev.client_ip)));
    }
    if !ev.fromhost_ip.is_empty() && !is_ip(&ev.fromhost_ip) {
        return Err(format!("field 'fromhost_ip' is not an IP address: {}", shown(&ev.fromhost_ip)));
    }
    if !ev.protocol.is_empty() && !is_token(&ev.protocol) {
        return Err(format!("field 'protocol' is not a protocol name: {}", shown(&ev.protocol)));
    }
    if !is_token(&ev.operation) {
        return Err(if ev.operation.is_empty() {
            "field 'operation' is empty".to_string()
        } else {
            format!("field 'operation' is not an operation name: {}", shown(&ev.operation))
        });
    }
    if !is_token(&ev.status) {
        return Err(if ev.status.is_empty() {
            "field 'status' is empty".to_string()
        } else {
            format!("field 'status' is not a status name: {}", shown(&ev.status))
        });
    }
    if !ev.file_id.is_empty() && !is_file_id(&ev.file_id) {
        return Err(format!("field 'file_id' is not a decimal integer: {}", shown(&ev.file_id)));
    }
    if !ev.node.is_empty() && !is_node(&ev.node) {
        return Err(format!("field 'node' is not a host name: {}", shown(&ev.node)));
    }
    if !is_text(&ev.cluster) {
        return Err(format!("field 'cluster' holds a control character: {}", shown(&ev.cluster)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for ok in [
            "203.0.113.0",
            "::1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "fe80::1%eth0",
            "fe80::1%2",
            "0.0.0.0",
            "2001:db8:0:0:0:0:2:1",
        ] {
            assert!(is_ip(ok), "{ok}");
        }
        for bad in [
            "",
            "2019-11-08T15:31:40 Blog-1 qumulo ::1",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "[::1]",
            "::1%",
            "1.2.3.4%eth0",
            "fe80::1%eth 0",
            "host.example.com",
            " 1.2.3.4",
            "1.2.3.4:80",
        ] {
            assert!(!is_ip(bad), "{bad}");
        }
    }

    /// The IPv4 fast path decides exactly as std, on every string of digits and dots up to 7
    /// bytes long and on random longer ones.
    #[test]
    fn plain_ipv4_matches_std() {
        let alphabet = [b'0', b'1', b'2', b'5', b'9', b'.'];
        let mut check = |s: &[u8]| {
            let text = std::str::from_utf8(s).unwrap();
            let std_says = text.parse::<std::net::Ipv4Addr>().is_ok();
            assert_eq!(is_plain_ipv4(s), Some(std_says), "{text}");
        };
        let mut buf = Vec::new();
        fn all(buf: &mut Vec<u8>, alphabet: &[u8], left: usize, check: &mut dyn FnMut(&[u8])) {
            check(buf);
            if left == 0 {
                return;
            }
            for &c in alphabet {
                buf.push(c);
                all(buf, alphabet, left - 1, check);
                buf.pop();
            }
        }
        all(&mut buf, &alphabet, 7, &mut check);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 7 + (state % 9) as usize;
            let s: Vec<u8> = (0..len).map(|i| b"0123456789...."[((state >> (i * 4)) % 14) as usize]).collect();
            check(&s);
        }
        for ok in ["255.255.255.255", "0.0.0.0", "10.20.0.1", "192.168.100.200"] {
            check(ok.as_bytes());
        }
        assert_eq!(is_plain_ipv4(b"::1"), None);
        assert_eq!(is_plain_ipv4(b"1.2.3.4.5.6.7.8"), Some(false));
    }

    /// The unrolled class check decides as a plain per-byte loop does, for every class, on
    /// strings of every length around the 8-byte unrolling and every byte value.
    #[test]
    fn class_checks_match_a_per_byte_loop() {
        type ByteTest = fn(u8) -> bool;
        let simple: [(u8, ByteTest); 5] = [
            (TOKEN, |c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.'),
            (DIGIT, |c| c.is_ascii_digit()),
            (NODE, |c| c > 0x20 && c != 0x7f),
            (PRINTABLE, |c| (0x20..0x7f).contains(&c) || c == b'\t'),
            (DIGIT_OR_DOT, |c| c.is_ascii_digit() || c == b'.'),
        ];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in 0..40 {
            for _ in 0..2000 {
                // Mostly token bytes, with one odd byte (any value) at a random place half the time.
                let mut s: Vec<u8> = (0..len).map(|_| b"abcXYZ019_-."[(next() % 12) as usize]).collect();
                if len > 0 && next() % 2 == 0 {
                    let at = (next() % len as u64) as usize;
                    s[at] = (next() % 256) as u8;
                }
                for (class, f) in simple {
                    assert_eq!(all_of(&s, class), s.iter().all(|&c| f(c)), "class {class} on {s:?}");
                }
            }
        }
    }

    #[test]
    fn tokens() {
        for ok in ["api", "ftp", "internal", "nfs3", "nfs4", "nfsv3", "nfsv4.1", "s3", "smb", "smb2", "smb3", "9p", "fs_read_data", "x-y"] {
            assert!(is_token(ok), "{ok}");
        }
        let long = "a".repeat(MAX_TOKEN + 1);
        for bad in ["", "smb 2", "\"smb2\"", "smb2]", "[smb2", "a\u{0}", "a\tb", "é", "a,b", "a;b", long.as_str()] {
            assert!(!is_token(bad), "{bad}");
        }
    }

    #[test]
    fn file_ids_node_names_and_text() {
        assert!(is_file_id("0") && is_file_id("18446744073709551616123"));
        assert!(!is_file_id("") && !is_file_id("-1") && !is_file_id("1.5") && !is_file_id("1e9") && !is_file_id("/p"));
        assert!(is_node("q-varonis-1") && is_node("fe80::1") && is_node("nœud-1"));
        assert!(!is_node("qumulo: x") && !is_node("a\u{7f}") && !is_node(&"n".repeat(256)));
        assert!(is_text("AD\\alice") && is_text("a\tb") && is_text("/é/ü"));
        assert!(!is_text("a\nb") && !is_text("a\u{1b}[31m") && !is_text("\u{85}") && !is_text("x\u{7f}"));
    }

    #[test]
    fn errors_name_the_field_and_shorten_the_value() {
        let mut ev = Event { operation: "fs_read_data".into(), status: "ok".into(), ..Event::default() };
        assert_eq!(check(&ev), Ok(()));
        ev.client_ip = "x".repeat(1000);
        let e = check(&ev).unwrap_err();
        assert!(e.starts_with("field 'client_ip' is not an IP address: \"xxx") && e.ends_with("(1000 bytes)") && e.len() < 140, "{e}");
        ev.client_ip.clear();
        ev.status = "not ok".into();
        assert!(check(&ev).unwrap_err().starts_with("field 'status'"));
        ev.status = "ok".into();
        ev.path = "/a\nb\u{1}".into();
        assert_eq!(check(&ev), Ok(()), "a path may hold any character");
        ev.cluster = "c\u{1b}".into();
        assert!(check(&ev).unwrap_err().starts_with("field 'cluster'"));
    }
}
