//! A strict CEF reader ("Implementing ArcSight CEF", revision 25) with our documented escape for
//! control characters:
//!
//! ```text
//! CEF:Version|Device Vendor|Device Product|Device Version|Device Event Class ID|Name|Severity|Extension
//! ```
//!
//! * Header fields: `\\` and `\|` are the spec's escapes; `\xHH` (lowercase hex) is ours, for a
//!   control character. Any other backslash sequence is refused.
//! * Extension: `key=value` pairs separated by one space; a key is the alphanumeric word before
//!   an unescaped `=`, a value runs to the space before the next key. Values unescape `\\`, `\=`,
//!   `\n`, `\r` (spec) and `\xHH` (ours); any other backslash sequence is refused, and so is a
//!   repeated key.
//! * A raw control character (C0 or DEL) anywhere in the record is refused.

use super::{hex_escape, is_control};

#[derive(Debug, PartialEq)]
pub struct Record {
    /// The seven header fields, unescaped; `header[0]` is the version (`0`).
    pub header: Vec<String>,
    /// Extension pairs in order, values unescaped.
    pub extension: Vec<(String, String)>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extension.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub fn parse(line: &str) -> Result<Record, String> {
    if let Some(c) = line.chars().find(|&c| is_control(c)) {
        return Err(format!("raw control character {:?}", c));
    }
    let rest = line.strip_prefix("CEF:").ok_or("no CEF: prefix")?;
    let chars: Vec<char> = rest.chars().collect();
    let mut header = Vec::new();
    let mut cur = String::new();
    let mut i = 0;
    while header.len() < 7 {
        let c = *chars.get(i).ok_or_else(|| format!("only {} header fields", header.len()))?;
        i += 1;
        match c {
            '|' => header.push(std::mem::take(&mut cur)),
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
            c => cur.push(c),
        }
    }
    if header[0] != "0" {
        return Err(format!("CEF version {:?}", header[0]));
    }
    if !(0..=10).any(|s| header[6] == s.to_string()) {
        return Err(format!("Severity {:?}", header[6]));
    }
    let extension = parse_extension(&chars[i..])?;
    Ok(Record { header, extension })
}

fn parse_extension(x: &[char]) -> Result<Vec<(String, String)>, String> {
    // The unescaped '=' signs: each ends a key.
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < x.len() {
        match x[i] {
            '\\' => i += 2,
            '=' => {
                eqs.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    if eqs.is_empty() {
        return if x.is_empty() { Ok(Vec::new()) } else { Err("extension without a pair".into()) };
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut key_start = 0;
    for (n, &eq) in eqs.iter().enumerate() {
        let key: String = x[key_start..eq].iter().collect();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("bad key {key:?}"));
        }
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(format!("key {key:?} repeated"));
        }
        let value_end = match eqs.get(n + 1) {
            Some(&next) => {
                let sp = x[..next].iter().rposition(|&c| c == ' ').filter(|&p| p > eq).ok_or("no space before a key")?;
                key_start = sp + 1;
                sp
            }
            None => x.len(),
        };
        pairs.push((key, unescape_value(&x[eq + 1..value_end])?));
    }
    Ok(pairs)
}

fn unescape_value(v: &[char]) -> Result<String, String> {
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        if v[i] != '\\' {
            out.push(v[i]);
            i += 1;
            continue;
        }
        let e = *v.get(i + 1).ok_or("value ends in a lone backslash")?;
        i += 2;
        match e {
            '\\' | '=' => out.push(e),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            'x' => {
                out.push(hex_escape(&v[i..])?);
                i += 2;
            }
            _ => return Err(format!("unknown extension escape \\{e}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_spec_and_our_escape() {
        let r = parse("CEF:0|Ven\\|dor|P\\\\|1.0|id\\x0a|Name|5|src=10.0.0.1 msg=a b\\=c \\\\ d\\n\\x00 act=x").unwrap();
        assert_eq!(r.header, ["0", "Ven|dor", "P\\", "1.0", "id\n", "Name", "5"]);
        assert_eq!(r.extension, [("src".into(), "10.0.0.1".into()), ("msg".into(), "a b=c \\ d\n\u{0}".into()), ("act".into(), "x".into())]);
        for bad in [
            "CEF:0|a|b|c|d|e|5|k=\u{1}",
            "CEF:0|a|b|c|d|e|5|k=\\q",
            "CEF:0|a|b|c|d|e|5|k=\\x41",
            "CEF:0|a\\n|b|c|d|e|5|k=v",
            "CEF:0|a|b|c|d|e|11|k=v",
            "CEF:0|a|b|c|d|e|5|k=v k=w",
            "CEF:0|a|b|c|d|e|5|k=v\\",
            "CEF:0|a|b|c|d|e",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
