//! The binary in omprog mode, driven by `OmprogDriver` exactly as rsyslog's omprog drives it
//! (replies compared byte for byte, keep-alive dots, confirm timeouts, EOF and signals), against
//! every destination kind: a file, `MockHttp` (NDJSON, Splunk HEC, Elasticsearch bulk) and
//! syslog receivers (TCP both framings, UDP). Each test checks the replies, the records at the
//! destination (compared exactly with the expected canonical JSON / CEF), the dead-letter file,
//! and that stdout carried nothing but protocol replies.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::config::ConfigToml;
use support::http::{ItemSelector, MockHttp, DEFAULT_HEC_TOKEN};
use support::omprog_driver::{OmprogDriver, Reply};
use support::sender;
use support::syslog_rx::{RxFraming, SyslogTcpReceiver, SyslogUdpReceiver};
use support::{read_complete_lines, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_qumulo-audit-broker");
const T: Duration = Duration::from_secs(20);
/// How long the program may take to exit after EOF or SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------- inputs and expected records

/// The envelope's time, as rsyslog's `%timereported:::date-rfc3339%` renders it.
const ENVELOPE_TIME: &str = "2026-06-06T14:52:28+00:00";

/// A 32-hex uuid per event number, as rsyslog's `%uuid%`.
fn uuid(n: u64) -> String {
    format!("5eed{n:028x}")
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Event `n` as the envelope template of docs/event-schema.md renders it (CSV body; rsyslog's
/// `%msg%` keeps the space after the tag).
fn envelope(cluster: &str, n: u64) -> String {
    envelope_with_msg(cluster, n, &format!(" {}", sender::csv_body(n)))
}

fn envelope_with_msg(cluster: &str, n: u64, msg: &str) -> String {
    format!(
        r#"{{"v":1,"cluster":{},"fromhost_ip":"127.0.0.1","hostname":"q-node-1","time":"{ENVELOPE_TIME}","uuid":"{}","msg":{}}}"#,
        json_str(cluster),
        uuid(n),
        json_str(msg)
    )
}

fn envelopes(cluster: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|n| envelope(cluster, n)).collect()
}

/// The canonical JSON record of [`envelope`]`(cluster, n)`, byte for byte.
fn expected_json(cluster: &str, n: u64) -> String {
    format!(
        concat!(
            r#"{{"id":"{}","time":"2026-06-06T14:52:28Z","cluster":"{}","node":"q-node-1","fromhost_ip":"127.0.0.1","#,
            r#""client_ip":"10.0.0.1","user":{{"name":"AD\\alice"}},"protocol":"smb2","operation":"fs_write_data","#,
            r#""status":"ok","outcome":"success","action":"write","object_type":"file","file_id":"{}","#,
            r#""path":"/share/file-{}.txt","source_format":"csv"}}"#
        ),
        uuid(n),
        cluster,
        n,
        n
    )
}

fn expected_value(cluster: &str, n: u64) -> Value {
    serde_json::from_str(&expected_json(cluster, n)).unwrap()
}

/// The CEF record of [`envelope`]`(cluster, n)`.
fn expected_cef(cluster: &str, n: u64) -> String {
    format!(
        "CEF:0|Qumulo|Qumulo Core|{}|fs_write_data|Write file|1|rt=1780757548000 dvchost=q-node-1 dvc=127.0.0.1 \
         src=10.0.0.1 suser=alice sntdom=AD app=smb2 act=write cat=file outcome=success fname=file-{n}.txt \
         filePath=/share/file-{n}.txt fileId={n} fileType=file externalId={} cs1Label=cluster cs1={cluster} \
         cs2Label=status cs2=ok",
        env!("CARGO_PKG_VERSION"),
        uuid(n)
    )
}

/// Asserts that `lines` are exactly the canonical JSON records of `range` (in order), and checks
/// the fields that matter one by one as well.
fn assert_json_records(lines: &[String], cluster: &str, range: std::ops::Range<u64>) {
    let want: Vec<String> = range.clone().map(|n| expected_json(cluster, n)).collect();
    assert_eq!(lines.len(), want.len(), "record count; got:\n{}", lines.join("\n"));
    for (line, n) in lines.iter().zip(range) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert_eq!(v["id"], uuid(n), "id is the envelope's uuid: {line}");
        assert_eq!(v["cluster"], cluster, "{line}");
        assert_eq!(v["operation"], "fs_write_data", "{line}");
        assert_eq!(v["path"], format!("/share/file-{n}.txt"), "{line}");
        assert_eq!(line, &expected_json(cluster, n));
    }
}

// ---------------------------------------------------------------- one broker instance

/// A temp dir holding one destination's config, its output, dead-letter file and journal.
struct Case {
    dir: tempfile::TempDir,
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl Case {
    fn new() -> Case {
        Case { dir: tempfile::Builder::new().prefix("qab-omprog-").tempdir().unwrap() }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// The file destination's output.
    fn out(&self) -> PathBuf {
        self.path("out.ndjson")
    }
    fn dead(&self) -> PathBuf {
        self.path("dead.ndjson")
    }
    fn journal_dir(&self) -> PathBuf {
        self.path("journal")
    }
    /// Writes `<name>.toml`: `cfg` with the dead-letter file, journal and stats every second
    /// inside the temp dir ([`ConfigToml::spool_in`]).
    fn config(&self, name: &str, cfg: ConfigToml) -> PathBuf {
        cfg.spool_in(self.dir.path()).write(self.path(&format!("{name}.toml")))
    }
    /// Literal TOML on purpose, for malformed configs only: `[destination]` with `destination`
    /// (its key lines), the same dead-letter, journal and stats settings as [`config`](Self::config),
    /// then `extra` (more sections); the tests assert the line numbers of this layout.
    fn literal_config(&self, name: &str, destination: &str, extra: &str) -> PathBuf {
        let p = self.path(&format!("{name}.toml"));
        let text = format!(
            "[destination]\n{destination}\n\n[dead_letter]\npath = {}\n\n[journal]\ndir = {}\n\n[stats]\ninterval_secs = 1\n\n{extra}\n",
            toml_path(&self.dead()),
            toml_path(&self.journal_dir()),
        );
        std::fs::write(&p, text).unwrap();
        p
    }
    /// A file destination writing canonical JSON to [`out`](Self::out).
    fn file_dest(&self) -> ConfigToml {
        ConfigToml::file(&self.out()).format("json")
    }
    /// [`file_dest`](Self::file_dest) written to `file.toml`.
    fn file_config(&self) -> PathBuf {
        self.config("file", self.file_dest())
    }
    fn start(&self, cfg: &Path) -> OmprogDriver {
        OmprogDriver::start(BIN, &[Path::new("omprog").as_os_str(), "--config".as_ref(), cfg.as_os_str()])
    }
    fn spawn(&self, cfg: &Path) -> OmprogDriver {
        OmprogDriver::spawn(BIN, &[Path::new("omprog").as_os_str(), "--config".as_ref(), cfg.as_os_str()])
    }
    fn out_lines(&self) -> Vec<String> {
        read_complete_lines(&self.out())
    }
    /// The dead-letter entries, parsed.
    fn dead_entries(&self) -> Vec<Value> {
        read_complete_lines(&self.dead()).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
    fn journal_files(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.journal_dir()) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "jnl")).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// The lines a journal file holds (decoded from its header-and-lines format).
fn journal_lines(path: &std::path::Path) -> Vec<String> {
    let data = qumulo_audit_broker::journal::journal_lines(std::fs::read(path).unwrap());
    String::from_utf8(data).unwrap().lines().map(str::to_string).collect()
}

/// Sends a transaction and asserts `OK` / `DEFER_COMMIT`... / `OK`.
fn commit_ok<S: AsRef<str>>(d: &mut OmprogDriver, lines: &[S]) {
    assert_eq!(d.begin(), Reply::Ok, "BEGIN\n{}", d.diagnostics());
    for l in lines {
        assert_eq!(d.send(l.as_ref()), Reply::DeferCommit, "message {:?}\n{}", l.as_ref(), d.diagnostics());
    }
    assert_eq!(d.commit(), Reply::Ok, "COMMIT\n{}", d.diagnostics());
}

/// Closes stdin and asserts a prompt, clean exit with nothing on stdout after the last reply.
fn finish(mut d: OmprogDriver) -> String {
    d.close_stdin();
    let t0 = Instant::now();
    let st = d.wait_exit(T);
    assert!(t0.elapsed() < EXIT_WITHIN, "exit took {:?}\n{}", t0.elapsed(), d.diagnostics());
    assert!(st.success(), "exit status {st}\n{}", d.diagnostics());
    let rest = d.stdout_rest(T);
    assert!(rest.is_empty(), "stdout after the last reply: {:?}\n{}", String::from_utf8_lossy(&rest), d.diagnostics());
    let stderr = d.stderr_text();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Waits for a stats line on stderr containing every `want` (e.g. `delivered=5`).
fn wait_stats(d: &OmprogDriver, want: &[&str]) -> String {
    wait_for(
        Duration::from_secs(10),
        &format!("a stats line with {want:?}"),
        || {
            d.stderr_text()
                .lines()
                .filter(|l| l.contains("stats: "))
                .find(|l| want.iter().all(|w| l.split(' ').any(|f| f == *w)))
                .map(str::to_owned)
        },
        || d.diagnostics(),
    )
}

fn write_secret(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

// ---------------------------------------------------------------- 1. handshake and broken configs

#[test]
fn handshake_ok_first_and_nothing_else_on_stdout() {
    let c = Case::new();
    let cfg = c.file_config();
    // Debug logging must still go to stderr only.
    let mut cmd = Command::new(BIN);
    cmd.args(["omprog", "--config"]).arg(&cfg).env("QAB_LOG", "debug");
    let mut d = OmprogDriver::spawn_command(cmd);
    d.try_handshake().unwrap_or_else(|e| panic!("{e}\n{}", d.diagnostics()));
    commit_ok(&mut d, &envelopes("alpha", 0..3));
    let stderr = finish(d);
    assert_json_records(&c.out_lines(), "alpha", 0..3);
    assert!(stderr.contains("DEBUG") || stderr.contains("INFO"), "logs went to stderr:\n{stderr}");
    assert!(c.journal_files().is_empty(), "a clean exit removes its empty journal: {:?}", c.journal_files());
}

/// Starts the binary with a broken config: no handshake, non-zero exit, exactly one non-empty
/// stderr line, which is returned.
fn broken_config(c: &Case, cfg: &Path) -> String {
    let mut d = c.spawn(cfg);
    let hs = d.try_handshake();
    assert!(hs.is_err(), "a broken config must not answer OK\n{}", d.diagnostics());
    let st = d.wait_exit(T);
    assert!(!st.success(), "exit status {st}\n{}", d.diagnostics());
    assert!(d.stdout_rest(T).is_empty(), "nothing on stdout\n{}", d.diagnostics());
    let stderr = d.stderr_text();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one error line on stderr, got:\n{stderr}");
    assert!(lines[0].contains("ERROR"), "{stderr}");
    lines[0].to_string()
}

#[test]
fn broken_configs_never_answer_ok() {
    let c = Case::new();
    // Unknown key: named, with its line (literal TOML on purpose: malformed).
    let cfg = c.literal_config("unknown", &format!("type = \"file\"\npath = {}\ncolour = \"red\"", toml_path(&c.out())), "");
    let e = broken_config(&c, &cfg);
    assert!(e.contains("colour") && e.contains("line 4"), "{e}");
    assert!(e.contains("unknown.toml"), "names the file: {e}");

    // Unknown key in another section (literal TOML on purpose: malformed).
    let cfg = c.literal_config("unknown2", &format!("type = \"file\"\npath = {}", toml_path(&c.out())), "[batch]\nmax_event = 5\n");
    let e = broken_config(&c, &cfg);
    assert!(e.contains("max_event") && e.contains("line 15"), "{e}");

    // Missing path (literal TOML on purpose: malformed).
    let cfg = c.literal_config("nopath", "type = \"file\"", "");
    let e = broken_config(&c, &cfg);
    assert!(e.contains("needs `path`"), "{e}");

    // A missing config file.
    let e = broken_config(&c, &c.path("does-not-exist.toml"));
    assert!(e.contains("cannot read config") && e.contains("does-not-exist.toml"), "{e}");

    // token_file missing, a directory, or empty.
    let hec = |name: &str, token: &Path| {
        c.config(name, ConfigToml::hec("http://127.0.0.1:9", token))
    };
    let missing = c.path("missing.token");
    let e = broken_config(&c, &hec("tok1", &missing));
    assert!(e.contains("token_file") && e.contains("missing.token") && e.contains("No such file"), "{e}");
    let dir = c.path("token-dir");
    std::fs::create_dir(&dir).unwrap();
    let e = broken_config(&c, &hec("tok2", &dir));
    assert!(e.contains("token_file") && e.contains("token-dir"), "{e}");
    let empty = c.path("empty.token");
    write_secret(&empty, "\n");
    let e = broken_config(&c, &hec("tok3", &empty));
    assert!(e.contains("token_file") && e.contains("empty"), "{e}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Without read permission (root reads anything, so only checked as another user).
        let locked = c.path("locked.token");
        write_secret(&locked, DEFAULT_HEC_TOKEN);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let e = broken_config(&c, &hec("tok4", &locked));
        assert!(e.contains("token_file") && e.contains("Permission denied"), "{e}");
    }

    // Files that cannot be created: the destination, the dead-letter file, the journal.
    let blocker = c.path("a-regular-file");
    std::fs::write(&blocker, "x").unwrap();
    let under = blocker.join("sub");
    let cfg = |dest: &Path, dead: &Path, journal: &Path| ConfigToml::file(dest).dead_letter(dead).journal_dir(journal);
    let (out, dead, journal) = (c.out(), c.dead(), c.journal_dir());
    for (name, body, want) in [
        ("badout", cfg(&under, &dead, &journal), "cannot open"),
        ("baddead", cfg(&out, &under, &journal), "dead-letter"),
        ("badjournal", cfg(&out, &dead, &under), "journal"),
    ] {
        let cfg = body.write(c.path(&format!("{name}.toml")));
        let e = broken_config(&c, &cfg);
        assert!(e.contains(want) && e.contains("a-regular-file"), "{name}: {e}");
    }

    // Nothing was delivered or journaled by any of them.
    assert!(c.out_lines().is_empty());
    assert!(c.journal_files().is_empty(), "{:?}", c.journal_files());
}

// ---------------------------------------------------------------- 2. a transaction

#[test]
fn transaction_delivers_exactly_the_batch() {
    let c = Case::new();
    let mut d = c.start(&c.file_config());
    let lines = envelopes("alpha", 0..25);
    assert_eq!(d.begin(), Reply::Ok);
    for l in &lines {
        assert_eq!(d.send(l), Reply::DeferCommit);
    }
    assert!(c.out_lines().is_empty(), "nothing is delivered before COMMIT");
    assert_eq!(d.commit(), Reply::Ok);
    assert_json_records(&c.out_lines(), "alpha", 0..25);
    // An empty transaction, and a COMMIT outside any transaction.
    assert_eq!(d.begin(), Reply::Ok);
    assert_eq!(d.commit(), Reply::Ok);
    assert_eq!(d.commit(), Reply::Ok);
    assert_eq!(c.out_lines().len(), 25);

    // A second transaction appends; raw syslog lines (no envelope) get hashed ids.
    commit_ok(&mut d, &envelopes("beta", 25..30));
    let all = c.out_lines();
    assert_json_records(&all[25..], "beta", 25..30);
    let raw = [sender::qumulo_line(sender::Shape::Csv, 30), sender::qumulo_line(sender::Shape::Json, 31)];
    commit_ok(&mut d, &raw);
    let all = c.out_lines();
    assert_eq!(all.len(), 32);
    for (line, n) in all[30..].iter().zip(30..) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["path"], format!("/share/file-{n}.txt"));
        assert_eq!(v["node"], "q-node-1");
        let id = v["id"].as_str().unwrap();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert!(v.get("cluster").is_none(), "no cluster invented: {line}");
    }
    wait_stats(&d, &["lines_in=32", "events=32", "delivered=32", "parse_errors=0", "commits_failed=0"]);
    finish(d);
    assert!(c.dead_entries().is_empty());
}

// ---------------------------------------------------------------- 3. rollback

#[test]
fn begin_without_commit_keeps_the_accepted_lines() {
    // rsyslog sends BEGIN without COMMIT after an error reply to a message (or after a program
    // death) and then re-sends only that message and the ones after it, never those already
    // answered DEFER_COMMIT (runtime/action.c doTransaction; rsyslog issue #2420). So the open
    // transaction continues and its accepted lines are delivered at the next COMMIT.
    let c = Case::new();
    let mut d = c.start(&c.file_config());
    assert_eq!(d.begin(), Reply::Ok);
    for l in envelopes("alpha", 0..4) {
        assert_eq!(d.send(&l), Reply::DeferCommit);
    }
    assert!(c.out_lines().is_empty(), "nothing is delivered before a COMMIT");
    commit_ok(&mut d, &envelopes("alpha", 4..10));
    assert_json_records(&c.out_lines(), "alpha", 0..10);
    finish(d);
}

// ---------------------------------------------------------------- 4. delivery failure

#[test]
fn unavailable_destination_fails_the_commit_and_a_resend_delivers() {
    let c = Case::new();
    let m = MockHttp::start();
    let cfg = c.config(
        "ndjson",
        ConfigToml::http(&format!("{}/ingest", m.url())).retry("max_elapsed_secs", 2).retry("keepalive_ms", 100).backoff_ms(100, 400),
    );
    let mut d = c.start(&cfg);
    m.fail_for(Duration::from_secs(3600), 503);
    let lines = envelopes("alpha", 0..5);
    assert_eq!(d.begin(), Reply::Ok);
    for l in &lines {
        assert_eq!(d.send(l), Reply::DeferCommit);
    }
    let t0 = Instant::now();
    let r = d.commit(); // the driver fails on anything but exactly one line
    let took = t0.elapsed();
    match &r {
        Reply::Error(text) => assert!(text.starts_with("ERROR destination unavailable"), "{text}"),
        other => panic!("COMMIT answered {other:?}\n{}", d.diagnostics()),
    }
    assert!(d.last_dots() > 0, "keep-alive dots while retrying\n{}", d.diagnostics());
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "gave up after {took:?}");
    assert!(m.count_status(503) >= 2, "retried: {}", m.summary());
    assert!(m.ndjson_records().is_empty());

    // rsyslog re-sends the batch in a new transaction once the destination is back.
    m.clear_faults();
    commit_ok(&mut d, &lines);
    let got: Vec<Value> = m.ndjson_records().into_iter().map(|(p, v)| {
        assert_eq!(p, "/ingest");
        v
    }).collect();
    let want: Vec<Value> = (0..5).map(|n| expected_value("alpha", n)).collect();
    assert_eq!(got, want);
    wait_stats(&d, &["delivered=5", "commits_failed=1"]);
    finish(d);
    assert!(c.dead_entries().is_empty(), "a failing destination never dead-letters");
}

// ---------------------------------------------------------------- 5. slow destination

#[test]
fn keepalive_dots_satisfy_the_confirm_timeout_of_a_slow_destination() {
    let c = Case::new();
    let m = MockHttp::start();
    m.set_delay(Duration::from_secs(3));
    let cfg = c.config("slow", ConfigToml::http(&format!("{}/ingest", m.url())));
    let mut d = c.start(&cfg);
    d.set_confirm_timeout(Duration::from_secs(2));
    let t0 = Instant::now();
    commit_ok(&mut d, &envelopes("alpha", 0..3));
    assert!(t0.elapsed() >= Duration::from_secs(3));
    assert!(d.last_dots() >= 2, "dots: {}\n{}", d.last_dots(), d.diagnostics());
    let got: Vec<Value> = m.ndjson_records().into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, (0..3).map(|n| expected_value("alpha", n)).collect::<Vec<_>>());
    assert_eq!(m.request_count(), 1, "one batch, one request");
    m.clear_faults();
    finish(d);
}

// ---------------------------------------------------------------- 6. without transactions

#[test]
fn without_transactions_ok_comes_after_delivery() {
    let c = Case::new();
    let mut d = c.start(&c.file_config());
    for n in 0..10 {
        assert_eq!(d.send(&envelope("alpha", n)), Reply::Ok);
        // The record is at the destination when the OK arrives.
        assert_json_records(&c.out_lines(), "alpha", 0..n + 1);
    }
    finish(d);

    let m = MockHttp::start();
    let c2 = Case::new();
    let mut d = c2.start(&c2.config("http", ConfigToml::http(&format!("{}/ingest", m.url()))));
    for n in 0..10 {
        assert_eq!(d.send(&envelope("beta", n)), Reply::Ok);
        let got: Vec<Value> = m.ndjson_records().into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, (0..n + 1).map(|k| expected_value("beta", k)).collect::<Vec<_>>());
    }
    assert_eq!(m.request_count(), 10, "one delivery per message");
    finish(d);
}

