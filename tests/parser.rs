//! Parser tests: the Qumulo documentation's own example lines in all three formats, every line
//! shape the parser detects, tricky quoting and content, bad input (each a clear `ParseError`,
//! never a panic), and a property test feeding arbitrary and mutated lines to the parser and
//! every renderer.
//!
//! The property tests run 10,000 cases each by default; set `PROPTEST_CASES` to change that.

use proptest::prelude::*;
use serde_json::json;

use qumulo_audit_broker::event::{Action, Event, ObjectType, SourceFormat};
use qumulo_audit_broker::format::Format;
use qumulo_audit_broker::input::{line_hash, ClusterSource, ParseError, Parsed, Parser, ParserOptions};
use qumulo_audit_broker::time::parse_rfc3339_prefix;

const CSV_EXAMPLE: &str = include_str!("../examples/syslog-csv.log");
const JSON_EXAMPLE: &str = include_str!("../examples/syslog-json.log");
const CLOUDWATCH_EXAMPLE: &str = include_str!("../examples/cloudwatch.txt");
const GOLDEN_INPUT: &str = include_str!("golden/input.log");

fn parser_with(cluster: ClusterSource) -> Parser {
    let mut p = Parser::new(ParserOptions { cluster, ..ParserOptions::default() });
    p.set_now(parse_rfc3339_prefix(b"2024-12-01T00:00:00Z").unwrap().0);
    p
}

fn parser() -> Parser {
    parser_with(ClusterSource::None)
}

fn parse_all(text: &str) -> Vec<Event> {
    let mut p = parser();
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut ev = Event::default();
        match p.parse(line.as_bytes(), &mut ev) {
            Ok(Parsed::Event) => events.push(ev),
            Ok(Parsed::Skip) => {}
            Err(e) => panic!("line {}: {e}: {line}", n + 1),
        }
    }
    events
}

fn parse_one(p: &mut Parser, line: &str) -> Event {
    let mut ev = Event::default();
    match p.parse(line.as_bytes(), &mut ev) {
        Ok(Parsed::Event) => ev,
        other => panic!("{line}: {other:?}"),
    }
}

fn parse_err(line: &[u8]) -> ParseError {
    let mut ev = Event::default();
    match parser().parse(line, &mut ev) {
        Err(e) => e,
        Ok(p) => panic!("{:?}: expected an error, got {p:?}: {ev:?}", String::from_utf8_lossy(&line[..line.len().min(200)])),
    }
}

