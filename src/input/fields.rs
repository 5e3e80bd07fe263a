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

/// Bytes a Qumulo token may hold: `[A-Za-z0-9_.-]`.
static TOKEN_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.';
        b += 1;
    }
    t
};

/// A Qumulo token: 1 to [`MAX_TOKEN`] of `[A-Za-z0-9_.-]`.
#[inline]
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TOKEN && s.bytes().all(|b| TOKEN_BYTE[b as usize])
}

/// Decimal digits only, 1 to [`MAX_FILE_ID_DIGITS`] of them.
#[inline]
pub fn is_file_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_FILE_ID_DIGITS && s.bytes().all(|b| b.is_ascii_digit())
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
            !zone.is_empty() && zone.len() <= 64 && zone.bytes().all(|b| TOKEN_BYTE[b as usize]) && addr.parse::<Ipv6Addr>().is_ok()
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
    if b.len() > 15 || !b.iter().all(|&c| c.wrapping_sub(b'0') < 10 || c == b'.') {
        return None;
    }
    let (mut i, mut parts) = (0, 0);
    loop {
        let start = i;
        let mut value = 0u32;
        while i < b.len() && b[i] != b'.' {
            value = (value * 10 + u32::from(b[i] - b'0')).min(1000);
            i += 1;
        }
        let len = i - start;
        if len == 0 || len > 3 || value > 255 || (len > 1 && b[start] == b'0') {
            return Some(false);
        }
        parts += 1;
        if i == b.len() {
            return Some(parts == 4);
        }
        if parts == 4 {
            return Some(false);
        }
        i += 1;
    }
}

/// A host name or address as a syslog header or the older CSV variant carries it.
#[inline]
pub fn is_node(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NODE && s.bytes().all(|b| b > 0x20 && b != 0x7f)
}

/// No control character other than tab (C0, DEL; C1 controls are U+0080..U+009F).
#[inline]
pub fn is_text(s: &str) -> bool {
    // Fast path: printable ASCII and tab, which is what nearly every field is.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
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
