//! Partition assignors, run by the group leader: who consumes which partition. Same
//! names as the Java client's (and the same results for range and round-robin), so
//! mixed-client groups agree on the protocol.
//!
//! The sticky assignors keep every partition with the member that owns it as far as a
//! balanced assignment allows. `cooperative-sticky` adds KIP-429's incremental protocol: a
//! partition moving between members is first only revoked from its owner, and given to
//! its new owner in the follow-up rebalance the owner's revocation triggers, so no member
//! ever stops consuming a partition it keeps.

use std::collections::{BTreeMap, BTreeSet};

/// A `(topic, partition)`.
pub type TopicPartition = (String, i32);

/// What a member sent in its JoinGroup metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    pub topics: Vec<String>,
    /// The partitions the member consumes now (subscription version 1 and later).
    pub owned: Vec<TopicPartition>,
    /// The generation in which it received them (version 2 and later; -1 when unknown).
    pub generation: i32,
}

impl MemberSubscription {
    pub fn new(topics: Vec<String>) -> Self {
        Self { topics, owned: Vec::new(), generation: -1 }
    }
}

/// Every member's subscription, by member id.
pub type Subscriptions = BTreeMap<String, MemberSubscription>;
/// The result: member id to its `(topic, partition)`s.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// How members hand partitions over in a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member gives up everything before rejoining.
    Eager,
    /// Members keep consuming what they keep; only moved partitions are revoked.
    Cooperative,
}

/// Kafka's built-in assignors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic: partitions split into contiguous ranges, members in id order, the first
    /// `partitions % members` getting one more.
    Range,
    /// All subscribed partitions, sorted, dealt out to members in turn.
    RoundRobin,
    /// Balanced, keeping owned partitions where balance allows (eager protocol).
    Sticky,
    /// The sticky assignment under the cooperative protocol (KIP-429).
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
            Self::Sticky => "sticky",
            Self::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Range, Self::RoundRobin, Self::Sticky, Self::CooperativeSticky].into_iter().find(|a| a.name() == name)
    }

    pub fn protocol(self) -> RebalanceProtocol {
        match self {
            Self::CooperativeSticky => RebalanceProtocol::Cooperative,
            Self::Range | Self::RoundRobin | Self::Sticky => RebalanceProtocol::Eager,
        }
    }

    /// Assigns the partitions of every subscribed topic (`partitions` gives their counts).
    pub fn assign(self, subscriptions: &Subscriptions, partitions: &BTreeMap<String, i32>) -> Assignment {
        match self {
            Self::Range => range(subscriptions, partitions),
            Self::RoundRobin => round_robin(subscriptions, partitions),
            Self::Sticky => sticky(subscriptions, partitions),
            Self::CooperativeSticky => {
                let mut assignment = sticky(subscriptions, partitions);
                // A partition another member still owns is only revoked in this round.
                let owners: BTreeMap<&TopicPartition, &str> = subscriptions
                    .iter()
                    .flat_map(|(member, s)| s.owned.iter().map(move |tp| (tp, member.as_str())))
                    .collect();
                for (member, assigned) in &mut assignment {
                    assigned.retain(|tp| owners.get(tp).is_none_or(|owner| *owner == member));
                }
                assignment
            }
        }
    }
}

fn empty_assignment(subscriptions: &Subscriptions) -> Assignment {
    subscriptions.keys().map(|m| (m.clone(), Vec::new())).collect()
}

fn range(subscriptions: &Subscriptions, partitions: &BTreeMap<String, i32>) -> Assignment {
    let mut assignment = empty_assignment(subscriptions);
    for (topic, &count) in partitions {
        let members: Vec<&String> =
            subscriptions.iter().filter(|(_, s)| s.topics.contains(topic)).map(|(m, _)| m).collect();
        if members.is_empty() {
            continue;
        }
        let per = count / members.len() as i32;
        let extra = count % members.len() as i32;
        let mut next = 0;
        for (i, member) in members.iter().enumerate() {
            let n = per + i32::from((i as i32) < extra);
            let owned = assignment.get_mut(*member).expect("member present");
            owned.extend((next..next + n).map(|p| (topic.clone(), p)));
            next += n;
        }
    }
    assignment
}

