//! The leader's replication state: events in, actions out, no I/O.

use std::time::{Duration, Instant};

use super::leader::{LeaderAction, LeaderState};
use crate::cluster::PartitionRegistration;

const LAG_MAX: Duration = Duration::from_secs(10);

fn registration(isr: Vec<i32>) -> PartitionRegistration {
    PartitionRegistration {
        replicas: vec![1, 2, 3],
        isr,
        leader: 1,
        leader_epoch: 4,
        partition_epoch: 7,
        target_replicas: None,
    }
}

fn high_watermarks(actions: &[LeaderAction]) -> Vec<i64> {
    actions.iter().filter_map(|a| if let LeaderAction::HighWatermark(hw) = a { Some(*hw) } else { None }).collect()
}

#[test]
fn the_high_watermark_is_the_lowest_log_end_in_the_isr_and_never_goes_back() {
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2, 3]), 0, 0, LAG_MAX, now);
    assert!(high_watermarks(&leader.on_append(10)).is_empty(), "followers have not fetched yet");
    assert!(leader.on_fetch(2, 10, now).is_empty(), "follower 3 still holds it back");
    assert_eq!(high_watermarks(&leader.on_fetch(3, 6, now)), vec![6]);
    assert_eq!(high_watermarks(&leader.on_fetch(3, 10, now)), vec![10]);
    // A follower fetching from an older offset again (after a reconnect) moves nothing back.
    assert!(leader.on_fetch(3, 4, now).is_empty());
    assert_eq!(leader.high_watermark(), 10);
}

#[test]
fn a_follower_that_stops_catching_up_leaves_the_isr_after_the_lag_limit() {
    let start = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2, 3]), 0, 0, LAG_MAX, start);
    leader.on_append(100);
    let later = start + Duration::from_secs(8);
    leader.on_fetch(2, 100, later);
    assert!(leader.on_tick(start + LAG_MAX).is_empty(), "exactly at the limit is still in time");
    let actions = leader.on_tick(start + LAG_MAX + Duration::from_millis(1));
    assert_eq!(actions, vec![LeaderAction::AlterIsr { isr: vec![1, 2], leader_epoch: 4, partition_epoch: 7 }]);
    assert!(leader.on_tick(start + 2 * LAG_MAX).is_empty(), "one AlterPartition at a time");
}

#[test]
fn a_slow_follower_counts_as_caught_up_when_it_reaches_the_end_as_of_its_previous_fetch() {
    let start = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2]), 0, 0, LAG_MAX, start);
    // The leader keeps appending, so the follower never reaches the live end...
    leader.on_append(100);
    leader.on_fetch(2, 50, start + Duration::from_secs(5));
    leader.on_append(200);
    // ...but it reached what the leader had at its previous fetch: caught up as of then.
    leader.on_fetch(2, 100, start + Duration::from_secs(12));
    assert!(leader.on_tick(start + Duration::from_secs(14)).is_empty());
    assert!(!leader.on_tick(start + Duration::from_secs(16)).is_empty());
}

#[test]
fn an_out_of_sync_replica_rejoins_once_it_reaches_the_high_watermark() {
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2]), 50, 50, LAG_MAX, now);
    assert!(leader.on_fetch(3, 20, now).iter().all(|a| !matches!(a, LeaderAction::AlterIsr { .. })));
    let actions = leader.on_fetch(3, 50, now);
    assert!(actions.contains(&LeaderAction::AlterIsr { isr: vec![1, 2, 3], leader_epoch: 4, partition_epoch: 7 }));
    // While pending, the new member counts for the high watermark (conservatively).
    leader.on_append(60);
    leader.on_fetch(2, 60, now);
    assert_eq!(leader.high_watermark(), 50, "replica 3 (pending) is still at 50");
    // The controller's answer arrives through the metadata image.
    let mut committed = registration(vec![1, 2, 3]);
    committed.partition_epoch = 8;
    assert_eq!(leader.on_registration(committed), Some(Vec::new()));
    assert_eq!(leader.isr(), &[1, 2, 3]);
}

#[test]
fn acks_all_needs_min_insync_replicas_in_the_committed_isr() {
    let now = Instant::now();
    let leader = LeaderState::new(1, registration(vec![1]), 0, 0, LAG_MAX, now);
    assert!(leader.accepts_acks_all(1));
    assert!(!leader.accepts_acks_all(2));
}

