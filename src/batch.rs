//! A batch: encoded records (already framed for their destination) in one contiguous buffer,
//! with each record's byte range so a sink can re-send or dead-letter single records.
//!
//! Batches close when they reach `max_events` or `max_bytes`, or at every COMMIT; buffers are
//! reused from batch to batch, so a steady stream allocates nothing here.

use std::ops::Range;

#[derive(Debug, Default)]
pub struct Batch {
    /// The omprog transaction this batch belongs to.
    pub tx: u64,
    /// The last batch of its transaction: delivering it completes the COMMIT.
    pub commits: bool,
    /// Encoded records, back to back.
    pub buf: Vec<u8>,
    /// Each record's range in `buf`.
    pub records: Vec<Range<usize>>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.tx = 0;
        self.commits = false;
        self.buf.clear();
        self.records.clear();
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Starts a record: returns the buffer to append the encoded record to; call
    /// [`Batch::end_record`] with the returned start when done.
    pub fn begin_record(&mut self) -> usize {
        self.buf.len()
    }

    pub fn end_record(&mut self, start: usize) {
        self.records.push(start..self.buf.len());
    }

    /// Drops a record that was begun but not ended (encoding failed).
    pub fn abandon_record(&mut self, start: usize) {
        self.buf.truncate(start);
    }

    pub fn record(&self, i: usize) -> &[u8] {
        &self.buf[self.records[i].clone()]
    }

    /// True once the batch should be sent.
    pub fn is_full(&self, max_events: usize, max_bytes: usize) -> bool {
        self.records.len() >= max_events || self.buf.len() >= max_bytes
    }

    /// The bytes of the records listed in `which`, concatenated: `buf` itself when `which`
    /// lists every record in order, otherwise a copy in `scratch`.
    pub fn body<'a>(&'a self, which: &[usize], scratch: &'a mut Vec<u8>) -> &'a [u8] {
        if which.len() == self.records.len() && which.iter().enumerate().all(|(i, &w)| i == w) {
            return &self.buf;
        }
        scratch.clear();
        for &i in which {
            scratch.extend_from_slice(self.record(i));
        }
        scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_bodies() {
        let mut b = Batch::default();
        for s in ["a\n", "bb\n", "ccc\n"] {
            let st = b.begin_record();
            b.buf.extend_from_slice(s.as_bytes());
            b.end_record(st);
        }
        let st = b.begin_record();
        b.buf.extend_from_slice(b"junk");
        b.abandon_record(st);
        assert_eq!(b.len(), 3);
        assert_eq!(b.record(1), b"bb\n");
        let mut scratch = Vec::new();
        assert_eq!(b.body(&[0, 1, 2], &mut scratch), b"a\nbb\nccc\n");
        assert_eq!(b.body(&[2, 0], &mut scratch), b"ccc\na\n");
        assert!(b.is_full(3, 1000));
        assert!(b.is_full(10, 9));
        assert!(!b.is_full(10, 10));
    }
}
