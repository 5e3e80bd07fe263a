//! Output strictness: every format and every syslog header, read back by the independent strict
//! readers of `tests/strict/`, for events whose every string field holds arbitrary Unicode
//! (control characters, `|`, `=`, `\`, `"`, `]`, line breaks, BOM, very long strings).
//!
//! Every field must come back exactly, or transformed exactly as `docs/formats.md` ("What a field
//! can never do") documents: the expectations below are written from that page, and the readers
//! refuse anything the specifications do not allow (a duplicate JSON key, a raw control
//! character in CEF/LEEF, an RFC 5424 header field out of bounds...).

mod strict;
// Only the config builder of tests/support (the rest is not needed here).
#[allow(dead_code)]
#[path = "support/config.rs"]
mod config;

use proptest::collection::vec;
use proptest::prelude::*;
use qumulo_audit_broker::config::Config;
use qumulo_audit_broker::event::{split_path, Action, Event, ObjectType, SourceFormat, User};
use qumulo_audit_broker::format::{is_ip, ocsf, write_event_name, Format, Severity, VERSION};
use qumulo_audit_broker::input::{Parsed, Parser, ParserOptions};
use qumulo_audit_broker::sink::Encoder;
use qumulo_audit_broker::time::Timestamp;
use config::ConfigToml;
use strict::json::{self, Json};
use strict::{cef, leef, octet_counted_frames, rfc3164, rfc5424};

// ---------------------------------------------------------------------------------------------
// Expectations, from docs/formats.md.

/// `details` as the JSON formats must write it: the object with repeated keys merged (first
/// position, last value), or `{"_raw": text}` for text that is not one JSON object.
fn expected_details(details: &str) -> Option<Json> {
    if details.is_empty() {
        return None;
    }
    Some(match json::parse_merging(details, 128) {
        Ok(v @ Json::Obj(_)) => v,
        _ => Json::Obj(vec![("_raw".into(), Json::Str(details.into()))]),
    })
}

/// A syslog header token: `-` when empty, else each character outside 33..=126 (or in
/// `forbidden`) as `_`, cut at `max` characters.
fn header_token(s: &str, max: usize, forbidden: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    s.chars().take(max).map(|c| if ('!'..='~').contains(&c) && !forbidden.contains(c) { c } else { '_' }).collect()
}

