//! Issue 9 §1, input: every header shape read or refused, every field typed. Each class has
//! cases here beyond the one example that revealed it; each event is read back through the
//! canonical JSON with serde_json (not through the parser's own structures), and each refusal
//! must name what was wrong.

use serde_json::{json, Value};

use qumulo_audit_broker::event::Event;
use qumulo_audit_broker::format::Format;
use qumulo_audit_broker::input::{Parsed, Parser, ParserOptions};
use qumulo_audit_broker::time::parse_rfc3339_prefix;

const BODY: &str = r#"10.1.2.3,"AD\alice",smb2,fs_read_data,ok,42,"/share/a.txt","""#;

fn parser_at(now: &str) -> Parser {
    let mut p = Parser::new(ParserOptions::default());
    p.set_now(parse_rfc3339_prefix(now.as_bytes()).unwrap().0);
    p
}

/// The canonical JSON of the one event `line` gives.
fn event_at(now: &str, line: &str) -> Value {
    let mut ev = Event::default();
    match parser_at(now).parse(line.as_bytes(), &mut ev) {
        Ok(Parsed::Event) => {}
        other => panic!("{line:?}: {other:?}"),
    }
    let mut out = Vec::new();
    Format::Json.render(&ev, &mut out);
    serde_json::from_slice(&out).unwrap()
}

fn event(line: &str) -> Value {
    event_at("2026-12-02T00:00:00Z", line)
}

fn error(line: &str) -> String {
    let mut ev = Event::default();
    match parser_at("2026-12-02T00:00:00Z").parse(line.as_bytes(), &mut ev) {
        Err(e) => e.reason,
        Ok(p) => panic!("{line:?}: expected an error, got {p:?}: {ev:?}"),
    }
}

