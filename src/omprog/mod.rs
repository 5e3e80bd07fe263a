//! `qumulo-audit-broker omprog`: the rsyslog omprog protocol and the pipeline behind it.
//!
//! This module owns acknowledgement. It answers rsyslog exactly (rsyslog's
//! `plugins/omprog/omprog.c` and `runtime/action.c`; README "How omprog mode works"):
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
//!
//! Files: `protocol` (the state machine, one method per protocol event, and the loop that reads
//! stdin), `pipeline` (the parse/render stage), `delivery` (retry, dead-letter, adoption of dead
//! instances' journals); this file sets everything up before the handshake and owns signals
//! and the stats line.

pub(crate) mod delivery;
pub(crate) mod pipeline;
mod protocol;

use std::io::{self, BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::{preflight, Config, ConfigError, DeadLetterConfig};
use crate::deadletter::DeadLetter;
use crate::journal::Journal;
use crate::sink::{Encoder, Sink};
use crate::state::{fold_exited, StateFile};
use crate::stats::Stats;

use self::protocol::serve;

/// Shared state of one running instance (omprog or `consume` mode).
pub(crate) struct Shared {
    pub(crate) stats: Arc<Stats>,
    pub(crate) dead: DeadLetter,
    pub(crate) shutdown: AtomicBool,
    pub(crate) hup: Arc<AtomicBool>,
    /// Held by the delivery stage while it writes to the destination, so SIGTERM does not cut
    /// a record in half.
    delivering: Mutex<()>,
    /// This instance's state file for `status` (none when `[stats] state = false`).
    state: Option<StateFile>,
    pub(crate) cfg: Config,
}

impl Shared {
    pub(crate) fn write_state(&self, exited: bool) {
        if let Some(s) = &self.state {
            s.write(&self.stats, exited);
        }
    }
}

/// Everything built before the handshake; any failure here means no `OK`.
struct Setup {
    sink: Sink,
    encoder: Encoder,
    journal: Option<Journal>,
    shared: Arc<Shared>,
}

/// Checks what the config needs from the machine ([`preflight::check`], as `check` does), then
/// creates the destination and the dead-letter file: what omprog and `consume` modes share.
pub(crate) fn build(cfg: Config) -> Result<(Sink, Encoder, Arc<Shared>), ConfigError> {
    preflight::check(&cfg)?;
    let sink = Sink::from_config(&cfg).map_err(|e| cfg.locate(e))?;
    let encoder = Encoder::from_config(&cfg);
    let stats = Arc::new(Stats::default());
    let DeadLetterConfig { path } = cfg.dead_letter.clone();
    let dead = DeadLetter::new(&cfg.name(), path.clone(), stats.clone(), cfg.power_loss_safe()).map_err(|e| {
        let msg = format!("[dead_letter] path: cannot open dead-letter file {}: {e}", path.unwrap_or_default().display());
        cfg.locate(ConfigError::new(msg).with_key("dead_letter.path"))
    })?;
    let state = cfg.state_dir().and_then(|dir| match std::fs::create_dir_all(&dir) {
        Ok(()) => {
            fold_exited(&dir);
            Some(StateFile::new(&dir, &cfg.name()))
        }
        Err(e) => {
            log::warn!("[stats] state_dir: cannot create {}: {e}; `status` will not see this instance", dir.display());
            None
        }
    });
    // The caller writes the first state file once everything else it needs is up.
    let shared = Arc::new(Shared {
        stats,
        dead,
        shutdown: AtomicBool::new(false),
        hup: Arc::new(AtomicBool::new(false)),
        delivering: Mutex::new(()),
        state,
        cfg,
    });
    Ok((sink, encoder, shared))
}

/// [`build`], then the journal.
fn setup(cfg: Config) -> Result<Setup, ConfigError> {
    let (sink, encoder, shared) = build(cfg)?;
    let cfg = &shared.cfg;
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
    shared.write_state(false);
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
    shared.write_state(true);
    log::info!("{}", shared.stats.line());
    code
}

/// Runs the protocol on the given streams instead of stdin/stdout (no signal handling).
/// Returns the exit code, or the setup error (in which case nothing was written to `output`).
pub fn run_on<R: io::BufRead, W: Write>(cfg: Config, input: R, output: &mut W) -> Result<i32, String> {
    let Setup { sink, encoder, journal, shared } = setup(cfg).map_err(|e| e.to_string())?;
    let code = serve(input, output, &|| false, sink, encoder, journal, shared.clone());
    shared.write_state(true);
    Ok(code)
}

/// True once rsyslog has closed our stdin (the pipe has no writer left and nothing unread in
/// it). Checked while a COMMIT is being delivered, when stdin is not being read: rsyslog closes
/// it at shutdown even while it waits for a reply, and then no reply will ever be read.
fn stdin_hung_up() -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let stdin = rustix::stdio::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
    if !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
        return false;
    }
    let r = fds[0].revents();
    !r.contains(PollFlags::IN) && r.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
}

