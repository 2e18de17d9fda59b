//! What each subcommand does, in terms of the library.

use super::args::{BrokerArgs, Command, OutputArgs, Rows, Topology};
use super::{EXIT_BROKEN, EXIT_OK};
use crate::broker::{self, BrokerHandle, NodeState};
use crate::matrix;
use crate::report::{self, table, RunResult};
use crate::runner::{self, AmqpTarget, RunContext, EXIT_INTERRUPTED};
use crate::scenario::{self, Override, Plan, Transport};
use crate::smtp::RelayTarget;
use anyhow::{anyhow, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Runs one subcommand.
pub fn dispatch(command: Command) -> Result<i32> {
    if !matches!(command, Command::Worker(_)) {
        remove_leftovers(&broker::home());
    }
    match command {
        Command::Worker(args) => Ok(crate::worker::main(args, runner::worker_entry)),
        Command::Validate { file, set } => {
            let plan = load(&file, &set)?;
            println!(
                "{}: ok: {} ({} + {}), {} messages, {} fault(s)",
                file.display(),
                plan.name,
                plan.producer.name(),
                plan.consumer.name(),
                plan.messages,
                plan.faults.len()
            );
            Ok(EXIT_OK)
        }
        Command::List { dir } => list(&dir),
        Command::Run {
            file,
            mut set,
            output,
            keep_queue,
            nodes,
            broker,
        } => {
            set.extend(nodes.map(|n| format!("nodes={n}")));
            // Parse and validate before anything starts.
            let plan = load(&file, &set)?;
            if plan.needs_node() && broker.amqp_url.is_some() {
                return Err(anyhow!(
                    "{}: broker process faults and `tls` need a broker dlab starts itself; run without --amqp-url / DLAB_AMQP_URL",
                    file.display()
                ));
            }
            if plan.needs_cluster() && broker.amqp_url.is_some() {
                return Err(anyhow!(
                    "{}: `nodes` asks for a cluster dlab starts itself; run without --amqp-url / DLAB_AMQP_URL",
                    file.display()
                ));
            }
            let amqp = plan.needs_one_broker();
            let results = with_broker(&broker, output.quiet, amqp, |ctx| async move {
                let ctx = RunContext { keep_queue, ..ctx };
                Ok(vec![runner::run(&plan, &ctx).await?])
            })?;
            let result = &results[0];
            table::write_run(&mut std::io::stdout().lock(), result)?;
            if let Some(path) = &output.json {
                report::write_json(path, result)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if let Some(path) = &output.html {
                let page =
                    report::html::render(&format!("dlab run: {}", result.scenario), &results, None);
                std::fs::write(path, page)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(exit_code(&results))
        }
        Command::Matrix {
            messages,
            seed,
            rows,
            transport,
            topology,
            wire,
            output,
            broker,
        } => {
            if messages < 20 {
                return Err(anyhow!("--messages {messages}: expected at least 20"));
            }
            if wire {
                return super::wire_matrix::run(messages, seed, transport, &output, &broker);
            }
            if topology == Topology::Cluster {
                return cluster_matrix(messages, seed, &output, &broker);
            }
            // Rows that need the broker's process run only on a node dlab starts.
            let external = broker.amqp_url.is_some();
            let chosen: Vec<matrix::Row> = matrix::ROWS
                .iter()
                .copied()
                .filter(|r| rows == Rows::All || r.core)
                .filter(|r| transport.picks(r.transport, r.push))
                .collect();
            let cells: Vec<matrix::CellPlan> = matrix::plans(&chosen, messages, seed)
                .into_iter()
                .filter(|c| {
                    let skip = external && (c.plan.needs_node() || c.plan.needs_cluster());
                    if skip {
                        eprintln!("dlab matrix: skipping {} (broker process faults need a broker dlab starts; leave out --amqp-url)", c.plan.name);
                    }
                    !skip
                })
                .collect();
            let plans: Vec<Plan> = cells.iter().map(|c| c.plan.clone()).collect();
            let amqp = plans.iter().any(Plan::needs_one_broker);
            let results = with_broker(&broker, output.quiet, amqp, |ctx| async move {
                run_each(&plans, &ctx, "matrix").await
            })?;
            print_matrix(&chosen, &cells, &results, messages)?;
            let grid = report::html::Grid {
                rows: chosen.iter().map(|r| r.label).collect(),
                columns: crate::policy::Guarantee::ALL
                    .iter()
                    .map(|g| g.name())
                    .collect(),
                cells: cells
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.row.label, c.guarantee.name(), i))
                    .collect(),
            };
            write_outputs(&results, "dlab matrix", Some(&grid), &output)
        }
        Command::Compare {
            messages,
            rate,
            guarantee,
            outage,
            seed,
            output,
            broker,
        } => {
            let guarantee: crate::policy::Guarantee = guarantee.into();
            let plans = crate::compare::plans(&crate::compare::Workload {
                messages,
                rate,
                guarantee,
                outage: (!outage.duration.is_zero()).then_some(outage.text),
                seed,
            });
            let results = with_broker(&broker, output.quiet, true, |ctx| async move {
                run_each(&plans, &ctx, "compare").await
            })?;
            let out = &mut std::io::stdout().lock();
            writeln!(
                out,
                "\ndlab compare: {messages} messages at {rate}/s, {guarantee}, AMQP (RabbitMQ), AMQP with the push gateway as the effect, SMTP (Postfix relay)\n"
            )?;
            table::write_side_by_side(out, &results)?;
            table::write_outage_summary(out, &results)?;
            write_outputs(&results, "dlab compare", None, &output)
        }
        Command::Report { files, html } => {
            let mut results: Vec<RunResult> = Vec::new();
            for f in &files {
                let bytes =
                    std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
                let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow!("{}:{}:{}: not JSON: {e}", f.display(), e.line(), e.column())
                })?;
                let list = if value.is_array() {
                    value
                } else {
                    serde_json::Value::Array(vec![value])
                };
                let mut these: Vec<RunResult> = serde_json::from_value(list)
                    .map_err(|e| anyhow!("{}: not a dlab result (from `dlab run --json` or `dlab matrix --json`): {e}", f.display()))?;
                results.append(&mut these);
            }
            table::write_side_by_side(&mut std::io::stdout().lock(), &results)?;
            if let Some(path) = html {
                let page = report::html::render("dlab report", &results, None);
                std::fs::write(&path, page)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(EXIT_OK)
        }
        Command::Certs { dir } => certs(dir.unwrap_or_else(|| broker::home().join("tls"))),
        Command::Schema { scenario } => {
            if scenario {
                println!("{}", scenario::json_schema());
            } else {
                println!("{}", report::json_schema());
            }
            Ok(EXIT_OK)
        }
        Command::Clean { older_than, all } => {
            let age = if all { None } else { older_than };
            super::clean::clean(&broker::home(), age)
        }
        Command::Explain { run, message } => explain(&run, &message),
        Command::Check { history, json } => check(&history, json.as_deref()),
        Command::Up {
            nodes: 1,
            partition_handling: _,
        } => up(),
        Command::Up {
            nodes,
            partition_handling,
        } => up_cluster(nodes, partition_handling.into()),
        Command::Down => down(),
        Command::Status => status(),
    }
}

