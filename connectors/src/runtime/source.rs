//! Runs one source task: poll, transform, convert, produce, and commit source offsets once
//! the records they cover are acknowledged.
//!
//! Offsets only ever name records the broker has acknowledged: every record sent stays in
//! `outstanding`, in poll order, until its delivery settles, and a source partition's
//! offset moves only past a prefix of settled records. A graceful stop flushes the
//! producer and commits, so a restart neither loses nor repeats a record; after a crash the
//! records since the last commit are produced again (at least once, as in Kafka Connect).
//!
//! Exactly once (KIP-618, [`crate::exactly_once`]): the producer is transactional, a
//! transaction opens with the first record after a commit, and a commit writes the
//! offsets into the same transaction and commits it, at each `transaction.boundary`. A
//! crash aborts what was open (the next producer of the task's transactional id fences
//! the old one), and the task starts again from offsets read with read_committed, so
//! the records and the offsets that cover them appear together or not at all.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use headwater_core::client::{DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use super::dead_letter::Stage;
use super::offsets::OffsetStore;
use super::status::State;
use super::{Target, TaskContext};
use crate::connector::{SourceRecord, SourceTask, TaskError, canonical};
use crate::errors::Tolerance;
use crate::exactly_once::Boundary;

/// Past this many records sent and unsettled, the task waits for the oldest, so memory
/// follows what the broker has not acknowledged rather than the commit interval.
const MAX_OUTSTANDING: usize = 1 << 16;

/// A record sent (or skipped: no delivery) and the source offset it completes.
struct Outstanding {
    delivery: Option<DeliveryFuture>,
    partition: Value,
    offset: Value,
}

pub(crate) struct SourceWorker {
    pub(crate) context: Arc<TaskContext>,
    pub(crate) task: Box<dyn SourceTask>,
    pub(crate) store: Arc<OffsetStore>,
    pub(crate) target: watch::Receiver<Target>,
}

impl SourceWorker {
    /// Runs until told to stop, or until the task fails; the task is stopped either way.
    pub(crate) async fn run(self) -> Result<(), TaskError> {
        let SourceWorker { context: ctx, mut task, store, mut target } = self;
        let result = Self::drive(&ctx, task.as_mut(), &store, &mut target).await;
        task.stop().await;
        result
    }

    async fn drive(
        ctx: &TaskContext,
        task: &mut dyn SourceTask,
        store: &OffsetStore,
        target: &mut watch::Receiver<Target>,
    ) -> Result<(), TaskError> {
        // Under exactly-once, InitProducerId fences the task's previous producer and aborts
        // its open transaction before the offsets are read.
        let transactional_id = ctx
            .transactions
            .map(|_| format!("{}-{}-{}", ctx.worker.transactional_id_prefix, ctx.connector, ctx.task_id));
        // When offsets (and, exactly once, transactions) commit.
        let interval = match ctx.transactions {
            Some(Boundary::Interval(Some(interval))) => Some(interval),
            Some(Boundary::Poll) => None,
            Some(Boundary::Interval(None)) | None => Some(ctx.worker.offset_flush_interval),
        };
        let producer = Producer::connect(ProducerConfig {
            bootstrap: ctx.worker.bootstrap.clone(),
            client_id: format!("connector-producer-{}-{}", ctx.connector, ctx.task_id),
            acks: -1,
            idempotent: true,
            linger: Duration::from_millis(10),
            batch_bytes: 256 << 10,
            transactional_id,
            // A transaction lives about one interval: well inside its timeout, so the
            // coordinator never aborts a healthy one.
            transaction_timeout: interval.map_or(Duration::from_secs(60), |i| (i * 2).max(Duration::from_secs(60))),
            ..ProducerConfig::default()
        })
        .await
        .map_err(|e| TaskError::Retriable(format!("cannot connect to {}: {e}", ctx.worker.bootstrap)))?;
        let offsets = store.read(&ctx.connector, ctx.transactions.is_some()).await.map_err(TaskError::retriable)?;
        task.start(offsets).await?;
        ctx.report(State::Running, None);

        let delivery =
            if ctx.transactions.is_some() { Delivery::Transactional { open: false } } else { Delivery::AtLeastOnce };
        let mut pipeline = Pipeline { outstanding: VecDeque::new(), acked: BTreeMap::new(), delivery };
        let pumped = Self::pump(ctx, task, store, target, &producer, &mut pipeline, interval).await;
        if let Err(error) = pumped {
            // Whatever the failure, an open transaction is aborted now rather than left to
            // hold read_committed readers back until it times out.
            if pipeline.delivery == (Delivery::Transactional { open: true }) {
                return Err(pipeline.abort(&producer, error.to_string()).await);
            }
            return Err(error);
        }
        pipeline.commit(ctx, task, store, &producer).await
    }

