//! Event ids: rsyslog's `%uuid%` when the envelope carries one, otherwise the 128-bit xxh3 hash
//! of the cluster name, a NUL byte and the line (`docs/event-schema.md`, "Event id"), written as
//! 32 lowercase hex digits. One-shot xxh3 over a reused contiguous buffer is much cheaper than
//! the streaming hasher for lines this short.

use xxhash_rust::xxh3::xxh3_128;

/// Appends the hash id of `line` in `cluster` to `out`, using `buf` as scratch.
#[inline(always)]
pub(super) fn push_hash_id(out: &mut String, buf: &mut Vec<u8>, cluster: &str, line: &[u8]) {
    buf.clear();
    buf.extend_from_slice(cluster.as_bytes());
    buf.push(0);
    buf.extend_from_slice(line);
    write_hex128(out, xxh3_128(buf));
}

fn write_hex128(out: &mut String, v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 32];
    for (i, slot) in buf.iter_mut().enumerate() {
        *slot = HEX[((v >> ((31 - i) * 4)) & 0xf) as usize];
    }
    out.push_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"));
}

/// Hash helper kept public for tests and tools that need the same id derivation.
pub fn line_hash(cluster: &str, line: &[u8]) -> String {
    let mut buf = Vec::with_capacity(cluster.len() + 1 + line.len());
    buf.extend_from_slice(cluster.as_bytes());
    buf.push(0);
    buf.extend_from_slice(line);
    let mut s = String::with_capacity(32);
    write_hex128(&mut s, xxh3_128(&buf));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::input::{ClusterSource, Parser, ParserOptions};

    #[test]
    fn hex128_is_big_endian_lowercase() {
        let mut s = String::new();
        write_hex128(&mut s, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(s, "0123456789abcdeffedcba9876543210");
    }

    #[test]
    fn ids_are_stable_and_per_cluster() {
        let mut p = Parser::new(ParserOptions::default());
        let mut ev = Event::default();
        let line = b"1.1.1.1,\"u\",api,fs_open,ok,1,\"/p\",\"\"";
        p.parse(line, &mut ev).unwrap();
        let id1 = ev.id.clone();
        assert_eq!(id1, line_hash("", line));
        p.parse(line, &mut ev).unwrap();
        assert_eq!(ev.id, id1);
        let mut p2 = Parser::new(ParserOptions { cluster: ClusterSource::Fixed("c2".into()), ..Default::default() });
        p2.parse(line, &mut ev).unwrap();
        assert_ne!(ev.id, id1);
        assert_eq!(ev.id.len(), 32);
    }
}
