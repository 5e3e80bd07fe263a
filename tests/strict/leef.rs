//! A strict LEEF 2.0 reader with our documented escapes:
//!
//! ```text
//! LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|attributes
//! ```
//!
//! * Header fields: `\\` and `\|`, and `\xHH` (lowercase hex) for a control character; any other
//!   backslash sequence is refused.
//! * The delimiter field is one character, or its code as `xHH` / `0xHH` (LEEF 2.0); a control
//!   character must be given as hex.
//! * Attributes are split at the delimiter, each at its first `=` into an alphanumeric key (never
//!   repeated) and a value. Values: `\\` -> `\`, `\t`, `\r`, `\n`, `\xHH` -> the control
//!   character; a backslash before anything else is a literal backslash (QRadar reads values
//!   as they are, so we only escape where it would be ambiguous). `\x` not followed by the hex
//!   of a control character is refused: our writer never produces it.
//! * A raw control character anywhere in the record, other than the delimiter between
//!   attributes, is refused.

use super::{hex_escape, is_control};

#[derive(Debug, PartialEq)]
pub struct Record {
    /// Vendor, Product, Version, EventID (unescaped).
    pub header: Vec<String>,
    pub delimiter: char,
    pub attributes: Vec<(String, String)>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub fn parse(line: &str) -> Result<Record, String> {
    let rest = line.strip_prefix("LEEF:2.0|").ok_or("no LEEF:2.0| prefix")?;
    let chars: Vec<char> = rest.chars().collect();
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while fields.len() < 5 {
        let c = *chars.get(i).ok_or_else(|| format!("only {} header fields", fields.len()))?;
        i += 1;
        match c {
            '|' => fields.push(std::mem::take(&mut cur)),
            '\\' => {
                let e = *chars.get(i).ok_or("header ends in a backslash")?;
                i += 1;
                match e {
                    '\\' | '|' => cur.push(e),
                    'x' => {
                        cur.push(hex_escape(&chars[i..])?);
                        i += 2;
                    }
                    _ => return Err(format!("unknown header escape \\{e}")),
                }
            }
            c if is_control(c) => return Err(format!("raw control character {c:?} in the header")),
            c => cur.push(c),
        }
    }
    let spec = fields.pop().unwrap();
    let delimiter = match spec.as_str() {
        s if s.chars().count() == 1 && !is_control(s.chars().next().unwrap()) => s.chars().next().unwrap(),
        s => {
            let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("x")).ok_or_else(|| format!("delimiter {s:?}"))?;
            let code = u32::from_str_radix(hex, 16).map_err(|_| format!("delimiter {s:?}"))?;
            char::from_u32(code).filter(|_| !hex.is_empty() && hex.len() <= 4).ok_or_else(|| format!("delimiter {s:?}"))?
        }
    };
    let body: String = chars[i..].iter().collect();
    let mut attributes: Vec<(String, String)> = Vec::new();
    if !body.is_empty() {
        for attr in body.split(delimiter) {
            if let Some(c) = attr.chars().find(|&c| is_control(c)) {
                return Err(format!("raw control character {c:?} in an attribute"));
            }
            let (key, value) = attr.split_once('=').ok_or_else(|| format!("attribute without '=': {attr:?}"))?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("bad key {key:?}"));
            }
            if attributes.iter().any(|(k, _)| k == key) {
                return Err(format!("key {key:?} repeated"));
            }
            attributes.push((key.to_string(), unescape_value(value)?));
        }
    }
    Ok(Record { header: fields, delimiter, attributes })
}

fn unescape_value(v: &str) -> Result<String, String> {
    let v: Vec<char> = v.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        if v[i] != '\\' {
            out.push(v[i]);
            i += 1;
            continue;
        }
        match v.get(i + 1) {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('x') => {
                out.push(hex_escape(&v[i + 2..])?);
                i += 2;
            }
            _ => {
                out.push('\\'); // literal: nothing it could be read as follows it
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses() {
        let r = parse("LEEF:2.0|Ven\\|dor|P|1.0|op\\x09x|x09|a=AD\\alice\tb=C:\\\\temp \\t\\x00\tc=x=y\\").unwrap();
        assert_eq!(r.header, ["Ven|dor", "P", "1.0", "op\tx"]);
        assert_eq!(r.delimiter, '\t');
        assert_eq!(r.get("a"), Some("AD\\alice"));
        assert_eq!(r.get("b"), Some("C:\\temp \t\u{0}"));
        assert_eq!(r.get("c"), Some("x=y\\"));
        assert_eq!(parse("LEEF:2.0|V|P|1|E|^|a=1^b=2").unwrap().attributes.len(), 2);
        for bad in [
            "LEEF:2.0|V|P|1|E|x09|a=\u{1}",
            "LEEF:2.0|V|P|1|E\t|x09|a=1",
            "LEEF:2.0|V|P|1|E|x09|a=\\x4",
            "LEEF:2.0|V|P|1|E|x09|a=\\x41",
            "LEEF:2.0|V|P|1|E|x09|a=1\ta=2",
            "LEEF:2.0|V|P|1|E|x09|a=1\tb",
            "LEEF:2.0|V|P|1|E\\q|x09|a=1",
            "LEEF:1.0|V|P|1|E|a=1",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