#[test]
fn qumulo_blog_line_without_fraction_or_zone() {
    let ev = event(r#"2019-11-08T15:31:40 Blog-1 qumulo ::1,"Colin",api,cluster_restart,ok,,"","""#);
    assert_eq!(ev["time"], "2019-11-08T15:31:40Z");
    assert_eq!(ev["node"], "Blog-1");
    assert_eq!(ev["client_ip"], "::1");
    assert_eq!(ev["user"]["name"], "Colin");
    assert_eq!(ev["operation"], "cluster_restart");
    assert!(ev.get("file_id").is_none());
}

#[test]
fn iso_timestamps_with_and_without_fraction_and_zone() {
    for (stamp, want) in [
        ("2024-06-06T14:52:28", "2024-06-06T14:52:28Z"),
        ("2024-06-06T14:52:28.5", "2024-06-06T14:52:28.5Z"),
        ("2024-06-06T14:52:28.123456789", "2024-06-06T14:52:28.123456789Z"),
        ("2024-06-06T14:52:28Z", "2024-06-06T14:52:28Z"),
        ("2024-06-06T16:52:28+02:00", "2024-06-06T14:52:28Z"),
        ("2024-06-06T16:52:28.25+0200", "2024-06-06T14:52:28.25Z"),
        ("2024-06-06T09:52:28-05:00", "2024-06-06T14:52:28Z"),
        ("2024-06-06 14:52:28", "2024-06-06T14:52:28Z"),
    ] {
        for line in [format!("{stamp} q-1 qumulo {BODY}"), format!("<134>{stamp} q-1 qumulo: {BODY}")] {
            let ev = event(&line);
            assert_eq!(ev["time"], want, "{line}");
            assert_eq!(ev["node"], "q-1", "{line}");
            assert_eq!(ev["client_ip"], "10.1.2.3", "{line}");
        }
    }
    // RFC 5424 reads the same forms.
    assert_eq!(event(&format!("<134>1 2024-06-06T14:52:28 q-1 qumulo - - - {BODY}"))["time"], "2024-06-06T14:52:28Z");
}

#[test]
fn broken_timestamps_are_named_never_read_as_a_body() {
    for (line, want) in [
        (format!("2024-02-30T10:00:00 q-1 qumulo {BODY}"), "date that does not exist"),
        (format!("2023-02-29T10:00:00Z q-1 qumulo {BODY}"), "date that does not exist"),
        (format!("2024-06-06T25:00:00 q-1 qumulo {BODY}"), "time that does not exist"),
        (format!("2024-06-06T14:52 q-1 qumulo {BODY}"), "not an ISO 8601 date and time"),
        (format!("2024-06-06T14:52:28+2 q-1 qumulo {BODY}"), "zone"),
        (format!("2024-06-06T14:52:28Q q-1 qumulo {BODY}"), "not a zone"),
        (format!("Feb 30 10:00:00 q-1 qumulo {BODY}"), "exists in no year"),
        (format!("Apr 31 10:00:00 q-1 qumulo {BODY}"), "exists in no year"),
        (format!("<134>Jun 6 24:00:00 q-1 qumulo {BODY}"), "time that does not exist"),
        (format!("Jun 6 14:5:28 q-1 qumulo {BODY}"), "not an RFC 3164 date"),
    ] {
        let e = error(&line);
        assert!(e.contains("timestamp") && e.contains(want), "{line}: {e}");
    }
}

#[test]
fn rfc3164_dates_of_some_years_only_get_a_year_they_exist_in() {
    let line = format!("Feb 29 10:00:00 q-1 qumulo {BODY}");
    assert_eq!(event_at("2027-01-15T00:00:00Z", &line)["time"], "2024-02-29T10:00:00Z");
    assert_eq!(event_at("2028-03-01T00:00:00Z", &line)["time"], "2028-02-29T10:00:00Z");
    assert_eq!(event_at("2028-02-15T00:00:00Z", &line)["time"], "2024-02-29T10:00:00Z");
    // December read in January is last year's; a date a day ahead (clock skew) is this year's.
    assert_eq!(event_at("2027-01-01T00:10:00Z", &format!("Dec 31 23:59:59 q-1 qumulo {BODY}"))["time"], "2026-12-31T23:59:59Z");
    assert_eq!(event_at("2027-01-01T00:10:00Z", &format!("Jan 1 23:59:59 q-1 qumulo {BODY}"))["time"], "2027-01-01T23:59:59Z");
}

#[test]
fn byte_order_marks_at_the_start_of_a_line_or_a_body() {
    for line in [
        format!("\u{feff}{BODY}"),
        format!("\u{feff}Jun 6 14:52:28 q-1 qumulo {BODY}"),
        format!("Jun 6 14:52:28 q-1 qumulo \u{feff}{BODY}"),
        format!("<134>Jun 6 14:52:28 qumulo: \u{feff}{BODY}"),
        format!("<134>1 2024-06-06T14:52:28Z q-1 qumulo - - - \u{feff}{BODY}"),
        json!({"v": 1, "cluster": "c", "msg": format!("\u{feff}{BODY}")}).to_string(),
        json!({"v": 1, "cluster": "c", "msg": format!(" \u{feff}{BODY}")}).to_string(),
    ] {
        let ev = event(&line);
        assert_eq!(ev["client_ip"], "10.1.2.3", "{line:?}");
        assert_eq!(ev["operation"], "fs_read_data", "{line:?}");
    }
}

#[test]
fn a_tag_without_a_hostname_is_not_a_node() {
    for tag in ["qumulo:", "qumulo[4242]:", "qumulo-audit:"] {
        for line in [format!("<134>Jun 6 14:52:28 {tag} {BODY}"), format!("Jun  6 14:52:28 {tag} {BODY}"), format!("2024-06-06T14:52:28Z {tag} {BODY}")] {
            let ev = event(&line);
            assert!(ev.get("node").is_none(), "{line}: node {:?}", ev["node"]);
            assert_eq!(ev["client_ip"], "10.1.2.3", "{line}");
        }
    }
    // With a hostname the tag still goes, and the hostname is the node.
    assert_eq!(event(&format!("<134>Jun 6 14:52:28 q-7 qumulo: {BODY}"))["node"], "q-7");
    // An IPv6 hostname ends with no colon-tag: it stays the node.
    assert_eq!(event(&format!("Jun 6 14:52:28 fe80::1 qumulo {BODY}"))["node"], "fe80::1");
}

#[test]
fn client_ip_is_an_address_kept_exactly_or_absent() {
    for ip in ["::ffff:192.0.2.1", "fe80::1%eth0", "2001:DB8::1", "0.0.0.0", "::1"] {
        let ev = event(&format!(r#"{ip},"u",nfs3,fs_read_data,ok,1,"/p","""#));
        assert_eq!(ev["client_ip"], ip, "kept exactly");
        let ev = event(&json!({"user_id": {"name": "u"}, "user_ip": ip, "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {}}).to_string());
        assert_eq!(ev["client_ip"], ip);
    }
    let ev = event(r#","u",nfs3,fs_read_data,ok,1,"/p","""#);
    assert!(ev.get("client_ip").is_none(), "an empty field is absent");
    for bad in ["10.0.0.256", "localhost", "1.2.3.4:445", "[::1]", "fe80::1%", "1.2.3.4%eth0", "\"1.2.3.4\""] {
        if !bad.starts_with('"') {
            // (In CSV, `"1.2.3.4"` is only a quoted 1.2.3.4.)
            let csv = format!(r#"{bad},"u",nfs3,fs_read_data,ok,1,"/p","""#);
            assert!(error(&csv).contains("'client_ip'"), "{csv}: {}", error(&csv));
        }
        let js = json!({"user_id": {"name": "u"}, "user_ip": bad, "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {}}).to_string();
        assert!(error(&js).contains("'client_ip'"), "{js}");
        let cw = json!({"ip_address": bad, "user": "u", "protocol": "nfs3", "operation": "fs_read_data", "result": "ok", "object_id": "1", "path_1": "/p", "path_2": ""}).to_string();
        assert!(error(&cw).contains("'client_ip'"), "{cw}");
    }
    // The envelope's sender address is typed the same way.
    let env = json!({"v": 1, "fromhost_ip": "not-an-ip", "msg": BODY}).to_string();
    assert!(error(&env).contains("'fromhost_ip'"));
}

#[test]
fn file_ids_keep_every_digit_whatever_the_json_type() {
    let big = "123456789012345678901234567890";
    for details in [format!(r#"{{"file_id": {big}}}"#), format!(r#"{{"file_id": "{big}"}}"#)] {
        let line = format!(r#"{{"user_id": {{"name": "u"}}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {details}}}"#);
        assert_eq!(event(&line)["file_id"], big, "{line}");
    }
    let cw = format!(r#"{{"ip_address": "1.2.3.4", "user": "u", "protocol": "nfs3", "operation": "fs_read_data", "result": "ok", "object_id": {big}, "path_1": "/p", "path_2": ""}}"#);
    assert_eq!(event(&cw)["file_id"], big);
    assert_eq!(event(&format!(r#"1.2.3.4,"u",nfs3,fs_read_data,ok,{big},"/p","""#))["file_id"], big);
    for bad in ["1.5", "-3", "1e3", "\"12a\"", "true", "[1]"] {
        let line = format!(r#"{{"user_id": {{"name": "u"}}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "x", "status": "ok", "details": {{"file_id": {bad}}}}}"#);
        assert!(error(&line).contains("'file_id'"), "{line}: {}", error(&line));
    }
    assert!(error(r#"1.2.3.4,"u",nfs3,fs_read_data,ok,0x1F,"/p","""#).contains("'file_id'"));
}

#[test]
fn protocol_operation_and_status_are_qumulo_tokens() {
    for proto in ["api", "ftp", "internal", "nfs3", "nfs4", "nfsv3", "nfsv4.1", "s3", "smb", "smb2", "smb3", "a-new-one_9"] {
        assert_eq!(event(&format!(r#"1.2.3.4,"u",{proto},fs_read_data,ok,1,"/p","""#))["protocol"], proto);
    }
    for (field, bad) in [("protocol", "smb 2"), ("protocol", "smb2]"), ("operation", "fs_read_data\u{1}"), ("status", "ok\""), ("status", "[ok]"), ("operation", "a b")] {
        let mut rec = json!({"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {}});
        rec[field] = json!(bad);
        let e = error(&rec.to_string());
        assert!(e.contains(&format!("'{field}'")), "{rec}: {e}");
    }
    let e = error(r#"1.2.3.4,"u","smb 2",fs_read_data,ok,1,"/p","""#);
    assert!(e.contains("'protocol'"), "{e}");
}

#[test]
fn cloudwatch_timestamps_are_validated_in_every_shape() {
    let msg = r#"{"ip_address": "1.2.3.4", "user": "u", "protocol": "api", "operation": "fs_read_data", "result": "ok", "object_id": "1", "path_1": "/x", "path_2": ""}"#;
    for ts in ["\"abc\"", "1.5", "1e12", "\"\"", "null", "true", "\"+5\"", "\" 5\"", "[5]"] {
        let export = format!(r#"{{"timestamp": {ts}, "message": {}}}"#, serde_json::to_string(msg).unwrap());
        let e = error(&export);
        assert!(e.contains("timestamp"), "{export}: {e}");
    }
    for ts in ["abc", "1.5", "1e12", "+5", "0x10", "5 5"] {
        let row = format!("| {ts} | {msg} |");
        assert!(error(&row).contains("timestamp"), "{row}");
    }
    let no_ts = format!(r#"{{"message": {}}}"#, serde_json::to_string(msg).unwrap());
    assert!(error(&no_ts).contains("no timestamp"));
    // A string holding the digits is what some exporters write: read as the number.
    let export = format!(r#"{{"timestamp": "1717679548000", "message": {}}}"#, serde_json::to_string(msg).unwrap());
    assert_eq!(event(&export)["time"], "2024-06-06T13:12:28.000Z");
}

#[test]
fn csv_layouts_are_told_apart_by_content() {
    let cases = [
        (r#"10.1.1.1,"bob",nfs3,fs_read_data,ok,7,"/f","/g","#, "", "bob", "7", "/f", "/g"),
        (r#"10.1.1.1,"bob",nfs3,fs_read_data,ok,,"","","#, "", "bob", "", "", ""),
        (r#"10.1.1.1,node-2,"bob",nfs3,fs_read_data,ok,7,"/f","""#, "node-2", "bob", "7", "/f", ""),
        (r#"10.1.1.1,node-2,"bob",nfs3,fs_read_data,ok,7,"/f","/g","#, "node-2", "bob", "7", "/f", "/g"),
        (r#",node-2,"",nfs3,fs_read_data,ok,,"","""#, "node-2", "", "", "", ""),
    ];
    for (line, node, user, file_id, path, target) in cases {
        let ev = event(line);
        let get = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        assert_eq!((get("node"), ev["user"]["name"].as_str().unwrap_or("").to_string(), get("file_id"), get("path"), get("target_path")), (node.into(), user.into(), file_id.into(), path.into(), target.into()), "{line}");
        assert_eq!(ev["operation"], "fs_read_data", "{line}");
    }
    for line in [r#"10.1.1.1,"bob",nfs3,fs_read_data,ok,7,"/f","",,"#, r#"10.1.1.1,"a node",bob,nfs3,fs_read_data,ok,7,"/f","/g""#] {
        let e = error(line);
        assert!(e.contains("CSV field '"), "{line}: {e}");
    }
}

#[test]
fn envelope_rules_hold_as_written() {
    let env = |msg: &str| json!({"v": 1, "cluster": "c", "uuid": "0123456789ABCDEF0123456789ABCDEF", "msg": msg}).to_string();
    assert!(error(&env(&format!("{BODY}\n"))).contains("line break"));
    assert!(error(&env(&format!("{BODY}\r"))).contains("line break"));
    assert!(error(&env(&format!("Jun 6 14:52:28 q-1 qumulo 1.1.1.1,\"u\",api,x,ok,,\"\",\"\"\n{BODY}"))).contains("line break"));
    for uuid in ["a\"b", "x y", &"f".repeat(65), "<script>"] {
        let line = json!({"v": 1, "cluster": "c", "uuid": uuid, "msg": BODY}).to_string();
        assert!(error(&line).contains("envelope uuid"), "{line}");
    }
    // Envelope keys in an audit record that is not an envelope file nothing anywhere.
    let rec = json!({"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {}, "cluster": "elsewhere", "hostname": "forged"});
    let ev = event(&rec.to_string());
    assert!(ev.get("cluster").is_none() && ev.get("node").is_none(), "{ev}");
    assert_eq!(ev["details"]["cluster"], "elsewhere");
}

#[test]
fn json_objects_never_repeat_a_key() {
    for line in [
        r#"{"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "status": "fs_access_denied_error", "details": {}}"#,
        r#"{"user_id": {"name": "u", "name": "v"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {}}"#,
        r#"{"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {"path": "/a", "path": "/b"}}"#,
        r#"{"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {"size": 1, "size": 2}}"#,
        r#"{"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "size": 1, "details": {"size": 2}}"#,
        r#"{"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {"after": {"mode": "0644", "mode": "0777"}}}"#,
        r#"{"user_id": {"name": "u"}, "user_ip": "1.2.3.4", "protocol": "nfs3", "operation": "fs_read_data", "status": "ok", "details": {"after": [{"a": 1, "a": 1}]}}"#,
        r#"{"ip_address": "1.2.3.4", "user": "u", "protocol": "api", "operation": "x", "result": "ok", "result": "ok", "object_id": "1", "path_1": "/x", "path_2": ""}"#,
    ] {
        assert!(error(line).contains("duplicate key"), "{line}: {}", error(line));
    }
}
