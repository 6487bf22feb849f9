//! Where a follower truncates its log when it starts following a new leader (KIP-101,
//! KIP-279): to the point where its log and the leader's agree, found by asking the leader
//! where the follower's latest epoch ends.
//!
//! Pure: the follower asks OffsetForLeaderEpoch with its latest epoch, and this decides the
//! truncation offset from the answer and its own epoch cache.

use crate::log::leader_epoch::LeaderEpochCache;

/// The leader's answer to OffsetForLeaderEpoch: (epoch, end offset), or `None` for
/// UNDEFINED (the leader knows no epoch at or below the one asked about).
pub type EpochEnd = Option<(i32, i64)>;

/// The offset to truncate to before fetching from the new leader.
///
/// - The leader knows the follower's epoch: keep up to where that epoch ends on the
///   leader (and no further than the follower's own end).
/// - The leader answers with an older epoch (it never had the follower's latest one):
///   keep up to where that older epoch ends on both logs, whichever is lower.
/// - No answer the follower can use (the leader's log has no epochs, or the follower
///   has none): keep up to the high watermark, which every in-sync replica has.
pub fn truncation_offset(
    own: &LeaderEpochCache,
    log_end: i64,
    high_watermark: i64,
    requested_epoch: Option<i32>,
    leader: EpochEnd,
) -> i64 {
    let keep = match (requested_epoch, leader) {
        (Some(requested), Some((epoch, end))) if epoch == requested => end,
        (Some(_), Some((epoch, end))) => match own.end_offset_for(epoch, log_end) {
            Some((_, own_end)) => end.min(own_end),
            None => high_watermark,
        },
        _ => high_watermark,
    };
    keep.min(log_end).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for (epoch, start) in entries {
            cache.assign(*epoch, *start);
        }
        cache
    }

    #[test]
    fn a_follower_keeps_what_the_leader_has_of_its_latest_epoch() {
        // Follower wrote epoch 3 up to 120; the leader's epoch 3 ended at 100.
        let own = cache(&[(1, 0), (3, 50)]);
        assert_eq!(truncation_offset(&own, 120, 90, Some(3), Some((3, 100))), 100);
        // The leader has more of it than the follower: keep everything.
        assert_eq!(truncation_offset(&own, 120, 90, Some(3), Some((3, 150))), 120);
    }

    #[test]
    fn an_epoch_the_leader_never_had_truncates_to_the_older_epochs_common_end() {
        // The follower led epoch 3 alone (a stale leader); the leader knows only epoch 1,
        // which on the leader ends at 70 and on the follower at 50.
        let own = cache(&[(1, 0), (3, 50)]);
        assert_eq!(truncation_offset(&own, 120, 40, Some(3), Some((1, 70))), 50);
        assert_eq!(truncation_offset(&own, 120, 40, Some(3), Some((1, 45))), 45);
    }

    #[test]
    fn without_a_usable_answer_the_high_watermark_is_kept() {
        let own = cache(&[(1, 0)]);
        assert_eq!(truncation_offset(&own, 120, 40, Some(1), None), 40);
        assert_eq!(truncation_offset(&LeaderEpochCache::default(), 120, 40, None, Some((4, 200))), 40);
        assert_eq!(truncation_offset(&own, 30, 40, Some(1), None), 30, "never past the log end");
    }
}
