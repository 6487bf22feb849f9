//! Where a follower truncates its log when it starts following a new leader (KIP-101,
//! KIP-279): to the point where its log and the leader's agree, found by asking the leader
//! where the follower's latest epoch ends, in as many rounds as it takes.
//!
//! Pure: the follower asks OffsetForLeaderEpoch with its latest epoch, and this decides
//! from the answer and its own epoch cache how far to truncate and whether to ask again.

use crate::log::leader_epoch::LeaderEpochCache;

/// The leader's answer to OffsetForLeaderEpoch: (epoch, end offset), or `None` for
/// UNDEFINED (the leader knows no epoch at or below the one asked about).
pub type EpochEnd = Option<(i32, i64)>;

/// What to do after one OffsetForLeaderEpoch round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Truncate to this offset; the logs agree below it, so fetching can start.
    Done(i64),
    /// Truncate to this offset, then ask again with the (now older) latest epoch: the
    /// leader answered with an epoch this follower does not have, so the follower's tail
    /// of an older epoch may overlap the leader's newer ones.
    AskAgain(i64),
}

/// One round of KIP-279's rule, given what the follower asked about (`requested`, its
/// latest epoch) and the leader's answer.
///
/// - Both know the answered epoch: keep up to where it ends on the leader, or on the
///   follower if sooner. Done.
/// - The follower does not have the answered epoch: keep up to where the follower's
///   largest epoch below it ends, and ask again.
/// - No usable answer (the leader has no epochs at or below the one asked, or the
///   follower has none): keep up to the high watermark, which every in-sync replica has.
///
/// The result never exceeds `log_end`; the caller keeps it at or above the log start.
pub fn next_truncation(
    own: &LeaderEpochCache,
    log_end: i64,
    high_watermark: i64,
    requested: Option<i32>,
    leader: EpochEnd,
) -> Truncation {
    let (Some(_), Some((epoch, leader_end))) = (requested, leader) else {
        return Truncation::Done(high_watermark.min(log_end));
    };
    match own.end_offset_for(epoch, log_end) {
        Some((own_epoch, own_end)) if own_epoch == epoch => Truncation::Done(leader_end.min(own_end).min(log_end)),
        Some((_, own_end)) => Truncation::AskAgain(own_end.min(log_end)),
        None => Truncation::Done(high_watermark.min(log_end)),
    }
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
        assert_eq!(next_truncation(&own, 120, 90, Some(3), Some((3, 100))), Truncation::Done(100));
        // The leader has more of it than the follower: keep everything.
        assert_eq!(next_truncation(&own, 120, 90, Some(3), Some((3, 150))), Truncation::Done(120));
    }

    #[test]
    fn an_epoch_the_follower_lacks_takes_another_round() {
        // Follower: epoch 2 from 0, epoch 4 from 80 (it led epoch 4 alone). Leader: epochs
        // 2, 3 (from 60) and 5. Asked about 4, the leader answers (3, 100): epoch 3 is one
        // the follower never had, and offsets 60-79 are epoch 2 here but epoch 3 there.
        let own = cache(&[(2, 0), (4, 80)]);
        let first = next_truncation(&own, 120, 40, Some(4), Some((3, 100)));
        assert_eq!(first, Truncation::AskAgain(80), "to the end of its epoch 2, then ask about epoch 2");
        // Second round: the follower (now ending at 80, latest epoch 2) asks about 2; the
        // leader's epoch 2 ends at 60.
        let own = cache(&[(2, 0)]);
        assert_eq!(next_truncation(&own, 80, 40, Some(2), Some((2, 60))), Truncation::Done(60));
    }

    #[test]
    fn without_a_usable_answer_the_high_watermark_is_kept() {
        let own = cache(&[(1, 0)]);
        assert_eq!(next_truncation(&own, 120, 40, Some(1), None), Truncation::Done(40));
        assert_eq!(next_truncation(&LeaderEpochCache::default(), 120, 40, None, Some((4, 200))), Truncation::Done(40));
        assert_eq!(next_truncation(&own, 30, 40, Some(1), None), Truncation::Done(30), "never past the log end");
    }
}