// ---------------------------------------------------------------- 7. EOF and SIGTERM

#[test]
fn eof_mid_transaction_exits_without_ok_and_the_journal_is_adopted() {
    let c = Case::new();
    let cfg = c.file_config();
    let mut d = c.start(&cfg);
    commit_ok(&mut d, &envelopes("alpha", 0..2));
    assert_eq!(d.begin(), Reply::Ok);
    let open = envelopes("alpha", 2..5);
    for l in &open {
        assert_eq!(d.send(l), Reply::DeferCommit);
    }
    d.close_stdin();
    let t0 = Instant::now();
    let st = d.wait_exit(T);
    assert!(t0.elapsed() < EXIT_WITHIN, "exit took {:?}", t0.elapsed());
    assert!(st.success(), "{st}\n{}", d.diagnostics());
    let rest = d.stdout_rest(T);
    assert!(rest.is_empty(), "no OK for the open transaction: {:?}", String::from_utf8_lossy(&rest));
    assert_json_records(&c.out_lines(), "alpha", 0..2);

    // The open transaction's lines stay in the journal...
    let journals = c.journal_files();
    assert_eq!(journals.len(), 1, "{journals:?}");
    let kept = journal_lines(&journals[0]);
    assert_eq!(kept, open);

    // ...and the next instance delivers them (rsyslog issue #2420 closed).
    let d2 = c.start(&cfg);
    wait_for(T, "the adopted journal delivered", || (c.out_lines().len() >= 5).then_some(()), || d2.diagnostics());
    let all = c.out_lines();
    assert_json_records(&all[2..], "alpha", 2..5);
    wait_stats(&d2, &["journal_adopted=3", "delivered=3"]);
    wait_for(T, "the adopted journal removed", || (!journals[0].exists()).then_some(()), || d2.diagnostics());
    finish(d2);
    assert!(c.journal_files().is_empty(), "{:?}", c.journal_files());
}

