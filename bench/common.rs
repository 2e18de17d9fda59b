//! What every benchmark shares: the broker (`DLAB_AMQP_URL`, or a private
//! node started for the benchmark and stopped after it), a run context, and
//! the plain lapin loop that AMQP runs are measured against.

// Each benchmark includes this file and uses part of it.
#![allow(dead_code)]

use dlab::broker::NodeState;
use dlab::runner::RunContext;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

/// The broker a benchmark uses.
pub struct Bench {
    /// Its AMQP URL.
    pub url: String,
    /// Scratch space, removed at the end.
    pub home: PathBuf,
    node: Option<NodeState>,
}

impl Bench {
    /// Uses `DLAB_AMQP_URL`, or starts a private node.
    pub fn start(rt: &tokio::runtime::Runtime, name: &str) -> Bench {
        let home = std::env::temp_dir().join(format!("dlab-bench-{name}-{}", std::process::id()));
        let (url, node) = match std::env::var("DLAB_AMQP_URL") {
            Ok(u) => (u, None),
            Err(_) => {
                let state = rt
                    .block_on(dlab::broker::node::start(&home.join("node")))
                    .expect(
                        "a private node starts (scripts/install-deps installs rabbitmq-server)",
                    );
                (state.url(), Some(state))
            }
        };
        Bench { url, home, node }
    }

    /// A run context on this broker, workers from the dlab binary.
    pub fn context(&self, always_proxy: bool) -> RunContext {
        RunContext {
            home: self.home.clone(),
            worker_exe: PathBuf::from(env!("CARGO_BIN_EXE_dlab")),
            keep_queue: false,
            always_proxy,
            progress: false,
            // The benchmarks measure speed; the broker's own count is the tests'.
            amqp: Some(dlab::runner::AmqpTarget {
                url: self.url.clone(),
                node: None,
                management: None,
            }),
            cluster: None,
            relay: dlab::smtp::RelayTarget::Private,
            cancel: dlab::runner::Cancel::never(),
        }
    }

    /// The private node, when the benchmark started one.
    pub fn node(&self) -> Option<&NodeState> {
        self.node.as_ref()
    }

    /// Messages per measured run (`DLAB_BENCH_MESSAGES`, default 20,000).
    pub fn messages() -> u64 {
        std::env::var("DLAB_BENCH_MESSAGES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(state) = &self.node {
            dlab::broker::node::stop(state, Duration::from_secs(30));
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Messages per second from the first publish to the last ack of
/// The baseline: a plain lapin publish-and-consume loop (confirms, 256 in
/// flight, a durable queue, classic or quorum, persistent messages of
/// `payload` bytes, manual acks).
pub async fn lapin_loop(url: &str, messages: u64, payload: usize, quorum: bool) -> f64 {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap();
    let queue = format!("bench-baseline-{}", uuid::Uuid::new_v4().simple());
    let publish = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    if quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    publish
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let consume = conn.create_channel().await.unwrap();
    consume
        .basic_qos(100, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let consuming = tokio::spawn(async move {
        let mut n = 0;
        while n < messages {
            let d = consumer.next().await.unwrap().unwrap();
            d.ack(BasicAckOptions::default()).await.unwrap();
            n += 1;
        }
    });
    let body = vec![b'x'; payload];
    let mut in_flight = FuturesUnordered::new();
    for i in 0..messages {
        if in_flight.len() >= 256 {
            in_flight.next().await;
        }
        let confirm = publish
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(i.to_string().as_str().into()),
            )
            .await
            .unwrap();
        in_flight.push(confirm);
    }
    while in_flight.next().await.is_some() {}
    consuming.await.unwrap();
    let rate = messages as f64 / start.elapsed().as_secs_f64();
    let _ = publish
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "done".into()).await;
    rate
}
