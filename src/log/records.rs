//! The records inside stored record batches (magic v2), decoded one by one, with the varint and
//! byte-string helpers of the format. Every reader of record contents uses this module: the HTTP
//! API's reads, the Iceberg sink, ListOffsets by time and the key check of compacted topics.
//!
//! kafka-protocol's decoder folds a record's headers into a map, losing their order and repeated
//! keys, so records are parsed here. Keys, values and header fields are slices of the
//! (decompressed) batch, not copies.
//!
//! Decompression is bounded: a batch passed validation by its compressed size, and a small batch
//! can decompress to gigabytes (a "zip bomb"). Decompressing more than the limit given (the flag
//! `--record-batch-decompressed-max-bytes`) fails with [`RecordsError::TooLarge`] instead of
//! allocating it.

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::batch::{BatchHeader, HEADER_BYTES, LOG_OVERHEAD_BYTES};

/// Bit of the batch attributes that says every record's timestamp is the batch's max timestamp.
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
/// The xerial snappy framing Kafka's Java client writes: magic, then version and compatible
/// version (4 bytes each), then blocks each prefixed by its compressed length.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    /// CreateTime (the batch's base timestamp plus the record's delta), or for a LogAppendTime
    /// batch the batch's max timestamp, as Kafka reports it. -1 is Kafka's "no timestamp".
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In record order, repeated keys kept; keys are bytes as sent (Kafka says UTF-8, but a
    /// client can send anything), a null value is distinct from an empty one.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RecordsError {
    #[error("record batch at offset {offset} is truncated or inconsistent")]
    Corrupt { offset: i64 },
    #[error("record batch at offset {offset} uses unknown compression codec {codec}")]
    UnknownCodec { offset: i64, codec: i16 },
    #[error("record batch at offset {offset} cannot be decompressed: {reason}")]
    Decompress { offset: i64, reason: String },
    #[error(
        "record batch at offset {offset} decompresses to more than {limit_bytes} bytes \
         (--record-batch-decompressed-max-bytes)"
    )]
    TooLarge { offset: i64, limit_bytes: usize },
}

/// The whole batches at the start of `bytes`, with their headers. Iteration ends before a trailing
/// partial batch (a read cut short ends in one; see [`Batches::remaining_bytes`]) and after the
/// first batch whose header is inconsistent (yielded as an error).
#[derive(Debug, Clone)]
pub struct Batches {
    bytes: Bytes,
    at: usize,
}

impl Batches {
    pub fn new(bytes: Bytes) -> Batches {
        Batches { bytes, at: 0 }
    }

    /// Bytes after the last whole batch yielded so far.
    pub fn remaining_bytes(&self) -> usize {
        self.bytes.len() - self.at
    }
}

impl Iterator for Batches {
    type Item = Result<(BatchHeader, Bytes), RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.bytes[self.at..];
        if rest.len() < HEADER_BYTES {
            return None;
        }
        let header = BatchHeader::parse(rest).ok()?;
        if header.batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
            self.at = self.bytes.len();
            return Some(Err(RecordsError::Corrupt { offset: header.base_offset }));
        }
        let size = header.size_bytes();
        if rest.len() < size {
            return None;
        }
        let batch = self.bytes.slice(self.at..self.at + size);
        self.at += size;
        Some(Ok((header, batch)))
    }
}

/// The records of one batch (`batch` is the whole batch, header included), decompressing at most
/// `decompressed_bytes_max` bytes.
pub fn records(header: &BatchHeader, batch: &Bytes, decompressed_bytes_max: usize) -> Result<Records, RecordsError> {
    let offset = header.base_offset;
    if batch.len() < HEADER_BYTES {
        return Err(RecordsError::Corrupt { offset });
    }
    let body = decompress(header.compression(), batch.slice(HEADER_BYTES..), decompressed_bytes_max)
        .map_err(|failure| failure.at(offset))?;
    Ok(Records { header: *header, body, left: header.record_count.max(0), failed: false })
}

/// Iterates over a batch's records; after the first error it ends.
#[derive(Debug)]
pub struct Records {
    header: BatchHeader,
    body: Bytes,
    left: i32,
    failed: bool,
}

impl Iterator for Records {
    type Item = Result<Record, RecordsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 || self.failed {
            return None;
        }
        self.left -= 1;
        let record = self.next_record();
        if record.is_none() {
            self.failed = true;
        }
        Some(record.ok_or(RecordsError::Corrupt { offset: self.header.base_offset }))
    }
}

