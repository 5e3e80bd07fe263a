//! Golden-file tests: `tests/golden/input.log` (one case per line, `#` lines are comments) is
//! parsed and rendered in every output format, and each result must equal the checked-in
//! `tests/golden/<format>.out` byte for byte.
//!
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test --test golden_formats`
//! and review the diff by eye against `docs/formats.md` and the format specifications: the
//! goldens are the reviewed reference, not merely whatever the code prints.

use std::fs;
use std::path::{Path, PathBuf};

use qumulo_audit_broker::event::Event;
use qumulo_audit_broker::format::Format;
use qumulo_audit_broker::input::{ClusterSource, Parsed, Parser, ParserOptions};
use qumulo_audit_broker::time::parse_rfc3339_prefix;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Parses the golden input into events, with a fixed "now" so RFC 3164 years are stable.
fn events() -> Vec<Event> {
    let input = fs::read(golden_dir().join("input.log")).expect("tests/golden/input.log");
    let mut parser = Parser::new(ParserOptions { cluster: ClusterSource::FromHostname, ..ParserOptions::default() });
    parser.set_now(parse_rfc3339_prefix(b"2024-12-01T00:00:00Z").unwrap().0);
    let mut out = Vec::new();
    for (n, line) in input.split(|&b| b == b'\n').enumerate() {
        if line.first() == Some(&b'#') {
            continue;
        }
        let mut ev = Event::default();
        match parser.parse(line, &mut ev) {
            Ok(Parsed::Event) => out.push(ev),
            Ok(Parsed::Skip) => {}
            Err(e) => panic!("input.log:{}: {e}", n + 1),
        }
    }
    out
}

fn render_all(format: Format, events: &[Event]) -> String {
    let mut out = Vec::new();
    for ev in events {
        format.render(ev, &mut out);
        out.push(b'\n');
    }
    String::from_utf8(out).expect("rendered output is UTF-8")
}

fn check_golden(format: Format) {
    let evs = events();
    assert_eq!(evs.len(), 20, "the golden input holds 20 events");
    let actual = render_all(format, &evs);
    let path = golden_dir().join(format!("{}.out", format.name()));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::write(&path, &actual).expect("write golden");
        return;
    }
    let expected = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create it)", path.display()));
    if actual != expected {
        for (i, (a, e)) in actual.lines().zip(expected.lines()).enumerate() {
            assert_eq!(a, e, "{} line {} differs (UPDATE_GOLDEN=1 regenerates after review)", path.display(), i + 1);
        }
        assert_eq!(actual.lines().count(), expected.lines().count(), "{}: line count differs", path.display());
        panic!("{}: output differs (trailing bytes)", path.display());
    }
}

#[test]
fn golden_json() {
    check_golden(Format::Json);
}

#[test]
fn golden_ecs() {
    check_golden(Format::Ecs);
}

#[test]
fn golden_ocsf() {
    check_golden(Format::Ocsf);
}

#[test]
fn golden_cef() {
    check_golden(Format::Cef);
}

#[test]
fn golden_leef() {
    check_golden(Format::Leef);
}

/// Structural checks on every rendered record, independent of the golden bytes.
#[test]
fn every_record_is_well_formed() {
    let evs = events();
    for ev in &evs {
        for &format in Format::all() {
            let mut out = Vec::new();
            format.render(ev, &mut out);
            let text = std::str::from_utf8(&out).unwrap();
            assert!(!text.contains('\n') && !text.contains('\r'), "{}: line break in {text}", format.name());
            if format.is_json() {
                let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{}: {e}: {text}", format.name()));
                assert!(v.is_object());
            }
        }
        let mut cef = Vec::new();
        Format::Cef.render(ev, &mut cef);
        let cef = String::from_utf8(cef).unwrap();
        // Exactly 7 unescaped '|' end the header.
        let mut bars = 0;
        let mut escaped = false;
        for c in cef.chars() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '|' if bars < 7 => bars += 1,
                _ => {}
            }
        }
        assert_eq!(bars, 7, "{cef}");
        let mut leef = Vec::new();
        Format::Leef.render(ev, &mut leef);
        let leef = String::from_utf8(leef).unwrap();
        let (_, attrs) = leef.split_once("|x09|").expect("LEEF 2.0 header with x09 delimiter");
        for pair in attrs.split('\t') {
            let (key, _) = pair.split_once('=').unwrap_or_else(|| panic!("not key=value: {pair:?} in {leef}"));
            assert!(!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()), "bad key {key:?}");
        }
    }
}

/// Every example record in `docs/formats.md` must be a record of the goldens, so the
/// documentation cannot drift from what the code writes.
#[test]
fn docs_examples_are_golden_records() {
    let doc = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/formats.md")).expect("docs/formats.md");
    let golden = |f: &str| fs::read_to_string(golden_dir().join(format!("{f}.out"))).unwrap();
    let (cef, leef) = (golden("cef"), golden("leef"));
    let mut checked = 0;
    for line in doc.lines() {
        let text_golden = if line.starts_with("CEF:0|Qumulo|Qumulo Core|") {
            &cef
        } else if line.starts_with("LEEF:2.0|Qumulo|Qumulo Core|") {
            &leef
        } else {
            continue;
        };
        if line.contains("<broker version>") {
            continue; // the layout line, not a record
        }
        assert!(text_golden.lines().any(|g| g == line), "docs/formats.md example is not a golden record:\n{line}");
        checked += 1;
    }
    // ```json blocks: the ECS example, then the OCSF example.
    let blocks: Vec<&str> = doc.split("```json\n").skip(1).map(|b| b.split("\n```").next().unwrap()).collect();
    assert_eq!(blocks.len(), 2, "one ECS and one OCSF example");
    for (block, format) in blocks.iter().zip(["ecs", "ocsf"]) {
        let example: serde_json::Value = serde_json::from_str(block).expect("example is JSON");
        let found = golden(format).lines().any(|g| serde_json::from_str::<serde_json::Value>(g).unwrap() == example);
        assert!(found, "docs/formats.md {format} example is not a golden record");
        checked += 1;
    }
    assert_eq!(checked, 8);
}
