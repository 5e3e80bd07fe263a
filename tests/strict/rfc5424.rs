//! A strict RFC 5424 reader, by the ABNF of section 6:
//!
//! ```text
//! SYSLOG-MSG = HEADER SP STRUCTURED-DATA [SP MSG]
//! HEADER     = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
//! ```
//!
//! PRI 0..191 without leading zeros, VERSION 1, TIMESTAMP a full RFC 3339 date-time with
//! TIME-SECFRAC of 1 to 6 digits (or `-`), HOSTNAME 1..255, APP-NAME 1..48, PROCID 1..128,
//! MSGID 1..32 PRINTUSASCII characters (33..126) or `-`, STRUCTURED-DATA `-` or SD-ELEMENTs
//! whose SD-NAMEs are 1..32 PRINTUSASCII except `=`, SP, `]`, `"` and whose PARAM-VALUEs are
//! UTF-8 with `"`, `\` and `]` escaped. Header tokens are returned as written (`-` is NILVALUE).

/// `(SD-ID, [(PARAM-NAME, unescaped PARAM-VALUE)])`.
pub type SdElement = (String, Vec<(String, String)>);

#[derive(Debug, PartialEq)]
pub struct Message<'a> {
    pub pri: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub msgid: String,
    /// Empty for NILVALUE.
    pub structured_data: Vec<SdElement>,
    /// The MSG octets (after its SP), if there was one.
    pub msg: Option<&'a [u8]>,
}

fn is_print(c: u8) -> bool {
    (33..=126).contains(&c)
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn sp(&mut self, what: &str) -> Result<(), String> {
        if self.b.get(self.i) == Some(&b' ') {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected SP before {what} at byte {}", self.i))
        }
    }

    /// A header token: NILVALUE or 1..=max PRINTUSASCII characters.
    fn token(&mut self, what: &str, max: usize) -> Result<String, String> {
        let start = self.i;
        while self.b.get(self.i).is_some_and(|&c| is_print(c)) {
            self.i += 1;
        }
        let t = &self.b[start..self.i];
        if t.is_empty() || t.len() > max {
            return Err(format!("{what}: {} characters (1..={max} PRINTUSASCII)", t.len()));
        }
        match self.b.get(self.i) {
            None | Some(b' ') => Ok(String::from_utf8(t.to_vec()).unwrap()),
            Some(c) => Err(format!("{what}: byte {c:#04x} is not PRINTUSASCII")),
        }
    }
}

fn digits(s: &[u8], range: std::ops::RangeInclusive<u32>, what: &str) -> Result<(), String> {
    let ok = s.iter().all(u8::is_ascii_digit) && range.contains(&std::str::from_utf8(s).unwrap().parse::<u32>().unwrap_or(u32::MAX));
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: {:?}", String::from_utf8_lossy(s)))
    }
}

/// Checks a TIMESTAMP token: NILVALUE or `YYYY-MM-DDTHH:MM:SS[.1*6DIGIT](Z|+hh:mm|-hh:mm)`.
pub fn check_timestamp(t: &str) -> Result<(), String> {
    if t == "-" {
        return Ok(());
    }
    let b = t.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(format!("TIMESTAMP {t:?}"));
    }
    digits(&b[0..4], 0..=9999, "year")?;
    digits(&b[5..7], 1..=12, "month")?;
    digits(&b[8..10], 1..=31, "day")?;
    digits(&b[11..13], 0..=23, "hour")?;
    digits(&b[14..16], 0..=59, "minute")?;
    digits(&b[17..19], 0..=59, "second")?;
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=6).contains(&n) {
            return Err(format!("TIME-SECFRAC of {n} digits in {t:?} (1 to 6)"));
        }
        rest = &rest[1 + n..];
    }
    match rest {
        b"Z" => Ok(()),
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            digits(&[*h1, *h2], 0..=23, "offset hour")?;
            digits(&[*m1, *m2], 0..=59, "offset minute")
        }
        _ => Err(format!("TIME-OFFSET in {t:?}")),
    }
}

