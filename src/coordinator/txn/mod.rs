//! The transaction coordinator (Kafka's `TransactionCoordinator`): transactional ids, their
//! producer ids and epochs, and the two-phase end of a transaction.
//!
//! - `metadata.rs`: one id's state (Kafka's `TransactionMetadata`) and its checks: pure.
//! - this file: the state behind one mutex never held across an `.await`, a lock per
//!   transactional id that orders its changes, and the order of things: decide, store the
//!   decision (`PrepareCommit`/`PrepareAbort`) durably, write a marker to every partition of the
//!   transaction (one group commit of the log), make a commit's offsets the groups' committed
//!   offsets, then store `Complete*`. A decision stored before a crash is finished when the
//!   coordinator opens; a transaction left open is aborted at its timeout by the timer.
//!
//! Records live in a `TxnStore` and markers go out through a `MarkerWriter` (`store.rs`): a
//! single broker keeps both in its own log and coordinates every id; in a cluster each id is
//! coordinated by the broker holding its group slot (`load_slot`), its records in PostgreSQL
//! fenced by the slot's epoch, and markers go to each partition's leader (`src/cluster/txn.rs`).

pub mod metadata;
pub mod metrics;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use kafka_protocol::ResponseError;
use parking_lot::Mutex;

use super::group::{CommitRequest, GROUP_SLOTS, GroupCoordinator, OFFSETS_TOPIC, group_slot};
use super::producer_ids::{InitProducerIdResult, ProducerIdManager};
use crate::config::GroupConfig;
use crate::log::{Log, LogError, now_ms};
pub use metadata::{PendingOffset, TxnMetadata, TxnState};
pub use store::{LocalMarkers, LocalTxnStore, MarkerSpec, MarkerWriter, TxnStore};

/// The coordinator's limits (Kafka's `transaction.*` broker configs).
#[derive(Debug, Clone, Copy)]
pub struct TxnSettings {
    pub max_timeout_ms: i32,
    pub id_expiration_ms: i64,
    pub abort_check_interval_ms: u64,
}

impl From<&GroupConfig> for TxnSettings {
    fn from(config: &GroupConfig) -> Self {
        TxnSettings {
            max_timeout_ms: config.transaction_max_timeout_ms,
            id_expiration_ms: config.transactional_id_expiration_ms,
            abort_check_interval_ms: config.transaction_abort_timed_out_transaction_cleanup_interval_ms.max(1),
        }
    }
}

/// What the coordinator did since the broker started, for the metrics.
#[derive(Debug, Default)]
pub struct TxnStats {
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    /// Aborts the coordinator decided because a transaction outlived its timeout.
    pub timeouts: AtomicU64,
    /// Transactions left open on a partition after their transaction ended, aborted there.
    pub hanging_aborted: AtomicU64,
}

/// The transaction coordinator: cheap to clone, every clone the same coordinator.
#[derive(Clone)]
pub struct TransactionCoordinator {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct State {
    txns: HashMap<String, TxnMetadata>,
    /// Producer id → its transactional id, for the check of transactional produce.
    by_producer: HashMap<i64, String>,
    /// One lock per transactional id: its changes are decided and stored one at a time.
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Transactions open on a partition that no transaction in progress accounts for, seen by
    /// the last timer pass: aborted if the next pass still finds them.
    hanging: BTreeSet<(String, i32, i64, i64)>,
    /// In a cluster, the slots whose ids are loaded (a single broker serves every id).
    loaded: HashSet<u32>,
}

struct Inner {
    log: Log,
    producer_ids: Arc<ProducerIdManager>,
    groups: GroupCoordinator,
    store: Arc<dyn TxnStore>,
    markers: Arc<dyn MarkerWriter>,
    /// In a cluster, how many slots ids are placed in (`group_slot`); `None`: a single broker.
    slots: Option<u32>,
    state: Mutex<State>,
    settings: TxnSettings,
    stats: TxnStats,
}

/// Per-partition answers of AddPartitionsToTxn.
pub type PartitionCodes = Vec<(String, i32, i16)>;

impl TransactionCoordinator {
    /// Loads every transactional id from the log's store, finishes the transactions whose
    /// decision was stored, and starts the timer that aborts transactions past their timeout.
    pub async fn open(
        log: Log,
        producer_ids: Arc<ProducerIdManager>,
        groups: GroupCoordinator,
        settings: TxnSettings,
    ) -> Result<TransactionCoordinator, LogError> {
        let store = Arc::new(LocalTxnStore(log.clone()));
        let markers = Arc::new(LocalMarkers { log: log.clone(), groups: groups.clone() });
        let coordinator = Self::with_seams(log, producer_ids, groups, settings, store, markers, None);
        let (loaded, finished) = coordinator.load(None).await?;
        tracing::info!(transactional_ids = loaded, finished, "transaction coordinator loaded");
        Ok(coordinator)
    }

