//! The `qumulo-audit-broker` command line: a thin layer over the library's subcommands.

use std::path::{Path, PathBuf};

use clap::{Parser as ClapParser, Subcommand};

use qumulo_audit_broker::broker::{self, BrokerFile};
use qumulo_audit_broker::config::{preflight, validate, Config};
use qumulo_audit_broker::omprog;
use qumulo_audit_broker::status;
use qumulo_audit_broker::sink::Sink;

use qumulo_audit_broker::convert;
use qumulo_audit_broker::format::Format;
use qumulo_audit_broker::input::{ClusterSource, ParserOptions, DEFAULT_MAX_LINE};


#[derive(ClapParser)]
#[command(name = "qumulo-audit-broker", version, about = "Qumulo audit logs to security events, delivered losslessly behind rsyslog omprog")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert audit log files (or stdin) into one rendered event per line on stdout.
    Convert {
        /// Output format.
        #[arg(long = "to", value_enum, default_value_t = Format::Json)]
        to: Format,
        /// Cluster name for lines that do not carry one.
        #[arg(long)]
        cluster: Option<String>,
        /// Derive the cluster from the sending node's hostname (`<cluster>-<node>`).
        #[arg(long, conflicts_with = "cluster")]
        cluster_from_hostname: bool,
        /// Longest accepted line in bytes (256 to 16777216); longer lines are errors.
        #[arg(long, default_value_t = DEFAULT_MAX_LINE, value_parser = validate::parse_max_line)]
        max_line: usize,
        /// Input files; stdin when none (or `-`).
        files: Vec<String>,
    },
    /// Run as rsyslog's omprog program: audit lines on stdin, one status line per line on stdout.
    Omprog {
        /// The destination's TOML config, or broker.toml with --destination.
        #[arg(long)]
        config: PathBuf,
        /// The [[destination]] of broker.toml to run.
        #[arg(long)]
        destination: Option<String>,
    },
    /// The processing tier: read envelopes from the config's `[source]` (a Kafka topic in a
    /// consumer group, or a RabbitMQ queue) and deliver them to its `[destination]`, committing
    /// offsets or acknowledging messages only after delivery (docs/scaling.md).
    Consume {
        /// The TOML config: a destination config with a `[source]` section.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a destination config as omprog start-up does, changing nothing on disk (and,
    /// with --connect, open the destination: this creates the destination file).
    Check {
        /// A destination's TOML config, or broker.toml (every destination, or --destination).
        #[arg(long, default_value = broker::DEFAULT_BROKER_TOML)]
        config: PathBuf,
        /// Only this [[destination]] of broker.toml.
        #[arg(long)]
        destination: Option<String>,
        /// Also connect to the destination.
        #[arg(long)]
        connect: bool,
    },
    /// Render the rsyslog drop-ins from broker.toml, validate them (rsyslogd -N1, and every
    /// destination as `check` does) and swap them in atomically; says what changed.
    Apply {
        #[arg(long, default_value = broker::DEFAULT_BROKER_TOML)]
        config: PathBuf,
        /// Print the diff and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Restart rsyslog afterwards (systemctl restart rsyslog).
        #[arg(long)]
        restart: bool,
        /// The directory apply owns.
        #[arg(long, default_value = "/etc/qumulo-audit-broker/rsyslog.d")]
        rsyslog_dir: PathBuf,
        /// rsyslog's main configuration.
        #[arg(long, default_value = "/etc/rsyslog.conf")]
        rsyslog_conf: PathBuf,
        /// The package's rsyslog file that defines the envelope template and includes --rsyslog-dir.
        #[arg(long, default_value = "/usr/share/qumulo-audit-broker/rsyslog/qumulo-audit-broker.conf")]
        template_conf: PathBuf,
        /// The rsyslogd binary (for -N1).
        #[arg(long, default_value = "rsyslogd")]
        rsyslogd: String,
    },
    /// Send one sample audit line to a cluster's listener and report whether each destination
    /// received and delivered it.
    TestEvent {
        /// The [[cluster]] name.
        cluster: String,
        /// broker.toml (default: the copy apply installed, else broker.toml).
        #[arg(long, default_value = broker::DEFAULT_BROKER_TOML)]
        config: PathBuf,
        /// How long to wait for the destinations.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
        /// With [broker.tls] auth_mode x509/*: the client certificate to present (PEM; default:
        /// the listener's own cert_file).
        #[arg(long, requires = "client_key")]
        client_cert: Option<PathBuf>,
        /// Its private key (PEM; default: the listener's key_file).
        #[arg(long, requires = "client_cert")]
        client_key: Option<PathBuf>,
    },
    /// Print a broker.toml translated from the hand-written layout (active rsyslog drop-ins and
    /// the destination TOML files they name).
    Migrate {
        /// The hand-written rsyslog drop-ins.
        #[arg(long, default_value = "/etc/qumulo-audit-broker/rsyslog.d")]
        rsyslog_dir: PathBuf,
    },
    /// Per destination: events in/delivered/dead-lettered/retried (all instances), backlog
    /// (rsyslog queue, journals), last error, messages rsyslog discarded; exit 1 when something
    /// is failing, stuck or losing.
    Status {
        /// broker.toml, or one destination's TOML.
        #[arg(long, default_value = broker::DEFAULT_BROKER_TOML)]
        config: PathBuf,
        /// rsyslog's impstats file (default: the one apply configures, in [broker] log_dir).
        #[arg(long)]
        impstats: Option<PathBuf>,
        /// Also write the figures for node_exporter's textfile collector to this .prom file.
        #[arg(long)]
        prometheus: Option<PathBuf>,
    },
}

