//! GroupCoordinator tests with tokio's paused clock: rebalances, fencing, session expiry and offsets,
//! driven through the same calls the handlers make.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::{CommitRequest, GroupCoordinator};
use super::{GroupLimits, JoinRequest, JoinResult};
use crate::config::Durability;
use crate::log::open_for_tests;

const LIMITS: GroupLimits = GroupLimits {
    session_timeout_ms_min: 1000,
    session_timeout_ms_max: 60_000,
    initial_rebalance_delay_ms: 0,
    members_max: 10,
};

fn join_request(member_id: &str, instance_id: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: instance_id.map(str::to_string),
        client_id: "test".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 5_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        requires_known_member_id: true,
        supports_skip_assignment: true,
    }
}

async fn open() -> (tempfile::TempDir, crate::log::Log, GroupCoordinator) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_for_tests(dir.path(), Durability::Periodic).await.expect("log");
    let coordinator = GroupCoordinator::open(log.clone(), LIMITS, 60_000).await.expect("coordinator");
    (dir, log, coordinator)
}

/// KIP-394 first join, then the real join; returns the result of the second.
async fn join_new(coordinator: &GroupCoordinator, group: &str) -> JoinResult {
    let first = coordinator.join(group, join_request("", None)).await;
    assert_eq!(first.error, ResponseError::MemberIdRequired.code());
    coordinator.join(group, join_request(&first.member_id, None)).await
}

async fn sync(
    coordinator: &GroupCoordinator,
    group: &str,
    join: &JoinResult,
    assignments: Vec<(String, Bytes)>,
) -> i16 {
    coordinator
        .sync(group, &join.member_id, None, join.generation, Some("consumer"), Some("range"), assignments)
        .await
        .error
}

#[tokio::test(start_paused = true)]
async fn one_member_joins_syncs_and_heartbeats() {
    let (_dir, _log, coordinator) = open().await;
    let join = join_new(&coordinator, "g").await;
    assert_eq!(join.error, 0);
    assert_eq!(join.generation, 1);
    assert_eq!(join.leader, join.member_id);
    assert_eq!(join.members.len(), 1, "the leader gets the member list");
    let assignment = vec![(join.member_id.clone(), Bytes::from_static(b"assigned"))];
    assert_eq!(sync(&coordinator, "g", &join, assignment).await, 0);
    assert_eq!(coordinator.heartbeat("g", &join.member_id, None, 1), 0);
    assert_eq!(coordinator.heartbeat("g", &join.member_id, None, 0), ResponseError::IllegalGeneration.code());
    assert_eq!(coordinator.heartbeat("g", "stranger", None, 1), ResponseError::UnknownMemberId.code());
    assert_eq!(coordinator.describe("g").expect("group").state, "Stable");
}

