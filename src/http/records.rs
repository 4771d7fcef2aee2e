//! Record batches for the HTTP API: building one (magic v2, uncompressed, CRC32C) from records, and
//! decoding stored batches (any codec, decompression bounded) into records with their headers in
//! order, duplicates kept. The record format itself is `log::records`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::log::batch::{HEADER_BYTES, LOG_OVERHEAD_BYTES};
use crate::log::records::{self as log_records, Batches, RecordsError, put_nullable_bytes, put_varint};

const ATTRIBUTES_AT: usize = 21;
const CRC_AT: usize = 17;

/// One record as the HTTP API sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In order; a key may repeat.
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub log_append_time: bool,
    pub record: HttpRecord,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("stored record batch is truncated or malformed")]
    Malformed,
    #[error("stored record batch does not decompress: {0}")]
    Decompress(String),
    #[error(transparent)]
    TooLarge(RecordsError),
}

impl From<RecordsError> for DecodeError {
    fn from(error: RecordsError) -> Self {
        match error {
            RecordsError::Corrupt { .. } => DecodeError::Malformed,
            RecordsError::UnknownCodec { codec, .. } => DecodeError::Decompress(format!("unknown codec {codec}")),
            RecordsError::Decompress { reason, .. } => DecodeError::Decompress(reason),
            too_large @ RecordsError::TooLarge { .. } => DecodeError::TooLarge(too_large),
        }
    }
}

/// Builds one uncompressed magic v2 batch holding `records` (at least one), base offset 0, no
/// producer id; the log's validation and writer treat it exactly like a client's batch.
pub fn encode_batch(records: &[HttpRecord]) -> Bytes {
    let base_timestamp = records.iter().map(|r| r.timestamp_ms).min().unwrap_or(0);
    let max_timestamp = records.iter().map(|r| r.timestamp_ms).max().unwrap_or(0);
    let mut body = BytesMut::new();
    let mut record_bytes = BytesMut::new();
    for (delta, record) in records.iter().enumerate() {
        record_bytes.clear();
        record_bytes.put_i8(0);
        put_varint(&mut record_bytes, record.timestamp_ms - base_timestamp);
        put_varint(&mut record_bytes, delta as i64);
        put_nullable_bytes(&mut record_bytes, record.key.as_deref());
        put_nullable_bytes(&mut record_bytes, record.value.as_deref());
        put_varint(&mut record_bytes, record.headers.len() as i64);
        for (key, value) in &record.headers {
            put_nullable_bytes(&mut record_bytes, Some(key.as_bytes()));
            put_nullable_bytes(&mut record_bytes, value.as_deref());
        }
        put_varint(&mut body, record_bytes.len() as i64);
        body.put_slice(&record_bytes);
    }
    let count = records.len() as i32;
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
    out.put_i64(0);
    out.put_i32((HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32);
    out.put_i32(-1); // partitionLeaderEpoch: the broker sets it
    out.put_i8(2);
    out.put_u32(0); // CRC, filled in below
    out.put_i16(0); // attributes: no compression, CreateTime
    out.put_i32(count - 1);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(count);
    out.put_slice(&body);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// Decodes every record of the batches in `bytes` at or after `from_offset`; control batches and
/// the batches of the `aborted` transactions (a read_committed read's) are skipped, a batch that
/// decompresses to more than `decompressed_bytes_max` is an error, and so is a partial batch at
/// the end (reads return whole batches).
pub fn decode_batches(
    bytes: &[u8],
    from_offset: i64,
    decompressed_bytes_max: usize,
    aborted: &[crate::log::AbortedTxn],
) -> Result<Vec<StoredRecord>, DecodeError> {
    let mut out = Vec::new();
    let mut batches = Batches::new(Bytes::copy_from_slice(bytes));
    let mut committed = log_records::CommittedFilter::new(aborted);
    for batch in &mut batches {
        let (header, batch) = batch?;
        if !committed.keeps(&header, &batch) || header.last_offset() < from_offset {
            continue;
        }
        let log_append_time = header.attributes & TIMESTAMP_TYPE_LOG_APPEND != 0;
        for record in log_records::records(&header, &batch, decompressed_bytes_max)? {
            let record = record?;
            if record.offset < from_offset {
                continue;
            }
            let headers = record
                .headers
                .into_iter()
                .map(|(name, value)| Ok((String::from_utf8(name.to_vec()).map_err(|_| DecodeError::Malformed)?, value)))
                .collect::<Result<_, DecodeError>>()?;
            out.push(StoredRecord {
                offset: record.offset,
                timestamp_ms: record.timestamp_ms,
                log_append_time,
                record: HttpRecord { key: record.key, value: record.value, headers, timestamp_ms: record.timestamp_ms },
            });
        }
    }
    if batches.remaining_bytes() > 0 {
        return Err(DecodeError::Malformed);
    }
    Ok(out)
}

/// Bit of the batch attributes that says every record's timestamp is the batch's max timestamp.
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;

/// Kafka's default partitioner for keyed records: `toPositive(murmur2(key)) % partitions`, so a key
/// lands where the Java client and librdkafka's `murmur2` partitioner put it.
pub fn partition_for_key(key: &[u8], partitions: usize) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as usize % partitions.max(1)) as i32
}