#[test]
fn sigkill_mid_transaction_keeps_the_deferred_lines_for_the_next_instance() {
    // rsyslog issue #2420: after the death, rsyslog re-sends only the message it was writing and
    // the ones after it, never those already answered DEFER_COMMIT.
    let c = Case::new();
    let cfg = c.file_config();
    let mut d = c.start(&cfg);
    commit_ok(&mut d, &envelopes("alpha", 0..2));
    assert_eq!(d.begin(), Reply::Ok);
    for l in envelopes("alpha", 2..6) {
        assert_eq!(d.send(&l), Reply::DeferCommit);
    }
    d.signal(libc::SIGKILL);
    d.wait_exit(T);
    assert!(d.stdout_rest(T).is_empty());
    assert_json_records(&c.out_lines(), "alpha", 0..2);
    let d2 = c.start(&cfg);
    wait_for(T, "the dead instance's journal delivered", || (c.out_lines().len() >= 6).then_some(()), || d2.diagnostics());
    assert_json_records(&c.out_lines()[2..], "alpha", 2..6);
    wait_stats(&d2, &["journal_adopted=4"]);
    finish(d2);
    assert!(c.journal_files().is_empty(), "{:?}", c.journal_files());
}

#[test]
fn an_idle_instance_adopts_a_journal_left_after_its_last_commit() {
    // The burst is over: the surviving instance gets no more lines, so no COMMIT of its own would
    // ever make it look for the dead instance's journal. It must find it while idle.
    let c = Case::new();
    let cfg = c.file_config();
    let mut survivor = c.start(&cfg);
    commit_ok(&mut survivor, &envelopes("alpha", 0..2));
    let mut d = c.start(&cfg);
    assert_eq!(d.begin(), Reply::Ok);
    for l in envelopes("beta", 0..4) {
        assert_eq!(d.send(&l), Reply::DeferCommit);
    }
    d.signal(libc::SIGKILL);
    d.wait_exit(T);
    assert!(d.stdout_rest(T).is_empty());
    wait_for(T, "the idle survivor delivered the dead instance's journal", || (c.out_lines().len() >= 6).then_some(()), || survivor.diagnostics());
    let out = c.out_lines();
    assert_json_records(&out[..2], "alpha", 0..2);
    assert_json_records(&out[2..], "beta", 0..4);
    wait_stats(&survivor, &["journal_adopted=4"]);
    finish(survivor);
    assert!(c.journal_files().is_empty(), "{:?}", c.journal_files());
}

