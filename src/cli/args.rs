//! Command-line arguments, parsed as close to the flags as possible; turning
//! them into real objects happens in [`super::commands`].

use crate::worker::WorkerArgs;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// dlab: the delivery-guarantee lab.
#[derive(Debug, Parser)]
#[command(name = "dlab", version, about, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the broker is.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// AMQP URL of an existing broker; without it dlab uses the node of
    /// `dlab up` or starts a private node for this command.
    /// Its value is never printed (it may hold a password).
    #[arg(long, env = "DLAB_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// SMTP runs: `smtp://HOST:PORT` of an existing relay that forwards to
    /// dlab's inbox at --inbox-addr; without it dlab starts a private Postfix.
    /// Its value is never printed (it may hold a password).
    #[arg(long, env = "DLAB_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// With --smtp-url: where dlab's inbox listens (the relay's next hop).
    #[arg(long, env = "DLAB_INBOX_ADDR", default_value = "127.0.0.1:2525")]
    pub inbox_addr: std::net::SocketAddr,
}

/// Where a command's results go besides the terminal table.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Also write the result as JSON to this file (`run`: one result;
    /// `matrix`, `compare`: a list, one per run).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write a self-contained HTML report with charts to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No live progress on the terminal.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Which transports the matrix runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transports {
    /// RabbitMQ only, the consumer's effect local.
    Amqp,
    /// RabbitMQ with the consumer's effect a call to the push gateway.
    Push,
    /// The Postfix relay only.
    Smtp,
    /// AMQP and SMTP (no push rows).
    Both,
    /// AMQP, push and SMTP.
    All,
}

impl Transports {
    /// Whether a row over `transport` (with the push gateway as the effect
    /// when `push`) is among these.
    pub fn picks(self, transport: crate::scenario::Transport, push: bool) -> bool {
        use crate::scenario::Transport;
        match self {
            Transports::All => true,
            Transports::Both => !push,
            Transports::Amqp => transport == Transport::Amqp && !push,
            Transports::Push => push,
            Transports::Smtp => transport == Transport::Smtp,
        }
    }
}

/// Which broker topology the matrix runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// One RabbitMQ node (and the SMTP rows).
    Single,
    /// A three-node RabbitMQ cluster.
    Cluster,
}

