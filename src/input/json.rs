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
    if key.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        details.push('"');
        details.push_str(key);
        details.push('"');
    } else {
        let mut quoted = Vec::with_capacity(key.len() + 8);
        crate::format::jsonw::write_str(&mut quoted, key);
        details.push_str(std::str::from_utf8(&quoted).unwrap_or("\"?\""));
    }
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
    /// The envelope's other keys, raw: they mean something only when `msg` is there (an audit
    /// record that happens to hold a `cluster` key must not file itself elsewhere), and go to
    /// `details` otherwise ([`Seen::finish`]).
    pub envelope_time: Option<&'a RawValue>,
    pub uuid: Option<&'a RawValue>,
    pub cluster: Option<&'a RawValue>,
    pub fromhost_ip: Option<&'a RawValue>,
    pub hostname: Option<&'a RawValue>,
    /// CloudWatch export object: epoch ms and the message text.
    pub cw_timestamp: Option<&'a RawValue>,
    pub cw_message: Option<Text<'a>>,
}

/// The text of a JSON string or scalar held raw (`null` is empty).
pub fn raw_text(raw: &RawValue) -> Result<Text<'_>, String> {
    serde_json::from_str::<Text>(raw.get()).map_err(|e| format!("invalid JSON: {e}"))
}

impl<'a> Seen<'a> {
    /// Once the whole object is read: an envelope's keys go to their fields, anyone else's
    /// to `details` (keys [`ObjectSeed`] holds back until it knows which object it read).
    fn finish(&self, ev: &mut Event) -> Result<(), String> {
        if self.cluster.is_none() && self.fromhost_ip.is_none() && self.hostname.is_none() && self.envelope_time.is_none() && self.uuid.is_none() && self.cw_timestamp.is_none() {
            return Ok(()); // a plain audit record: nothing held back
        }
        let held = [
            ("cluster", self.cluster, 0),
            ("fromhost_ip", self.fromhost_ip, 1),
            ("hostname", self.hostname, 2),
            ("time", self.envelope_time, 3),
            ("uuid", self.uuid, 3),
            ("timestamp", self.cw_timestamp.filter(|_| self.cw_message.is_none()), 3),
        ];
        for (key, raw, field) in held {
            let Some(raw) = raw else { continue };
            if self.msg.is_none() {
                push_detail(&mut ev.details, key, raw);
                continue;
            }
            let dst = match field {
                0 => &mut ev.cluster,
                1 => &mut ev.fromhost_ip,
                2 => &mut ev.node,
                _ => continue, // time and uuid are read by the envelope code
            };
            set(dst, raw_text(raw)?);
        }
        Ok(())
    }
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

/// A JSON value held raw, as text: a string's contents, anything else exactly as written (a
/// number digit for digit, never through `f64`). Callers check the text's type.
pub fn raw_scalar(raw: &RawValue) -> Result<Cow<'_, str>, String> {
    let t = raw.get();
    if t.starts_with('"') {
        // A valid JSON string without escapes is its inner text (the common case: `"4"`).
        let inner = &t[1..t.len() - 1];
        if !inner.contains('\\') {
            return Ok(Cow::Borrowed(inner));
        }
        serde_json::from_str::<Text>(t).map(|text| text.0).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        Ok(Cow::Borrowed(t))
    }
}

/// A file id as JSON carries it ([`raw_scalar`]: ids beyond 64 bits keep every digit); `null`
/// is empty. Whether it is an integer is checked with every other field
/// ([`super::fields::check`]).
fn set_id<'de, A: MapAccess<'de>>(dst: &mut String, map: &mut A) -> Result<(), A::Error> {
    let raw: &'de RawValue = map.next_value()?;
    dst.clear();
    if raw.get() != "null" {
        dst.push_str(&raw_scalar(raw).map_err(de::Error::custom)?);
    }
    Ok(())
}

/// Refuses a key an object already had: the second value would silently replace the first
/// (and a duplicate key is refused by Elasticsearch and strict readers downstream).
fn once<E: de::Error>(seen: &mut u32, bit: u32, key: &str) -> Result<(), E> {
    if *seen & bit != 0 {
        return Err(E::custom(format_args!("duplicate key {key:?}")));
    }
    *seen |= bit;
    Ok(())
}

/// The keys already in `details` (the record's unknown keys and its `details` keys share it),
/// to refuse a repeat: the first eight borrowed ones are held inline, so the usual record
/// allocates nothing; more, or keys that needed unescaping, go to a `Vec`.
struct DetailKeys<'de> {
    few: [&'de str; 8],
    n: usize,
    more: Vec<Cow<'de, str>>,
}

impl<'de> DetailKeys<'de> {
    fn new() -> Self {
        DetailKeys { few: [""; 8], n: 0, more: Vec::new() }
    }

