//! Property test of the omprog state machine, in process (`omprog::run_on`) with a file
//! destination: for any sequence of BEGIN / message / COMMIT / garbage lines, the program
//! answers exactly one reply per line (after optional keep-alive dots), with the reply
//! rsyslog's protocol requires, and the destination ends up with exactly the good events of
//! committed transactions and of lines sent outside a transaction; bad lines are dead-lettered.
//!
//! `PROPTEST_CASES=100000 cargo test --release --test omprog_state` runs a long session.

use std::io::Cursor;

// Only the config builder of tests/support (the rest is not needed here).
#[allow(dead_code)]
#[path = "support/config.rs"]
mod config;

use proptest::prelude::*;
use qumulo_audit_broker::config::Config;
use qumulo_audit_broker::omprog;

#[derive(Clone, Debug)]
enum Step {
    Begin,
    Commit,
    /// A good audit line with this number.
    Good(u32),
    /// A line that is not an audit record.
    Garbage(Vec<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => Just(Step::Begin),
        2 => Just(Step::Commit),
        6 => any::<u32>().prop_map(Step::Good),
        1 => proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..64).prop_map(Step::Garbage),
    ]
}

fn good_line(n: u32) -> String {
    format!("<134>Jun  6 14:52:28 q-node-1 qumulo 10.0.0.1,\"AD\\alice\",smb2,fs_write_data,ok,{n},\"/share/file-{n}.txt\",\"\"")
}

/// What the destination must hold and the replies expected, from rsyslog's rules.
fn model(steps: &[Step]) -> (Vec<String>, Vec<u32>, usize) {
    let mut replies = vec!["OK".to_string()];
    let mut delivered = Vec::new();
    let mut open: Option<Vec<u32>> = None;
    let mut open_bad = 0;
    let mut bad = 0;
    for s in steps {
        match s {
            Step::Begin => {
                // A BEGIN without COMMIT continues the open transaction: rsyslog never re-sends
                // the messages already answered DEFER_COMMIT (runtime/action.c doTransaction,
                // rsyslog issue #2420), so they are delivered with the next COMMIT.
                if open.is_none() {
                    open = Some(Vec::new());
                }
                replies.push("OK".into());
            }
            Step::Commit => {
                if let Some(tx) = open.take() {
                    delivered.extend(tx);
                    bad += open_bad;
                    open_bad = 0;
                }
                replies.push("OK".into());
            }
            Step::Good(n) => match open.as_mut() {
                Some(tx) => {
                    tx.push(*n);
                    replies.push("DEFER_COMMIT".into());
                }
                None => {
                    delivered.push(*n);
                    replies.push("OK".into());
                }
            },
            Step::Garbage(_) => {
                if open.is_some() {
                    open_bad += 1;
                    replies.push("DEFER_COMMIT".into());
                } else {
                    bad += 1;
                    replies.push("OK".into());
                }
            }
        }
    }
    (replies, delivered, bad)
}

fn is_protocol_word(g: &[u8]) -> bool {
    let t = String::from_utf8_lossy(g);
    let t = t.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r');
    t.is_empty() || t.starts_with("BEGIN TRANSACTION") || t.starts_with("COMMIT TRANSACTION")
        || t.starts_with('<') || t.starts_with('{') || t.starts_with('|') || t.starts_with('-')
        || t.split(',').count() == 8 || t.split(',').count() == 9
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn replies_and_deliveries_follow_the_protocol(steps in proptest::collection::vec(step(), 0..40)) {
        // Garbage that happens to look like a protocol word or a record would make the model
        // ambiguous; such inputs are covered by the parser's own tests.
        prop_assume!(steps.iter().all(|s| !matches!(s, Step::Garbage(g) if is_protocol_word(g))));
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("events.ndjson");
        let dead_path = dir.path().join("dead.ndjson");
        let cfg_text = config::ConfigToml::file(&out_path)
            .journal_dir(&dir.path().join("journal"))
            .dead_letter(&dead_path)
            .stats_secs(0)
            .text();
        let mut cfg = Config::parse(&cfg_text).unwrap();
        cfg.source_path = dir.path().join("state.toml");

        let mut input = Vec::new();
        for s in &steps {
            match s {
                Step::Begin => input.extend_from_slice(b"BEGIN TRANSACTION"),
                Step::Commit => input.extend_from_slice(b"COMMIT TRANSACTION"),
                Step::Good(n) => input.extend_from_slice(good_line(*n).as_bytes()),
                Step::Garbage(g) => input.extend_from_slice(g),
            }
            input.push(b'\n');
        }
        let mut output = Vec::new();
        let code = omprog::run_on(cfg, Cursor::new(input), &mut output).unwrap();
        prop_assert_eq!(code, 0);

        let (want_replies, want_delivered, want_bad) = model(&steps);
        let text = String::from_utf8(output).unwrap();
        let got_replies: Vec<String> = text.lines().map(|l| l.trim_start_matches('.').to_string()).collect();
        prop_assert_eq!(got_replies, want_replies);
        prop_assert!(text.ends_with('\n') || text.is_empty());

        let delivered: Vec<u32> = std::fs::read_to_string(&out_path).unwrap_or_default().lines().map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["file_id"].as_str().unwrap().parse().unwrap()
        }).collect();
        prop_assert_eq!(delivered, want_delivered);
        let dead = std::fs::read_to_string(&dead_path).unwrap_or_default().lines().count();
        prop_assert_eq!(dead, want_bad);
        // Nothing is left unacknowledged in the journal after a clean EOF between transactions.
        let open_at_end = steps.iter().rev().find(|s| matches!(s, Step::Begin | Step::Commit)).is_some_and(|s| matches!(s, Step::Begin));
        let journals: usize = std::fs::read_dir(dir.path().join("journal")).map(|d| d.count()).unwrap_or(0);
        if !open_at_end {
            prop_assert_eq!(journals, 0);
        }
    }
}
