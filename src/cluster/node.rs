//! A broker's life in a cluster: it registers in PostgreSQL under its node id (refused while
//! another live broker holds it), renews its lease every heartbeat, follows the metadata (on
//! every change PostgreSQL notifies, and every heartbeat), takes over the partitions it is
//! given and hands over those the controller moves away. One broker at a time also holds the
//! controller lease and plans leadership (see `assignment`).
//!
//! A broker that loses its registration, or whose write-ahead log stream a successor sealed,
//! acknowledges nothing more and stops (exit code 3): a supervisor restarts it under a new
//! broker epoch.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, watch};
use uuid::Uuid;

use super::assignment::{self, Action, Candidate, Led};
use super::cache::{ClusterCache, GROUP_SLOTS};
use super::metadata::PgMetadata;
use super::pg::{ClusterStore, GROUPS_TOPIC_ID, PartitionRow, Snapshot};
use super::takeover::Takeover;
use crate::config::{ClusterConfig, Config};
use crate::coordinator::Coordinator;
use crate::coordinator::txn::TransactionCoordinator;
use crate::log::{LogError, MetadataWrapper, TopicRecord};
use crate::unified::UnifiedLog;

/// How often this broker deletes the write-ahead log objects that segments cover.
const WAL_COLLECT_INTERVAL: Duration = Duration::from_secs(10);

/// Controlled moves the controller starts per round.
const MOVES_PER_ROUND_MAX: usize = 64;
/// Takeovers run at once.
const TAKEOVERS_MAX: usize = 8;

/// A broker registered in the cluster.
pub struct ClusterNode {
    store: ClusterStore,
    pub cache: Arc<ClusterCache>,
    settings: ClusterConfig,
    node_id: i32,
    broker_epoch: i64,
    /// Wakes the loop for an immediate metadata refresh.
    refresh: Arc<Notify>,
    /// The last epoch of each partition (and group slot) this broker handed over: a round whose
    /// snapshot was read before the hand-over still names this broker at that epoch, and must
    /// not take it over again.
    handed_over: parking_lot::Mutex<HashMap<(Uuid, i32), i32>>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode").field("node_id", &self.node_id).field("broker_epoch", &self.broker_epoch).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Coordinator(#[from] super::pg::PgError),
    #[error("node id {0} is held by a live broker: give each broker its own --node-id")]
    NodeIdTaken(i32),
}

