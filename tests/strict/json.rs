//! A strict RFC 8259 JSON reader: one value, optional whitespace around it, nothing else.
//!
//! Refuses what Elasticsearch's and other strict parsers refuse or what RFC 8259 calls
//! unpredictable: a key repeated within an object (at any depth), a raw control character in a
//! string, an unknown escape, a lone surrogate escape, a malformed number, a byte-order mark,
//! trailing text. Objects keep their member order; numbers keep their text.
//!
//! [`parse_merging`] is the lenient mode used to compute what the documented `details` rule
//! must produce from arbitrary text: a repeated key keeps its first position and its last value,
//! a lone surrogate escape reads as U+FFFD, and nesting deeper than a limit is an error.

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, exactly as written.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    /// Members in document order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a dotted path of object keys (`"qumulo.details"`).
    pub fn at(&self, path: &str) -> Option<&Json> {
        path.split('.').try_fold(self, |v, k| v.get(k))
    }

    /// The string at a dotted path, if there is one there.
    pub fn str_at(&self, path: &str) -> Option<&str> {
        match self.at(path)? {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn keys(&self) -> Vec<&str> {
        match self {
            Json::Obj(m) => m.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

/// Parses `text` strictly (duplicate keys are an error).
pub fn parse(text: &str) -> Result<Json, String> {
    Reader { s: text.as_bytes(), i: 0, merge: false, max_depth: 1000 }.document()
}

/// Parses `text`, merging repeated keys (first position, last value) and reading lone
/// surrogates as U+FFFD; containers nested deeper than `max_depth` levels are an error.
pub fn parse_merging(text: &str, max_depth: usize) -> Result<Json, String> {
    Reader { s: text.as_bytes(), i: 0, merge: true, max_depth }.document()
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
    merge: bool,
    max_depth: usize,
}

impl Reader<'_> {
    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn document(mut self) -> Result<Json, String> {
        self.ws();
        let v = self.value(0)?;
        self.ws();
        if self.i != self.s.len() {
            return self.err("trailing text");
        }
        Ok(v)
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            self.err(&format!("expected {:?}", c as char))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        match self.peek() {
            Some(b'{' | b'[') if depth >= self.max_depth => self.err("nested too deep"),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err("expected a value"),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, String> {
        self.expect(b'{')?;
        let mut members: Vec<(String, Json)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Obj(members));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return self.err("expected a key");
            }
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let v = self.value(depth)?;
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(_) if !self.merge => return self.err(&format!("duplicate key {key:?}")),
                Some(slot) => slot.1 = v,
                None => members.push((key, v)),
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Obj(members));
                }
                _ => return self.err("expected ',' or '}'"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Arr(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                _ => return self.err("expected ',' or ']'"),
            }
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        let digits = |r: &mut Self| {
            let s = r.i;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.i += 1;
            }
            r.i - s
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return self.err("bad number"),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return self.err("no digit after '.'");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return self.err("no digit in exponent");
            }
        }
        Ok(Json::Num(String::from_utf8(self.s[start..self.i].to_vec()).unwrap()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self.s.get(self.i..self.i + 4).ok_or("short \\u escape")?;
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return self.err("bad \\u escape");
        }
        self.i += 4;
        Ok(u32::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek() else { return self.err("unterminated string") };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|e| format!("invalid UTF-8: {e}")),
                0..=0x1f => return self.err(&format!("raw control character {c:#04x} in a string")),
                b'\\' => {
                    let Some(e) = self.peek() else { return self.err("lone backslash") };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let pair = (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u");
                            let lo = if pair {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    Some(lo)
                                } else {
                                    self.i = save;
                                    None
                                }
                            } else {
                                None
                            };
                            let cp = match lo {
                                Some(lo) => 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00),
                                None => hi,
                            };
                            match char::from_u32(cp) {
                                Some(ch) => ch,
                                None if self.merge => '\u{FFFD}',
                                None => return self.err("lone surrogate escape"),
                            }
                        }
                        _ => return self.err("unknown escape"),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_strict_readers_refuse() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":{"k":1,"k":1}}"#,
            r#"{"a":1,"\u0061":2}"#,
            "{\"a\":\"\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":1}x"#,
            "\u{feff}{}",
            r#"{"a":1,}"#,
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
        let v = parse(r#" {"a":[1,-0.5e+3,"\ud83d\ude00\n"],"b":{"a":null}} "#).unwrap();
        assert_eq!(v.at("a"), Some(&Json::Arr(vec![Json::Num("1".into()), Json::Num("-0.5e+3".into()), Json::Str("😀\n".into())])));
        assert_eq!(v.at("b.a"), Some(&Json::Null));
    }

    #[test]
    fn merging_mode() {
        let v = parse_merging(r#"{"a":1,"b":2,"a":{"c":"\udc00","c":3}}"#, 128).unwrap();
        assert_eq!(v.keys(), ["a", "b"]);
        assert_eq!(v.at("a.c"), Some(&Json::Num("3".into())));
        assert!(parse_merging("[[[1]]]", 2).is_err() && parse_merging("[[1]]", 2).is_ok());
    }
}
