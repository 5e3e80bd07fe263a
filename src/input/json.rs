//! JSON-shaped lines: Qumulo's syslog JSON body, CloudWatch `message` objects, a CloudWatch
//! export object (`{"timestamp": ms, "message": "..."}`), and our rsyslog envelope.
//!
//! One pass of `serde_json` over the object fills the [`Event`] directly: known keys go to their
//! fields (keys in any order), strings are borrowed from the line where they need no unescaping,
//! and any key we do not model is kept, compacted, in `details`. Which of the shapes the object was
//! is decided from the keys it had.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{Event, SourceFormat};

/// A JSON scalar read as text: strings borrowed when possible, numbers and booleans as written,
/// `null` as empty.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number, boolean or null")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed("")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Appends `raw` JSON text to `out` without insignificant whitespace.
pub fn push_compact_json(out: &mut String, raw: &str) {
    let mut in_str = false;
    let mut escaped = false;
    let mut start = 0;
    let b = raw.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            out.push_str(&raw[start..i]);
            start = i + 1;
        }
    }
    out.push_str(&raw[start..]);
}

/// Adds `"key":value` to the details object text being built in `details`.
fn push_detail(details: &mut String, key: &str, raw: &RawValue) {
    let v = raw.get();
    if v == "\"\"" || v == "null" {
        return; // Qumulo writes "" for unused fields: absent, not a value.
    }
    details.push(if details.is_empty() { '{' } else { ',' });
    let mut quoted = Vec::with_capacity(key.len() + 2);
    crate::format::jsonw::write_str(&mut quoted, key);
    details.push_str(std::str::from_utf8(&quoted).unwrap_or("\"?\""));
    details.push(':');
    push_compact_json(details, v);
}

/// What the keys of a JSON line said it was.
#[derive(Default)]
pub struct Seen<'a> {
    pub qumulo_json: bool,
    pub cloudwatch: bool,
    /// Envelope: the syslog message body (rsyslog's `%msg%`).
    pub msg: Option<Text<'a>>,
    pub envelope_time: Option<Text<'a>>,
    pub uuid: Option<Text<'a>>,
    /// CloudWatch export object: epoch ms and the message text.
    pub cw_timestamp: Option<i64>,
    pub cw_message: Option<Text<'a>>,
}

/// Fills `ev` from one JSON object; returns which keys it saw.
pub struct ObjectSeed<'e> {
    pub ev: &'e mut Event,
}

impl<'de, 'e> DeserializeSeed<'de> for ObjectSeed<'e> {
    type Value = Seen<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

fn set(dst: &mut String, t: Text<'_>) {
    dst.clear();
    dst.push_str(&t.0);
}

impl<'de, 'e> Visitor<'de> for ObjectSeed<'e> {
    type Value = Seen<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ev = self.ev;
        let mut seen = Seen::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                // Syslog JSON.
                "user_id" => {
                    seen.qumulo_json = true;
                    map.next_value_seed(UserSeed { ev })?;
                }
                "user_ip" => {
                    seen.qumulo_json = true;
                    set(&mut ev.client_ip, map.next_value()?);
                }
                "status" => {
                    seen.qumulo_json = true;
                    set(&mut ev.status, map.next_value()?);
                }
                "details" => {
                    seen.qumulo_json = true;
                    map.next_value_seed(DetailsSeed { ev })?;
                }
                // Shared by syslog JSON and CloudWatch.
                "protocol" => set(&mut ev.protocol, map.next_value()?),
                "operation" => set(&mut ev.operation, map.next_value()?),
                // CloudWatch.
                "ip_address" => {
                    seen.cloudwatch = true;
                    set(&mut ev.client_ip, map.next_value()?);
                }
                "user" => {
                    seen.cloudwatch = true;
                    set(&mut ev.user.name, map.next_value()?);
                }
                "result" => {
                    seen.cloudwatch = true;
                    set(&mut ev.status, map.next_value()?);
                }
                "object_id" => {
                    seen.cloudwatch = true;
                    set(&mut ev.file_id, map.next_value()?);
                }
                "path_1" => {
                    seen.cloudwatch = true;
                    set(&mut ev.path, map.next_value()?);
                }
                "path_2" => {
                    seen.cloudwatch = true;
                    set(&mut ev.target_path, map.next_value()?);
                }
                // Our envelope (docs/event-schema.md, "Envelope").
                "msg" => seen.msg = Some(map.next_value()?),
                "uuid" => seen.uuid = Some(map.next_value()?),
                "time" => seen.envelope_time = Some(map.next_value()?),
                "cluster" => set(&mut ev.cluster, map.next_value()?),
                "fromhost_ip" => set(&mut ev.fromhost_ip, map.next_value()?),
                "hostname" => set(&mut ev.node, map.next_value()?),
                // CloudWatch export object.
                "timestamp" => {
                    let t: Text = map.next_value()?;
                    seen.cw_timestamp = t.0.parse::<i64>().ok();
                }
                "message" => seen.cw_message = Some(map.next_value()?),
                _ => {
                    let raw: &'de RawValue = map.next_value()?;
                    push_detail(&mut ev.details, &key, raw);
                }
            }
        }
        Ok(seen)
    }
}

/// `user_id`: an object `{sid, auth_id, name}` (6.0.1+) or, in older records, a plain string.
struct UserSeed<'e> {
    ev: &'e mut Event,
}