    /// Polls, sends and commits until told to stop.
    async fn pump(
        ctx: &TaskContext,
        task: &mut dyn SourceTask,
        store: &OffsetStore,
        target: &mut watch::Receiver<Target>,
        producer: &Producer,
        pipeline: &mut Pipeline,
        interval: Option<Duration>,
    ) -> Result<(), TaskError> {
        let mut last_commit = Instant::now();
        let mut paused = false;
        let mut poll_failures = 0u32;
        loop {
            let wanted = *target.borrow_and_update();
            match wanted {
                Target::Stopped => break,
                Target::Paused => {
                    if !paused {
                        paused = true;
                        ctx.report(State::Paused, None);
                    }
                    // Commit what was sent before the pause (no transaction stays open while
                    // paused), then wait for a change.
                    pipeline.commit(ctx, task, store, producer).await?;
                    let _ = tokio::time::timeout(ctx.worker.offset_flush_interval, target.changed()).await;
                    continue;
                }
                Target::Running if paused => {
                    paused = false;
                    ctx.report(State::Running, None);
                }
                Target::Running => {}
            }
            let records = match task.poll().await {
                Ok(records) => {
                    poll_failures = 0;
                    records
                }
                Err(TaskError::Retriable(message)) => {
                    poll_failures += 1;
                    let delay = ctx.policy.retry_delay(poll_failures, Duration::ZERO).unwrap_or(Duration::from_secs(1));
                    tracing::warn!(connector = %ctx.connector, task = ctx.task_id, "poll failed, retrying: {message}");
                    tokio::time::sleep(delay.max(Duration::from_millis(100))).await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            let polled = !records.is_empty();
            if polled {
                pipeline.begin(producer)?;
            }
            for record in records {
                let item = send(ctx, producer, record).await?;
                pipeline.outstanding.push_back(item);
                if pipeline.outstanding.len() >= MAX_OUTSTANDING {
                    pipeline.settle(ctx, task, Settle::Oldest).await?;
                }
            }
            pipeline.settle(ctx, task, Settle::Ready).await?;
            let due = match interval {
                Some(interval) => last_commit.elapsed() >= interval,
                None => polled,
            };
            if due {
                last_commit = Instant::now();
                pipeline.commit(ctx, task, store, producer).await?;
            }
        }
        Ok(())
    }
}

/// Transforms, converts and sends one record; a record the transforms drop or that
/// fails under `errors.tolerance=all` is skipped, but still completes its offset.
async fn send(ctx: &TaskContext, producer: &Producer, source: SourceRecord) -> Result<Outstanding, TaskError> {
    let SourceRecord { record, source_partition, source_offset } = source;
    let skipped = |partition, offset| Outstanding { delivery: None, partition, offset };
    let record = match ctx.chain.apply(record) {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(skipped(source_partition, source_offset)),
        Err(error) => {
            ctx.tolerate(Stage::Transformation, &error)?;
            return Ok(skipped(source_partition, source_offset));
        }
    };
    let key = match ctx.key_converter.from_data(&record.key) {
        Ok(key) => key,
        Err(error) => {
            ctx.tolerate(Stage::KeyConverter, &error)?;
            return Ok(skipped(source_partition, source_offset));
        }
    };
    let value = match ctx.value_converter.from_data(&record.value) {
        Ok(value) => value,
        Err(error) => {
            ctx.tolerate(Stage::ValueConverter, &error)?;
            return Ok(skipped(source_partition, source_offset));
        }
    };
    let sent = producer
        .send_record(ProducerRecord {
            topic: &record.topic,
            partition: record.partition,
            timestamp: record.timestamp,
            key: key.map(Bytes::from),
            value: value.map(Bytes::from),
            headers: record.headers,
        })
        .await;
    match sent {
        Ok(delivery) => {
            Ok(Outstanding { delivery: Some(delivery), partition: source_partition, offset: source_offset })
        }
        Err(error) => {
            ctx.tolerate(Stage::KafkaProduce, &error)?;
            Ok(skipped(source_partition, source_offset))
        }
    }
}

/// Records on their way to the broker, and the offsets the acknowledged ones reached.
struct Pipeline {
    outstanding: VecDeque<Outstanding>,
    /// By canonical source partition: the partition and its latest acknowledged offset,
    /// not yet committed.
    acked: BTreeMap<String, (Value, Value)>,
    delivery: Delivery,
}

/// How a pipeline's records and offsets reach the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// Offsets written once the records are acknowledged.
    AtLeastOnce,
    /// Records and offsets in one transaction (KIP-618); `open` between the first record
    /// after a commit and the next commit.
    Transactional { open: bool },
}

impl Pipeline {
    /// Opens a transaction before records are sent, exactly once.
    fn begin(&mut self, producer: &Producer) -> Result<(), TaskError> {
        if self.delivery == (Delivery::Transactional { open: false }) {
            producer.begin_transaction().map_err(|e| TaskError::Fatal(format!("cannot begin a transaction: {e}")))?;
            self.delivery = Delivery::Transactional { open: true };
        }
        Ok(())
    }