    /// A coordinator over `store` and `markers`, its timer started. With `slots` (a cluster's:
    /// ids placed by `group_slot` over that many slots) it serves the ids of the slots it is
    /// given (`load_slot`), none until then; without, every id.
    pub fn with_seams(
        log: Log,
        producer_ids: Arc<ProducerIdManager>,
        groups: GroupCoordinator,
        settings: TxnSettings,
        store: Arc<dyn TxnStore>,
        markers: Arc<dyn MarkerWriter>,
        slots: Option<u32>,
    ) -> TransactionCoordinator {
        let coordinator = TransactionCoordinator {
            inner: Arc::new(Inner {
                log,
                producer_ids,
                groups,
                store,
                markers,
                slots,
                state: Mutex::new(State::default()),
                settings,
                stats: TxnStats::default(),
            }),
        };
        coordinator.spawn_timer();
        coordinator
    }

    /// Loads the ids of `slot` (every id when `None`) and finishes the transactions whose
    /// decision was stored. Returns how many ids were loaded and how many finished.
    async fn load(&self, slot: Option<u32>) -> Result<(usize, usize), LogError> {
        let mut loaded = Vec::new();
        for (id, record) in self.inner.store.load(slot).await? {
            let txn = TxnMetadata::decode(&record).ok_or_else(|| {
                LogError::Storage(crate::log::StoreError::corrupt(format!("transaction record of {id:?}")))
            })?;
            loaded.push((id, txn));
        }
        let preparing: Vec<String> =
            loaded.iter().filter(|(_, txn)| txn.state.is_preparing()).map(|(id, _)| id.clone()).collect();
        let count = loaded.len();
        {
            let mut state = self.inner.state.lock();
            for (id, txn) in loaded {
                state.by_producer.insert(txn.producer_id, id.clone());
                state.txns.insert(id, txn);
            }
            if let Some(slot) = slot {
                state.loaded.insert(slot);
            }
        }
        for id in &preparing {
            let _lock = self.lock(id).await;
            if let Err(error) = self.complete(id).await {
                tracing::warn!(%error, transactional_id = %id, "cannot finish a transaction yet; the timer retries");
            }
        }
        Ok((count, preparing.len()))
    }

    /// In a cluster: starts serving the ids of `slot`, given to this broker, from the store.
    pub async fn load_slot(&self, slot: u32) -> Result<usize, LogError> {
        let (loaded, finished) = self.load(Some(slot)).await?;
        tracing::debug!(slot, transactional_ids = loaded, finished, "transaction slot loaded");
        Ok(loaded)
    }