impl Records {
    /// One record; `None` if the bytes do not hold a whole one.
    fn next_record(&mut self) -> Option<Record> {
        let length = usize::try_from(get_varint(&mut self.body)?).ok()?;
        if self.body.remaining() < length || length == 0 {
            return None;
        }
        let mut record = self.body.split_to(length);
        record.advance(1); // attributes: unused in v2
        let timestamp_delta = get_varint(&mut record)?;
        let offset_delta = get_varint(&mut record)?;
        let key = get_nullable_bytes(&mut record)?;
        let value = get_nullable_bytes(&mut record)?;
        let header_count = usize::try_from(get_varint(&mut record)?).ok()?;
        // Each header takes at least two bytes: a count larger than that is corrupt, not an allocation.
        if header_count > record.remaining() / 2 {
            return None;
        }
        let mut headers = Vec::with_capacity(header_count);
        for _ in 0..header_count {
            let name = get_nullable_bytes(&mut record)??;
            headers.push((name, get_nullable_bytes(&mut record)?));
        }
        let header = &self.header;
        let timestamp_ms = if header.attributes & TIMESTAMP_TYPE_LOG_APPEND != 0 {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(timestamp_delta)
        };
        Some(Record { offset: header.base_offset.saturating_add(offset_delta), timestamp_ms, key, value, headers })
    }
}

/// Why decompressing failed, before the batch's offset is known.
enum Failure {
    UnknownCodec(i16),
    Decompress(String),
    TooLarge(usize),
}

impl Failure {
    fn at(self, offset: i64) -> RecordsError {
        match self {
            Failure::UnknownCodec(codec) => RecordsError::UnknownCodec { offset, codec },
            Failure::Decompress(reason) => RecordsError::Decompress { offset, reason },
            Failure::TooLarge(limit_bytes) => RecordsError::TooLarge { offset, limit_bytes },
        }
    }
}

/// The records section of a batch, decompressed by `codec` (the attributes' low three bits)
/// into at most `bytes_max` bytes. Uncompressed records are returned as they are (they take no
/// new memory).
fn decompress(codec: i16, compressed: Bytes, bytes_max: usize) -> Result<Bytes, Failure> {
    let error = |e: std::io::Error| Failure::Decompress(e.to_string());
    let bounded = match codec {
        0 => return Ok(compressed),
        1 => read_bounded(flate2::read::MultiGzDecoder::new(&compressed[..]), bytes_max)?,
        2 => snappy(&compressed, bytes_max)?,
        3 => read_bounded(lz4::Decoder::new(&compressed[..]).map_err(error)?, bytes_max)?,
        4 => read_bounded(zstd::stream::read::Decoder::with_buffer(&compressed[..]).map_err(error)?, bytes_max)?,
        other => return Err(Failure::UnknownCodec(other)),
    };
    Ok(Bytes::from(bounded))
}

/// Reads `reader` to its end, failing once it yields more than `bytes_max` bytes.
fn read_bounded(reader: impl Read, bytes_max: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let limit = u64::try_from(bytes_max).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(limit).read_to_end(&mut out).map_err(|e| Failure::Decompress(e.to_string()))?;
    if out.len() > bytes_max {
        return Err(Failure::TooLarge(bytes_max));
    }
    Ok(out)
}

/// Snappy as Kafka clients write it: xerial framing (Java) or one raw block (librdkafka, older
/// clients). Each block states its decompressed length first, which is checked before allocating.
fn snappy(compressed: &[u8], bytes_max: usize) -> Result<Vec<u8>, Failure> {
    let error = |e: snap::Error| Failure::Decompress(e.to_string());
    let mut out = Vec::new();
    let block = |block: &[u8], out: &mut Vec<u8>| {
        let length = snap::raw::decompress_len(block).map_err(error)?;
        if out.len().saturating_add(length) > bytes_max {
            return Err(Failure::TooLarge(bytes_max));
        }
        let start = out.len();
        out.resize(start + length, 0);
        let written = snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(error)?;
        out.truncate(start + written);
        Ok(())
    };
    if !compressed.starts_with(XERIAL_MAGIC) || compressed.len() < XERIAL_HEADER_BYTES {
        block(compressed, &mut out)?;
        return Ok(out);
    }
    let mut rest = &compressed[XERIAL_HEADER_BYTES..];
    while !rest.is_empty() {
        let truncated = || Failure::Decompress("truncated xerial snappy block".into());
        let length = rest.get(..4).ok_or_else(truncated)?;
        let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
        let body = rest.get(4..4usize.saturating_add(length)).ok_or_else(truncated)?;
        block(body, &mut out)?;
        rest = &rest[4 + length..];
    }
    Ok(out)
}

/// Which batches a `read_committed` consumer keeps, as Kafka's consumers decide it from a
/// fetch's aborted transactions: control batches never, and a transactional batch not when its
/// producer is inside an aborted transaction (from the transaction's first offset until its
/// abort marker). Feed it every batch of a read in offset order.
#[derive(Debug, Default)]
pub struct CommittedFilter {
    /// Aborted transactions not reached yet, the first offset lowest last.
    pending: Vec<super::AbortedTxn>,
    aborted_producers: std::collections::HashSet<i64>,
}

impl CommittedFilter {
    pub fn new(aborted: &[super::AbortedTxn]) -> Self {
        let mut pending = aborted.to_vec();
        pending.sort_by_key(|txn| std::cmp::Reverse(txn.first_offset));
        CommittedFilter { pending, aborted_producers: Default::default() }
    }

