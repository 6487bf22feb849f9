//! Records as a [`futures::Stream`]: the consumers' polls flattened into one record at a
//! time, so a consumer composes with `StreamExt` / `TryStreamExt` (`take`, `filter`,
//! `try_for_each`, `select` ...).

use std::collections::VecDeque;

use futures::Stream;

use super::{ClientError, Consumer, ConsumerRecord, GroupConsumer};

/// A consumer that fetches records a batch at a time.
pub trait PollRecords {
    /// The next records: what one [`Consumer::poll`] or [`GroupConsumer::poll`] returns.
    fn poll_records(&mut self) -> impl Future<Output = Result<Vec<ConsumerRecord>, ClientError>>;
}

impl PollRecords for Consumer {
    fn poll_records(&mut self) -> impl Future<Output = Result<Vec<ConsumerRecord>, ClientError>> {
        self.poll()
    }
}

impl PollRecords for GroupConsumer {
    fn poll_records(&mut self) -> impl Future<Output = Result<Vec<ConsumerRecord>, ClientError>> {
        self.poll()
    }
}

/// The records `consumer` polls, one at a time and in poll order; it never ends by itself.
/// A failed poll yields its error and the stream goes on polling, as a poll loop would: stop
/// on the first error with `TryStreamExt` or `take_while`.
pub fn records<P: PollRecords>(consumer: &mut P) -> impl Stream<Item = Result<ConsumerRecord, ClientError>> + '_ {
    futures::stream::unfold((consumer, VecDeque::new()), |(consumer, mut ready)| async move {
        loop {
            if let Some(record) = ready.pop_front() {
                return Some((Ok(record), (consumer, ready)));
            }
            match consumer.poll_records().await {
                Ok(records) => ready.extend(records),
                Err(error) => return Some((Err(error), (consumer, ready))),
            }
        }
    })
}
