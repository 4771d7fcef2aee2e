//! The group coordinator's timers: member sessions and rebalance deadlines at their exact
//! millisecond, as Kafka's per-member timers fire, and the expiry of committed offsets.
//!
//! One timer task (`run_timers`) sleeps until the earliest deadline of any group, and a change
//! that brings some deadline earlier than the one it sleeps towards wakes it up
//! (`with_group_state`).

use std::time::Duration;

use super::classic::ClassicGroup;
use super::offsets::delete_writes;
use super::{GroupCoordinator, State};

impl GroupCoordinator {
    /// `with_state` for a change to one group that may bring one of its deadlines earlier (a
    /// new member, a rebalance starting, parked requests answered): wakes the timer task if the
    /// group's next deadline comes before the one the task sleeps towards. Heartbeats only move
    /// deadlines later and need not call this; the task finds out when it wakes.
    pub(super) fn with_group_state<T>(&self, group_id: &str, f: impl FnOnce(&mut State) -> T) -> T {
        self.with_state(|state| {
            let out = f(state);
            let next = state.groups.get(group_id).and_then(ClassicGroup::next_deadline_ms);
            if let Some(next) = next
                && state.timer_deadline_ms.is_none_or(|scheduled| next < scheduled)
            {
                state.timer_deadline_ms = Some(next);
                self.inner.deadlines_changed.notify_one();
            }
            out
        })
    }

    /// Advances time: session expiry, join timeouts, and offset expiry of empty groups.
    pub async fn tick(&self) {
        self.expire_members().await;
        self.expire_offsets().await;
    }

    /// Session expiry and join timeouts of every group whose deadline has passed.
    async fn expire_members(&self) {
        let _writes = self.inner.writes.lock().await;
        let now = self.now_ms();
        let limits = self.inner.limits;
        let emptied: Vec<String> = self.with_state(|state| {
            state.groups.values_mut().filter_map(|g| g.tick(&limits, now).then(|| g.id.clone())).collect()
        });
        drop(_writes);
        for group in emptied {
            self.persist_if_empty(&group).await;
        }
    }

    /// The earliest deadline of any group, which the timer task then sleeps towards.
    fn schedule_next_deadline(&self) -> Option<u64> {
        self.with_state(|state| {
            let next = state.groups.values().filter_map(ClassicGroup::next_deadline_ms).min();
            state.timer_deadline_ms = next;
            next
        })
    }

    /// `offsets.retention.minutes`: offsets of groups without members expire after the retention.
    async fn expire_offsets(&self) {
        let retention = self.inner.offsets_retention_ms;
        if retention < 0 {
            return;
        }
        let _writes = self.inner.writes.lock().await;
        let cutoff = crate::log::now_ms() - retention;
        let expired = self.with_state(|state| {
            let groups = &state.groups;
            state.offsets.expired(cutoff, |group| groups.get(group).is_none_or(ClassicGroup::is_empty))
        });
        if expired.is_empty() {
            return;
        }
        if self.write(delete_writes(&expired)).await.is_ok() {
            self.with_state(|state| state.offsets.replay_deletes(expired));
        }
    }

    /// The coordinator's timers, until `stopped` changes: group deadlines (sessions, join phases)
    /// at their exact millisecond, and offset expiry every `offsets_check_interval`.
    pub async fn run_timers(self, offsets_check_interval: Duration, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut offsets_checks = tokio::time::interval(offsets_check_interval);
        offsets_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fired_ms = None;
        loop {
            // After a firing every deadline lies in the future; should one not, waiting a
            // millisecond from now keeps a stuck deadline from spinning this task.
            let next = self.schedule_next_deadline().map(|next| match fired_ms {
                Some(fired) if next <= fired => self.now_ms().max(next) + 1,
                _ => next,
            });
            let deadline = async {
                match next {
                    Some(at) => tokio::time::sleep_until(self.inner.clock_start + Duration::from_millis(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = deadline => {
                    fired_ms = next;
                    self.expire_members().await;
                }
                _ = self.inner.deadlines_changed.notified() => {}
                _ = offsets_checks.tick() => self.expire_offsets().await,
                _ = stopped.changed() => return,
            }
        }
    }
}
