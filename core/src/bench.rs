//! `headwater bench produce` and `consume`: load generation in the spirit of Kafka's
//! kafka-producer-perf-test and kafka-consumer-perf-test, with latency percentiles from an
//! HDR histogram.
//!
//! Each of `producers` producers sends its share of `records` records of `record_bytes`
//! bytes (no key: sticky partitioning) to a topic of `partitions` partitions, with the
//! given acks. Latency is measured per record, from `send` to its acknowledgement.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::{ClientError, ClusterView, Producer, ProducerConfig};
use crate::record::Compression;

/// What to run.
#[derive(Debug, Clone)]
pub struct ProduceBench {
    pub bootstrap: String,
    pub topic: String,
    pub records: u64,
    pub record_bytes: usize,
    pub partitions: i32,
    pub acks: i16,
    pub producers: usize,
    pub compression: Compression,
    /// Records per second for all producers together; `None` is as fast as possible.
    pub rate: Option<u64>,
    /// Also consume the topic and measure each record's produce-to-consume latency (its
    /// value carries its send time).
    pub end_to_end: bool,
    /// The producer's `batch.size`.
    pub batch_bytes: usize,
    /// The producer's `linger.ms`.
    pub linger: Duration,
    /// Replicas per partition if the bench creates the topic (-1: the broker's default).
    pub replication_factor: i16,
    /// Configs of the topic if the bench creates it (`min.insync.replicas`, ...).
    pub topic_configs: Vec<(String, String)>,
    /// Transactional producers committing every this long (Kafka's perf tool's
    /// `--transaction-duration-ms`); the end-to-end consumer then reads committed data.
    pub transaction_duration: Option<Duration>,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchResult {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    pub records_per_s: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_p999: f64,
    pub latency_ms_max: f64,
    /// Produce-to-consume latency percentiles `[p50, p99, p999, max]`, with `--end-to-end`.
    pub end_to_end_ms: Option<[f64; 4]>,
    /// The longest time any partition went without an acknowledgement between its first
    /// and last one: with a steady `--rate`, how long a leader change stalled writes.
    pub max_ack_gap_ms: f64,
}

impl BenchResult {
    /// The JSON object for a run without latencies (`bench consume` reads what is there).
    pub fn to_throughput_json(&self) -> String {
        format!(
            "{{\"records\":{},\"bytes\":{},\"seconds\":{:.3},\"mb_per_s\":{:.2},\"records_per_s\":{:.1}}}",
            self.records, self.bytes, self.seconds, self.mb_per_s, self.records_per_s
        )
    }

    /// The one-line JSON object `--json` prints.
    pub fn to_json(&self) -> String {
        let end_to_end = self.end_to_end_ms.map_or(String::new(), |[p50, p99, p999, max]| {
            format!(",\"end_to_end_ms\":{{\"p50\":{p50:.3},\"p99\":{p99:.3},\"p999\":{p999:.3},\"max\":{max:.3}}}")
        });
        let base = format!(
            "{{\"records\":{},\"bytes\":{},\"seconds\":{:.3},\"mb_per_s\":{:.2},\"records_per_s\":{:.1},\"max_ack_gap_ms\":{:.1},\"latency_ms\":{{\"p50\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}}}}",
            self.records,
            self.bytes,
            self.seconds,
            self.mb_per_s,
            self.records_per_s,
            self.max_ack_gap_ms,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_p999,
            self.latency_ms_max
        );
        format!("{}{end_to_end}}}", &base[..base.len() - 1])
    }
}

/// Creates the topic (an existing one is fine).
async fn create_topic(bench: &ProduceBench) -> Result<(), ClientError> {
    let connection = ClusterView::new(&bench.bootstrap, "headwater-bench").any_connection().await?;
    let configs = bench
        .topic_configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_value(Some(StrBytes::from_string(v.clone())))
        })
        .collect();
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(bench.topic.clone())))
        .with_num_partitions(bench.partitions)
        .with_replication_factor(bench.replication_factor)
        .with_configs(configs);
    let response =
        connection.send(CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(30_000)).await?;
    match response.topics.first().map(|t| t.error_code) {
        Some(0) | Some(36) | None => Ok(()), // 36: TOPIC_ALREADY_EXISTS
        Some(code) => Err(ClientError::Broker { api: "CreateTopics", code }),
    }
}

