//! The bytes of one broker record (`amqp` message, `kafka` record) in a [`crate::batch::Batch`]:
//! what the publish needs besides the body, in front of the body. Shared by both broker sinks.
//!
//! The parse stage knows the event; the delivery stage sees only bytes. So the encoder writes
//! a small header (each field a 4-byte big-endian length and its bytes, then the timestamp as
//! 8 bytes) before the rendered record:
//!
//! ```text
//! len cluster | len routing key | len message id | i64 timestamp | body (to the end)
//! ```
//!
//! [`split`] undoes it; the dead-letter file gets the body alone (see
//! [`crate::sink::Sink::dead_letter_view`]). A record that does not decode (a bug, never input)
//! is dead-lettered as it is, never published half-understood.

use super::route::RoutingKey;
use crate::event::Event;
use crate::format::Format;

/// Appends one record for `ev`: the header (cluster, `key` rendered from the template, the event
/// id, the event's time in seconds, else now), then the event rendered in `format`.
pub fn encode(ev: &Event, key: &RoutingKey, format: Format, rendered: &mut Vec<u8>, out: &mut Vec<u8>) {
    header_of(ev, key, out);
    rendered.clear();
    format.render(ev, out);
}

/// Pass-through (the receiver tier, `pass_through = true` of both broker sinks): the header of
/// the parsed event (its id fixed here, so every copy downstream carries it), then `line`, the
/// envelope as received. A consumer parses the body again and derives the same id from it.
pub fn encode_line(ev: &Event, key: &RoutingKey, line: &[u8], out: &mut Vec<u8>) {
    header_of(ev, key, out);
    out.extend_from_slice(line);
}

fn header_of(ev: &Event, key: &RoutingKey, out: &mut Vec<u8>) {
    let mut k = String::new();
    key.render(ev, &mut k);
    let ts = ev.time.unwrap_or_else(crate::time::Timestamp::now).secs.max(0) as u64;
    put_header(out, &ev.cluster, &k, &ev.id, ts);
}

/// The body of an encoded record and its cluster, for the dead-letter file.
pub fn dead_letter_view(rec: &[u8]) -> (&str, &[u8]) {
    match split(rec) {
        Some(r) => (r.cluster, r.body),
        None => ("", rec),
    }
}

/// The parts of an encoded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub cluster: &'a str,
    pub routing_key: &'a str,
    pub message_id: &'a str,
    /// Seconds since the epoch: the event's time, else when it was encoded.
    pub timestamp: u64,
    pub body: &'a [u8],
}

fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Writes the header; the caller appends the body.
pub fn put_header(out: &mut Vec<u8>, cluster: &str, routing_key: &str, message_id: &str, timestamp: u64) {
    put(out, cluster);
    put(out, routing_key);
    put(out, message_id);
    out.extend_from_slice(&timestamp.to_be_bytes());
}

fn take<'a>(rec: &mut &'a [u8]) -> Option<&'a str> {
    if rec.len() < 4 {
        return None;
    }
    let (len, rest) = rec.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if rest.len() < len {
        return None;
    }
    let (s, rest) = rest.split_at(len);
    *rec = rest;
    std::str::from_utf8(s).ok()
}

/// The parts of `rec`, or `None` when it was not written by [`put_header`].
pub fn split(mut rec: &[u8]) -> Option<Record<'_>> {
    let cluster = take(&mut rec)?;
    let routing_key = take(&mut rec)?;
    let message_id = take(&mut rec)?;
    if rec.len() < 8 {
        return None;
    }
    let (ts, body) = rec.split_at(8);
    let timestamp = u64::from_be_bytes(ts.try_into().ok()?);
    Some(Record { cluster, routing_key, message_id, timestamp, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let mut out = Vec::new();
        put_header(&mut out, "c1", "qumulo.c1.smb2", "id-1", 1_700_000_000);
        out.extend_from_slice(b"{\"a\":1}");
        let r = split(&out).unwrap();
        assert_eq!(r, Record { cluster: "c1", routing_key: "qumulo.c1.smb2", message_id: "id-1", timestamp: 1_700_000_000, body: b"{\"a\":1}" });
        assert_eq!(split(b"").map(|r| r.body.len()), None);
        assert_eq!(split(&out[..6]).map(|r| r.body.len()), None);
        assert_eq!(split(&[0xff, 0xff, 0xff, 0xff, 1]).map(|r| r.body.len()), None);
    }
}
