//! A strict reader for BSD syslog (RFC 3164) as `docs/formats.md` says we write it:
//!
//! ```text
//! <PRI>Mmm dd hh:mm:ss HOSTNAME TAG: MSG
//! ```
//!
//! PRI 0..191, the RFC's TIMESTAMP (English month, day padded with a space), HOSTNAME 1..255
//! PRINTUSASCII characters, TAG 1..32 PRINTUSASCII characters other than `:`, `[` and `]`
//! (RFC 3164 section 4.1.3 allows at most 32), then `: ` and the message.

#[derive(Debug, PartialEq)]
pub struct Message<'a> {
    pub pri: u8,
    pub timestamp: String,
    pub hostname: String,
    pub tag: String,
    pub msg: &'a [u8],
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

pub fn parse(b: &[u8]) -> Result<Message<'_>, String> {
    if b.first() != Some(&b'<') {
        return Err("no PRI".into());
    }
    let close = b.iter().take(5).position(|&c| c == b'>').ok_or("PRI not closed")?;
    let pri = std::str::from_utf8(&b[1..close]).map_err(|e| e.to_string())?;
    if pri.is_empty() || !pri.bytes().all(|c| c.is_ascii_digit()) || (pri.len() > 1 && pri.starts_with('0')) {
        return Err(format!("PRI {pri:?}"));
    }
    let pri: u8 = pri.parse().ok().filter(|&p| p <= 191).ok_or("PRI above 191")?;
    let ts = b.get(close + 1..close + 16).ok_or("short TIMESTAMP")?;
    let ts = std::str::from_utf8(ts).map_err(|_| "TIMESTAMP not ASCII")?;
    let t = ts.as_bytes();
    let day_ok = matches!((t[4], t[5]), (b' ', b'1'..=b'9') | (b'1'..=b'2', b'0'..=b'9') | (b'3', b'0'..=b'1'));
    let num = |s: &[u8], max: u8| s.iter().all(u8::is_ascii_digit) && (s[0] - b'0') * 10 + (s[1] - b'0') <= max;
    if !MONTHS.contains(&&ts[0..3])
        || t[3] != b' '
        || !day_ok
        || t[6] != b' '
        || !num(&t[7..9], 23)
        || t[9] != b':'
        || !num(&t[10..12], 59)
        || t[12] != b':'
        || !num(&t[13..15], 59)
    {
        return Err(format!("TIMESTAMP {ts:?}"));
    }
    let mut i = close + 16;
    if b.get(i) != Some(&b' ') {
        return Err("no SP after TIMESTAMP".into());
    }
    i += 1;
    let start = i;
    while b.get(i).is_some_and(|c| (33..=126).contains(c)) {
        i += 1;
    }
    let hostname = &b[start..i];
    if hostname.is_empty() || hostname.len() > 255 || b.get(i) != Some(&b' ') {
        return Err(format!("HOSTNAME {:?}", String::from_utf8_lossy(hostname)));
    }
    i += 1;
    let start = i;
    while b.get(i).is_some_and(|c| (33..=126).contains(c) && !matches!(c, b':' | b'[' | b']')) {
        i += 1;
    }
    let tag = &b[start..i];
    if tag.is_empty() || tag.len() > 32 || b.get(i..i + 2) != Some(b": ") {
        return Err(format!("TAG {:?} (1..=32 characters, then \": \")", String::from_utf8_lossy(tag)));
    }
    Ok(Message {
        pri,
        timestamp: ts.to_string(),
        hostname: String::from_utf8(hostname.to_vec()).unwrap(),
        tag: String::from_utf8(tag.to_vec()).unwrap(),
        msg: &b[i + 2..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses() {
        let m = parse(b"<34>Oct  1 22:14:15 mymachine su: 'su root' failed").unwrap();
        assert_eq!((m.pri, m.hostname.as_str(), m.tag.as_str()), (34, "mymachine", "su"));
        assert_eq!(m.msg, b"'su root' failed");
        for bad in [
            &b"<34>Oct 1 22:14:15 h t: m"[..],
            b"<34>Oct 01 22:14:15 h t: m",
            b"<34>Oct  1 24:14:15 h t: m",
            b"<34>Oct  1 22:14:15 h x y: m",
            b"<34>Oct  1 22:14:15 h 012345678901234567890123456789012: m",
            b"<34>Oct  1 22:14:15 h t[1]: m",
            b"<200>Oct  1 22:14:15 h t: m",
        ] {
            assert!(parse(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
    }
}