impl ClusterNode {
    /// Connects to the coordinator, agrees the cluster id (into `config`) and registers this
    /// broker at `host:port` and at its address on every listener.
    pub async fn join(config: &mut Config, host: &str, port: i32) -> Result<ClusterNode, JoinError> {
        let settings = config
            .coordinator
            .clone()
            .ok_or_else(|| super::pg::PgError::Invalid("cluster mode needs --coordinator".to_string()))?;
        let session = Duration::from_millis(settings.session_timeout_ms);
        let store = ClusterStore::connect(&settings.coordinator_url, session).await?;
        let proposed =
            config.cluster_id.clone().unwrap_or_else(|| Uuid::new_v4().simple().to_string()[..22].to_string());
        let cluster_id = store.cluster_id(&proposed).await?;
        config.cluster_id = Some(cluster_id);
        let node_id = config.node_id;
        let sent = Instant::now();
        let lease_ms = settings.session_timeout_ms as i64;
        let listeners: Vec<_> = config
            .security
            .listeners
            .iter()
            .map(|l| super::ListenerAddress {
                name: l.name.clone(),
                host: l.advertised_host.clone(),
                port: l.advertised_port,
            })
            .collect();
        let listeners = super::ListenerAddress::format_all(&listeners);
        let broker_epoch = store
            .register(node_id, host, port, &listeners, settings.rack.as_deref(), lease_ms)
            .await?
            .ok_or(JoinError::NodeIdTaken(node_id))?;
        let cache = ClusterCache::new(node_id);
        cache.lease_renewed(sent, session);
        tracing::info!(node_id, broker_epoch, coordinator = %settings.coordinator_shown(), "joined the cluster");
        Ok(ClusterNode {
            store,
            cache,
            settings,
            node_id,
            broker_epoch,
            refresh: Arc::new(Notify::new()),
            handed_over: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Wraps the log's local metadata store: topics, producer ids, configs and the segment index
    /// go to PostgreSQL first.
    pub fn metadata_wrapper(&self) -> MetadataWrapper {
        let (store, cache) = (self.store.clone(), self.cache.clone());
        Box::new(move |local| Arc::new(PgMetadata::new(store, cache, local)))
    }

    /// Where the group coordinator keeps group records and offsets: PostgreSQL, by slot.
    pub fn group_store(&self) -> Arc<dyn crate::coordinator::GroupStore> {
        Arc::new(super::groups::PgGroupStore {
            store: self.store.clone(),
            node_id: self.node_id,
            slots: self.cache.slots.clone(),
        })
    }

    /// Where the transaction coordinator keeps its records: PostgreSQL, by group slot.
    pub fn txn_store(&self) -> Arc<dyn crate::coordinator::txn::TxnStore> {
        Arc::new(super::txn::PgTxnStore {
            store: self.store.clone(),
            node_id: self.node_id,
            slots: self.cache.slots.clone(),
        })
    }

    /// Brings the local log to the cluster's metadata once (topics), before serving.
    pub async fn sync_once(&self, unified: &UnifiedLog) -> Result<(), LogError> {
        let snapshot = self.store.snapshot().await?;
        self.cache.apply(&snapshot);
        sync_topics(unified, &snapshot).await
    }

    /// Runs the membership loop until `stopped` turns true, then hands every partition over and
    /// ends the lease (controlled shutdown).
    pub async fn run(
        self: Arc<Self>,
        unified: UnifiedLog,
        coordinator: Coordinator,
        transactions: Option<TransactionCoordinator>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let heartbeat = Duration::from_millis(self.settings.heartbeat_interval_ms);
        let mut ticks = tokio::time::interval(heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::spawn(listen(self.store.clone(), self.refresh.clone()));
        // The lease is renewed on its own task (and connection): a round that waits on
        // PostgreSQL (a joining broker loading its share) must not delay it past the lease.
        let renewing = tokio::spawn(self.clone().renew_lease(heartbeat));
        let mut duties = Duties { coordinator: Some(coordinator), transactions, ..Duties::default() };
        let mut collected = Instant::now();
        let mut collecting: Option<tokio::task::JoinHandle<()>> = None;
        // The controller wakes when the first live lease runs out, not at the next heartbeat:
        // a dead broker's partitions move as soon as its lease says it is dead.
        let mut next_expiry: Option<tokio::time::Instant> = None;
        loop {
            let expiry = next_expiry.unwrap_or_else(|| tokio::time::Instant::now() + heartbeat);
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.refresh.notified() => {}
                () = tokio::time::sleep_until(expiry), if next_expiry.is_some() => {}
                _ = stopped.changed() => break,
            }
            match self.round(&unified, &mut duties).await {
                Ok(expiry) => next_expiry = expiry,
                Err(error) => {
                    // Next try at the next heartbeat: a lease expiry already past would wake the
                    // loop at once, and a store that is down would get a round per microsecond.
                    next_expiry = None;
                    tracing::warn!(%error, "cluster round failed; trying again");
                }
            }
            // On its own task: listing and deleting objects can take seconds on a slow store,
            // and the rounds (which keep this broker's metadata current) must not wait for it.
            if collected.elapsed() >= WAL_COLLECT_INTERVAL && collecting.as_ref().is_none_or(|c| c.is_finished()) {
                collected = Instant::now();
                let (node, unified) = (self.clone(), unified.clone());
                collecting = Some(tokio::spawn(async move {
                    if let Err(error) = node.collect_wal(&unified).await {
                        tracing::warn!(%error, "cannot delete covered write-ahead log objects yet");
                    }
                }));
            }
        }
        self.shut_down(&unified, &mut duties, renewing).await;
    }

    async fn renew_lease(self: Arc<Self>, heartbeat: Duration) {
        let mut ticks = tokio::time::interval(heartbeat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.heartbeat().await;
        }
    }

    async fn heartbeat(&self) {
        let sent = Instant::now();
        let lease = Duration::from_millis(self.settings.session_timeout_ms);
        match self.store.renew(self.node_id, self.broker_epoch, lease.as_millis() as i64).await {
            Ok(true) => self.cache.lease_renewed(sent, lease),
            // The lease ran out by PostgreSQL's clock (the broker was paused, or cut off from
            // PostgreSQL), or another process took the node id: the controller may have moved
            // its partitions and their new leaders sealed its write-ahead log. It starts again
            // under a new broker epoch.
            Ok(false) => {
                tracing::error!(node_id = self.node_id, "this broker's lease lapsed; stopping to rejoin afresh");
                std::process::exit(3);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot renew the lease; produces stop being acknowledged when it ends")
            }
        }
    }

    /// One pass: refresh the metadata, then the controller's and this broker's duties. The
    /// controller gets back when the first other live broker's lease runs out.
    async fn round(
        self: &Arc<Self>,
        unified: &UnifiedLog,
        duties: &mut Duties,
    ) -> Result<Option<tokio::time::Instant>, LogError> {
        let snapshot = self.store.snapshot().await?;
        self.cache.apply(&snapshot);
        sync_topics(unified, &snapshot).await?;
        let lease = self.settings.session_timeout_ms as i64;
        let mut expiry = None;
        if self.store.hold_controller(self.node_id, lease).await? {
            self.control(&snapshot).await?;
            let first = snapshot
                .brokers
                .iter()
                .filter(|b| b.live && b.node_id != self.node_id)
                .map(|b| b.lease_remaining_ms.max(0) as u64)
                .min();
            // A little after it, so that PostgreSQL's clock has passed it too.
            expiry = first.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms + 20));
        }
        self.lead(unified, &snapshot, duties);
        Ok(expiry)
    }

    /// Deletes this broker's write-ahead log objects whose records the cluster's segments hold
    /// (or whose topics are gone).
    async fn collect_wal(&self, unified: &UnifiedLog) -> Result<(), LogError> {
        let Some(wal) = unified.wal() else { return Ok(()) };
        let coverage = self.store.coverage().await?;
        let deleted = wal
            .collect_covered(|topic, partition, next| coverage.get(&(topic, partition)).is_none_or(|end| *end >= next))
            .await?;
        if deleted > 0 {
            tracing::debug!(deleted, "covered write-ahead log objects deleted");
        }
        Ok(())
    }

    /// The controller's duty: orphans to live brokers at once, controlled moves for the rest.
    async fn control(&self, snapshot: &Snapshot) -> Result<(), LogError> {
        let live: Vec<Candidate> = snapshot
            .brokers
            .iter()
            .filter(|b| b.live)
            .map(|b| Candidate { node_id: b.node_id, rack: b.rack.clone(), shutting_down: b.shutting_down })
            .collect();
        let partitions: Vec<Led> = snapshot
            .partitions
            .iter()
            .map(|p| Led {
                topic_id: p.topic_id,
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                target_leader: p.target_leader,
            })
            .collect();
        // A hand-over to a broker that died meanwhile is cancelled, to be planned again.
        for p in
            snapshot.partitions.iter().filter(|p| p.target_leader.is_some_and(|t| !live.iter().any(|b| b.node_id == t)))
        {
            self.store.set_target_leader(p.topic_id, p.partition, None).await?;
        }
        for action in assignment::plan(&live, &partitions, MOVES_PER_ROUND_MAX) {
            match action {
                Action::Reassign { topic_id, partition, epoch, to } => {
                    if self.store.move_partition(topic_id, partition, epoch, to, None).await? {
                        tracing::info!(%topic_id, partition, to, epoch = epoch + 1, "partition moved from a dead broker");
                    }
                }
                Action::HandOver { topic_id, partition, to } => {
                    self.store.set_target_leader(topic_id, partition, Some(to)).await?;
                }
            }
        }
        Ok(())
    }

    /// This broker's duty: take over what it was given, hand over what it is asked to, and stop
    /// serving what moved away.
    fn lead(self: &Arc<Self>, unified: &UnifiedLog, snapshot: &Snapshot, duties: &mut Duties) {
        duties.finished();
        let log = unified.log();
        for row in snapshot.partitions.iter().filter(|row| row.topic_id == GROUPS_TOPIC_ID) {
            self.coordinate(row, duties);
        }
        for row in snapshot.partitions.iter().filter(|row| row.topic_id != GROUPS_TOPIC_ID) {
            let Some(partition) = log.topic_by_id(row.topic_id).and_then(|t| t.partition(row.partition).cloned())
            else {
                continue;
            };
            let key = (row.topic_id, row.partition);
            if row.leader != self.node_id {
                if partition.is_leading() {
                    partition.set_leading(false);
                    tracing::info!(topic_id = %row.topic_id, partition = row.partition, "partition moved away");
                }
                continue;
            }
            // A row older than what this broker knows of the partition is from a stale snapshot.
            let stale = partition.leader_epoch() > row.leader_epoch || self.handed_over_at(key, row.leader_epoch);
            if duties.busy.contains(&key) || stale {
                continue;
            }
            let ready = partition.is_leading() && partition.leader_epoch() == row.leader_epoch;
            if !ready {
                duties.start(key, self.clone().take_over(unified.clone(), *row, duties.permits.clone()));
            } else if let Some(target) = row.target_leader.filter(|t| *t != self.node_id) {
                duties.start(key, self.clone().hand_over(unified.clone(), *row, target));
            }
        }
    }

    /// A group slot: load its groups when given it, drop them when it moves away or is to be
    /// handed over (then move it).
    fn coordinate(self: &Arc<Self>, row: &PartitionRow, duties: &mut Duties) {
        let Some(coordinator) = duties.coordinator.clone() else { return };
        let transactions = duties.transactions.clone();
        let slot = row.partition as u32;
        let key = (row.topic_id, row.partition);
        if duties.busy.contains(&key) || self.handed_over_at(key, row.leader_epoch) {
            return;
        }
        let slots = self.cache.slots.clone();
        let held = slots.epoch(slot);
        if row.leader != self.node_id {
            if held.is_some() {
                slots.release(slot);
                transactions.iter().for_each(|t| t.unload_slot(slot));
                duties.start(key, async move { coordinator.unload_slot(slot, GROUP_SLOTS).await });
            }
            return;
        }
        if let Some(target) = row.target_leader.filter(|t| *t != self.node_id && held == Some(row.leader_epoch)) {
            let (node, row) = (self.clone(), *row);
            duties.start(key, async move {
                slots.release(slot);
                transactions.iter().for_each(|t| t.unload_slot(slot));
                coordinator.unload_slot(slot, GROUP_SLOTS).await;
                match node.store.move_partition(row.topic_id, row.partition, row.leader_epoch, target, None).await {
                    Ok(true) => node.handed(key, row.leader_epoch),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, slot, "cannot hand a group slot over yet"),
                }
                node.refresh.notify_one();
            });
            return;
        }
        if held != Some(row.leader_epoch) {
            let (node, epoch) = (self.clone(), row.leader_epoch);
            duties.start(key, async move {
                // Writes are fenced at this epoch from here on; the groups load after.
                slots.hold(slot, epoch);
                transactions.iter().for_each(|t| t.unload_slot(slot));
                coordinator.unload_slot(slot, GROUP_SLOTS).await;
                let loaded = async {
                    let groups = coordinator.load_slot(slot).await?;
                    let ids = match &transactions {
                        Some(transactions) => transactions.load_slot(slot).await?,
                        None => 0,
                    };
                    Ok::<_, LogError>((groups, ids))
                };
                match loaded.await {
                    Ok((groups, ids)) => {
                        tracing::debug!(slot, epoch, groups, transactional_ids = ids, "group slot loaded")
                    }
                    Err(error) => {
                        tracing::warn!(%error, slot, "cannot load a group slot yet");
                        slots.release(slot);
                        transactions.iter().for_each(|t| t.unload_slot(slot));
                        coordinator.unload_slot(slot, GROUP_SLOTS).await;
                    }
                }
                node.refresh.notify_one();
            });
        }
    }