#[tokio::test(start_paused = true)]
async fn a_second_member_triggers_a_rebalance_and_both_get_the_new_generation() {
    let (_dir, _log, coordinator) = open().await;
    let first = join_new(&coordinator, "g").await;
    assert_eq!(sync(&coordinator, "g", &first, vec![]).await, 0);
    let pending = coordinator.join("g", join_request("", None)).await;
    let second_id = pending.member_id.clone();
    let joining = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move { coordinator.join("g", join_request(&second_id, None)).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(coordinator.heartbeat("g", &first.member_id, None, 1), ResponseError::RebalanceInProgress.code());
    let rejoin = coordinator.join("g", join_request(&first.member_id, None)).await;
    let second = joining.await.expect("join");
    assert_eq!((rejoin.generation, second.generation), (2, 2));
    assert_eq!(rejoin.leader, first.member_id, "the leader stays");
    assert_eq!(rejoin.members.len(), 2);
    assert!(second.members.is_empty(), "followers get no member list");
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_expired_after_its_session_timeout() {
    let (_dir, _log, coordinator) = open().await;
    let join = join_new(&coordinator, "g").await;
    assert_eq!(sync(&coordinator, "g", &join, vec![]).await, 0);
    tokio::time::advance(Duration::from_millis(9_000)).await;
    coordinator.tick().await;
    assert_eq!(coordinator.describe("g").expect("group").state, "Stable", "not expired before the timeout");
    tokio::time::advance(Duration::from_millis(1_500)).await;
    coordinator.tick().await;
    assert_eq!(coordinator.describe("g").expect("group").state, "Empty");
    assert_eq!(coordinator.heartbeat("g", &join.member_id, None, 1), ResponseError::UnknownMemberId.code());
}

#[tokio::test(start_paused = true)]
async fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let (_dir, _log, coordinator) = open().await;
    let first = coordinator.join("g", join_request("", Some("instance-1"))).await;
    assert_eq!(first.error, 0, "static members join without KIP-394's round trip");
    let assignment = vec![(first.member_id.clone(), Bytes::from_static(b"a"))];
    assert_eq!(
        coordinator
            .sync("g", &first.member_id, Some("instance-1"), first.generation, None, None, assignment)
            .await
            .error,
        0
    );
    let again = coordinator.join("g", join_request("", Some("instance-1"))).await;
    assert_eq!(again.error, 0);
    assert_eq!(again.generation, first.generation, "no new generation");
    assert_ne!(again.member_id, first.member_id);
    let fenced = coordinator.heartbeat("g", &first.member_id, Some("instance-1"), first.generation);
    assert_eq!(fenced, ResponseError::FencedInstanceId.code());
    let synced =
        coordinator.sync("g", &again.member_id, Some("instance-1"), again.generation, None, None, vec![]).await;
    assert_eq!(synced.assignment, Bytes::from_static(b"a"), "the assignment is kept");
}

#[tokio::test(start_paused = true)]
async fn commits_are_checked_and_survive_a_reopen() {
    let (dir, log, coordinator) = open().await;
    let commit =
        |offset| CommitRequest { topic: "t".into(), partition: 0, offset, leader_epoch: 0, metadata: Some("m".into()) };
    // A standalone consumer commits with no generation.
    assert_eq!(coordinator.commit("standalone", -1, "", None, vec![commit(5)]).await, Ok(vec![0]));
    let join = join_new(&coordinator, "g").await;
    assert_eq!(sync(&coordinator, "g", &join, vec![]).await, 0);
    assert_eq!(coordinator.commit("g", 1, &join.member_id, None, vec![commit(7)]).await, Ok(vec![0]));
    assert_eq!(
        coordinator.commit("g", 0, &join.member_id, None, vec![commit(8)]).await,
        Err(ResponseError::IllegalGeneration.code())
    );
    assert_eq!(
        coordinator.commit("g", -1, "", None, vec![commit(9)]).await,
        Err(ResponseError::UnknownMemberId.code())
    );
    let big = CommitRequest { metadata: Some("x".repeat(5000)), ..commit(1) };
    assert_eq!(
        coordinator.commit("g", 1, &join.member_id, None, vec![big]).await,
        Ok(vec![ResponseError::OffsetMetadataTooLarge.code()])
    );
    drop(coordinator);
    log.close().await;
    drop(log);
    let log = open_for_tests(dir.path(), Durability::Periodic).await.expect("log");
    let coordinator = GroupCoordinator::open(log.clone(), LIMITS, 60_000).await.expect("coordinator");
    let committed = coordinator.committed("g", None);
    assert_eq!(committed.len(), 1);
    let offset = committed[0].2.clone().expect("committed");
    assert_eq!((offset.offset, offset.metadata.as_str()), (7, "m"));
    assert_eq!(coordinator.committed("standalone", None)[0].2.as_ref().map(|c| c.offset), Some(5));
    // The member is restored and may keep heartbeating in its generation.
    assert_eq!(coordinator.heartbeat("g", &join.member_id, None, 1), 0);
    assert_eq!(coordinator.describe("g").expect("group").state, "Stable");
}

#[tokio::test(start_paused = true)]
async fn only_empty_groups_can_be_deleted() {
    let (_dir, _log, coordinator) = open().await;
    let join = join_new(&coordinator, "g").await;
    assert_eq!(sync(&coordinator, "g", &join, vec![]).await, 0);
    assert_eq!(coordinator.delete_group("g").await, ResponseError::NonEmptyGroup.code());
    assert_eq!(coordinator.leave("g", &[(join.member_id.clone(), None)]).await, Ok(vec![0]));
    assert_eq!(coordinator.describe("g").expect("group").state, "Empty");
    assert_eq!(coordinator.delete_group("g").await, 0);
    assert_eq!(coordinator.delete_group("g").await, ResponseError::GroupIdNotFound.code());
}

#[tokio::test(start_paused = true)]
async fn commits_between_join_and_sync_get_rebalance_in_progress() {
    let (_dir, _log, coordinator) = open().await;
    let join = join_new(&coordinator, "g").await;
    // Joined generation 1, not yet synced: Kafka answers REBALANCE_IN_PROGRESS.
    let commit = CommitRequest { topic: "t".into(), partition: 0, offset: 1, leader_epoch: -1, metadata: None };
    let refused = coordinator.commit("g", join.generation, &join.member_id, None, vec![commit.clone()]).await;
    assert_eq!(refused, Err(ResponseError::RebalanceInProgress.code()));
    assert_eq!(sync(&coordinator, "g", &join, vec![]).await, 0);
    assert_eq!(coordinator.commit("g", join.generation, &join.member_id, None, vec![commit]).await, Ok(vec![0]));
}

#[tokio::test(start_paused = true)]
async fn lag_is_the_log_end_minus_the_commit_and_deleted_topics_drop_their_offsets() {
    let (_dir, log, coordinator) = open().await;
    let topic = log.create_topic("t", 2, Default::default(), false).await.expect("topic");
    let bytes = crate::log::batch::tests::batch(10, b"v", None);
    let batches = crate::log::batch::validate(&bytes, 1 << 20).expect("valid");
    let receiver = log.submit_append(&topic, &topic.partitions[0], batches).await.expect("queued");
    receiver.await.expect("reply").expect("appended");
    let commit =
        |partition, offset| CommitRequest { topic: "t".into(), partition, offset, leader_epoch: -1, metadata: None };
    assert_eq!(coordinator.commit("g", -1, "", None, vec![commit(0, 4), commit(1, 0)]).await, Ok(vec![0, 0]));
    let lag = coordinator.lag("g", &log);
    let summary: Vec<(i32, i64, i64, i64)> = lag.iter().map(|l| (l.partition, l.committed, l.log_end, l.lag)).collect();
    assert_eq!(summary, vec![(0, 4, 10, 6), (1, 0, 0, 0)]);
    log.delete_topic("t").await.expect("deleted");
    coordinator.topic_deleted("t").await;
    assert!(coordinator.committed("g", None).is_empty(), "a deleted topic's offsets are gone");
}

#[tokio::test(start_paused = true)]
async fn offsets_of_empty_groups_expire_after_the_retention() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_for_tests(dir.path(), Durability::Periodic).await.expect("log");
    // A retention of 0 ms: anything committed before now is expired at the next tick.
    let coordinator = GroupCoordinator::open(log.clone(), LIMITS, 0).await.expect("coordinator");
    let commit = CommitRequest { topic: "t".into(), partition: 0, offset: 3, leader_epoch: -1, metadata: None };
    assert_eq!(coordinator.commit("empty", -1, "", None, vec![commit.clone()]).await, Ok(vec![0]));
    let join = join_new(&coordinator, "busy").await;
    assert_eq!(sync(&coordinator, "busy", &join, vec![]).await, 0);
    assert_eq!(coordinator.commit("busy", join.generation, &join.member_id, None, vec![commit]).await, Ok(vec![0]));
    // Commit timestamps are wall-clock milliseconds; wait for the clock to pass them.
    let committed_at = crate::log::now_ms();
    while crate::log::now_ms() <= committed_at {
        std::thread::yield_now();
    }
    coordinator.tick().await;
    assert!(coordinator.committed("empty", None).is_empty(), "the empty group's offsets expired");
    assert_eq!(coordinator.committed("busy", None).len(), 1, "a group with members keeps its offsets");
}

