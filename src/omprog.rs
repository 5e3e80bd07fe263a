//! `qumulo-audit-broker omprog`: the rsyslog omprog protocol and the pipeline behind it.
//!
//! This module owns acknowledgement. It answers rsyslog exactly (see `../shared/omprog-notes.md`
//! and README "How omprog mode works"):
//!
//! * `OK` once at start, only after the config loaded and the destination was set up;
//! * `BEGIN TRANSACTION` -> `OK`; each message -> `DEFER_COMMIT` once it is in the journal;
//!   `COMMIT TRANSACTION` -> `OK` only after every event of the transaction was delivered (or
//!   dead-lettered), else `ERROR destination unavailable: ...` so rsyslog retries the batch;
//! * a `BEGIN` while a transaction is open continues it: rsyslog never re-sends the messages
//!   already answered `DEFER_COMMIT` (rsyslog issue #2420), so they are delivered at the next COMMIT;
//! * a transaction that outgrows the journal is delivered early, in the middle of the transaction;
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
use crate::config::{preflight, Config, ConfigError, DeadLetterConfig};
use crate::convert::read_bounded_line;
use crate::deadletter::{DeadLetter, Kind};
use crate::event::Event;
use crate::filter::Filter;
use crate::input::{ClusterSource, Parsed, Parser, ParserOptions};
use crate::journal::{find_orphans, AppendError, Journal};
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

/// Checks what the config needs from the machine ([`preflight::check`], as `check` does), then
/// creates it: the destination, the dead-letter file, the journal.
fn setup(cfg: Config) -> Result<Setup, ConfigError> {
    preflight::check(&cfg)?;
    let sink = Sink::from_config(&cfg).map_err(|e| cfg.locate(e))?;
    let encoder = Encoder::from_config(&cfg);
    let stats = Arc::new(Stats::default());
    let DeadLetterConfig { path } = cfg.dead_letter.clone();
    let dead = DeadLetter::new(&cfg.name(), path.clone(), stats.clone()).map_err(|e| {
        let msg = format!("[dead_letter] path: cannot open dead-letter file {}: {e}", path.unwrap_or_default().display());
        cfg.locate(ConfigError::new(msg).with_key("dead_letter.path"))
    })?;
    let journal = if cfg.journal.enabled {
        let dir = cfg.journal_dir();
        let j = Journal::open(&dir, cfg.journal.max_bytes, cfg.journal.fsync).map_err(|e| {
            let msg = format!("[journal] dir: cannot create journal in {}: {e} (set [journal] dir to a writable directory)", dir.display());
            cfg.locate(ConfigError::new(msg).with_key("journal.dir"))
        })?;
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
            // One line on stderr (omprog's `output=` file), like a config error in main.
            log::error!("{e}");
            return 2;
        }
    };
    let Setup { sink, encoder, journal, shared } = setup;
    // One line per program start: the pid in the log prefix tells operators (and the
    // reliability tests) when rsyslog started or restarted an instance.
    log::info!(
        "started: destination {}, journal {}",
        shared.cfg.name(),
        journal.as_ref().map_or_else(|| "off".to_string(), |j| j.path().display().to_string())
    );
    install_signals(&shared);
    let stdin = io::stdin();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let input = BufReader::with_capacity(256 * 1024, stdin.lock());
    let code = serve(input, &mut out, &stdin_hung_up, sink, encoder, journal, shared.clone());
    log::info!("{}", shared.stats.line());
    code
}

/// Runs the protocol on the given streams instead of stdin/stdout (no signal handling).
/// Returns the exit code, or the setup error (in which case nothing was written to `output`).
pub fn run_on<R: io::BufRead, W: Write>(cfg: Config, input: R, output: &mut W) -> Result<i32, String> {
    let Setup { sink, encoder, journal, shared } = setup(cfg).map_err(|e| e.to_string())?;
    Ok(serve(input, output, &|| false, sink, encoder, journal, shared))
}