fn opt(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn uid(ev: &Event) -> &str {
    if ev.user.sid.is_empty() {
        &ev.user.auth_id
    } else {
        &ev.user.sid
    }
}

fn render(format: Format, ev: &Event) -> String {
    let mut out = Vec::new();
    format.render(ev, &mut out);
    let text = String::from_utf8(out).expect("UTF-8");
    assert!(!text.contains('\n') && !text.contains('\r'), "{}: line break in {text:?}", format.name());
    text
}

fn check_fields(format: &str, v: &Json, expected: &[(&str, Option<&str>)]) {
    for (path, want) in expected {
        assert_eq!(v.str_at(path), *want, "{format}: {path}");
    }
}

fn check_details(format: &str, v: &Json, path: &str, ev: &Event) {
    assert_eq!(v.at(path), expected_details(&ev.details).as_ref(), "{format}: {path} from {:?}", ev.details);
}

fn check_json(ev: &Event) {
    let text = render(Format::Json, ev);
    let v = json::parse(&text).unwrap_or_else(|e| panic!("json: {e}: {text}"));
    let u = &ev.user;
    check_fields(
        "json",
        &v,
        &[
            ("id", Some(&ev.id)),
            ("cluster", opt(&ev.cluster)),
            ("node", opt(&ev.node)),
            ("fromhost_ip", opt(&ev.fromhost_ip)),
            ("client_ip", opt(&ev.client_ip)),
            ("user.name", opt(&u.name)),
            ("user.sid", opt(&u.sid)),
            ("user.auth_id", opt(&u.auth_id)),
            ("protocol", Some(&ev.protocol)),
            ("operation", Some(&ev.operation)),
            ("status", Some(&ev.status)),
            ("outcome", Some(ev.outcome())),
            ("action", Some(ev.action.as_str())),
            ("object_type", Some(ev.object_type.as_str())),
            ("file_id", opt(&ev.file_id)),
            ("path", opt(&ev.path)),
            ("target_path", opt(&ev.target_path)),
            ("source_format", Some(ev.source_format.as_str())),
        ],
    );
    check_details("json", &v, "details", ev);
    let keys = [
        ("id", true),
        ("time", true),
        ("cluster", !ev.cluster.is_empty()),
        ("node", !ev.node.is_empty()),
        ("fromhost_ip", !ev.fromhost_ip.is_empty()),
        ("client_ip", !ev.client_ip.is_empty()),
        ("user", true),
        ("protocol", true),
        ("operation", true),
        ("status", true),
        ("outcome", true),
        ("action", true),
        ("object_type", true),
        ("file_id", !ev.file_id.is_empty()),
        ("path", !ev.path.is_empty()),
        ("target_path", !ev.target_path.is_empty()),
        ("details", !ev.details.is_empty()),
        ("source_format", true),
    ];
    let expected: Vec<&str> = keys.iter().filter(|(_, present)| *present).map(|(k, _)| *k).collect();
    assert_eq!(v.keys(), expected, "json: keys in documented order, nothing else");
}

fn check_ecs(ev: &Event) {
    let text = render(Format::Ecs, ev);
    let v = json::parse(&text).unwrap_or_else(|e| panic!("ecs: {e}: {text}"));
    let (domain, name) = ev.user_domain_and_name();
    let (dir, file) = split_path(&ev.path);
    let has_file = !ev.path.is_empty() || !ev.file_id.is_empty();
    let has_user = !name.is_empty() || !uid(ev).is_empty();
    check_fields(
        "ecs",
        &v,
        &[
            ("event.id", opt(&ev.id)),
            ("file.path", opt(&ev.path)),
            ("file.name", opt(file).filter(|_| !ev.path.is_empty())),
            ("file.directory", opt(dir).filter(|_| !ev.path.is_empty() && !file.is_empty())),
            ("file.inode", opt(&ev.file_id).filter(|_| has_file)),
            ("user.name", opt(name).filter(|_| has_user)),
            ("user.domain", domain.and_then(opt).filter(|_| has_user)),
            ("user.id", opt(uid(ev)).filter(|_| has_user)),
            ("source.address", opt(&ev.client_ip)),
            ("source.ip", opt(&ev.client_ip).filter(|ip| is_ip(ip))),
            ("host.name", opt(&ev.node)),
            ("host.ip", opt(&ev.fromhost_ip).filter(|ip| is_ip(ip))),
            ("qumulo.cluster", opt(&ev.cluster)),
            ("qumulo.operation", Some(&ev.operation)),
            ("qumulo.status", Some(&ev.status)),
            ("qumulo.protocol", opt(&ev.protocol)),
            ("qumulo.file_id", opt(&ev.file_id)),
            ("qumulo.target_path", opt(&ev.target_path)),
            ("qumulo.auth_id", opt(&ev.user.auth_id)),
            ("qumulo.fromhost_ip", opt(&ev.fromhost_ip).filter(|ip| !is_ip(ip))),
        ],
    );
    check_details("ecs", &v, "qumulo.details", ev);
    let allowed = ["@timestamp", "ecs", "event", "file", "user", "source", "host", "observer", "qumulo"];
    assert!(v.keys().iter().all(|k| allowed.contains(k)), "ecs keys {:?}", v.keys());
}

fn check_ocsf(ev: &Event) {
    let text = render(Format::Ocsf, ev);
    let v = json::parse(&text).unwrap_or_else(|e| panic!("ocsf: {e}: {text}"));
    let (domain, name) = ev.user_domain_and_name();
    let (activity_id, caption) = ocsf::activity(ev.action);
    let has_user = !name.is_empty() || !uid(ev).is_empty();
    let rename_result = ev.action == Action::Rename && ev.is_success() && !ev.target_path.is_empty();
    let activity_name = if activity_id == 99 && !ev.operation.is_empty() { ev.operation.as_str() } else { caption };
    check_fields(
        "ocsf",
        &v,
        &[
            ("activity_name", Some(activity_name)),
            ("status_code", opt(&ev.status)),
            ("status_detail", opt(&ev.status)),
            ("metadata.uid", opt(&ev.id)),
            ("metadata.event_code", opt(&ev.operation)),
            ("actor.user.name", opt(name).filter(|_| has_user)),
            ("actor.user.uid", opt(uid(ev)).filter(|_| has_user)),
            ("actor.user.domain", domain.and_then(opt).filter(|_| has_user)),
            ("device.hostname", opt(&ev.node)),
            ("device.ip", opt(&ev.fromhost_ip).filter(|ip| is_ip(ip))),
            ("unmapped.client_ip", opt(&ev.client_ip)),
            ("unmapped.cluster", opt(&ev.cluster)),
            ("unmapped.operation", Some(&ev.operation)),
            ("unmapped.protocol", opt(&ev.protocol)),
            ("unmapped.target_path", opt(&ev.target_path).filter(|_| !rename_result)),
            ("unmapped.auth_id", opt(&ev.user.auth_id).filter(|_| !ev.user.sid.is_empty())),
            ("unmapped.fromhost_ip", opt(&ev.fromhost_ip).filter(|ip| !is_ip(ip))),
        ],
    );
    for (key, path, present) in
        [("file", &ev.path, !ev.path.is_empty() || !ev.file_id.is_empty()), ("file_result", &ev.target_path, rename_result)]
    {
        let (dir, file) = split_path(path);
        let fields = [
            ("name", present.then_some(if file.is_empty() { path.as_str() } else { file })),
            ("parent_folder", opt(dir).filter(|_| present && !file.is_empty())),
            ("path", opt(path).filter(|_| present)),
            ("uid", opt(&ev.file_id).filter(|_| present)),
        ];
        for (f, want) in fields {
            assert_eq!(v.str_at(&format!("{key}.{f}")), want, "ocsf: {key}.{f}");
        }
    }
    check_details("ocsf", &v, "unmapped.details", ev);
}

fn expected_cef(ev: &Event) -> (Vec<String>, Vec<(String, String)>) {
    let mut name = Vec::new();
    write_event_name(ev, &mut name);
    let header = ["0", "Qumulo", "Qumulo Core", VERSION, &ev.operation, std::str::from_utf8(&name).unwrap()]
        .iter()
        .map(|s| s.to_string())
        .chain([Severity::of(ev).cef().to_string()])
        .collect();
    let mut x: Vec<(String, String)> = Vec::new();
    let mut kv = |k: &str, v: &str| {
        if !v.is_empty() {
            x.push((k.into(), v.into()));
        }
    };
    let rt = ev.time.map(|t| t.epoch_millis().to_string()).unwrap_or_default();
    kv("rt", &rt);
    kv("dvchost", &ev.node);
    kv("dvc", if is_ip(&ev.fromhost_ip) { &ev.fromhost_ip } else { "" });
    kv(if is_ip(&ev.client_ip) { "src" } else { "shost" }, &ev.client_ip);
    let (domain, name) = ev.user_domain_and_name();
    kv("suser", name);
    kv("sntdom", domain.unwrap_or(""));
    kv("suid", uid(ev));
    kv("app", &ev.protocol);
    kv("act", ev.action.as_str());
    kv("cat", qumulo_audit_broker::format::category(ev));
    kv("outcome", ev.outcome());
    let renamed = ev.action == Action::Rename && !ev.target_path.is_empty();
    let (path, old) = if renamed { (ev.target_path.as_str(), ev.path.as_str()) } else { (ev.path.as_str(), "") };
    kv("fname", split_path(path).1);
    kv("filePath", path);
    kv("fileId", &ev.file_id);
    kv("fileType", if ev.object_type == ObjectType::Unknown { "" } else { ev.object_type.as_str() });
    kv("oldFileName", split_path(old).1);
    kv("oldFilePath", old);
    kv("externalId", &ev.id);
    for (n, label, value) in [("1", "cluster", &ev.cluster), ("2", "status", &ev.status), ("3", "details", &ev.details)] {
        if !value.is_empty() {
            kv(&format!("cs{n}Label"), label);
            kv(&format!("cs{n}"), value);
        }
    }
    (header, x)
}

fn check_cef(ev: &Event) {
    let text = render(Format::Cef, ev);
    let r = cef::parse(&text).unwrap_or_else(|e| panic!("cef: {e}: {text:?}"));
    let (header, extension) = expected_cef(ev);
    assert_eq!(r.header, header, "cef header: {text:?}");
    assert_eq!(r.extension, extension, "cef extension: {text:?}");
}

fn check_leef(ev: &Event) {
    let text = render(Format::Leef, ev);
    let r = leef::parse(&text).unwrap_or_else(|e| panic!("leef: {e}: {text:?}"));
    assert_eq!(r.header, ["Qumulo", "Qumulo Core", VERSION, ev.operation.as_str()], "leef header: {text:?}");
    assert_eq!(r.delimiter, '\t');
    let mut x: Vec<(String, String)> = Vec::new();
    let mut kv = |k: &str, v: &str| {
        if !v.is_empty() {
            x.push((k.into(), v.into()));
        }
    };
    if let Some(t) = ev.time {
        kv("devTime", &Timestamp { nanos: t.nanos / 1_000_000 * 1_000_000, frac_digits: 3, ..t }.to_rfc3339());
        kv("devTimeFormat", "yyyy-MM-dd'T'HH:mm:ss.SSSX");
    }
    kv("cat", ev.action.as_str());
    kv("sev", &Severity::of(ev).leef().to_string());
    let client_is_ip = is_ip(&ev.client_ip);
    kv("src", if client_is_ip { &ev.client_ip } else { "" });
    let (domain, name) = ev.user_domain_and_name();
    kv("usrName", name);
    kv("domain", domain.unwrap_or(""));
    kv("isLoginEvent", if ev.action == Action::Login { "true" } else { "" });
    for (k, v) in [("eventId", ev.id.as_str()), ("action", ev.action.as_str()), ("outcome", ev.outcome())] {
        kv(k, v);
    }
    for (k, v) in [("status", &ev.status), ("protocol", &ev.protocol), ("cluster", &ev.cluster), ("node", &ev.node)] {
        kv(k, v);
    }
    kv("nodeIp", &ev.fromhost_ip);
    kv("userId", uid(ev));
    kv("objectType", if ev.object_type == ObjectType::Unknown { "" } else { ev.object_type.as_str() });
    kv("fileId", &ev.file_id);
    kv("filePath", &ev.path);
    kv("fileName", split_path(&ev.path).1);
    kv("targetPath", &ev.target_path);
    kv("clientAddress", if client_is_ip { "" } else { &ev.client_ip });
    kv("details", &ev.details);
    assert_eq!(r.attributes, x, "leef attributes: {text:?}");
}

fn encoder(cfg: &ConfigToml) -> Encoder {
    let text = cfg.text();
    let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    Encoder::from_config(&cfg)
}

fn encode(enc: &Encoder, ev: &Event) -> Vec<u8> {
    let (mut rendered, mut out) = (Vec::new(), Vec::new());
    enc.encode(ev, &mut rendered, &mut out);
    out
}

/// Both syslog headers, octet counting and newline framing, every format.
fn check_syslog(ev: &Event, app_name: &str) {
    let host = if ev.node.is_empty() { &ev.cluster } else { &ev.node };
    let pri = 13 * 8 + if ev.is_success() { 6 } else { 5 };
    for &format in Format::all() {
        let record = render(format, ev);
        let base = ConfigToml::syslog("127.0.0.1:514").format(format.name()).dest("app_name", app_name);
        let stream = encode(&encoder(&base), ev);
        let frames = octet_counted_frames(&stream).unwrap();
        assert_eq!(frames.len(), 1);
        let m = rfc5424::parse(frames[0]).unwrap_or_else(|e| panic!("rfc5424: {e}: {:?}", String::from_utf8_lossy(frames[0])));
        assert_eq!(m.pri, pri);
        if let Some(t) = ev.time {
            assert_eq!(m.timestamp, Timestamp { frac_digits: t.frac_digits.min(6), ..t }.to_rfc3339());
        }
        assert_eq!(m.hostname, header_token(host, 255, ""));
        assert_eq!(m.app_name, header_token(app_name, 48, ""));
        assert_eq!(m.procid, "-");
        let op = &ev.operation;
        let msgid_ok = (1..=32).contains(&op.len()) && op.bytes().all(|c| (33..=126).contains(&c));
        assert_eq!(m.msgid, if msgid_ok { op.as_str() } else { "-" });
        assert!(m.structured_data.is_empty(), "no structured data, ever");
        assert_eq!(m.msg, Some(record.as_bytes()), "MSG is the record, unchanged");

        let bsd = encode(&encoder(&base.dest("header", "rfc3164").dest("framing", "newline")), ev);
        let line = bsd.strip_suffix(b"\n").expect("newline framing ends the record with LF");
        assert!(!line.contains(&b'\n'), "one line per record");
        let m = rfc3164::parse(line).unwrap_or_else(|e| panic!("rfc3164: {e}: {:?}", String::from_utf8_lossy(line)));
        assert_eq!(m.pri, pri);
        assert_eq!(m.hostname, header_token(host, 255, ""));
        assert_eq!(m.tag, header_token(app_name, 32, ":[]"));
        assert_eq!(m.msg, record.as_bytes());
    }
}

/// Splunk HEC and Elasticsearch bulk wrap the record without changing it.
fn check_http(ev: &Event) {
    for &format in Format::all() {
        let record = render(format, ev);
        let hec = encode(&encoder(&ConfigToml::http("http://127.0.0.1:1").dest("preset", "splunk-hec").format(format.name())), ev);
        let hec = std::str::from_utf8(&hec).unwrap().strip_suffix('\n').unwrap();
        let v = json::parse(hec).unwrap_or_else(|e| panic!("hec: {e}: {hec}"));
        assert_eq!(v.keys(), ["time", "host", "source", "sourcetype", "index", "event"].iter().copied().filter(|k| v.get(k).is_some()).collect::<Vec<_>>());
        let want = if format.is_json() { json::parse(&record).unwrap() } else { Json::Str(record.clone()) };
        assert_eq!(v.get("event"), Some(&want), "hec event");
        assert_eq!(v.str_at("host"), opt(if ev.node.is_empty() { &ev.cluster } else { &ev.node }));
        if format.is_json() {
            let bulk = encode(&encoder(&ConfigToml::bulk("http://127.0.0.1:1").format(format.name())), ev);
            let lines: Vec<&str> = std::str::from_utf8(&bulk).unwrap().strip_suffix('\n').unwrap().split('\n').collect();
            assert_eq!(lines.len(), 2, "action and source, one line each");
            let action = json::parse(lines[0]).unwrap();
            assert_eq!(action.str_at("create._id"), Some(ev.id.as_str()));
            assert_eq!(json::parse(lines[1]).unwrap(), want);
        }
    }
}

fn check_all(ev: &Event, app_name: &str) {
    check_json(ev);
    check_ecs(ev);
    check_ocsf(ev);
    check_cef(ev);
    check_leef(ev);
    check_syslog(ev, app_name);
    check_http(ev);
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn tricky_char() -> impl Strategy<Value = char> {
    let specials = vec![
        '|', '=', '\\', '"', ']', '[', '\n', '\r', '\t', '\0', '\u{7f}', '\u{1b}', ' ', '-', '_', 'x', 't', 'n', 'r', '{',
        '}', ':', ',', '/', '\u{feff}', '\u{85}', '\u{2028}', '\u{fffd}', 'é', '😀',
    ];
    prop_oneof![
        4 => prop::sample::select(specials),
        4 => (0x20u8..0x7f).prop_map(char::from),
        1 => (0u8..0x20).prop_map(char::from),
        2 => any::<char>(),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        10 => vec(tricky_char(), 1..24).prop_map(String::from_iter),
        1 => (vec(tricky_char(), 1..8), 30usize..6000).prop_map(|(v, n)| v.iter().cycle().take(n).collect()),
    ]
}

fn ip_or_text() -> impl Strategy<Value = String> {
    prop_oneof![text(), prop::sample::select(vec!["203.0.113.7", "2001:db8::1", "::ffff:10.0.0.1"]).prop_map(String::from)]
}

fn operation() -> impl Strategy<Value = String> {
    let real = vec![
        "fs_read_data",
        "fs_rename",
        "cluster_nodes_resolve_indeterminate_modification",
        "abcdefghijklmnopqrstuvwxyz012345",  // 32: fits MSGID
        "abcdefghijklmnopqrstuvwxyz0123456", // 33: does not
        "-",
    ];
    prop_oneof![text(), prop::sample::select(real).prop_map(String::from)]
}

/// A JSON value as text, with keys from a small set (so objects repeat keys), tricky strings,
/// surrogate escapes and optional whitespace.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("1".to_string()),
        Just("-0.5e+3".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("\"\\ud800\"".to_string()),
        Just("\"\\ud83d\\ude00\"".to_string()),
        text().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let value = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            object_of(inner),
        ]
    });
    (object_of(value.boxed()), any::<bool>()).prop_map(|(s, spaced)| if spaced { s.replace(',', " , ").replace(':', " : ") } else { s })
}