fn init_logging() {
    let pid = std::process::id();
    env_logger::Builder::from_env(env_logger::Env::default().filter_or("QAB_LOG", "info"))
        .target(env_logger::Target::Stderr)
        .format(move |buf, record| {
            use std::io::Write;
            writeln!(buf, "{} qumulo-audit-broker[{pid}] {}: {}", buf.timestamp_millis(), record.level(), record.args())
        })
        .init();
}

/// Is `path` a broker.toml (it has `[[destination]]`/`[[cluster]]`/`[broker]` tables and no
/// `[destination]` table)?
fn is_broker_toml(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    let Ok(table) = text.parse::<toml::Table>() else { return false };
    // A destination TOML has a [destination] table (and may have a [cluster] table).
    match table.get("destination") {
        Some(toml::Value::Table(_)) => false,
        Some(toml::Value::Array(_)) => true,
        _ => matches!(table.get("cluster"), Some(toml::Value::Array(_))) || table.contains_key("broker"),
    }
}

/// `check`: the validation omprog start-up runs ([`Config::load`] and [`preflight::check`]),
/// without creating anything; `--connect` then builds the destination and reaches it. A
/// broker.toml is checked whole (every destination) unless `--destination` names one.
fn check(config: &Path, destination: Option<&str>, connect: bool) -> i32 {
    if destination.is_none() && is_broker_toml(config) {
        let b = match BrokerFile::load(config) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        };
        println!("{}: {} cluster(s), {} destination(s)", config.display(), b.clusters.len(), b.destinations.len());
        let listener = match &b.globals.tls {
            None => 0,
            Some(t) => match broker::tls::preflight(&b.text, &b.path, t) {
                Ok(()) => {
                    println!("{}: listener TLS (auth_mode {}): certificate and key match, rsyslog's TLS driver is installed", config.display(), t.mode().as_str());
                    0
                }
                Err(e) => {
                    eprintln!("{e}");
                    2
                }
            },
        };
        let queues = match b.check_queue_size() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{e}");
                2
            }
        };
        return b.destinations.iter().map(|d| check_one(d.config.clone(), &format!("destination {:?}", d.name), connect)).fold(listener.max(queues), i32::max);
    }
    match broker::load_config(config, destination) {
        Ok(cfg) => {
            let label = match destination {
                Some(d) => format!("{}: destination {d:?}", config.display()),
                None => config.display().to_string(),
            };
            check_one(cfg, &label, connect)
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

fn check_one(cfg: Config, label: &str, connect: bool) -> i32 {
    let checked = preflight::check(&cfg).map(|pf| (cfg, pf));
    let config = label;
    let (cfg, pf) = match checked {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    println!("{config}: configuration is valid (type = {}, format = {})", cfg.kind(), cfg.format());
    if let Some(source) = &cfg.source {
        println!("{config}: [source] is valid (type = {}: {}); only `consume` reads it", source.kind(), source.describe());
    }
    for (key, dir) in &pf.will_create {
        println!("{config}: omprog start-up will create {} ({key}); check created nothing", dir.display());
    }
    if connect {
        let mut sink = match Sink::from_config(&cfg) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}", cfg.locate(e));
                return 2;
            }
        };
        match sink.check_connect() {
            Ok(msg) => println!("{config}: {msg}"),
            Err(e) => {
                eprintln!("{config}: destination unreachable: {e}");
                return 1;
            }
        }
        if let Some(source) = &cfg.source {
            match qumulo_audit_broker::consume::check_source(source) {
                Ok(msg) => println!("{config}: [source] {msg}"),
                Err(e) => {
                    eprintln!("{config}: [source] unreachable: {e}");
                    return 1;
                }
            }
        }
    }
    0
}

