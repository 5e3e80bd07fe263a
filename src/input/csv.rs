//! Qumulo's syslog CSV body:
//! `user_ip,"user_id",protocol,operation,status,file_id,"path","target"`, and the older variant
//! with the node's name after the IP (nine fields).
//!
//! Which layout a record has is told by content, never by the field count alone (see
//! [`CsvParser::layout`]): a trailing comma or an empty field never shifts a field into its
//! neighbour's place.
//!
//! Quoting is real CSV (RFC 4180: `""` inside quotes; commas, backslashes and any unicode inside
//! quoted fields). Plain lines are split in place (fields are slices of the line); anything else
//! goes through one reused `csv_core::Reader` that unescapes into a reused buffer.

use csv_core::{ReadRecordResult, Reader};

use super::fields::{is_file_id, is_ip, is_node, is_token, shown};
use super::scan::first_of;
use crate::event::{Event, SourceFormat};

const MAX_FIELDS: usize = 16;

/// Reusable CSV state: one reader and its output buffers, kept across lines.
pub struct CsvParser {
    reader: Reader,
    out: Vec<u8>,
    /// Field `i` is `starts[i]..ends[i]` of the text the last split produced (the body itself
    /// on the fast path, the unescaped `out` buffer on csv_core's).
    starts: [usize; MAX_FIELDS],
    ends: [usize; MAX_FIELDS],
}

impl Default for CsvParser {
    fn default() -> Self {
        CsvParser { reader: Reader::new(), out: Vec::with_capacity(1024), starts: [0; MAX_FIELDS], ends: [0; MAX_FIELDS] }
    }
}

impl CsvParser {
    /// The fast path for the lines Qumulo writes: every field either holds no `"` at all, or is
    /// wholly quoted (`"..."`) without a doubled `""` inside and followed by `,` or the end; at
    /// most [`MAX_FIELDS`] fields; no line break. Such fields are plain slices of `body`, so
    /// nothing is copied or unescaped, and they are exactly the fields csv_core produces (a
    /// test checks both on random input). Anything else returns `None` and goes through
    /// csv_core, which also words the errors.
    fn split_plain(&mut self, body: &[u8]) -> Option<usize> {
        if body.is_empty() {
            return None;
        }
        let (mut i, mut n) = (0usize, 0usize);
        loop {
            if n == MAX_FIELDS {
                return None;
            }
            if body.get(i) == Some(&b'"') {
                let q = first_of(body, i + 1, [b'"', b'\n', b'\r'])?;
                if body[q] != b'"' {
                    return None; // a line break: csv_core words the error
                }
                self.starts[n] = i + 1;
                self.ends[n] = q;
                n += 1;
                match body.get(q + 1) {
                    None => return Some(n),
                    Some(b',') => i = q + 2,
                    Some(_) => return None, // a doubled quote, or text after the closing quote
                }
            } else {
                self.starts[n] = i;
                match first_of(body, i, [b',', b'"', b'\n', b'\r']) {
                    Some(j) if body[j] != b',' => return None,
                    Some(j) => {
                        self.ends[n] = j;
                        n += 1;
                        i = j + 1;
                    }
                    None => {
                        self.ends[n] = body.len();
                        return Some(n + 1);
                    }
                }
            }
        }
    }

    /// The general path: csv_core's RFC 4180 reader, unescaping into `out`.
    fn split_csv_core(&mut self, body: &[u8]) -> Result<usize, String> {
        self.reader.reset();
        // Unescaped output is never longer than the input.
        if self.out.len() < body.len() + 1 {
            self.out.resize(body.len() + 1, 0);
        }
        // csv_core writes `ends` as positions in one contiguous row buffer, across calls.
        let mut input = body;
        let mut out_pos = 0;
        let mut nfields = 0;
        loop {
            let (res, nin, nout, nend) =
                self.reader.read_record(input, &mut self.out[out_pos..], &mut self.ends[nfields..]);
            input = &input[nin..];
            out_pos += nout;
            nfields += nend;
            let done = match res {
                // An empty input tells csv_core the data ended, which terminates the last field.
                ReadRecordResult::InputEmpty => continue,
                ReadRecordResult::Record => {
                    if !input.iter().all(|&b| b == b'\n' || b == b'\r') {
                        return Err("CSV body holds more than one record (embedded newline)".into());
                    }
                    nfields
                }
                ReadRecordResult::End => nfields,
                ReadRecordResult::OutputFull => return Err("CSV output buffer exhausted".into()),
                ReadRecordResult::OutputEndsFull => return Err(format!("more than {MAX_FIELDS} CSV fields")),
            };
            for i in 0..done {
                self.starts[i] = if i == 0 { 0 } else { self.ends[i - 1] };
            }
            return Ok(done);
        }
    }

