//! The `qumulo-audit-broker` command line: a thin layer over the library's subcommands.

use clap::{Parser as ClapParser, Subcommand};

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
        /// Output format: json, ecs, ocsf, cef, leef.
        #[arg(long = "to", default_value = "json")]
        to: Format,
        /// Cluster name for lines that do not carry one.
        #[arg(long)]
        cluster: Option<String>,
        /// Derive the cluster from the sending node's hostname (`<cluster>-<node>`).
        #[arg(long, conflicts_with = "cluster")]
        cluster_from_hostname: bool,
        /// Longest accepted line in bytes; longer lines are errors.
        #[arg(long, default_value_t = DEFAULT_MAX_LINE)]
        max_line: usize,
        /// Input files; stdin when none (or `-`).
        files: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
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
    };
    std::process::exit(code);
}
