//! Record batch (magic v2) headers: parsing and the validation a produce request gets.
//!
//! Layout of the 61-byte header, big-endian:
//! `baseOffset i64 | batchLength i32 | partitionLeaderEpoch i32 | magic i8 | crc u32 |
//!  attributes i16 | lastOffsetDelta i32 | baseTimestamp i64 | maxTimestamp i64 |
//!  producerId i64 | producerEpoch i16 | baseSequence i32 | recordCount i32`.
//! The CRC32C covers everything from `attributes` to the end of the batch, so the broker may rewrite
//! `baseOffset` and `partitionLeaderEpoch` without touching it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const HEADER_BYTES: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength itself.
pub const LOG_OVERHEAD_BYTES: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const MAX_TIMESTAMP_AT: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

/// The fields of a batch header the broker works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// Why a batch was refused; each maps to the Kafka error code a client expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record data is truncated or its lengths are inconsistent")]
    Corrupt,
    #[error("record batch CRC32C does not match its contents")]
    CrcMismatch,
    #[error("record batch of {size_bytes} bytes exceeds max.message.bytes {limit_bytes}")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("only record batch magic v2 is accepted, got {0}")]
    UnsupportedMagic(i8),
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
    #[error("invalid record batch: produce request carries no record batch")]
    Empty,
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    #[error("record batch decompresses to more than {limit_bytes} bytes (--record-batch-decompressed-max-bytes)")]
    DecompressedTooLarge { limit_bytes: usize },
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` (at least [`HEADER_BYTES`] long).
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Corrupt);
        }
        let mut buf = bytes;
        Ok(BatchHeader {
            base_offset: buf.get_i64(),
            batch_length: buf.get_i32(),
            magic: {
                buf.advance(4);
                buf.get_i8()
            },
            crc: buf.get_u32(),
            attributes: buf.get_i16(),
            last_offset_delta: buf.get_i32(),
            base_timestamp: buf.get_i64(),
            max_timestamp: buf.get_i64(),
            producer_id: buf.get_i64(),
            producer_epoch: buf.get_i16(),
            base_sequence: buf.get_i32(),
            record_count: buf.get_i32(),
        })
    }

    /// Total size of the batch on the wire, including offset and length.
    pub fn size_bytes(&self) -> usize {
        LOG_OVERHEAD_BYTES + self.batch_length as usize
    }

    /// Whether the CRC32C in this header matches the bytes of `batch` (the whole batch).
    pub fn crc_matches(&self, batch: &[u8]) -> bool {
        batch.len() > ATTRIBUTES_AT && crc32c::crc32c(&batch[ATTRIBUTES_AT..]) == self.crc
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

/// One batch of a produce request that passed validation, still the client's bytes.
#[derive(Debug, Clone)]
pub struct ValidBatch {
    pub header: BatchHeader,
    pub bytes: BytesMut,
}

/// The smallest message of the oldest format (v0) after its offset and size: Kafka's
/// `LegacyRecord.RECORD_OVERHEAD_V0`.
const LEGACY_RECORD_OVERHEAD_V0: i32 = 14;

/// Splits the records of one partition of a produce request into validated batches.
///
/// Nothing is decompressed: the CRC covers the compressed bytes and the header carries the counts.
pub fn validate(records: &Bytes, max_message_bytes: usize) -> Result<Vec<ValidBatch>, BatchError> {
    let mut batches = Vec::new();
    let mut rest = &records[..];
    if rest.is_empty() {
        return Err(BatchError::Empty);
    }
    while !rest.is_empty() {
        if rest.len() < LOG_OVERHEAD_BYTES + 5 {
            return Err(BatchError::Corrupt);
        }
        let batch_length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        // Checked in Kafka's order: shorter than any record format (a zeroed batch) is corrupt,
        // then the magic, then the v2 header's size.
        if batch_length < LEGACY_RECORD_OVERHEAD_V0 {
            return Err(BatchError::Corrupt);
        }
        let magic = rest[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        if batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            return Err(BatchError::Corrupt);
        }
        let size_bytes = LOG_OVERHEAD_BYTES + batch_length as usize;
        if size_bytes > max_message_bytes {
            return Err(BatchError::TooLarge { size_bytes, limit_bytes: max_message_bytes });
        }
        if size_bytes > rest.len() {
            return Err(BatchError::Corrupt);
        }
        let (batch, tail) = rest.split_at(size_bytes);
        batches.push(validate_one(batch)?);
        rest = tail;
    }
    Ok(batches)
}

fn validate_one(batch: &[u8]) -> Result<ValidBatch, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if crc32c::crc32c(&batch[ATTRIBUTES_AT..]) != header.crc {
        return Err(BatchError::CrcMismatch);
    }
    if header.record_count <= 0 {
        return Err(BatchError::Invalid("record batch has no records"));
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::Invalid("record count does not match the last offset delta"));
    }
    if header.compression() > 4 {
        return Err(BatchError::UnknownCompression(header.compression()));
    }
    if header.is_control() {
        return Err(BatchError::Invalid("clients may not write control batches"));
    }
    if header.is_transactional() && !header.is_idempotent() {
        return Err(BatchError::Invalid("transactional batch without a producer id"));
    }
    if header.is_idempotent() && (header.base_sequence < 0 || header.producer_epoch < 0) {
        return Err(BatchError::Invalid("idempotent batch without a sequence or epoch"));
    }
    Ok(ValidBatch { header, bytes: BytesMut::from(batch) })
}

impl ValidBatch {
    /// Rewrites the offset fields; the CRC does not cover them.
    /// Stamps the batch with its base offset and the epoch of the leader that appends it
    /// (`partitionLeaderEpoch`, which the CRC does not cover).
    pub fn assign_offset(&mut self, base_offset: i64, leader_epoch: i32) {
        self.header.base_offset = base_offset;
        self.bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
        self.bytes[12..16].copy_from_slice(&leader_epoch.to_be_bytes());
    }

    /// Marks the batch as LogAppendTime with `now_ms` as its max timestamp, and re-signs it.
    pub fn set_log_append_time(&mut self, now_ms: i64) {
        self.header.attributes |= TIMESTAMP_TYPE_LOG_APPEND;
        self.header.max_timestamp = now_ms;
        let mut attributes = &mut self.bytes[ATTRIBUTES_AT..ATTRIBUTES_AT + 2];
        attributes.put_i16(self.header.attributes);
        let mut max_timestamp = &mut self.bytes[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8];
        max_timestamp.put_i64(now_ms);
        let crc = crc32c::crc32c(&self.bytes[ATTRIBUTES_AT..]);
        self.header.crc = crc;
        self.bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// A transaction marker (Kafka's control batch, `EndTransactionMarker`): one control record
/// whose key is version 0 and the type (0 abort, 1 commit), and whose value is version 0 and the
/// coordinator epoch. Stamped with offset 0; the writer assigns its offset like any batch's.
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    now_ms: i64,
) -> ValidBatch {
    let mut record = BytesMut::new();
    record.put_i8(0); // attributes
    super::records::put_varint(&mut record, 0); // timestamp delta
    super::records::put_varint(&mut record, 0); // offset delta
    super::records::put_varint(&mut record, 4);
    record.put_i16(0);
    record.put_i16(i16::from(commit));
    super::records::put_varint(&mut record, 6);
    record.put_i16(0);
    record.put_i32(coordinator_epoch);
    super::records::put_varint(&mut record, 0); // no headers
    let mut body = BytesMut::new();
    super::records::put_varint(&mut body, record.len() as i64);
    body.put_slice(&record);
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
    out.put_i64(0);
    out.put_i32((HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32);
    out.put_i32(0);
    out.put_i8(2);
    out.put_u32(0);
    out.put_i16(TRANSACTIONAL | CONTROL);
    out.put_i32(0);
    out.put_i64(now_ms);
    out.put_i64(now_ms);
    out.put_i64(producer_id);
    out.put_i16(producer_epoch);
    out.put_i32(-1);
    out.put_i32(1);
    out.put_slice(&body);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    let header = BatchHeader::parse(&out).expect("a control batch has a whole header");
    ValidBatch { header, bytes: out }
}

/// The key and the value of the one record of the control batch `batch` (whole, uncompressed,
/// as the broker writes them); `None` for anything else.
fn control_record(batch: &[u8]) -> Option<(Bytes, Bytes)> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression() != 0 {
        return None;
    }
    let mut rest = Bytes::copy_from_slice(batch.get(HEADER_BYTES..)?);
    super::records::get_varint(&mut rest)?; // record length
    if !rest.has_remaining() {
        return None;
    }
    rest.advance(1); // attributes
    super::records::get_varint(&mut rest)?; // timestamp delta
    super::records::get_varint(&mut rest)?; // offset delta
    let key_length = usize::try_from(super::records::get_varint(&mut rest)?).ok()?;
    if rest.len() < key_length {
        return None;
    }
    let key = rest.split_to(key_length);
    // A null value (length -1) reads as empty.
    let value_length = usize::try_from(super::records::get_varint(&mut rest).unwrap_or(-1)).unwrap_or(0);
    Some((key, rest.slice(..value_length.min(rest.len()))))
}

/// Whether the control batch `batch` commits: `Some(true)` for a commit marker, `Some(false)`
/// for an abort, `None` for anything else (the key is a version, then the type).
pub fn marker_commits(batch: &[u8]) -> Option<bool> {
    let (key, _) = control_record(batch)?;
    match key.get(2..4).map(|t| i16::from_be_bytes([t[0], t[1]]))? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// The coordinator epoch a transaction marker carries in its value (a version, then the epoch).
pub fn marker_coordinator_epoch(batch: &[u8]) -> Option<i32> {
    let (_, value) = control_record(batch)?;
    value.get(2..6).map(|e| i32::from_be_bytes([e[0], e[1], e[2], e[3]]))
}

/// Indexes (within the batch) of the records without a key: a compacted topic refuses them.
///
/// This decodes, and for compressed batches decompresses (into at most `decompressed_bytes_max`
/// bytes), the records: only compacted topics pay for it, as in Kafka.
pub fn records_without_key(batch: &ValidBatch, decompressed_bytes_max: usize) -> Result<Vec<i32>, BatchError> {
    let keyless = each_record(batch, decompressed_bytes_max, |record| record.key.is_none())?;
    Ok(keyless.into_iter().enumerate().filter(|(_, keyless)| *keyless).map(|(position, _)| position as i32).collect())
}

/// `f` of each record of the batch, in order, decoded and for compressed batches decompressed
/// (into at most `decompressed_bytes_max` bytes).
fn each_record<T>(
    batch: &ValidBatch,
    decompressed_bytes_max: usize,
    f: impl Fn(super::records::Record) -> T,
) -> Result<Vec<T>, BatchError> {
    let bytes = Bytes::copy_from_slice(&batch.bytes);
    let records = super::records::records(&batch.header, &bytes, decompressed_bytes_max).map_err(refused)?;
    records.map(|record| record.map(&f).map_err(refused)).collect()
}

/// The CreateTime of each record of the batch, in order (-1: none); decodes as
/// [`records_without_key`] does.
pub fn record_timestamps(batch: &ValidBatch, decompressed_bytes_max: usize) -> Result<Vec<i64>, BatchError> {
    each_record(batch, decompressed_bytes_max, |record| record.timestamp_ms)
}

fn refused(error: super::records::RecordsError) -> BatchError {
    match error {
        super::records::RecordsError::TooLarge { limit_bytes, .. } => BatchError::DecompressedTooLarge { limit_bytes },
        _ => BatchError::Corrupt,
    }
}

/// Sums the bytes and records of the record batches in `records` (headers only; nothing decoded).
pub fn totals(records: &[u8]) -> (usize, u64) {
    let mut rest = records;
    let mut count = 0u64;
    while rest.len() >= HEADER_BYTES {
        let Ok(header) = BatchHeader::parse(rest) else { break };
        count += u64::try_from(header.record_count).unwrap_or(0);
        let size = header.size_bytes();
        if size > rest.len() || size == 0 {
            break;
        }
        rest = &rest[size..];
    }
    (records.len(), count)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::log::records::put_varint;

    /// Builds a valid uncompressed batch of `count` records with empty keys and the given value.
    pub(crate) fn batch(count: i32, value: &[u8], producer: Option<(i64, i16, i32)>) -> Bytes {
        let mut records = BytesMut::new();
        for i in 0..count {
            let mut record = BytesMut::new();
            record.put_i8(0); // attributes
            put_varint(&mut record, 0); // timestamp delta
            put_varint(&mut record, i64::from(i)); // offset delta
            put_varint(&mut record, -1); // null key
            put_varint(&mut record, value.len() as i64);
            record.put_slice(value);
            put_varint(&mut record, 0); // no headers
            put_varint(&mut records, record.len() as i64);
            records.put_slice(&record);
        }
        let (producer_id, epoch, sequence) = producer.unwrap_or((-1, -1, -1));
        let mut out = BytesMut::new();
        out.put_i64(0);
        out.put_i32((HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32);
        out.put_i32(0);
        out.put_i8(2);
        out.put_u32(0);
        out.put_i16(0);
        out.put_i32(count - 1);
        out.put_i64(1_700_000_000_000);
        out.put_i64(1_700_000_000_000);
        out.put_i64(producer_id);
        out.put_i16(epoch);
        out.put_i32(sequence);
        out.put_i32(count);
        out.put_slice(&records);
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    /// A valid uncompressed batch at `base_offset` around already encoded `records`.
    pub(crate) fn batch_with_records(base_offset: i64, count: i32, records: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i64(base_offset);
        out.put_i32((HEADER_BYTES - LOG_OVERHEAD_BYTES + records.len()) as i32);
        out.put_i32(0);
        out.put_i8(2);
        out.put_u32(0);
        out.put_i16(0);
        out.put_i32(count - 1);
        out.put_i64(1_700_000_000_000);
        out.put_i64(1_700_000_000_000);
        out.put_i64(-1);
        out.put_i16(-1);
        out.put_i32(-1);
        out.put_i32(count);
        out.put_slice(records);
        let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }

    #[test]
    fn accepts_a_valid_batch_and_keeps_its_bytes() {
        let bytes = batch(3, b"hello", None);
        let batches = validate(&bytes, 1 << 20).expect("valid");
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].header.record_count, 3);
        assert_eq!(&batches[0].bytes[..], &bytes[..]);
    }

    #[test]
    fn rejects_bad_crc_truncation_size_and_magic() {
        let bytes = batch(2, b"v", None);
        let mut flipped = BytesMut::from(&bytes[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(validate(&flipped.freeze(), 1 << 20).unwrap_err(), BatchError::CrcMismatch);
        assert_eq!(validate(&bytes.slice(..bytes.len() - 1), 1 << 20).unwrap_err(), BatchError::Corrupt);
        assert!(matches!(validate(&bytes, 10).unwrap_err(), BatchError::TooLarge { .. }));
        let mut old = BytesMut::from(&bytes[..]);
        old[MAGIC_AT] = 1;
        assert_eq!(validate(&old.freeze(), 1 << 20).unwrap_err(), BatchError::UnsupportedMagic(1));
    }

    /// A marker the broker builds is a valid control batch whose type reads back.
    #[test]
    fn markers_read_back_their_type() {
        for commit in [true, false] {
            let marker = control_batch(7, 3, commit, 12, 1_700_000_000_000);
            assert!(marker.header.is_control() && marker.header.is_transactional());
            assert_eq!((marker.header.producer_id, marker.header.producer_epoch), (7, 3));
            assert!(marker.header.crc_matches(&marker.bytes));
            assert_eq!(marker_commits(&marker.bytes), Some(commit));
            assert_eq!(marker_coordinator_epoch(&marker.bytes), Some(12));
        }
        assert_eq!(marker_commits(&batch(1, b"x", None)), None);
        assert_eq!(marker_coordinator_epoch(&batch(1, b"x", None)), None);
    }

    #[test]
    fn log_append_time_keeps_the_crc_valid() {
        let bytes = batch(1, b"x", None);
        let mut valid = validate(&bytes, 1 << 20).expect("valid").remove(0);
        valid.assign_offset(42, 0);
        valid.set_log_append_time(1_800_000_000_000);
        let again = validate(&valid.bytes.clone().freeze(), 1 << 20).expect("still valid");
        assert_eq!(again[0].header.base_offset, 42);
        assert_eq!(again[0].header.max_timestamp, 1_800_000_000_000);
    }
}

#[cfg(test)]
mod random_input {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// The same property as fuzz/batch_validate: anything accepted parses back to its header.
        #[test]
        fn arbitrary_records_are_refused_or_parse_back(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(batches) = validate(&Bytes::from(bytes), 1 << 20) {
                for valid in batches {
                    prop_assert_eq!(BatchHeader::parse(&valid.bytes).expect("parses"), valid.header);
                }
            }
        }

        /// A valid batch with one byte flipped anywhere after the CRC is refused.
        #[test]
        fn any_flipped_byte_after_the_crc_is_caught(position in 21usize..100, bit in 0u8..8) {
            let bytes = tests::batch(3, b"payload-bytes", None);
            let mut corrupt = BytesMut::from(&bytes[..]);
            let position = position.min(corrupt.len() - 1);
            corrupt[position] ^= 1 << bit;
            prop_assert!(validate(&corrupt.freeze(), 1 << 20).is_err());
        }
    }
}
