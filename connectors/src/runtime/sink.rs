//! Runs one sink task: a member of the connector's consumer group (`connect-<name>`) that
//! converts, transforms and puts records, and commits their offsets only after the task
//! has flushed them.
//!
//! The member holds its group's rebalances until it has flushed and committed, so a
//! partition that moves to another task carries no records put but not committed; a
//! graceful stop does the same, so a restart neither loses nor repeats a record. Records
//! that fail conversion, a transform or delivery are, under `errors.tolerance=all`, sent as
//! they were read to the dead-letter topic (which is flushed before the offsets that pass
//! them are committed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use headwater_core::client::{
    Admin, ConsumerConfig, ConsumerRecord, GroupConfig, GroupConsumer, OffsetReset, Producer, ProducerConfig,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::dead_letter::{DeadLetterQueue, Stage};
use super::status::State;
use super::{Target, TaskContext};
use crate::connector::{SinkTask, TaskError};
use crate::record::ConnectRecord;

pub(crate) struct SinkWorker {
    pub(crate) context: Arc<TaskContext>,
    pub(crate) task: Box<dyn SinkTask>,
    pub(crate) topics: Vec<String>,
    pub(crate) target: watch::Receiver<Target>,
}

/// The dead-letter topic and the producer that writes to it.
struct DeadLetters {
    producer: Producer,
    queue: DeadLetterQueue,
}

/// What the task has been given and not yet flushed.
#[derive(Default)]
struct Uncommitted {
    /// The next offset to read of each partition with records put (or skipped).
    offsets: BTreeMap<(String, i32), i64>,
}

impl SinkWorker {
    /// Runs until told to stop, or until the task fails; the task is stopped either way.
    pub(crate) async fn run(self) -> Result<(), TaskError> {
        let SinkWorker { context: ctx, mut task, topics, mut target } = self;
        let result = drive(&ctx, task.as_mut(), topics, &mut target).await;
        task.stop().await;
        result
    }
}

