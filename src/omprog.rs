//! `qumulo-audit-broker omprog`: the rsyslog omprog protocol and the pipeline behind it.
//!
//! This module owns acknowledgement. It answers rsyslog exactly (see `../shared/omprog-notes.md`
//! and README "How omprog mode works"):
//!
//! * `OK` once at start, only after the config loaded and the destination was set up;
//! * `BEGIN TRANSACTION` -> `OK`; each message -> `DEFER_COMMIT` once it is in the journal;
//!   `COMMIT TRANSACTION` -> `OK` only after every event of the transaction was delivered (or
//!   dead-lettered), else `ERROR destination unavailable: ...` so rsyslog retries the batch;
//! * a `BEGIN` while a transaction is open rolls the open one back (rsyslog re-sends it);
//! * without transactions, one `OK` per message after its delivery;
//! * keep-alive dots (`.`) while a delivery is slow, so `confirmTimeout` never kills us mid-way.
//!
//! Three threads, joined by bounded `crossbeam-channel`s so a slow destination applies back
//! pressure instead of growing memory: the protocol thread (stdin, journal, replies), the
//! parse/render stage (parse, classify, filter, encode into batches) and the delivery stage
//! (retries with backoff and jitter, dead-lettering, adoption of dead instances' journals).
//! Replies stay exact and in order because a COMMIT is answered only when the delivery stage
//! reports that transaction's last batch.

use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use crate::batch::Batch;
use crate::config::{Config, DeadLetterConfig};
use crate::convert::read_bounded_line;
use crate::deadletter::{DeadLetter, Kind};
use crate::event::Event;
use crate::filter::Filter;
use crate::input::{ClusterSource, Parsed, Parser, ParserOptions};
use crate::journal::{find_orphans, Journal, DEFAULT_MAX_BYTES};
use crate::sink::{Encoder, Sink};
use crate::stats::Stats;

const BEGIN: &[u8] = b"BEGIN TRANSACTION";
const COMMIT: &[u8] = b"COMMIT TRANSACTION";
/// Lines are handed to the parse stage in chunks of about this size.
const CHUNK_BYTES: usize = 64 * 1024;

/// Work for the parse/render stage.
enum Work {
    /// Lines of transaction `tx`, each ending with `\n`.
    Lines { tx: u64, buf: Vec<u8> },
    /// Close the batch of `tx` and deliver it.
    Commit { tx: u64 },
    /// Forget the undelivered part of `tx`.
    Rollback { tx: u64 },
}

/// The delivery stage's answer for one transaction.
struct Done {
    tx: u64,
    result: Result<(), String>,
}

/// Shared state of one running instance.
struct Shared {
    stats: Arc<Stats>,
    dead: DeadLetter,
    shutdown: AtomicBool,
    hup: Arc<AtomicBool>,
    /// Held by the delivery stage while it writes to the destination, so SIGTERM does not cut
    /// a record in half.
    delivering: Mutex<()>,
    cfg: Config,
}

/// Everything built before the handshake; any failure here means no `OK`.
struct Setup {
    sink: Sink,
    encoder: Encoder,
    journal: Option<Journal>,
    shared: Arc<Shared>,
}

fn setup(cfg: Config) -> Result<Setup, String> {
    let sink = Sink::from_config(&cfg).map_err(|e| e.to_string())?;
    let encoder = Encoder::from_config(&cfg);
    let stats = Arc::new(Stats::default());
    let DeadLetterConfig { path } = cfg.dead_letter.clone();
    let dead = DeadLetter::new(&cfg.name(), path.clone(), stats.clone())
        .map_err(|e| format!("cannot open dead-letter file {}: {e}", path.unwrap_or_default().display()))?;
    let journal = if cfg.journal.enabled.unwrap_or(true) {
        let dir = cfg.journal_dir();
        let j = Journal::open(&dir, cfg.journal.max_bytes.unwrap_or(DEFAULT_MAX_BYTES), cfg.journal.fsync.unwrap_or(false))
            .map_err(|e| format!("cannot create journal in {}: {e} (set [journal] dir to a writable directory)", dir.display()))?;
        Some(j)
    } else {
        log::warn!("[journal] enabled = false: events accepted in a transaction are lost if this program dies before COMMIT (rsyslog issue #2420)");
        None
    };
    let shared = Arc::new(Shared {
        stats,
        dead,
        shutdown: AtomicBool::new(false),
        hup: Arc::new(AtomicBool::new(false)),
        delivering: Mutex::new(()),
        cfg,
    });
    Ok(Setup { sink, encoder, journal, shared })
}

