//! Reading newline-terminated lines from a stream with a bounded buffer, for both readers of
//! lines: `convert` (files, where a last line without a newline is still a line) and `omprog`
//! (rsyslog's pipe, where it is not: a line without its newline at EOF was cut by a dying writer,
//! and rsyslog re-sends that message to the next instance, so it must never be journaled,
//! answered or delivered).

use std::io::{self, BufRead};

/// What [`read_bounded_line`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineRead {
    /// The line was longer than `max`: only its first `max + 1` bytes are in the buffer (the
    /// rest was consumed and discarded).
    pub truncated: bool,
    /// The line ended with `\n`; false only for the last line of the stream.
    pub terminated: bool,
}

/// Reads one line into `buf` (without the newline), never holding more than `max + 1` bytes of
/// it: the rest of an over-long line is consumed and discarded. Returns `None` at EOF.
pub fn read_bounded_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<LineRead>> {
    buf.clear();
    let mut truncated = false;
    let mut any = false;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(any.then_some(LineRead { truncated, terminated: false }));
        }
        any = true;
        let (chunk, used, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = (max + 1).saturating_sub(buf.len());
        if chunk.len() > room {
            truncated = true;
            buf.extend_from_slice(&chunk[..room]);
        } else {
            buf.extend_from_slice(chunk);
        }
        r.consume(used);
        if done {
            return Ok(Some(LineRead { truncated, terminated: true }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn bounded_lines() {
        let data = b"short\nthis one is long\n\nlast-no-newline";
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        let line = |truncated, terminated| Some(LineRead { truncated, terminated });
        assert_eq!(read_bounded_line(&mut r, &mut buf, 8).unwrap(), line(false, true));
        assert_eq!(buf, b"short");
        assert_eq!(read_bounded_line(&mut r, &mut buf, 8).unwrap(), line(true, true));
        assert_eq!(buf.len(), 9);
        assert_eq!(read_bounded_line(&mut r, &mut buf, 8).unwrap(), line(false, true));
        assert_eq!(buf, b"");
        assert_eq!(read_bounded_line(&mut r, &mut buf, 32).unwrap(), line(false, false));
        assert_eq!(buf, b"last-no-newline");
        assert_eq!(read_bounded_line(&mut r, &mut buf, 8).unwrap(), None);
    }

    #[test]
    fn an_over_long_cut_line_is_both() {
        let mut r = BufReader::with_capacity(4, &b"0123456789abcdef"[..]);
        let mut buf = Vec::new();
        assert_eq!(read_bounded_line(&mut r, &mut buf, 8).unwrap(), Some(LineRead { truncated: true, terminated: false }));
        assert_eq!(read_bounded_line(&mut r, &mut buf, 8).unwrap(), None);
    }
}
