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
    #[arg(long, env = "DLAB_AMQP_URL")]
    pub amqp_url: Option<String>,
    /// SMTP runs: `smtp://HOST:PORT` of an existing relay that forwards to
    /// dlab's inbox at --inbox-addr; without it dlab starts a private Postfix.
    #[arg(long, env = "DLAB_SMTP_URL")]
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
    /// RabbitMQ only.
    Amqp,
    /// The Postfix relay only.
    Smtp,
    /// Both.
    Both,
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
        /// Which transports: `amqp`, `smtp` or `both`.
        #[arg(long, value_enum, default_value_t = Transports::Both)]
        transport: Transports,
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
        #[arg(long, default_value = "at-least-once", value_parser = parse_guarantee)]
        guarantee: crate::policy::Guarantee,
        /// How long the consumers (AMQP) and the inbox (SMTP) are unreachable,
        /// e.g. "3s"; "0s" runs no outage.
        #[arg(long, default_value = "3s")]
        outage: String,
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
    /// Start a private RabbitMQ node under .dlab/ and print its URL.
    Up,
    /// Stop the node `dlab up` started.
    Down,
    /// Show the node `dlab up` started.
    Status,
    /// Print the JSON Schema of `--json` results.
    Schema,
    /// A producer or consumer process (started by `dlab run`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

fn parse_guarantee(text: &str) -> Result<crate::policy::Guarantee, String> {
    crate::policy::Guarantee::ALL
        .into_iter()
        .find(|g| g.name() == text)
        .ok_or_else(|| format!("expected at-most-once, at-least-once or exactly-once, not {text}"))
}
