//! CloudWatch shapes: the epoch-millisecond timestamps of the export object and of the
//! console's ASCII table rows (`| 1717679548000 | {...} |`), validated alike in both.

use super::{err, fields, LineMeta, ParseError, Parsed, Parser};
use crate::event::{Event, SourceFormat};
use crate::time::Timestamp;

/// Latest epoch millisecond a CloudWatch timestamp may hold: 9999-12-31T23:59:59.999Z, the last
/// instant RFC 3339 can write. Earlier than the epoch is refused too.
pub const MAX_EPOCH_MILLIS: i64 = 253_402_300_799_999;

/// A CloudWatch epoch-millisecond timestamp, refused outside 1970..=9999.
pub(super) fn cloudwatch_time(ms: i64) -> Result<Timestamp, ParseError> {
    if (0..=MAX_EPOCH_MILLIS).contains(&ms) {
        Ok(Timestamp::from_epoch_millis(ms))
    } else {
        err(format!("CloudWatch timestamp {ms} is out of range (1970 to 9999)"))
    }
}

/// A CloudWatch timestamp's text: epoch milliseconds, an integer as CloudWatch writes it (a
/// fraction, an exponent, a `+` or spaces are refused, in every CloudWatch shape alike; the
/// range is checked by [`cloudwatch_time`]).
pub(super) fn cloudwatch_millis(ts: &str) -> Result<i64, ParseError> {
    let digits = ts.strip_prefix('-').unwrap_or(ts);
    if digits.is_empty() || digits.len() > 40 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return err(format!("CloudWatch timestamp {} is not epoch milliseconds", fields::shown(ts)));
    }
    match ts.parse::<i64>() {
        Ok(ms) => Ok(ms),
        Err(_) => err(format!("CloudWatch timestamp {ts} is out of range (1970 to 9999)")),
    }
}

impl Parser {
    /// A row of the CloudWatch console's ASCII export: `| 1717679548000 | {...} |`.
    pub(super) fn parse_cloudwatch_row<'a>(&mut self, s: &'a str, ev: &mut Event, meta: &mut LineMeta<'a>, depth: u8) -> Result<Parsed, ParseError> {
        let inner = s[1..].trim_start();
        // Header, border or separator row. A border holds nothing but '-', '|', '+' and spaces,
        // so a data row whose timestamp starts with '-' is an error, not silently skipped.
        let border = inner.bytes().all(|b| matches!(b, b'-' | b'|' | b'+' | b' '));
        if border || inner.starts_with("timestamp") {
            return Ok(Parsed::Skip);
        }
        let Some((ts, rest)) = inner.split_once('|') else {
            return err("CloudWatch table row has no message column");
        };
        let row_time = cloudwatch_time(cloudwatch_millis(ts.trim())?)?;
        let msg = rest.trim();
        let msg = msg.strip_suffix('|').unwrap_or(msg).trim_end();
        if !msg.starts_with('{') {
            return err("CloudWatch table row message is not a JSON object");
        }
        let parsed = self.parse_json(msg, ev, meta, depth + 1)?;
        if ev.source_format != SourceFormat::CloudWatch && ev.time.is_some() {
            return Ok(parsed);
        }
        ev.time = Some(row_time);
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::ParserOptions;

    #[test]
    fn cloudwatch_timestamps_out_of_range_are_errors() {
        let mut p = Parser::new(ParserOptions::default());
        let mut ev = Event::default();
        let msg = r#"{\"ip_address\": \"1.2.3.4\", \"user\": \"u\", \"protocol\": \"api\", \"operation\": \"fs_read_data\", \"result\": \"ok\", \"object_id\": \"1\", \"path_1\": \"/x\", \"path_2\": \"\"}"#;
        for ms in ["-1", "-9223372036854775808", "253402300800000", "9223372036854775807"] {
            let export = format!(r#"{{"timestamp": {ms}, "message": "{msg}"}}"#);
            let e = p.parse(export.as_bytes(), &mut ev).unwrap_err();
            assert!(e.reason.contains("out of range"), "{e}");
            let row = format!("| {ms} | {} |", msg.replace("\\\"", "\""));
            let e = p.parse(row.as_bytes(), &mut ev).unwrap_err();
            assert!(e.reason.contains("out of range"), "{e}");
        }
        let export = format!(r#"{{"timestamp": 253402300799999, "message": "{msg}"}}"#);
        p.parse(export.as_bytes(), &mut ev).unwrap();
        assert_eq!(ev.time.unwrap().to_rfc3339(), "9999-12-31T23:59:59.999Z");
    }
}