/// Runs the coordinator's timer task, as the server does, until the returned sender is dropped.
fn run_timers(coordinator: &GroupCoordinator) -> tokio::sync::watch::Sender<bool> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(coordinator.clone().run_timers(Duration::from_secs(3600), stopped));
    stop
}

/// Sessions end at their exact millisecond (Kafka's per-member timers), not at the next tick of
/// some periodic check: with the paused clock the timer task runs at the deadline it sleeps
/// towards, so the member is there 1 ms before its deadline and gone 1 ms after. A heartbeat
/// moves the deadline later without waking the task early; it then sleeps on to the new one.
#[tokio::test(start_paused = true)]
async fn a_silent_member_expires_at_its_exact_deadline() {
    let (_dir, _log, coordinator) = open().await;
    let start = tokio::time::Instant::now();
    let _timers = run_timers(&coordinator);
    // Off any round number, so that a periodic check would miss the deadline.
    tokio::time::sleep_until(start + Duration::from_millis(37)).await;
    let join = join_new(&coordinator, "g").await;
    assert_eq!(sync(&coordinator, "g", &join, vec![]).await, 0);
    // The session (10 s) ends at 10_037 ms; a heartbeat at 5_013 ms moves it to 15_013 ms.
    tokio::time::sleep_until(start + Duration::from_millis(5_013)).await;
    assert_eq!(coordinator.heartbeat("g", &join.member_id, None, join.generation), 0);
    tokio::time::sleep_until(start + Duration::from_millis(10_038)).await;
    assert_eq!(coordinator.describe("g").expect("group").state, "Stable", "the heartbeat extended the session");
    tokio::time::sleep_until(start + Duration::from_millis(15_012)).await;
    assert_eq!(coordinator.describe("g").expect("group").state, "Stable", "not expired before the deadline");
    tokio::time::sleep_until(start + Duration::from_millis(15_014)).await;
    assert_eq!(coordinator.describe("g").expect("group").state, "Empty", "expired at 15_013 ms");
    assert_eq!(
        coordinator.heartbeat("g", &join.member_id, None, join.generation),
        ResponseError::UnknownMemberId.code()
    );
}

