//! Idempotent producer state per partition (Kafka's `ProducerStateManager`): the epoch and the last
//! five batches of each producer, so retries are answered with their original offsets, and the
//! first offset of the producer's open transaction, which holds the last stable offset back.

use std::collections::VecDeque;

use bytes::{Buf, BufMut};

/// Batches remembered per producer and partition, as in Kafka (and librdkafka's in-flight limit).
pub const BATCHES_REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSequence {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchSequence>,
    /// The offset of the producer's first batch in its open transaction on this partition
    /// (Kafka's `currentTxnFirstOffset`); `None` outside a transaction. A marker closes it.
    pub txn_first_offset: Option<i64>,
    /// The largest timestamp of the producer's last batch or marker here (-1: not known, an
    /// entry stored before this was kept): DescribeProducers' `last_timestamp`.
    pub last_timestamp: i64,
    /// The coordinator epoch of the producer's last marker here (-1: none yet).
    pub coordinator_epoch: i32,
}

/// What a new idempotent batch is, relative to what the producer wrote before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Next,
    /// A retry of a batch already in the log at this base offset.
    Duplicate(i64),
    OutOfOrder,
    FencedEpoch,
}

/// Checks a batch from `(epoch, first, last)` against the producer's entry, as Kafka does. A
/// producer the partition has no state for may start at any sequence (KIP-360): its state may
/// have expired, been deleted with the records, or (after a takeover) never reached this broker.
pub fn check(entry: Option<&ProducerEntry>, epoch: i16, first_sequence: i32, last_sequence: i32) -> SequenceCheck {
    let Some(entry) = entry else {
        return SequenceCheck::Next;
    };
    if epoch < entry.epoch {
        return SequenceCheck::FencedEpoch;
    }
    if epoch > entry.epoch {
        return if first_sequence == 0 { SequenceCheck::Next } else { SequenceCheck::OutOfOrder };
    }
    if let Some(seen) =
        entry.batches.iter().find(|b| b.first_sequence == first_sequence && b.last_sequence == last_sequence)
    {
        return SequenceCheck::Duplicate(seen.base_offset);
    }
    let expected = match entry.batches.back() {
        Some(last) if last.last_sequence == i32::MAX => 0,
        Some(last) => last.last_sequence + 1,
        None => 0,
    };
    if first_sequence == expected { SequenceCheck::Next } else { SequenceCheck::OutOfOrder }
}

impl ProducerEntry {
    /// Records an appended batch, starting afresh when the epoch moved on.
    pub fn record(entry: Option<ProducerEntry>, epoch: i16, batch: BatchSequence) -> ProducerEntry {
        // An open transaction outlives an epoch change: only its marker closes it, and the
        // coordinator writes one before it hands out a new epoch.
        let mut entry = match entry {
            Some(entry) if entry.epoch == epoch => entry,
            Some(older) => ProducerEntry { epoch, batches: VecDeque::with_capacity(BATCHES_REMEMBERED), ..older },
            None => ProducerEntry::empty(epoch),
        };
        if entry.batches.len() == BATCHES_REMEMBERED {
            entry.batches.pop_front();
        }
        entry.batches.push_back(batch);
        entry
    }

    /// The entry without the batches at or after `offset` (a log cut back there); `None` when
    /// none is left.
    pub fn before(&self, offset: i64) -> Option<ProducerEntry> {
        let batches: VecDeque<BatchSequence> =
            self.batches.iter().copied().filter(|b| b.base_offset < offset).collect();
        let txn_first_offset = self.txn_first_offset.filter(|&first| first < offset);
        (!batches.is_empty() || txn_first_offset.is_some()).then_some(ProducerEntry {
            epoch: self.epoch,
            batches,
            txn_first_offset,
            last_timestamp: self.last_timestamp,
            coordinator_epoch: self.coordinator_epoch,
        })
    }

    /// The entry of a producer first seen here, before its first batch or marker is recorded.
    pub fn empty(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            txn_first_offset: None,
            last_timestamp: -1,
            coordinator_epoch: -1,
        }
    }

    /// The last sequence the producer wrote here (-1: none remembered).
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |batch| batch.last_sequence)
    }

    /// `epoch`, the batch count, the batches, the open transaction's first offset (-1: none),
    /// then the last timestamp and the coordinator epoch.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(23 + self.batches.len() * 16);
        out.put_i16(self.epoch);
        out.put_u8(self.batches.len() as u8);
        for batch in &self.batches {
            out.put_i32(batch.first_sequence);
            out.put_i32(batch.last_sequence);
            out.put_i64(batch.base_offset);
        }
        out.put_i64(self.txn_first_offset.unwrap_or(-1));
        out.put_i64(self.last_timestamp);
        out.put_i32(self.coordinator_epoch);
        out
    }

    /// Reads what `encode` wrote; entries stored before transactions existed end after their
    /// batches, and those stored before DescribeProducers after the transaction's first offset.
    pub fn decode(mut bytes: &[u8]) -> Option<ProducerEntry> {
        if bytes.len() < 3 {
            return None;
        }
        let epoch = bytes.get_i16();
        let count = usize::from(bytes.get_u8());
        let extra = bytes.len().checked_sub(count * 16)?;
        if count > BATCHES_REMEMBERED || !matches!(extra, 0 | 8 | 20) {
            return None;
        }
        let batches = (0..count)
            .map(|_| BatchSequence {
                first_sequence: bytes.get_i32(),
                last_sequence: bytes.get_i32(),
                base_offset: bytes.get_i64(),
            })
            .collect();
        let txn_first_offset = if extra >= 8 { Some(bytes.get_i64()).filter(|&o| o >= 0) } else { None };
        let (last_timestamp, coordinator_epoch) =
            if extra == 20 { (bytes.get_i64(), bytes.get_i32()) } else { (-1, -1) };
        Some(ProducerEntry { epoch, batches, txn_first_offset, last_timestamp, coordinator_epoch })
    }
}

