//! A transactional id's state (Kafka's `TransactionMetadata`): pure data and the checks every
//! transaction API makes, time passed in. The coordinator stores it (JSON) before it answers.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

/// Kafka's `TransactionState`, as DescribeTransactions and ListTransactions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction in progress (a fresh id, or after an epoch bump).
    Empty,
    /// Partitions or offsets were added: records may be written.
    Ongoing,
    /// Decided to commit; markers are being written.
    PrepareCommit,
    /// Decided to abort; markers are being written.
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Markers are being written: the id takes no new work until they are.
    pub fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset a transaction commits for a group (TxnOffsetCommit), visible once it commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, so that a retried InitProducerId is recognised (KIP-360).
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the transaction in progress (or being completed).
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    pub pending_offsets: Vec<PendingOffset>,
    /// When the transaction in progress began (its first AddPartitionsToTxn or AddOffsetsToTxn).
    pub start_ms: i64,
    pub last_update_ms: i64,
}

/// Why a request about a transaction was refused.
pub type Refusal = ResponseError;

impl TxnMetadata {
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> Self {
        TxnMetadata {
            producer_id,
            producer_epoch: 0,
            last_producer_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            pending_offsets: Vec::new(),
            start_ms: -1,
            last_update_ms: now_ms,
        }
    }

    /// The check of AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn: the producer
    /// id must be this id's and the epoch its current one (an older epoch is a fenced zombie).
    pub fn check_producer(&self, producer_id: i64, producer_epoch: i16) -> Result<(), Refusal> {
        if producer_id != self.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if producer_epoch != self.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if self.state.is_preparing() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(())
    }

    /// Every partition the transaction holds: its topics' partitions, and for the groups whose
    /// offsets it sends, their slots as partitions of `__consumer_offsets`, as Kafka lists them
    /// (and writes a marker to each).
    pub fn held_partitions(&self) -> Vec<(String, i32)> {
        use crate::coordinator::group::{GROUP_SLOTS, OFFSETS_TOPIC, group_slot};
        let slots: BTreeSet<i32> = self.groups.iter().map(|group| group_slot(group, GROUP_SLOTS) as i32).collect();
        self.partitions.iter().cloned().chain(slots.into_iter().map(|slot| (OFFSETS_TOPIC.to_string(), slot))).collect()
    }

    /// Begins a transaction if none is in progress (adding partitions or offsets does).
    pub fn begin(&mut self, now_ms: i64) {
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.partitions.clear();
            self.groups.clear();
            self.pending_offsets.clear();
            self.start_ms = now_ms;
        }
        self.last_update_ms = now_ms;
    }

    /// The next epoch of the producer (a new id at epoch 0 when the epoch is exhausted: `None`).
    pub fn bump_epoch(&mut self) -> bool {
        if self.producer_epoch >= i16::MAX - 1 {
            return false;
        }
        self.last_producer_epoch = self.producer_epoch;
        self.producer_epoch += 1;
        true
    }

    /// Whether the transaction in progress has outlived its timeout at `now_ms`.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.state == TxnState::Ongoing && self.start_ms + i64::from(self.timeout_ms) < now_ms
    }

    /// Whether the id may be forgotten: no transaction in progress and idle for `expiration_ms`.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        matches!(self.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort)
            && self.last_update_ms.saturating_add(expiration_ms) < now_ms
    }

    /// Ends the transaction: `Prepare*` to `Complete*`, its partitions and offsets forgotten.
    pub fn complete(&mut self, now_ms: i64) {
        self.state = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => other,
        };
        self.partitions.clear();
        self.groups.clear();
        self.pending_offsets.clear();
        self.last_update_ms = now_ms;
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("transaction metadata serialises")
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_epoch_is_fenced_and_a_foreign_id_refused() {
        let mut txn = TxnMetadata::new(7, 60_000, 0);
        assert!(txn.bump_epoch());
        assert_eq!(txn.check_producer(7, 1), Ok(()));
        assert_eq!(txn.check_producer(7, 0), Err(ResponseError::ProducerFenced));
        assert_eq!(txn.check_producer(8, 1), Err(ResponseError::InvalidProducerIdMapping));
        txn.state = TxnState::PrepareCommit;
        assert_eq!(txn.check_producer(7, 1), Err(ResponseError::ConcurrentTransactions));
    }

    #[test]
    fn a_transaction_times_out_after_its_timeout_and_completes_clean() {
        let mut txn = TxnMetadata::new(7, 1_000, 0);
        txn.begin(10);
        txn.partitions.insert(("t".into(), 0));
        assert!(!txn.timed_out(1_010));
        assert!(txn.timed_out(1_011));
        txn.state = TxnState::PrepareAbort;
        txn.complete(2_000);
        assert_eq!(txn.state, TxnState::CompleteAbort);
        assert!(txn.partitions.is_empty());
        assert!(!txn.expired(2_000 + 500, 1_000) && txn.expired(3_001, 1_000));
        assert_eq!(TxnMetadata::decode(&txn.encode()), Some(txn));
    }

    #[test]
    fn an_exhausted_epoch_does_not_bump() {
        let mut txn = TxnMetadata::new(7, 1_000, 0);
        txn.producer_epoch = i16::MAX - 1;
        assert!(!txn.bump_epoch());
    }
}
