//! What the processing-tier tests (`tests/scale.rs` on Kafka, `tests/scale_amqp.rs` on
//! RabbitMQ) share: a `qumulo-audit-broker consume` process started from a config, stopped with
//! SIGTERM (its exit line read back) or SIGKILL, and the check that every delivered record
//! carries the event id the receiver fixed (read with serde_json, not with our code).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::ConfigToml;
use super::scenario::{with_common, write_config, BROKER};
use super::sender::event_number;

/// One `consume` process; its stderr (log lines, stats, the exit line) in `<name>.log`.
pub struct Consumer {
    child: Child,
    pub log: PathBuf,
}

impl Consumer {
    /// Writes `cfg` (with the common sections: dead-letter file, quick retries, stats every
    /// second, no journal) as `dir/<name>.toml` and starts `consume` on it.
    pub fn start(dir: &Path, name: &str, cfg: ConfigToml) -> Consumer {
        let path = write_config(&dir.join(format!("{name}.toml")), &with_common(cfg, &dir.join(name), false).text());
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let child = Command::new(BROKER).args(["consume", "--config"]).arg(&path).stdin(Stdio::null()).stdout(f.try_clone().unwrap()).stderr(f).spawn().unwrap();
        Consumer { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Events parsed but not delivered yet, by the last stats line (`events` - `delivered`).
    pub fn in_flight(&self) -> u64 {
        let t = self.log_text();
        field(&t, "stats:", "events").saturating_sub(field(&t, "stats:", "delivered"))
    }

    /// SIGTERM; waits for a clean exit (panics otherwise); returns the exit line's `messages=`,
    /// the stats `delivered=` and the whole log.
    pub fn terminate(mut self) -> (u64, u64, String) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert!(st.success(), "consume exited {st}\n{}", self.log_text());
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "consume did not exit on SIGTERM\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = self.log_text();
        assert!(text.contains("consume: exiting:"), "no exit line\n{text}");
        (field(&text, "consume: exiting:", "messages"), field(&text, "stats:", "delivered"), text)
    }

    /// SIGKILL (a crash: nothing is acknowledged or closed politely).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `key=N` on the last line containing `marker` (0 when absent).
pub fn field(text: &str, marker: &str, key: &str) -> u64 {
    let Some(line) = text.lines().rev().find(|l| l.contains(marker)) else { return 0 };
    line.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}="))?.parse().ok()).unwrap_or(0)
}

/// Checks every delivered record's `id` against `ids` (event number -> the id the receiver
/// fixed); returns the copies beyond the first (each with the same id).
pub fn check_ids(records: &[String], ids: &BTreeMap<u64, String>) -> u64 {
    let mut seen: BTreeMap<u64, u64> = BTreeMap::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_str(r).unwrap_or_else(|e| panic!("not JSON ({e}): {r}"));
        let k = event_number(r).unwrap_or_else(|| panic!("no event number: {r}"));
        let want = ids.get(&k).unwrap_or_else(|| panic!("event {k} delivered but never published by the receiver: {r}"));
        assert_eq!(v["id"].as_str(), Some(want.as_str()), "event {k}: the id the receiver fixed");
        *seen.entry(k).or_default() += 1;
    }
    seen.values().map(|&c| c - 1).sum()
}
