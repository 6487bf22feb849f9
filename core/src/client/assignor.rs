//! Partition assignors, run by the group leader: who consumes which partition. Same
//! names and results as the Java client's, so mixed-client groups agree.

use std::collections::BTreeMap;

/// A member's subscription: `(member id, subscribed topics)`.
pub type Subscriptions = BTreeMap<String, Vec<String>>;
/// The result: member id to its `(topic, partition)`s.
pub type Assignment = BTreeMap<String, Vec<(String, i32)>>;

/// Kafka's built-in assignors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic: partitions split into contiguous ranges, members in id order, the first
    /// `partitions % members` getting one more.
    Range,
    /// All subscribed partitions, sorted, dealt out to members in turn.
    RoundRobin,
}

impl Assignor {
    /// The protocol name in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Range, Self::RoundRobin].into_iter().find(|a| a.name() == name)
    }

    /// Assigns the partitions of every subscribed topic (`partitions` gives their counts).
    pub fn assign(self, subscriptions: &Subscriptions, partitions: &BTreeMap<String, i32>) -> Assignment {
        let mut assignment: Assignment = subscriptions.keys().map(|m| (m.clone(), Vec::new())).collect();
        match self {
            Self::Range => {
                for (topic, &count) in partitions {
                    let members: Vec<&String> =
                        subscriptions.iter().filter(|(_, topics)| topics.contains(topic)).map(|(m, _)| m).collect();
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
            }
            Self::RoundRobin => {
                let members: Vec<&String> = subscriptions.keys().collect();
                let mut turn = 0usize;
                for (topic, &count) in partitions {
                    for partition in 0..count {
                        // The next member in turn that subscribes to this topic.
                        for _ in 0..members.len() {
                            let member = members[turn % members.len()];
                            turn += 1;
                            if subscriptions[member].contains(topic) {
                                assignment.get_mut(member).expect("member present").push((topic.clone(), partition));
                                break;
                            }
                        }
                    }
                }
            }
        }
        assignment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(members: &[(&str, &[&str])]) -> Subscriptions {
        members.iter().map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect())).collect()
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
        for assignor in [Assignor::Range, Assignor::RoundRobin] {
            let s = subs(&[("m1", &["x", "y"]), ("m2", &["x"]), ("m3", &["y"]), ("m4", &["x", "y"])]);
            let counts = BTreeMap::from([("x".to_string(), 10), ("y".to_string(), 5)]);
            let assignment = assignor.assign(&s, &counts);
            let mut all: Vec<(String, i32)> = assignment.values().flatten().cloned().collect();
            all.sort();
            let expected: Vec<(String, i32)> =
                counts.iter().flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p))).collect();
            assert_eq!(all, expected, "{assignor:?}");
            for (member, owned) in &assignment {
                assert!(
                    owned.iter().all(|(t, _)| s[member].contains(t)),
                    "{assignor:?}: {member} got an unsubscribed topic"
                );
            }
        }
    }
}
