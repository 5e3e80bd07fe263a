//! `qumulo-audit-broker convert`: files (or stdin) in, one rendered event per good line out.
//!
//! Bad lines never stop the run: each gets a message on stderr with the file, the line number
//! and the reason, is counted, and the run ends with a summary and exit status 1 if any line was
//! bad. Lines are read with a bounded buffer, so a huge line costs at most `max_line` bytes.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::event::Event;
use crate::format::Format;
use crate::input::{Parsed, Parser, ParserOptions};
use crate::lines::read_bounded_line;

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConvertStats {
    pub lines: u64,
    pub events: u64,
    pub skipped: u64,
    pub errors: u64,
}

/// Converts every line of `input`, writing records to `out` and errors to `errs`.
pub fn convert_stream<R: Read, W: Write, E: Write>(
    name: &str,
    input: R,
    parser: &mut Parser,
    format: Format,
    out: &mut W,
    errs: &mut E,
    stats: &mut ConvertStats,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let mut line = Vec::with_capacity(4096);
    let mut rendered = Vec::with_capacity(4096);
    let mut ev = Event::default();
    let mut lineno = 0u64;
    let max_line = parser.max_line();
    while let Some(read) = read_bounded_line(&mut reader, &mut line, max_line)? {
        // A file's last line needs no newline: `read.terminated` does not matter here.
        lineno += 1;
        stats.lines += 1;
        if read.truncated {
            stats.errors += 1;
            writeln!(errs, "{name}:{lineno}: line is longer than the maximum of {max_line} bytes")?;
            continue;
        }
        match parser.parse(&line, &mut ev) {
            Ok(Parsed::Event) => {
                rendered.clear();
                format.render(&ev, &mut rendered);
                rendered.push(b'\n');
                out.write_all(&rendered)?;
                stats.events += 1;
            }
            Ok(Parsed::Skip) => stats.skipped += 1,
            Err(e) => {
                stats.errors += 1;
                writeln!(errs, "{name}:{lineno}: {e}")?;
            }
        }
    }
    Ok(())
}

/// Options of the `convert` command.
pub struct ConvertArgs {
    pub format: Format,
    pub files: Vec<String>,
    pub parser: ParserOptions,
}

/// Runs `convert`; returns the process exit code.
pub fn run(args: ConvertArgs) -> i32 {
    let mut parser = Parser::new(args.parser);
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(256 * 1024, stdout.lock());
    let stderr = io::stderr();
    let mut errs = stderr.lock();
    let mut stats = ConvertStats::default();
    let mut failed_files = 0;
    let files = if args.files.is_empty() { vec!["-".to_string()] } else { args.files };
    for name in &files {
        let result = if name == "-" {
            convert_stream("<stdin>", io::stdin().lock(), &mut parser, args.format, &mut out, &mut errs, &mut stats)
        } else {
            match File::open(name) {
                Ok(f) => convert_stream(name, f, &mut parser, args.format, &mut out, &mut errs, &mut stats),
                Err(e) => {
                    let _ = writeln!(errs, "{name}: cannot open: {e}");
                    failed_files += 1;
                    continue;
                }
            }
        };
        if let Err(e) = result {
            if e.kind() == io::ErrorKind::BrokenPipe {
                return 0;
            }
            let _ = writeln!(errs, "{name}: {e}");
            failed_files += 1;
        }
    }
    if let Err(e) = out.flush() {
        if e.kind() != io::ErrorKind::BrokenPipe {
            let _ = writeln!(errs, "writing output: {e}");
            return 2;
        }
    }
    let _ = writeln!(
        errs,
        "convert: {} lines, {} events, {} skipped, {} bad lines{}",
        stats.lines,
        stats.events,
        stats.skipped,
        stats.errors,
        if failed_files > 0 { format!(", {failed_files} unreadable files") } else { String::new() }
    );
    if stats.errors > 0 || failed_files > 0 {
        1
    } else {
        0
    }
}
