//! A tiny allocation-free JSON object writer shared by the JSON-shaped formats (canonical JSON,
//! ECS, OCSF) and by the sinks that wrap events (Splunk HEC, Elasticsearch bulk).
//!
//! Strings are escaped by `serde_json`, so the output is always valid JSON; keys are written as
//! given and must be plain ASCII identifiers (they are compile-time constants everywhere).

use std::io::Write as _;

/// Appends `s` as a JSON string literal (quotes included).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
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

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_str(self.out, value);
        self
    }

    /// Writes the field only when `value` is not empty (empty means "absent" in the event model).
    pub fn opt_str(&mut self, key: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.str(key, value);
        }
        self
    }

    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key);
        let _ = write!(self.out, "{value}");
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

    /// Opens a nested object under `key`; close it with [`JsonObj::end`] before writing on.
    pub fn obj(&mut self, key: &str) -> JsonObj<'_> {
        self.key(key);
        JsonObj::begin(self.out)
    }

    pub fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        o.end();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["a"], "q\"uote\\ \u{1}");
        assert_eq!(v["inner"]["x"], "é");
        assert!(v.get("skipped").is_none());
        assert_eq!(v["r"][1], 2);
        assert_eq!(v["l"][1], "b");
        assert!(v["z"].is_null());
    }
}
