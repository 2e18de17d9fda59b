//! The SMTP transport's engine: dlab's sender → (proxy) → a Postfix relay →
//! (proxy) → dlab's inbox, which records each message as an effect in the
//! effect store; behind the run skeleton's
//! [`Engine`](crate::runner::engine::Engine) interface.
//!
//! Prepare: start the inbox (announcing what `[esmtp]` says), the sender's
//! mailbox (where the relay returns what it cannot deliver) and the relay (a
//! private Postfix under the run directory, unless `dlab up`'s or an
//! external one is named; a scenario that changes what a hop speaks gets a
//! private one), ask the relay and the inbox what they advertise after
//! EHLO, put the proxies in place. Run: the sender
//! task and the inbox stream ledger events (an attempt is a DATA
//! transaction, a 2xx reply a confirm, 4xx or 5xx a nack, a lost reply in
//! doubt; a committed message a delivery); the relay's queue depth is
//! sampled. Settled: the relay's queue read empty after the drain began (an
//! external relay's queue cannot be read: ten quiet seconds stand in).
//! Finish: stop the relay so its log is complete. Its report section: ESMTP
//! (what each hop spoke, downgrades, cleared bits, returns), the relay queue
//! over time, the relay log's own count, the text check.

use super::inbox::Inbox;
use super::relay_use::{depth, RelayTarget, RelayUse};
use super::sender::{self, Pending, SendOptions, SendPolicy, SendReport};
use super::tls_use;
use crate::ledger::Event;
use crate::policy::{ConsumerPolicy, ProducerPolicy};
use crate::proxy::{Protocol, Proxy};
use crate::relay::{self, Relay};
use crate::report::{self, QueueSample, RunResult, SmtpReport, TimelineKind};
use crate::runner::engine::{Engine as EngineTrait, Finished, Prepared, Setup};
use crate::runner::faults::Links;
use crate::runner::fold::Fold;
use crate::runner::servers::{Part, Servers};
use crate::runner::RunError;
use crate::scenario::TlsMode;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the relay's queue depth is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// With an external relay, whose queue cannot be read: how long the inbox
/// must be quiet (longer than a relay's retry interval) to stand in for it.
const EXTERNAL_QUIET: Duration = Duration::from_secs(10);

/// One SMTP run in progress.
pub struct Engine {
    run_id: String,
    rate: u64,
    sessions: u32,
    policy: SendPolicy,
    inbox: Arc<Inbox>,
    /// The sender's mailbox: returns come here (a private relay only).
    mailbox: Option<Arc<Inbox>>,
    esmtp: crate::scenario::SmtpPlan,
    /// TLS on both hops, when the scenario asks for it.
    tls: Option<tls_use::TlsUse>,
    relay: RelayUse,
    /// Where the sender connects (the relay, or the proxy in front of it).
    target: SocketAddr,
    relay_advertised: Vec<String>,
    inbox_advertised: Vec<String>,
    tx: sender::Events,
    rx: mpsc::UnboundedReceiver<(Event, Instant)>,
    pending: Pending,
    sending: Option<tokio::task::JoinHandle<SendReport>>,
    sent: SendReport,
    /// The latest attempt of each message awaiting its reply.
    attempt_at: HashMap<u64, Instant>,
    /// µs after time zero, per message: when it was due (at a fixed rate, so
    /// a sender falling behind cannot hide a stall) or first attempted.
    first_attempt: Vec<Option<i64>>,
    /// µs after time zero when sending began.
    send_start_us: i64,
    samples: Vec<QueueSample>,
    depth_source: &'static str,
    next_sample: Instant,
    smtp: Option<SmtpReport>,
}