fn round_robin(subscriptions: &Subscriptions, partitions: &BTreeMap<String, i32>) -> Assignment {
    let mut assignment = empty_assignment(subscriptions);
    let members: Vec<&String> = subscriptions.keys().collect();
    let mut turn = 0usize;
    for (topic, &count) in partitions {
        for partition in 0..count {
            // The next member in turn that subscribes to this topic.
            for _ in 0..members.len() {
                let member = members[turn % members.len()];
                turn += 1;
                if subscriptions[member].topics.contains(topic) {
                    assignment.get_mut(member).expect("member present").push((topic.clone(), partition));
                    break;
                }
            }
        }
    }
    assignment
}

/// The candidate holding the fewest partitions (ties by member id).
fn least_loaded<'a>(held: &BTreeMap<&str, BTreeSet<TopicPartition>>, candidates: &[&'a str]) -> Option<&'a str> {
    candidates.iter().copied().min_by_key(|m| (held[m].len(), *m))
}

/// Keeps valid ownership, gives unowned partitions to the least loaded eligible member
/// (most constrained partitions first), then moves partitions from the most to the least
/// loaded eligible member until no move narrows the gap: with equal subscriptions, member
/// sizes differ by at most one and only the partitions balance needs move.
fn sticky(subscriptions: &Subscriptions, partitions: &BTreeMap<String, i32>) -> Assignment {
    let subscribers = |topic: &str| -> Vec<&str> {
        subscriptions.iter().filter(|(_, s)| s.topics.iter().any(|t| t == topic)).map(|(m, _)| m.as_str()).collect()
    };
    let eligible: BTreeMap<&str, Vec<&str>> =
        partitions.keys().map(|t| (t.as_str(), subscribers(t))).filter(|(_, m)| !m.is_empty()).collect();
    let exists = |(topic, partition): &TopicPartition| {
        eligible.contains_key(topic.as_str()) && partitions.get(topic).is_some_and(|n| (0..*n).contains(partition))
    };

    // Claims: a partition two members say they own goes to the later generation.
    let mut owner: BTreeMap<TopicPartition, (&str, i32)> = BTreeMap::new();
    for (member, subscription) in subscriptions {
        for tp in subscription.owned.iter().filter(|tp| exists(tp) && subscription.topics.contains(&tp.0)) {
            if owner.get(tp).is_none_or(|(_, generation)| subscription.generation > *generation) {
                owner.insert(tp.clone(), (member.as_str(), subscription.generation));
            }
        }
    }
    let mut held: BTreeMap<&str, BTreeSet<TopicPartition>> =
        subscriptions.keys().map(|m| (m.as_str(), BTreeSet::new())).collect();
    for (tp, (member, _)) in owner {
        held.get_mut(member).expect("member present").insert(tp);
    }

    let mut unowned: Vec<TopicPartition> = eligible
        .keys()
        .flat_map(|t| (0..partitions[*t]).map(move |p| (t.to_string(), p)))
        .filter(|tp| !held.values().any(|owned| owned.contains(tp)))
        .collect();
    unowned.sort_by_key(|(t, p)| (eligible[t.as_str()].len(), t.clone(), *p));
    for tp in unowned {
        let member = least_loaded(&held, &eligible[tp.0.as_str()]).expect("eligible members");
        held.get_mut(member).expect("member present").insert(tp);
    }

    // Balance: each move takes one partition from a member holding at least two more than
    // its receiver, so the sum of squared sizes falls and the loop ends.
    loop {
        let mut givers: Vec<&str> = held.keys().copied().collect();
        givers.sort_by_key(|m| (std::cmp::Reverse(held[m].len()), *m));
        let step = givers.iter().find_map(|giver| {
            held[giver].iter().rev().find_map(|tp| {
                let receiver = least_loaded(&held, &eligible[tp.0.as_str()])?;
                (held[receiver].len() + 1 < held[giver].len()).then(|| (*giver, receiver, tp.clone()))
            })
        });
        let Some((giver, receiver, tp)) = step else { break };
        held.get_mut(giver).expect("member present").remove(&tp);
        held.get_mut(receiver).expect("member present").insert(tp);
    }
    held.into_iter().map(|(m, owned)| (m.to_string(), owned.into_iter().collect())).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> Subscriptions {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), MemberSubscription::new(ts.iter().map(|t| t.to_string()).collect())))
            .collect()
    }

    fn tps(topic: &str, partitions: &[i32]) -> Vec<TopicPartition> {
        partitions.iter().map(|p| (topic.to_string(), *p)).collect()
    }

    /// Members' subscriptions as they would rejoin after `assignment` in `generation`.
    fn owning(mut subscriptions: Subscriptions, assignment: &Assignment, generation: i32) -> Subscriptions {
        for (member, subscription) in &mut subscriptions {
            subscription.owned = assignment.get(member).cloned().unwrap_or_default();
            subscription.generation = generation;
        }
        subscriptions
    }

    #[test]
    fn range_splits_each_topic_into_contiguous_ranges() {
        let s = subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]);
        let assignment = Assignor::Range.assign(&s, &BTreeMap::from([("t".to_string(), 7)]));
        let parts = |m: &str| assignment[m].iter().map(|(_, p)| *p).collect::<Vec<_>>();
        assert_eq!(parts("a"), vec![0, 1, 2]);
        assert_eq!(parts("b"), vec![3, 4]);
        assert_eq!(parts("c"), vec![5, 6]);
    }

    #[test]
    fn round_robin_deals_partitions_in_turn_to_subscribers() {
        let s = subs(&[("a", &["t", "u"]), ("b", &["t"])]);
        let assignment = Assignor::RoundRobin.assign(&s, &BTreeMap::from([("t".to_string(), 3), ("u".to_string(), 2)]));
        assert_eq!(assignment["a"], vec![("t".into(), 0), ("t".into(), 2), ("u".into(), 0), ("u".into(), 1)]);
        assert_eq!(assignment["b"], vec![("t".into(), 1)]);
    }

    #[test]
    fn every_partition_goes_to_exactly_one_subscriber() {
        for assignor in [Assignor::Range, Assignor::RoundRobin, Assignor::Sticky, Assignor::CooperativeSticky] {
            let s = subs(&[("m1", &["x", "y"]), ("m2", &["x"]), ("m3", &["y"]), ("m4", &["x", "y"])]);
            let counts = BTreeMap::from([("x".to_string(), 10), ("y".to_string(), 5)]);
            let assignment = assignor.assign(&s, &counts);
            let mut all: Vec<TopicPartition> = assignment.values().flatten().cloned().collect();
            all.sort();
            let expected: Vec<TopicPartition> =
                counts.iter().flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p))).collect();
            assert_eq!(all, expected, "{assignor:?}");
            for (member, owned) in &assignment {
                assert!(
                    owned.iter().all(|(t, _)| s[member].topics.contains(t)),
                    "{assignor:?}: {member} got an unsubscribed topic"
                );
            }
        }
    }

    #[test]
    fn sticky_moves_only_what_balance_needs_when_a_member_joins() {
        let counts = BTreeMap::from([("t".to_string(), 6)]);
        let first = Assignor::Sticky.assign(&subs(&[("a", &["t"]), ("b", &["t"])]), &counts);
        assert_eq!(first["a"].len(), 3);
        assert_eq!(first["b"].len(), 3);
        let rejoined = owning(subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]), &first, 1);
        let second = Assignor::Sticky.assign(&rejoined, &counts);
        for member in ["a", "b", "c"] {
            assert_eq!(second[member].len(), 2, "{second:?}");
        }
        // a and b each gave c exactly one partition and kept the other two.
        for member in ["a", "b"] {
            assert!(second[member].iter().all(|tp| first[member].contains(tp)), "{member} lost a kept partition");
        }
    }

    #[test]
    fn sticky_gives_a_leaving_members_partitions_to_the_rest_without_moving_others() {
        let counts = BTreeMap::from([("t".to_string(), 6)]);
        let first = Assignor::Sticky.assign(&subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]), &counts);
        let rejoined = owning(subs(&[("a", &["t"]), ("c", &["t"])]), &first, 1);
        let second = Assignor::Sticky.assign(&rejoined, &counts);
        assert_eq!(second["a"].len(), 3);
        assert_eq!(second["c"].len(), 3);
        for member in ["a", "c"] {
            assert!(first[member].iter().all(|tp| second[member].contains(tp)), "{member} lost a partition");
        }
    }

    #[test]
    fn a_partition_claimed_twice_goes_to_the_later_generation() {
        let counts = BTreeMap::from([("t".to_string(), 2)]);
        let mut s = subs(&[("a", &["t"]), ("b", &["t"])]);
        s.get_mut("a").unwrap().owned = tps("t", &[0, 1]);
        s.get_mut("a").unwrap().generation = 3;
        s.get_mut("b").unwrap().owned = tps("t", &[0]);
        s.get_mut("b").unwrap().generation = 4;
        let assignment = Assignor::Sticky.assign(&s, &counts);
        assert_eq!(assignment["b"], tps("t", &[0]));
        assert_eq!(assignment["a"], tps("t", &[1]));
    }

    #[test]
    fn cooperative_sticky_withholds_a_moving_partition_until_its_owner_revokes_it() {
        let counts = BTreeMap::from([("t".to_string(), 4)]);
        let first = Assignor::CooperativeSticky.assign(&subs(&[("a", &["t"])]), &counts);
        assert_eq!(first["a"], tps("t", &[0, 1, 2, 3]));

        // b joins: a keeps two and is told to revoke two, which nobody gets yet.
        let joined = owning(subs(&[("a", &["t"]), ("b", &["t"])]), &first, 1);
        let second = Assignor::CooperativeSticky.assign(&joined, &counts);
        assert_eq!(second["a"].len(), 2);
        assert!(second["b"].is_empty(), "b got a partition a still owns: {second:?}");

        // a revoked them and rejoined: b gets them now, a keeps the rest.
        let revoked = owning(joined, &second, 2);
        let third = Assignor::CooperativeSticky.assign(&revoked, &counts);
        assert_eq!(third["a"], second["a"]);
        assert_eq!(third["b"].len(), 2);
    }

    proptest! {
        /// Any history of joins and leaves: every partition assigned once, to a subscriber;
        /// equal subscriptions stay balanced within one partition; a member that stays
        /// never loses more than the balance requires.
        #[test]
        fn sticky_stays_complete_and_balanced(
            partitions in 1i32..40,
            rounds in proptest::collection::vec(proptest::collection::btree_set(0u8..8, 1..8), 1..8),
        ) {
            let counts = BTreeMap::from([("t".to_string(), partitions)]);
            let mut previous = Assignment::new();
            for (generation, members) in rounds.iter().enumerate() {
                let names: Vec<String> = members.iter().map(|m| format!("m{m}")).collect();
                let s: Subscriptions = names
                    .iter()
                    .map(|m| (m.clone(), MemberSubscription::new(vec!["t".into()])))
                    .collect();
                let assignment = Assignor::Sticky.assign(&owning(s, &previous, generation as i32), &counts);
                let mut all: Vec<i32> = assignment.values().flatten().map(|(_, p)| *p).collect();
                all.sort_unstable();
                prop_assert_eq!(all, (0..partitions).collect::<Vec<_>>());
                let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                prop_assert!(max - min <= 1, "unbalanced: {:?}", assignment);
                for (member, owned) in &assignment {
                    let before = previous.get(member).map_or(0, Vec::len);
                    let kept = owned.iter().filter(|tp| previous.get(member).is_some_and(|p| p.contains(tp))).count();
                    prop_assert!(kept >= before.min(owned.len()),
                        "{} kept {} of {}: {:?}", member, kept, before, assignment);
                }
                previous = assignment;
            }
        }
    }
}
