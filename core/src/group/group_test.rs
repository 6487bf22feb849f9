//! The group state machine, driven by events and explicit times: no sockets, no clocks.

use super::*;

fn join_request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".to_string(),
        protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("meta-{p}")))).collect(),
        require_known_member_id: false,
    }
}

fn waiting(outcome: Outcome<JoinResult>) -> String {
    match outcome {
        Outcome::Wait { member_id } => member_id,
        Outcome::Now(result) => panic!("expected to wait, got {result:?}"),
    }
}

fn joins(replies: &[Reply]) -> Vec<JoinResult> {
    replies.iter().filter_map(|r| if let Reply::Join(_, j) = r { Some(j.clone()) } else { None }).collect()
}

/// Two members form generation 1; returns (group, leader id, follower id).
fn stable_pair() -> (Group, String, String) {
    let mut group = Group::new("g");
    let mut replies = Vec::new();
    let a = waiting(group.join(0, join_request("", None, &["range", "roundrobin"]), &mut replies));
    let b = waiting(group.join(100, join_request("", None, &["roundrobin", "range"]), &mut replies));
    assert!(replies.is_empty(), "a new group waits for the initial delay");
    group.tick(INITIAL_REBALANCE_DELAY_MS - 1, &mut replies);
    assert!(replies.is_empty());
    group.tick(INITIAL_REBALANCE_DELAY_MS, &mut replies);
    let results = joins(&replies);
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r.generation_id == 1 && r.error_code == 0));
    let leader = results[0].leader.clone();
    let follower = if leader == a { b.clone() } else { a.clone() };
    let leader_view = results.iter().find(|r| r.member_id == leader).unwrap();
    assert_eq!(leader_view.members.len(), 2, "the leader gets every member's metadata");
    assert!(results.iter().find(|r| r.member_id == follower).unwrap().members.is_empty());
    assert_eq!(group.state, GroupState::CompletingRebalance);

    replies.clear();
    assert_eq!(group.sync(3_100, &follower, 1, vec![], &mut replies), Outcome::Wait { member_id: follower.clone() });
    let assignments = vec![(leader.clone(), Bytes::from("p0")), (follower.clone(), Bytes::from("p1"))];
    let Outcome::Now(own) = group.sync(3_200, &leader, 1, assignments, &mut replies) else {
        panic!("leader answered at once")
    };
    assert_eq!(own.assignment, Bytes::from("p0"));
    assert_eq!(
        replies,
        vec![Reply::Sync(
            follower.clone(),
            SyncResult {
                error_code: 0,
                protocol_type: Some("consumer".into()),
                protocol_name: group.protocol_name.clone(),
                assignment: Bytes::from("p1"),
            }
        )]
    );
    assert_eq!(group.state, GroupState::Stable);
    (group, leader, follower)
}

#[test]
fn members_join_sync_and_get_their_assignments() {
    let (group, _, _) = stable_pair();
    // Both support both; the first member's first choice wins the tie.
    assert_eq!(group.protocol_name.as_deref(), Some("range"));
}

#[test]
fn a_leaving_member_triggers_a_rebalance_the_others_rejoin() {
    let (mut group, leader, follower) = stable_pair();
    let mut replies = Vec::new();
    assert_eq!(group.heartbeat(4_000, &follower, 1), 0);
    assert_eq!(group.leave(4_100, &[(leader.clone(), None)], &mut replies), vec![0]);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(group.heartbeat(4_200, &follower, 1), ResponseError::RebalanceInProgress.code());
    // The only member rejoins: no initial delay for an existing group.
    let Outcome::Now(result) = group.join(4_300, join_request(&follower, None, &["range"]), &mut replies) else {
        panic!("completes at once")
    };
    assert_eq!((result.generation_id, result.leader.as_str()), (2, follower.as_str()));
}

#[test]
fn a_silent_member_expires_and_the_group_rebalances_without_it() {
    let (mut group, leader, follower) = stable_pair();
    let mut replies = Vec::new();
    let mut codes = Vec::new();
    for t in (4_000..20_000).step_by(2_000) {
        codes.push(group.heartbeat(t, &leader, 1));
        group.tick(t, &mut replies);
    }
    assert!(!group.members.contains_key(&follower), "expired after its 10 s session");
    assert_eq!(group.state, GroupState::PreparingRebalance);
    // The leader hears of the rebalance through its heartbeat, and rejoins.
    assert_eq!(codes.last(), Some(&ResponseError::RebalanceInProgress.code()));
    assert!(codes[..2].iter().all(|c| *c == 0));
}

