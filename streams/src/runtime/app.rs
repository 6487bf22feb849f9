//! `KafkaStreams`: a running application: its stream threads and their state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::broker::BrokerBackend;
use super::config::{LogTarget, ProcessingGuarantee, StreamsConfig};
use super::embedded::EmbeddedBackend;
use super::metrics::{Metrics, TaskMetrics};
use super::thread::StreamThread;
use crate::error::StreamsError;
use crate::topology::Topology;

/// A stream application running its topology on `num_stream_threads` threads.
///
/// Each thread has its own single-threaded tokio runtime, its clients (or its share of
/// the embedded log) and its tasks, so a task's nodes and stores never cross threads.
pub struct KafkaStreams {
    threads: Vec<JoinHandle<Result<(), StreamsError>>>,
    shutdown: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    failure: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for KafkaStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaStreams").field("threads", &self.threads.len()).finish()
    }
}

impl KafkaStreams {
    /// Starts the application's threads; they join the group (or take their share of
    /// the embedded log), restore their tasks' state and begin processing.
    ///
    /// # Errors
    /// [`StreamsError::Config`] for an invalid configuration.
    pub fn start(topology: Topology, config: StreamsConfig) -> Result<Self, StreamsError> {
        if config.application_id.is_empty()
            || !config.application_id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(StreamsError::Config(format!(
                "application.id {:?} must be non-empty ASCII letters, digits, '.', '_' or '-'",
                config.application_id
            )));
        }
        if config.num_stream_threads == 0 {
            return Err(StreamsError::Config("num.stream.threads must be at least 1".into()));
        }
        if config.processing_guarantee == ProcessingGuarantee::ExactlyOnceV2
            && matches!(config.log, LogTarget::Embedded(_))
        {
            return Err(StreamsError::Config(
                "processing.guarantee exactly_once_v2 needs a broker's transactions; the embedded log has none".into(),
            ));
        }
        // Names this instance's transactional producers (Kafka Streams' process id).
        let process_id = uuid::Uuid::new_v4();
        let topology = Arc::new(topology);
        let shutdown = Arc::new(AtomicBool::new(false));
        let metrics = Arc::new(Metrics::new(&config.application_id));
        let failure = Arc::new(Mutex::new(None));
        let mut threads = Vec::new();
        for index in 0..config.num_stream_threads {
            let name = format!("{}-StreamThread-{}", config.application_id, index + 1);
            let transactional_id = format!("{}-{process_id}-{}", config.application_id, index + 1);
            let (topology, config, shutdown, metrics, failure) = (
                Arc::clone(&topology),
                config.clone(),
                Arc::clone(&shutdown),
                Arc::clone(&metrics),
                Arc::clone(&failure),
            );
            let thread_name = name.clone();
            let handle = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let outcome = run_thread(
                        index,
                        thread_name.clone(),
                        &transactional_id,
                        topology,
                        config,
                        Arc::clone(&shutdown),
                        metrics,
                    );
                    if let Err(error) = &outcome {
                        tracing::error!(thread = %thread_name, %error, "stream thread failed");
                        failure
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(error.to_string());
                        // One failed thread stops the application, as Kafka Streams'
                        // default uncaught-exception handler (SHUTDOWN_CLIENT) does.
                        shutdown.store(true, Ordering::Release);
                    }
                    outcome
                })
                .map_err(|source| StreamsError::Io { context: "starting a stream thread".into(), source })?;
            threads.push(handle);
        }
        Ok(Self { threads, shutdown, metrics, failure })
    }

    /// Per-task figures of this instance's tasks.
    pub fn task_metrics(&self) -> Vec<TaskMetrics> {
        self.metrics.snapshot()
    }

    /// Whether a thread has failed (the application is stopping).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Whether every thread is still running.
    pub fn is_running(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Waits until `done` holds for the task metrics or `timeout` passes.
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[TaskMetrics]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if done(&self.task_metrics()) {
                return true;
            }
            if !self.is_running() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops gracefully: every thread commits what it processed, leaves the group and
    /// exits.
    ///
    /// # Errors
    /// The first thread failure, if any.
    pub fn close(self) -> Result<(), StreamsError> {
        self.shutdown.store(true, Ordering::Release);
        let mut first = None;
        for thread in self.threads {
            let outcome =
                thread.join().unwrap_or_else(|_| Err(StreamsError::Config("a stream thread panicked".into())));
            if let Err(error) = outcome {
                first.get_or_insert(error);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs until SIGTERM or SIGINT (or a thread fails), then closes gracefully.
    ///
    /// # Errors
    /// As [`Self::close`].
    pub fn run_until_signal(self) -> Result<(), StreamsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StreamsError::Io { context: "starting the signal runtime".into(), source })?;
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate())
                .map_err(|source| StreamsError::Io { context: "installing the SIGTERM handler".into(), source })?;
            let mut ticker = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                    _ = ticker.tick() => if !self.is_running() { break },
                }
            }
            Ok::<(), StreamsError>(())
        })?;
        tracing::info!("stopping: committing and leaving the group");
        self.close()
    }
}

fn run_thread(
    index: usize,
    name: String,
    transactional_id: &str,
    topology: Arc<Topology>,
    config: StreamsConfig,
    shutdown: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> Result<(), StreamsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StreamsError::Io { context: "starting a stream thread's runtime".into(), source })?;
    runtime.block_on(async move {
        macro_rules! thread {
            ($backend:expr) => {
                StreamThread {
                    name,
                    topology,
                    application_id: config.application_id.clone(),
                    state_dir: config.state_dir.clone(),
                    commit_interval: config.commit_interval,
                    backend: $backend,
                    shutdown,
                    metrics,
                    plan: None,
                    partitions: Arc::new(HashMap::new()),
                    tasks: BTreeMap::new(),
                    routes: HashMap::new(),
                    last_commit: Instant::now(),
                    last_punctuate: 0,
                }
                .run()
                .await
            };
        }
        match &config.log {
            LogTarget::Bootstrap(bootstrap) => {
                let backend = BrokerBackend::connect(bootstrap, &config, index, transactional_id).await?;
                thread!(backend)
            }
            LogTarget::Embedded(log) => {
                let backend = EmbeddedBackend::new(
                    log.clone(),
                    &config.application_id,
                    index,
                    config.num_stream_threads,
                    config.poll_wait,
                );
                thread!(backend)
            }
        }
    })
}