/// Runs omprog mode on stdin/stdout; returns the exit code.
pub fn run(cfg: Config) -> i32 {
    let setup = match setup(cfg) {
        Ok(s) => s,
        Err(e) => {
            log::error!("{e}");
            eprintln!("qumulo-audit-broker: {e}");
            return 2;
        }
    };
    let Setup { sink, encoder, journal, shared } = setup;
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let code = serve(BufReader::with_capacity(256 * 1024, stdin.lock()), &mut out, sink, encoder, journal, shared.clone());
    log::info!("{}", shared.stats.line());
    code
}

fn reply<W: Write>(out: &mut W, text: &[u8]) -> io::Result<()> {
    out.write_all(text)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn keepalive<W: Write>(out: &mut W) -> io::Result<()> {
    out.write_all(b".")?;
    out.flush()
}

/// An error reply: one line, no control characters, well under omprog's 4095-byte limit.
fn error_reply(msg: &str) -> Vec<u8> {
    let mut r = b"ERROR ".to_vec();
    r.extend(msg.chars().map(|c| if c.is_control() { ' ' } else { c }).take(900).collect::<String>().bytes());
    r
}

fn install_signals(shared: &Arc<Shared>) {
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, shared.hup.clone());
    let shared = shared.clone();
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM]) {
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    shared.shutdown.store(true, Ordering::SeqCst);
                    // Let a write in progress finish (at most 2 s), then go: nothing
                    // unacknowledged is lost, the journal keeps it for the next instance.
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while Instant::now() < deadline {
                        if shared.delivering.try_lock().is_ok() {
                            break;
                        }
                        thread::sleep(Duration::from_millis(10));
                    }
                    log::info!("SIGTERM: exiting; unacknowledged lines stay in the journal");
                    log::info!("{}", shared.stats.line());
                    std::process::exit(0);
                }
            })
            .ok();
    }
}

/// The protocol loop. Generic over the streams so tests can drive it in-process.
fn serve<R: io::BufRead, W: Write>(
    mut input: R,
    out: &mut W,
    sink: Sink,
    encoder: Encoder,
    mut journal: Option<Journal>,
    shared: Arc<Shared>,
) -> i32 {
    install_signals(&shared);
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
    let journal_dir = journal.as_ref().map(|j| j.dir().to_path_buf());
    let own_journal = journal.as_ref().map(|j| j.path().to_path_buf());
    let delivery_stage = {
        let shared = shared.clone();
        thread::Builder::new()
            .name("deliver".into())
            .spawn(move || delivery_stage(batch_rx, pool_tx, done_tx, sink, encoder, journal_dir, own_journal, shared))
            .expect("spawn delivery stage")
    };
    let stats_thread = spawn_stats(shared.clone());

    let keepalive_every = Duration::from_millis(shared.cfg.retry.keepalive_ms);
    let max_line = shared.cfg.input.max_line;
    let mut line = Vec::with_capacity(4096);
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut tx: u64 = 0;
    let mut in_tx = false;
    let mut tx_error: Option<String> = None;

    let result: io::Result<()> = (|| {
        reply(out, b"OK")?;
        loop {
            let Some(_truncated) = read_bounded_line(&mut input, &mut line, max_line)? else {
                log::info!("stdin closed: exiting");
                return Ok(());
            };
            if line.last() == Some(&b'\r') && (line.starts_with(BEGIN) || line.starts_with(COMMIT)) {
                line.pop();
            }
            if line == BEGIN {
                if in_tx {
                    // rsyslog starts over after an error reply: roll back what is open
                    // (rsyslog re-sends it, so the unparsed lines are simply dropped).
                    chunk.clear();
                    send_work(&work_tx, Work::Rollback { tx }, out, keepalive_every)?;
                    clear_journal(&mut journal);
                }
                tx += 1;
                in_tx = true;
                tx_error = None;
                reply(out, b"OK")?;
            } else if line == COMMIT {
                if !in_tx {
                    reply(out, b"OK")?; // nothing open
                    continue;
                }
                in_tx = false;
                let outcome = commit(&work_tx, &done_rx, &mut chunk, tx, &mut journal, out, keepalive_every, &shared);
                let outcome = match (outcome?, tx_error.take()) {
                    (_, Some(e)) => Err(e),
                    (r, None) => r,
                };
                clear_journal(&mut journal);
                match outcome {
                    Ok(()) => reply(out, b"OK")?,
                    Err(e) => {
                        shared.stats.commits_failed.fetch_add(1, Ordering::Relaxed);
                        log::warn!("COMMIT of transaction {tx} failed: {e}");
                        reply(out, &error_reply(&e))?;
                    }
                }
            } else {
                shared.stats.lines_in.fetch_add(1, Ordering::Relaxed);
                let standalone = !in_tx;
                if standalone {
                    tx += 1;
                }
                let start = chunk.len();
                chunk.extend_from_slice(&line);
                chunk.push(b'\n');
                // Only lines answered DEFER_COMMIT need the journal: a message outside a
                // transaction is delivered before its OK, and rsyslog re-sends it if we die first.
                if let Some(j) = journal.as_mut().filter(|_| !standalone) {
                    if let Err(e) = j.append(&chunk[start..]) {
                        chunk.truncate(start);
                        let msg = e.to_string();
                        log::error!("{msg}");
                        if in_tx {
                            tx_error = Some(msg.clone());
                        }
                        reply(out, &error_reply(&msg))?;
                        continue;
                    }
                }
                if standalone {
                    let outcome = commit(&work_tx, &done_rx, &mut chunk, tx, &mut journal, out, keepalive_every, &shared)?;
                    clear_journal(&mut journal);
                    match outcome {
                        Ok(()) => reply(out, b"OK")?,
                        Err(e) => reply(out, &error_reply(&e))?,
                    }
                } else {
                    if chunk.len() >= CHUNK_BYTES {
                        flush_chunk(&work_tx, &mut chunk, tx, out, keepalive_every)?;
                    }
                    reply(out, b"DEFER_COMMIT")?;
                }
            }
        }
    })();
    let code = match result {
        Ok(()) => 0,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            log::info!("rsyslog closed our stdout: exiting");
            0
        }
        Err(e) => {
            log::error!("omprog I/O error: {e}");
            1
        }
    };
    shared.shutdown.store(true, Ordering::SeqCst);
    drop(work_tx);
    // The stages stop promptly: the delivery stage abandons retries once shutdown is set.
    let _ = parse_stage.join();
    drop(done_rx);
    let _ = delivery_stage.join();
    drop(stats_thread);
    if let Some(j) = journal {
        j.close();
    }
    code
}

