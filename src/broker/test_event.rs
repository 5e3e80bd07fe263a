//! `qumulo-audit-broker test-event CLUSTER`: sends one sample audit line to the cluster's
//! listener, as a Qumulo node would (syslog over TCP, CSV), and reports per destination whether
//! its programs received it and delivered it.
//!
//! How it knows: the destinations' counters ([`crate::status::gather`], the per-instance state
//! files) before and after; a destination passes once `lines_in` and `delivered` + dead-lettered
//! rose. Trade-off: no per-kind reader (the destination could be Splunk, Kafka...), so on a
//! broker carrying traffic a rise may be another event; on a quiet one it is this one. The
//! line's path names the test (`/qumulo-audit-broker/test-event-<time>`), so it can be found at
//! the destination. A shared port is reached from this host's address, which is usually no
//! node of the cluster: the event then arrives as cluster "unmapped" (said in the output). With
//! `[broker.tls]` the line goes over TLS ([`super::tls::send_line`]: the listener must present
//! its own certificate; in the x509 modes the listener's certificate, or `--client-cert`, is
//! presented as the client's).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use super::BrokerFile;
use crate::status::{gather, DestinationStatus, Target};

fn targets(b: &BrokerFile) -> Vec<Target> {
    b.destinations.iter().map(|d| Target { name: d.name.clone(), config: d.config.clone() }).collect()
}

fn moved(before: &DestinationStatus, after: &DestinationStatus) -> (bool, bool) {
    let (b, a) = (&before.totals, &after.totals);
    (a.lines_in > b.lines_in, a.delivered + a.dead_lettered > b.delivered + b.dead_lettered)
}

/// The sample line: RFC 3164 header and a Qumulo CSV body.
pub fn sample_line(now_secs: u64, nanos: u128) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (_, m, d) = crate::time::civil_from_days((now_secs / 86_400) as i64);
    let r = now_secs % 86_400;
    format!(
        "<134>{} {d:>2} {:02}:{:02}:{:02} qab-test-node qumulo 127.0.0.1,\"qumulo-audit-broker\",nfs3,fs_read_data,ok,{nanos},\"/qumulo-audit-broker/test-event-{nanos}\",\"\"",
        MONTHS[(m as usize).saturating_sub(1).min(11)],
        r / 3600,
        r / 60 % 60,
        r % 60
    )
}

/// Exit: 0 every destination delivered it, 1 some did not within `wait`, 2 bad arguments.
/// `client`: the certificate and key to present to a TLS listener (x509 modes).
pub fn run(b: &BrokerFile, cluster: &str, wait: Duration, client: Option<(&Path, &Path)>) -> i32 {
    let Some(c) = b.clusters.iter().find(|c| c.name.get_ref() == cluster) else {
        let names: Vec<&str> = b.clusters.iter().map(|c| c.name.get_ref().as_str()).collect();
        eprintln!("test-event: no [[cluster]] named {cluster:?} in {} (defined: {})", b.path.display(), if names.is_empty() { "none".into() } else { names.join(", ") });
        return 2;
    };
    let host = match b.globals.listen_address.as_str() {
        "0.0.0.0" | "::" | "" => "127.0.0.1",
        a => a,
    };
    let port = *c.port.get_ref();
    if !c.nodes.is_empty() {
        println!("test-event: port {port} is shared; unless this host's address is one of {:?}'s nodes, the event arrives as cluster \"unmapped\"", cluster);
    }
    let targets = targets(b);
    let before = gather(&targets, None);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let line = sample_line(now.as_secs(), now.as_nanos());
    let sent = match &b.globals.tls {
        Some(t) => super::tls::send_line(t, host, port, &line, client),
        None => TcpStream::connect((host, port))
            .and_then(|mut s| {
                s.write_all(line.as_bytes())?;
                s.write_all(b"\n")?;
                s.flush()
            })
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = sent {
        eprintln!("test-event: cannot send to cluster {cluster:?} at {host}:{port}: {e} (is rsyslog running the applied configuration?)");
        return 1;
    }
    let over = if b.globals.tls.is_some() { "over TLS " } else { "" };
    println!("test-event: sent one line {over}to cluster {cluster:?} at {host}:{port}: path /qumulo-audit-broker/test-event-{}", now.as_nanos());
    let deadline = Instant::now() + wait;
    let mut after = before.clone();
    loop {
        let all_done = after.iter().zip(&before).all(|(a, b)| moved(b, a) == (true, true));
        if all_done || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
        after = gather(&targets, None);
    }
    let mut failed = 0;
    for (b, a) in before.iter().zip(&after) {
        let verdict = match moved(b, a) {
            (_, true) => "delivered".to_string(),
            (true, false) => {
                failed += 1;
                format!("received, NOT delivered within {} s (see `qumulo-audit-broker status`)", wait.as_secs())
            }
            (false, false) => {
                failed += 1;
                format!("NOT received within {} s (rsyslog not running the applied configuration, or its queue is backed up)", wait.as_secs())
            }
        };
        println!("  destination {}: {verdict}", a.name);
    }
    i32::from(failed > 0)
}