/// Event `n` as the version 2 template renders it (docs/event-schema.md): `uuid` is empty for a
/// message numbered by mmsequence, or the version 1 uuid of a message queued before an upgrade.
fn envelope_v2(cluster: &str, n: u64, uuid: &str) -> String {
    format!(
        "QAB2\t2026-12-02T06:32:40.644157+00:00/{n}\t{uuid}\t{ENVELOPE_TIME}\t{cluster}\t127.0.0.1\tq-node-1\t {}",
        sender::csv_body(n)
    )
}

/// An upgrade loses nothing: a version 1 journal left by an instance of the old version that died
/// mid-transaction is adopted and delivered by the new version, with its uuids as ids, next to
/// version 2 lines; and the version 2 lines of messages queued before the upgrade (they carry
/// their `$.qab_uuid`) keep their version 1 ids.
#[test]
fn upgrade_delivers_version_1_journals_and_keeps_their_ids() {
    let c = Case::new();
    let cfg = c.file_config();
    let mut old = c.start(&cfg);
    assert_eq!(old.begin(), Reply::Ok);
    let v1_open = envelopes("alpha", 0..3);
    for l in &v1_open {
        assert_eq!(old.send(l), Reply::DeferCommit);
    }
    old.signal(libc::SIGKILL);
    old.wait_exit(T);
    assert_eq!(journal_lines(&c.journal_files()[0]), v1_open, "the old instance's journal holds version 1 lines");

    let mut new = c.start(&cfg);
    wait_for(T, "the version 1 journal delivered", || (c.out_lines().len() >= 3).then_some(()), || new.diagnostics());
    // Messages queued before the upgrade, rendered again by the version 2 template, and new ones.
    let lines: Vec<String> = (3..5).map(|n| envelope_v2("alpha", n, &uuid(n))).chain((5..7).map(|n| envelope_v2("alpha", n, ""))).collect();
    commit_ok(&mut new, &lines);
    finish(new);
    let out = c.out_lines();
    assert_json_records(&out[..5], "alpha", 0..5);
    for (line, n) in out[5..].iter().zip(5..7) {
        let v: Value = serde_json::from_str(line).unwrap();
        let want = expected_value("alpha", n);
        for key in ["time", "cluster", "node", "fromhost_ip", "client_ip", "user", "operation", "file_id", "path", "action"] {
            assert_eq!(v[key], want[key], "{key} of event {n}: {line}");
        }
        let id = v["id"].as_str().unwrap();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != uuid(n), "event {n}: id hashed from the line: {line}");
    }
    assert_ne!(out[5], out[6]);
    assert!(c.journal_files().is_empty(), "{:?}", c.journal_files());
}

/// Event `n` as the version 3 template renders it (packaging/rsyslog/qumulo-audit-broker.conf):
/// `seq` is mmsequence's number (only from a `qab_deliver` of an earlier version, empty
/// otherwise), `cluster` the `$.cluster` a ruleset set (else empty), `input` the listener's name.
fn envelope_v3(cluster: &str, input: &str, n: u64, seq: &str, uuid: &str) -> String {
    format!(
        "QAB3\t2026-12-02T06:32:40.644157+00:00/{seq}\t{uuid}\t{ENVELOPE_TIME}\t{cluster}\t{input}\t127.0.0.1\tq-node-1\t {}",
        sender::csv_body(n)
    )
}

/// An upgrade from version 2 loses nothing and keeps the ids: a version 2 journal left by an
/// instance that died mid-transaction is delivered by the new version; the same messages sent
/// again by rsyslog, now rendered by the version 3 template (with the mmsequence numbers they
/// carry and a `%uuid%` made late), give the same events with the same ids; new messages from a
/// cluster's own listener (no `$.cluster`) are filed under the cluster the listener names, with
/// their uuids as ids.
#[test]
fn upgrade_from_version_2_keeps_the_ids_of_numbered_messages() {
    let c = Case::new();
    let cfg = c.file_config();
    let mut old = c.start(&cfg);
    assert_eq!(old.begin(), Reply::Ok);
    let v2_open: Vec<String> = (0..3).map(|n| envelope_v2("alpha", n, "")).collect();
    for l in &v2_open {
        assert_eq!(old.send(l), Reply::DeferCommit);
    }
    old.signal(libc::SIGKILL);
    old.wait_exit(T);
    assert_eq!(journal_lines(&c.journal_files()[0]), v2_open, "the old instance's journal holds version 2 lines");

    let mut new = c.start(&cfg);
    wait_for(T, "the version 2 journal delivered", || (c.out_lines().len() >= 3).then_some(()), || new.diagnostics());
    let again = (0..3).map(|n| envelope_v3("alpha", "shared-port-10514", n, &n.to_string(), &format!("{:032X}", 0xdead_0000u64 + n)));
    let fresh = (3..5).map(|n| envelope_v3("", "qab-alpha", n, "", &uuid(n)));
    let lines: Vec<String> = again.chain(fresh).collect();
    commit_ok(&mut new, &lines);
    finish(new);
    let out = c.out_lines();
    assert_eq!(out.len(), 8, "{out:#?}");
    for n in 0..3 {
        let (journaled, resent) = (&out[n], &out[3 + n]);
        assert_eq!(journaled, resent, "event {n}: the same record, id included, before and after the upgrade");
        let v: Value = serde_json::from_str(resent).unwrap();
        let want = expected_value("alpha", n as u64);
        for key in ["time", "cluster", "node", "fromhost_ip", "client_ip", "user", "operation", "file_id", "path", "action"] {
            assert_eq!(v[key], want[key], "{key} of event {n}: {resent}");
        }
        let id = v["id"].as_str().unwrap();
        assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !id.starts_with("0000"), "event {n}: hashed from the version 2 line: {resent}");
    }
    assert_ne!(out[0], out[1]);
    assert_json_records(&out[6..], "alpha", 3..5);
    assert!(c.journal_files().is_empty(), "{:?}", c.journal_files());
}