#[test]
fn members_that_do_not_rejoin_in_time_are_dropped_at_the_rebalance_timeout() {
    let (mut group, leader, follower) = stable_pair();
    let mut replies = Vec::new();
    // A third member joins; the follower keeps heartbeating but never rejoins.
    let c = waiting(group.join(5_000, join_request("", None, &["range"]), &mut replies));
    let _ = waiting(group.join(5_100, join_request(&leader, None, &["range"]), &mut replies));
    for t in (5_000..35_000).step_by(1_000) {
        group.heartbeat(t, &follower, 1);
        group.tick(t, &mut replies);
    }
    group.tick(35_000, &mut replies);
    let results = joins(&replies);
    assert_eq!(results.iter().filter(|r| r.error_code == 0).count(), 2, "{results:?}");
    assert!(results.iter().any(|r| r.member_id == c));
    assert!(!group.members.contains_key(&follower));
    assert_eq!(group.generation_id, 2);
}

#[test]
fn new_members_first_get_an_id_then_join_with_it() {
    let mut group = Group::new("g");
    let mut replies = Vec::new();
    let mut request = join_request("", None, &["range"]);
    request.require_known_member_id = true;
    let Outcome::Now(first) = group.join(0, request.clone(), &mut replies) else { panic!("answered at once") };
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    assert!(!first.member_id.is_empty());
    request.member_id = first.member_id.clone();
    assert_eq!(waiting(group.join(10, request, &mut replies)), first.member_id);
}

#[test]
fn a_static_member_restarting_takes_its_place_without_a_rebalance() {
    let mut group = Group::new("g");
    let mut replies = Vec::new();
    waiting(group.join(0, join_request("", Some("instance-a"), &["range"]), &mut replies));
    waiting(group.join(0, join_request("", Some("instance-b"), &["range"]), &mut replies));
    group.tick(INITIAL_REBALANCE_DELAY_MS, &mut replies);
    let results = joins(&replies);
    let leader = results[0].leader.clone();
    replies.clear();
    let Outcome::Now(_) = group.sync(3_100, &leader, 1, vec![], &mut replies) else { panic!() };
    let follower_instance = if group.members[&leader].group_instance_id.as_deref() == Some("instance-a") {
        "instance-b"
    } else {
        "instance-a"
    };
    // The follower restarts: a new process, no member id, same instance id.
    let Outcome::Now(rejoined) = group.join(4_000, join_request("", Some(follower_instance), &["range"]), &mut replies)
    else {
        panic!("answered without a rebalance")
    };
    assert_eq!((rejoined.error_code, rejoined.generation_id), (0, 1));
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(group.members.len(), 2);
}

#[test]
fn bad_joins_are_refused() {
    let (mut group, _, _) = stable_pair();
    let mut replies = Vec::new();
    let mut short = join_request("", None, &["range"]);
    short.session_timeout_ms = 10;
    assert_eq!(group.join(0, short, &mut replies), Outcome::Now(error(ResponseError::InvalidSessionTimeout)));
    assert_eq!(
        group.join(0, join_request("", None, &["sticky-only"]), &mut replies),
        Outcome::Now(error(ResponseError::InconsistentGroupProtocol))
    );
    assert_eq!(
        group.join(0, join_request("nobody", None, &["range"]), &mut replies),
        Outcome::Now(error(ResponseError::UnknownMemberId))
    );
    assert_eq!(group.heartbeat(0, "nobody", 1), ResponseError::UnknownMemberId.code());
    assert_eq!(group.check_commit("", -1), ResponseError::IllegalGeneration.code(), "the group is managed");
}

#[test]
fn members_may_commit_while_a_rebalance_is_prepared_but_not_while_it_completes() {
    let (mut group, leader, follower) = stable_pair();
    let mut replies = Vec::new();
    assert_eq!(group.check_commit(&follower, 1), 0);
    // A third member joins: the old generation may still commit what it consumed.
    waiting(group.join(5_000, join_request("", None, &["range"]), &mut replies));
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(group.check_commit(&follower, 1), 0);
    waiting(group.join(5_100, join_request(&leader, None, &["range"]), &mut replies));
    // The last to rejoin completes the join and is answered at once.
    let Outcome::Now(rejoined) = group.join(5_200, join_request(&follower, None, &["range"]), &mut replies) else {
        panic!("the last rejoin completes the join")
    };
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(group.state, GroupState::CompletingRebalance);
    assert_eq!(group.check_commit(&follower, 2), ResponseError::RebalanceInProgress.code());
    assert_eq!(group.check_commit(&follower, 1), ResponseError::IllegalGeneration.code());
}