#[test]
fn a_new_leader_epoch_in_the_image_ends_this_leadership() {
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2, 3]), 0, 0, LAG_MAX, now);
    let mut moved = registration(vec![2, 3]);
    moved.leader = 2;
    moved.leader_epoch = 5;
    assert_eq!(leader.on_registration(moved), None);
}

#[test]
fn a_replica_rejoins_only_after_reaching_where_this_leadership_began() {
    // A new leader whose high watermark (40) lags what its predecessor acknowledged (up to
    // its log end, 60): a replica at 45 has passed the high watermark but may lack
    // acknowledged records (KAFKA-7128).
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2]), 60, 40, LAG_MAX, now);
    assert!(leader.on_fetch(3, 45, now).iter().all(|a| !matches!(a, LeaderAction::AlterIsr { .. })));
    assert!(leader.on_fetch(3, 60, now).iter().any(|a| matches!(a, LeaderAction::AlterIsr { .. })));
}

#[test]
fn an_isr_change_stays_pending_until_the_image_moves_past_it() {
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2]), 50, 50, LAG_MAX, now);
    assert!(!leader.on_fetch(3, 50, now).is_empty(), "expansion asked");
    // An image at the same partition epoch (anything else that changed) does not settle it:
    // replica 3 still counts for the high watermark.
    leader.on_registration(registration(vec![1, 2]));
    leader.on_append(70);
    leader.on_fetch(2, 70, now);
    assert_eq!(leader.high_watermark(), 50);
    // The controller applied it: settled.
    let mut applied = registration(vec![1, 2, 3]);
    applied.partition_epoch = 8;
    leader.on_registration(applied);
    leader.on_fetch(3, 70, now);
    assert_eq!(leader.high_watermark(), 70);
}

#[test]
fn an_isr_that_shrank_after_the_append_fails_acks_all_after_the_fact() {
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2]), 0, 0, LAG_MAX, now);
    assert!(leader.accepts_acks_all(2));
    leader.on_append(10);
    let mut shrunk = registration(vec![1]);
    shrunk.partition_epoch = 8;
    leader.on_registration(shrunk);
    assert_eq!(leader.high_watermark(), 10, "the ISR is the leader alone now");
    assert!(!leader.enough_replicas_after_append(2), "NOT_ENOUGH_REPLICAS_AFTER_APPEND");
}

#[test]
fn a_fetch_from_past_the_log_end_counts_for_nothing() {
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2]), 10, 10, LAG_MAX, now);
    assert!(leader.on_fetch(2, 100, now).is_empty());
    leader.on_append(100);
    assert_eq!(leader.high_watermark(), 10, "the follower's claimed 100 was never recorded");
}

#[test]
fn a_late_refusal_of_an_older_request_leaves_a_newer_pending_change_counted() {
    let now = Instant::now();
    let mut leader = LeaderState::new(1, registration(vec![1, 2]), 0, 0, LAG_MAX, now);
    leader.on_append(100);
    leader.on_fetch(2, 100, now);
    // Follower 3 catches up: the leader asks to add it at partition epoch 7.
    let asked = leader.on_fetch(3, 100, now);
    assert!(asked.contains(&LeaderAction::AlterIsr { isr: vec![1, 2, 3], leader_epoch: 4, partition_epoch: 7 }));
    // Another change reaches the image first (epoch 8), so the request is moot; the leader
    // asks again at epoch 8.
    let mut moved = registration(vec![1, 2]);
    moved.partition_epoch = 8;
    leader.on_registration(moved).expect("still the leader");
    let again = leader.on_fetch(3, 100, now);
    assert!(again.contains(&LeaderAction::AlterIsr { isr: vec![1, 2, 3], leader_epoch: 4, partition_epoch: 8 }));
    // The refusal of the epoch-7 request arrives late: the epoch-8 one still counts, so the
    // high watermark keeps waiting for broker 3 (it may join the ISR any moment).
    leader.on_alter_refused(&[1, 2, 3], 7);
    leader.on_append(150);
    leader.on_fetch(2, 150, now);
    assert_eq!(leader.high_watermark(), 100, "broker 3 is in the pending ISR and has only 100");
    // Its own refusal does clear it.
    leader.on_alter_refused(&[1, 2, 3], 8);
    leader.on_fetch(2, 150, now);
    assert_eq!(leader.high_watermark(), 150);
}
