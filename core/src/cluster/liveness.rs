//! Broker sessions, as the active controller keeps them: a broker is alive while its
//! heartbeats arrive within `broker.session.timeout.ms` of each other.
//!
//! Pure bookkeeping: the caller passes the time, and decides what to do with an expired
//! session (propose FenceBroker). Sessions live only in the active controller's memory;
//! a new active controller starts every known broker with a full session rather than
//! fencing brokers whose heartbeats went to its predecessor.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::metadata::BrokerId;

/// Heartbeat deadlines of the brokers this controller is watching.
#[derive(Debug, Clone)]
pub struct BrokerSessions {
    timeout: Duration,
    deadlines: BTreeMap<BrokerId, Instant>,
}

impl BrokerSessions {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout, deadlines: BTreeMap::new() }
    }

    /// A heartbeat from `broker` at `now`: its session runs for another timeout.
    pub fn heartbeat(&mut self, broker: BrokerId, now: Instant) {
        self.deadlines.insert(broker, now + self.timeout);
    }

    /// Sets `broker`'s session to end `within` from `now`, whatever it was.
    pub fn heartbeat_within(&mut self, broker: BrokerId, now: Instant, within: Duration) {
        self.deadlines.insert(broker, now + within);
    }

    /// Gives each of `brokers` a fresh session and forgets every other one: what a
    /// controller does when it becomes active.
    pub fn restart(&mut self, brokers: impl IntoIterator<Item = BrokerId>, now: Instant) {
        self.deadlines = brokers.into_iter().map(|b| (b, now + self.timeout)).collect();
    }

    /// Gives a session starting at `now` to each of `brokers` that has none.
    pub fn watch(&mut self, brokers: impl IntoIterator<Item = BrokerId>, now: Instant) {
        for broker in brokers {
            self.deadlines.entry(broker).or_insert(now + self.timeout);
        }
    }

    /// Brokers whose session has run out by `now`, in id order.
    pub fn expired(&self, now: Instant) -> Vec<BrokerId> {
        self.deadlines.iter().filter(|(_, deadline)| **deadline <= now).map(|(b, _)| *b).collect()
    }

    /// Stops watching `broker` (it was fenced; its next heartbeat starts a new session).
    pub fn forget(&mut self, broker: BrokerId) {
        self.deadlines.remove(&broker);
    }

    pub fn clear(&mut self) {
        self.deadlines.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_expires_one_timeout_after_the_last_heartbeat() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut sessions = BrokerSessions::new(2 * second);
        sessions.heartbeat(1, start);
        sessions.heartbeat(2, start);
        sessions.heartbeat(1, start + second);
        assert!(sessions.expired(start + second).is_empty());
        assert_eq!(sessions.expired(start + 2 * second), vec![2]);
        assert_eq!(sessions.expired(start + 3 * second), vec![1, 2]);
        sessions.forget(2);
        assert_eq!(sessions.expired(start + 3 * second), vec![1]);
        sessions.watch([1, 2], start + 3 * second);
        assert_eq!(sessions.expired(start + 4 * second), vec![1], "1 keeps its session; 2 gets a fresh one");
    }

    #[test]
    fn a_new_active_controller_gives_every_broker_a_full_session() {
        let start = Instant::now();
        let mut sessions = BrokerSessions::new(Duration::from_secs(2));
        sessions.heartbeat(9, start);
        sessions.restart([1, 2], start + Duration::from_secs(10));
        assert!(sessions.expired(start + Duration::from_secs(11)).is_empty(), "no broker fenced on takeover");
        assert_eq!(sessions.expired(start + Duration::from_secs(12)), vec![1, 2], "broker 9 is forgotten");
    }
}
