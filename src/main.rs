//! The `qumulo-audit-broker` command line: a thin layer over the library's subcommands.

use std::path::{Path, PathBuf};

use clap::{Parser as ClapParser, Subcommand};

use qumulo_audit_broker::config::{preflight, validate, Config};
use qumulo_audit_broker::omprog;
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
        /// The destination's TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// The processing tier: read envelopes from the config's `[source]` (a Kafka topic, in a
    /// consumer group) and deliver them to its `[destination]`, committing offsets only after
    /// delivery (docs/scaling.md).
    Consume {
        /// The TOML config: a destination config with a `[source]` section.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a destination config as omprog start-up does, changing nothing on disk (and,
    /// with --connect, open the destination: this creates the destination file).
    Check {
        #[arg(long)]
        config: PathBuf,
        /// Also connect to the destination.
        #[arg(long)]
        connect: bool,
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

/// `check`: the validation omprog start-up runs ([`Config::load`] and [`preflight::check`]),
/// without creating anything; `--connect` then builds the destination and reaches it.
fn check(config: &Path, connect: bool) -> i32 {
    let checked = Config::load(config).and_then(|cfg| preflight::check(&cfg).map(|pf| (cfg, pf)));
    let (cfg, pf) = match checked {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    println!("{}: configuration is valid (type = {}, format = {})", config.display(), cfg.kind(), cfg.format());
    for (key, dir) in &pf.will_create {
        println!("{}: omprog start-up will create {} ({key}); check created nothing", config.display(), dir.display());
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
            Ok(msg) => println!("{}: {msg}", config.display()),
            Err(e) => {
                eprintln!("{}: destination unreachable: {e}", config.display());
                return 1;
            }
        }
    }
    0
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
        Command::Omprog { config } => match Config::load(&config) {
            Ok(cfg) => omprog::run(cfg),
            Err(e) => {
                log::error!("{e}");
                2
            }
        },
        Command::Consume { config } => match Config::load(&config) {
            Ok(cfg) => qumulo_audit_broker::consume::run(cfg),
            Err(e) => {
                log::error!("{e}");
                2
            }
        },
        Command::Check { config, connect } => check(&config, connect),
    };
    std::process::exit(code);
}
