//! CEF: ArcSight Common Event Format, following "Implementing ArcSight CEF" revision 25. This
//! module owns the CEF header and extension mapping (documented in `docs/formats.md`).
//!
//! `CEF:0|Qumulo|Qumulo Core|<broker version>|<operation>|<name>|<severity>|<extension>`
//!
//! * Device Event Class ID is Qumulo's operation (`fs_read_data`); Name is a short
//!   human-readable description from the action and object type (`Read file`,
//!   `Change owner of directory`, see [`super::write_event_name`]); Severity is 1 on success,
//!   3 for an ordinary failure, 5 for a refused operation ([`super::Severity`]).
//! * Header escaping (spec): `\` -> `\\`, `|` -> `\|`.
//! * Extension escaping (spec): `\` -> `\\`, `=` -> `\=`, CR -> `\r`, LF -> `\n`; `|` is not
//!   escaped in the extension.
//! * No control character (C0, DEL) is ever written raw, in the header or the extension: those
//!   the spec gives no escape for (NUL, tab, ESC, DEL..., and CR/LF in the header, which may
//!   not span lines) are written `\xHH` (two lowercase hex digits). The spec has no such
//!   escape, but since every literal backslash is escaped, `\x` can only be ours: the text
//!   stays unambiguous and reversible (tests/strict/cef.rs reads it back).
//! * Extension keys, in order (absent values are omitted): `rt` (event time, epoch ms),
//!   `dvchost` (node), `dvc` (sending node's IP), `src` (client IP; `shost` if it is not an IP
//!   address), `suser` (bare user name), `sntdom` (its domain), `suid` (SID, else Qumulo auth
//!   id), `app` (protocol), `act` (our action), `cat` (category: file, authentication,
//!   configuration, session), `outcome` (success/failure), `fname`, `filePath`, `fileId`,
//!   `fileType`, `oldFileName`, `oldFilePath`, `externalId` (event id), `cs1Label=cluster cs1`,
//!   `cs2Label=status cs2` (Qumulo status), `cs3Label=details cs3` (extra fields as JSON).
//! * Renames follow CEF's file semantics: `filePath`/`fname` are the NEW path and name (the
//!   rename target) and `oldFilePath`/`oldFileName` the path and name before the rename, for
//!   failed renames too (the attempted target). A rename without a target keeps its path in
//!   `filePath`.

use super::{category, escape_table, is_ip, write_event_name, write_int, write_pipe_header, EscapeTable, KeyValues, Severity};
use crate::event::{split_path, Action, Event, ObjectType};

/// Extension values: `\` -> `\\`, `=` -> `\=`, CR -> `\r`, LF -> `\n`, any other control
/// character -> `\xHH`.
static EXT_ESCAPES: EscapeTable = escape_table(&[(b'\\', b'\\'), (b'=', b'='), (b'\r', b'r'), (b'\n', b'n')]);

/// Appends a header field: `\` -> `\\`, `|` -> `\|`, control characters -> `\xHH`.
pub fn write_header_field(out: &mut Vec<u8>, s: &str) {
    super::write_header_field(out, s);
}

/// Appends an extension value ([`EXT_ESCAPES`]).
pub fn write_ext_value(out: &mut Vec<u8>, s: &str) {
    super::write_escaped(out, s, &EXT_ESCAPES);
}