/// `status`: exit 0 clean, 1 failing, stuck or losing, 2 configuration unreadable.
/// The configuration `status` and `test-event` read: by default what runs (the copy `apply`
/// installed), else the given file.
fn running_config(config: &Path) -> PathBuf {
    let applied = Path::new("/etc/qumulo-audit-broker/rsyslog.d").join(broker::render::SNAPSHOT);
    if config == Path::new(broker::DEFAULT_BROKER_TOML) && applied.exists() {
        applied
    } else {
        config.to_path_buf()
    }
}

fn status(config: &Path, impstats: Option<PathBuf>, prom: Option<PathBuf>) -> i32 {
    let config = &running_config(config);
    let (targets, default_impstats) = if is_broker_toml(config) {
        match BrokerFile::load(config) {
            Ok(b) => {
                let imp = broker::render::impstats_path(&b);
                (b.destinations.into_iter().map(|d| status::Target { name: d.name, config: d.config }).collect::<Vec<_>>(), Some(imp))
            }
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        }
    } else {
        match Config::load(config) {
            Ok(cfg) => (vec![status::Target { name: cfg.name(), config: cfg }], None),
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        }
    };
    let impstats = impstats.or(default_impstats);
    let st = status::collect(&targets, impstats.as_deref());
    print!("{}", status::report(&st, impstats.as_deref()));
    if let Some(p) = prom {
        if let Err(e) = status::write_textfile(&p, &status::prometheus(&st)) {
            eprintln!("status: cannot write {}: {e}", p.display());
            return 2;
        }
    }
    i32::from(st.is_bad())
}

fn main() {
    let cli = Cli::parse();
    init_logging();
    let code = match cli.command {
        Command::Convert { to, cluster, cluster_from_hostname, max_line, files } => {
            let cluster = match (cluster, cluster_from_hostname) {
                (Some(name), _) => ClusterSource::Fixed(name),
                (None, true) => ClusterSource::FromHostname,
                (None, false) => ClusterSource::None,
            };
            let parser = ParserOptions { max_line, cluster, ..ParserOptions::default() };
            convert::run(convert::ConvertArgs { format: to, files, parser })
        }
        Command::Omprog { config, destination } => match broker::load_config(&config, destination.as_deref()) {
            Ok(mut cfg) => {
                cfg.source = None; // only `consume` reads [source] (its files are not omprog's concern)
                omprog::run(cfg)
            }
            Err(e) => {
                log::error!("{e}");
                2
            }
        },
        Command::Migrate { rsyslog_dir } => match broker::migrate::migrate(&rsyslog_dir) {
            Ok((text, notes)) => {
                print!("{text}");
                for n in notes {
                    eprintln!("migrate: {n}");
                }
                0
            }
            Err(e) => {
                eprintln!("migrate: {e}");
                2
            }
        },
        Command::Status { config, impstats, prometheus } => status(&config, impstats, prometheus),
        Command::TestEvent { cluster, config, wait_secs, client_cert, client_key } => match BrokerFile::load(&running_config(&config)) {
            Ok(b) => {
                let client = client_cert.as_deref().zip(client_key.as_deref());
                broker::test_event::run(&b, &cluster, std::time::Duration::from_secs(wait_secs), client)
            }
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        Command::Check { config, destination, connect } => check(&config, destination.as_deref(), connect),
        Command::Apply { config, dry_run, restart, rsyslog_dir, rsyslog_conf, template_conf, rsyslogd } => {
            broker::apply::run(&broker::apply::ApplyOptions { broker_toml: config, rsyslog_dir, rsyslog_conf, template_conf, rsyslogd, dry_run, restart })
        }
        Command::Consume { config } => match Config::load(&config) {
            Ok(cfg) => qumulo_audit_broker::consume::run(cfg),
            Err(e) => {
                log::error!("{e}");
                2
            }
        },
    };
    std::process::exit(code);
}