/// A version 2 line that lacks its unique stamp (a destination file of version 2 beside a
/// `qab_deliver` that no longer numbers) or its cluster (beside cluster rulesets that no longer
/// set `$.cluster`) is still delivered, and the instance says so once per kind, naming the fix.
#[test]
fn version_2_lines_from_a_mixed_upgrade_are_warned_about_once() {
    let c = Case::new();
    let mut d = c.start(&c.file_config());
    let unstamped = |n: u64| format!("QAB2\t2026-12-02T06:32:40.644157+00:00/\t\t{ENVELOPE_TIME}\talpha\t127.0.0.1\tq-node-1\t {}", sender::csv_body(n));
    let no_cluster = |n: u64| envelope_v2("", n, "");
    let lines = vec![unstamped(0), unstamped(1), no_cluster(2), no_cluster(3), envelope_v2("alpha", 4, "")];
    commit_ok(&mut d, &lines);
    let stderr = finish(d);
    assert_eq!(c.out_lines().len(), 5, "all delivered");
    assert_eq!(stderr.matches("envelope version 2 without mmsequence's number or a uuid").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("envelope version 2 without a cluster").count(), 1, "{stderr}");
    assert!(stderr.contains("qab_envelope_v3"), "names the fix: {stderr}");
}

#[test]
fn sigterm_exits_promptly_idle_mid_transaction_and_while_retrying() {
    // Idle.
    let c = Case::new();
    let mut d = c.start(&c.file_config());
    d.sigterm();
    let t0 = Instant::now();
    d.wait_exit(T);
    assert!(t0.elapsed() < EXIT_WITHIN, "exit took {:?}", t0.elapsed());
    assert!(d.stdout_rest(T).is_empty());

    // Mid-transaction: nothing delivered, nothing acknowledged.
    let mut d = c.start(&c.file_config());
    assert_eq!(d.begin(), Reply::Ok);
    for l in envelopes("alpha", 0..3) {
        assert_eq!(d.send(&l), Reply::DeferCommit);
    }
    d.sigterm();
    let t0 = Instant::now();
    d.wait_exit(T);
    assert!(t0.elapsed() < EXIT_WITHIN, "exit took {:?}", t0.elapsed());
    assert!(d.stdout_rest(T).is_empty());
    assert!(c.out_lines().is_empty());

    // During a COMMIT whose delivery is being retried: exits, only dots were written.
    let m = MockHttp::start();
    m.fail_for(Duration::from_secs(3600), 503);
    let c2 = Case::new();
    let cfg = c2.config("retrying", ConfigToml::http(&format!("{}/ingest", m.url())).retry("keepalive_ms", 100).backoff_ms(100, 500));
    let mut d = c2.start(&cfg);
    assert_eq!(d.begin(), Reply::Ok);
    for l in envelopes("alpha", 0..3) {
        assert_eq!(d.send(&l), Reply::DeferCommit);
    }
    d.write_line("COMMIT TRANSACTION");
    m.wait_until(T, "two failed attempts", |m| (m.count_status(503) >= 2).then_some(()));
    d.sigterm();
    let t0 = Instant::now();
    d.wait_exit(T);
    assert!(t0.elapsed() < EXIT_WITHIN, "exit took {:?}\n{}", t0.elapsed(), d.diagnostics());
    let rest = d.stdout_rest(T);
    assert!(rest.iter().all(|&b| b == b'.'), "only keep-alives, no reply: {:?}", String::from_utf8_lossy(&rest));
    assert!(m.ndjson_records().is_empty());
}

