//! The omprog protocol state machine: rsyslog's lines in, exact replies out. One method per
//! protocol event ([`Protocol::on_begin`], [`Protocol::on_message`], [`Protocol::on_commit`], a
//! line too long, a line cut at EOF); [`serve`] reads stdin, dispatches, and shuts the stages down.
//!
//! The byte rules (rsyslog's `plugins/omprog/omprog.c` and its omprog documentation, summarised
//! in the module docs of [`super`]): exactly one reply line per line received; `OK` to BEGIN; `DEFER_COMMIT` to each
//! message once it is in the journal; `OK` to COMMIT only when the delivery stage reports every
//! batch of that transaction delivered (or dead-lettered), else an `ERROR ...` line; keep-alive
//! dots while waiting. Nothing but replies and dots ever goes to stdout.

use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use super::delivery::{DeliveryStage, Done};
use super::pipeline::{fallback_cluster_of, parse_stage, Work};
use super::{spawn_stats, Shared, EXIT_GRACE};
use crate::batch::Batch;
use crate::deadletter::Kind;
use crate::journal::{AppendError, Journal};
use crate::lines::read_bounded_line;
use crate::sink::{Encoder, Sink};

const BEGIN: &[u8] = b"BEGIN TRANSACTION";
const COMMIT: &[u8] = b"COMMIT TRANSACTION";
/// Lines are handed to the parse stage in chunks of about this size.
const CHUNK_BYTES: usize = 64 * 1024;

pub(super) fn reply<W: Write>(out: &mut W, text: &[u8]) -> io::Result<()> {
    out.write_all(text)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn keepalive<W: Write>(out: &mut W) -> io::Result<()> {
    out.write_all(b".")?;
    out.flush()
}

/// An error reply: one line, no control characters, well under omprog's 4095-byte limit.
pub(super) fn error_reply(msg: &str) -> Vec<u8> {
    let mut r = b"ERROR ".to_vec();
    r.extend(msg.chars().map(|c| if c.is_control() { ' ' } else { c }).take(900).collect::<String>().bytes());
    r
}

/// rsyslog closed stdin while we were busy: exit without a reply (nobody reads it).
fn stdin_closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "rsyslog closed our stdin while a delivery was in progress")
}

/// The protocol thread's end of the pipeline: where work goes, where outcomes come from, and
/// how to keep rsyslog waiting meanwhile (keep-alive dots every `every`, unless stdin hung up).
struct Link<'h> {
    work_tx: Sender<Work>,
    done_rx: Receiver<Done>,
    every: Duration,
    hung_up: &'h dyn Fn() -> bool,
}

impl Link<'_> {
    /// Sends work to the parse stage, writing keep-alives while it is busy.
    fn send<W: Write>(&self, mut work: Work, out: &mut W) -> io::Result<()> {
        loop {
            match self.work_tx.send_timeout(work, self.every) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Timeout(w)) => {
                    if (self.hung_up)() {
                        return Err(stdin_closed_error());
                    }
                    keepalive(out)?;
                    work = w;
                }
                Err(SendTimeoutError::Disconnected(_)) => return Err(io::Error::other("parse stage stopped")),
            }
        }
    }

    /// Hands the lines gathered in `chunk` to the parse stage.
    fn flush_chunk<W: Write>(&self, chunk: &mut Vec<u8>, tx: u64, out: &mut W) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let buf = std::mem::replace(chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
        self.send(Work::Lines { tx, buf }, out)
    }

    /// Waits for the outcome of transaction `tx`, with keep-alives.
    fn wait_done<W: Write>(&self, tx: u64, out: &mut W, shared: &Shared) -> io::Result<Result<(), String>> {
        loop {
            match self.done_rx.recv_timeout(self.every) {
                Ok(done) if done.tx == tx => return Ok(done.result),
                Ok(stale) => log::debug!("ignoring the outcome of transaction {}", stale.tx),
                Err(RecvTimeoutError::Timeout) => {
                    if shared.shutdown.load(Ordering::SeqCst) {
                        return Ok(Err("shutting down".into()));
                    }
                    if (self.hung_up)() {
                        return Err(stdin_closed_error());
                    }
                    keepalive(out)?;
                }
                Err(RecvTimeoutError::Disconnected) => return Err(io::Error::other("delivery stage stopped")),
            }
        }
    }
}