    async fn take_over(self: Arc<Self>, unified: UnifiedLog, row: PartitionRow, permits: Arc<Semaphore>) {
        let Ok(_permit) = permits.acquire_owned().await else { return };
        let Some(wal) = unified.wal() else { return };
        let Some(partition) = unified.log().topic_by_id(row.topic_id).and_then(|t| t.partition(row.partition).cloned())
        else {
            return;
        };
        let objects = tokio::sync::Mutex::new(HashMap::new());
        let sealed = tokio::sync::Mutex::new(HashSet::new());
        let registered = match self.store.snapshot().await {
            Ok(snapshot) => snapshot.brokers.iter().map(|b| (b.node_id, b.broker_epoch)).collect(),
            Err(error) => {
                tracing::warn!(%error, "takeover postponed: cannot read the brokers");
                self.refresh.notify_one();
                return;
            }
        };
        let wal_store = wal.store();
        let takeover = Takeover {
            store: &self.store,
            log: unified.log(),
            wal: &wal_store,
            node_id: self.node_id,
            own_stream: wal.current_stream(),
            objects: &objects,
            sealed: &sealed,
            registered: &registered,
        };
        let started = Instant::now();
        let took = match takeover.run(&partition, row.leader_epoch, row.log_start).await {
            // Recorded before serving: a successor then knows which incarnation to seal.
            Ok(done) => match self
                .store
                .start_epoch(row.topic_id, row.partition, row.leader_epoch, self.node_id, self.broker_epoch)
                .await
            {
                Ok(true) => Ok(done),
                Ok(false) => Err(LogError::NotLeaderOrFollower),
                Err(error) => Err(error.into()),
            },
            Err(error) => Err(error),
        };
        match took {
            Ok(done) => {
                partition.set_leading(true);
                tracing::info!(topic_id = %row.topic_id, partition = row.partition, epoch = row.leader_epoch,
                    start = done.start, end = done.end, batches = done.batches,
                    took_ms = started.elapsed().as_millis() as u64, "partition taken over");
            }
            Err(error) => {
                tracing::warn!(topic_id = %row.topic_id, partition = row.partition, %error, "takeover failed; trying again");
            }
        }
        self.refresh.notify_one();
    }