/// Asserts the program exits within [`EXIT_WITHIN`] of `t0` and wrote nothing on stdout but
/// keep-alive dots.
fn assert_prompt_exit_without_reply(d: &mut OmprogDriver, t0: Instant) {
    d.wait_exit(T);
    assert!(t0.elapsed() < EXIT_WITHIN, "exit took {:?}\n{}", t0.elapsed(), d.diagnostics());
    let rest = d.stdout_rest(T);
    assert!(rest.iter().all(|&b| b == b'.'), "no reply, only keep-alives: {:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn eof_or_sigterm_while_a_delivery_is_in_flight_exits_promptly() {
    // A big open transaction whose first batches are on their way to a slow destination
    // (rsyslog closes stdin at shutdown whatever the program is doing).
    for sigterm in [false, true] {
        let m = MockHttp::start();
        m.set_delay(Duration::from_secs(6));
        let c = Case::new();
        let cfg = c.config("slow", ConfigToml::http(&format!("{}/ingest", m.url())).max_events(10));
        let mut d = c.start(&cfg);
        assert_eq!(d.begin(), Reply::Ok);
        let lines = envelopes("alpha", 0..400); // > 64 KiB: handed to the parse stage before COMMIT
        for l in &lines {
            assert_eq!(d.send(l), Reply::DeferCommit);
        }
        m.wait_until(T, "a request in flight", |m| (m.requests_received() > 0).then_some(()));
        let t0 = Instant::now();
        if sigterm {
            d.sigterm();
        } else {
            d.close_stdin();
        }
        assert_prompt_exit_without_reply(&mut d, t0);
        // Nothing acknowledged: the journal still holds the whole open transaction.
        let journals = c.journal_files();
        assert_eq!(journals.len(), 1, "{journals:?}");
        assert_eq!(journal_lines(&journals[0]), lines, "sigterm: {sigterm}");
    }
}

#[test]
fn eof_during_a_retried_commit_exits_promptly() {
    let m = MockHttp::start();
    m.fail_for(Duration::from_secs(3600), 503);
    let c = Case::new();
    let cfg = c.config("retrying", ConfigToml::http(&format!("{}/ingest", m.url())).retry("keepalive_ms", 100).backoff_ms(100, 500));
    let mut d = c.start(&cfg);
    assert_eq!(d.begin(), Reply::Ok);
    let lines = envelopes("alpha", 0..3);
    for l in &lines {
        assert_eq!(d.send(l), Reply::DeferCommit);
    }
    d.write_line("COMMIT TRANSACTION");
    m.wait_until(T, "two failed attempts", |m| (m.count_status(503) >= 2).then_some(()));
    // rsyslog gave up waiting (its worker was cancelled at shutdown) and closes our stdin.
    let t0 = Instant::now();
    d.close_stdin();
    assert_prompt_exit_without_reply(&mut d, t0);
    assert!(m.ndjson_records().is_empty());
    let journals = c.journal_files();
    assert_eq!(journals.len(), 1, "{journals:?}");
    assert_eq!(journal_lines(&journals[0]), lines);
}

// ---------------------------------------------------------------- 8. bad lines

#[test]
fn bad_lines_are_dead_lettered_and_acknowledged() {
    let c = Case::new();
    let mut d = c.start(&c.config("file", c.file_dest().set("input", "max_line", 1024)));
    let long = envelope_with_msg("alpha", 99, &format!(" {}", sender::csv_body(99).replace("file-99", &"x".repeat(1100))));
    let nul = b"10.0.0.1,\"AD\\alice\",smb2,fs_write_data,ok,1,\"/share/fi\0le.txt\",\"\"".to_vec();
    let bad: Vec<(Vec<u8>, &str)> = vec![
        (b"garbage".to_vec(), "expected 8 CSV fields"),
        (b"\xff\xfe bad \xc3\x28".to_vec(), "not valid UTF-8"),
        (nul, "NUL byte"),
        (long.clone().into_bytes(), "longer than the maximum of 1024 bytes"),
    ];
    assert_eq!(d.begin(), Reply::Ok);
    assert_eq!(d.send(&envelope("alpha", 0)), Reply::DeferCommit);
    for (line, _) in &bad {
        assert_eq!(d.send_bytes(line), Reply::DeferCommit);
    }
    assert_eq!(d.send(""), Reply::DeferCommit, "an empty line is skipped, not an error");
    assert_eq!(d.send(&envelope("alpha", 1)), Reply::DeferCommit);
    assert_eq!(d.commit(), Reply::Ok);
    assert_json_records(&c.out_lines(), "alpha", 0..2);

    let dead = c.dead_entries();
    assert_eq!(dead.len(), bad.len(), "{dead:#?}");
    for (line, reason) in &bad {
        // Entries are not ordered: an over-long line is dead-lettered as it is read.
        let found: Vec<&Value> = dead.iter().filter(|e| e["reason"].as_str().unwrap().contains(reason)).collect();
        assert_eq!(found.len(), 1, "one entry with reason {reason:?} in {dead:#?}");
        let entry = found[0];
        assert_eq!(entry["kind"], "parse_error", "{entry}");
        assert_eq!(entry["destination"], "file", "{entry}");
        assert!(entry["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{entry}");
        let got = entry["line"].as_str().unwrap();
        match std::str::from_utf8(line) {
            Ok(text) if text.len() <= 1024 => assert_eq!(got, text),
            Ok(text) => assert!(text.starts_with(got) && got.len() > 1024, "kept the start of the long line"),
            Err(_) => {
                assert_eq!(got, String::from_utf8_lossy(line));
                assert_eq!(entry["invalid_utf8"], true);
            }
        }
    }
    // No cluster is invented for a line that names none.
    assert!(dead.iter().all(|e| e.get("cluster").is_none()), "{dead:?}");

    // Still running and answering.
    commit_ok(&mut d, &envelopes("alpha", 2..4));
    assert_json_records(&c.out_lines(), "alpha", 0..4);
    wait_stats(&d, &["parse_errors=4", "dead_lettered=4", "delivered=4"]);
    // Bad lines without a transaction are acknowledged too.
    assert_eq!(d.send("more garbage"), Reply::Ok);
    assert_eq!(c.dead_entries().len(), 5);
    finish(d);
}

/// Where this trace's process finished the first `fdatasync`/`fsync` of `path` (the line of the
/// call or of its `<... resumed>` when another thread's call came between), if any.
fn synced_at(trace: &[&str], path: &str) -> Option<usize> {
    let fd_path = format!("<{path}>)");
    let start = trace.iter().position(|l| (l.contains(" fdatasync(") || l.contains(" fsync(")) && l.contains(&fd_path))?;
    if !trace[start].contains("<unfinished ...>") {
        return Some(start);
    }
    let pid = trace[start].split_whitespace().next()?;
    let resumed = trace[start..].iter().position(|l| l.starts_with(&format!("{pid} ")) && l.contains("sync resumed>"))?;
    Some(start + resumed)
}

#[test]
fn dead_letter_entries_reach_the_disk_before_the_commit_ok_when_fsync_is_on() {
    // Seen from outside with strace: with a file destination's `fsync` (the shipped default),
    // the dead-letter file is synced after the transaction's entry is written and before
    // COMMIT is answered; without `fsync`, it is never synced (no cost where none is promised).
    for fsync in [true, false] {
        let c = Case::new();
        let cfg = c.config("file", c.file_dest().dest("fsync", fsync));
        let trace_path = c.path("strace.txt");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-y", "-e", "trace=fdatasync,fsync,write", "-o"]).arg(&trace_path);
        cmd.arg(BIN).args(["omprog", "--config"]).arg(&cfg);
        let mut d = OmprogDriver::spawn_command(cmd);
        d.handshake();
        commit_ok(&mut d, &[envelope("alpha", 0), "garbage".to_string(), envelope("alpha", 1)]);
        assert_json_records(&c.out_lines(), "alpha", 0..2);
        assert_eq!(c.dead_entries().len(), 1, "the garbage line is dead-lettered");
        finish(d);
        let text = std::fs::read_to_string(&trace_path).expect("strace wrote its trace (is strace installed?)");
        let trace: Vec<&str> = text.lines().collect();
        let dead = c.dead().display().to_string();
        let written = trace.iter().position(|l| l.contains(" write(") && l.contains(&format!("<{dead}>")));
        let written = written.unwrap_or_else(|| panic!("no write to {dead} in the trace:\n{text}"));
        // Replies on stdout: OK (handshake), OK (BEGIN), DEFER_COMMIT x3, OK (COMMIT).
        let oks: Vec<usize> = (0..trace.len()).filter(|&i| trace[i].contains(" write(1<") && trace[i].contains("\"OK\\n\"")).collect();
        assert_eq!(oks.len(), 3, "three OK replies:\n{text}");
        let commit_ok_at = oks[2];
        match (fsync, synced_at(&trace, &dead)) {
            (true, Some(at)) => {
                assert!(written < at, "the entry is written before the sync:\n{text}");
                assert!(at < commit_ok_at, "the dead-letter file is synced before COMMIT is answered:\n{text}");
            }
            (true, None) => panic!("fsync = true: the dead-letter file was never synced:\n{text}"),
            (false, None) => {}
            (false, Some(_)) => panic!("fsync = false: the dead-letter file was synced:\n{text}"),
        }
    }
}

// ---------------------------------------------------------------- 9. SIGHUP

#[test]
fn sighup_reopens_the_file_and_the_dead_letter_file() {
    let c = Case::new();
    let mut d = c.start(&c.file_config());
    let mut a = envelopes("alpha", 0..3);
    a.push("garbage A".into());
    commit_ok(&mut d, &a);
    assert_json_records(&c.out_lines(), "alpha", 0..3);
    assert_eq!(c.dead_entries().len(), 1);

    // logrotate: move both files away, then HUP (omprog's hup.signal).
    let rotated = c.path("out.ndjson.1");
    let rotated_dead = c.path("dead.ndjson.1");
    std::fs::rename(c.out(), &rotated).unwrap();
    std::fs::rename(c.dead(), &rotated_dead).unwrap();
    d.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(200)); // let the signal land

    let mut b = envelopes("alpha", 3..6);
    b.insert(1, "garbage B".into());
    commit_ok(&mut d, &b);
    assert_json_records(&c.out_lines(), "alpha", 3..6);
    assert_json_records(&read_complete_lines(&rotated), "alpha", 0..3);
    let dead = c.dead_entries();
    assert_eq!(dead.len(), 1, "the new dead-letter file: {dead:?}");
    assert_eq!(dead[0]["line"], "garbage B");
    let old: Vec<String> = read_complete_lines(&rotated_dead);
    assert_eq!(old.len(), 1, "{old:?}");
    assert!(old[0].contains("garbage A"));
    finish(d);
}

// ---------------------------------------------------------------- 10. Elasticsearch bulk and Splunk HEC

#[test]
fn elasticsearch_bulk_ids_429_retries_400_dead_letters_and_replays_conflict() {
    let c = Case::new();
    let m = MockHttp::start();
    let cfg = c.config("es", ConfigToml::bulk(&m.url()).format("json").retry("initial_backoff_ms", 50));
    let mut d = c.start(&cfg);
    m.bulk_item_429(ItemSelector::NextN(3));
    m.reject_marker("file-5.txt");
    let lines = envelopes("alpha", 0..10);
    commit_ok(&mut d, &lines);

    let reqs = m.requests();
    assert!(reqs.iter().all(|r| r.path == "/_bulk" && r.status == 200), "{}", m.summary());
    assert_eq!(reqs.len(), 2, "one request, one retry of the 429 items: {}", m.summary());
    let docs = m.es_docs();
    let mut ids: Vec<String> = docs.iter().map(|doc| doc.id.clone()).collect();
    ids.sort();
    let want_ids: Vec<String> = (0..10).filter(|&n| n != 5).map(uuid).collect();
    assert_eq!(ids, want_ids, "_id is the event id");
    for doc in &docs {
        let n = (0..10).find(|&n| uuid(n) == doc.id).unwrap();
        assert_eq!(doc.index, "qumulo-audit");
        assert_eq!(doc.source, expected_value("alpha", n));
        assert_eq!(doc.source["id"], doc.id);
        assert_eq!(doc.version, 1);
    }
    // The 429 items were answered 429 first, then created.
    let items = m.es_items();
    for n in 0..3 {
        let st: Vec<u16> = items.iter().filter(|i| i.id == uuid(n)).map(|i| i.status).collect();
        assert_eq!(st, vec![429, 201], "item {n}");
    }
    // The 400 item is in the dead-letter file, once.
    let dead = c.dead_entries();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "rejected");
    assert_eq!(dead[0]["destination"], "es");
    assert!(dead[0]["reason"].as_str().unwrap().contains("400"), "{}", dead[0]);
    assert!(dead[0]["reason"].as_str().unwrap().contains("mapper_parsing_exception"), "{}", dead[0]);
    assert!(dead[0]["record"].as_str().unwrap().contains(&uuid(5)), "{}", dead[0]);

    // A replay (rsyslog re-sends after a failure): 409 conflicts, never a second document.
    m.clear_faults();
    commit_ok(&mut d, &lines);
    assert_eq!(m.es_conflicts(), 9);
    assert_eq!(m.es_unique_ids(), 10, "the once-rejected item is created now, the rest conflict");
    assert!(m.es_docs().iter().all(|doc| doc.version == 1));
    assert_eq!(c.dead_entries().len(), 1, "conflicts are not dead-lettered");
    finish(d);
}