/// MurmurHash2 (32-bit, seed 0x9747b28c) as Kafka's `Utils.murmur2` computes it.
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch;

    const LIMIT: usize = 1 << 20;

    fn record(key: Option<&str>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> HttpRecord {
        HttpRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(Bytes::copy_from_slice),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.map(Bytes::copy_from_slice))).collect(),
            timestamp_ms: 1_700_000_000_123,
        }
    }

    /// A built batch passes the produce path's validation and decodes back to the same records,
    /// repeated header keys and null values included.
    #[test]
    fn built_batches_validate_and_round_trip() {
        let records = vec![
            record(Some("k"), Some(b"\x00\xffbinary"), &[("h", Some(b"1")), ("h", None), ("a", Some(b""))]),
            record(None, None, &[]),
            HttpRecord { timestamp_ms: 1_700_000_000_000, ..record(Some(""), Some(b"v"), &[]) },
        ];
        let bytes = encode_batch(&records);
        let valid = batch::validate(&bytes, 1 << 20).expect("valid batch");
        assert_eq!(valid[0].header.record_count, 3);
        assert_eq!(valid[0].header.max_timestamp, 1_700_000_000_123);
        let decoded = decode_batches(&bytes, 0, LIMIT, &[]).expect("decodes");
        assert_eq!(decoded.iter().map(|r| r.record.clone()).collect::<Vec<_>>(), records);
        assert_eq!(decoded.iter().map(|r| r.offset).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(decode_batches(&bytes, 2, LIMIT, &[]).expect("decodes").len(), 1);
    }

    #[test]
    fn compressed_batches_decode() {
        use kafka_protocol::protocol::StrBytes;
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        for compression in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let records: Vec<Record> = (0..3)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: -1,
                    delete_horizon: false,
                    timestamp: 1_700_000_000_000 + i,
                    key: Some(Bytes::from(format!("key-{i}"))),
                    value: Some(Bytes::from(vec![b'x'; 100])),
                    headers: [(StrBytes::from_static_str("h"), Some(Bytes::from_static(b"v")))].into_iter().collect(),
                })
                .collect();
            let mut bytes = BytesMut::new();
            let options = RecordEncodeOptions { version: 2, compression };
            RecordBatchEncoder::encode(&mut bytes, &records, &options).expect("encodes");
            let decoded = decode_batches(&bytes, 1, LIMIT, &[]).expect("decodes");
            assert_eq!(decoded.len(), 2, "{compression:?}");
            assert_eq!(decoded[0].offset, 1);
            assert_eq!(decoded[1].record.key.as_deref(), Some(&b"key-2"[..]));
            assert_eq!(decoded[1].record.headers, vec![("h".to_string(), Some(Bytes::from_static(b"v")))]);
            assert_eq!(decoded[1].timestamp_ms, 1_700_000_000_002);
        }
    }

    #[test]
    fn truncated_batches_are_errors_not_panics() {
        let bytes = encode_batch(&[record(Some("k"), Some(b"value"), &[("h", Some(b"1"))])]);
        for cut in 0..bytes.len() {
            let _ = decode_batches(&bytes[..cut], 0, LIMIT, &[]);
        }
        let mut bad = BytesMut::from(&bytes[..]);
        let last = bad.len() - 3;
        bad[last] = 0x7f;
        let _ = decode_batches(&bad, 0, LIMIT, &[]);
    }

    /// Vectors from Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key) as i32, expected, "{}", String::from_utf8_lossy(key));
        }
    }
}