/// The state of the conversation with rsyslog.
struct Protocol<'a, W: Write> {
    out: &'a mut W,
    link: Link<'a>,
    journal: Option<Journal>,
    shared: Arc<Shared>,
    /// Accepted lines of the open transaction not yet handed to the parse stage.
    chunk: Vec<u8>,
    /// Number of the current (or last) transaction; a message outside one gets its own.
    tx: u64,
    in_tx: bool,
    /// A message of the open transaction got an error reply: its COMMIT must fail too.
    tx_error: Option<String>,
}

impl<W: Write> Protocol<'_, W> {
    /// A line longer than `[input] max_line`: only its first bytes were kept, so it is
    /// dead-lettered here with the true reason (the parser would report the kept length).
    fn on_too_long(&mut self, line: &[u8]) -> io::Result<()> {
        let max_line = self.shared.cfg.input.max_line;
        self.shared.stats.lines_in.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.parse_errors.fetch_add(1, Ordering::Relaxed);
        let reason = format!("line is longer than the maximum of {max_line} bytes (the first {} are kept here)", line.len());
        self.shared.dead.write(Kind::ParseError, &fallback_cluster_of(&self.shared.cfg), &reason, line);
        if self.in_tx {
            return reply(self.out, b"DEFER_COMMIT"); // synced with the transaction's COMMIT
        }
        match self.shared.dead.sync() {
            Ok(()) => reply(self.out, b"OK"),
            Err(e) => reply(self.out, &error_reply(&format!("dead-letter file fsync failed: {e}"))),
        }
    }

    /// rsyslog (or the pipe) died mid-write: not a message, and rsyslog re-sends the whole one
    /// to the next instance. Never journaled, answered or delivered; counted and logged once.
    fn on_cut(&mut self, len: usize) {
        self.shared.stats.cut_lines.fetch_add(1, Ordering::Relaxed);
        log::warn!("stdin closed in the middle of a line ({len} bytes without a newline): ignored, rsyslog re-sends that message; exiting");
    }

    fn on_begin(&mut self) -> io::Result<()> {
        if self.in_tx {
            // rsyslog sends BEGIN without COMMIT after an error reply to a message (or after
            // our death): it then re-sends only that message and the ones after it, never the
            // ones we already answered DEFER_COMMIT (runtime/action.c doTransaction, `--i`;
            // rsyslog issue #2420). So what is open stays open: it is delivered with the next
            // COMMIT, and stays in the journal until then.
            log::info!("BEGIN inside transaction {}: its accepted lines stay in it (rsyslog does not re-send them)", self.tx);
        } else {
            self.tx += 1;
        }
        self.in_tx = true;
        // The line that got the error reply was not kept; rsyslog re-sends it.
        self.tx_error = None;
        reply(self.out, b"OK")
    }

    fn on_commit(&mut self) -> io::Result<()> {
        if !self.in_tx {
            return reply(self.out, b"OK"); // nothing open
        }
        self.in_tx = false;
        let outcome = match (self.deliver()?, self.tx_error.take()) {
            (_, Some(e)) => Err(e),
            (r, None) => r,
        };
        self.clear_journal();
        match outcome {
            Ok(()) => reply(self.out, b"OK"),
            Err(e) => {
                self.shared.stats.commits_failed.fetch_add(1, Ordering::Relaxed);
                log::warn!("COMMIT of transaction {} failed: {e}", self.tx);
                reply(self.out, &error_reply(&e))
            }
        }
    }

    fn on_message(&mut self, line: &[u8]) -> io::Result<()> {
        self.shared.stats.lines_in.fetch_add(1, Ordering::Relaxed);
        let standalone = !self.in_tx;
        if standalone {
            self.tx += 1;
        }
        let start = self.chunk.len();
        self.chunk.extend_from_slice(line);
        self.chunk.push(b'\n');
        let mut line_start = start;
        // Only lines answered DEFER_COMMIT need the journal: a message outside a transaction
        // is delivered before its OK, and rsyslog re-sends it if we die first.
        let mut appended = self.journal.as_mut().filter(|_| !standalone).map_or(Ok(()), |j| j.append(&self.chunk[start..]));
        if matches!(appended, Err(AppendError::Full { .. })) && self.in_tx && self.journal.as_ref().is_some_and(|j| !j.is_empty()) {
            // The transaction outgrew the journal: deliver what it holds now, as if committed,
            // and go on with an empty journal in the same rsyslog transaction.
            let this_line = self.chunk.split_off(start);
            log::warn!("journal full in the middle of transaction {}: delivering its accepted lines now", self.tx);
            if let Err(e) = self.deliver()? {
                // Nothing is lost: the journal keeps the lines and is adopted once we are
                // gone; rsyslog restarts us and re-sends this line and the rest.
                return Err(io::Error::other(format!("journal full and its lines could not be delivered: {e}")));
            }
            self.clear_journal();
            self.tx += 1;
            self.chunk = this_line;
            line_start = 0;
            appended = self.journal.as_mut().map_or(Ok(()), |j| j.append(&self.chunk));
        }
        if let Err(e) = appended {
            self.chunk.truncate(line_start);
            let msg = e.to_string();
            log::error!("{msg}");
            if self.in_tx {
                self.tx_error = Some(msg.clone());
            }
            return reply(self.out, &error_reply(&msg));
        }
        if standalone {
            let outcome = self.deliver()?;
            self.clear_journal();
            return match outcome {
                Ok(()) => reply(self.out, b"OK"),
                Err(e) => reply(self.out, &error_reply(&e)),
            };
        }
        if self.journal.is_some() {
            self.shared.stats.journaled.fetch_add(1, Ordering::Relaxed);
        }
        if self.chunk.len() >= CHUNK_BYTES {
            self.link.flush_chunk(&mut self.chunk, self.tx, self.out)?;
        }
        reply(self.out, b"DEFER_COMMIT")
    }

    /// Delivers transaction `tx` (what `chunk` and the stages hold of it) and waits for the
    /// outcome, with keep-alives.
    fn deliver(&mut self) -> io::Result<Result<(), String>> {
        if let Some(j) = self.journal.as_ref() {
            if let Err(e) = j.sync_if_configured() {
                // Nothing of this transaction is delivered; rsyslog re-sends it after the error.
                self.chunk.clear();
                self.link.send(Work::Rollback { tx: self.tx }, self.out)?;
                return Ok(Err(format!("journal fsync failed: {e}")));
            }
        }
        self.link.flush_chunk(&mut self.chunk, self.tx, self.out)?;
        self.link.send(Work::Commit { tx: self.tx }, self.out)?;
        self.link.wait_done(self.tx, self.out, &self.shared)
    }

    fn clear_journal(&mut self) {
        self.shared.stats.journaled.store(0, Ordering::Relaxed);
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.clear() {
                log::error!("cannot truncate journal {}: {e}", j.path().display());
            }
        }
    }
}