/// Runs the benchmark; prints progress every second to stderr when it is a terminal.
///
/// # Errors
/// A client error, or a record that was not acknowledged.
pub async fn run_produce(bench: ProduceBench) -> Result<BenchResult, ClientError> {
    create_topic(&bench).await?;
    let payload = Bytes::from((0..bench.record_bytes).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>());
    let epoch = Instant::now();
    let consumer = if bench.end_to_end { Some(start_end_to_end(&bench, epoch).await?) } else { None };
    let acked = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = std::io::stderr().is_terminal().then(|| {
        let acked = Arc::clone(&acked);
        let record_bytes = bench.record_bytes as f64;
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = acked.load(Ordering::Relaxed);
                eprintln!("{:>10} records acknowledged, {:>8.1} MB/s", now, (now - last) as f64 * record_bytes / 1e6);
                last = now;
            }
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    let per_producer = bench.records / bench.producers.max(1) as u64;
    for i in 0..bench.producers.max(1) {
        let config = ProducerConfig {
            bootstrap: bench.bootstrap.clone(),
            client_id: format!("headwater-bench-{i}"),
            acks: bench.acks,
            compression: bench.compression,
            idempotent: bench.acks == -1,
            batch_bytes: bench.batch_bytes,
            linger: bench.linger,
            transactional_id: bench
                .transaction_duration
                .map(|_| format!("headwater-bench-{i}-{}", uuid::Uuid::new_v4().simple())),
            ..ProducerConfig::default()
        };
        let transaction_duration = bench.transaction_duration;
        let payload = payload.clone();
        let topic = bench.topic.clone();
        let acked = Arc::clone(&acked);
        let rate = bench.rate.map(|r| r as f64 / bench.producers.max(1) as f64);
        let stamped = bench.end_to_end;
        tasks.spawn(async move {
            let producer = Producer::connect(config).await?;
            let mut transaction_began = Instant::now();
            if transaction_duration.is_some() {
                producer.begin_transaction()?;
            }
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut gaps = AckGaps::default();
            // Deliveries are awaited in order by this same task, interleaved with sends,
            // so memory stays bounded by what is in flight.
            let mut pending: VecDeque<(Instant, crate::client::DeliveryFuture)> = VecDeque::new();
            let started = Instant::now();
            for n in 0..per_producer {
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let value = if stamped {
                    // The send time rides in the value, for the end-to-end consumer.
                    let mut value = payload.to_vec();
                    let nanos = (sent - epoch).as_nanos() as u64;
                    let stamp = 8.min(value.len());
                    value[..stamp].copy_from_slice(&nanos.to_be_bytes()[..stamp]);
                    Bytes::from(value)
                } else {
                    payload.clone()
                };
                pending.push_back((sent, producer.send(&topic, None, Some(value), vec![]).await?));
                if let Some(duration) = transaction_duration
                    && transaction_began.elapsed() >= duration
                {
                    producer.commit_transaction().await?;
                    producer.begin_transaction()?;
                    transaction_began = Instant::now();
                }
                if pending.front().is_some_and(|(_, f)| f.is_settled()) {
                    // One clock read for every delivery settled since the last look: they
                    // all completed before it, at most one send earlier.
                    let now = Instant::now();
                    while pending.front().is_some_and(|(_, f)| f.is_settled()) {
                        let (sent, delivery) = pending.pop_front().expect("front exists");
                        gaps.record(delivery.await?.partition, now);
                        record_latency(&mut histogram, now - sent, &acked);
                    }
                }
            }
            if transaction_duration.is_some() {
                producer.commit_transaction().await?;
            }
            producer.flush().await?;
            for (sent, delivery) in pending {
                gaps.record(delivery.await?.partition, Instant::now());
                record_latency(&mut histogram, sent.elapsed(), &acked);
            }
            Ok::<_, ClientError>((histogram, gaps.max))
        });
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut max_ack_gap = Duration::ZERO;
    while let Some(done) = tasks.join_next().await {
        let (part, gap) = done.map_err(|e| ClientError::InvalidRecord { message: e.to_string() })??;
        histogram.add(&part).expect("same bounds");
        max_ack_gap = max_ack_gap.max(gap);
    }
    if let Some(progress) = progress {
        progress.abort();
    }
    let seconds = start.elapsed().as_secs_f64();
    let records = acked.load(Ordering::Relaxed);
    let bytes = records * bench.record_bytes as u64;
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let end_to_end_ms = match consumer {
        Some(consumer) => {
            let e2e = tokio::time::timeout(Duration::from_secs(60), consumer)
                .await
                .map_err(|_| ClientError::Timeout { ms: 60_000 })?
                .map_err(|e| ClientError::InvalidRecord { message: e.to_string() })??;
            let q = |q: f64| e2e.value_at_quantile(q) as f64 / 1000.0;
            Some([q(0.5), q(0.99), q(0.999), e2e.max() as f64 / 1000.0])
        }
        None => None,
    };
    Ok(BenchResult {
        end_to_end_ms,
        max_ack_gap_ms: max_ack_gap.as_secs_f64() * 1000.0,
        records,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
        records_per_s: records as f64 / seconds,
        latency_ms_p50: ms(0.5),
        latency_ms_p99: ms(0.99),
        latency_ms_p999: ms(0.999),
        latency_ms_max: histogram.max() as f64 / 1000.0,
    })
}

/// Starts a consumer of every partition at its end, which reads `bench.records` records
/// and returns their produce-to-consume latencies (microseconds).
async fn start_end_to_end(
    bench: &ProduceBench,
    epoch: Instant,
) -> Result<tokio::task::JoinHandle<Result<Histogram<u64>, ClientError>>, ClientError> {
    use crate::client::{Consumer, ConsumerConfig, IsolationLevel, OffsetReset};
    let config = ConsumerConfig {
        bootstrap: bench.bootstrap.clone(),
        client_id: "headwater-bench-e2e".into(),
        auto_offset_reset: OffsetReset::Latest,
        fetch_max_wait: Duration::from_millis(100),
        isolation_level: if bench.transaction_duration.is_some() {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        },
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(config).await?;
    consumer.assign((0..bench.partitions).map(|p| (bench.topic.clone(), p)));
    // Positions are resolved (to the end) before anything is produced.
    consumer.poll().await?;
    let expected = bench.records / bench.producers.max(1) as u64 * bench.producers.max(1) as u64;
    Ok(tokio::spawn(async move {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        let mut seen = 0u64;
        while seen < expected {
            for record in consumer.poll().await? {
                let now = (Instant::now() - epoch).as_nanos() as u64;
                if let Some(value) = record.value.filter(|v| v.len() >= 8) {
                    let sent = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
                    histogram.saturating_record((now.saturating_sub(sent) / 1000).max(1));
                }
                seen += 1;
            }
        }
        Ok(histogram)
    }))
}

/// The longest wait between two acknowledgements of the same partition.
#[derive(Default)]
struct AckGaps {
    last: std::collections::HashMap<i32, Instant>,
    max: Duration,
}

impl AckGaps {
    fn record(&mut self, partition: i32, at: Instant) {
        if let Some(previous) = self.last.insert(partition, at) {
            self.max = self.max.max(at.saturating_duration_since(previous));
        }
    }
}

fn record_latency(histogram: &mut Histogram<u64>, latency: Duration, acked: &AtomicU64) {
    histogram.saturating_record(latency.as_micros().max(1) as u64);
    acked.fetch_add(1, Ordering::Relaxed);
}

/// What `bench consume` reads.
#[derive(Debug, Clone)]
pub struct ConsumeBench {
    pub bootstrap: String,
    pub topic: String,
    /// Stop after this many records (or at the end of the topic, if sooner).
    pub records: u64,
}

/// Reads a topic from the beginning through the consumer, as fast as it can.
///
/// # Errors
/// A client error, or an unknown topic.
pub async fn run_consume(bench: ConsumeBench) -> Result<BenchResult, ClientError> {
    use crate::client::{Admin, Consumer, ConsumerConfig, OffsetReset};
    let admin = Admin::connect(&bench.bootstrap).await?;
    let topic = admin
        .topics(Some(std::slice::from_ref(&bench.topic)))
        .await?
        .into_iter()
        .next()
        .ok_or(ClientError::UnknownTopic { topic: bench.topic.clone() })?;
    let config = ConsumerConfig {
        bootstrap: bench.bootstrap.clone(),
        client_id: "headwater-bench".into(),
        auto_offset_reset: OffsetReset::Earliest,
        fetch_max_wait: Duration::from_millis(100),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(config).await?;
    consumer.assign(topic.partitions.iter().map(|p| (bench.topic.clone(), p.partition)));
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut empty_polls = 0;
    while records < bench.records && empty_polls < 3 {
        let polled = consumer.poll().await?;
        if polled.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        for record in polled {
            records += 1;
            bytes +=
                record.value.as_ref().map_or(0, |v| v.len() as u64) + record.key.as_ref().map_or(0, |k| k.len() as u64);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(BenchResult {
        end_to_end_ms: None,
        max_ack_gap_ms: 0.0,
        records,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
        records_per_s: records as f64 / seconds,
        latency_ms_p50: 0.0,
        latency_ms_p99: 0.0,
        latency_ms_p999: 0.0,
        latency_ms_max: 0.0,
    })
}