impl<'de, 'e> DeserializeSeed<'de> for UserSeed<'e> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'e> Visitor<'de> for UserSeed<'e> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a user_id object or string")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.ev.user.name.clear();
        self.ev.user.name.push_str(v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "sid" => set(&mut self.ev.user.sid, map.next_value()?),
                "auth_id" => set(&mut self.ev.user.auth_id, map.next_value()?),
                "name" => set(&mut self.ev.user.name, map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `details`: `path`, `target` and `file_id` go to their fields, everything else to `details`.
struct DetailsSeed<'e> {
    ev: &'e mut Event,
}

impl<'de, 'e> DeserializeSeed<'de> for DetailsSeed<'e> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'e> Visitor<'de> for DetailsSeed<'e> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a details object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "path" => set(&mut self.ev.path, map.next_value()?),
                "target" => set(&mut self.ev.target_path, map.next_value()?),
                "file_id" => set(&mut self.ev.file_id, map.next_value()?),
                _ => {
                    let raw: &'de RawValue = map.next_value()?;
                    push_detail(&mut self.ev.details, &key, raw);
                }
            }
        }
        Ok(())
    }
}

/// Parses one JSON object line into `ev`, returning what it was.
///
/// Qumulo's own documentation (and, we assume, some of its releases) writes Windows user names
/// with a lone backslash inside JSON strings (`"AD\alice"`), which strict JSON rejects. When the
/// only fault is such an invalid escape, the line is read again with those backslashes taken
/// literally; valid escapes (`\n`, `\"`, `\u00e9`, ...) keep their JSON meaning.
/// `scratch` holds the repaired text in that case.
pub fn parse_object<'a>(text: &'a str, scratch: &'a mut String, ev: &mut Event) -> Result<Seen<'a>, String> {
    match parse_strict(text, ev) {
        Err(e) if e.contains("invalid escape") => {
            scratch.clear();
            escape_lone_backslashes(text, scratch);
            ev.clear();
            parse_strict(scratch, ev)
        }
        other => other,
    }
}

/// Doubles every backslash inside a JSON string that does not start a valid JSON escape.
pub fn escape_lone_backslashes(text: &str, out: &mut String) {
    let b = text.as_bytes();
    let mut in_str = false;
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        match b[i] {
            b'"' => in_str = !in_str,
            b'\\' if in_str => {
                let valid = match b.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => true,
                    Some(b'u') => b.get(i + 2..i + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                    _ => false,
                };
                if valid {
                    i += 2;
                    continue;
                }
                out.push_str(&text[copied..i]);
                out.push('\\');
                copied = i;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
}

fn parse_strict<'a>(text: &'a str, ev: &mut Event) -> Result<Seen<'a>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let seen = ObjectSeed { ev: &mut *ev }.deserialize(&mut de).map_err(|e| format!("invalid JSON: {e}"))?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    if !ev.details.is_empty() {
        ev.details.push('}'); // push_detail opened the object
    }
    Ok(seen)
}

/// Sets the source format once the keys told which record this was.
pub fn source_format(seen: &Seen<'_>) -> Option<SourceFormat> {
    if seen.qumulo_json {
        Some(SourceFormat::Json)
    } else if seen.cloudwatch {
        Some(SourceFormat::CloudWatch)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_strings() {
        let mut s = String::new();
        push_compact_json(&mut s, "{ \"a b\" : [1, 2],\n \"c\\\" d\": \"x y\" }");
        assert_eq!(s, "{\"a b\":[1,2],\"c\\\" d\":\"x y\"}");
    }

    #[test]
    fn keys_in_any_order_and_details_split() {
        let mut ev = Event::default();
        let line = r#"{"details": {"size": 261456, "file_id": "4", "path": "/my file", "offset": 0, "extra_name": ""}, "status": "ok", "operation": "fs_write_data", "protocol": "smb2", "user_ip": "10.0.0.1", "user_id": {"name": "AD\\alice", "auth_id": "500", "sid": "S-1"}}"#;
        let mut scratch = String::new();
        let seen = parse_object(line, &mut scratch, &mut ev).unwrap();
        assert_eq!(source_format(&seen), Some(SourceFormat::Json));
        assert_eq!(ev.path, "/my file");
        assert_eq!(ev.file_id, "4");
        assert_eq!(ev.user.name, "AD\\alice");
        assert_eq!(ev.user.sid, "S-1");
        assert_eq!(ev.details, r#"{"size":261456,"offset":0}"#);
    }

    #[test]
    fn numeric_file_id_and_null_values() {
        let mut ev = Event::default();
        parse_object(r#"{"user_id":null,"user_ip":null,"protocol":"nfs3","operation":"fs_read_data","status":"ok","details":{"file_id":42}}"#, &mut String::new(), &mut ev).unwrap();
        assert_eq!(ev.file_id, "42");
        assert_eq!(ev.client_ip, "");
    }

    #[test]
    fn rejects_broken_json() {
        let mut ev = Event::default();
        let mut scratch = String::new();
        assert!(parse_object(r#"{"status": "ok""#, &mut scratch, &mut ev).is_err());
        assert!(parse_object(r#"{"status": "ok"} trailing"#, &mut scratch, &mut ev).is_err());
        assert!(parse_object(r#"[1,2]"#, &mut scratch, &mut ev).is_err());
        assert!(parse_object(r#"{"user": "AD\q\", "x": 1}"#, &mut scratch, &mut ev).is_err());
    }

    #[test]
    fn lone_backslashes_from_qumulo_docs_are_literal() {
        let mut ev = Event::default();
        let mut scratch = String::new();
        parse_object(r#"{"user_id": {"name": "AD\alice"}, "status": "ok", "operation": "x", "details": {"path": "/a\u00e9\n\zz"}}"#, &mut scratch, &mut ev).unwrap();
        assert_eq!(ev.user.name, "AD\\alice");
        assert_eq!(ev.path, "/a\u{e9}\n\\zz");
    }
}