/// The producers of a partition as of an offset, in one blob (Kafka's producer snapshot): for
/// each, its id, the length of its entry, and the entry as [`ProducerEntry::encode`] writes it.
pub fn encode_snapshot(producers: &[(i64, ProducerEntry)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (producer_id, entry) in producers {
        let encoded = entry.encode();
        out.put_i64(*producer_id);
        out.put_u16(encoded.len() as u16);
        out.extend_from_slice(&encoded);
    }
    out
}

/// Reads what [`encode_snapshot`] wrote; `None` if it is corrupt.
pub fn decode_snapshot(mut bytes: &[u8]) -> Option<Vec<(i64, ProducerEntry)>> {
    let mut producers = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 10 {
            return None;
        }
        let producer_id = bytes.get_i64();
        let length = usize::from(bytes.get_u16());
        let entry = ProducerEntry::decode(bytes.get(..length)?)?;
        bytes.advance(length);
        producers.push((producer_id, entry));
    }
    Some(producers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_after(batches: &[(i32, i32, i64)]) -> ProducerEntry {
        let mut entry = None;
        for &(first_sequence, last_sequence, base_offset) in batches {
            entry = Some(ProducerEntry::record(entry, 0, BatchSequence { first_sequence, last_sequence, base_offset }));
        }
        entry.expect("at least one batch")
    }

    #[test]
    fn sequences_must_follow_on() {
        assert_eq!(check(None, 0, 0, 4), SequenceCheck::Next);
        assert_eq!(check(None, 0, 5, 9), SequenceCheck::Next, "no state: any sequence starts");
        let entry = entry_after(&[(0, 4, 100), (5, 9, 105)]);
        assert_eq!(check(Some(&entry), 0, 10, 12), SequenceCheck::Next);
        assert_eq!(check(Some(&entry), 0, 11, 12), SequenceCheck::OutOfOrder);
        assert_eq!(check(Some(&entry), 0, 0, 4), SequenceCheck::Duplicate(100));
        assert_eq!(check(Some(&entry), 1, 0, 0), SequenceCheck::Next);
        assert_eq!(check(Some(&entry), 1, 10, 10), SequenceCheck::OutOfOrder);
    }

    #[test]
    fn older_epochs_are_fenced_and_only_five_batches_are_kept() {
        let entry = entry_after(&[(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4), (5, 5, 5)]);
        assert_eq!(entry.batches.len(), BATCHES_REMEMBERED);
        assert_eq!(check(Some(&entry), 0, 0, 0), SequenceCheck::OutOfOrder);
        assert_eq!(check(Some(&entry), 0, 1, 1), SequenceCheck::Duplicate(1));
        assert_eq!(check(Some(&entry), -1, 6, 6), SequenceCheck::FencedEpoch);
        assert_eq!(ProducerEntry::decode(&entry.encode()), Some(entry.clone()));
        let in_txn = ProducerEntry { txn_first_offset: Some(3), ..entry.clone() };
        assert_eq!(ProducerEntry::decode(&in_txn.encode()), Some(in_txn.clone()));
        let stamped = ProducerEntry { last_timestamp: 1_700_000_000_000, coordinator_epoch: 4, ..in_txn.clone() };
        assert_eq!(ProducerEntry::decode(&stamped.encode()), Some(stamped.clone()));
        // Entries stored before DescribeProducers (no timestamp, no coordinator epoch) and
        // before transactions (no first offset either).
        let encoded = stamped.encode();
        let older = ProducerEntry::decode(&encoded[..encoded.len() - 12]).expect("decodes");
        assert_eq!((older.txn_first_offset, older.last_timestamp, older.coordinator_epoch), (Some(3), -1, -1));
        let old = &entry.encode()[..entry.encode().len() - 20];
        assert_eq!(ProducerEntry::decode(old), Some(entry));
        assert_eq!(in_txn.before(3).and_then(|e| e.txn_first_offset), None, "a cut at its start ends it");
    }

    #[test]
    fn snapshots_round_trip_and_refuse_truncation() {
        let first = entry_after(&[(0, 4, 100), (5, 9, 105)]);
        let second = ProducerEntry { txn_first_offset: Some(7), last_timestamp: 9, ..entry_after(&[(0, 0, 7)]) };
        let producers = vec![(3, first), (1_000_000_000_000, second)];
        let snapshot = encode_snapshot(&producers);
        assert_eq!(decode_snapshot(&snapshot), Some(producers));
        assert_eq!(decode_snapshot(&[]), Some(Vec::new()));
        assert_eq!(decode_snapshot(&snapshot[..snapshot.len() - 1]), None);
    }

    #[test]
    fn sequences_wrap_at_int_max() {
        let entry = entry_after(&[(i32::MAX - 1, i32::MAX, 7)]);
        assert_eq!(check(Some(&entry), 0, 0, 3), SequenceCheck::Next);
    }
}