impl EngineTrait for Engine {
    async fn prepare(s: &Setup<'_>) -> Result<Prepared<Engine>, RunError> {
        let (plan, ctx) = (s.plan, s.ctx);
        let esmtp = plan.smtp().cloned().unwrap_or_default();
        if plan.needs_relay() && matches!(ctx.relay, RelayTarget::External { .. }) {
            return Err(RunError::Unsupported(format!(
                "scenario {} kills the relay, which needs a relay dlab starts itself; run it without --smtp-url / DLAB_SMTP_URL",
                plan.name
            )));
        }
        // What a hop speaks is the relay's configuration and the inbox's
        // greeting: a relay of someone else's cannot be set up for it, and
        // `dlab up`'s forwards to a fixed inbox, so such a run gets its own.
        // TLS is the relay's configuration too (its certificate, its
        // delivery agent's level).
        let tls_on = plan.tls != TlsMode::Off;
        let target = match &ctx.relay {
            RelayTarget::External { .. } if esmtp.esmtp_changed() || tls_on => {
                return Err(RunError::Unsupported(format!(
                    "scenario {} sets [esmtp] or tls, which needs a relay dlab starts itself (it routes returns to the sender's mailbox, logs each message's transfer encoding, and holds the lab CA's certificate); run it without --smtp-url / DLAB_SMTP_URL",
                    plan.name
                )))
            }
            RelayTarget::Up(_) if esmtp.esmtp_changed() || tls_on => RelayTarget::Private,
            t => t.clone(),
        };
        let inbox_listen = match &target {
            RelayTarget::External { inbox, .. } => *inbox,
            RelayTarget::Up(dir) => Relay::attach(dir).map(|r| r.next_hop()).ok_or_else(|| {
                RunError::Unsupported(format!(
                    "the relay of `dlab up` in {} is not running; run `dlab up` again or `dlab down`",
                    dir.display()
                ))
            })?,
            RelayTarget::Private => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let inbox = Arc::new(
            Inbox::start_checking(
                inbox_listen,
                s.store,
                plan.consumer == ConsumerPolicy::Idempotent,
                0,
                Some(sender::BODY.to_string()),
                esmtp.inbox.clone(),
            )
            .await
            .map_err(RunError::io(format!(
                "cannot start the inbox on {inbox_listen}"
            )))?,
        );
        let tls = match plan.tls {
            TlsMode::Off => None,
            mode => Some(tls_use::TlsUse::prepare(
                &s.run_dir.join("tls"),
                mode,
                esmtp.tls,
            )?),
        };
        if let Some(t) = &tls {
            inbox.offer_starttls(t.inbox.clone(), t.mutual);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        inbox.report_deliveries(s.run_id, tx.clone());
        let proxied = plan.proxied() || ctx.always_proxy;
        let private = target == RelayTarget::Private;
        // The sender's mailbox speaks every extension, so a return never
        // depends on what the phone's inbox lacks; nothing in it is an effect.
        let mailbox = if private {
            let listen = SocketAddr::from(([127, 0, 0, 1], 0));
            Some(Arc::new(
                Inbox::start_checking(
                    listen,
                    &s.run_dir.join("sender-mailbox.sqlite"),
                    false,
                    0,
                    None,
                    Default::default(),
                )
                .await
                .map_err(RunError::io(
                    "cannot start the sender's mailbox".to_string(),
                ))?,
            ))
        } else {
            None
        };
        let inbound = if proxied && private {
            Some(proxy(inbox.addr(), plan.seed ^ 1).await?)
        } else {
            None
        };
        let next_hop = inbound.as_ref().map_or(inbox.addr(), Proxy::addr);
        if let (Some(m), Some(t)) = (&mailbox, &tls) {
            m.offer_starttls(t.mailbox.clone(), false);
        }
        let options = relay::Options {
            returns: mailbox.as_ref().map(|m| m.addr()),
            tls: tls.as_ref().map(|t| t.relay.clone()),
        };
        let relay = RelayUse::open(&target, &s.run_dir.join("relay"), next_hop, options).await?;
        let advertised = tokio::join!(
            super::ehlo::advertised(relay.addr),
            super::ehlo::advertised(inbox.addr())
        );
        let relay_advertised = match advertised.0 {
            Ok(a) => a,
            Err(e) => {
                relay.retire().await;
                return Err(RunError::Unsupported(format!(
                    "the SMTP relay at {} does not answer: {e}. Try: `dlab status`, or check --smtp-url",
                    relay.addr
                )));
            }
        };
        let outbound = if proxied {
            Some(proxy(relay.addr, plan.seed).await?)
        } else {
            None
        };
        let target = outbound.as_ref().map_or(relay.addr, Proxy::addr);
        let links = match (outbound, inbound) {
            (Some(producers), Some(consumers)) => Some(Links {
                producers,
                consumers,
                push: None,
            }),
            // An external or `dlab up` relay: its next hop is fixed, not
            // dlab's to proxy; the consumer link is a proxy nobody uses.
            (Some(producers), None) => Some(Links {
                producers,
                consumers: proxy(inbox.addr(), plan.seed ^ 1).await?,
                push: None,
            }),
            _ => None,
        };
        if let (Some(links), Some(t)) = (&links, &tls) {
            links.impersonate_with(&t.relay.dir)?;
        }
        let mut servers = Servers::none();
        servers.add("inbox", Part::Inbox(inbox.clone()));
        if let Some(m) = &mailbox {
            servers.add("sender's mailbox", Part::Inbox(m.clone()));
        }
        if let Some(r) = &relay.private {
            servers.add("relay", Part::Relay(r.clone()));
        }
        let policy = match plan.producer {
            ProducerPolicy::SendOnce | ProducerPolicy::FireAndForget => SendPolicy::SendOnce,
            ProducerPolicy::Retry | ProducerPolicy::ConfirmRetry => SendPolicy::Retry,
        };
        Ok(Prepared {
            engine: Engine {
                run_id: s.run_id.to_string(),
                rate: plan.rate,
                sessions: plan.producers,
                policy,
                inbox,
                mailbox,
                esmtp,
                tls,
                relay,
                target,
                relay_advertised,
                inbox_advertised: advertised.1.unwrap_or_default(),
                tx,
                rx,
                pending: Pending::new((0..plan.messages).collect()),
                sending: None,
                sent: SendReport::default(),
                attempt_at: HashMap::new(),
                first_attempt: vec![None; plan.messages as usize],
                send_start_us: 0,
                samples: Vec::new(),
                depth_source: "not available (external relay)",
                next_sample: Instant::now(),
                smtp: None,
            },
            servers,
            links,
            backlog_queue: None,
        })
    }

    async fn start(&mut self, _s: &Setup<'_>, fold: &mut Fold) -> Result<(), RunError> {
        self.send_start_us = fold.us_at(Instant::now());
        let options = SendOptions {
            sessions: self.sessions as usize,
            policy: self.policy,
            rate: self.rate,
            esmtp: self.esmtp.send,
            tls: self.tls.as_ref().map(|t| t.sender.clone()),
        };
        let (target, run_id, pending, tx) = (
            self.target,
            self.run_id.clone(),
            self.pending.clone(),
            self.tx.clone(),
        );
        self.sending = Some(tokio::spawn(async move {
            sender::send(target, &run_id, pending, options, Some(tx)).await
        }));
        fold.mark(
            TimelineKind::Phase,
            format!(
                "sender started: {} session(s) to {}",
                self.sessions, self.relay.addr
            ),
        );
        Ok(())
    }

    async fn next(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        let Some((e, at)) = self.rx.recv().await else {
            return std::future::pending().await;
        };
        self.fold(e, at, fold);
        while let Ok((e, at)) = self.rx.try_recv() {
            self.fold(e, at, fold);
        }
        Ok(())
    }

    async fn tick(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        let now = Instant::now();
        if let Some(r) = self
            .relay
            .private
            .clone()
            .filter(|_| now >= self.next_sample)
        {
            self.next_sample = now + SAMPLE_EVERY;
            if let Ok((d, source)) = tokio::task::spawn_blocking(move || depth(&r)).await {
                self.depth_source = source;
                self.samples.push(QueueSample {
                    at_ms: fold.ms_at(now),
                    depth: d,
                });
            }
        }
        // Last, after the sampling's subprocess: the fold is current when
        // the fault driver reads its tally.
        while let Ok((e, at)) = self.rx.try_recv() {
            self.fold(e, at, fold);
        }
        Ok(())
    }

    fn producing(&self) -> bool {
        self.sending.as_ref().is_some_and(|h| !h.is_finished())
    }

    fn stop_producing(&mut self) {
        self.pending.clear();
    }

    async fn settled(&mut self, fold: &Fold, drain_started: Instant) -> bool {
        match &self.relay.private {
            // The latest reading, at most 200 ms old, taken after the drain began.
            Some(_) => self
                .samples
                .last()
                .is_some_and(|q| q.depth == 0 && q.at_ms >= fold.ms_at(drain_started)),
            None => fold.quiet_for() > EXTERNAL_QUIET,
        }
    }

    async fn stop(&mut self, fold: &mut Fold) -> Result<(), RunError> {
        self.pending.clear();
        if let Some(h) = self.sending.take() {
            self.sent = h.await.map_err(|e| RunError::Worker(e.to_string()))?;
        }
        // Every event was sent before the task ended; take the rest now.
        while let Ok((e, at)) = self.rx.try_recv() {
            self.fold(e, at, fold);
        }
        Ok(())
    }

    async fn finish(&mut self, fold: &mut Fold) -> Result<Finished, RunError> {
        self.relay.retire().await;
        while let Ok((e, at)) = self.rx.try_recv() {
            self.fold(e, at, fold);
        }
        let sent = std::mem::take(&mut self.sent);
        if sent.given_up > 0 {
            fold.run_note(format!(
                "the sender gave up on {} message(s) ({} refused, {} in doubt over {} attempts)",
                sent.given_up, sent.refused, sent.in_doubt, sent.attempts
            ));
        }
        let stats = self.inbox.stats();
        let samples = std::mem::take(&mut self.samples);
        let remaining = samples.last().map_or(0, |s| s.depth);
        self.smtp = Some(SmtpReport {
            relay: self.relay.describe(),
            relay_advertised: std::mem::take(&mut self.relay_advertised),
            inbox_advertised: std::mem::take(&mut self.inbox_advertised),
            sender: sent,
            // The drain is over: the inbox's counts are final.
            text: report::TextCheck {
                expected: sender::BODY.to_string(),
                intact: stats.text_intact.load(Ordering::Relaxed),
                mangled: stats.text_mangled.load(Ordering::Relaxed),
                eight_bit: stats.eight_bit.load(Ordering::Relaxed),
            },
            relay_queue_peak: samples.iter().map(|s| s.depth).max().unwrap_or(0),
            relay_queue: samples,
            relay_queue_source: self.depth_source.to_string(),
            relay_log: None,
            inbox_sessions: stats.sessions.load(Ordering::Relaxed),
            inbox_misbehaved: stats.misbehaved.load(Ordering::Relaxed),
            esmtp: self.esmtp_report(),
            tls: None,
        });
        Ok(Finished {
            broker: self.relay.describe(),
            queue: match &self.relay.private {
                Some(r) => format!("Postfix queue in {}", r.dir().display()),
                None => "the external relay's queue".to_string(),
            },
            remaining,
        })
    }

    fn effect_latency(&self, seq: u64, since_start_us: i64) -> Option<u64> {
        let sent = self.first_attempt.get(seq as usize).copied().flatten()?;
        Some((since_start_us - sent).max(1) as u64)
    }

    async fn complete(mut self, _s: &Setup<'_>, result: &mut RunResult) -> Result<(), RunError> {
        let mut smtp = self.smtp.take().expect("finish ran");
        // Read after the relay stopped, so its log is complete.
        let log = self
            .relay
            .private
            .as_ref()
            .map(|r| std::fs::read_to_string(r.log()).unwrap_or_default());
        if let Some(t) = &self.tls {
            smtp.tls = Some(t.report(&self.inbox, log.as_deref()));
        }
        if let (Some(r), Some(text)) = (&self.relay.private, log) {
            let c = relay::log::count(&text, &format!("{}-", self.run_id));
            smtp.relay_log = Some(report::RelayLogCount {
                messages: c.messages,
                deliveries: c.deliveries,
                duplicates: c.duplicates(),
                maybe_twice: c.maybe_twice,
                bounced: c.bounced.len() as u64,
                bounce_reasons: report::ReasonCount::tally(c.bounced),
                returns_sent: c.returns_sent,
                downgraded: c.downgraded,
                log: r.log().display().to_string(),
            });
        }
        result.smtp = Some(smtp);
        Ok(())
    }
}

impl Engine {
    /// What each hop spoke and what it changed, from the inbox's and the
    /// sender's mailbox's counters (final: the drain is over).
    fn esmtp_report(&self) -> report::EsmtpReport {
        let stats = self.inbox.stats();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        // Returns of this run's messages, wherever they arrived.
        let returned: Vec<super::returns::Return> = self
            .mailbox
            .iter()
            .chain(std::iter::once(&self.inbox))
            .flat_map(|i| i.returned())
            .filter(|r| {
                r.original
                    .as_deref()
                    .is_some_and(|id| crate::message_id::parse(&self.run_id, id).is_some())
            })
            .collect();
        let words = returned.iter().map(|r| {
            format!(
                "{} {}",
                r.status.as_deref().unwrap_or("(no status)"),
                r.diagnostic.as_deref().unwrap_or("(no diagnostic)")
            )
        });
        report::EsmtpReport {
            inbox: self.esmtp.inbox.describe(),
            body: self.esmtp.send.body.name().to_string(),
            recipient: self.esmtp.send.recipient.name().to_string(),
            declared_8bitmime: load(&stats.declared_8bitmime),
            smtputf8: load(&stats.smtputf8),
            downgraded: if self.esmtp.send.body.eight_bit() {
                load(&stats.quoted_printable)
            } else {
                0
            },
            eight_bit_on_7bit_hop: load(&stats.eight_bit_on_7bit_hop),
            returns_received: returned.len() as u64,
            return_reasons: report::ReasonCount::tally(words),
        }
    }

    /// Folds one event of the sender or the inbox, measuring submission
    /// latency (attempt to 2xx) and noting when each message was first due.
    fn fold(&mut self, e: Event, at: Instant, fold: &mut Fold) {
        let who = if matches!(e, Event::Delivered { .. }) {
            "inbox"
        } else {
            "sender"
        };
        let line = crate::worker::wire::WireEvent::Ledger(e);
        fold.record_at(at, &who, std::process::id(), &line);
        match e {
            Event::Attempt(seq) => {
                self.attempt_at.insert(seq, at);
                if let Some(slot @ None) = self.first_attempt.get_mut(seq as usize) {
                    *slot = Some(if self.rate > 0 {
                        self.send_start_us + (seq as f64 * 1e6 / self.rate as f64) as i64
                    } else {
                        fold.us_at(at)
                    });
                }
            }
            Event::Confirmed(seq) => {
                if let Some(t) = self.attempt_at.remove(&seq) {
                    let _ = fold
                        .publish_to_confirm
                        .record(at.duration_since(t).as_micros().max(1) as u64);
                }
            }
            _ => {}
        }
        fold.apply(e, at);
    }
}

async fn proxy(upstream: SocketAddr, seed: u64) -> Result<Proxy, RunError> {
    Proxy::start(upstream, Protocol::Smtp, seed)
        .await
        .map_err(RunError::io("cannot start the fault proxy"))
}