fn clear_journal(journal: &mut Option<Journal>) {
    if let Some(j) = journal.as_mut() {
        if let Err(e) = j.clear() {
            log::error!("cannot truncate journal {}: {e}", j.path().display());
        }
    }
}

/// Sends work to the parse stage, writing keep-alives while it is busy.
fn send_work<W: Write>(work_tx: &Sender<Work>, mut work: Work, out: &mut W, every: Duration) -> io::Result<()> {
    loop {
        match work_tx.send_timeout(work, every) {
            Ok(()) => return Ok(()),
            Err(SendTimeoutError::Timeout(w)) => {
                keepalive(out)?;
                work = w;
            }
            Err(SendTimeoutError::Disconnected(_)) => return Err(io::Error::other("parse stage stopped")),
        }
    }
}

fn flush_chunk<W: Write>(work_tx: &Sender<Work>, chunk: &mut Vec<u8>, tx: u64, out: &mut W, every: Duration) -> io::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let buf = std::mem::replace(chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
    send_work(work_tx, Work::Lines { tx, buf }, out, every)
}

/// Delivers transaction `tx` and waits for the outcome, with keep-alives.
#[allow(clippy::too_many_arguments)]
fn commit<W: Write>(
    work_tx: &Sender<Work>,
    done_rx: &Receiver<Done>,
    chunk: &mut Vec<u8>,
    tx: u64,
    journal: &mut Option<Journal>,
    out: &mut W,
    every: Duration,
    shared: &Shared,
) -> io::Result<Result<(), String>> {
    if let Some(j) = journal.as_ref() {
        if let Err(e) = j.sync_if_configured() {
            return Ok(Err(format!("journal fsync failed: {e}")));
        }
    }
    flush_chunk(work_tx, chunk, tx, out, every)?;
    send_work(work_tx, Work::Commit { tx }, out, every)?;
    loop {
        match done_rx.recv_timeout(every) {
            Ok(done) if done.tx == tx => return Ok(done.result),
            Ok(stale) => log::debug!("ignoring the outcome of transaction {}", stale.tx),
            Err(RecvTimeoutError::Timeout) => {
                if shared.shutdown.load(Ordering::SeqCst) {
                    return Ok(Err("shutting down".into()));
                }
                keepalive(out)?;
            }
            Err(RecvTimeoutError::Disconnected) => return Err(io::Error::other("delivery stage stopped")),
        }
    }
}