    /// Whether the records of `batch` (whose header is `header`) are delivered.
    pub fn keeps(&mut self, header: &BatchHeader, batch: &[u8]) -> bool {
        if header.is_transactional() {
            while let Some(next) = self.pending.last().filter(|next| next.first_offset <= header.last_offset()) {
                self.aborted_producers.insert(next.producer_id);
                self.pending.pop();
            }
        }
        if header.is_control() {
            if super::batch::marker_commits(batch) == Some(false) {
                self.aborted_producers.remove(&header.producer_id);
            }
            return false;
        }
        !(header.is_transactional() && self.aborted_producers.contains(&header.producer_id))
    }
}

/// A zigzag varint (Kafka's `varint` and `varlong`) of up to 64 bits; `None` if truncated or longer.
pub fn get_varint(buf: &mut Bytes) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// A varint-length-prefixed byte string; `Some(None)` is a null (length -1), `None` truncated or
/// a negative length other than -1.
pub fn get_nullable_bytes(buf: &mut Bytes) -> Option<Option<Bytes>> {
    match get_varint(buf)? {
        -1 => Some(None),
        length => {
            let length = usize::try_from(length).ok()?;
            (buf.remaining() >= length).then(|| Some(buf.split_to(length)))
        }
    }
}

pub fn put_varint(buf: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        buf.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    buf.put_u8(zigzag as u8);
}

/// A varint-length-prefixed byte string; `None` is written as length -1 (null).
pub fn put_nullable_bytes(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            put_varint(buf, bytes.len() as i64);
            buf.put_slice(bytes);
        }
        None => put_varint(buf, -1),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::TimestampType;
    use kafka_protocol::records::{Compression, Record as KafkaRecord, RecordBatchEncoder, RecordEncodeOptions};

    use super::*;

    fn kafka_record(offset: i64, value: Vec<u8>) -> KafkaRecord {
        KafkaRecord {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // kafka-protocol starts a new batch whenever offset minus sequence changes.
            sequence: offset as i32,
            delete_horizon: false,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::from(format!("k{offset}"))),
            value: Some(Bytes::from(value)),
            headers: Default::default(),
        }
    }

    fn encode(records: &[KafkaRecord], compression: Compression) -> Bytes {
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(&mut out, records, &RecordEncodeOptions { version: 2, compression }).unwrap();
        out.freeze()
    }

    fn decode_all(bytes: Bytes, bytes_max: usize) -> Result<Vec<Record>, RecordsError> {
        let mut out = Vec::new();
        for batch in Batches::new(bytes) {
            let (header, batch) = batch?;
            for record in records(&header, &batch, bytes_max)? {
                out.push(record?);
            }
        }
        Ok(out)
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for value in [0, 1, -1, 63, -64, 64, i64::from(i32::MAX), i64::from(i32::MIN), i64::MAX, i64::MIN] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, value);
            let mut bytes = buf.freeze();
            assert_eq!(get_varint(&mut bytes), Some(value));
            assert!(bytes.is_empty());
        }
        assert_eq!(get_varint(&mut Bytes::from_static(&[0x80])), None, "truncated");
        assert_eq!(get_varint(&mut Bytes::from_static(&[0xff; 11])), None, "longer than 64 bits");
    }

    /// Every codec decodes within a limit that fits and fails, without decoding it, under one that
    /// does not: 100 records of 10 kB of zeros compress to almost nothing.
    #[test]
    fn every_codec_is_bounded_by_the_decompressed_limit() {
        let records: Vec<KafkaRecord> = (0..100).map(|i| kafka_record(i, vec![0u8; 10_000])).collect();
        for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let batch = encode(&records, compression);
            assert!(batch.len() < 100_000, "{compression:?} compresses zeros");
            assert_eq!(Batches::new(batch.clone()).count(), 1, "one batch of 100 records");
            let decoded = decode_all(batch.clone(), 2_000_000).expect("fits");
            assert_eq!(decoded.len(), 100, "{compression:?}");
            assert_eq!(decoded[99].value.as_ref().map(Bytes::len), Some(10_000));
            assert_eq!(decoded[99].timestamp_ms, 1_700_000_000_099);
            let refused = decode_all(batch, 500_000).err();
            assert_eq!(refused, Some(RecordsError::TooLarge { offset: 0, limit_bytes: 500_000 }), "{compression:?}");
        }
    }

    #[test]
    fn a_trailing_partial_batch_ends_the_iteration() {
        let first = encode(&[kafka_record(0, b"a".to_vec())], Compression::None);
        let mut both = BytesMut::from(&first[..]);
        both.extend_from_slice(&first[..first.len() - 1]);
        let mut batches = Batches::new(both.freeze());
        assert!(batches.next().is_some_and(|b| b.is_ok()));
        assert!(batches.next().is_none());
        assert_eq!(batches.remaining_bytes(), first.len() - 1);
    }
}