    /// In a cluster: stops serving the ids of `slot`, which moved away (or is about to).
    pub fn unload_slot(&self, slot: u32) {
        let Some(slots) = self.inner.slots else { return };
        let mut state = self.inner.state.lock();
        state.loaded.remove(&slot);
        let gone: Vec<(String, i64)> = state
            .txns
            .iter()
            .filter(|(id, _)| super::group_slot(id, slots) == slot)
            .map(|(id, txn)| (id.clone(), txn.producer_id))
            .collect();
        for (id, producer_id) in gone {
            state.txns.remove(&id);
            state.locks.remove(&id);
            if state.by_producer.get(&producer_id) == Some(&id) {
                state.by_producer.remove(&producer_id);
            }
        }
    }

    /// Whether this broker serves `id` now: NOT_COORDINATOR when another broker does,
    /// COORDINATOR_LOAD_IN_PROGRESS while its slot is being loaded here.
    fn serves(&self, id: &str) -> Result<(), ResponseError> {
        if !self.inner.store.owns(id) {
            return Err(ResponseError::NotCoordinator);
        }
        match self.inner.slots {
            Some(slots) if !self.inner.state.lock().loaded.contains(&super::group_slot(id, slots)) => {
                Err(ResponseError::CoordinatorLoadInProgress)
            }
            _ => Ok(()),
        }
    }

    pub fn stats(&self) -> &TxnStats {
        &self.inner.stats
    }

    fn get(&self, id: &str) -> Option<TxnMetadata> {
        self.inner.state.lock().txns.get(id).cloned()
    }

    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self.inner.state.lock().locks.entry(id.to_string()).or_default().clone();
        lock.lock_owned().await
    }

    /// Stores `txn` durably, then makes it the id's state.
    async fn store(&self, id: &str, txn: TxnMetadata) -> Result<(), LogError> {
        self.inner.store.write(vec![(id.to_string(), Some(txn.encode()))]).await?;
        let mut state = self.inner.state.lock();
        state.by_producer.insert(txn.producer_id, id.to_string());
        state.txns.insert(id.to_string(), txn);
        Ok(())
    }

    /// InitProducerId with a transactional id: the id's producer at a new epoch, which fences
    /// every older instance; a transaction the previous instance left open is aborted first.
    pub async fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> InitProducerIdResult {
        match self.try_init_producer_id(id, timeout_ms, producer_id, producer_epoch).await {
            Ok((producer_id, producer_epoch)) => InitProducerIdResult { producer_id, producer_epoch, error: 0 },
            Err(error) => InitProducerIdResult { producer_id: -1, producer_epoch: -1, error: error.code() },
        }
    }

    async fn try_init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(i64, i16), ResponseError> {
        self.serves(id)?;
        if timeout_ms <= 0 || timeout_ms > self.inner.settings.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        let _lock = self.lock(id).await;
        let now = now_ms();
        let Some(mut txn) = self.get(id) else {
            let producer_id = self.inner.producer_ids.generate_producer_id().await.map_err(unavailable)?;
            self.store(id, TxnMetadata::new(producer_id, timeout_ms, now)).await.map_err(unavailable)?;
            return Ok((producer_id, 0));
        };
        if producer_id >= 0 {
            // KIP-360: the producer names the id and epoch it has. Our last answer, lost on its
            // way, is answered again; anything but the current epoch is a fenced instance.
            if producer_id == txn.producer_id
                && producer_epoch == txn.last_producer_epoch
                && txn.state == TxnState::Empty
            {
                return Ok((txn.producer_id, txn.producer_epoch));
            }
            if producer_id != txn.producer_id || producer_epoch != txn.producer_epoch {
                return Err(ResponseError::ProducerFenced);
            }
        }
        if txn.state.is_preparing() {
            self.complete(id).await.map_err(|_| ResponseError::ConcurrentTransactions)?;
            txn = self.get(id).ok_or(ResponseError::ConcurrentTransactions)?;
        }
        if txn.state == TxnState::Ongoing {
            txn = self.abort_fenced(id, txn, false).await.map_err(unavailable)?;
        }
        txn.timeout_ms = timeout_ms;
        if !txn.bump_epoch() {
            txn.producer_id = self.inner.producer_ids.generate_producer_id().await.map_err(unavailable)?;
            txn.producer_epoch = 0;
            txn.last_producer_epoch = -1;
        }
        txn.state = TxnState::Empty;
        txn.last_update_ms = now;
        let answer = (txn.producer_id, txn.producer_epoch);
        self.store(id, txn).await.map_err(unavailable)?;
        Ok(answer)
    }

