//! Routing keys from a template of event fields: `"qumulo.{cluster}.{protocol}"`. The `amqp`
//! sink's routing keys and the `kafka` sink's record keys (`"{cluster}"` by default) use them.
//!
//! The template is parsed once, at config load ([`RoutingKey::parse`] is what validation runs),
//! so a typo is a config error and never a surprise at the first event. Literal text is limited
//! to letters, digits, `-`, `_` and `.` (a topic exchange splits on `.`; `*` and `#` mean
//! something only in bindings and are refused here to avoid confusion). Each field value is
//! made safe the same way: every byte outside `[A-Za-z0-9_-]` becomes `_` (so a `.` in a cluster
//! or user name never adds a topic word, and `AD\alice` becomes `AD_alice`), and an empty value
//! becomes `unknown`. The key is cut to 255 bytes, AMQP's limit for a short string.

use crate::event::Event;

/// AMQP short-string limit.
pub const KEY_MAX: usize = 255;

/// The fields a template may name, in the order documented.
pub const FIELDS: &[&str] = &["cluster", "node", "protocol", "operation", "action", "status", "object_type", "user", "source_format"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Cluster,
    Node,
    Protocol,
    Operation,
    Action,
    Status,
    ObjectType,
    User,
    SourceFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A parsed routing-key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingKey {
    parts: Vec<Part>,
}

impl RoutingKey {
    /// Parses a template; the error says what is wrong and what is accepted.
    pub fn parse(template: &str) -> Result<RoutingKey, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        let mut literal_len = 0;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some(end) = after.find('}') else { return Err("unclosed `{`".into()) };
                let name = &after[..end];
                let field = match name {
                    "cluster" => Field::Cluster,
                    "node" => Field::Node,
                    "protocol" => Field::Protocol,
                    "operation" => Field::Operation,
                    "action" => Field::Action,
                    "status" => Field::Status,
                    "object_type" => Field::ObjectType,
                    "user" => Field::User,
                    "source_format" => Field::SourceFormat,
                    _ => return Err(format!("unknown field {{{name}}} (fields: {})", FIELDS.join(", "))),
                };
                parts.push(Part::Field(field));
                rest = &after[end + 1..];
                continue;
            }
            let end = rest.find('{').unwrap_or(rest.len());
            let text = &rest[..end];
            if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))) {
                let what = if c == '}' { "`}` without `{`".to_string() } else { format!("{c:?} is not allowed") };
                return Err(format!("{what} (text may hold letters, digits, `-`, `_` and `.`; fields are written {{name}})"));
            }
            literal_len += text.len();
            parts.push(Part::Text(text.to_string()));
            rest = &rest[end..];
        }
        if parts.is_empty() {
            return Err("is empty".into());
        }
        if literal_len > KEY_MAX {
            return Err(format!("its text alone is longer than {KEY_MAX} bytes"));
        }
        Ok(RoutingKey { parts })
    }

    /// The default template, `qumulo.{cluster}.{protocol}`.
    pub fn fallback() -> RoutingKey {
        let text = |t: &str| Part::Text(t.to_string());
        RoutingKey { parts: vec![text("qumulo."), Part::Field(Field::Cluster), text("."), Part::Field(Field::Protocol)] }
    }

    /// Writes the key for `ev` into `out` (cleared first).
    pub fn render(&self, ev: &Event, out: &mut String) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => {
                    let value = match f {
                        Field::Cluster => ev.cluster.as_str(),
                        Field::Node => ev.node.as_str(),
                        Field::Protocol => ev.protocol.as_str(),
                        Field::Operation => ev.operation.as_str(),
                        Field::Action => ev.action.as_str(),
                        Field::Status => ev.status.as_str(),
                        Field::ObjectType => ev.object_type.as_str(),
                        Field::User => ev.user.name.as_str(),
                        Field::SourceFormat => ev.source_format.as_str(),
                    };
                    push_safe(value, out);
                }
            }
        }
        if out.len() > KEY_MAX {
            out.truncate(KEY_MAX); // ASCII only: every index is a char boundary
        }
    }
}

/// Appends `value` with every byte outside `[A-Za-z0-9_-]` replaced by `_`; `unknown` if empty.
fn push_safe(value: &str, out: &mut String) {
    if value.is_empty() {
        out.push_str("unknown");
        return;
    }
    for c in value.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str, ev: &Event) -> String {
        let mut s = String::new();
        RoutingKey::parse(t).unwrap().render(ev, &mut s);
        s
    }

    #[test]
    fn renders_fields_safely() {
        let mut ev = Event { cluster: "prod.east".into(), protocol: "smb2".into(), ..Event::default() };
        ev.user.name = "AD\\alice bob".into();
        assert_eq!(key("qumulo.{cluster}.{protocol}", &ev), "qumulo.prod_east.smb2");
        assert_eq!(key("{user}", &ev), "AD_alice_bob");
        assert_eq!(key("a.{node}.{action}", &ev), "a.unknown.other");
        assert_eq!(key("fixed", &ev), "fixed");
        ev.cluster = "é".repeat(300);
        let k = key("{cluster}", &ev);
        assert_eq!(k.len(), KEY_MAX);
        assert!(k.bytes().all(|b| b == b'_'));
    }

    #[test]
    fn refuses_bad_templates() {
        for (t, want) in [
            ("", "empty"),
            ("qumulo.{clustr}", "unknown field {clustr}"),
            ("qumulo.{cluster", "unclosed"),
            ("qumulo.cluster}", "`}` without `{`"),
            ("qumulo.*", "'*' is not allowed"),
            ("a b", "' ' is not allowed"),
        ] {
            let e = RoutingKey::parse(t).unwrap_err();
            assert!(e.contains(want), "{t:?}: {e}");
        }
        assert!(RoutingKey::parse(&"x".repeat(256)).unwrap_err().contains("longer than 255"));
        assert!(RoutingKey::parse(&"x".repeat(255)).is_ok());
        assert_eq!(RoutingKey::parse("qumulo.{cluster}.{protocol}").unwrap(), RoutingKey::fallback());
    }
}
