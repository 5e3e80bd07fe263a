//! A real RabbitMQ node for tests (Debian's `rabbitmq-server`), started unprivileged-style from
//! a temp dir: its own node name (`qabtest-<pid>-<n>@localhost`), AMQP port, distribution port
//! and `epmd` port (so parallel tests share nothing), `HOME` in the temp dir for the Erlang
//! cookie, no plugins, `loopback_users = none` (guest may log in over 127.0.0.1). Boots in a few
//! seconds; [`RabbitMq::stop`] and [`RabbitMq::start_again`] stop and restart the same node with
//! its data (for the broker-down scenario). Dropping it stops the node and its `epmd`.
//!
//! Messages are read back with [`Reader`]: lapin's own consumer API (`basic_get`), which shares
//! no code with our sink (our rendering, routing and publishing live in `src/sink/amqp/`).
//! Queue depths come from `rabbitmqctl list_queues`, a second, independent view.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
const CTL: &str = "/usr/lib/rabbitmq/bin/rabbitmqctl";

static NODES: AtomicUsize = AtomicUsize::new(0);

/// True when `rabbitmq-server` is installed (`.ci/run` installs it).
pub fn available() -> bool {
    Path::new(SERVER).exists() && Path::new(CTL).exists()
}

pub struct RabbitMq {
    dir: tempfile::TempDir,
    pub node: String,
    pub port: u16,
    epmd_port: u16,
    dist_port: u16,
    child: Option<Child>,
    starts: u32,
}

impl RabbitMq {
    /// Starts a node and waits until it accepts AMQP connections (panics after 90 s).
    pub fn start() -> RabbitMq {
        assert!(available(), "{SERVER} is not installed (apt-get install rabbitmq-server; .ci/run does)");
        let dir = tempfile::Builder::new().prefix("qab-rabbitmq-").tempdir().expect("tempdir");
        let n = NODES.fetch_add(1, Ordering::SeqCst);
        let mut r = RabbitMq {
            node: format!("qabtest-{}-{n}@localhost", std::process::id()),
            port: super::free_port(),
            epmd_port: super::free_port(),
            dist_port: super::free_port(),
            dir,
            child: None,
            starts: 0,
        };
        std::fs::write(
            r.path("rabbitmq.conf"),
            format!("listeners.tcp.default = 127.0.0.1:{}\nloopback_users = none\nlog.file.level = info\n", r.port),
        )
        .expect("write rabbitmq.conf");
        std::fs::write(r.path("enabled_plugins"), "[].\n").expect("write enabled_plugins");
        std::fs::write(r.path("rabbitmq-env.conf"), "").expect("write rabbitmq-env.conf");
        r.start_again();
        r
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env("HOME", d)
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .current_dir(d);
    }