    fn handed(&self, key: (Uuid, i32), epoch: i32) {
        let mut handed = self.handed_over.lock();
        let last = handed.entry(key).or_insert(epoch);
        *last = (*last).max(epoch);
    }

    /// Whether this broker handed the partition over at `epoch` or later.
    fn handed_over_at(&self, key: (Uuid, i32), epoch: i32) -> bool {
        self.handed_over.lock().get(&key).is_some_and(|last| *last >= epoch)
    }

    /// Stops appending, waits until everything appended is durable, then moves the partition
    /// with where its epoch ended.
    async fn hand_over(self: Arc<Self>, unified: UnifiedLog, row: PartitionRow, target: i32) {
        let Some(partition) = unified.log().topic_by_id(row.topic_id).and_then(|t| t.partition(row.partition).cloned())
        else {
            return;
        };
        partition.set_leading(false);
        if let Err(error) = unified.log().barrier().await {
            tracing::warn!(%error, "cannot hand a partition over yet");
            partition.set_leading(true);
            return;
        }
        let end = partition.high_watermark();
        match self.store.move_partition(row.topic_id, row.partition, row.leader_epoch, target, Some(end)).await {
            Ok(true) => {
                self.handed((row.topic_id, row.partition), row.leader_epoch);
                tracing::info!(topic_id = %row.topic_id, partition = row.partition, to = target, end,
                    "partition handed over");
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot hand a partition over yet");
                partition.set_leading(true);
            }
        }
        self.refresh.notify_one();
    }

