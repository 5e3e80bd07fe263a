//! Output formats: one module per format, each rendering one [`Event`] as one record (no
//! trailing newline) into a caller-owned buffer, so rendering allocates nothing per event.
//!
//! The helpers here are the choices several formats share (event category, severity, the
//! human-readable event name), so that CEF, LEEF, ECS and OCSF never disagree about them, and
//! the escaping loop CEF and LEEF share ([`write_escaped`], table-driven: no control character
//! is ever written raw). [`details`] writes the input's extra fields into the JSON formats.
//! `docs/formats.md` documents every mapping.

pub mod cef;
pub mod details;
pub mod ecs;
pub mod json;
pub mod jsonw;
pub mod leef;
pub mod ocsf;

use crate::event::{Action, Event, ObjectType};

/// The output formats a user can choose (`--to`, `format =` in the config): the registry.
///
/// Everything about a format comes from here: its name (the variant's name in kebab-case) and
/// help text (the variant's doc comment) from [`clap::ValueEnum`], which also lists every
/// variant; JSON-ness and renderer from the one match in [`Format::spec`]. Adding a format is a
/// new module and a new variant; the compiler points at the match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// The project's canonical JSON (docs/event-schema.md).
    Json,
    /// Elastic Common Schema 8.x JSON.
    Ecs,
    /// OCSF 1.1.0 File System Activity JSON.
    Ocsf,
    /// ArcSight Common Event Format (rev 25).
    Cef,
    /// IBM QRadar Log Event Extended Format 2.0.
    Leef,
}

/// What a format is besides its name and help text.
struct Spec {
    /// Records are JSON objects (usable as HEC `event` or bulk source).
    json: bool,
    /// Appends one rendered record, without a trailing newline.
    render: fn(&Event, &mut Vec<u8>),
}

impl Format {
    #[inline]
    fn spec(self) -> Spec {
        match self {
            Format::Json => Spec { json: true, render: json::render },
            Format::Ecs => Spec { json: true, render: ecs::render },
            Format::Ocsf => Spec { json: true, render: ocsf::render },
            Format::Cef => Spec { json: false, render: cef::render },
            Format::Leef => Spec { json: false, render: leef::render },
        }
    }

    /// Every format, in documentation (declaration) order.
    pub fn all() -> &'static [Format] {
        <Format as clap::ValueEnum>::value_variants()
    }

    /// The names, comma-separated (`json, ecs, ...`), for messages.
    pub fn names() -> String {
        Format::all().iter().map(|f| f.name()).collect::<Vec<_>>().join(", ")
    }

    pub fn parse(name: &str) -> Option<Format> {
        <Format as clap::ValueEnum>::from_str(name, false).ok()
    }

    /// The format's name, as `--to` and `format =` take it.
    pub fn name(self) -> &'static str {
        static NAMES: std::sync::OnceLock<Vec<(Format, String)>> = std::sync::OnceLock::new();
        let names = NAMES.get_or_init(|| {
            Format::all()
                .iter()
                .map(|&f| (f, clap::ValueEnum::to_possible_value(&f).expect("no format is hidden").get_name().to_string()))
                .collect()
        });
        names.iter().find(|(f, _)| *f == self).map(|(_, n)| n.as_str()).expect("every format is listed")
    }

    /// True for formats whose records are JSON objects (usable as HEC `event` or bulk source).
    pub fn is_json(self) -> bool {
        self.spec().json
    }

    /// Appends one rendered record for `ev` to `out`, without a trailing newline.
    #[inline]
    pub fn render(self, ev: &Event, out: &mut Vec<u8>) {
        (self.spec().render)(ev, out)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::parse(s).ok_or_else(|| format!("unknown format {s:?} (expected one of: {})", Format::names()))
    }
}

/// Our product identity in every format's vendor/product/version fields.
pub const VENDOR: &str = "Qumulo";
pub const PRODUCT: &str = "Qumulo Core";
/// The broker's version, written where a format wants the producing software's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How serious an event is, shared by CEF (`Severity`), LEEF (`sev`) and OCSF (`severity_id`).
///
/// * `Informational`: the operation succeeded;
/// * `Low`: it failed for an ordinary reason (`fs_no_such_entry_error`, `fs_entry_exists_error`...);
/// * `Medium`: it was refused: an access or credential error ([`is_denied`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Informational,
    Low,
    Medium,
}

impl Severity {
    pub fn of(ev: &Event) -> Severity {
        if ev.is_success() {
            Severity::Informational
        } else if is_denied(&ev.status) {
            Severity::Medium
        } else {
            Severity::Low
        }
    }

    /// CEF severity, 0 to 10 (0-3 Low, 4-6 Medium).
    pub fn cef(self) -> u8 {
        match self {
            Severity::Informational => 1,
            Severity::Low => 3,
            Severity::Medium => 5,
        }
    }

    /// LEEF `sev`, 1 to 10.
    pub fn leef(self) -> u8 {
        self.cef()
    }

