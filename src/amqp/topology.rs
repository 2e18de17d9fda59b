//! The queue a run uses: declared by the runner, inspected during the drain
//! phase, deleted afterwards.

use crate::scenario::{AmqpPlan, QueueType};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;

/// Declares the run's queue as the plan describes it.
pub async fn declare_queue(channel: &Channel, name: &str, plan: &AmqpPlan) -> lapin::Result<()> {
    let mut args = FieldTable::default();
    if plan.queue_type == QueueType::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(plan.queue_type.name().into()),
        );
    }
    let options = QueueDeclareOptions {
        durable: plan.durable,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), options, args)
        .await
        .map(|_| ())
}

/// Messages ready in the queue (not counting those delivered and unacked).
pub async fn ready_messages(channel: &Channel, name: &str) -> lapin::Result<u32> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let q = channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await?;
    Ok(q.message_count())
}

/// Deletes the queue; returns how many messages it still held.
pub async fn delete_queue(channel: &Channel, name: &str) -> lapin::Result<u32> {
    channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await
}