/// How long the stages get to finish after EOF before the program exits anyway (a delivery to a
/// slow destination may be in flight; nothing it carries was acknowledged, the journal keeps it).
const EXIT_GRACE: Duration = Duration::from_millis(1000);

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
                    let open = shared.stats.journaled.load(Ordering::SeqCst);
                    if open == 0 {
                        log::info!("SIGTERM: clean stop (nothing accepted is undelivered)");
                    } else {
                        log::info!("SIGTERM: stopping with {open} accepted lines undelivered; they stay in the journal for the next instance");
                    }
                    shared.write_state(true);
                    log::info!("{}", shared.stats.line());
                    std::process::exit(0);
                }
            })
            .ok();
    }
}

/// Prints the stats line every `[stats] interval_secs` (0: never) and rewrites the state file
/// within 2 s of a change; stops with the process.
pub(crate) fn spawn_stats(shared: Arc<Shared>) -> Option<thread::JoinHandle<()>> {
    let every = shared.cfg.stats.interval_secs;
    if every == 0 && shared.state.is_none() {
        return None;
    }
    thread::Builder::new()
        .name("stats".into())
        .spawn(move || {
            let mut last = Instant::now();
            let mut last_state = Instant::now();
            let mut written = String::new();
            while !shared.shutdown.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(200));
                if every > 0 && last.elapsed() >= Duration::from_secs(every) {
                    log::info!("{}", shared.stats.line());
                    last = Instant::now();
                }
                if shared.state.is_some() && last_state.elapsed() >= Duration::from_secs(2) {
                    last_state = Instant::now();
                    let now = format!("{} {:?}", shared.stats.line(), shared.stats.health());
                    if now != written {
                        shared.write_state(false);
                        written = now;
                    }
                }
            }
        })
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut bytes = Vec::new();
        for l in input {
            bytes.extend_from_slice(l.as_bytes());
            bytes.push(b'\n');
        }
        drive_bytes(text, dir, out_path, bytes)
    }

    fn drive_bytes(text: &str, dir: &std::path::Path, out_path: &std::path::Path, bytes: Vec<u8>) -> (i32, Vec<String>, Vec<String>, Vec<Vec<u8>>) {
        let mut cfg = Config::parse(text).unwrap();
        cfg.source_path = dir.join("t.toml");
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

    /// A pass-through destination (the receiver tier) forwards envelopes only: a bare Qumulo line
    /// that parses is dead-lettered with the reason, not forwarded for a processor to misfile.
    #[test]
    fn pass_through_dead_letters_a_line_that_is_not_an_envelope() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead.ndjson");
        // The broker is never reached: nothing is left to deliver once the line is refused.
        let text = format!(
            "[destination]\ntype = \"kafka\"\npass_through = true\nbootstrap_servers = [\"127.0.0.1:9\"]\ntopic = \"t\"\n\
             [dead_letter]\npath = \"{}\"\n[journal]\ndir = \"{}\"\n[stats]\ninterval_secs = 0\n",
            dead.display(),
            dir.path().join("journal").display()
        );
        let input = vec!["BEGIN TRANSACTION".into(), line(1), "COMMIT TRANSACTION".into()];
        let (code, replies, _, _) = drive_config(&text, dir.path(), &dir.path().join("none"), &input);
        assert_eq!(code, 0);
        assert_eq!(replies, strs(&["OK", "OK", "DEFER_COMMIT", "OK"]));
        let dl = std::fs::read_to_string(&dead).unwrap();
        assert_eq!(dl.lines().count(), 1, "{dl}");
        assert!(dl.contains("pass_through forwards only envelope lines"), "{dl}");
        assert!(dl.contains("fs_write_data"), "the line itself is kept: {dl}");
    }

    /// A last line without its newline was cut by a dying writer: never journaled, answered or
    /// delivered (rsyslog re-sends it); the accepted lines before it stay journaled.
    #[test]
    fn a_cut_line_at_eof_is_not_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("events.ndjson");
        let text = format!(
            "[destination]\ntype = \"file\"\npath = \"{}\"\n[journal]\ndir = \"{}\"\n[stats]\ninterval_secs = 0\n",
            out_path.display(),
            dir.path().join("journal").display()
        );
        // Outside a transaction: a complete line is delivered, the cut one is not.
        let bytes = format!("{}\n{}", line(1), line(2)).into_bytes();
        let (code, replies, delivered, journals) = drive_bytes(&text, dir.path(), &out_path, bytes);
        assert_eq!(code, 0);
        assert_eq!(replies, strs(&["OK", "OK"]), "no reply to the cut line");
        assert_eq!(delivered, strs(&["1"]));
        assert!(journals.is_empty());
        // Inside a transaction, cut in the middle of the third line.
        let cut = line(3);
        let bytes = format!("BEGIN TRANSACTION\n{}\n{}\n{}", line(4), line(5), &cut[..cut.len() / 2]).into_bytes();
        let (code, replies, delivered, journals) = drive_bytes(&text, dir.path(), &out_path, bytes);
        assert_eq!(code, 0);
        assert_eq!(replies, strs(&["OK", "OK", "DEFER_COMMIT", "DEFER_COMMIT"]));
        assert_eq!(delivered, strs(&["1"]), "nothing of the open transaction is delivered");
        assert_eq!(journals.len(), 1);
        assert_eq!(journals[0], format!("{}\n{}\n", line(4), line(5)).into_bytes(), "the cut line is not journaled");
    }
}