    /// OCSF `severity_id` and its caption.
    pub fn ocsf(self) -> (u8, &'static str) {
        match self {
            Severity::Informational => (1, "Informational"),
            Severity::Low => (2, "Low"),
            Severity::Medium => (3, "Medium"),
        }
    }
}

/// Statuses that mean "refused": Qumulo's access errors and every credential error.
pub fn is_denied(status: &str) -> bool {
    matches!(status, "fs_access_denied_error" | "fs_access_perm_not_owner_error" | "fs_access_error")
        || status.starts_with("cred_")
}

/// The broad category of an event, using ECS `event.category` values (CEF `cat`, ECS).
///
/// Logins are `authentication`, REST/configuration operations `configuration`, unmapped
/// operations that name no file (`smb_close_session`, ...) `session`, everything else `file`.
pub fn category(ev: &Event) -> &'static str {
    match ev.action {
        Action::Login => "authentication",
        Action::Admin => "configuration",
        Action::Other if ev.path.is_empty() && ev.file_id.is_empty() => "session",
        _ => "file",
    }
}

/// Writes a short human-readable event name (CEF `Name`): `Read file`, `Change owner of
/// directory`, `Login`... The object is `file`, `directory`, `symlink` or `object` (unknown).
pub fn write_event_name(ev: &Event, out: &mut Vec<u8>) {
    let verb = match ev.action {
        Action::Create => "Create",
        Action::Read => "Read",
        Action::Write => "Write",
        Action::Delete => "Delete",
        Action::Rename => "Rename",
        Action::ChangeOwner => "Change owner of",
        Action::AddPermissions => "Add permissions to",
        Action::RemovePermissions => "Remove permissions from",
        Action::AddProtection => "Add protection to",
        Action::RemoveProtection => "Remove protection from",
        Action::ReadMetadata => "Read metadata of",
        Action::WriteMetadata => "Write metadata of",
        Action::List => "List",
        Action::Open => "Open",
        Action::Link => "Create hard link to",
        Action::Login => {
            out.extend_from_slice(b"Login");
            return;
        }
        Action::Admin => {
            out.extend_from_slice(b"Administrative operation");
            return;
        }
        Action::Other => {
            out.extend_from_slice(b"Other operation");
            return;
        }
    };
    out.extend_from_slice(verb.as_bytes());
    out.push(b' ');
    out.extend_from_slice(match ev.object_type {
        ObjectType::File => b"file".as_slice(),
        ObjectType::Directory => b"directory",
        ObjectType::Symlink => b"symlink",
        ObjectType::Unknown => b"object",
    });
}

/// True when `s` is an IPv4 or IPv6 address (IP-typed output fields only get valid IPs).
pub fn is_ip(s: &str) -> bool {
    !s.is_empty() && s.parse::<std::net::IpAddr>().is_ok()
}

/// How [`write_escaped`] writes each byte: [`PLAIN`] as itself, [`HEX`] as `\xHH` (two lowercase
/// hex digits), [`BACKSLASH_MINIMAL`] as `\` or `\\` (LEEF, see [`write_escaped`]), any other
/// value `c` as the two characters `\` `c`.
pub(crate) type EscapeTable = [u8; 256];
pub(crate) const PLAIN: u8 = 0;
pub(crate) const HEX: u8 = 1;
pub(crate) const BACKSLASH_MINIMAL: u8 = 2;

/// An escape table: every control character (C0 and DEL) [`HEX`] unless `pairs` says otherwise,
/// each `(byte, how)` of `pairs`, everything else [`PLAIN`].
pub(crate) const fn escape_table(pairs: &[(u8, u8)]) -> EscapeTable {
    let mut t = [PLAIN; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = HEX;
        c += 1;
    }
    t[0x7f] = HEX;
    let mut i = 0;
    while i < pairs.len() {
        t[pairs[i].0 as usize] = pairs[i].1;
        i += 1;
    }
    t
}

/// CEF and LEEF header fields: `\` -> `\\`, `|` -> `\|`, control characters -> `\xHH`.
pub(crate) static HEADER_ESCAPES: EscapeTable = escape_table(&[(b'\\', b'\\'), (b'|', b'|')]);

