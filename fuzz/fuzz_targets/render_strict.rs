//! Fuzz target: the renderers against the strict readers of `tests/strict/` (shared with
//! `tests/output_strict.rs`, written from the specs, no code shared with the renderers).
//!
//! An input starting with byte 0 is an event built directly: the rest is split at 0xFF bytes
//! (never valid UTF-8) into the string fields, decoded lossily, so every field, `details`
//! included, can hold anything, control characters too. Any other input is one line for
//! `Parser::parse`. Each event is rendered in every format, framed by the syslog encoder (RFC
//! 5424 octet-counted, RFC 3164 newline-framed) and by the Splunk HEC and Elasticsearch bulk
//! encoders, and every result must be read by the strict reader: JSON without a duplicate key,
//! CEF and LEEF without a raw control character or an unknown escape, RFC 5424 header fields
//! within their lengths and PRINTUSASCII, no structured data, the record unchanged as MSG.
#![no_main]

#[path = "../../tests/strict/mod.rs"]
mod strict;

use libfuzzer_sys::fuzz_target;
use qumulo_audit_broker::config::Config;
use qumulo_audit_broker::event::{Action, Event, ObjectType};
use qumulo_audit_broker::format::Format;
use qumulo_audit_broker::input::{Parsed, Parser, ParserOptions};
use qumulo_audit_broker::sink::Encoder;
use qumulo_audit_broker::time::Timestamp;

fn event_from_fields(data: &[u8]) -> Event {
    let mut fields = data.split(|&b| b == 0xff).map(|f| String::from_utf8_lossy(f).into_owned());
    let mut ev = Event::default();
    let (selector, secs) = (data.first().copied().unwrap_or(0), data.len() as i64 * 86_399);
    for slot in [
        &mut ev.id,
        &mut ev.cluster,
        &mut ev.node,
        &mut ev.fromhost_ip,
        &mut ev.client_ip,
        &mut ev.user.name,
        &mut ev.user.sid,
        &mut ev.user.auth_id,
        &mut ev.protocol,
        &mut ev.operation,
        &mut ev.status,
        &mut ev.file_id,
        &mut ev.path,
        &mut ev.target_path,
        &mut ev.details,
    ] {
        *slot = fields.next().unwrap_or_default();
    }
    ev.action = Action::ALL[selector as usize % Action::ALL.len()];
    ev.object_type = [ObjectType::File, ObjectType::Directory, ObjectType::Symlink, ObjectType::Unknown][selector as usize % 4];
    ev.time = (selector & 1 == 0).then_some(Timestamp { secs, nanos: (secs % 1_000_000_000) as u32, frac_digits: selector % 10 });
    ev
}

fn encoder(extra: &str) -> Encoder {
    Encoder::from_config(&Config::parse(&format!("[destination]\n{extra}\n")).expect("config"))
}

fn encode(enc: &Encoder, ev: &Event) -> Vec<u8> {
    let (mut rendered, mut out) = (Vec::new(), Vec::new());
    enc.encode(ev, &mut rendered, &mut out);
    out
}

fn check(ev: &Event) {
    for &format in Format::all() {
        let name = format.name();
        let mut out = Vec::new();
        format.render(ev, &mut out);
        let record = String::from_utf8(out).expect("records are UTF-8");
        assert!(!record.contains('\n') && !record.contains('\r'), "{name}: line break");
        match format {
            Format::Cef => drop(strict::cef::parse(&record).unwrap_or_else(|e| panic!("cef: {e}: {record:?}"))),
            Format::Leef => drop(strict::leef::parse(&record).unwrap_or_else(|e| panic!("leef: {e}: {record:?}"))),
            _ => drop(strict::json::parse(&record).unwrap_or_else(|e| panic!("{name}: {e}: {record}"))),
        }
        let base = format!("type = \"syslog\"\naddress = \"127.0.0.1:514\"\nformat = \"{name}\"");
        let stream = encode(&encoder(&base), ev);
        let frames = strict::octet_counted_frames(&stream).expect("octet counting");
        assert_eq!(frames.len(), 1);
        let m = strict::rfc5424::parse(frames[0]).unwrap_or_else(|e| panic!("rfc5424: {e}"));
        assert!(m.structured_data.is_empty() && m.msg == Some(record.as_bytes()), "rfc5424 SD or MSG");
        let line = encode(&encoder(&format!("{base}\nheader = \"rfc3164\"\nframing = \"newline\"")), ev);
        let line = line.strip_suffix(b"\n").expect("LF framing");
        let m = strict::rfc3164::parse(line).unwrap_or_else(|e| panic!("rfc3164: {e}"));
        assert_eq!(m.msg, record.as_bytes());
        let hec = encode(&encoder(&format!("type = \"http\"\nurl = \"http://127.0.0.1:1\"\npreset = \"splunk-hec\"\nformat = \"{name}\"")), ev);
        strict::json::parse(std::str::from_utf8(&hec).unwrap().trim_end_matches('\n')).expect("HEC event is strict JSON");
        if format.is_json() {
            let bulk = encode(&encoder(&format!("type = \"http\"\nurl = \"http://127.0.0.1:1\"\npreset = \"elasticsearch-bulk\"\nformat = \"{name}\"")), ev);
            for l in std::str::from_utf8(&bulk).unwrap().trim_end_matches('\n').split('\n') {
                strict::json::parse(l).expect("bulk lines are strict JSON");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Some((&0, rest)) = data.split_first() {
        check(&event_from_fields(rest));
        return;
    }
    let mut parser = Parser::new(ParserOptions::default());
    parser.set_now(Timestamp::from_epoch_millis(1_767_225_600_000)); // 2026-01-01
    let mut ev = Event::default();
    if let Ok(Parsed::Event) = parser.parse(data, &mut ev) {
        check(&ev);
    }
});