pub fn render(ev: &Event, out: &mut Vec<u8>) {
    write_pipe_header(out, b"CEF:0|", &ev.operation);
    write_event_name(ev, out); // fixed ASCII text, nothing to escape
    out.push(b'|');
    write_int(out, Severity::of(ev).cef() as i64);
    out.push(b'|');

    // The extension: space-separated `key=value` pairs.
    let mut x = KeyValues::new(out, b' ', write_ext_value);
    if let Some(t) = &ev.time {
        x.key("rt");
        write_int(x.out, t.epoch_millis());
    }
    x.kv("dvchost", &ev.node);
    if is_ip(&ev.fromhost_ip) {
        x.kv("dvc", &ev.fromhost_ip);
    }
    x.kv(if is_ip(&ev.client_ip) { "src" } else { "shost" }, &ev.client_ip);
    let (domain, name) = ev.user_domain_and_name();
    x.kv("suser", name);
    x.kv("sntdom", domain.unwrap_or(""));
    x.kv("suid", if ev.user.sid.is_empty() { &ev.user.auth_id } else { &ev.user.sid });
    x.kv("app", &ev.protocol);
    x.kv("act", ev.action.as_str());
    x.kv("cat", category(ev));
    x.kv("outcome", ev.outcome());
    let renamed = ev.action == Action::Rename && !ev.target_path.is_empty();
    let (path, old_path) = if renamed { (ev.target_path.as_str(), ev.path.as_str()) } else { (ev.path.as_str(), "") };
    x.kv("fname", split_path(path).1);
    x.kv("filePath", path);
    x.kv("fileId", &ev.file_id);
    x.kv(
        "fileType",
        match ev.object_type {
            ObjectType::File => "file",
            ObjectType::Directory => "directory",
            ObjectType::Symlink => "symlink",
            ObjectType::Unknown => "",
        },
    );
    x.kv("oldFileName", split_path(old_path).1);
    x.kv("oldFilePath", old_path);
    x.kv("externalId", &ev.id);
    x.labeled("cs1", "cs1Label", "cluster", &ev.cluster);
    x.labeled("cs2", "cs2Label", "status", &ev.status);
    x.labeled("cs3", "cs3Label", "details", &ev.details);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::User;
    use crate::time::Timestamp;

    fn render_str(ev: &Event) -> String {
        let mut out = Vec::new();
        render(ev, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Splits a CEF line into its 7 unescaped header fields and the raw extension.
    fn split_header(line: &str) -> (Vec<String>, String) {
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while fields.len() < 7 {
            match chars.next().expect("7 header fields") {
                '\\' => cur.push(chars.next().expect("escaped char")),
                '|' => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        (fields, chars.collect())
    }

    /// Parses the extension (unescaping), splitting at unescaped `=` like ArcSight does.
    fn parse_ext(ext: &str) -> Vec<(String, String)> {
        // Tokens: find each unescaped '='; the key is the word before it.
        let b: Vec<char> = ext.chars().collect();
        let mut eqs = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                '\\' => i += 1,
                '=' => eqs.push(i),
                _ => {}
            }
            i += 1;
        }
        let mut pairs = Vec::new();
        for (n, &eq) in eqs.iter().enumerate() {
            let key_start = b[..eq].iter().rposition(|&c| c == ' ').map_or(0, |p| p + 1);
            let value_end = match eqs.get(n + 1) {
                Some(&next) => b[..next].iter().rposition(|&c| c == ' ').unwrap(),
                None => b.len(),
            };
            let key: String = b[key_start..eq].iter().collect();
            let mut value = String::new();
            let mut j = eq + 1;
            while j < value_end {
                if b[j] == '\\' {
                    j += 1;
                    value.push(match b[j] {
                        'n' => '\n',
                        'r' => '\r',
                        c => c,
                    });
                } else {
                    value.push(b[j]);
                }
                j += 1;
            }
            pairs.push((key, value));
        }
        pairs
    }

    fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
        pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn header_escaping() {
        let mut out = Vec::new();
        write_header_field(&mut out, "a|b\\c\nd=e\u{0}\u{7f}");
        assert_eq!(out, b"a\\|b\\\\c\\x0ad=e\\x00\\x7f");
        let ev = Event { operation: "op|with\\bars".into(), status: "ok".into(), ..Event::default() };
        let line = render_str(&ev);
        assert!(line.starts_with("CEF:0|Qumulo|Qumulo Core|"), "{line}");
        assert!(line.contains("|op\\|with\\\\bars|Other operation|1|"), "{line}");
        let (fields, _) = split_header(&line);
        assert_eq!(fields[4], "op|with\\bars");
        assert_eq!(fields[3], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn extension_escaping() {
        let mut out = Vec::new();
        write_ext_value(&mut out, "a=b\\c\r\nd|e f\t\u{1b}\u{7f}é");
        assert_eq!(out, "a\\=b\\\\c\\r\\nd|e f\\x09\\x1b\\x7fé".as_bytes());
        let ev = Event {
            operation: "fs_read_data".into(),
            status: "ok".into(),
            action: Action::Read,
            object_type: ObjectType::File,
            path: "/x=y\\z/new\nline|pipe key=v".into(),
            user: User { name: "AD\\bob=1".into(), ..User::default() },
            ..Event::default()
        };
        let line = render_str(&ev);
        assert!(!line.contains('\n') && !line.contains('\r'));
        let (_, ext) = split_header(&line);
        let pairs = parse_ext(&ext);
        assert_eq!(get(&pairs, "filePath"), Some("/x=y\\z/new\nline|pipe key=v"));
        assert_eq!(get(&pairs, "fname"), Some("new\nline|pipe key=v"));
        assert_eq!(get(&pairs, "suser"), Some("bob=1"));
        assert_eq!(get(&pairs, "sntdom"), Some("AD"));
        // Every '=' in the extension is either escaped or directly after a known key.
        assert!(pairs.iter().all(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric())), "{pairs:?}");
    }

    #[test]
    fn rename_uses_cef_old_file_semantics() {
        let ev = Event {
            id: "id1".into(),
            time: Some(Timestamp::from_epoch_millis(1_717_679_645_000)),
            operation: "fs_rename".into(),
            status: "fs_access_denied_error".into(),
            action: Action::Rename,
            path: "/dir/old.txt".into(),
            target_path: "/dir/new.txt".into(),
            client_ip: "203.0.113.9".into(),
            cluster: "c1".into(),
            ..Event::default()
        };
        let line = render_str(&ev);
        let (fields, ext) = split_header(&line);
        assert_eq!(fields[5], "Rename object");
        assert_eq!(fields[6], "5");
        let pairs = parse_ext(&ext);
        assert_eq!(get(&pairs, "filePath"), Some("/dir/new.txt"));
        assert_eq!(get(&pairs, "fname"), Some("new.txt"));
        assert_eq!(get(&pairs, "oldFilePath"), Some("/dir/old.txt"));
        assert_eq!(get(&pairs, "oldFileName"), Some("old.txt"));
        assert_eq!(get(&pairs, "rt"), Some("1717679645000"));
        assert_eq!(get(&pairs, "src"), Some("203.0.113.9"));
        assert_eq!(get(&pairs, "outcome"), Some("failure"));
        assert_eq!(get(&pairs, "cs1Label"), Some("cluster"));
        assert_eq!(get(&pairs, "cs1"), Some("c1"));
        assert_eq!(get(&pairs, "cs2"), Some("fs_access_denied_error"));
        assert_eq!(get(&pairs, "externalId"), Some("id1"));
        assert!(get(&pairs, "dvchost").is_none());
    }
}
