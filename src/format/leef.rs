//! LEEF: IBM QRadar Log Event Extended Format 2.0. This module owns the LEEF header and
//! attribute mapping (documented in `docs/formats.md`).
//!
//! `LEEF:2.0|Qumulo|Qumulo Core|<broker version>|<operation>|x09|<attributes>`
//!
//! * The attribute delimiter is a tab, declared in the header as `x09` (LEEF 2.0 lets the
//!   delimiter be given as a hex value).
//! * Header fields: `\` -> `\\`, `|` -> `\|`, control characters (tab, CR, LF included) ->
//!   `\xHH`, so no value can add or shift a header field or change the declared delimiter.
//! * Attribute values never contain the delimiter, a line break or any other control
//!   character: tab, CR and LF are written as the two-character sequences `\t`, `\r` and `\n`,
//!   other control characters (C0, DEL) as `\xHH`. QRadar does not unescape attribute values,
//!   so backslashes are left alone where they cannot be misread (`AD\alice`, `a\b` stay as they
//!   are) and doubled only before `\`, `t`, `r`, `n`, `x` or a control character: the text stays
//!   readable and exactly reversible (tests/strict/leef.rs reads it back). `=` needs no
//!   escaping, a pair splits at its first `=`.
//! * Predefined keys: `devTime` with `devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX` (UTC, millisecond
//!   precision; an explicit format, so QRadar never guesses), `cat` (our action, so a QID map can
//!   key on operation + action), `sev` (1 success, 3 ordinary failure, 5 refused), `src` (client
//!   IP), `usrName` (bare user name), `domain`, `isLoginEvent=true` for logins.
//! * Custom keys: `eventId`, `action`, `outcome`, `status`, `protocol`, `cluster`, `node`,
//!   `nodeIp`, `userId` (SID, else auth id), `objectType`, `fileId`, `filePath`, `fileName`,
//!   `targetPath`, `clientAddress` (only when the client address is not an IP), `details` (extra
//!   fields as compact JSON). Absent (empty) values are omitted.

use super::{escape_table, is_ip, write_int, write_pipe_header, EscapeTable, KeyValues, Severity, BACKSLASH_MINIMAL};
use crate::event::{split_path, Action, Event, ObjectType};
use crate::time::Timestamp;

/// The attribute delimiter, and how the header names it.
pub const DELIMITER: u8 = b'\t';
pub const DELIMITER_HEADER: &str = "x09";
/// `devTime`'s format, as a Java `SimpleDateFormat` pattern.
pub const DEV_TIME_FORMAT: &str = "yyyy-MM-dd'T'HH:mm:ss.SSSX";

/// Attribute values: tab, CR, LF -> `\t`, `\r`, `\n`, any other control character -> `\xHH`,
/// a backslash doubled only where it could be read as the start of one of those escapes.
static VALUE_ESCAPES: EscapeTable =
    escape_table(&[(b'\t', b't'), (b'\r', b'r'), (b'\n', b'n'), (b'\\', BACKSLASH_MINIMAL)]);

/// Appends a header field: `\` -> `\\`, `|` -> `\|`, control characters (tab included) -> `\xHH`.
pub fn write_header_field(out: &mut Vec<u8>, s: &str) {
    super::write_header_field(out, s);
}

/// Appends an attribute value ([`VALUE_ESCAPES`]).
pub fn write_value(out: &mut Vec<u8>, s: &str) {
    super::write_escaped(out, s, &VALUE_ESCAPES);
}