fn object_of(value: BoxedStrategy<String>) -> BoxedStrategy<String> {
    let key = prop_oneof![prop::sample::select(vec!["a", "path", "size", "a\\u0000", "\\u0061"]).prop_map(String::from), text().prop_map(|s| {
        let quoted = serde_json::to_string(&s).unwrap();
        quoted[1..quoted.len() - 1].to_string()
    })];
    vec((key, value), 0..5)
        .prop_map(|members| format!("{{{}}}", members.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")))
        .boxed()
}

fn details() -> impl Strategy<Value = String> {
    prop_oneof![2 => Just(String::new()), 4 => json_text(), 1 => text()]
}

fn event() -> impl Strategy<Value = Event> {
    let time = prop::option::of((0i64..253_402_300_800, 0u32..1_000_000_000, 0u8..=9).prop_map(|(secs, nanos, frac_digits)| Timestamp { secs, nanos, frac_digits }));
    let strings = vec(text(), 10);
    let ids = (ip_or_text(), ip_or_text(), operation(), prop_oneof![Just("ok".to_string()), text()], details());
    let enums = (prop::sample::select(Action::ALL.to_vec()), 0usize..4, 0usize..3);
    (time, strings, ids, enums).prop_map(|(time, s, (fromhost_ip, client_ip, operation, status, details), (action, ot, sf))| Event {
        id: s[0].clone(),
        time,
        cluster: s[1].clone(),
        node: s[2].clone(),
        fromhost_ip,
        client_ip,
        user: User { name: s[3].clone(), sid: s[4].clone(), auth_id: s[5].clone() },
        protocol: s[6].clone(),
        operation,
        status,
        action,
        object_type: [ObjectType::File, ObjectType::Directory, ObjectType::Symlink, ObjectType::Unknown][ot],
        file_id: s[7].clone(),
        path: s[8].clone(),
        target_path: s[9].clone(),
        details,
        details_vouched: false, // only the parser vouches (format::details); arbitrary text is checked
        source_format: [SourceFormat::Csv, SourceFormat::Json, SourceFormat::CloudWatch][sf],
    })
}

/// What the configuration accepts as `app_name` (1 to 48 printable US-ASCII characters without
/// spaces: `check` and start-up refuse anything else, see tests/config_check.rs); the encoder
/// still sanitises, as a second line of defence, what the config could never hand it.
fn app_name() -> impl Strategy<Value = String> {
    prop_oneof![Just("qumulo-audit".to_string()), "[!-~]{1,48}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn every_field_round_trips_or_is_transformed_as_documented(ev in event(), app in app_name()) {
        check_all(&ev, &app);
    }

    /// Whatever the parser makes of a JSON line with arbitrary extra keys (at the top level and
    /// in `details`, repeated or not), the outputs hold.
    #[test]
    fn parsed_json_lines_hold_too(extra in json_text(), inner in json_text()) {
        let line = format!(
            r#"{{"user_id":{{"name":"AD\\alice"}},"status":"ok","operation":"fs_write_data","details":{}, "x":{}}}"#,
            inner, extra
        );
        let mut parser = Parser::new(ParserOptions::default());
        let mut ev = Event::default();
        if let Ok(Parsed::Event) = parser.parse(line.as_bytes(), &mut ev) {
            check_all(&ev, "qumulo-audit");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases the strict readers found, kept as plain tests.

fn parse_line(line: &str) -> Event {
    let mut parser = Parser::new(ParserOptions::default());
    let mut ev = Event::default();
    assert!(matches!(parser.parse(line.as_bytes(), &mut ev), Ok(Parsed::Event)), "{line}");
    ev
}

/// A key the input carries both at the top level and in `details`, or twice, used to be
/// written twice in `details` (Elasticsearch refuses such a document).
#[test]
fn details_keys_from_the_input_never_repeat() {
    // The parser refuses a line that repeats a key (docs/event-schema.md, "Field types")...
    let line = r#"{"user_id":{"name":"a"},"status":"ok","operation":"fs_write_data","size":1,"details":{"size":2,"path":"/p","path2":"x","path2":"y"},"details":{"size":3}}"#;
    let mut parser = Parser::new(ParserOptions::default());
    let e = parser.parse(line.as_bytes(), &mut Event::default()).unwrap_err();
    assert!(e.reason.contains("duplicate key"), "{e}");
    // ... and an event that holds repeated `details` keys anyway (built by other code) is still
    // written without a repeated key: the last value wins, at the first key's place.
    let mut ev = parse_line(r#"{"user_id":{"name":"a"},"status":"ok","operation":"fs_write_data","details":{"path":"/p"}}"#);
    ev.details = r#"{"size":1,"size":2,"path2":"x","path2":"y","size":3}"#.into();
    let v = json::parse(&render(Format::Json, &ev)).unwrap();
    assert_eq!(v.at("details"), Some(&json::parse(r#"{"size":3,"path2":"y"}"#).unwrap()));
    assert_eq!(v.str_at("path"), Some("/p"), "a model field is never taken from details");
    check_all(&ev, "qumulo-audit");
}

/// Long Qumulo operation names, spaces and structured-data look-alikes never reach the RFC 5424
/// header; nanosecond times are cut to 6 digits.
#[test]
fn rfc5424_header_cannot_be_shifted() {
    for op in ["cluster_nodes_resolve_indeterminate_modification", "x [evil@1 a=\"b\"]", "fs_read_data"] {
        let ev = Event {
            operation: op.into(),
            node: "node with space\u{0}é".into(),
            status: "ok".into(),
            time: Some(Timestamp { secs: 1_717_679_645, nanos: 187_394_089, frac_digits: 9 }),
            ..Event::default()
        };
        let out = encode(&encoder(&ConfigToml::syslog("h:514").format("cef").dest("app_name", "my-app")), &ev);
        let m = rfc5424::parse(octet_counted_frames(&out).unwrap()[0]).unwrap();
        assert_eq!(m.timestamp, "2024-06-06T13:14:05.187394Z");
        assert_eq!((m.hostname.as_str(), m.app_name.as_str()), ("node_with_space__", "my-app"));
        assert_eq!(m.msgid, if op == "fs_read_data" { op } else { "-" });
        assert!(m.structured_data.is_empty());
        check_all(&ev, "my-app");
    }
    // An APP-NAME that could shift the header never gets past the configuration.
    let e = Config::parse(&ConfigToml::syslog("h:514").dest("app_name", "my app").text()).unwrap_err();
    assert!(e.to_string().contains("app_name"), "{e}");
}

#[test]
fn control_characters_never_reach_cef_or_leef_raw() {
    let ev = Event {
        operation: "op\u{0}|\t".into(),
        path: "/a\u{1b}[31m\u{7f}\\t\t".into(),
        user: User { name: "D\\x\u{0}".into(), ..User::default() },
        status: "ok".into(),
        ..Event::default()
    };
    let cef_text = render(Format::Cef, &ev);
    assert!(cef_text.contains("|op\\x00\\|\\x09|") && cef_text.contains("filePath=/a\\x1b[31m\\x7f\\\\t\\x09"), "{cef_text}");
    let leef_text = render(Format::Leef, &ev);
    assert!(leef_text.contains("|op\\x00\\|\\x09|") && leef_text.contains("filePath=/a\\x1b[31m\\x7f\\\\t\\t"), "{leef_text}");
    assert!(leef_text.contains("usrName=x\\x00"), "{leef_text}");
    check_all(&ev, "qumulo-audit");
}