    /// `rabbitmqctl -n NODE args...`: its stdout, or its output as the error.
    pub fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(CTL);
        self.env(&mut cmd);
        let out = cmd.arg("-n").arg(&self.node).args(args).stdin(Stdio::null()).output().map_err(|e| format!("{CTL}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("rabbitmqctl {args:?}: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr)))
        }
    }

    pub fn ctl(&self, args: &[&str]) -> String {
        self.try_ctl(args).unwrap_or_else(|e| panic!("{e}\n{}", self.diagnostics()))
    }

    /// Starts the node (again, with the same data and ports) and waits for it.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the node is running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("server.out")).expect("server.out");
        let mut cmd = Command::new(SERVER);
        self.env(&mut cmd);
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("dup")).stderr(log);
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("{SERVER}: {e}")));
        self.starts += 1;
        let t0 = Instant::now();
        // await_startup fails at once until the node has registered with epmd: retry.
        loop {
            match self.try_ctl(&["await_startup", "--timeout", "60"]) {
                Ok(_) => break,
                Err(e) if t0.elapsed() > Duration::from_secs(90) => panic!("rabbitmq did not start: {e}\n{}", self.diagnostics()),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        eprintln!("rabbitmq {} up on 127.0.0.1:{} in {:.1}s", self.node, self.port, t0.elapsed().as_secs_f64());
    }

    /// Stops the node (`rabbitmqctl stop`), keeping its data; epmd stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = self.try_ctl(&["stop"]) {
                eprintln!("rabbitmqctl stop: {e}; killing {}", child.id());
                let _ = child.kill();
            }
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Closes every client connection (`rabbitmqctl close_all_connections`).
    pub fn close_all_connections(&self) -> String {
        self.ctl(&["close_all_connections", "test: connection cut"])
    }

    /// Messages in `queue` (`rabbitmqctl list_queues`), or `None` if it is not there.
    pub fn queue_depth(&self, queue: &str, vhost: &str) -> Option<u64> {
        let out = self.try_ctl(&["list_queues", "-p", vhost, "-q", "--no-table-headers", "name", "messages"]).ok()?;
        out.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(queue)).then(|| f.next().and_then(|n| n.parse().ok())).flatten()
        })
    }

    pub fn add_vhost(&self, vhost: &str) {
        self.ctl(&["add_vhost", vhost]);
        self.ctl(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]);
    }

    pub fn url(&self, vhost: &str) -> String {
        let v = if vhost == "/" { "%2f".to_string() } else { vhost.to_string() };
        format!("amqp://guest:guest@127.0.0.1:{}/{v}", self.port)
    }

    pub fn diagnostics(&self) -> String {
        let mut s = format!("---- rabbitmq {} (port {}, starts {}) server.out:\n", self.node, self.port, self.starts);
        s.push_str(&super::file_text_for_panic(&self.path("server.out")));
        let log = self.path("log").join(format!("{}.log", self.node));
        s.push_str(&format!("\n---- {}:\n{}", log.display(), super::file_text_for_panic(&log)));
        s
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        self.stop();
        let _ = Command::new("epmd")
            .arg("-port")
            .arg(self.epmd_port.to_string())
            .arg("-kill")
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if std::env::var("TESTKIT_KEEP").is_ok_and(|v| v == "1") {
            let d = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
            eprintln!("kept {}", d.keep().display());
        }
    }
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Msg {
    pub body: String,
    pub exchange: String,
    pub routing_key: String,
    pub message_id: Option<String>,
    pub delivery_mode: Option<u8>,
    pub content_type: Option<String>,
    pub timestamp: Option<u64>,
    pub app_id: Option<String>,
}

/// A test's own AMQP client (lapin's consumer side), to declare topology and read messages.
pub struct Reader {
    conn: Connection,
    ch: Channel,
}

fn run<T>(what: &str, fut: impl std::future::Future<Output = lapin::Result<T>>) -> T {
    async_io::block_on(fut).unwrap_or_else(|e| panic!("{what}: {e}"))
}

impl Reader {
    pub fn connect(url: &str) -> Reader {
        let conn = run("connect", Connection::connect(url, ConnectionProperties::default()));
        let ch = run("channel", conn.create_channel());
        Reader { conn, ch }
    }

    /// A durable exchange of `kind`.
    pub fn exchange(&self, name: &str, kind: ExchangeKind) {
        let opts = ExchangeDeclareOptions { durable: true, ..Default::default() };
        run("exchange_declare", self.ch.exchange_declare(name, kind, opts, FieldTable::default()));
    }

    /// A durable classic queue bound to `exchange` with `binding`.
    pub fn queue(&self, name: &str, exchange: &str, binding: &str) {
        let opts = QueueDeclareOptions { durable: true, ..Default::default() };
        run("queue_declare", self.ch.queue_declare(name, opts, FieldTable::default()));
        run("queue_bind", self.ch.queue_bind(name, exchange, binding, QueueBindOptions::default(), FieldTable::default()));
    }

    pub fn purge(&self, queue: &str) {
        run("queue_purge", self.ch.queue_purge(queue, QueuePurgeOptions::default()));
    }

    /// Takes every message now in `queue` (auto-ack).
    pub fn drain(&self, queue: &str) -> Vec<Msg> {
        let mut out = Vec::new();
        while let Some(m) = run("basic_get", self.ch.basic_get(queue, BasicGetOptions { no_ack: true })) {
            let d = m.delivery;
            let p = &d.properties;
            out.push(Msg {
                body: String::from_utf8_lossy(&d.data).into_owned(),
                exchange: d.exchange.as_str().to_string(),
                routing_key: d.routing_key.as_str().to_string(),
                message_id: p.message_id().as_ref().map(|s| s.as_str().to_string()),
                delivery_mode: *p.delivery_mode(),
                content_type: p.content_type().as_ref().map(|s| s.as_str().to_string()),
                timestamp: *p.timestamp(),
                app_id: p.app_id().as_ref().map(|s| s.as_str().to_string()),
            });
        }
        out
    }

    pub fn close(self) {
        let _ = async_io::block_on(self.conn.close(200, "bye"));
    }
}