/// Removes what a killed dlab left under `home` (its private nodes and
/// relays, their `main.cf` entries), saying what on stderr.
fn remove_leftovers(home: &Path) {
    for line in crate::leftovers::describe(&crate::leftovers::sweep(home)) {
        eprintln!("dlab: {line}");
    }
}

/// `dlab explain`: one message's story.
fn explain(run: &Path, message: &str) -> Result<i32> {
    use crate::history::{explain, RunFiles};
    let (run_id, seq) = explain::parse_message(message)?;
    let files = RunFiles::locate(run, &broker::home(), run_id.as_deref())?;
    let story = explain::explain(&files, run_id.as_deref(), seq)?;
    explain::write(&mut std::io::stdout().lock(), &files, &story)?;
    Ok(EXIT_OK)
}

/// `dlab check`: a saved history judged again; exit 0 held, 1 broken.
fn check(history: &Path, json: Option<&Path>) -> Result<i32> {
    use crate::history::{check, RunFiles};
    let files = RunFiles::locate(history, &broker::home(), None)?;
    let checked = check::check(&files)?;
    check::write(&mut std::io::stdout().lock(), &files, &checked)?;
    if let Some(path) = json {
        report::write_json(path, &checked)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if checked.held { EXIT_OK } else { EXIT_BROKEN })
}