    /// Aborts the open transaction after a failure: nothing of it is ever read
    /// committed, and the task fails so that it starts again from the committed offsets
    /// (its own position is past what was aborted).
    async fn abort(&mut self, producer: &Producer, why: String) -> TaskError {
        self.delivery = Delivery::Transactional { open: false };
        if let Err(error) = producer.abort_transaction().await {
            tracing::warn!("aborting a source task's transaction failed: {error}");
        }
        TaskError::Fatal(format!("transaction aborted: {why}"))
    }

    /// Flushes the producer, settles every record sent, writes the offsets they reached,
    /// and tells the task.
    async fn commit(
        &mut self,
        ctx: &TaskContext,
        task: &mut dyn SourceTask,
        store: &OffsetStore,
        producer: &Producer,
    ) -> Result<(), TaskError> {
        if let Delivery::Transactional { open } = self.delivery {
            return if open { self.commit_transaction(ctx, task, store, producer).await } else { Ok(()) };
        }
        if !self.outstanding.is_empty() {
            producer.flush().await.map_err(TaskError::fatal)?;
            self.settle(ctx, task, Settle::All).await?;
        }
        if self.acked.is_empty() {
            return Ok(());
        }
        let offsets: Vec<(Value, Option<Value>)> =
            self.acked.values().map(|(p, o)| (p.clone(), Some(o.clone()))).collect();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            match store.write(producer, &ctx.connector, &offsets).await {
                Ok(()) => break,
                // The records are in their topics; until the offsets are too, a crash would
                // only repeat them.
                Err(error) if started.elapsed() < Duration::from_secs(60) => {
                    attempt += 1;
                    tracing::warn!(connector = %ctx.connector, task = ctx.task_id, "offset commit failed, retrying: {error}");
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                }
                Err(error) => return Err(TaskError::retriable(error)),
            }
        }
        self.acked.clear();
        task.commit().await
    }

    /// Exactly once: every record sent is acknowledged, the offsets they reach are
    /// written in the same transaction, and it commits; any failure aborts it.
    async fn commit_transaction(
        &mut self,
        ctx: &TaskContext,
        task: &mut dyn SourceTask,
        store: &OffsetStore,
        producer: &Producer,
    ) -> Result<(), TaskError> {
        let settled = async {
            producer.flush().await.map_err(TaskError::fatal)?;
            self.settle(ctx, task, Settle::All).await
        }
        .await;
        if let Err(error) = settled {
            return Err(self.abort(producer, error.to_string()).await);
        }
        let offsets: Vec<(Value, Option<Value>)> =
            self.acked.values().map(|(p, o)| (p.clone(), Some(o.clone()))).collect();
        if let Err(error) = store.write(producer, &ctx.connector, &offsets).await {
            return Err(self.abort(producer, error.to_string()).await);
        }
        if let Err(error) = producer.commit_transaction().await {
            return Err(self.abort(producer, format!("commit failed: {error}")).await);
        }
        self.delivery = Delivery::Transactional { open: false };
        self.acked.clear();
        task.commit().await
    }

    /// Moves settled records from the front of `outstanding` into `acked`. A failed
    /// delivery fails the task unless errors are tolerated.
    async fn settle(&mut self, ctx: &TaskContext, task: &mut dyn SourceTask, mode: Settle) -> Result<(), TaskError> {
        let (outstanding, acked) = (&mut self.outstanding, &mut self.acked);
        let mut waited = false;
        while let Some(front) = outstanding.front() {
            let unsettled = front.delivery.as_ref().is_some_and(|d| !d.is_settled());
            let may_wait = mode == Settle::All || (mode == Settle::Oldest && !waited);
            if unsettled && !may_wait {
                break;
            }
            waited = true;
            let item = outstanding.pop_front().expect("front exists");
            let mut written = None;
            if let Some(delivery) = item.delivery {
                match delivery.await {
                    Ok(metadata) => written = Some(metadata),
                    Err(error) if ctx.policy.tolerance == Tolerance::None => {
                        return Err(TaskError::Fatal(format!("a record could not be produced: {error}")));
                    }
                    Err(error) => {
                        tracing::warn!(connector = %ctx.connector, task = ctx.task_id, "skipping a record that could not be produced: {error}");
                    }
                }
            }
            task.commit_record(&item.offset, written);
            acked.insert(canonical(&item.partition), (item.partition, item.offset));
        }
        Ok(())
    }
}

/// How far [`Pipeline::settle`] waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// Only what is settled already.
    Ready,
    /// The oldest record, then what is settled.
    Oldest,
    /// Everything (after a flush).
    All,
}