/// Appends `s` with each byte written as `table` says (the escaping loop shared by CEF and LEEF;
/// plain runs are copied whole, so a field with nothing to escape costs one table lookup a byte
/// and one copy).
///
/// [`BACKSLASH_MINIMAL`] (LEEF values, whose readers do not unescape): a backslash is written
/// doubled only when the byte after it could be read as the rest of an escape (a byte `table`
/// escapes, or `t`, `r`, `n`, `x`), and single otherwise, so `AD\alice` stays as it is while
/// the text stays reversible.
pub(crate) fn write_escaped(out: &mut Vec<u8>, s: &str, table: &EscapeTable) {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    let mut start = 0;
    for (i, &c) in b.iter().enumerate() {
        let how = table[c as usize];
        if how == PLAIN {
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        start = i + 1;
        match how {
            HEX => out.extend_from_slice(&[b'\\', b'x', HEX_DIGITS[(c >> 4) as usize], HEX_DIGITS[(c & 0xf) as usize]]),
            BACKSLASH_MINIMAL => {
                let ambiguous = b.get(i + 1).is_some_and(|&n| table[n as usize] != PLAIN || matches!(n, b't' | b'r' | b'n' | b'x'));
                out.extend_from_slice(if ambiguous { b"\\\\" } else { b"\\" });
            }
            _ => out.extend_from_slice(&[b'\\', how]),
        }
    }
    out.extend_from_slice(&b[start..]);
}

/// Appends a CEF or LEEF header field ([`HEADER_ESCAPES`]).
pub(crate) fn write_header_field(out: &mut Vec<u8>, s: &str) {
    write_escaped(out, s, &HEADER_ESCAPES);
}

/// Writes the header CEF and LEEF share: `<magic>Vendor|Product|Version|<event id>|`, each
/// field escaped by [`write_header_field`].
pub(crate) fn write_pipe_header(out: &mut Vec<u8>, magic: &[u8], event_id: &str) {
    out.extend_from_slice(magic);
    for field in [VENDOR, PRODUCT, VERSION, event_id] {
        write_header_field(out, field);
        out.push(b'|');
    }
}

/// A `key=value` list as CEF extensions and LEEF attributes are written: pairs joined by
/// `separator`, values escaped by `escape_value`, empty (absent) values skipped.
pub(crate) struct KeyValues<'a> {
    pub out: &'a mut Vec<u8>,
    separator: u8,
    escape_value: fn(&mut Vec<u8>, &str),
    first: bool,
}

impl<'a> KeyValues<'a> {
    pub fn new(out: &'a mut Vec<u8>, separator: u8, escape_value: fn(&mut Vec<u8>, &str)) -> KeyValues<'a> {
        KeyValues { out, separator, escape_value, first: true }
    }

    /// Writes `key=`; the caller appends the value.
    pub fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(self.separator);
        }
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }

    /// Writes `key=value`, skipping empty (absent) values.
    pub fn kv(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.key(key);
            (self.escape_value)(self.out, value);
        }
    }

    /// A value with its label pair (CEF's `cs1Label=cluster cs1=...`), skipped when empty.
    pub fn labeled(&mut self, key: &str, label_key: &str, label: &str, value: &str) {
        if !value.is_empty() {
            self.kv(label_key, label);
            self.kv(key, value);
        }
    }
}

/// Appends a decimal integer as `{v}` formats it, with `itoa` (the formatting machinery cost
/// about 250 instructions per integer: OCSF writes eight of them per event).
pub(crate) fn write_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_display_writes_them() {
        let mut values = vec![0i64, 1, -1, 9, 10, -10, 99, 100, 1001, 100_105, i64::MAX, i64::MIN, i64::MIN + 1];
        values.extend((0..64).flat_map(|p| [1i64 << p, (1i64 << p).wrapping_neg(), (1i64 << p).wrapping_sub(1)]));
        for v in values {
            let mut out = b"x".to_vec();
            write_int(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes());
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(Format::all().len(), 5);
        for &f in Format::all() {
            assert_eq!(Format::parse(f.name()), Some(f));
            assert!(Format::names().contains(f.name()));
        }
        assert_eq!(Format::names(), "json, ecs, ocsf, cef, leef");
        assert_eq!("cef".parse::<Format>(), Ok(Format::Cef));
        assert!("xml".parse::<Format>().unwrap_err().contains("json, ecs, ocsf, cef, leef"));
        assert!(Format::Ecs.is_json() && Format::Ocsf.is_json() && Format::Json.is_json());
        assert!(!Format::Cef.is_json() && !Format::Leef.is_json());
    }

    #[test]
    fn severity_levels() {
        let mut ev = Event { status: "ok".into(), ..Event::default() };
        assert_eq!(Severity::of(&ev), Severity::Informational);
        ev.status = "fs_no_such_entry_error".into();
        assert_eq!(Severity::of(&ev), Severity::Low);
        ev.status = "fs_access_denied_error".into();
        assert_eq!(Severity::of(&ev), Severity::Medium);
        ev.status = "cred_invalid_sid_error".into();
        assert_eq!(Severity::of(&ev), Severity::Medium);
    }

    #[test]
    fn event_names() {
        let mut ev = Event { action: Action::ChangeOwner, object_type: ObjectType::Directory, ..Event::default() };
        let mut out = Vec::new();
        write_event_name(&ev, &mut out);
        assert_eq!(out, b"Change owner of directory");
        ev.action = Action::Login;
        out.clear();
        write_event_name(&ev, &mut out);
        assert_eq!(out, b"Login");
    }

    #[test]
    fn ip_check() {
        assert!(is_ip("203.0.113.7") && is_ip("2001:db8::1"));
        assert!(!is_ip("") && !is_ip("host.example") && !is_ip("1.2.3"));
    }
}