    /// Adds `key`; false when it was there already.
    fn insert(&mut self, key: Cow<'de, str>) -> bool {
        if self.few[..self.n].contains(&key.as_ref()) || self.more.contains(&key) {
            return false;
        }
        match key {
            Cow::Borrowed(k) if self.n < self.few.len() => {
                self.few[self.n] = k;
                self.n += 1;
            }
            k => self.more.push(k),
        }
        true
    }
}

/// A value kept raw in `details`: any nested object in it must not repeat a key either.
fn detail_value<'de, A: MapAccess<'de>>(map: &mut A, keys: &mut DetailKeys<'de>, key: Cow<'de, str>) -> Result<&'de RawValue, A::Error> {
    if !keys.insert(key.clone()) {
        return Err(de::Error::custom(format_args!("duplicate key {key:?}")));
    }
    let raw: &'de RawValue = map.next_value()?;
    if raw.get().starts_with(['{', '[']) {
        serde_json::from_str::<NoDuplicateKeys>(raw.get()).map_err(de::Error::custom)?;
    }
    Ok(raw)
}

impl<'de, 'e> Visitor<'de> for ObjectSeed<'e> {
    type Value = Seen<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ev = self.ev;
        let mut seen = Seen::default();
        let mut keys_seen = 0u32;
        let mut other_keys = DetailKeys::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                // Syslog JSON.
                "user_id" => {
                    once(&mut keys_seen, 1 << 0, &key)?;
                    seen.qumulo_json = true;
                    map.next_value_seed(UserSeed { ev })?;
                }
                "user_ip" => {
                    once(&mut keys_seen, 1 << 1, &key)?;
                    seen.qumulo_json = true;
                    set(&mut ev.client_ip, map.next_value()?);
                }
                "status" => {
                    once(&mut keys_seen, 1 << 2, &key)?;
                    seen.qumulo_json = true;
                    set(&mut ev.status, map.next_value()?);
                }
                "details" => {
                    once(&mut keys_seen, 1 << 3, &key)?;
                    seen.qumulo_json = true;
                    map.next_value_seed(DetailsSeed { ev: &mut *ev, keys: &mut other_keys })?;
                }
                // Shared by syslog JSON and CloudWatch.
                "protocol" => {
                    once(&mut keys_seen, 1 << 4, &key)?;
                    set(&mut ev.protocol, map.next_value()?);
                }
                "operation" => {
                    once(&mut keys_seen, 1 << 5, &key)?;
                    set(&mut ev.operation, map.next_value()?);
                }
                // CloudWatch.
                "ip_address" => {
                    once(&mut keys_seen, 1 << 6, &key)?;
                    seen.cloudwatch = true;
                    set(&mut ev.client_ip, map.next_value()?);
                }
                "user" => {
                    once(&mut keys_seen, 1 << 7, &key)?;
                    seen.cloudwatch = true;
                    set(&mut ev.user.name, map.next_value()?);
                }
                "result" => {
                    once(&mut keys_seen, 1 << 8, &key)?;
                    seen.cloudwatch = true;
                    set(&mut ev.status, map.next_value()?);
                }
                "object_id" => {
                    once(&mut keys_seen, 1 << 9, &key)?;
                    seen.cloudwatch = true;
                    set_id(&mut ev.file_id, &mut map)?;
                }
                "path_1" => {
                    once(&mut keys_seen, 1 << 10, &key)?;
                    seen.cloudwatch = true;
                    set(&mut ev.path, map.next_value()?);
                }
                "path_2" => {
                    once(&mut keys_seen, 1 << 11, &key)?;
                    seen.cloudwatch = true;
                    set(&mut ev.target_path, map.next_value()?);
                }
                // Our envelope (docs/event-schema.md, "Envelope").
                "msg" => {
                    once(&mut keys_seen, 1 << 12, &key)?;
                    seen.msg = Some(map.next_value()?);
                }
                "uuid" => {
                    once(&mut keys_seen, 1 << 13, &key)?;
                    seen.uuid = Some(map.next_value()?);
                }
                "time" => {
                    once(&mut keys_seen, 1 << 14, &key)?;
                    seen.envelope_time = Some(map.next_value()?);
                }
                "cluster" => {
                    once(&mut keys_seen, 1 << 15, &key)?;
                    seen.cluster = Some(map.next_value()?);
                }
                "fromhost_ip" => {
                    once(&mut keys_seen, 1 << 16, &key)?;
                    seen.fromhost_ip = Some(map.next_value()?);
                }
                "hostname" => {
                    once(&mut keys_seen, 1 << 17, &key)?;
                    seen.hostname = Some(map.next_value()?);
                }
                // CloudWatch export object.
                "timestamp" => {
                    once(&mut keys_seen, 1 << 18, &key)?;
                    seen.cw_timestamp = Some(map.next_value()?);
                }
                "message" => {
                    once(&mut keys_seen, 1 << 19, &key)?;
                    seen.cw_message = Some(map.next_value()?);
                }
                _ => {
                    let raw = detail_value(&mut map, &mut other_keys, key.clone())?;
                    push_detail(&mut ev.details, &key, raw);
                }
            }
        }
        seen.finish(ev).map_err(de::Error::custom)?;
        Ok(seen)
    }
}