    /// Field `i` of the record in `text` (the body, or the validated output buffer).
    fn field<'t>(&self, text: &'t str, i: usize) -> &'t str {
        text.get(self.starts[i]..self.ends[i]).unwrap_or("")
    }

    /// Parses a CSV body into `ev`.
    pub fn parse(&mut self, body: &str, ev: &mut Event) -> Result<(), String> {
        if let Some(n) = self.split_plain(body.as_bytes()) {
            // Fields are slices of `body` cut at ASCII bytes: valid UTF-8 already.
            return self.fill(body, n, ev);
        }
        let n = self.split_csv_core(body.as_bytes())?;
        // Valid UTF-8 in, only ASCII quotes removed: the unescaped fields are valid UTF-8 and
        // field boundaries are character boundaries. Checked once for the whole record.
        let used = if n == 0 { 0 } else { self.ends[n - 1] };
        let out = std::mem::take(&mut self.out);
        let result = match std::str::from_utf8(&out[..used]) {
            Ok(text) => self.fill(text, n, ev),
            Err(_) => Err("CSV record is not valid UTF-8 after unquoting".to_string()),
        };
        self.out = out;
        result
    }

    /// Whether the fields of `text` read as a record with the node column at 1 (`off` = 1) or
    /// without (`off` = 0): every typed field has its type ([`super::fields`]); the error names
    /// the first field that does not.
    fn check_layout(&self, text: &str, off: usize) -> Result<(), String> {
        let f = |i| self.field(text, i);
        let bad = |name: &str, what: &str, v: &str| Err(format!("CSV field '{name}' is not {what}: {}", shown(v)));
        if !f(0).is_empty() && !is_ip(f(0)) {
            return bad("client_ip", "an IP address", f(0));
        }
        if off == 1 && !is_node(f(1)) {
            return bad("node", "a host name", f(1));
        }
        if !f(2 + off).is_empty() && !is_token(f(2 + off)) {
            return bad("protocol", "a protocol name", f(2 + off));
        }
        if !is_token(f(3 + off)) {
            return bad("operation", "an operation name", f(3 + off));
        }
        if f(4 + off).is_empty() {
            return Err("CSV field 'status' is empty".into());
        }
        if !is_token(f(4 + off)) {
            return bad("status", "a status name", f(4 + off));
        }
        if !f(5 + off).is_empty() && !is_file_id(f(5 + off)) {
            return bad("file_id", "a decimal integer", f(5 + off));
        }
        Ok(())
    }

    /// Tells the 8-field record from the older 9-field one (node after the IP) by content, and
    /// tolerates one trailing comma (an empty last field) after either: 8 fields are the current
    /// layout; 9 are the older one, or the current one with a trailing comma when the last field
    /// is empty and only that reading gives every field its type; 10 are the older one with a
    /// trailing comma. A record both readings fit is refused rather than guessed. The 8-field
    /// layout's types are checked later with every other shape's ([`super::fields::check`]).
    fn layout(&self, text: &str, n: usize) -> Result<usize, String> {
        let last_empty = n > 0 && self.field(text, n - 1).is_empty();
        match n {
            8 => Ok(0),
            9 => {
                let older = self.check_layout(text, 1);
                let trailing = if last_empty { self.check_layout(text, 0) } else { Err(String::new()) };
                match (older, trailing) {
                    (Ok(()), Err(_)) => Ok(1),
                    (Err(_), Ok(())) => Ok(0),
                    (Ok(()), Ok(())) => Err("9 CSV fields read both as the older layout with a node and as 8 fields with a trailing comma".into()),
                    (Err(e), Err(_)) if !last_empty => Err(format!("{e} (read as 9 fields, the older layout with a node)")),
                    (Err(e), Err(t)) => Err(format!("{t} (read as 8 fields and a trailing comma; as the older layout with a node: {e})")),
                }
            }
            10 if last_empty => self.check_layout(text, 1).map(|()| 1).map_err(|e| format!("{e} (read as 9 fields and a trailing comma)")),
            _ => Err(format!("expected 8 CSV fields (9 with a node name), found {n}")),
        }
    }

    fn fill(&self, text: &str, n: usize, ev: &mut Event) -> Result<(), String> {
        // The types of the fields (operation and status included) are checked once for every
        // shape, after the event is filled (super::fields::check); the 9- and 10-field layouts
        // were checked already to be told apart.
        let off = self.layout(text, n)?;
        let op = self.field(text, 3 + off);
        let status = self.field(text, 4 + off);
        ev.client_ip.push_str(self.field(text, 0));
        if off == 1 {
            ev.node.clear();
            ev.node.push_str(self.field(text, 1));
        }
        ev.user.name.push_str(self.field(text, 1 + off));
        ev.protocol.push_str(self.field(text, 2 + off));
        ev.operation.push_str(op);
        ev.status.push_str(status);
        ev.file_id.push_str(self.field(text, 5 + off));
        ev.path.push_str(self.field(text, 6 + off));
        ev.target_path.push_str(self.field(text, 7 + off));
        ev.source_format = SourceFormat::Csv;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Event, String> {
        let mut p = CsvParser::default();
        let mut ev = Event::default();
        p.parse(body, &mut ev).map(|_| ev)
    }

    #[test]
    fn quoting_commas_backslashes_and_doubled_quotes() {
        let ev = parse(r#"10.1.1.1,"AD\alice",smb2,fs_rename,ok,12,"/a, ""b""\c.txt","/x,y""z""""#).unwrap();
        assert_eq!(ev.user.name, "AD\\alice");
        assert_eq!(ev.path, "/a, \"b\"\\c.txt");
        assert_eq!(ev.target_path, "/x,y\"z\"");
        assert_eq!(ev.file_id, "12");
    }

    #[test]
    fn node_variant() {
        let ev = parse(r#"10.1.1.1,node-2,"bob",nfs3,fs_read_data,ok,7,"/f",""#).unwrap();
        assert_eq!(ev.node, "node-2");
        assert_eq!(ev.user.name, "bob");
        assert_eq!(ev.operation, "fs_read_data");
        assert_eq!(ev.path, "/f");
    }

    #[test]
    fn reader_is_reused_across_lines() {
        let mut p = CsvParser::default();
        for i in 0..3 {
            let mut ev = Event::default();
            let body = format!("1.1.1.1,\"u{i}\",api,fs_open,ok,{i},\"/p{i}\",\"\"");
            p.parse(&body, &mut ev).unwrap();
            assert_eq!(ev.path, format!("/p{i}"));
            assert_eq!(ev.file_id, i.to_string());
        }
    }

    #[test]
    fn wrong_field_counts_and_bad_operations() {
        assert!(parse("a,b,c").unwrap_err().contains("found 3"));
        assert!(parse(&"x,".repeat(30)).is_err());
        // (A bad operation or an empty status in 8 fields is the type check's to refuse:
        // tests/parser.rs, tests/input_types.rs.)
    }

    /// The fast path and csv_core agree on every input the fast path accepts, and the fast
    /// path accepts the usual Qumulo lines.
    #[test]
    fn fast_path_matches_csv_core() {
        fn fields(p: &CsvParser, text: &[u8], n: usize) -> Vec<Vec<u8>> {
            (0..n).map(|i| text[p.starts[i]..p.ends[i]].to_vec()).collect()
        }
        let mut fast = CsvParser::default();
        let mut slow = CsvParser::default();
        let mut check = |body: &[u8]| -> bool {
            let Some(n) = fast.split_plain(body) else { return false };
            let m = slow.split_csv_core(body).expect("csv_core accepts what the fast path accepts");
            assert_eq!(n, m, "field count for {:?}", String::from_utf8_lossy(body));
            assert_eq!(fields(&fast, body, n), fields(&slow, &slow.out, m), "fields of {:?}", String::from_utf8_lossy(body));
            true
        };
        for body in [
            r#"10.1.1.1,"AD\alice",smb2,fs_rename,ok,12,"/a, b\c.txt","/x,y""#,
            r#"203.0.113.0,"system",internal,remote_syslog_startup,ok,,"","""#,
            r#"10.1.1.1,node-2,"bob",nfs3,fs_read_data,ok,7,"/f","""#,
            "a,", ",", "a", "\"\"", "\"\",", ",,,", "\"a\"", "é,\"ü\"",
        ] {
            assert!(check(body.as_bytes()), "fast path refused {body:?}");
        }
        for body in [r#"1,"a ""q"" b",3"#, r#"a"b,c"#, r#" "a",b"#, r#""a"b,c"#, r#""open"#, "a\nb", ""] {
            assert!(!check(body.as_bytes()), "fast path took {body:?}");
        }
        // Random bodies over the bytes that matter; xorshift so the test is deterministic.
        let alphabet: &[&[u8]] = &[b"a", b",", b"\"", b"\"\"", b" ", b"\\", "é".as_bytes(), b"\n", b"\r", b"x,", b",\"", b"\","];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut accepted = 0;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let mut body = Vec::new();
            let mut r = state;
            for _ in 0..len {
                r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                body.extend_from_slice(alphabet[(r >> 33) as usize % alphabet.len()]);
            }
            if check(&body) {
                accepted += 1;
            }
        }
        assert!(accepted > 10_000, "only {accepted} random bodies took the fast path");
    }

    /// Both paths fill the same event (doubled quotes take csv_core's path).
    #[test]
    fn doubled_quotes_still_unescape() {
        let ev = parse(r#"10.1.1.1,"AD\alice",smb2,fs_rename,ok,12,"/a ""b"".txt","/c.txt""#).unwrap();
        assert_eq!(ev.path, "/a \"b\".txt");
        assert_eq!(ev.target_path, "/c.txt");
        let ev = parse(r#"10.1.1.1,"AD\alice",smb2,fs_rename,ok,12,"/a b.txt","/c.txt""#).unwrap();
        assert_eq!(ev.path, "/a b.txt");
        assert_eq!(ev.user.name, "AD\\alice");
    }

    #[test]
    fn layouts_by_content_and_trailing_commas() {
        // 8 fields and a trailing comma: still the current layout, nothing shifted.
        for body in [r#"10.1.1.1,"bob",nfs3,fs_read_data,ok,7,"/f","","#, r#"10.1.1.1,"bob",nfs3,fs_read_data,ok,,"","","#] {
            let ev = parse(body).unwrap();
            assert_eq!((ev.node.as_str(), ev.user.name.as_str(), ev.protocol.as_str(), ev.operation.as_str()), ("", "bob", "nfs3", "fs_read_data"), "{body}");
        }
        // The older layout with a trailing comma, and with an empty target.
        for body in [r#"10.1.1.1,node-2,"bob",nfs3,fs_read_data,ok,7,"/f","/g","#, r#"10.1.1.1,node-2,"bob",nfs3,fs_read_data,ok,7,"/f","""#] {
            let ev = parse(body).unwrap();
            assert_eq!((ev.node.as_str(), ev.user.name.as_str(), ev.file_id.as_str(), ev.path.as_str()), ("node-2", "bob", "7", "/f"), "{body}");
        }
        // An empty IP, an empty user: fields stay in their places.
        let ev = parse(r#","",smb2,fs_read_data,ok,7,"/f","""#).unwrap();
        assert_eq!((ev.client_ip.as_str(), ev.protocol.as_str(), ev.file_id.as_str()), ("", "smb2", "7"));
        // Two trailing commas are not a layout: nothing is shifted into a neighbour's place.
        let e = parse(r#"10.1.1.1,"bob",nfs3,fs_read_data,ok,7,"/f","",,"#).unwrap_err();
        assert!(e.contains("'file_id'") && e.contains("trailing comma"), "{e}");
        assert!(parse(r#"10.1.1.1,"bob",nfs3,fs_read_data,ok,7,"/f","",,,"#).unwrap_err().contains("found 11"));
        // A node name that is not one (a space): the error names the field.
        let e = parse(r#"10.1.1.1,"a b","bob",nfs3,fs_read_data,ok,7,"/f","/g""#).unwrap_err();
        assert!(e.contains("'node'"), "{e}");
    }

    #[test]
    fn unterminated_final_quote_is_tolerated() {
        // Qumulo's own documentation shows this line with a dangling quote.
        let ev = parse(r#"203.0.113.0,"system",internal,remote_syslog_shutdown,ok,,"","#.to_string().as_str()).unwrap();
        assert_eq!(ev.operation, "remote_syslog_shutdown");
    }
}
