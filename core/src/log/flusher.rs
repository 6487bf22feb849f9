//! Group commit: a few threads fsync logs on request, so every append that waits while a
//! flush of its log is running shares the next one, and different logs flush in parallel.
//!
//! ```text
//!  append ─> wait_flushed(offset) ─> request_flush ─> queue ─> flusher thread
//!     ^                                                            │ Log::flush: fdatasync
//!     └──────────── flushed offset watch (wakes all waiters) <─────┘
//! ```
//!
//! A log sits in the queue at most once (its `flush_requested` flag); the flag is cleared
//! just before the fsync starts, so appends that arrive during it queue the next one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::Log;

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<VecDeque<Arc<Log>>>,
    wake: Condvar,
    stopped: AtomicBool,
}

/// Owns the flusher thread; dropping it flushes what is queued and stops the thread.
#[derive(Debug)]
pub struct Flusher {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Flusher threads. A produce request that touches several partitions waits for each of
/// their fsyncs; several threads let those run at once, which the device can overlap.
pub const FLUSHER_THREADS: usize = 4;

/// A cheap handle for queueing flushes.
#[derive(Debug, Clone)]
pub struct FlushHandle {
    shared: Arc<Shared>,
}

impl Flusher {
    /// Starts the flusher thread.
    ///
    /// # Panics
    /// If the operating system cannot start a thread.
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let threads = (0..FLUSHER_THREADS)
            .map(|i| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("headwater-flusher-{i}"))
                    .spawn(move || run(&shared))
                    .expect("start a flusher thread")
            })
            .collect();
        Self { shared, threads }
    }

    pub fn handle(&self) -> FlushHandle {
        FlushHandle { shared: Arc::clone(&self.shared) }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Set under the queue lock so the thread cannot miss it between check and wait.
        self.shared.stopped.store(true, Ordering::Release);
        drop(self.shared.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        self.shared.wake.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl FlushHandle {
    pub(super) fn enqueue(&self, log: Arc<Log>) {
        let mut queue = self.shared.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Checked under the lock: the thread drains the queue under it before it exits.
        if self.shared.stopped.load(Ordering::Acquire) {
            drop(queue);
            // No thread to do it: flush here rather than leave a waiter hanging.
            log.clear_flush_request();
            let _ = log.flush();
            return;
        }
        queue.push_back(log);
        drop(queue);
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared) {
    loop {
        let batch: Vec<Arc<Log>> = {
            let mut queue = shared.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            while queue.is_empty() && !shared.stopped.load(Ordering::Acquire) {
                queue = shared.wake.wait(queue).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if queue.is_empty() {
                return;
            }
            // One log at a time per thread, so other threads take the rest in parallel.
            queue.pop_front().into_iter().collect()
        };
        for log in batch {
            log.clear_flush_request();
            // A failure is recorded in the log itself and reported to its waiters.
            let _ = log.flush();
        }
    }
}