/// Fixed cluster name for dead-letter entries of lines that did not name one.
fn fallback_cluster(opts: &ParserOptions) -> &str {
    match &opts.cluster {
        ClusterSource::Fixed(n) => n,
        _ => "",
    }
}

/// Parses lines into `batch`; dead-letters bad lines. Returns nothing: full batches are sent.
struct Renderer {
    parser: Parser,
    opts: ParserOptions,
    filter: Filter,
    encoder: Encoder,
    event: Event,
    rendered: Vec<u8>,
}

impl Renderer {
    fn new(cfg: &Config, encoder: Encoder) -> Renderer {
        let opts = cfg.parser_options();
        Renderer {
            parser: Parser::new(opts.clone()),
            opts,
            filter: Filter::new(cfg.filter.clone()),
            encoder,
            event: Event::default(),
            rendered: Vec::with_capacity(4096),
        }
    }

    /// Adds one line's record to `batch` (or dead-letters / filters it).
    fn add(&mut self, line: &[u8], batch: &mut Batch, shared: &Shared) {
        let stats = &shared.stats;
        match self.parser.parse(line, &mut self.event) {
            Ok(Parsed::Event) => {
                stats.events.fetch_add(1, Ordering::Relaxed);
                if !self.filter.passes(&self.event) {
                    stats.filtered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let start = batch.begin_record();
                self.encoder.encode(&self.event, &mut self.rendered, &mut batch.buf);
                batch.end_record(start);
            }
            Ok(Parsed::Skip) => {}
            Err(e) => {
                stats.parse_errors.fetch_add(1, Ordering::Relaxed);
                let cluster = if self.event.cluster.is_empty() { fallback_cluster(&self.opts) } else { &self.event.cluster };
                shared.dead.write(Kind::ParseError, cluster, &e.reason, line);
            }
        }
    }
}

fn parse_stage(work_rx: Receiver<Work>, batch_tx: Sender<Batch>, pool_rx: Receiver<Batch>, encoder: Encoder, shared: Arc<Shared>) {
    let cfg = &shared.cfg;
    let (max_events, max_bytes) = (cfg.batch.max_events, cfg.batch.max_bytes);
    let mut renderer = Renderer::new(cfg, encoder);
    let fresh = |pool: &Receiver<Batch>| {
        let mut b = pool.try_recv().unwrap_or_default();
        b.clear();
        b
    };
    let mut batch = fresh(&pool_rx);
    for work in work_rx.iter() {
        match work {
            Work::Lines { tx, buf } => {
                for line in buf.split(|&b| b == b'\n') {
                    if line.is_empty() {
                        continue; // the split after the final newline
                    }
                    renderer.add(line, &mut batch, &shared);
                    if batch.is_full(max_events, max_bytes) {
                        batch.tx = tx;
                        if batch_tx.send(std::mem::replace(&mut batch, fresh(&pool_rx))).is_err() {
                            return;
                        }
                    }
                }
            }
            Work::Commit { tx } => {
                batch.tx = tx;
                batch.commits = true;
                if batch_tx.send(std::mem::replace(&mut batch, fresh(&pool_rx))).is_err() {
                    return;
                }
            }
            Work::Rollback { tx } => {
                log::debug!("rolling back transaction {tx}");
                batch.clear();
            }
        }
    }
}

/// Delivers `batch` with retries; dead-letters records the destination refuses for good.
fn deliver_with_retry(sink: &mut Sink, batch: &Batch, shared: &Shared) -> Result<(), String> {
    let retry = &shared.cfg.retry;
    let started = Instant::now();
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut backoff = Duration::from_millis(retry.initial_backoff_ms);
    let max_backoff = Duration::from_millis(retry.max_backoff_ms.max(retry.initial_backoff_ms));
    let max_elapsed = Duration::from_secs(retry.max_elapsed_secs);
    loop {
        if shared.hup.swap(false, Ordering::SeqCst) {
            sink.reopen();
            shared.dead.reopen();
        }
        let attempt = {
            let _writing = shared.delivering.lock().unwrap_or_else(|e| e.into_inner());
            sink.deliver(batch, &pending)
        };
        for (i, reason) in &attempt.rejected {
            shared.dead.write(Kind::Rejected, "", reason, batch.record(*i));
        }
        if attempt.retry.is_empty() {
            let delivered = pending.len() - attempt.rejected.len();
            shared.stats.record_batch(delivered as u64, started.elapsed().as_millis() as u64);
            return Ok(());
        }
        let error = attempt.error.unwrap_or_else(|| "destination did not accept the batch".into());
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        if started.elapsed() >= max_elapsed || shared.shutdown.load(Ordering::SeqCst) {
            return Err(error);
        }
        log::warn!("delivery of {} records failed, retrying in {:?}: {error}", attempt.retry.len(), backoff);
        let remaining = max_elapsed.saturating_sub(started.elapsed());
        sleep_unless_shutdown(jitter(backoff).min(remaining), shared);
        backoff = (backoff * 2).min(max_backoff);
        pending = attempt.retry;
    }
}

/// Backoff with +-25 % jitter, so instances that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let seed = (nanos ^ std::process::id().rotate_left(16)) % 1000;
    let factor = 0.75 + (seed as f64 / 1000.0) * 0.5;
    d.mul_f64(factor)
}