    /// Controlled shutdown: asks the controller to move every partition away, hands each over
    /// as asked, and ends the lease once this broker leads nothing (or after the session timeout).
    async fn shut_down(
        self: &Arc<Self>,
        unified: &UnifiedLog,
        duties: &mut Duties,
        renewing: tokio::task::JoinHandle<()>,
    ) {
        if let Err(error) = self.store.set_shutting_down(self.node_id, self.broker_epoch).await {
            tracing::warn!(%error, "cannot announce the shutdown; partitions move once the lease ends");
            renewing.abort();
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(self.settings.session_timeout_ms);
        while Instant::now() < deadline {
            if let Err(error) = self.round(unified, duties).await {
                tracing::warn!(%error, "cluster round failed during shutdown");
            }
            let leads_any = unified.log().topics().iter().any(|t| t.partitions.iter().any(|p| p.is_leading()))
                || !self.cache.slots.held().is_empty();
            if !leads_any && duties.busy.is_empty() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = self.refresh.notified() => {}
            }
        }
        // Not renewed after this: a renewal after the lease ends would read as a lapse.
        renewing.abort();
        let _ = renewing.await;
        if let Err(error) = self.store.unregister(self.node_id, self.broker_epoch).await {
            tracing::warn!(%error, "cannot end the lease; it expires by itself");
        }
    }
}

