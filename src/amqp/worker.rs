//! The AMQP transport's worker processes: the arguments a producer or a
//! consumer gets after the host's (`dlab worker ... -- ARGS`), built by the
//! run's supervisor and parsed here, and the entry the host calls.

use super::{consumer, publisher};
use crate::scenario::CrashPoint;
use crate::worker::{Host, Role, EXIT_SETUP};
use clap::Parser;
use std::path::PathBuf;

/// An AMQP worker's own arguments.
#[derive(Debug, Clone, Parser)]
#[command(no_binary_name = true)]
pub struct WorkerArgs {
    /// The broker (through the worker's proxy, if any); a cluster's
    /// members, one `--amqp-url` each, in order.
    #[arg(long, required = true)]
    pub amqp_url: Vec<String>,
    /// The queue the run uses.
    #[arg(long)]
    pub queue: String,
    /// The effect store file (consumers).
    #[arg(long)]
    pub effect_store: Option<PathBuf>,
    /// The producer's append-only send log (what it sent and saw confirmed).
    #[arg(long)]
    pub send_log: Option<PathBuf>,
    /// Consumers: abort at this point of the delivery `crash_after`.
    #[arg(long, value_enum)]
    pub crash_point: Option<CrashPointArg>,
    /// Consumers: the delivery (1-based, counted by this process) at which to
    /// abort; producers: abort right after this publish.
    #[arg(long)]
    pub crash_after: Option<u64>,
    /// The cluster member (an index into `amqp_url`) to try first.
    #[arg(long, default_value_t = 0)]
    pub first_member: u32,
    /// Consumers with `effect = "push"`: the push gateway's URL (through its
    /// fault proxy).
    #[arg(long)]
    pub push_url: Option<String>,
    /// TLS (an `amqps://` URL): the lab CA's directory, whose `ca.pem` is
    /// the only root the worker trusts.
    #[arg(long)]
    pub tls_dir: Option<std::path::PathBuf>,
    /// Mutual TLS: the certificate (`NAME.pem`, `NAME.key` in --tls-dir)
    /// the worker presents.
    #[arg(long)]
    pub tls_identity: Option<String>,
    /// 0-based index among workers of the same role (from the host).
    #[arg(skip)]
    pub index: u32,
    /// The run ID that prefixes message IDs (from the host).
    #[arg(skip)]
    pub run_id: String,
}

impl WorkerArgs {
    /// The command line of this worker, after the host's `--`.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for url in &self.amqp_url {
            out.push("--amqp-url".to_string());
            out.push(url.clone());
        }
        out.push("--queue".into());
        out.push(self.queue.clone());
        if self.amqp_url.len() > 1 {
            out.push("--first-member".into());
            out.push(self.first_member.to_string());
        }
        for (flag, path) in [
            ("--effect-store", &self.effect_store),
            ("--send-log", &self.send_log),
            ("--tls-dir", &self.tls_dir),
        ] {
            if let Some(p) = path {
                out.push(flag.into());
                out.push(p.display().to_string());
            }
        }
        if let Some(url) = &self.push_url {
            out.push("--push-url".into());
            out.push(url.clone());
        }
        if let Some(name) = &self.tls_identity {
            out.push("--tls-identity".into());
            out.push(name.clone());
        }
        if let Some(point) = self.crash_point {
            let value =
                clap::ValueEnum::to_possible_value(&point).expect("every crash point has a name");
            out.push("--crash-point".into());
            out.push(value.get_name().to_string());
        }
        if let Some(n) = self.crash_after {
            out.push("--crash-after".into());
            out.push(n.to_string());
        }
        out
    }
}

/// The entry the worker host calls for an AMQP worker.
pub fn run(host: Host) -> std::pin::Pin<Box<dyn std::future::Future<Output = i32>>> {
    Box::pin(async move {
        let mut args = match WorkerArgs::try_parse_from(&host.args) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("dlab worker: bad AMQP worker arguments: {e}");
                return EXIT_SETUP;
            }
        };
        args.index = host.index;
        args.run_id = host.run_id;
        if let Some(dir) = &args.tls_dir {
            if let Err(e) = super::connect::use_tls(dir, args.tls_identity.as_deref()) {
                eprintln!("dlab worker: {e}");
                return EXIT_SETUP;
            }
        }
        match host.role {
            Role::Producer => publisher::run(&args, &host.plan, host.stop).await,
            Role::Consumer => consumer::run(&args, &host.plan, host.stop).await,
        }
    })
}

/// [`CrashPoint`] as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrashPointArg {
    /// See [`CrashPoint::BeforeEffect`].
    BeforeEffect,
    /// See [`CrashPoint::AfterEffectBeforeAck`].
    AfterEffectBeforeAck,
    /// See [`CrashPoint::AfterAck`].
    AfterAck,
}

impl From<CrashPoint> for CrashPointArg {
    fn from(p: CrashPoint) -> Self {
        match p {
            CrashPoint::BeforeEffect => CrashPointArg::BeforeEffect,
            CrashPoint::AfterEffectBeforeAck => CrashPointArg::AfterEffectBeforeAck,
            CrashPoint::AfterAck => CrashPointArg::AfterAck,
        }
    }
}

impl From<CrashPointArg> for CrashPoint {
    fn from(p: CrashPointArg) -> Self {
        match p {
            CrashPointArg::BeforeEffect => CrashPoint::BeforeEffect,
            CrashPointArg::AfterEffectBeforeAck => CrashPoint::AfterEffectBeforeAck,
            CrashPointArg::AfterAck => CrashPoint::AfterAck,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_arguments_round_trip_through_its_command_line() {
        let args = WorkerArgs {
            amqp_url: vec![
                "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                "amqp://guest:guest@127.0.0.1:5673/%2f".into(),
            ],
            queue: "dlab.x.1".into(),
            effect_store: Some("/tmp/e.sqlite".into()),
            send_log: Some("/tmp/p.sendlog".into()),
            crash_point: Some(CrashPointArg::AfterEffectBeforeAck),
            crash_after: Some(7),
            first_member: 1,
            push_url: Some("http://127.0.0.1:8080/v1/push".into()),
            tls_dir: Some("/tmp/tls".into()),
            tls_identity: Some("producer".into()),
            index: 0,
            run_id: String::new(),
        };
        let back = WorkerArgs::try_parse_from(args.to_args()).unwrap();
        assert_eq!(back.to_args(), args.to_args());
        assert_eq!(back.crash_point, Some(CrashPointArg::AfterEffectBeforeAck));
        assert_eq!(back.crash_after, Some(7));
        assert_eq!(back.amqp_url.len(), 2);
        assert_eq!(back.first_member, 1);
        assert!(WorkerArgs::try_parse_from(["--queue", "q"]).is_err());
    }
}