#[test]
fn splunk_hec_token_fields_wrong_token_and_gzip() {
    let c = Case::new();
    let m = MockHttp::start();
    let token = c.path("hec.token");
    write_secret(&token, &format!("{DEFAULT_HEC_TOKEN}\n"));
    let cfg = c.config(
        "hec",
        ConfigToml::hec(&m.url(), &token)
            .dest("gzip", false)
            .retry("max_elapsed_secs", 2)
            .retry("keepalive_ms", 200)
            .backoff_ms(100, 400),
    );
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut d = c.start(&cfg);
    commit_ok(&mut d, &envelopes("alpha", 0..4));

    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/services/collector/event");
    assert_eq!(reqs[0].header("authorization"), Some(format!("Splunk {DEFAULT_HEC_TOKEN}").as_str()));
    assert!(!reqs[0].gzip);
    let events = m.hec_events();
    assert_eq!(events.len(), 4);
    for (ev, n) in events.iter().zip(0..) {
        let keys: Vec<&str> = ev.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, ["event", "host", "index", "source", "sourcetype", "time"], "{ev}");
        assert_eq!(ev["time"].as_f64(), Some(1780757548.0), "{ev}");
        assert_eq!(ev["host"], "q-node-1");
        assert_eq!(ev["source"], "qumulo:alpha");
        assert_eq!(ev["sourcetype"], "qumulo:audit");
        assert_eq!(ev["index"], "qumulo-audit");
        assert_eq!(ev["event"], expected_value("alpha", n));
    }
    let stderr = d.stderr_text();
    assert!(!stderr.contains(DEFAULT_HEC_TOKEN), "the token is never logged:\n{stderr}");
    assert!(!stderr.contains("WARN"), "no warning for a 0600 token and 0640 config:\n{stderr}");

    // A wrong token is a COMMIT error (retryable), never a dead letter.
    m.set_hec_token("rotated-token");
    assert_eq!(d.begin(), Reply::Ok);
    let batch = envelopes("alpha", 4..6);
    for l in &batch {
        assert_eq!(d.send(l), Reply::DeferCommit);
    }
    match d.commit() {
        Reply::Error(t) => assert!(t.starts_with("ERROR destination unavailable") && t.contains("403"), "{t}"),
        other => panic!("COMMIT with a wrong token answered {other:?}\n{}", d.diagnostics()),
    }
    assert!(m.count_status(403) >= 2, "{}", m.summary());
    assert!(c.dead_entries().is_empty(), "a wrong token must not dead-letter: {:?}", c.dead_entries());
    assert_eq!(m.hec_events().len(), 4);
    m.set_hec_token(DEFAULT_HEC_TOKEN);
    commit_ok(&mut d, &batch);
    assert_eq!(m.hec_events().len(), 6);
    assert_eq!(m.hec_events()[5]["event"], expected_value("alpha", 5));
    finish(d);

    // gzip = true
    let m2 = MockHttp::start();
    let c2 = Case::new();
    write_secret(&token, &format!("{DEFAULT_HEC_TOKEN}\n"));
    let cfg = c2.config("hecgz", ConfigToml::hec(&m2.url(), &token).dest("gzip", true));
    let mut d = c2.start(&cfg);
    commit_ok(&mut d, &envelopes("beta", 0..20));
    let reqs = m2.requests();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].gzip && reqs[0].header("content-encoding") == Some("gzip"));
    assert!(reqs[0].wire_len < reqs[0].body.len(), "compressed on the wire");
    let got: Vec<Value> = m2.hec_events().into_iter().map(|e| e["event"].clone()).collect();
    assert_eq!(got, (0..20).map(|n| expected_value("beta", n)).collect::<Vec<_>>());
    finish(d);
}

#[test]
fn splunk_hec_400_dead_letters_the_bad_event_without_duplicating_the_others() {
    // Splunk answers 400 "Invalid data format" with the index of the bad event and keeps the
    // events before it (the mock does the same): those must not be sent again, Splunk does not
    // de-duplicate.
    let c = Case::new();
    let m = MockHttp::start();
    let token = c.path("hec.token");
    write_secret(&token, DEFAULT_HEC_TOKEN);
    let cfg = c.config("hec", ConfigToml::hec(&m.url(), &token));
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut d = c.start(&cfg);
    m.reject_marker("file-3.txt");
    commit_ok(&mut d, &envelopes("alpha", 0..10));
    let paths = |m: &MockHttp| -> Vec<String> {
        m.hec_events().iter().map(|e| e["event"]["path"].as_str().unwrap().trim_start_matches("/share/").to_string()).collect()
    };
    let want = |skip: &[u64], upto: u64| -> Vec<String> {
        (0..upto).filter(|n| !skip.contains(n)).map(|n| format!("file-{n}.txt")).collect()
    };
    assert_eq!(paths(&m), want(&[3], 10), "every good event exactly once, in order\n{}", m.summary());
    let got: Vec<Value> = m.hec_events().into_iter().map(|e| e["event"].clone()).collect();
    assert_eq!(got, (0..10).filter(|&n| n != 3).map(|n| expected_value("alpha", n)).collect::<Vec<_>>());
    let dead = c.dead_entries();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "rejected");
    assert!(dead[0]["record"].as_str().unwrap().contains("/share/file-3.txt"), "{}", dead[0]);
    assert!(dead[0]["reason"].as_str().unwrap().contains("400"), "{}", dead[0]);

    // The bad event last, then first, in its batch.
    m.clear_faults();
    m.reject_marker("file-12.txt");
    commit_ok(&mut d, &envelopes("alpha", 10..13));
    m.reject_marker("file-13.txt");
    commit_ok(&mut d, &envelopes("alpha", 13..16));
    assert_eq!(paths(&m), want(&[3, 12, 13], 16), "{}", m.summary());
    assert_eq!(c.dead_entries().len(), 3);
    finish(d);
}

// ---------------------------------------------------------------- 11. syslog

/// A syslog destination sending CEF to `addr`, with `more` keys.
fn syslog_config(c: &Case, name: &str, addr: std::net::SocketAddr, more: &[(&str, toml::Value)]) -> PathBuf {
    let cfg = more.iter().fold(ConfigToml::syslog(addr).format("cef"), |cfg, (k, v)| cfg.dest(k, v.clone()));
    c.config(name, cfg)
}