/// The protocol loop. Generic over the streams so tests can drive it in-process.
pub(super) fn serve<R: io::BufRead, W: Write>(
    mut input: R,
    out: &mut W,
    hung_up: &dyn Fn() -> bool,
    sink: Sink,
    encoder: Encoder,
    journal: Option<Journal>,
    shared: Arc<Shared>,
) -> i32 {
    let (work_tx, work_rx) = bounded::<Work>(16);
    let (batch_tx, batch_rx) = bounded::<Batch>(4);
    let (pool_tx, pool_rx) = bounded::<Batch>(8);
    let (done_tx, done_rx) = bounded::<Done>(16);
    let parse_stage = {
        let shared = shared.clone();
        let encoder = encoder.clone();
        thread::Builder::new()
            .name("parse".into())
            .spawn(move || parse_stage(work_rx, batch_tx, pool_rx, encoder, shared))
            .expect("spawn parse stage")
    };
    let stage = DeliveryStage {
        sink,
        encoder,
        journal_dir: journal.as_ref().map(|j| j.dir().to_path_buf()),
        own_journal: journal.as_ref().map(|j| j.path().to_path_buf()),
        shared: shared.clone(),
    };
    let delivery_stage =
        thread::Builder::new().name("deliver".into()).spawn(move || stage.run(batch_rx, pool_tx, done_tx)).expect("spawn delivery stage");
    let stats_thread = spawn_stats(shared.clone());

    let max_line = shared.cfg.input.max_line;
    let link = Link { work_tx, done_rx, every: Duration::from_millis(shared.cfg.retry.keepalive_ms), hung_up };
    let mut p = Protocol {
        out,
        link,
        journal,
        shared: shared.clone(),
        chunk: Vec::with_capacity(CHUNK_BYTES + 4096),
        tx: 0,
        in_tx: false,
        tx_error: None,
    };
    let mut line = Vec::with_capacity(4096);
    let result: io::Result<()> = (|| {
        reply(p.out, b"OK")?;
        loop {
            let Some(read) = read_bounded_line(&mut input, &mut line, max_line)? else {
                log::info!("stdin closed: exiting");
                return Ok(());
            };
            if !read.terminated {
                p.on_cut(line.len());
                return Ok(());
            }
            if read.truncated {
                p.on_too_long(&line)?;
                continue;
            }
            if line.last() == Some(&b'\r') && (line.starts_with(BEGIN) || line.starts_with(COMMIT)) {
                line.pop();
            }
            if line == BEGIN {
                p.on_begin()?;
            } else if line == COMMIT {
                p.on_commit()?;
            } else {
                p.on_message(&line)?;
            }
        }
    })();
    let code = match result {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            log::info!("rsyslog closed our stdout: exiting");
            0
        }
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            log::info!("{e}: exiting; unacknowledged lines stay in the journal");
            0
        }
        Err(e) => {
            log::error!("omprog I/O error: {e}");
            1
        }
    };
    let Protocol { link, journal, .. } = p;
    shared.shutdown.store(true, Ordering::SeqCst);
    drop(link);
    // The stages stop promptly: nothing is acknowledged any more, so queued work is dropped
    // (the journal keeps it) and retries are abandoned. Only a request already in flight to a
    // slow destination may take longer: it gets EXIT_GRACE, then the program exits anyway.
    let deadline = Instant::now() + EXIT_GRACE;
    while !(parse_stage.is_finished() && delivery_stage.is_finished()) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    drop(stats_thread);
    if parse_stage.is_finished() && delivery_stage.is_finished() {
        let _ = parse_stage.join();
        let _ = delivery_stage.join();
        if let Some(j) = journal {
            j.close();
        }
    } else {
        // Never cut a record written to a file or stream in half (the lock is only held there).
        let _writing = shared.delivering.lock().unwrap_or_else(|e| e.into_inner());
        log::info!("exiting with a delivery still in flight; its lines stay in the journal");
        // The journal stays as it is (its lock goes with the process) for the next instance.
        std::mem::forget(journal);
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_are_one_short_line() {
        let r = error_reply(&format!("bad\nthing\r{}", "x".repeat(5000)));
        assert!(r.starts_with(b"ERROR bad thing "));
        assert!(!r.contains(&b'\n') && !r.contains(&b'\r'));
        assert!(r.len() < 1000);
    }
}