/// Runs `plans` one after another on one context, saying which.
pub(super) async fn run_each(
    plans: &[Plan],
    ctx: &RunContext,
    command: &str,
) -> Result<Vec<RunResult>> {
    let mut results = Vec::new();
    for plan in plans {
        eprintln!("dlab {command}: running {}", plan.name);
        results.push(runner::run(plan, ctx).await?);
        if ctx.cancel.is_cancelled() {
            eprintln!(
                "dlab {command}: interrupted after {} of {} run(s)",
                results.len(),
                plans.len()
            );
            break;
        }
    }
    Ok(results)
}

/// Writes the `--json` list and the `--html` page of several runs; exit 0
/// when every expectation held, else 1.
pub(super) fn write_outputs(
    results: &[RunResult],
    title: &str,
    grid: Option<&report::html::Grid<'_>>,
    output: &OutputArgs,
) -> Result<i32> {
    if let Some(path) = &output.html {
        let page = report::html::render(title, results, grid);
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &output.json {
        report::write_json(path, &results)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(exit_code(results))
}

/// 130 when a signal stopped a run, else 0 when every expectation held, else 1.
fn exit_code(results: &[RunResult]) -> i32 {
    if results.iter().any(|r| r.interrupted) {
        EXIT_INTERRUPTED
    } else if results.iter().all(|r| r.expectations_held) {
        EXIT_OK
    } else {
        EXIT_BROKEN
    }
}

fn load(file: &Path, set: &[String]) -> Result<Plan> {
    let overrides = set
        .iter()
        .map(|s| Override::parse(s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!(e))?;
    Ok(scenario::load(file, &overrides)?)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves the broker (when `amqp` runs need one) and the SMTP relay, runs
/// `f` with a context for them, and stops any node started for this
/// command, whatever `f` returned.
pub(super) fn with_broker<F, Fut>(
    args: &BrokerArgs,
    quiet: bool,
    amqp: bool,
    f: F,
) -> Result<Vec<RunResult>>
where
    F: FnOnce(RunContext) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<RunResult>>>,
{
    let up_relay = relay_dir(&broker::home());
    let relay = match &args.smtp_url {
        None if crate::relay::Relay::attach(&up_relay).is_some() => RelayTarget::Up(up_relay),
        None => RelayTarget::Private,
        Some(url) => RelayTarget::External {
            relay: smtp_addr(url)?,
            inbox: args.inbox_addr,
        },
    };
    let rt = runtime()?;
    rt.block_on(async {
        let home = broker::home();
        let progress = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
        // From here on, SIGINT, SIGTERM and SIGHUP stop the run in order.
        let cancel = runner::cancel::on_signals().context("cannot install signal handlers")?;
        // The cluster `dlab up --nodes N` keeps, for runs with `nodes`.
        let cluster = crate::cluster::Cluster::attach(&cluster_dir(&home)).map(Arc::new);
        if !amqp {
            let ctx = RunContext {
                progress,
                relay,
                cancel,
                cluster,
                ..RunContext::new(&home)?
            };
            return f(ctx).await;
        }
        let handle =
            BrokerHandle::resolve(args.amqp_url.clone(), &home, |m| eprintln!("{m}")).await?;
        let management = match handle.node() {
            Some(node) => node.state().management(),
            None => broker::Management::beside(handle.url()),
        };
        let ctx = RunContext {
            progress,
            relay,
            cancel,
            amqp: Some(AmqpTarget {
                url: handle.url().to_string(),
                node: handle.node().cloned(),
                management,
            }),
            cluster,
            ..RunContext::new(&home)?
        };
        let out = f(ctx).await;
        handle.shutdown();
        out
    })
}

/// The socket address of `smtp://HOST:PORT`.
fn smtp_addr(url: &str) -> Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = url.strip_prefix("smtp://").ok_or_else(|| {
        anyhow!("--smtp-url {url}: expected smtp://HOST:PORT, e.g. smtp://127.0.0.1:25")
    })?;
    rest.trim_end_matches('/')
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            anyhow!("--smtp-url {url}: cannot resolve {rest}; expected smtp://HOST:PORT")
        })
}

fn print_matrix(
    rows: &[matrix::Row],
    cells: &[matrix::CellPlan],
    results: &[RunResult],
    messages: u64,
) -> Result<()> {
    let out = &mut std::io::stdout().lock();
    use std::io::Write;
    let first = |t: Transport| {
        results
            .iter()
            .find(|r| r.transport == t)
            .map(|r| r.broker.clone())
    };
    let via: Vec<String> = [
        first(Transport::Amqp).map(|b| format!("broker {b}")),
        first(Transport::Smtp).map(|b| {
            if b.contains("dlab up") {
                format!("relay {b}")
            } else {
                "a private Postfix relay per SMTP cell".to_string()
            }
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    writeln!(
        out,
        "\ndlab matrix: {messages} messages per cell, {}\n\
         promise: at-most-once = no message twice; at-least-once = no message lost; exactly-once = both",
        via.join("; ")
    )?;
    if cells.iter().any(|c| c.row.push) {
        writeln!(
            out,
            "push: the consumer's effect is a call to dlab's push gateway over HTTP: at-most-once calls once,\n\
             at-least-once calls until a 2xx then acks, exactly-once sends the message ID as Idempotency-Key"
        )?;
    }
    if first(Transport::Smtp).is_some() {
        writeln!(
            out,
            "smtp: send-once / retry sender, inbox with ack-after-effect / idempotent; across a store-and-forward\n\
             relay there is no at-most-once: the relay retries its next hop after a lost reply, whatever the sender does"
        )?;
    }
    writeln!(out)?;
    let grid: Vec<table::Cell<'_>> = cells
        .iter()
        .zip(results)
        .map(|(c, r)| table::Cell {
            row: c.row.label,
            column: c.guarantee.name(),
            result: r,
        })
        .collect();
    let rows: Vec<&str> = rows.iter().map(|r| r.label).collect();
    let columns: Vec<&str> = crate::policy::Guarantee::ALL
        .iter()
        .map(|g| g.name())
        .collect();
    table::write_matrix(out, "fault \\ guarantee", &rows, &columns, &grid)?;
    writeln!(out)?;
    for r in results {
        writeln!(out, "  {:<44} effect store {}", r.scenario, r.effect_store)?;
    }
    Ok(())
}

/// `dlab matrix --topology cluster`: each group of cells that share a
/// partition-handling mode runs on one cluster, started for the group
/// (or the one `dlab up --nodes 3` keeps, when its mode matches).
fn cluster_matrix(
    messages: u64,
    seed: u64,
    output: &OutputArgs,
    broker: &BrokerArgs,
) -> Result<i32> {
    use crate::cluster::Cluster;
    use crate::cluster_matrix::{plans, QUEUE_TYPES, ROWS};
    if broker.amqp_url.is_some() {
        return Err(anyhow!(
            "--topology cluster runs on clusters dlab starts itself; leave out --amqp-url / DLAB_AMQP_URL"
        ));
    }
    let cells = plans(messages, seed);
    let plans: Vec<Plan> = cells.iter().map(|c| c.plan.clone()).collect();
    let results = with_broker(broker, output.quiet, false, |ctx| async move {
        let mut results = Vec::new();
        let mut i = 0;
        while i < plans.len() && !ctx.cancel.is_cancelled() {
            let a = plans[i].amqp().expect("cluster cells are AMQP");
            let group: Vec<Plan> = plans[i..]
                .iter()
                .take_while(|p| {
                    p.amqp().map(|x| x.partition_handling) == Some(a.partition_handling)
                })
                .cloned()
                .collect();
            let up = ctx.cluster.clone().filter(|c| {
                c.members().len() == a.nodes as usize
                    && c.record().partition_handling == a.partition_handling
            });
            let cluster = match up {
                Some(c) => c,
                None => {
                    let dir = ctx.home.join("clusters").join(format!(
                        "matrix-{}-{}",
                        crate::message_id::new_run_id(),
                        a.partition_handling.name()
                    ));
                    Arc::new(
                        Cluster::start(&dir, a.nodes, a.partition_handling, |m| eprintln!("{m}"))
                            .await?,
                    )
                }
            };
            let ctx = RunContext {
                cluster: Some(cluster),
                ..ctx.clone()
            };
            results.extend(run_each(&group, &ctx, "matrix").await?);
            i += group.len();
        }
        Ok(results)
    })?;
    let out = &mut std::io::stdout().lock();
    writeln!(
        out,
        "\ndlab matrix --topology cluster: {messages} messages per cell, at-least-once, three nodes\n\
         promise: no message lost; a quorum queue also promises to lose nothing it confirmed (judged); classic and mirrored cells are counted, not judged\n"
    )?;
    let grid: Vec<table::Cell<'_>> = cells
        .iter()
        .zip(&results)
        .map(|(c, r)| table::Cell {
            row: c.row.label,
            column: c.queue_type.name(),
            result: r,
        })
        .collect();
    let rows: Vec<&str> = ROWS.iter().map(|r| r.label).collect();
    let columns: Vec<&str> = QUEUE_TYPES.iter().map(|q| q.name()).collect();
    table::write_matrix(out, "fault \\ queue type", &rows, &columns, &grid)?;
    writeln!(out)?;
    for r in &results {
        writeln!(
            out,
            "  {:<44} lost after confirm {:<5} leader changes {:<3} effect store {}",
            r.scenario,
            r.counts.lost_after_confirm,
            r.cluster.as_ref().map_or(0, |c| c.leader_changes),
            r.effect_store
        )?;
    }
    let grid = report::html::Grid {
        rows,
        columns,
        cells: cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.row.label, c.queue_type.name(), i))
            .collect(),
    };
    write_outputs(
        &results,
        "dlab matrix --topology cluster",
        Some(&grid),
        output,
    )
}

fn list(dir: &Path) -> Result<i32> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the scenario directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    let mut broken = false;
    for path in entries {
        match scenario::load(&path, &[]) {
            Ok(plan) => println!("{:<48} {}", path.display(), plan.description),
            Err(e) => {
                broken = true;
                println!("{:<48} INVALID: {e}", path.display());
            }
        }
    }
    Ok(if broken { super::EXIT_USAGE } else { EXIT_OK })
}

/// Where `dlab up --nodes N` keeps its cluster.
fn cluster_dir(home: &Path) -> std::path::PathBuf {
    home.join("cluster")
}

/// Where `dlab up` keeps its Postfix relay.
fn relay_dir(home: &Path) -> std::path::PathBuf {
    home.join("relay")
}

/// Starts (or finds) the node and the relay of `dlab up`. Both or nothing:
/// when the relay cannot start, a node started by this call is stopped again
/// and the exit is 2; a node that was already running is kept, and said so.
fn up() -> Result<i32> {
    let home = broker::home();
    let dir = broker::up_dir(&home);
    let (mut state, started) = match NodeState::load(&dir).filter(NodeState::alive) {
        Some(state) => (state, false),
        None => (runtime()?.block_on(broker::node::start(&dir))?, true),
    };
    let relay = match up_relay(&relay_dir(&home)) {
        // Both kept until `dlab down`, not removed as a killed command's.
        Ok(relay) if started => {
            state.keep_running()?;
            relay
        }
        Ok(relay) => relay,
        Err(e) => {
            let what = if started {
                let killed = broker::node::stop(&state, std::time::Duration::from_secs(30));
                let _ = std::fs::remove_file(dir.join("state.json"));
                format!(
                    "stopped the RabbitMQ node it had started ({}{}); nothing is left running",
                    state.node,
                    if killed { ", killed" } else { "" }
                )
            } else {
                format!(
                    "the RabbitMQ node {} that was already running is kept (pid {}; `dlab down` stops it)",
                    state.node, state.pid
                )
            };
            eprintln!("dlab up: the SMTP relay failed to start: {e}");
            eprintln!("dlab up: {what}");
            return Ok(super::EXIT_USAGE);
        }
    };
    println!("{}", state.url());
    if started {
        eprintln!(
            "dlab: node {} running (pid {}, data and logs in {}); `dlab down` stops it",
            state.node,
            state.pid,
            state.dir.display()
        );
    } else {
        eprintln!(
            "dlab: node {} already running (pid {})",
            state.node, state.pid
        );
    }
    println!("{relay}");
    Ok(EXIT_OK)
}

/// Starts (or finds) the cluster and the relay of `dlab up --nodes N`.
fn up_cluster(nodes: u32, handling: crate::scenario::PartitionHandling) -> Result<i32> {
    use crate::cluster::Cluster;
    let home = broker::home();
    let dir = cluster_dir(&home);
    let started = match Cluster::attach(&dir) {
        Some(c)
            if c.members().len() == nodes as usize && c.record().partition_handling == handling =>
        {
            eprintln!("dlab: cluster already running in {}", dir.display());
            None
        }
        Some(c) => {
            eprintln!(
                "dlab up: a cluster of {} nodes ({}) is already running in {}; `dlab down` stops it first",
                c.members().len(),
                c.record().partition_handling.name(),
                dir.display()
            );
            return Ok(super::EXIT_USAGE);
        }
        None => {
            let _ = std::fs::remove_dir_all(&dir);
            let c =
                runtime()?.block_on(Cluster::start(&dir, nodes, handling, |m| eprintln!("{m}")))?;
            let urls = c.urls();
            c.keep_running()?;
            Some(urls)
        }
    };
    let relay = match up_relay(&relay_dir(&home)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dlab up: the SMTP relay failed to start: {e}");
            if started.is_some() {
                if let Some(c) = Cluster::attach(&dir) {
                    c.retire();
                }
                eprintln!("dlab up: stopped the cluster it had started; nothing is left running");
            }
            return Ok(super::EXIT_USAGE);
        }
    };
    let c =
        Cluster::attach(&dir).ok_or_else(|| anyhow!("the cluster in {} stopped", dir.display()))?;
    for url in c.urls() {
        println!("{url}");
    }
    println!("{relay}");
    if started.is_some() {
        eprintln!(
            "dlab: cluster of {nodes} nodes running ({}; data and logs in {}); scenarios with `nodes = {nodes}` use it; `dlab down` stops it",
            handling.name(),
            dir.display()
        );
    }
    Ok(EXIT_OK)
}