async fn drive(
    ctx: &TaskContext,
    task: &mut dyn SinkTask,
    topics: Vec<String>,
    target: &mut watch::Receiver<Target>,
) -> Result<(), TaskError> {
    let bootstrap = &ctx.worker.bootstrap;
    let unreachable = |e: headwater_core::client::ClientError| TaskError::Retriable(format!("{bootstrap}: {e}"));
    let mut dead_letters = match &ctx.policy.dead_letter_topic {
        None => None,
        Some(topic) => {
            let admin = Admin::connect(bootstrap).await.map_err(unreachable)?;
            let queue = DeadLetterQueue::open(&admin, topic, ctx.policy.context_headers, &ctx.connector, ctx.task_id)
                .await
                .map_err(|e| TaskError::Fatal(format!("dead-letter topic {topic}: {e}")))?;
            let producer = Producer::connect(ProducerConfig {
                bootstrap: bootstrap.clone(),
                client_id: format!("connector-dlq-producer-{}-{}", ctx.connector, ctx.task_id),
                ..ProducerConfig::default()
            })
            .await
            .map_err(unreachable)?;
            Some(DeadLetters { producer, queue })
        }
    };
    let mut group = GroupConfig::new(&format!("connect-{}", ctx.connector));
    group.auto_commit = None;
    group.hold_rebalances = true;
    let mut consumer = GroupConsumer::subscribe(
        ConsumerConfig {
            bootstrap: bootstrap.clone(),
            client_id: format!("connector-consumer-{}-{}", ctx.connector, ctx.task_id),
            fetch_max_wait: Duration::from_millis(500),
            // Kafka Connect's sinks start a new group at the beginning.
            auto_offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
        group,
        topics,
    )
    .await
    .map_err(unreachable)?;
    task.start().await?;
    ctx.report(State::Running, None);

    let mut uncommitted = Uncommitted::default();
    let mut last_commit = Instant::now();
    let mut paused = false;
    let mut poll_failures = 0u32;
    let result = loop {
        let wanted = *target.borrow_and_update();
        match wanted {
            Target::Stopped => break Ok(()),
            Target::Paused => {
                // Polls go on, fetching nothing, so the member stays in its group.
                consumer.pause(consumer.assignment());
                if !paused {
                    paused = true;
                    ctx.report(State::Paused, None);
                }
            }
            Target::Running if paused => {
                paused = false;
                consumer.resume(consumer.assignment());
                ctx.report(State::Running, None);
            }
            Target::Running => {}
        }
        if consumer.rebalance_wanted() {
            if let Err(error) = commit(ctx, task, &mut consumer, &mut uncommitted, dead_letters.as_mut(), true).await {
                break Err(error);
            }
            if let Err(error) = consumer.rebalance().await {
                tracing::warn!(connector = %ctx.connector, task = ctx.task_id, "rebalance: {error}");
            }
        }
        let records = match consumer.poll().await {
            Ok(records) => {
                poll_failures = 0;
                records
            }
            Err(error) => {
                // The group or a broker is moving; the consumer finds them again.
                poll_failures += 1;
                tracing::warn!(connector = %ctx.connector, task = ctx.task_id, "poll failed: {error}");
                tokio::time::sleep(Duration::from_millis(100 << poll_failures.min(5))).await;
                continue;
            }
        };
        // A poll that brought nothing still reaches the task (with no records), as in Kafka
        // Connect, so that time-based work (a file rolled by age) runs on an idle topic.
        if let Err(error) = deliver(ctx, task, &records, &mut uncommitted, dead_letters.as_mut()).await {
            break Err(error);
        }
        if last_commit.elapsed() >= ctx.worker.offset_flush_interval {
            last_commit = Instant::now();
            if let Err(error) = commit(ctx, task, &mut consumer, &mut uncommitted, dead_letters.as_mut(), false).await {
                break Err(error);
            }
        }
    };
    let result = match result {
        Ok(()) => commit(ctx, task, &mut consumer, &mut uncommitted, dead_letters.as_mut(), true).await,
        failed => failed,
    };
    // Leaving at once lets the group give the partitions to another task without waiting
    // for the session to time out.
    if let Err(error) = consumer.close().await {
        tracing::debug!(connector = %ctx.connector, task = ctx.task_id, "leaving the group: {error}");
    }
    result
}

/// Converts, transforms and puts one poll's records.
async fn deliver(
    ctx: &TaskContext,
    task: &mut dyn SinkTask,
    records: &[ConsumerRecord],
    uncommitted: &mut Uncommitted,
    mut dead_letters: Option<&mut DeadLetters>,
) -> Result<(), TaskError> {
    let mut batch = Vec::with_capacity(records.len());
    // The consumed record behind each of `batch`'s, for the dead-letter topic.
    let mut origins = Vec::with_capacity(records.len());
    for (index, consumed) in records.iter().enumerate() {
        uncommitted.offsets.insert((consumed.topic.to_string(), consumed.partition), consumed.offset + 1);
        match convert(ctx, consumed) {
            Ok(Some(record)) => {
                batch.push(record);
                origins.push(index);
            }
            Ok(None) => {}
            Err((stage, error)) => skip(ctx, dead_letters.as_deref_mut(), consumed, stage, error.as_ref()).await?,
        }
    }
    if batch.is_empty() && !records.is_empty() {
        return Ok(());
    }
    let mut attempt = 0u32;
    let started = Instant::now();
    let failures = loop {
        match task.put(&batch).await {
            Ok(failures) => break failures,
            // Kafka Connect redelivers a batch after a retriable error for as long as it
            // takes; the waits double up to `errors.retry.delay.max.ms`.
            Err(TaskError::Retriable(message)) => {
                attempt += 1;
                let delay = ctx.policy.retry_delay(attempt, Duration::ZERO).unwrap_or(Duration::from_millis(100));
                tracing::warn!(
                    connector = %ctx.connector, task = ctx.task_id, attempt,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "put failed, retrying: {message}"
                );
                tokio::time::sleep(delay.max(Duration::from_millis(100))).await;
            }
            Err(error) => return Err(error),
        }
    };
    for failure in failures {
        let Some(&origin) = origins.get(failure.index) else { continue };
        let error = std::io::Error::other(failure.reason);
        skip(ctx, dead_letters.as_deref_mut(), &records[origin], Stage::TaskPut, &error).await?;
    }
    Ok(())
}

type StageError = (Stage, Box<dyn std::error::Error + Send + Sync>);

/// A consumed record as the task sees it, or `None` when a transform dropped it.
fn convert(ctx: &TaskContext, consumed: &ConsumerRecord) -> Result<Option<ConnectRecord>, StageError> {
    let key = ctx.key_converter.to_data(consumed.key.as_deref()).map_err(|e| (Stage::KeyConverter, e.into()))?;
    let value =
        ctx.value_converter.to_data(consumed.value.as_deref()).map_err(|e| (Stage::ValueConverter, e.into()))?;
    let record = ConnectRecord {
        topic: consumed.topic.to_string(),
        partition: Some(consumed.partition),
        offset: Some(consumed.offset),
        key,
        value,
        headers: consumed.headers.clone(),
        timestamp: Some(consumed.timestamp),
    };
    ctx.chain.apply(record).map_err(|e| (Stage::Transformation, e.into()))
}

/// A record that failed: the task fails, or (tolerated) it goes to the dead-letter topic.
async fn skip(
    ctx: &TaskContext,
    dead_letters: Option<&mut DeadLetters>,
    consumed: &ConsumerRecord,
    stage: Stage,
    error: &(dyn std::error::Error + Send + Sync + 'static),
) -> Result<(), TaskError> {
    ctx.tolerate(stage, error).map_err(|e| {
        TaskError::Fatal(format!(
            "{e} (record {}-{} at offset {})",
            consumed.topic, consumed.partition, consumed.offset
        ))
    })?;
    if let Some(dl) = dead_letters {
        dl.queue
            .report(&dl.producer, consumed, stage, error)
            .await
            .map_err(|e| TaskError::Fatal(format!("dead-letter topic: {e}")))?;
    }
    Ok(())
}

/// Flushes the task (closes it, when it is giving up its partitions) and the dead-letter
/// topic, then commits the offsets they cover.
async fn commit(
    ctx: &TaskContext,
    task: &mut dyn SinkTask,
    consumer: &mut GroupConsumer,
    uncommitted: &mut Uncommitted,
    dead_letters: Option<&mut DeadLetters>,
    closing: bool,
) -> Result<(), TaskError> {
    if uncommitted.offsets.is_empty() {
        return Ok(());
    }
    let mut attempt = 0u32;
    loop {
        let flushed = if closing { task.close().await } else { task.flush().await };
        match flushed {
            Ok(()) => break,
            Err(TaskError::Retriable(message)) => {
                attempt += 1;
                tracing::warn!(connector = %ctx.connector, task = ctx.task_id, "flush failed, retrying: {message}");
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
            }
            Err(error) => return Err(error),
        }
    }
    if let Some(dl) = dead_letters {
        dl.producer.flush().await.map_err(|e| TaskError::Fatal(format!("dead-letter topic: {e}")))?;
        dl.queue.settle().await.map_err(|e| TaskError::Fatal(format!("dead-letter topic: {e}")))?;
    }
    // Offsets of partitions this member no longer owns are another's to commit now.
    let owned: std::collections::BTreeSet<(String, i32)> = consumer.assignment().into_iter().collect();
    uncommitted.offsets.retain(|tp, _| owned.contains(tp));
    let limits = task.committable();
    let offsets: Vec<(String, i32, i64)> = uncommitted
        .offsets
        .iter()
        .map(|(tp, next)| (tp.0.clone(), tp.1, limits.get(tp).map_or(*next, |limit| (*limit).min(*next))))
        .collect();
    match consumer.commit_offsets(&offsets).await {
        // A partition whose records the task still holds stays, to be committed further
        // once they are durable.
        Ok(()) => uncommitted.offsets.retain(|tp, next| limits.get(tp).is_some_and(|limit| limit < next)),
        // The group is moving (a rebalance, a coordinator change): the records are flushed,
        // and the offsets are committed by the next commit if this member keeps the
        // partitions; if not, the next owner delivers them again (at least once).
        Err(error) => {
            tracing::warn!(connector = %ctx.connector, task = ctx.task_id, "offset commit failed: {error}");
        }
    }
    Ok(())
}