fn reply<W: Write>(out: &mut W, text: &[u8]) -> io::Result<()> {
    out.write_all(text)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// True once rsyslog has closed our stdin (the pipe has no writer left and nothing unread in
/// it). Checked while a COMMIT is being delivered, when stdin is not being read: rsyslog closes
/// it at shutdown even while it waits for a reply, and then no reply will ever be read.
fn stdin_hung_up() -> bool {
    let mut pfd = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & libc::POLLIN == 0 && pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// How long the stages get to finish after EOF before the program exits anyway (a delivery to a
/// slow destination may be in flight; nothing it carries was acknowledged, the journal keeps it).
const EXIT_GRACE: Duration = Duration::from_millis(1000);

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
    let _ = signal_hook::flag::register(signal_hook::consts::SIGHUP, shared.dead.reopen_flag());
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
    hung_up: &dyn Fn() -> bool,
    sink: Sink,
    encoder: Encoder,
    mut journal: Option<Journal>,
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
            let Some(truncated) = read_bounded_line(&mut input, &mut line, max_line)? else {
                log::info!("stdin closed: exiting");
                return Ok(());
            };
            if truncated {
                // Only the first max_line + 1 bytes were kept: the parser would report that
                // length. Dead-letter it here with the true reason; nothing to journal.
                shared.stats.lines_in.fetch_add(1, Ordering::Relaxed);
                shared.stats.parse_errors.fetch_add(1, Ordering::Relaxed);
                let reason = format!("line is longer than the maximum of {max_line} bytes (the first {} are kept here)", line.len());
                shared.dead.write(Kind::ParseError, &fallback_cluster_of(&shared.cfg), &reason, &line);
                reply(out, if in_tx { b"DEFER_COMMIT" } else { b"OK" })?;
                continue;
            }
            if line.last() == Some(&b'\r') && (line.starts_with(BEGIN) || line.starts_with(COMMIT)) {
                line.pop();
            }
            if line == BEGIN {
                if in_tx {
                    // rsyslog sends BEGIN without COMMIT after an error reply to a message (or
                    // after our death): it then re-sends only that message and the ones after
                    // it, never the ones we already answered DEFER_COMMIT (runtime/action.c
                    // doTransaction, `--i`; rsyslog issue #2420). So what is open stays open:
                    // it is delivered with the next COMMIT, and stays in the journal until then.
                    log::info!("BEGIN inside transaction {tx}: its accepted lines stay in it (rsyslog does not re-send them)");
                } else {
                    tx += 1;
                }
                in_tx = true;
                // The line that got the error reply was not kept; rsyslog re-sends it.
                tx_error = None;
                reply(out, b"OK")?;
            } else if line == COMMIT {
                if !in_tx {
                    reply(out, b"OK")?; // nothing open
                    continue;
                }
                in_tx = false;
                let outcome = commit(&work_tx, &done_rx, &mut chunk, tx, &mut journal, out, keepalive_every, hung_up, &shared);
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
                let mut line_start = start;
                // Only lines answered DEFER_COMMIT need the journal: a message outside a
                // transaction is delivered before its OK, and rsyslog re-sends it if we die first.
                let mut appended = journal.as_mut().filter(|_| !standalone).map_or(Ok(()), |j| j.append(&chunk[start..]));
                if matches!(appended, Err(AppendError::Full { .. })) && in_tx && journal.as_ref().is_some_and(|j| !j.is_empty()) {
                    // The transaction outgrew the journal: deliver what it holds now, as if
                    // committed, and go on with an empty journal in the same rsyslog transaction.
                    let this_line = chunk.split_off(start);
                    log::warn!("journal full in the middle of transaction {tx}: delivering its accepted lines now");
                    let outcome = commit(&work_tx, &done_rx, &mut chunk, tx, &mut journal, out, keepalive_every, hung_up, &shared)?;
                    if let Err(e) = outcome {
                        // Nothing is lost: the journal keeps the lines and is adopted once we
                        // are gone; rsyslog restarts us and re-sends this line and the rest.
                        return Err(io::Error::other(format!("journal full and its lines could not be delivered: {e}")));
                    }
                    clear_journal(&mut journal);
                    tx += 1;
                    chunk = this_line;
                    line_start = 0;
                    appended = journal.as_mut().map_or(Ok(()), |j| j.append(&chunk));
                }
                if let Err(e) = appended {
                    chunk.truncate(line_start);
                    let msg = e.to_string();
                    log::error!("{msg}");
                    if in_tx {
                        tx_error = Some(msg.clone());
                    }
                    reply(out, &error_reply(&msg))?;
                    continue;
                }
                if standalone {
                    let outcome = commit(&work_tx, &done_rx, &mut chunk, tx, &mut journal, out, keepalive_every, hung_up, &shared)?;
                    clear_journal(&mut journal);
                    match outcome {
                        Ok(()) => reply(out, b"OK")?,
                        Err(e) => reply(out, &error_reply(&e))?,
                    }
                } else {
                    if chunk.len() >= CHUNK_BYTES {
                        flush_chunk(&work_tx, &mut chunk, tx, out, keepalive_every, hung_up)?;
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
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            log::info!("{e}: exiting; unacknowledged lines stay in the journal");
            0
        }
        Err(e) => {
            log::error!("omprog I/O error: {e}");
            1
        }
    };
    shared.shutdown.store(true, Ordering::SeqCst);
    drop(work_tx);
    drop(done_rx);
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

fn clear_journal(journal: &mut Option<Journal>) {
    if let Some(j) = journal.as_mut() {
        if let Err(e) = j.clear() {
            log::error!("cannot truncate journal {}: {e}", j.path().display());
        }
    }
}

/// Sends work to the parse stage, writing keep-alives while it is busy.
fn send_work<W: Write>(work_tx: &Sender<Work>, mut work: Work, out: &mut W, every: Duration, hung_up: &dyn Fn() -> bool) -> io::Result<()> {
    loop {
        match work_tx.send_timeout(work, every) {
            Ok(()) => return Ok(()),
            Err(SendTimeoutError::Timeout(w)) => {
                if hung_up() {
                    return Err(stdin_closed_error());
                }
                keepalive(out)?;
                work = w;
            }
            Err(SendTimeoutError::Disconnected(_)) => return Err(io::Error::other("parse stage stopped")),
        }
    }
}

fn flush_chunk<W: Write>(
    work_tx: &Sender<Work>,
    chunk: &mut Vec<u8>,
    tx: u64,
    out: &mut W,
    every: Duration,
    hung_up: &dyn Fn() -> bool,
) -> io::Result<()> {
    if chunk.is_empty() {
        return Ok(());
    }
    let buf = std::mem::replace(chunk, Vec::with_capacity(CHUNK_BYTES + 4096));
    send_work(work_tx, Work::Lines { tx, buf }, out, every, hung_up)
}

/// rsyslog closed stdin while we were busy: exit without a reply (nobody reads it).
fn stdin_closed_error() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "rsyslog closed our stdin while a delivery was in progress")
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
    hung_up: &dyn Fn() -> bool,
    shared: &Shared,
) -> io::Result<Result<(), String>> {
    if let Some(j) = journal.as_ref() {
        if let Err(e) = j.sync_if_configured() {
            // Nothing of this transaction is delivered; rsyslog re-sends it after the error.
            chunk.clear();
            send_work(work_tx, Work::Rollback { tx }, out, every, hung_up)?;
            return Ok(Err(format!("journal fsync failed: {e}")));
        }
    }
    flush_chunk(work_tx, chunk, tx, out, every, hung_up)?;
    send_work(work_tx, Work::Commit { tx }, out, every, hung_up)?;
    loop {
        match done_rx.recv_timeout(every) {
            Ok(done) if done.tx == tx => return Ok(done.result),
            Ok(stale) => log::debug!("ignoring the outcome of transaction {}", stale.tx),
            Err(RecvTimeoutError::Timeout) => {
                if shared.shutdown.load(Ordering::SeqCst) {
                    return Ok(Err("shutting down".into()));
                }
                if hung_up() {
                    return Err(stdin_closed_error());
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

fn fallback_cluster_of(cfg: &Config) -> String {
    fallback_cluster(&cfg.parser_options()).to_string()
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
        if shared.shutdown.load(Ordering::SeqCst) {
            return; // nothing will be acknowledged any more; the journal keeps the lines
        }
        match work {
            Work::Lines { tx, buf } => {
                for line in buf.split(|&b| b == b'\n') {
                    if line.is_empty() {
                        continue; // the split after the final newline
                    }
                    renderer.add(line, &mut batch, &shared);
                    if batch.is_full(max_events, max_bytes) {
                        if shared.shutdown.load(Ordering::SeqCst) {
                            return;
                        }
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
            sink.reopen(); // the dead-letter file reopens itself at its next write
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        let attempt = {
            // Held only where exiting mid-write would tear a record (file, TCP stream); an HTTP
            // request cut short is simply not accepted, so SIGTERM need not wait for it.
            let _writing = sink.tears_when_cut().then(|| shared.delivering.lock().unwrap_or_else(|e| e.into_inner()));
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
        if shared.shutdown.load(Ordering::SeqCst) {
            return; // nothing will be acknowledged any more; the journal keeps the lines
        }
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

    /// A good audit line of about 200 bytes.
    fn line(n: u32) -> String {
        let dir = "d".repeat(80);
        format!("<134>Jun  6 14:52:28 q-node-1 qumulo 10.0.0.1,\"AD\\alice\",smb2,fs_write_data,ok,{n},\"/share/{dir}/file-{n}.txt\",\"\"")
    }

    /// Runs `input` through the protocol with a file destination; returns (exit code, replies
    /// without keep-alive dots, delivered file ids, journal files left).
    fn drive(journal_toml: &str, input: &[String]) -> (i32, Vec<String>, Vec<String>, Vec<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("events.ndjson");
        let text = format!(
            "[destination]\ntype = \"file\"\npath = \"{}\"\n[input]\nmax_line = 256\n[journal]\ndir = \"{}\"\n{journal_toml}[stats]\ninterval_secs = 0\n",
            out_path.display(),
            dir.path().join("journal").display()
        );
        drive_config(&text, dir.path(), &out_path, input)
    }

    fn drive_config(text: &str, dir: &std::path::Path, out_path: &std::path::Path, input: &[String]) -> (i32, Vec<String>, Vec<String>, Vec<Vec<u8>>) {
        let mut cfg = Config::parse(text).unwrap();
        cfg.source_path = dir.join("t.toml");
        let mut bytes = Vec::new();
        for l in input {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(b'\n');
        }
        let mut output = Vec::new();
        let code = run_on(cfg, std::io::Cursor::new(bytes), &mut output).unwrap();
        // Keep-alive dots after the last reply (no newline yet) are not a reply.
        let text = String::from_utf8(output).unwrap();
        let replies = text.split_inclusive('\n').filter(|l| l.ends_with('\n')).map(|l| l.trim_end().trim_start_matches('.').to_string()).collect();
        let delivered = std::fs::read_to_string(out_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["file_id"].as_str().unwrap().to_string())
            .collect();
        let journals = std::fs::read_dir(dir.join("journal"))
            .map(|d| d.flatten().map(|e| crate::journal::journal_lines(std::fs::read(e.path()).unwrap())).collect())
            .unwrap_or_default();
        (code, replies, delivered, journals)
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn begin_without_commit_keeps_the_accepted_lines() {
        // rsyslog (runtime/action.c doTransaction) re-sends after an error reply or a death
        // only the failed message and those after it: lines 1 and 2 come only once.
        let input = vec!["BEGIN TRANSACTION".into(), line(1), line(2), "BEGIN TRANSACTION".into(), line(3), "COMMIT TRANSACTION".into()];
        let (code, replies, delivered, journals) = drive("", &input);
        assert_eq!(code, 0);
        assert_eq!(replies, strs(&["OK", "OK", "DEFER_COMMIT", "DEFER_COMMIT", "OK", "DEFER_COMMIT", "OK"]));
        assert_eq!(delivered, strs(&["1", "2", "3"]));
        assert!(journals.is_empty(), "the journal is removed at a clean exit");
    }

    #[test]
    fn a_full_journal_delivers_early_and_the_transaction_goes_on() {
        // max_bytes = max_line + 2 holds one line of this size at a time.
        let input: Vec<String> =
            std::iter::once("BEGIN TRANSACTION".to_string()).chain((1..=5).map(line)).chain(["COMMIT TRANSACTION".to_string()]).collect();
        let (code, replies, delivered, _) = drive("max_bytes = 258\n", &input);
        assert_eq!(code, 0);
        assert_eq!(replies, strs(&["OK", "OK", "DEFER_COMMIT", "DEFER_COMMIT", "DEFER_COMMIT", "DEFER_COMMIT", "DEFER_COMMIT", "OK"]));
        assert_eq!(delivered, strs(&["1", "2", "3", "4", "5"]));
    }

    #[test]
    fn a_full_journal_that_cannot_be_delivered_is_kept_for_adoption() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let text = format!(
            "[destination]\ntype = \"http\"\nurl = \"http://127.0.0.1:{port}/x\"\n[journal]\ndir = \"{}\"\nmax_bytes = 258\n\
             [input]\nmax_line = 256\n[retry]\ninitial_backoff_ms = 50\nmax_elapsed_secs = 1\nkeepalive_ms = 100\n[stats]\ninterval_secs = 0\n",
            dir.path().join("journal").display()
        );
        let input = vec!["BEGIN TRANSACTION".into(), line(1), line(2), line(3), "COMMIT TRANSACTION".into()];
        let (code, replies, _, journals) = drive_config(&text, dir.path(), &dir.path().join("none"), &input);
        assert_eq!(code, 1, "exits so that rsyslog restarts it and the journal is adopted");
        assert_eq!(replies, strs(&["OK", "OK", "DEFER_COMMIT"]), "line 2 is not acknowledged");
        assert_eq!(journals.len(), 1);
        assert_eq!(journals[0], format!("{}\n", line(1)).into_bytes(), "the accepted line stays journaled");
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let j = jitter(Duration::from_millis(1000));
            assert!(j >= Duration::from_millis(750) && j <= Duration::from_millis(1250), "{j:?}");
        }
    }
}