/// Starts the relay of `dlab up` (forwarding to a fixed inbox address that
/// SMTP runs listen on), or finds it running; returns its URL.
fn up_relay(dir: &Path) -> Result<String> {
    use crate::relay::Relay;
    if let Some(r) = Relay::attach(dir) {
        eprintln!(
            "dlab: relay already running (forwards to dlab's inbox at {})",
            r.next_hop()
        );
        return Ok(format!("smtp://{}", r.addr()));
    }
    let _ = std::fs::remove_dir_all(dir);
    let inbox = std::net::SocketAddr::from(([127, 0, 0, 1], broker::free_port()));
    let mut r = Relay::start(dir, inbox)?;
    r.keep_running()?;
    eprintln!(
        "dlab: Postfix relay running (queue and log in {}), forwarding to dlab's inbox at {inbox} during SMTP runs",
        dir.display()
    );
    Ok(format!("smtp://{}", r.addr()))
}

fn down() -> Result<i32> {
    let cluster = cluster_dir(&broker::home());
    if let Some(c) = crate::cluster::Cluster::attach(&cluster) {
        let n = c.members().len();
        c.retire();
        eprintln!(
            "dlab: cluster of {n} nodes stopped and removed ({})",
            cluster.display()
        );
    }
    let dir = broker::up_dir(&broker::home());
    match NodeState::load(&dir) {
        Some(state) if state.alive() => {
            let killed = broker::node::stop(&state, std::time::Duration::from_secs(30));
            let _ = std::fs::remove_file(dir.join("state.json"));
            eprintln!(
                "dlab: node {} stopped{}",
                state.node,
                if killed {
                    " (killed after not stopping in time)"
                } else {
                    ""
                }
            );
        }
        _ => eprintln!("dlab: no node running (nothing in {})", dir.display()),
    }
    let relay = relay_dir(&broker::home());
    if let Some(r) = crate::relay::Relay::attach(&relay) {
        r.remove();
        eprintln!("dlab: relay stopped and removed ({})", relay.display());
    }
    Ok(EXIT_OK)
}

