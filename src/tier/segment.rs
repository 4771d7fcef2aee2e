//! The object layout and the segment format.
//!
//! Everything in the object store is self-describing, so a broker with an empty data directory
//! can rebuild its topics from a listing (see docs/tiering.md):
//! - `meta/topics/<topic id>/<version, 10 digits>.json`: the topic's name, id, partition count and
//!   configs; a new version is written on every change and the older ones are then deleted.
//! - `data/<topic id>/<partition>/<base offset, 20 digits>_<next offset, 20 digits>_<max timestamp>.batches`:
//!   one segment, the partition's record batches from `base` up to (not including) `next` exactly
//!   as the log stores them (Kafka's on-disk batch format), concatenated. The name carries what
//!   the remote index needs, so recovery lists and never reads.
//! - `data/<topic id>/<partition>/<same name>.aborted`: beside a segment that holds abort
//!   markers or ends inside a transaction, its transactions (Kafka's transaction index of a
//!   remote segment, and more): JSON, `{"aborted": [{"producer_id", "first_offset",
//!   "last_offset"}], "unresolved": [{"producer_id", "producer_epoch", "first_offset"}]}`.
//!   `aborted` are the transactions its abort markers abort (`last_offset` the marker's offset,
//!   in the segment); `unresolved` those with records up to its end and no marker before it
//!   (open, or ended by a marker after it), which a broker rebuilt from the bucket aborts when
//!   this is its last segment. Objects written before `unresolved` existed are the bare
//!   `aborted` array. It is stored before its segment, so a segment without one aborts nothing.

use bytes::Bytes;
use uuid::Uuid;

use crate::log::batch::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};
pub use crate::log::remote_index::SegmentInfo;
use crate::log::{AbortedTxn, OpenTxn};

pub const SEGMENT_SUFFIX: &str = ".batches";
pub const ABORTED_SUFFIX: &str = ".aborted";

pub fn partition_prefix(topic_id: Uuid, partition: i32) -> String {
    format!("data/{topic_id}/{partition}/")
}

pub fn topic_data_prefix(topic_id: Uuid) -> String {
    format!("data/{topic_id}/")
}

pub fn segment_key(topic_id: Uuid, partition: i32, segment: &SegmentInfo) -> String {
    format!(
        "{}{:020}_{:020}_{}{SEGMENT_SUFFIX}",
        partition_prefix(topic_id, partition),
        segment.base_offset,
        segment.next_offset,
        segment.max_timestamp
    )
}