fn sleep_unless_shutdown(d: Duration, shared: &Shared) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.shutdown.load(Ordering::SeqCst) {
        thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
    }
}

#[allow(clippy::too_many_arguments)]
fn delivery_stage(
    batch_rx: Receiver<Batch>,
    pool_tx: Sender<Batch>,
    done_tx: Sender<Done>,
    mut sink: Sink,
    encoder: Encoder,
    journal_dir: Option<PathBuf>,
    own_journal: Option<PathBuf>,
    shared: Arc<Shared>,
) {
    let mut adopter = journal_dir.map(|dir| Adopter { dir, own: own_journal, renderer: Renderer::new(&shared.cfg, encoder) });
    if let Some(a) = adopter.as_mut() {
        a.adopt(&mut sink, &shared);
    }
    let mut failed: Option<(u64, String)> = None;
    for batch in batch_rx.iter() {
        let already_failed = failed.as_ref().is_some_and(|(tx, _)| *tx == batch.tx);
        if !batch.is_empty() && !already_failed {
            if let Err(e) = deliver_with_retry(&mut sink, &batch, &shared) {
                failed = Some((batch.tx, e));
            }
        }
        if batch.commits {
            let result = match failed.take() {
                Some((tx, e)) if tx == batch.tx => Err(e),
                _ => Ok(()),
            };
            let ok = result.is_ok();
            if done_tx.send(Done { tx: batch.tx, result }).is_err() {
                return;
            }
            if ok {
                if let Some(a) = adopter.as_mut() {
                    a.adopt(&mut sink, &shared);
                }
            }
        }
        let _ = pool_tx.try_send(batch);
    }
}

/// Delivers the journals of dead instances.
struct Adopter {
    dir: PathBuf,
    own: Option<PathBuf>,
    renderer: Renderer,
}

impl Adopter {
    fn adopt(&mut self, sink: &mut Sink, shared: &Shared) {
        for mut orphan in find_orphans(&self.dir, self.own.as_deref()) {
            let data = match orphan.contents() {
                Ok(d) => d,
                Err(e) => {
                    log::error!("cannot read orphaned journal {}: {e}", orphan.path.display());
                    continue;
                }
            };
            let mut batch = Batch::default();
            let mut lines = 0;
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                lines += 1;
                self.renderer.add(line, &mut batch, shared);
            }
            if !batch.is_empty() {
                if let Err(e) = deliver_with_retry(sink, &batch, shared) {
                    log::warn!("orphaned journal {} not delivered yet ({e}); will retry", orphan.path.display());
                    return;
                }
            }
            shared.stats.journal_adopted.fetch_add(lines, Ordering::Relaxed);
            log::info!("delivered {lines} lines from the journal of a dead instance ({})", orphan.path.display());
            let path = orphan.path.clone();
            if let Err(e) = orphan.remove() {
                log::error!("cannot remove adopted journal {}: {e}", path.display());
            }
        }
    }
}

/// Prints the stats line every `[stats] interval_secs`; stops with the process.
fn spawn_stats(shared: Arc<Shared>) -> Option<thread::JoinHandle<()>> {
    let every = shared.cfg.stats.interval_secs;
    if every == 0 {
        return None;
    }
    thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            let mut last = Instant::now();
            while !shared.shutdown.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(every) {
                    log::info!("{}", shared.stats.line());
                    last = Instant::now();
                }
            }
        })
        .ok()
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

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(750) && j <= Duration::from_millis(1250), "{j:?}");
        }
    }
}