/// Reads any JSON value and refuses an object, at any depth, that repeats a key.
struct NoDuplicateKeys;

impl<'de> de::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut keys: Vec<Text<'de>> = Vec::new();
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if keys.iter().any(|k| k.0 == key.0) {
                return Err(de::Error::custom(format_args!("duplicate key {:?}", key.0)));
            }
            keys.push(key);
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
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
        let mut keys_seen = 0u32;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "sid" => {
                    once(&mut keys_seen, 1, &key)?;
                    set(&mut self.ev.user.sid, map.next_value()?);
                }
                "auth_id" => {
                    once(&mut keys_seen, 2, &key)?;
                    set(&mut self.ev.user.auth_id, map.next_value()?);
                }
                "name" => {
                    once(&mut keys_seen, 4, &key)?;
                    set(&mut self.ev.user.name, map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `details`: `path`, `target` and `file_id` go to their fields, everything else to `details`,
/// which the record's unknown top-level keys share: `keys` are those already there.
struct DetailsSeed<'e, 'k, 'de> {
    ev: &'e mut Event,
    keys: &'k mut DetailKeys<'de>,
}

impl<'de, 'e, 'k> DeserializeSeed<'de> for DetailsSeed<'e, 'k, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'e, 'k> Visitor<'de> for DetailsSeed<'e, 'k, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a details object")
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys_seen = 0u32;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "path" => {
                    once(&mut keys_seen, 1, &key)?;
                    set(&mut self.ev.path, map.next_value()?);
                }
                "target" => {
                    once(&mut keys_seen, 2, &key)?;
                    set(&mut self.ev.target_path, map.next_value()?);
                }
                "file_id" => {
                    once(&mut keys_seen, 4, &key)?;
                    set_id(&mut self.ev.file_id, &mut map)?;
                }
                _ => {
                    let raw = detail_value(&mut map, self.keys, key.clone())?;
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
/// with a lone backslash inside JSON strings (`"AD\alice"`), which strict JSON rejects. A line
/// holding such a backslash (one that starts no valid JSON escape) is read with those
/// backslashes taken literally; valid escapes (`\n`, `\"`, `\u00e9`, ...) keep their JSON
/// meaning. The decision is the scan's (never read from an error's text), and it runs only when
/// strict parsing failed: such a backslash always makes strict JSON fail, so a line that parses
/// has none, and the usual line pays nothing for the scan. `scratch` holds the repaired text.
pub fn parse_object<'a>(text: &'a str, scratch: &'a mut String, ev: &mut Event) -> Result<Seen<'a>, String> {
    match parse_strict(text, ev) {
        Err(_) if lone_backslashes(text).next().is_some() => {
            ev.clear();
            scratch.clear();
            escape_lone_backslashes(text, scratch);
            parse_strict(scratch, ev)
        }
        other => other,
    }
}

/// Byte offsets of the backslashes of `text` that start no valid JSON escape, found by jumping
/// from backslash to backslash (memchr) and stepping over each valid escape. A backslash
/// outside a string is invalid JSON whatever is done with it, so strings need not be tracked.
fn lone_backslashes(text: &str) -> impl Iterator<Item = usize> + '_ {
    let b = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(off) = memchr::memchr(b'\\', &b[i..]) {
            let at = i + off;
            let valid = match b.get(at + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => true,
                Some(b'u') => b.get(at + 2..at + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)),
                _ => false,
            };
            if valid {
                i = at + 2;
            } else {
                i = at + 1;
                return Some(at);
            }
        }
        i = b.len();
        None
    })
}

/// Doubles every backslash inside a JSON string that does not start a valid JSON escape.
pub fn escape_lone_backslashes(text: &str, out: &mut String) {
    let mut copied = 0;
    for at in lone_backslashes(text) {
        out.push_str(&text[copied..at]);
        out.push('\\');
        copied = at;
    }
    out.push_str(&text[copied..]);
}

fn parse_strict<'a>(text: &'a str, ev: &mut Event) -> Result<Seen<'a>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let seen = ObjectSeed { ev: &mut *ev }.deserialize(&mut de).map_err(|e| format!("invalid JSON: {e}"))?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    if !ev.details.is_empty() {
        ev.details.push('}'); // push_detail opened the object
        // Keys were checked for duplicates (top level by `DetailKeys`, nested by
        // `NoDuplicateKeys`) after decoding; without any backslash, decoded and written keys are
        // the same bytes, and no `\u` escape (a lone surrogate passes serde's raw values) is left.
        ev.details_vouched = memchr::memchr(b'\\', ev.details.as_bytes()).is_none();
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