/// Waits for exactly `n` messages (and a moment more, to see that no extra arrives).
fn settle<M>(wait: impl Fn() -> Vec<M>, n: usize) -> Vec<M> {
    let _ = support::try_wait_for(T, || (wait().len() >= n).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    wait()
}

#[test]
fn syslog_tcp_octet_counting_and_newline_and_udp() {
    let c = Case::new();

    // TCP, octet counting (default), RFC 5424 (default).
    let rx = SyslogTcpReceiver::start();
    let mut d = c.start(&syslog_config(&c, "tcp5424", rx.addr(), &[]));
    commit_ok(&mut d, &envelopes("alpha", 0..5));
    commit_ok(&mut d, &envelopes("alpha", 5..8));
    let msgs = settle(|| rx.messages(), 8);
    assert_eq!(msgs.len(), 8, "{:?}", rx.texts());
    for (m, n) in msgs.iter().zip(0..) {
        assert_eq!(m.framing, RxFraming::OctetCounted);
        assert_eq!(m.text(), format!("<110>1 2026-06-06T14:52:28Z q-node-1 qumulo-audit - fs_write_data - {}", expected_cef("alpha", n)));
    }
    assert_eq!(rx.connections(), 1, "one connection kept across batches");
    assert!(rx.errors().is_empty(), "{:?}", rx.errors());
    finish(d);

    // TCP, newline framing, RFC 5424.
    let rx = SyslogTcpReceiver::start();
    let mut d = c.start(&syslog_config(&c, "tcpnl", rx.addr(), &[("framing", "newline".into())]));
    commit_ok(&mut d, &envelopes("beta", 0..5));
    let msgs = settle(|| rx.messages(), 5);
    assert_eq!(msgs.len(), 5, "{:?}", rx.texts());
    for (m, n) in msgs.iter().zip(0..) {
        assert_eq!(m.framing, RxFraming::Newline);
        assert_eq!(m.text(), format!("<110>1 2026-06-06T14:52:28Z q-node-1 qumulo-audit - fs_write_data - {}", expected_cef("beta", n)));
    }
    finish(d);

    // UDP: one datagram per record; here with the RFC 3164 header and another facility.
    let rx = SyslogUdpReceiver::start();
    let mut d = c.start(&syslog_config(&c, "udp", rx.addr(), &[("protocol", "udp".into()), ("header", "rfc3164".into()), ("facility", 4.into())]));
    commit_ok(&mut d, &envelopes("gamma", 0..5));
    let msgs = settle(|| rx.messages(), 5);
    assert_eq!(msgs.len(), 5, "{:?}", rx.texts());
    let mut texts: Vec<String> = msgs.iter().map(|m| m.text()).collect();
    texts.sort_by_key(|t| sender::event_number(t));
    for (t, n) in texts.iter().zip(0..) {
        assert_eq!(t, &format!("<38>Jun  6 14:52:28 q-node-1 qumulo-audit: {}", expected_cef("gamma", n)));
    }
    assert!(msgs.iter().all(|m| m.framing == RxFraming::Datagram));
    finish(d);
}

#[test]
fn syslog_receiver_down_fails_the_commit_and_back_delivers() {
    let c = Case::new();
    let rx = SyslogTcpReceiver::start();
    let port = rx.port();
    let cfg = c.config(
        "tcp",
        ConfigToml::syslog(format!("127.0.0.1:{port}"))
            .format("cef")
            .retry("max_elapsed_secs", 2)
            .retry("keepalive_ms", 200)
            .backoff_ms(100, 400),
    );
    let mut d = c.start(&cfg);
    commit_ok(&mut d, &envelopes("alpha", 0..3));
    rx.wait_for(3, T);
    drop(rx); // closes its connections and the port
    std::thread::sleep(Duration::from_millis(300));
    let batch = envelopes("alpha", 3..6);
    assert_eq!(d.begin(), Reply::Ok);
    for l in &batch {
        assert_eq!(d.send(l), Reply::DeferCommit);
    }
    match d.commit() {
        Reply::Error(t) => assert!(t.starts_with("ERROR destination unavailable"), "{t}"),
        other => panic!("COMMIT with the receiver down answered {other:?}\n{}", d.diagnostics()),
    }
    let rx = SyslogTcpReceiver::start_on(port);
    commit_ok(&mut d, &batch);
    let msgs = settle(|| rx.messages(), 3);
    let texts: Vec<String> = msgs.iter().map(|m| m.text()).collect();
    let want: Vec<String> = (3..6)
        .map(|n| format!("<110>1 2026-06-06T14:52:28Z q-node-1 qumulo-audit - fs_write_data - {}", expected_cef("alpha", n)))
        .collect();
    assert_eq!(texts, want, "the re-sent batch, exactly once, on a new connection");
    assert!(c.dead_entries().is_empty());
    finish(d);
}

#[test]
fn syslog_udp_record_too_big_for_a_datagram_is_dead_lettered_not_retried_forever() {
    let c = Case::new();
    let rx = SyslogUdpReceiver::start();
    let cfg = c.config(
        "udpbig",
        ConfigToml::syslog(rx.addr()).dest("protocol", "udp").format("cef").set("input", "max_line", 200000).retry("max_elapsed_secs", 2),
    );
    let mut d = c.start(&cfg);
    let huge = envelope_with_msg("alpha", 1, &format!(" {}", sender::csv_body(1).replace("file-1.txt", &format!("{}/file-1.txt", "d".repeat(70_000)))));
    commit_ok(&mut d, &[envelope("alpha", 0), huge, envelope("alpha", 2)]);
    let msgs = settle(|| rx.messages(), 2);
    let mut nums: Vec<u64> = msgs.iter().filter_map(|m| sender::event_number(&m.text())).collect();
    nums.sort();
    assert_eq!(nums, vec![0, 2]);
    let dead = c.dead_entries();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["kind"], "rejected");
    assert!(dead[0]["record"].as_str().unwrap().contains("/file-1.txt"));
    assert!(dead[0]["reason"].as_str().unwrap().contains("datagram"), "{}", dead[0]["reason"]);
    finish(d);
}

// ---------------------------------------------------------------- 12. check

fn run_check(args: &[&str], cfg: &Path) -> (i32, String, String) {
    let out = Command::new(BIN).arg("check").arg("--config").arg(cfg).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_subcommand() {
    let c = Case::new();
    let (code, out, err) = run_check(&[], &c.file_config());
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("configuration is valid"), "{out}");

    // Literal TOML on purpose: an unknown `[retry]` key, its line asserted.
    let bad = c.literal_config("bad", &format!("type = \"file\"\npath = {}", toml_path(&c.out())), "[retry]\nmax_elapsed = 5\n");
    let (code, out, err) = run_check(&[], &bad);
    assert_ne!(code, 0);
    assert!(err.contains("max_elapsed") && err.contains("line 15"), "{err}");
    assert!(out.is_empty(), "{out}");

    // --connect: a closed port fails, a listening one passes.
    let closed = support::free_port();
    let http = c.config("closed", ConfigToml::http(&format!("http://127.0.0.1:{closed}/ingest")));
    let (code, _, err) = run_check(&["--connect"], &http);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("unreachable"), "{err}");
    let (code, _, err) = run_check(&[], &http);
    assert_eq!(code, 0, "without --connect the network is not touched: {err}");
    let sys = c.config("sysclosed", ConfigToml::syslog(format!("127.0.0.1:{closed}")));
    let (code, _, err) = run_check(&["--connect"], &sys);
    assert_ne!(code, 0, "{err}");

    let m = MockHttp::start();
    let ok = c.config("open", ConfigToml::http(&format!("{}/ingest", m.url())));
    let (code, out, err) = run_check(&["--connect"], &ok);
    assert_eq!(code, 0, "{out}{err}");
    let rx = SyslogTcpReceiver::start();
    let sys = c.config("sysopen", ConfigToml::syslog(rx.addr()));
    let (code, out, err) = run_check(&["--connect"], &sys);
    assert_eq!(code, 0, "{out}{err}");
}