/// The key of the aborted transactions stored beside a segment.
pub fn aborted_key(topic_id: Uuid, partition: i32, segment: &SegmentInfo) -> String {
    let key = segment_key(topic_id, partition, segment);
    format!("{}{ABORTED_SUFFIX}", key.strip_suffix(SEGMENT_SUFFIX).unwrap_or(&key))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AbortedEntry {
    producer_id: i64,
    first_offset: i64,
    last_offset: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UnresolvedEntry {
    producer_id: i64,
    producer_epoch: i16,
    first_offset: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TxnsEntry {
    aborted: Vec<AbortedEntry>,
    #[serde(default)]
    unresolved: Vec<UnresolvedEntry>,
}

/// What a segment's `.aborted` object says: the transactions its abort markers abort, and those
/// unresolved at its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentTxns {
    pub aborted: Vec<AbortedTxn>,
    pub unresolved: Vec<OpenTxn>,
}

impl SegmentTxns {
    pub fn is_empty(&self) -> bool {
        self.aborted.is_empty() && self.unresolved.is_empty()
    }
}

/// The body of a segment's `.aborted` object.
pub fn encode_txns(txns: &SegmentTxns) -> Bytes {
    let entry = TxnsEntry {
        aborted: txns
            .aborted
            .iter()
            .map(|t| AbortedEntry {
                producer_id: t.producer_id,
                first_offset: t.first_offset,
                last_offset: t.last_offset,
            })
            .collect(),
        unresolved: txns
            .unresolved
            .iter()
            .map(|t| UnresolvedEntry {
                producer_id: t.producer_id,
                producer_epoch: t.producer_epoch,
                first_offset: t.first_offset,
            })
            .collect(),
    };
    Bytes::from(serde_json::to_vec(&entry).unwrap_or_default())
}

/// Parses a segment's `.aborted` object (or the bare array of older ones), checked against the
/// segment: every marker in it, no transaction ending before it begins, every unresolved one
/// beginning before its end.
pub fn decode_txns(body: &[u8], segment: &SegmentInfo) -> Result<SegmentTxns, CorruptSegment> {
    let corrupt = |e: serde_json::Error| CorruptSegment(format!("aborted transactions: {e}"));
    let entry: TxnsEntry = match serde_json::from_slice::<Vec<AbortedEntry>>(body) {
        Ok(aborted) => TxnsEntry { aborted, unresolved: Vec::new() },
        Err(_) => serde_json::from_slice(body).map_err(corrupt)?,
    };
    let mut unresolved = Vec::with_capacity(entry.unresolved.len());
    for e in entry.unresolved {
        if e.first_offset < 0 || e.first_offset >= segment.next_offset {
            return Err(CorruptSegment(format!(
                "unresolved transaction from {} of producer {} does not begin before the end of segment {}..{}",
                e.first_offset, e.producer_id, segment.base_offset, segment.next_offset
            )));
        }
        unresolved.push(OpenTxn {
            producer_id: e.producer_id,
            producer_epoch: e.producer_epoch,
            first_offset: e.first_offset,
        });
    }
    let aborted = entry
        .aborted
        .into_iter()
        .map(|e| {
            let inside = (segment.base_offset..segment.next_offset).contains(&e.last_offset);
            if !inside || e.first_offset > e.last_offset || e.first_offset < 0 {
                return Err(CorruptSegment(format!(
                    "aborted transaction {}..={} of producer {} is not one of segment {}..{}",
                    e.first_offset, e.last_offset, e.producer_id, segment.base_offset, segment.next_offset
                )));
            }
            Ok(AbortedTxn { producer_id: e.producer_id, first_offset: e.first_offset, last_offset: e.last_offset })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SegmentTxns { aborted, unresolved })
}

/// Parses a segment's key back into its index entry (the size comes from the listing).
pub fn parse_segment_key(key: &str, size_bytes: u64) -> Option<(Uuid, i32, SegmentInfo)> {
    let rest = key.strip_prefix("data/")?;
    let mut parts = rest.splitn(3, '/');
    let topic_id = Uuid::parse_str(parts.next()?).ok()?;
    let partition: i32 = parts.next()?.parse().ok()?;
    let name = parts.next()?.strip_suffix(SEGMENT_SUFFIX)?;
    let mut fields = name.splitn(3, '_');
    let base_offset: i64 = fields.next()?.parse().ok()?;
    let next_offset: i64 = fields.next()?.parse().ok()?;
    let max_timestamp: i64 = fields.next()?.parse().ok()?;
    if partition < 0 || base_offset < 0 || next_offset <= base_offset {
        return None;
    }
    Some((topic_id, partition, SegmentInfo { base_offset, next_offset, max_timestamp, size_bytes }))
}

pub const TOPIC_META_PREFIX: &str = "meta/topics/";

pub fn topic_meta_key(topic_id: Uuid, version: u64) -> String {
    format!("{TOPIC_META_PREFIX}{topic_id}/{version:010}.json")
}

pub fn parse_topic_meta_key(key: &str) -> Option<(Uuid, u64)> {
    let rest = key.strip_prefix(TOPIC_META_PREFIX)?;
    let (id, file) = rest.split_once('/')?;
    Some((Uuid::parse_str(id).ok()?, file.strip_suffix(".json")?.parse().ok()?))
}

/// Where one batch sits in a segment.
#[derive(Debug, Clone, Copy)]
pub struct BatchPosition {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub start: usize,
    pub end: usize,
}

/// A segment's bytes with the position of every batch, checked batch by batch.
#[derive(Debug)]
pub struct Segment {
    pub bytes: Bytes,
    pub batches: Vec<BatchPosition>,
}

#[derive(Debug, thiserror::Error)]
#[error("segment is corrupt: {0}")]
pub struct CorruptSegment(pub String);

impl Segment {
    /// Parses and checks a segment: whole batches, CRCs intact, offsets rising, and the offsets and
    /// max timestamp its name gives.
    pub fn parse(bytes: Bytes, info: &SegmentInfo) -> Result<Segment, CorruptSegment> {
        let segment = Segment::scan(bytes)?;
        let found = segment.info().map(|i| (i.base_offset, i.next_offset, i.max_timestamp));
        if found != Some((info.base_offset, info.next_offset, info.max_timestamp)) {
            return Err(CorruptSegment(format!(
                "holds (base, next, max timestamp) {found:?}, its name says ({}, {}, {})",
                info.base_offset, info.next_offset, info.max_timestamp
            )));
        }
        Ok(segment)
    }

    /// What the index needs to know of this segment: offsets, max timestamp, size.
    pub fn info(&self) -> Option<SegmentInfo> {
        let (first, last) = (self.batches.first()?, self.batches.last()?);
        Some(SegmentInfo {
            base_offset: first.base_offset,
            next_offset: last.last_offset + 1,
            max_timestamp: self.batches.iter().map(|b| b.max_timestamp).max().unwrap_or(-1),
            size_bytes: self.bytes.len() as u64,
        })
    }

    /// Parses and checks concatenated batches: whole, CRCs intact, offsets rising.
    pub fn scan(bytes: Bytes) -> Result<Segment, CorruptSegment> {
        let mut batches = Vec::new();
        let mut at = 0;
        let mut expected = i64::MIN;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let header =
                BatchHeader::parse(rest).map_err(|_| CorruptSegment(format!("truncated batch at byte {at}")))?;
            let size = header.size_bytes();
            if header.batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 || size > rest.len() {
                return Err(CorruptSegment(format!("batch at byte {at} runs past the end")));
            }
            if !header.crc_matches(&rest[..size]) {
                return Err(CorruptSegment(format!("batch at offset {} fails its CRC", header.base_offset)));
            }
            if header.base_offset < expected || header.last_offset() < header.base_offset {
                return Err(CorruptSegment(format!("batch at offset {} is out of order", header.base_offset)));
            }
            expected = header.last_offset() + 1;
            batches.push(BatchPosition {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                max_timestamp: header.max_timestamp,
                start: at,
                end: at + size,
            });
            at += size;
        }
        if batches.is_empty() {
            return Err(CorruptSegment("holds no batch".into()));
        }
        Ok(Segment { bytes, batches })
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (the first always, when
    /// `at_least_one`); a slice of the segment, not a copy.
    pub fn read(&self, offset: i64, max_bytes: usize, at_least_one: bool) -> Bytes {
        let first = self.batches.partition_point(|b| b.last_offset < offset);
        let Some(start) = self.batches.get(first).map(|b| b.start) else {
            return Bytes::new();
        };
        let mut end = start;
        for batch in &self.batches[first..] {
            if batch.end - start > max_bytes && !(end == start && at_least_one) {
                break;
            }
            end = batch.end;
        }
        self.bytes.slice(start..end)
    }

    /// The first batch at or after `offset` whose max timestamp reaches `timestamp_ms`.
    pub fn batch_reaching(&self, offset: i64, timestamp_ms: i64) -> Option<Bytes> {
        self.batches
            .iter()
            .find(|b| b.last_offset >= offset && b.max_timestamp >= timestamp_ms)
            .map(|b| self.bytes.slice(b.start..b.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_round_trip() {
        let id = Uuid::new_v4();
        let info = SegmentInfo { base_offset: 100, next_offset: 250, max_timestamp: -1, size_bytes: 9 };
        let key = segment_key(id, 3, &info);
        assert!(key.starts_with(&partition_prefix(id, 3)));
        assert_eq!(parse_segment_key(&key, 9), Some((id, 3, info)));
        assert_eq!(SegmentInfo::decode_value(100, &info.encode_value()), Some(info));
        assert_eq!(parse_segment_key("data/x/0/1_2_3.batches", 1), None);
        assert_eq!(parse_topic_meta_key(&topic_meta_key(id, 7)), Some((id, 7)));
        let aborted = aborted_key(id, 3, &info);
        assert_eq!(aborted.strip_suffix(ABORTED_SUFFIX), key.strip_suffix(SEGMENT_SUFFIX));
        assert_eq!(parse_segment_key(&aborted, 9), None, "not a segment");
    }

    #[test]
    fn segment_transactions_round_trip_and_must_lie_in_their_segment() {
        let info = SegmentInfo { base_offset: 100, next_offset: 250, max_timestamp: -1, size_bytes: 9 };
        let aborted = |txns: Vec<AbortedTxn>| SegmentTxns { aborted: txns, unresolved: Vec::new() };
        let txns = SegmentTxns {
            aborted: vec![
                AbortedTxn { producer_id: 7, first_offset: 40, last_offset: 100 },
                AbortedTxn { producer_id: 8, first_offset: 120, last_offset: 249 },
            ],
            unresolved: vec![OpenTxn { producer_id: 9, producer_epoch: 2, first_offset: 30 }],
        };
        assert_eq!(decode_txns(&encode_txns(&txns), &info).expect("decodes"), txns);
        // The bare array of objects written before `unresolved` existed.
        let older = br#"[{"producer_id":7,"first_offset":40,"last_offset":100}]"#;
        assert_eq!(decode_txns(older, &info).expect("decodes"), aborted(txns.aborted[..1].to_vec()));
        let outside = aborted(vec![AbortedTxn { producer_id: 7, first_offset: 240, last_offset: 250 }]);
        assert!(decode_txns(&encode_txns(&outside), &info).is_err());
        let backwards = aborted(vec![AbortedTxn { producer_id: 7, first_offset: 200, last_offset: 150 }]);
        assert!(decode_txns(&encode_txns(&backwards), &info).is_err());
        let after = SegmentTxns {
            aborted: Vec::new(),
            unresolved: vec![OpenTxn { producer_id: 9, producer_epoch: 0, first_offset: 250 }],
        };
        assert!(decode_txns(&encode_txns(&after), &info).is_err(), "begins after the segment");
        assert!(decode_txns(b"not json", &info).is_err());
    }
}