pub fn render(ev: &Event, out: &mut Vec<u8>) {
    write_pipe_header(out, b"LEEF:2.0|", &ev.operation);
    out.extend_from_slice(DELIMITER_HEADER.as_bytes());
    out.push(b'|');

    let mut a = KeyValues::new(out, DELIMITER, write_value);
    if let Some(t) = &ev.time {
        a.key("devTime");
        let ms = Timestamp { secs: t.secs, nanos: t.nanos / 1_000_000 * 1_000_000, frac_digits: 3 };
        ms.write_rfc3339(a.out);
        a.kv("devTimeFormat", DEV_TIME_FORMAT);
    }
    a.kv("cat", ev.action.as_str());
    a.key("sev");
    write_int(a.out, Severity::of(ev).leef() as i64);
    let client_is_ip = is_ip(&ev.client_ip);
    if client_is_ip {
        a.kv("src", &ev.client_ip);
    }
    let (domain, name) = ev.user_domain_and_name();
    a.kv("usrName", name);
    a.kv("domain", domain.unwrap_or(""));
    if ev.action == Action::Login {
        a.kv("isLoginEvent", "true");
    }
    a.kv("eventId", &ev.id);
    a.kv("action", ev.action.as_str());
    a.kv("outcome", ev.outcome());
    a.kv("status", &ev.status);
    a.kv("protocol", &ev.protocol);
    a.kv("cluster", &ev.cluster);
    a.kv("node", &ev.node);
    a.kv("nodeIp", &ev.fromhost_ip);
    a.kv("userId", if ev.user.sid.is_empty() { &ev.user.auth_id } else { &ev.user.sid });
    if ev.object_type != ObjectType::Unknown {
        a.kv("objectType", ev.object_type.as_str());
    }
    a.kv("fileId", &ev.file_id);
    a.kv("filePath", &ev.path);
    a.kv("fileName", split_path(&ev.path).1);
    a.kv("targetPath", &ev.target_path);
    if !client_is_ip {
        a.kv("clientAddress", &ev.client_ip);
    }
    a.kv("details", &ev.details);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::User;

    fn render_str(ev: &Event) -> String {
        let mut out = Vec::new();
        render(ev, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Header fields (unescaped) and the attribute pairs of a LEEF 2.0 line.
    fn parse(line: &str) -> (Vec<String>, Vec<(String, String)>) {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while fields.len() < 6 {
            match chars.next().expect("6 header fields") {
                '\\' => cur.push(chars.next().unwrap()),
                '|' => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        let rest: String = chars.collect();
        let pairs = rest
            .split('\t')
            .map(|p| {
                let (k, v) = p.split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect();
        (fields, pairs)
    }

    fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn delimiter_never_appears_in_values() {
        let ev = Event {
            id: "e1".into(),
            time: Some(Timestamp::from_epoch_millis(1_717_679_645_007)),
            operation: "fs_write|data\\x".into(),
            status: "ok".into(),
            action: Action::Write,
            object_type: ObjectType::File,
            path: "/tab\there/cr\rlf\nend=1|x".into(),
            target_path: "\t".into(),
            user: User { name: "AD\\al\tice".into(), sid: "S-1".into(), ..User::default() },
            client_ip: "2001:db8::7".into(),
            details: "{\"k\":\"a\\tb\"}".into(),
            ..Event::default()
        };
        let line = render_str(&ev);
        assert!(!line.contains('\n') && !line.contains('\r'));
        let (fields, pairs) = parse(&line);
        assert_eq!(fields, ["LEEF:2.0", "Qumulo", "Qumulo Core", env!("CARGO_PKG_VERSION"), "fs_write|data\\x", "x09"]);
        // Splitting on the delimiter yields exactly the pairs written: no value held a tab.
        let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["devTime", "devTimeFormat", "cat", "sev", "src", "usrName", "domain", "eventId", "action", "outcome", "status", "userId", "objectType", "filePath", "fileName", "targetPath", "details"]
        );
        assert_eq!(get(&pairs, "filePath"), Some("/tab\\there/cr\\rlf\\nend=1|x"));
        assert_eq!(get(&pairs, "fileName"), Some("cr\\rlf\\nend=1|x"));
        assert_eq!(get(&pairs, "targetPath"), Some("\\t"));
        assert_eq!(get(&pairs, "usrName"), Some("al\\tice"));
        assert_eq!(get(&pairs, "domain"), Some("AD"));
        assert_eq!(get(&pairs, "devTime"), Some("2024-06-06T13:14:05.007Z"));
        assert_eq!(get(&pairs, "devTimeFormat"), Some("yyyy-MM-dd'T'HH:mm:ss.SSSX"));
        assert_eq!(get(&pairs, "src"), Some("2001:db8::7"));
        assert_eq!(get(&pairs, "sev"), Some("1"));
    }

    #[test]
    fn header_escaping_and_non_ip_clients() {
        let mut out = Vec::new();
        write_header_field(&mut out, "a|b\\c\td");
        assert_eq!(out, b"a\\|b\\\\c\\x09d");
        // Backslashes are doubled only where they could start an escape.
        out.clear();
        write_value(&mut out, "AD\\alice C:\\temp \\x41 \\\\ \\\t\u{0}\u{7f} end\\");
        assert_eq!(out, b"AD\\alice C:\\\\temp \\\\x41 \\\\\\ \\\\\\t\\x00\\x7f end\\");
        let ev = Event {
            operation: "smb_login".into(),
            status: "cred_error".into(),
            action: Action::Login,
            client_ip: "somehost".into(),
            ..Event::default()
        };
        let (_, pairs) = parse(&render_str(&ev));
        assert_eq!(get(&pairs, "isLoginEvent"), Some("true"));
        assert_eq!(get(&pairs, "clientAddress"), Some("somehost"));
        assert!(get(&pairs, "src").is_none() && get(&pairs, "devTime").is_none());
        assert_eq!(get(&pairs, "sev"), Some("5"));
    }

    #[test]
    fn sub_millisecond_precision_is_truncated() {
        let t = crate::time::parse_rfc3339_prefix(b"2023-03-03T14:08:51.058379Z").unwrap().0;
        let ev = Event { time: Some(t), operation: "x".into(), status: "ok".into(), ..Event::default() };
        let (_, pairs) = parse(&render_str(&ev));
        assert_eq!(get(&pairs, "devTime"), Some("2023-03-03T14:08:51.058Z"));
    }
}
