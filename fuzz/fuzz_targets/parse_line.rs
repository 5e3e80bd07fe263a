//! Fuzz target: any bytes, as one input line, through `Parser::parse` and, when they make an
//! event, through every output format. Nothing may panic; JSON formats must stay valid JSON and
//! no format may emit a line break.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qumulo_audit_broker::event::Event;
use qumulo_audit_broker::format::Format;
use qumulo_audit_broker::input::{Parsed, Parser, ParserOptions};
use qumulo_audit_broker::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    // A fresh parser per input keeps every finding reproducible from its input alone.
    let mut parser = Parser::new(ParserOptions::default());
    parser.set_now(Timestamp::from_epoch_millis(1_767_225_600_000)); // 2026-01-01
    let mut ev = Event::default();
    if let Ok(Parsed::Event) = parser.parse(data, &mut ev) {
        let mut out = Vec::new();
        for &format in Format::all() {
            out.clear();
            format.render(&ev, &mut out);
            assert!(!out.contains(&b'\n') && !out.contains(&b'\r'), "{}: line break", format.name());
            if format.is_json() {
                serde_json::from_slice::<serde_json::Value>(&out).expect("JSON format renders valid JSON");
            }
        }
    }
});