fn time(ev: &Event) -> String {
    ev.time.map(|t| t.to_rfc3339()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The documentation's examples: the same operations in the three formats.

#[test]
fn documented_examples_agree_across_formats() {
    let csv = parse_all(CSV_EXAMPLE);
    let json = parse_all(JSON_EXAMPLE);
    let cw = parse_all(CLOUDWATCH_EXAMPLE);
    assert_eq!((csv.len(), json.len(), cw.len()), (9, 9, 9), "every example line is one event, table borders are skipped");

    for (i, ((c, j), w)) in csv.iter().zip(&json).zip(&cw).enumerate() {
        assert_eq!(c.source_format, SourceFormat::Csv);
        assert_eq!(j.source_format, SourceFormat::Json);
        assert_eq!(w.source_format, SourceFormat::CloudWatch);
        for ev in [c, j, w] {
            assert_eq!(ev.operation, c.operation, "#{i}");
            assert_eq!(ev.client_ip, "203.0.113.0", "#{i}");
            assert_eq!(ev.user.name, c.user.name, "#{i}");
            assert_eq!(ev.path, c.path, "#{i}");
            assert_eq!(ev.target_path, c.target_path, "#{i}");
            assert_eq!(ev.protocol, c.protocol, "#{i}");
            assert_eq!(ev.action, c.action, "#{i} {}", c.operation);
            assert_eq!(ev.object_type, c.object_type, "#{i} {}", c.operation);
        }
        // Documented difference 1: the JSON sample's rename failed (fs_entry_exists_error)
        // where the CSV and CloudWatch samples report ok.
        assert_eq!((c.status.as_str(), w.status.as_str()), ("ok", "ok"), "#{i}");
        if c.operation == "fs_rename" {
            assert_eq!(j.status, "fs_entry_exists_error");
            assert_eq!(j.outcome(), "failure");
        } else {
            assert_eq!(j.status, "ok", "#{i}");
        }
        // Documented difference 2: the JSON sample's file is file_id 4, the others' 3.
        assert_eq!(c.file_id, w.file_id, "#{i}");
        let expected_json_id = if c.file_id == "3" { "4" } else { "" };
        assert_eq!(j.file_id, expected_json_id, "#{i}");
        // Syslog lines carry the header's time and host; CloudWatch the table's epoch ms, no host.
        assert_eq!(time(c), time(j), "#{i}");
        assert!(time(c).starts_with("2024-06-06T14:5"), "#{i}: {}", time(c));
        assert_eq!((c.node.as_str(), j.node.as_str(), w.node.as_str()), ("my-machine", "my-machine", ""));
        assert!(time(w).starts_with("2024-06-06T1"), "#{i}: {}", time(w));
        // Only syslog JSON carries SIDs and auth ids.
        assert!(c.user.sid.is_empty() && w.user.sid.is_empty() && !j.user.sid.is_empty());
    }

    let ops: Vec<_> = csv.iter().map(|e| (e.operation.as_str(), e.action)).collect();
    assert_eq!(
        ops,
        [
            ("remote_syslog_startup", Action::Admin),
            ("audit_modify_syslog_config", Action::Admin),
            ("rest_login", Action::Login),
            ("fs_read_metadata", Action::ReadMetadata),
            ("fs_write_metadata", Action::WriteMetadata),
            ("fs_write_data", Action::Write),
            ("fs_rename", Action::Rename),
            ("begin_audit_modify_syslog_config", Action::Admin),
            ("remote_syslog_shutdown", Action::Admin),
        ]
    );
    assert_eq!(csv[6].target_path, "/another_file");
    assert_eq!(csv[3].user.name, "AD\\alice");
    // fs_write_data teaches that id 3 is a file, so the rename after it is typed.
    assert_eq!((csv[6].object_type, json[6].object_type, cw[6].object_type), (ObjectType::File, ObjectType::File, ObjectType::File));
    assert_eq!(time(&cw[0]), "2024-06-06T13:12:28.000Z");
    assert_eq!(json[5].details, r#"{"size":261456,"offset":0,"file_size":261456}"#);
}

// ---------------------------------------------------------------------------------------------
// Every line shape.

const CSV_BODY: &str = r#"203.0.113.7,"AD\alice",smb2,fs_read_data,ok,3,"/dir/my file.txt","""#;
const JSON_BODY: &str = r#"{"user_id": {"sid": "S-1-5-21-1", "auth_id": "500", "name": "AD\\alice"}, "user_ip": "203.0.113.7", "protocol": "smb2", "operation": "fs_read_data", "status": "ok", "details": {"path": "/dir/my file.txt", "file_id": "3"}}"#;
const CW_BODY: &str = r#"{"ip_address": "203.0.113.7", "user": "AD\\alice", "protocol": "smb2", "operation": "fs_read_data", "result": "ok", "object_id": "3", "path_1": "/dir/my file.txt", "path_2": ""}"#;

fn assert_canonical(ev: &Event, what: &str) {
    assert_eq!(ev.operation, "fs_read_data", "{what}");
    assert_eq!(ev.status, "ok", "{what}");
    assert_eq!(ev.client_ip, "203.0.113.7", "{what}");
    assert_eq!(ev.user.name, "AD\\alice", "{what}");
    assert_eq!(ev.protocol, "smb2", "{what}");
    assert_eq!(ev.file_id, "3", "{what}");
    assert_eq!(ev.path, "/dir/my file.txt", "{what}");
    assert_eq!(ev.target_path, "", "{what}");
    assert_eq!((ev.action, ev.object_type), (Action::Read, ObjectType::File), "{what}");
    assert_eq!(ev.id.len(), 32, "{what}");
}

#[test]
fn every_line_shape() {
    let cases: Vec<(&str, String, &str, &str, SourceFormat)> = vec![
        ("bare CSV", CSV_BODY.to_string(), "", "", SourceFormat::Csv),
        ("bare JSON", JSON_BODY.to_string(), "", "", SourceFormat::Json),
        ("RSYSLOG_FileFormat", format!("2024-06-06T14:53:22.123456+02:00 q-node-1 qumulo {CSV_BODY}"), "2024-06-06T12:53:22.123456Z", "q-node-1", SourceFormat::Csv),
        ("RSYSLOG_FileFormat JSON", format!("2024-06-06T14:53:22.123456Z q-node-1 qumulo {JSON_BODY}"), "2024-06-06T14:53:22.123456Z", "q-node-1", SourceFormat::Json),
        ("RSYSLOG_TraditionalFileFormat", format!("Jun  6 14:53:22 q-node-1 qumulo {CSV_BODY}"), "2024-06-06T14:53:22Z", "q-node-1", SourceFormat::Csv),
        ("RFC 3164", format!("<134>Jun  6 14:53:22 q-node-1 qumulo[42]: {JSON_BODY}"), "2024-06-06T14:53:22Z", "q-node-1", SourceFormat::Json),
        ("RFC 3164 without tag", format!("<134>Jun 6 14:53:22 q-node-1 {CSV_BODY}"), "2024-06-06T14:53:22Z", "q-node-1", SourceFormat::Csv),
        ("RFC 5424 without SD", format!("<134>1 2024-06-06T14:53:22.5Z q-node-1 qumulo - - - {CSV_BODY}"), "2024-06-06T14:53:22.5Z", "q-node-1", SourceFormat::Csv),
        ("RFC 5424 with SD", format!(r#"<134>1 2024-06-06T14:53:22.5Z q-node-1 qumulo 1234 audit [origin@32473 ip="10.0.0.5" x="a\]b \"q\""][meta@1 seq="7"] {JSON_BODY}"#), "2024-06-06T14:53:22.5Z", "q-node-1", SourceFormat::Json),
        ("RFC 5424 with BOM", format!("<134>1 2024-06-06T14:53:22Z q-node-1 qumulo - - - \u{feff}{CSV_BODY}"), "2024-06-06T14:53:22Z", "q-node-1", SourceFormat::Csv),
        ("RFC 5424 nil time and host", format!("<134>1 - - qumulo - - - {CSV_BODY}"), "", "", SourceFormat::Csv),
        ("CloudWatch object", CW_BODY.to_string(), "", "", SourceFormat::CloudWatch),
        ("CloudWatch export", json!({"timestamp": 1_717_683_202_000_i64, "message": CW_BODY}).to_string(), "2024-06-06T14:13:22.000Z", "", SourceFormat::CloudWatch),
        ("CloudWatch export, timestamp as string", json!({"message": CW_BODY, "timestamp": "1717683202000"}).to_string(), "2024-06-06T14:13:22.000Z", "", SourceFormat::CloudWatch),
        ("CloudWatch table row", format!("| 1717683202000 | {CW_BODY} |"), "2024-06-06T14:13:22.000Z", "", SourceFormat::CloudWatch),
        ("CloudWatch table row, no closing bar", format!("|1717683202000|{CW_BODY}"), "2024-06-06T14:13:22.000Z", "", SourceFormat::CloudWatch),
        ("CRLF", format!("{CSV_BODY}\r\n"), "", "", SourceFormat::Csv),
        ("surrounding blanks", format!(" \t{CSV_BODY} \t"), "", "", SourceFormat::Csv),
    ];
    for (what, line, t, node, fmt) in cases {
        let ev = parse_one(&mut parser(), &line);
        assert_canonical(&ev, what);
        assert_eq!(time(&ev), t, "{what}");
        assert_eq!(ev.node, node, "{what}");
        assert_eq!(ev.source_format, fmt, "{what}");
        if fmt == SourceFormat::Json {
            assert_eq!((ev.user.sid.as_str(), ev.user.auth_id.as_str()), ("S-1-5-21-1", "500"), "{what}");
        }
    }
}

#[test]
fn cloudwatch_table_headers_and_borders_are_skipped() {
    let mut p = parser();
    let mut ev = Event::default();
    for line in [
        "| timestamp | message |",
        "|---------------|------------------------------------------------|",
        "------------------------------------------------------------------",
        "|+-------+-----+|",
        "| |",
        "",
        "   ",
        "\r\n",
        "\t\n",
    ] {
        assert_eq!(p.parse(line.as_bytes(), &mut ev), Ok(Parsed::Skip), "{line:?}");
    }
}

fn envelope(uuid: &str, msg: &str) -> String {
    json!({"v": 1, "cluster": "c1", "fromhost_ip": "10.0.0.5", "hostname": "q-1", "time": "2026-01-02T03:04:05.123456Z", "uuid": uuid, "msg": msg})
        .to_string()
}

#[test]
fn envelope_around_every_body() {
    const UUID: &str = "0123456789abcdef0123456789abcdef";
    let bodies = [
        CSV_BODY.to_string(),
        JSON_BODY.to_string(),
        CW_BODY.to_string(),
        format!("Jun  6 14:53:22 inner-host qumulo {CSV_BODY}"),
        format!("<134>1 2024-06-06T14:53:22Z inner-host qumulo - - - {JSON_BODY}"),
        format!("| 1717683202000 | {CW_BODY} |"),
    ];
    for body in &bodies {
        // A fixed cluster option never overrides the envelope's own cluster.
        let mut p = parser_with(ClusterSource::Fixed("configured".into()));
        let ev = parse_one(&mut p, &envelope(UUID, body));
        assert_canonical(&ev, body);
        assert_eq!(ev.id, UUID, "{body}");
        assert_eq!(ev.cluster, "c1");
        assert_eq!(ev.fromhost_ip, "10.0.0.5");
        assert_eq!(ev.node, "q-1", "the envelope's hostname wins: {body}");
        // The envelope's time wins over an inner syslog header's; a CloudWatch table row keeps
        // the event's own epoch milliseconds.
        let expected = if body.starts_with('|') { "2024-06-06T14:13:22.000Z" } else { "2026-01-02T03:04:05.123456Z" };
        assert_eq!(time(&ev), expected, "{body}");
    }
}

#[test]
fn envelope_ids_follow_the_uuid() {
    let mut p = parser();
    let a = parse_one(&mut p, &envelope("0123456789abcdef0123456789abcdef", CSV_BODY));
    let b = parse_one(&mut p, &envelope("fedcba9876543210fedcba9876543210", CSV_BODY));
    let c = parse_one(&mut p, &envelope("0123456789abcdef0123456789abcdef", CSV_BODY));
    assert_ne!(a.id, b.id, "identical lines with different uuids are two events");
    assert_eq!(a.id, c.id, "the same uuid is the same event (a redelivery)");
    let other_msg = CSV_BODY.replace("fs_read_data", "fs_write_data");
    assert_eq!(parse_one(&mut p, &envelope("0123456789abcdef0123456789abcdef", &other_msg)).id, a.id);

    // Without a uuid the id hashes the cluster and the line.
    let line = json!({"v": 1, "cluster": "c1", "msg": CSV_BODY}).to_string();
    let ev = parse_one(&mut p, &line);
    assert_eq!(ev.id, line_hash("c1", line.as_bytes()));
    let empty_uuid = json!({"v": 1, "cluster": "c1", "uuid": "", "msg": CSV_BODY}).to_string();
    assert_eq!(parse_one(&mut p, &empty_uuid).id, line_hash("c1", empty_uuid.as_bytes()));
}

#[test]
fn cluster_sources() {
    let line = format!("Jun  6 14:53:22 q-varonis-12 qumulo {CSV_BODY}");
    assert_eq!(parse_one(&mut parser(), &line).cluster, "");
    assert_eq!(parse_one(&mut parser_with(ClusterSource::Fixed("prod".into())), &line).cluster, "prod");
    assert_eq!(parse_one(&mut parser_with(ClusterSource::FromHostname), &line).cluster, "q-varonis");
    let a = parse_one(&mut parser_with(ClusterSource::Fixed("a".into())), &line);
    let b = parse_one(&mut parser_with(ClusterSource::Fixed("b".into())), &line);
    assert_ne!(a.id, b.id, "hash ids are per cluster");
}

// ---------------------------------------------------------------------------------------------
// Tricky content.

#[test]
fn tricky_csv_quoting() {
    let mut p = parser();
    let cases = [
        (r#"1.1.1.1,"AD\al,ice",smb2,fs_rename,ok,9,"/a, ""b""\c.txt","/x,y""z""""#, "AD\\al,ice", "/a, \"b\"\\c.txt", "/x,y\"z\""),
        (r#"1.1.1.1,"",smb2,fs_read_data,ok,9,"""","""#, "", "\"", ""),
        (r#"1.1.1.1,"",smb2,fs_read_data,ok,9,"""""","""#, "", "\"\"", ""),
        (r#"1.1.1.1,"u",smb2,fs_read_data,ok,9,"/p|q=r	tab","""#, "u", "/p|q=r\ttab", ""),
        (r#"1.1.1.1,"u",smb2,fs_read_data,ok,9,"/é/日本/🚀 x.txt","""#, "u", "/é/日本/🚀 x.txt", ""),
        (r#"1.1.1.1,"u",smb2,fs_read_data,ok,9,"/.snapshot/1_hourly/d/f","""#, "u", "/.snapshot/1_hourly/d/f", ""),
        (r#"1.1.1.1,"u",smb2,fs_read_data,ok,9,"/trailing space ","""#, "u", "/trailing space ", ""),
        // Qumulo's own documentation ends a line with a dangling quote.
        (r#"1.1.1.1,"system",internal,remote_syslog_shutdown,ok,,"",""#, "system", "", ""),
    ];
    for (line, user, path, target) in cases {
        let ev = parse_one(&mut p, line);
        assert_eq!((ev.user.name.as_str(), ev.path.as_str(), ev.target_path.as_str()), (user, path, target), "{line}");
    }
    // The nine-field variant with the node's name after the IP.
    let ev = parse_one(&mut p, r#"Jun  6 14:53:22 syslog-host qumulo 1.1.1.1,q-node-3,"bob",nfs3,fs_write_data,ok,7,"/f","""#);
    assert_eq!((ev.node.as_str(), ev.user.name.as_str(), ev.path.as_str()), ("q-node-3", "bob", "/f"));
}

#[test]
fn unicode_snapshot_and_error_statuses() {
    let mut p = parser();
    let ev = parse_one(&mut p, r#"{"user_id": {"name": "Ωmega"}, "user_ip": "::1", "protocol": "nfs4", "operation": "fs_read_data", "status": "fs_no_such_entry_error", "details": {"path": "/.snapshot/2_daily/données/\u65e5\u672c.txt", "file_id": 77}}"#);
    assert_eq!(ev.path, "/.snapshot/2_daily/données/日本.txt");
    assert_eq!(ev.user.name, "Ωmega");
    assert_eq!(ev.file_id, "77");
    assert_eq!((ev.status.as_str(), ev.outcome()), ("fs_no_such_entry_error", "failure"));
    for status in ["fs_access_denied_error", "cred_invalid_sid_error", "fs_user_metadata_key_not_found"] {
        let ev = parse_one(&mut p, &format!(r#"1.1.1.1,"u",smb2,fs_read_data,{status},9,"/p","""#));
        assert_eq!((ev.status.as_str(), ev.outcome()), (status, "failure"));
    }
}

#[test]
fn renderers_handle_every_golden_and_example_event() {
    for text in [CSV_EXAMPLE, JSON_EXAMPLE, CLOUDWATCH_EXAMPLE] {
        for ev in parse_all(text) {
            check_rendering(&ev);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input: a clear error, never a panic.

#[test]
fn bad_input_gives_clear_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"1.1.1.1,\"\xff\xfe\",smb2,fs_read_data,ok,9,\"/p\",\"\"".to_vec(), "not valid UTF-8 (at byte 9)"),
        (b"1.1.1.1,\"u\",smb2,fs_read_data,ok,9,\"/p\0\",\"\"".to_vec(), "NUL byte at offset 38"),
        ([b'x'; 1 << 20].to_vec(), "longer than the maximum of 65536"),
        (br#"{"user_id": {"name": "x"}, "status": "ok", "operation": "fs_read_data""#.to_vec(), "invalid JSON"),
        (br#"{"user_id": {"name": "x"}, "status": "ok"} trailing"#.to_vec(), "invalid JSON"),
        (br#"{"status": "ok", "operation": "fs_read_data", "details": [1]}"#.to_vec(), "invalid JSON"),
        (br#"{"a": 1}"#.to_vec(), "not a Qumulo audit record"),
        (br#"{"user_id": {"name": "x"}, "status": "ok"}"#.to_vec(), "no operation"),
        (br#"{"user_id": {"name": "x"}, "operation": "fs_read_data"}"#.to_vec(), "no status"),
        (b"1.1.1.1,\"u\",smb2,fs_read_data,ok,9,\"/p\"".to_vec(), "expected 8 CSV fields (9 with a node name), found 7"),
        (b"1.1.1.1,\"u\",smb2,fs_read_data,ok,9,\"/p\",\"\",x,y".to_vec(), "found 10"),
        (b"a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r".to_vec(), "more than 16 CSV fields"),
        (b"1.1.1.1,\"u\",smb2,fs read,ok,9,\"/p\",\"\"".to_vec(), "not an operation name"),
        (b"1.1.1.1,\"u\",smb2,fs_read_data,,9,\"/p\",\"\"".to_vec(), "'status' is empty"),
        (b"1.1.1.1,\"u\",smb2,fs_read_data,ok,9,\"/p\",\"\"\r1.1.1.1".to_vec(), "more than one record"),
        (b"Jun  6 14:53:22 hostonly".to_vec(), "no message after the hostname"),
        (b"<999>Jun  6 14:53:22 h qumulo x".to_vec(), "PRI is not a number from 0 to 191"),
        (b"<134".to_vec(), "PRI '<n>' is not closed"),
        (b"<134>garbage".to_vec(), "no timestamp after the syslog PRI"),
        (b"<134>1 2024-13-06T14:53:22Z h a - - - x".to_vec(), "RFC 5424 timestamp \"2024-13-06T14:53:22Z\" names a date that does not exist"),
        (b"<134>1 yesterday h a - - - x".to_vec(), "RFC 5424 timestamp \"yesterday\" is not RFC 3339"),
        (b"<134>1 2024-06-06T14:53:22Z h a - - [x@1 a=\"b\"".to_vec(), "structured data is not closed"),
        (b"<134>1 2024-06-06T14:53:22Z h a - -".to_vec(), "RFC 5424 header is incomplete"),
        (b"<134>1 2024-06-06T14:53:22Z h a - - - ".to_vec(), "empty body"),
        (b"| abc | {} |".to_vec(), "is not epoch milliseconds"),
        (b"| -5 | {} |".to_vec(), "out of range"),
        (b"| 1717683202000 | not json |".to_vec(), "message is not a JSON object"),
        (b"| 1717683202000 |".to_vec(), "message is not a JSON object"),
        (b"| 1717683202000 no bar".to_vec(), "has no message column"),
        (br#"{"timestamp": 1, "message": "plain text"}"#.to_vec(), "CloudWatch message is not a JSON object"),
        (br#"{"timestamp": 1, "message": "{\"a\": 1}"}"#.to_vec(), "not a Qumulo audit record"),
        (envelope("u", "").into_bytes(), "envelope message is empty"),
        (envelope("u", "-----").into_bytes(), "envelope message is not an audit record"),
        (json!({"v": 1, "time": "yesterday", "msg": CSV_BODY}).to_string().into_bytes(), "envelope time \"yesterday\" is not RFC 3339"),
        (envelope("u", &envelope("v", &envelope("w", &envelope("x", CSV_BODY)))).into_bytes(), "too many nested envelopes"),
        (b"[1, 2]".to_vec(), "expected 8 CSV fields"),
    ];
    for (line, expected) in cases {
        let e = parse_err(&line);
        assert!(e.reason.contains(expected), "{:?}: got {:?}, expected {expected:?}", String::from_utf8_lossy(&line[..line.len().min(80)]), e.reason);
        assert_eq!(e.to_string(), e.reason);
    }
    // The limit is configurable and counts bytes without the line ending.
    let mut p = Parser::new(ParserOptions { max_line: CSV_BODY.len(), ..ParserOptions::default() });
    let mut ev = Event::default();
    assert_eq!(p.parse(format!("{CSV_BODY}\r\n").as_bytes(), &mut ev), Ok(Parsed::Event));
    assert!(p.parse(format!("{CSV_BODY} ").as_bytes(), &mut ev).is_err());
}

#[test]
fn a_bad_line_does_not_disturb_the_next() {
    let mut p = parser();
    let mut ev = Event::default();
    assert!(p.parse(b"1.1.1.1,\"u\",smb2,fs_read_data,ok,9", &mut ev).is_err());
    assert!(p.parse(br#"{"user_id": {"name": "x"}, "status": "ok""#, &mut ev).is_err());
    let ev = parse_one(&mut p, CSV_BODY);
    assert_canonical(&ev, "after errors");
    assert!(ev.details.is_empty() && ev.cluster.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Property tests: no input makes the parser or a renderer panic.

/// Renders `ev` in every format: JSON formats must be JSON, no format may break the line.
fn check_rendering(ev: &Event) {
    for &format in Format::all() {
        let mut out = Vec::new();
        format.render(ev, &mut out);
        let text = std::str::from_utf8(&out).expect("rendered output is UTF-8");
        assert!(!text.contains('\n') && !text.contains('\r'), "{}: line break in {text:?}", format.name());
        if format.is_json() {
            serde_json::from_str::<serde_json::Value>(text).unwrap_or_else(|e| panic!("{}: {e}: {text}", format.name()));
        }
    }
}

fn check_line(line: &[u8]) {
    let mut p = parser();
    let mut ev = Event::default();
    match p.parse(line, &mut ev) {
        Ok(Parsed::Event) => check_rendering(&ev),
        Ok(Parsed::Skip) => {}
        Err(e) => assert!(!e.reason.is_empty()),
    }
}

/// Valid lines of every shape, the seeds the mutation test starts from.
fn seed_lines() -> Vec<String> {
    let mut seeds: Vec<String> = [CSV_EXAMPLE, JSON_EXAMPLE, CLOUDWATCH_EXAMPLE, GOLDEN_INPUT]
        .iter()
        .flat_map(|t| t.lines())
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    seeds.push(CSV_BODY.into());
    seeds.push(JSON_BODY.into());
    seeds.push(CW_BODY.into());
    seeds.push(json!({"timestamp": 1_717_683_202_000_i64, "message": CW_BODY}).to_string());
    seeds.push(envelope("0123456789abcdef0123456789abcdef", CSV_BODY));
    seeds.push(envelope("0123456789abcdef0123456789abcdef", &format!("<134>1 2024-06-06T14:53:22Z h qumulo - - [a@1 b=\"c\"] {JSON_BODY}")));
    seeds
}

/// Bytes that matter to some line shape.
const INTERESTING: &[u8] = b"\"',{}[]\\|<>:- =\t\r\n0123456789TZ.+\xc3\xa9\xe2\x82\xac\xff\x00";

fn mutate(line: &mut Vec<u8>, op: u8, at: usize, byte: u8) {
    let len = line.len();
    let pos = if len == 0 { 0 } else { at % (len + 1) };
    match op {
        0 => line.insert(pos, byte),
        1 if pos < len => {
            line.remove(pos);
        }
        2 if pos < len => line[pos] = byte,
        3 => line.truncate(pos),
        4 if pos < len => {
            let end = (pos + 1 + (byte as usize % 32)).min(len);
            let copy = line[pos..end].to_vec();
            line.splice(pos..pos, copy);
        }
        _ => line.insert(pos, INTERESTING[byte as usize % INTERESTING.len()]),
    }
}

fn proptest_config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..512)) {
        check_line(&line);
    }

    #[test]
    fn arbitrary_text_never_panics(prefix in prop::sample::select(vec!["", "<134>", "<134>1 ", "{", "| ", "Jun  6 14:53:22 h ", "2024-06-06T14:53:22Z h q "]), text in "\\PC{0,200}") {
        check_line(format!("{prefix}{text}").as_bytes());
    }

    #[test]
    fn mutated_valid_lines_never_panic(
        seed in prop::sample::select(seed_lines()),
        mutations in proptest::collection::vec((0u8..6, any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut line = seed.into_bytes();
        for (op, at, byte) in mutations {
            mutate(&mut line, op, at, byte);
        }
        check_line(&line);
    }
}