/// Parses one syslog message (one frame, without transport framing).
pub fn parse(b: &[u8]) -> Result<Message<'_>, String> {
    if b.first() != Some(&b'<') {
        return Err("no PRI".into());
    }
    let close = b.iter().take(5).position(|&c| c == b'>').ok_or("PRI not closed")?;
    let pri = &b[1..close];
    if pri.is_empty() || (pri.len() > 1 && pri[0] == b'0') {
        return Err(format!("PRIVAL {:?}", String::from_utf8_lossy(pri)));
    }
    digits(pri, 0..=191, "PRIVAL")?;
    let pri: u8 = std::str::from_utf8(pri).unwrap().parse().unwrap();
    if b.get(close + 1..close + 2) != Some(b"1") || b.get(close + 2).is_some_and(u8::is_ascii_digit) {
        return Err("VERSION is not 1".into());
    }
    let mut c = Cursor { b, i: close + 2 };
    c.sp("TIMESTAMP")?;
    let timestamp = c.token("TIMESTAMP", 32)?;
    check_timestamp(&timestamp)?;
    c.sp("HOSTNAME")?;
    let hostname = c.token("HOSTNAME", 255)?;
    c.sp("APP-NAME")?;
    let app_name = c.token("APP-NAME", 48)?;
    c.sp("PROCID")?;
    let procid = c.token("PROCID", 128)?;
    c.sp("MSGID")?;
    let msgid = c.token("MSGID", 32)?;
    c.sp("STRUCTURED-DATA")?;
    let structured_data = structured_data(&mut c)?;
    let msg = match b.get(c.i) {
        None => None,
        Some(b' ') => Some(&b[c.i + 1..]),
        Some(x) => return Err(format!("byte {x:#04x} after STRUCTURED-DATA")),
    };
    Ok(Message { pri, timestamp, hostname, app_name, procid, msgid, structured_data, msg })
}

fn sd_name(c: &mut Cursor<'_>, what: &str) -> Result<String, String> {
    let start = c.i;
    while c.b.get(c.i).is_some_and(|&x| is_print(x) && !matches!(x, b'=' | b']' | b'"')) {
        c.i += 1;
    }
    let n = &c.b[start..c.i];
    if n.is_empty() || n.len() > 32 {
        return Err(format!("{what} of {} characters", n.len()));
    }
    Ok(String::from_utf8(n.to_vec()).unwrap())
}

fn structured_data(c: &mut Cursor<'_>) -> Result<Vec<SdElement>, String> {
    let b = c.b;
    if b.get(c.i) == Some(&b'-') {
        c.i += 1;
        return Ok(Vec::new());
    }
    let mut elements = Vec::new();
    while b.get(c.i) == Some(&b'[') {
        c.i += 1;
        let id = sd_name(c, "SD-ID")?;
        let mut params = Vec::new();
        while b.get(c.i) == Some(&b' ') {
            c.i += 1;
            let name = sd_name(c, "PARAM-NAME")?;
            if b.get(c.i..c.i + 2) != Some(b"=\"") {
                return Err("expected =\" after PARAM-NAME".into());
            }
            c.i += 2;
            let mut value = Vec::new();
            loop {
                match b.get(c.i) {
                    None => return Err("unterminated PARAM-VALUE".into()),
                    Some(b'"') => break,
                    Some(b']') => return Err("unescaped ] in PARAM-VALUE".into()),
                    Some(b'\\') if matches!(b.get(c.i + 1), Some(b'"' | b'\\' | b']')) => {
                        value.push(b[c.i + 1]);
                        c.i += 2;
                    }
                    Some(&x) => {
                        value.push(x);
                        c.i += 1;
                    }
                }
            }
            c.i += 1;
            params.push((name, String::from_utf8(value).map_err(|e| format!("PARAM-VALUE: {e}"))?));
        }
        if b.get(c.i) != Some(&b']') {
            return Err("SD-ELEMENT not closed".into());
        }
        c.i += 1;
        elements.push((id, params));
    }
    if elements.is_empty() {
        return Err("STRUCTURED-DATA is neither - nor an SD-ELEMENT".into());
    }
    Ok(elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rfc_examples_and_refuses_bad_headers() {
        let m = parse(b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Appl\\]ication\"] BOMAn application").unwrap();
        assert_eq!((m.pri, m.hostname.as_str(), m.msgid.as_str()), (165, "mymachine.example.com", "ID47"));
        assert_eq!(m.structured_data[0].1[1], ("eventSource".to_string(), "Appl]ication".to_string()));
        assert_eq!(m.msg, Some(&b"BOMAn application"[..]));
        let m = parse(b"<34>1 2003-08-24T05:14:15.000003-07:00 host su - - -").unwrap();
        assert_eq!(m.msg, None);
        for bad in [
            &b"<192>1 - - - - - -"[..],
            b"<034>1 - - - - - -",
            b"<34>2 - - - - - -",
            b"<34>1 2003-08-24T05:14:15.0000003Z h a - - -",
            b"<34>1 - h a - 012345678901234567890123456789012 -",
            b"<34>1 - h\x01 a - - -",
            b"<34>1 - h a - - [x a=\"]\"]",
            b"<34>1 - h a - - -x",
        ] {
            assert!(parse(bad).is_err(), "accepted {:?}", String::from_utf8_lossy(bad));
        }
    }
}