/// Takeovers and hand-overs in progress.
struct Duties {
    busy: HashSet<(Uuid, i32)>,
    tasks: tokio::task::JoinSet<(Uuid, i32)>,
    permits: Arc<Semaphore>,
    /// The group coordinator, which loads and drops the group slots this broker is given.
    coordinator: Option<Coordinator>,
    /// The transaction coordinator, which serves the ids of the same slots.
    transactions: Option<TransactionCoordinator>,
}

impl Default for Duties {
    fn default() -> Self {
        Duties {
            busy: HashSet::new(),
            tasks: tokio::task::JoinSet::new(),
            permits: Arc::new(Semaphore::new(TAKEOVERS_MAX)),
            coordinator: None,
            transactions: None,
        }
    }
}

impl Duties {
    fn start(&mut self, key: (Uuid, i32), work: impl std::future::Future<Output = ()> + Send + 'static) {
        self.busy.insert(key);
        self.tasks.spawn(async move {
            work.await;
            key
        });
    }

    fn finished(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            if let Ok(key) = done {
                self.busy.remove(&key);
            }
        }
    }
}

/// Makes the local log's topics the cluster's: new and changed ones taken in, deleted ones
/// dropped; and the dynamic configs.
async fn sync_topics(unified: &UnifiedLog, snapshot: &Snapshot) -> Result<(), LogError> {
    let log = unified.log();
    let known: BTreeMap<Uuid, &super::pg::TopicRow> = snapshot.topics.iter().map(|t| (t.id, t)).collect();
    for topic in log.topics() {
        if !known.contains_key(&topic.id) {
            log.forget_topic(topic.id).await?;
        }
    }
    for row in snapshot.topics.iter() {
        let record = TopicRecord::new(row.name.clone(), row.id, row.number, row.partitions, row.configs.clone());
        // A local topic of that name but another id was deleted and made again elsewhere.
        if let Some(local) = log.topic(&row.name)
            && local.id != row.id
        {
            log.forget_topic(local.id).await?;
        }
        log.apply_topic(record).await?;
    }
    for (scope, configs) in &snapshot.dynamic_configs {
        if log.dynamic_configs(scope) != *configs {
            log.apply_dynamic_configs(scope, configs.clone());
        }
    }
    Ok(())
}

/// Wakes `refresh` on every metadata notification; reconnects after errors.
async fn listen(store: ClusterStore, refresh: Arc<Notify>) {
    loop {
        match store.listener().await {
            Ok(mut listener) => loop {
                match listener.recv().await {
                    Ok(_) => refresh.notify_one(),
                    Err(error) => {
                        tracing::debug!(%error, "metadata notifications interrupted");
                        break;
                    }
                }
            },
            Err(error) => tracing::debug!(%error, "cannot listen for metadata notifications"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