/// The cluster of `dlab up --nodes N`: each member, whether it runs, and
/// each quorum queue's leader, as the first member that answers says.
fn cluster_status(c: &crate::cluster::Cluster) -> Result<()> {
    use crate::cluster::watch;
    use std::time::Duration;
    let rt = runtime()?;
    let (nodes, queues) = rt.block_on(async {
        for m in c.managements() {
            if let Ok(nodes) = watch::ask_nodes(&m, Duration::from_secs(2)).await {
                let queues = m.json("queues", Duration::from_secs(2)).await.ok();
                return (Some(nodes), queues);
            }
        }
        (None, None)
    });
    for (i, url) in c.urls().iter().enumerate() {
        let name = c.name(i);
        let state = match &nodes {
            Some(ns) => match ns.iter().find(|n| n.name == name) {
                Some(n) if n.running && n.partitions.is_empty() => "running",
                Some(n) if n.running => "running (partitioned)",
                Some(_) => "stopped",
                None => "not a member",
            },
            None if c.members()[i].state().alive() => "no answer",
            None => "stopped",
        };
        println!(
            "member {i}  {state}  {}  node {name}  pid {}",
            crate::amqp::mask_password(url),
            c.members()[i].state().pid
        );
    }
    for q in queues
        .as_ref()
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        if q["type"].as_str() == Some("quorum") {
            let leader = q["leader"]
                .as_str()
                .or(q["node"].as_str())
                .unwrap_or("unknown");
            println!(
                "quorum queue {}  leader {leader}",
                q["name"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

fn status() -> Result<i32> {
    if let Some(c) = crate::cluster::Cluster::attach(&cluster_dir(&broker::home())) {
        cluster_status(&c)?;
        if let Some(r) = crate::relay::Relay::attach(&relay_dir(&broker::home())) {
            println!("running  smtp://{}  dir {}", r.addr(), r.dir().display());
        }
        return Ok(EXIT_OK);
    }
    let dir = broker::up_dir(&broker::home());
    match NodeState::load(&dir) {
        Some(state) if state.alive() => {
            println!(
                "running  {}  node {}  pid {}  dir {}",
                state.url(),
                state.node,
                state.pid,
                state.dir.display()
            );
            if let Some(r) = crate::relay::Relay::attach(&relay_dir(&broker::home())) {
                println!(
                    "running  smtp://{}  Postfix pid {}  queue {}  next hop {}  dir {}",
                    r.addr(),
                    r.master_pid().unwrap_or(0),
                    r.postqueue_depth().unwrap_or_else(|| r.queue_depth()),
                    r.next_hop(),
                    r.dir().display()
                );
            }
            Ok(EXIT_OK)
        }
        _ => {
            println!("stopped  (`dlab up` starts a node)");
            Ok(EXIT_BROKEN)
        }
    }
}

/// `dlab certs`: the lab CA's set in `dir` (made if missing), each
/// certificate read back and verified.
fn certs(dir: PathBuf) -> Result<i32> {
    let made = !dir.join("ca.pem").exists();
    crate::tls::standard(&dir).map_err(anyhow::Error::msg)?;
    if made {
        println!("made the lab CA and its certificates in {}", dir.display());
    }
    for c in crate::tls::inspect::list(&dir).map_err(anyhow::Error::msg)? {
        println!("{}", crate::tls::inspect::describe(&c));
    }
    Ok(EXIT_OK)
}