/// A join phase ends at its rebalance deadline to the millisecond: the member that does not
/// rejoin is removed then and the one that did gets the next generation at that instant.
#[tokio::test(start_paused = true)]
async fn a_join_phase_ends_at_its_exact_rebalance_deadline() {
    let (_dir, _log, coordinator) = open().await;
    let start = tokio::time::Instant::now();
    let _timers = run_timers(&coordinator);
    let first = join_new(&coordinator, "g").await;
    assert_eq!(sync(&coordinator, "g", &first, vec![]).await, 0);
    tokio::time::sleep_until(start + Duration::from_millis(1_021)).await;
    // A second member starts a rebalance with a 5 s rebalance timeout: it ends at 6_021 ms.
    let pending = coordinator.join("g", join_request("", None)).await;
    let second_id = pending.member_id.clone();
    let joining = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move { coordinator.join("g", join_request(&second_id, None)).await })
    };
    let second = joining.await.expect("join");
    let ended = tokio::time::Instant::now() - start;
    assert_eq!(ended, Duration::from_millis(6_021), "the join phase ended at its deadline");
    assert_eq!((second.error, second.generation), (0, 2));
    assert_eq!(second.leader, second.member_id, "the silent first member was removed");
    assert_eq!(
        coordinator.heartbeat("g", &first.member_id, None, first.generation),
        ResponseError::UnknownMemberId.code()
    );
}