    /// Aborts the transaction in progress at a new epoch, so that the producer that began it
    /// can no longer write or end it (InitProducerId of a new instance, or a timeout). Called
    /// with the id's lock held; returns the completed state.
    async fn abort_fenced(&self, id: &str, mut txn: TxnMetadata, timed_out: bool) -> Result<TxnMetadata, LogError> {
        // An exhausted epoch cannot be bumped: the abort goes out at the current one, and the
        // next InitProducerId moves to a new producer id.
        txn.bump_epoch();
        txn.state = TxnState::PrepareAbort;
        txn.last_update_ms = now_ms();
        self.store(id, txn).await?;
        self.inner.stats.aborts.fetch_add(1, Ordering::Relaxed);
        if timed_out {
            self.inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        self.complete(id).await?;
        self.get(id).ok_or(LogError::Unavailable)
    }

    /// Finishes a decided transaction: a marker in every partition, a commit's offsets into
    /// their groups, then `Complete*` stored. Called with the id's lock held; safe to repeat.
    async fn complete(&self, id: &str) -> Result<(), LogError> {
        let Some(mut txn) = self.get(id) else { return Ok(()) };
        if !txn.state.is_preparing() {
            return Ok(());
        }
        let commit = txn.state == TxnState::PrepareCommit;
        // The groups' offsets end with a marker to each group slot's coordinator, as Kafka's
        // coordinators write one in each partition of `__consumer_offsets` concerned.
        let partitions = txn.held_partitions();
        let marker = MarkerSpec {
            producer_id: txn.producer_id,
            producer_epoch: txn.producer_epoch,
            commit,
            coordinator_epoch: 0,
        };
        let written = self.inner.markers.write(marker, &partitions).await?;
        for result in written {
            match result {
                // Deleted meanwhile (it needs no marker), or a later epoch of the producer already
                // wrote there (its transaction there was ended by that epoch's marker).
                Ok(_) | Err(LogError::UnknownTopicOrPartition | LogError::InvalidProducerEpoch) => {}
                Err(error) => return Err(error),
            }
        }
        crate::failpoint::hit("txn-after-markers");
        // Offsets kept with the transaction by a coordinator of an earlier version.
        if commit {
            let mut by_group: BTreeMap<String, Vec<CommitRequest>> = BTreeMap::new();
            for pending in &txn.pending_offsets {
                by_group.entry(pending.group.clone()).or_default().push(CommitRequest {
                    topic: pending.topic.clone(),
                    partition: pending.partition,
                    offset: pending.offset,
                    leader_epoch: pending.leader_epoch,
                    metadata: pending.metadata.clone(),
                });
            }
            for (group, offsets) in by_group {
                self.inner.groups.commit_transactional(&group, offsets).await?;
            }
        }
        txn.complete(now_ms());
        self.store(id, txn).await
    }

    /// AddPartitionsToTxn: the partitions join the transaction (which begins if none is in
    /// progress). With any partition unknown, nothing is added: that one gets
    /// UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as in Kafka.
    pub async fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<PartitionCodes, ResponseError> {
        self.serves(id)?;
        let _lock = self.lock(id).await;
        let mut txn = self.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        txn.check_producer(producer_id, producer_epoch)?;
        let known = |topic: &str, index: i32| self.inner.log.topic(topic).is_some_and(|t| t.partition(index).is_some());
        if partitions.iter().any(|(topic, index)| !known(topic, *index)) {
            return Ok(partitions
                .into_iter()
                .map(|(topic, index)| {
                    let code = if known(&topic, index) {
                        ResponseError::OperationNotAttempted.code()
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    (topic, index, code)
                })
                .collect());
        }
        let added = txn.state == TxnState::Ongoing && partitions.iter().all(|p| txn.partitions.contains(p));
        if !added {
            txn.begin(now_ms());
            txn.partitions.extend(partitions.iter().cloned());
            self.store(id, txn).await.map_err(unavailable)?;
        }
        Ok(partitions.into_iter().map(|(topic, index)| (topic, index, 0)).collect())
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub async fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
    ) -> Result<(), ResponseError> {
        self.serves(id)?;
        let _lock = self.lock(id).await;
        let mut txn = self.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        txn.check_producer(producer_id, producer_epoch)?;
        if txn.state == TxnState::Ongoing && txn.groups.contains(group) {
            return Ok(());
        }
        txn.begin(now_ms());
        txn.groups.insert(group.to_string());
        self.store(id, txn).await.map_err(unavailable)
    }

    /// TxnOffsetCommit's check, made by the group's coordinator before it keeps the offsets
    /// (until the transaction's marker reaches it): the producer's transaction is in progress
    /// at this epoch. Where another broker coordinates the id, it is asked whether the
    /// transaction holds the group's slot (AddOffsetsToTxn added it), as Kafka's group
    /// coordinators verify TxnOffsetCommit since KIP-890.
    pub async fn verify_offsets(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group: &str,
    ) -> Result<(), ResponseError> {
        match self.serves(id) {
            Ok(()) => return self.check_offsets(id, producer_id, producer_epoch),
            Err(ResponseError::CoordinatorLoadInProgress) => return Err(ResponseError::CoordinatorLoadInProgress),
            Err(_) => {}
        }
        let slot = group_slot(group, GROUP_SLOTS) as i32;
        match self.inner.markers.verify(id, producer_id, producer_epoch, OFFSETS_TOPIC, slot).await {
            Ok(()) => Ok(()),
            Err(LogError::InvalidTxnState) => Err(ResponseError::InvalidTxnState),
            Err(LogError::InvalidProducerEpoch) => Err(ResponseError::ProducerFenced),
            // Retriable: the coordinator could not be asked yet.
            Err(_) => Err(ResponseError::CoordinatorLoadInProgress),
        }
    }

    fn check_offsets(&self, id: &str, producer_id: i64, producer_epoch: i16) -> Result<(), ResponseError> {
        let txn = self.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        txn.check_producer(producer_id, producer_epoch)?;
        match txn.state {
            TxnState::Ongoing => Ok(()),
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// EndTxn: commits or aborts the transaction in progress. Answered once the decision is
    /// durable and, unless writing them failed (then the timer finishes), its markers written.
    pub async fn end_txn(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), ResponseError> {
        self.serves(id)?;
        let _lock = self.lock(id).await;
        let mut txn = self.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        if producer_id != txn.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if producer_epoch != txn.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        match (txn.state, commit) {
            (TxnState::Ongoing, _) => {}
            // A retry of an EndTxn whose answer was lost.
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return self.complete(id).await.map_err(|_| ResponseError::ConcurrentTransactions);
            }
            (TxnState::PrepareCommit | TxnState::PrepareAbort, _) => return Err(ResponseError::ConcurrentTransactions),
            _ => return Err(ResponseError::InvalidTxnState),
        }
        txn.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
        txn.last_update_ms = now_ms();
        self.store(id, txn).await.map_err(unavailable)?;
        let counter = if commit { &self.inner.stats.commits } else { &self.inner.stats.aborts };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::failpoint::hit("txn-after-prepare");
        if let Err(error) = self.complete(id).await {
            tracing::warn!(%error, transactional_id = %id, "transaction decided, markers not all written; the timer retries");
        }
        Ok(())
    }

    /// KIP-890's check of a transactional write, made before it is appended: the producer's
    /// transaction is in progress at this epoch and holds the partition. A write that fails it
    /// (a zombie, or a late retry after the transaction ended) would hold the partition's last
    /// stable offset back for ever.
    ///
    /// In a cluster, a leader that does not coordinate the id asks its coordinator
    /// (AddPartitionsToTxn v4, verify only, as Kafka's leaders do) when the write would begin a
    /// transaction on the partition; a write that continues one open there at this epoch, with
    /// no marker on its way to end it, was checked when it began it.
    pub async fn verify_write(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: &crate::log::Partition,
    ) -> Result<(), LogError> {
        match self.serves(id) {
            Ok(()) => return self.check_write(producer_id, producer_epoch, topic, partition.index),
            // Retriable: the client sends the batch again, as Kafka's leaders answer a
            // verification that could not be made.
            Err(ResponseError::CoordinatorLoadInProgress) => return Err(LogError::NotEnoughReplicas),
            Err(_) => {}
        }
        if partition.transaction_continues(producer_id, producer_epoch) {
            return Ok(());
        }
        self.inner.markers.verify(id, producer_id, producer_epoch, topic, partition.index).await
    }

    /// AddPartitionsToTxn's verify-only form (v4, what a partition's leader sends the id's
    /// coordinator): each partition's `check_write` answer, or one error for all.
    pub fn verify(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        self.serves(id)?;
        let txn = self.get(id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        if txn.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        Ok(partitions
            .iter()
            .map(|(topic, index)| match self.check_write(producer_id, producer_epoch, topic, *index) {
                Ok(()) => 0,
                Err(error) => error.code(),
            })
            .collect())
    }

    /// `verify_write` for an id this broker coordinates.
    fn check_write(&self, producer_id: i64, producer_epoch: i16, topic: &str, partition: i32) -> Result<(), LogError> {
        let state = self.inner.state.lock();
        let txn = state.by_producer.get(&producer_id).and_then(|id| state.txns.get(id));
        let Some(txn) = txn.filter(|txn| txn.producer_id == producer_id) else {
            return Err(LogError::InvalidTxnState);
        };
        if producer_epoch < txn.producer_epoch {
            return Err(LogError::InvalidProducerEpoch);
        }
        // A group slot is held through the groups whose offsets the transaction sends.
        let holds = match topic == OFFSETS_TOPIC {
            true => txn.groups.iter().any(|group| group_slot(group, GROUP_SLOTS) as i32 == partition),
            false => txn.partitions.contains(&(topic.to_string(), partition)),
        };
        if producer_epoch != txn.producer_epoch || txn.state != TxnState::Ongoing || !holds {
            return Err(LogError::InvalidTxnState);
        }
        Ok(())
    }

    /// Every transactional id with its state (DescribeTransactions, ListTransactions, the views).
    pub fn list(&self) -> Vec<(String, TxnMetadata)> {
        let state = self.inner.state.lock();
        let mut all: Vec<_> = state.txns.iter().map(|(id, txn)| (id.clone(), txn.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The id's state, if this broker coordinates it.
    pub fn describe(&self, id: &str) -> Result<Option<TxnMetadata>, ResponseError> {
        self.serves(id)?;
        Ok(self.get(id))
    }

    /// Transactions in progress now.
    pub fn open_count(&self) -> usize {
        self.inner.state.lock().txns.values().filter(|txn| txn.state == TxnState::Ongoing).count()
    }

    fn spawn_timer(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = Duration::from_millis(self.inner.settings.abort_check_interval_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(inner) = weak.upgrade() else { return };
                TransactionCoordinator { inner }.tick().await;
            }
        });
    }

    /// Aborts transactions left open on a partition that no transaction in progress accounts
    /// for (a write that reached the partition after its transaction ended): otherwise the
    /// partition's last stable offset would stay behind it for ever. A transaction is aborted
    /// only when two passes in a row find it hanging, so a transaction that ends between reading
    /// the partition and reading the coordinator is left alone.
    async fn abort_hanging(&self) {
        if !self.inner.markers.sees_every_transaction() {
            return;
        }
        let mut found = BTreeSet::new();
        for topic in self.inner.log.topics() {
            for partition in &topic.partitions {
                for open in partition.open_transactions() {
                    let accounted = {
                        let state = self.inner.state.lock();
                        let txn = state.by_producer.get(&open.producer_id).and_then(|id| state.txns.get(id));
                        txn.is_some_and(|txn| {
                            txn.producer_id == open.producer_id
                                && (txn.state.is_preparing()
                                    || txn.state == TxnState::Ongoing
                                        && txn.partitions.contains(&(topic.name.clone(), partition.index)))
                        })
                    };
                    if !accounted {
                        found.insert((topic.name.clone(), partition.index, open.producer_id, open.first_offset));
                    }
                }
            }
        }
        let confirmed: Vec<_> = {
            let mut state = self.inner.state.lock();
            let confirmed = found.intersection(&state.hanging).cloned().collect();
            state.hanging = found;
            confirmed
        };
        for (topic, index, producer_id, first_offset) in confirmed {
            let Some(partition) = self.inner.log.topic(&topic).and_then(|t| t.partition(index).cloned()) else {
                continue;
            };
            let Some(open) = partition.open_transactions().into_iter().find(|o| o.producer_id == producer_id) else {
                continue;
            };
            tracing::warn!(%topic, partition = index, producer_id, first_offset, "aborting a hanging transaction");
            match self.inner.log.write_markers(vec![partition], producer_id, open.producer_epoch, false, 0).await {
                Ok(results) => {
                    if let Some(Err(error)) = results.into_iter().next() {
                        tracing::warn!(%error, %topic, partition = index, "cannot abort a hanging transaction");
                    } else {
                        self.inner.stats.hanging_aborted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(error) => tracing::warn!(%error, %topic, partition = index, "cannot abort a hanging transaction"),
            }
        }
    }

    /// One pass of the timer: aborts transactions past their timeout, finishes decided ones
    /// whose markers failed, forgets ids idle past `transactional.id.expiration.ms`, aborts
    /// hanging transactions.
    async fn tick(&self) {
        self.abort_hanging().await;
        let now = now_ms();
        let expiration_ms = self.inner.settings.id_expiration_ms;
        let due: Vec<(String, TxnState)> = {
            let state = self.inner.state.lock();
            state
                .txns
                .iter()
                .filter(|(_, txn)| txn.timed_out(now) || txn.state.is_preparing() || txn.expired(now, expiration_ms))
                .map(|(id, txn)| (id.clone(), txn.state))
                .collect()
        };
        for (id, _) in due {
            let _lock = self.lock(&id).await;
            let Some(txn) = self.get(&id) else { continue };
            let result = if txn.timed_out(now) {
                tracing::info!(transactional_id = %id, producer_id = txn.producer_id, "aborting a transaction past its timeout");
                self.abort_fenced(&id, txn, true).await.map(|_| ())
            } else if txn.state.is_preparing() {
                self.complete(&id).await
            } else if txn.expired(now, expiration_ms) {
                self.forget(&id, txn.producer_id).await
            } else {
                Ok(())
            };
            if let Err(error) = result {
                tracing::warn!(%error, transactional_id = %id, "transaction coordinator timer");
            }
        }
    }

    async fn forget(&self, id: &str, producer_id: i64) -> Result<(), LogError> {
        self.inner.store.write(vec![(id.to_string(), None)]).await?;
        let mut state = self.inner.state.lock();
        state.txns.remove(id);
        state.by_producer.remove(&producer_id);
        state.locks.remove(id);
        Ok(())
    }
}

/// A store failure, as the retriable error a transactional client waits out.
fn unavailable(error: LogError) -> ResponseError {
    tracing::warn!(%error, "transaction coordinator store");
    ResponseError::CoordinatorNotAvailable
}