/// Which rows of the matrix to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rows {
    /// No fault and the consumer crashes.
    Core,
    /// Every fault row.
    All,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one scenario file and print its counted outcome.
    Run {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Override a key of the file, e.g. --set messages=500 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Where results go besides the terminal.
        #[command(flatten)]
        output: OutputArgs,
        /// Keep the run's queue instead of deleting it.
        #[arg(long)]
        keep_queue: bool,
        /// Run on a cluster of this many RabbitMQ nodes (the same as
        /// `--set nodes=N`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=7))]
        nodes: Option<u32>,
        /// The broker.
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Check a scenario file without running it.
    Validate {
        /// The scenario file (TOML).
        file: PathBuf,
        /// Override a key of the file (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// List the scenario files in a directory.
    List {
        /// The directory.
        #[arg(default_value = "scenarios")]
        dir: PathBuf,
    },
    /// Run every guarantee against every fault row and print the grid.
    Matrix {
        /// Messages per cell.
        #[arg(long, default_value_t = 2000)]
        messages: u64,
        /// Seed for every cell.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Which rows: `core` (no fault, consumer crashes, inbox hang-up) or `all`.
        #[arg(long, value_enum, default_value_t = Rows::All)]
        rows: Rows,
        /// Which rows: `amqp`, `push` (AMQP with the push gateway as the
        /// effect), `smtp`, `both` (amqp and smtp) or `all`.
        #[arg(long, value_enum, default_value_t = Transports::All)]
        transport: Transports,
        /// `single` (one node, the fault rows above) or `cluster`: queue
        /// types against leader kills, pauses and partitions on three nodes
        /// (--rows and --transport do not apply).
        #[arg(long, value_enum, default_value_t = Topology::Single)]
        topology: Topology,
        /// The wire matrix instead: each transport (--transport picks them)
        /// with TLS off, on and mutual, the eavesdropper on every link;
        /// message IDs and credentials read, throughput, handshake time.
        #[arg(long, conflicts_with_all = ["topology", "rows"])]
        wire: bool,
        /// Where results go besides the terminal.
        #[command(flatten)]
        output: OutputArgs,
        /// The broker.
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// One workload through AMQP and through SMTP side by side: throughput,
    /// end-to-end latency, lost, duplicates, undisturbed and under a
    /// downstream outage of the same length.
    Compare {
        /// Messages per run.
        #[arg(long, default_value_t = 2000)]
        messages: u64,
        /// Messages per second (0: as fast as each transport goes).
        #[arg(long, default_value_t = 500)]
        rate: u64,
        /// The preset on both transports.
        #[arg(long, value_enum, default_value_t = GuaranteeArg::AtLeastOnce)]
        guarantee: GuaranteeArg,
        /// How long the consumers (AMQP) and the inbox (SMTP) are unreachable,
        /// e.g. "500ms", "3s", "1m"; "0s" runs no outage.
        #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_outage)]
        outage: Outage,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where results go besides the terminal.
        #[command(flatten)]
        output: OutputArgs,
        /// The broker and relay.
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Print results written with --json side by side (and render them to HTML).
    Report {
        /// JSON files from `dlab run --json` or `dlab matrix --json`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also write a self-contained HTML report to this file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Start a private RabbitMQ node (or, with --nodes 3, a cluster) and a
    /// Postfix relay under .dlab/, and print their URLs.
    Up {
        /// RabbitMQ nodes: 1, or a cluster of this many that scenarios with
        /// the same `nodes` (and `partition_handling`) use.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=7))]
        nodes: u32,
        /// The cluster's `cluster_partition_handling`.
        #[arg(long, value_enum, default_value_t = Handling::PauseMinority)]
        partition_handling: Handling,
    },
    /// Stop the node (or cluster) and the relay `dlab up` started.
    Down,
    /// Show the node (or cluster: members, which run, each quorum queue's
    /// leader) and the relay `dlab up` started.
    Status,
    /// Show the lab CA's certificates (made on first use): subject, names,
    /// validity, fingerprint, and whether each verifies against the lab CA
    /// the way a handshake checks it.
    Certs {
        /// The directory of the certificates (a run's `tls/`); default: the
        /// lab's own, `.dlab/tls/`.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the JSON Schema of `--json` results (or, with --scenario, of
    /// scenario files).
    Schema {
        /// The schema of scenario files (TOML, as JSON Schema) instead.
        #[arg(long)]
        scenario: bool,
    },
    /// Remove run directories under .dlab/runs/ (never the node and relay
    /// of `dlab up`), and say what was removed and how much space it freed.
    #[command(group(clap::ArgGroup::new("which").required(true).args(["older_than", "all"])))]
    Clean {
        /// Only runs last written longer ago than this, e.g. "30m", "12h", "7d".
        #[arg(long, value_name = "DURATION", value_parser = parse_age)]
        older_than: Option<std::time::Duration>,
        /// Every run.
        #[arg(long)]
        all: bool,
    },
    /// Tell one message's story: each attempt, confirm, delivery, effect
    /// and ack across the hops, the faults active at each step, and why it
    /// was lost or duplicated.
    Explain {
        /// The run: its directory, its ID under .dlab/runs/, or its
        /// `dlab run --json` result file (which also gives the faults).
        run: PathBuf,
        /// The message: its full ID (RUN-SEQ) or its number.
        message: String,
    },
    /// Judge a saved run's history as the run's checker did: re-fold it and
    /// the run's effect store into a fresh ledger and reconcile. Exit 0
    /// held, 1 broken (an expectation of the plan, or its promise when it
    /// has none; or the history does not account for the store), 2 bad input.
    Check {
        /// The history file (`history.tsv` in a run directory), or the run
        /// directory, run ID or result file.
        history: PathBuf,
        /// Also write the check as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// A producer or consumer process (started by `dlab run`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

/// The preset of `dlab compare`, as clap lists and parses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[allow(clippy::enum_variant_names)] // the names users type: at-most-once...
pub enum GuaranteeArg {
    /// fire-and-forget + auto-ack: never two effects, possibly none.
    AtMostOnce,
    /// confirm-retry + ack-after-effect: at least one effect, possibly more.
    AtLeastOnce,
    /// confirm-retry + idempotent: exactly one effect.
    ExactlyOnce,
}

impl From<GuaranteeArg> for crate::policy::Guarantee {
    fn from(g: GuaranteeArg) -> Self {
        match g {
            GuaranteeArg::AtMostOnce => crate::policy::Guarantee::AtMostOnce,
            GuaranteeArg::AtLeastOnce => crate::policy::Guarantee::AtLeastOnce,
            GuaranteeArg::ExactlyOnce => crate::policy::Guarantee::ExactlyOnce,
        }
    }
}

/// The `--outage` of `dlab compare`: as written (it becomes a scenario
/// override) and as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// As the user wrote it, e.g. "3s".
    pub text: String,
    /// Its length.
    pub duration: std::time::Duration,
}

fn parse_outage(text: &str) -> Result<Outage, String> {
    crate::scenario::parse_duration(text).map(|duration| Outage {
        text: text.trim().to_string(),
        duration,
    })
}

fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    crate::scenario::parse_age(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn the_guarantee_values_clap_lists_are_the_presets_names() {
        for g in GuaranteeArg::value_variants() {
            let name = g.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(name, crate::policy::Guarantee::from(*g).name());
        }
        assert_eq!(
            GuaranteeArg::value_variants().len(),
            crate::policy::Guarantee::ALL.len()
        );
    }
}

/// `cluster_partition_handling` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Handling {
    /// Both sides go on.
    Ignore,
    /// A member that sees no majority pauses itself.
    PauseMinority,
    /// The side with fewer clients restarts when the partition heals.
    Autoheal,
}

impl From<Handling> for crate::scenario::PartitionHandling {
    fn from(h: Handling) -> Self {
        match h {
            Handling::Ignore => Self::Ignore,
            Handling::PauseMinority => Self::PauseMinority,
            Handling::Autoheal => Self::Autoheal,
        }
    }
}