/// Offsets sent with a transaction stay pending (durably: a reopened coordinator has them) until
/// the producer's marker for the group's slot: a commit at the epoch they were sent at makes them
/// committed; an abort drops them; an earlier epoch's are a fenced instance's and never commit,
/// and an earlier epoch than the one pending is PRODUCER_FENCED.
#[tokio::test(start_paused = true)]
async fn transactional_offsets_wait_for_their_marker() {
    use super::{GROUP_SLOTS, group_slot};
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_for_tests(dir.path(), Durability::Periodic).await.expect("log");
    let coordinator = GroupCoordinator::open(log.clone(), LIMITS, 60_000).await.expect("coordinator");
    let slot = group_slot("g", GROUP_SLOTS);
    let at = |offset| vec![CommitRequest { topic: "t".into(), partition: 0, offset, leader_epoch: -1, metadata: None }];
    let committed = |coordinator: &GroupCoordinator| coordinator.committed("g", None).first().and_then(|c| c.2.clone());
    assert_eq!(coordinator.commit_pending("g", 7, 0, at(5)).await, Ok(vec![0]));
    assert_eq!(coordinator.unstable_offsets("g").into_iter().collect::<Vec<_>>(), vec![("t".to_string(), 0)]);
    assert_eq!(committed(&coordinator), None, "pending offsets are not committed offsets");
    // Another slot's marker, or another producer's, leaves them alone.
    coordinator.end_transaction((slot + 1) % GROUP_SLOTS, 7, 0, true).await.expect("marker");
    coordinator.end_transaction(slot, 8, 0, true).await.expect("marker");
    assert_eq!(coordinator.unstable_offsets("g").len(), 1);
    // Still pending after the coordinator is opened again from its store.
    drop(coordinator);
    let coordinator = GroupCoordinator::open(log.clone(), LIMITS, 60_000).await.expect("coordinator");
    assert_eq!(coordinator.unstable_offsets("g").len(), 1, "pending offsets are durable");
    coordinator.end_transaction(slot, 7, 0, true).await.expect("commit marker");
    assert_eq!(committed(&coordinator).map(|c| c.offset), Some(5));
    assert!(coordinator.unstable_offsets("g").is_empty());
    // An aborted transaction's offsets are dropped.
    assert_eq!(coordinator.commit_pending("g", 7, 0, at(9)).await, Ok(vec![0]));
    coordinator.end_transaction(slot, 7, 0, false).await.expect("abort marker");
    assert_eq!(committed(&coordinator).map(|c| c.offset), Some(5));
    // A new epoch fences the old one: its offsets are refused, and the new epoch's commit marker
    // does not commit offsets an older epoch left pending.
    assert_eq!(coordinator.commit_pending("g", 7, 2, at(11)).await, Ok(vec![0]));
    assert_eq!(coordinator.commit_pending("g", 7, 1, at(99)).await, Err(ResponseError::ProducerFenced));
    coordinator.end_transaction(slot, 7, 3, true).await.expect("commit marker");
    assert_eq!(committed(&coordinator).map(|c| c.offset), Some(5), "epoch 2's offsets are not epoch 3's");
    assert!(coordinator.unstable_offsets("g").is_empty(), "and they are dropped");
    drop(coordinator);
    let coordinator = GroupCoordinator::open(log, LIMITS, 60_000).await.expect("coordinator");
    assert!(coordinator.unstable_offsets("g").is_empty(), "ended offsets stay ended");
    assert_eq!(committed(&coordinator).map(|c| c.offset), Some(5));
}

/// A cluster's coordinator serves a group only once its slot is loaded, and not after the slot
/// is given up: in between it would answer from a state without the slot's stored offsets
/// (a consumer would then reset its position).
#[tokio::test(start_paused = true)]
async fn a_slot_is_served_only_while_loaded() {
    use super::{GROUP_SLOTS, LocalGroupStore, group_slot};
    let dir = tempfile::tempdir().expect("temp dir");
    let log = open_for_tests(dir.path(), Durability::Periodic).await.expect("log");
    let single = GroupCoordinator::open(log.clone(), LIMITS, 60_000).await.expect("coordinator");
    assert!(single.is_loaded("g"), "a single broker serves every group");
    let commit = CommitRequest { topic: "t".into(), partition: 0, offset: 3, leader_epoch: -1, metadata: None };
    assert_eq!(single.commit("g", -1, "", None, vec![commit]).await, Ok(vec![0]));
    let placed = GroupCoordinator::with_store(Arc::new(LocalGroupStore(log)), LIMITS, 60_000);
    let slot = group_slot("g", GROUP_SLOTS);
    assert!(!placed.is_loaded("g"), "not before its slot is loaded");
    placed.load_slot((slot + 1) % GROUP_SLOTS).await.expect("another slot");
    assert!(!placed.is_loaded("g"), "another slot's load does not serve it");
    placed.load_slot(slot).await.expect("its slot");
    assert!(placed.is_loaded("g"));
    assert_eq!(placed.committed("g", None).first().and_then(|c| c.2.clone()).map(|c| c.offset), Some(3));
    placed.unload_slot(slot, GROUP_SLOTS).await;
    assert!(!placed.is_loaded("g"), "not after its slot is given up");
}
