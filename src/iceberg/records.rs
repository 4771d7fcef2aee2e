//! Record batches (magic v2, as stored) decoded into table rows.
//!
//! The records are parsed by `log::records` (headers in order, repeated keys kept, decompression
//! bounded); this module turns them into rows and counts what a row cannot hold exactly. Keys,
//! values and header values are slices of the (decompressed) batch bytes, not copies.

use bytes::Bytes;

pub use crate::log::records::RecordsError as DecodeError;
use crate::log::records::{self as log_records, Batches};

/// Kafka's "no timestamp".
const NO_TIMESTAMP: i64 = -1;

/// One record as a table row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub partition: i32,
    pub offset: i64,
    /// Microseconds since the epoch, UTC; `None` for Kafka's "no timestamp" (-1).
    pub timestamp_us: Option<i64>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In record order, repeated keys kept; a null value is distinct from an empty one.
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl Row {
    /// Bytes of payload the row carries (for memory and file size accounting).
    pub fn size_bytes(&self) -> usize {
        let header_bytes: usize = self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len)).sum();
        24 + self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + header_bytes
    }
}

/// What decoding met that the table cannot represent exactly; each is documented in docs/iceberg.md.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unrepresentable {
    /// Header keys that are not UTF-8: stored with invalid bytes replaced by U+FFFD.
    pub header_keys_replaced: u64,
    /// Timestamps whose microseconds overflow an i64: stored as null.
    pub timestamps_out_of_range: u64,
}

/// Rows decoded from a run of batches.
#[derive(Debug, Default)]
pub struct Decoded {
    pub rows: Vec<Row>,
    /// The offset after the last batch seen (whole batches are always consumed).
    pub next_offset: i64,
    /// Records of control batches (transaction markers): never rows.
    pub control_records: u64,
    /// Records of aborted transactions: never rows.
    pub aborted_records: u64,
    pub unrepresentable: Unrepresentable,
}

/// Decodes the batches in `bytes` into rows of `partition`, leaving out records below
/// `from_offset`; a batch that decompresses to more than `decompressed_bytes_max` is an error. A
/// read may end in a partial batch (when cut short): decoding stops before it.
pub fn decode(
    bytes: &Bytes,
    partition: i32,
    from_offset: i64,
    decompressed_bytes_max: usize,
    aborted: &[crate::log::AbortedTxn],
) -> Result<Decoded, DecodeError> {
    let mut decoded = Decoded { next_offset: from_offset, ..Decoded::default() };
    let mut committed = log_records::CommittedFilter::new(aborted);
    for batch in Batches::new(bytes.clone()) {
        let (header, batch) = batch?;
        let keeps = committed.keeps(&header, &batch);
        if header.last_offset() < from_offset {
            continue;
        }
        let count = u64::try_from(header.record_count).unwrap_or(0);
        if header.is_control() {
            decoded.control_records += count;
        } else if !keeps {
            decoded.aborted_records += count;
        } else {
            for record in log_records::records(&header, &batch, decompressed_bytes_max)? {
                let record = record?;
                if record.offset >= from_offset {
                    decoded.rows.push(row(record, partition, &mut decoded.unrepresentable));
                }
            }
        }
        decoded.next_offset = decoded.next_offset.max(header.last_offset() + 1);
    }
    Ok(decoded)
}

fn row(record: log_records::Record, partition: i32, unrepresentable: &mut Unrepresentable) -> Row {
    let headers = record
        .headers
        .into_iter()
        .map(|(name, value)| {
            let name = match std::str::from_utf8(&name) {
                Ok(name) => name.to_string(),
                Err(_) => {
                    unrepresentable.header_keys_replaced += 1;
                    String::from_utf8_lossy(&name).into_owned()
                }
            };
            (name, value)
        })
        .collect();
    let timestamp_us = match record.timestamp_ms {
        NO_TIMESTAMP => None,
        ms => {
            let us = ms.checked_mul(1000);
            if us.is_none() {
                unrepresentable.timestamps_out_of_range += 1;
            }
            us
        }
    };
    Row { partition, offset: record.offset, timestamp_us, key: record.key, value: record.value, headers }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    use super::*;
    use crate::log::batch::HEADER_BYTES;
    use crate::log::records::put_varint;

    const LIMIT: usize = 1 << 20;

    fn record(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, Option<&[u8]>)]) -> Record {
        let mut map = kafka_protocol::indexmap::IndexMap::new();
        for (k, v) in headers {
            map.insert(StrBytes::from_string(k.to_string()), v.map(Bytes::copy_from_slice));
        }
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: -1,
            delete_horizon: false,
            timestamp: 1_700_000_000_000 + offset,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: map,
        }
    }

    fn encode(records: &[Record], compression: Compression) -> Bytes {
        let mut out = BytesMut::new();
        RecordBatchEncoder::encode(&mut out, records, &RecordEncodeOptions { version: 2, compression }).unwrap();
        out.freeze()
    }

    #[test]
    fn decodes_every_codec_with_nulls_and_empties() {
        let records = vec![
            record(0, Some(b"k"), Some(b"v"), &[("a", Some(b"1")), ("b", None), ("c", Some(b""))]),
            record(1, None, None, &[]),
            record(2, Some(b""), Some(b""), &[]),
        ];
        for compression in
            [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd]
        {
            let decoded = decode(&encode(&records, compression), 3, 0, LIMIT, &[]).unwrap();
            assert_eq!(decoded.next_offset, 3, "{compression:?}");
            let rows = decoded.rows;
            assert_eq!(rows.len(), 3);
            assert_eq!(rows[0].partition, 3);
            assert_eq!(rows[0].timestamp_us, Some(1_700_000_000_000_000));
            assert_eq!(rows[0].key.as_deref(), Some(&b"k"[..]));
            assert_eq!(
                rows[0].headers,
                vec![
                    ("a".to_string(), Some(Bytes::from_static(b"1"))),
                    ("b".to_string(), None),
                    ("c".to_string(), Some(Bytes::new()))
                ]
            );
            assert_eq!((rows[1].key.clone(), rows[1].value.clone()), (None, None));
            assert_eq!((rows[2].key.clone(), rows[2].value.clone()), (Some(Bytes::new()), Some(Bytes::new())));
            assert_eq!(rows[2].timestamp_us, Some(1_700_000_000_002_000));
        }
    }

    /// kafka-protocol's encoder keeps headers in a map, so repeated keys are written by hand here.
    #[test]
    fn keeps_repeated_header_keys_in_order_and_skips_below_the_start() {
        let mut records = BytesMut::new();
        for offset_delta in 0..2i64 {
            let mut r = BytesMut::new();
            r.put_i8(0);
            put_varint(&mut r, 5); // timestamp delta
            put_varint(&mut r, offset_delta);
            put_varint(&mut r, -1);
            put_varint(&mut r, 1);
            r.put_u8(b'x');
            put_varint(&mut r, 3);
            for (k, v) in [("h", &b"1"[..]), ("g", b"2"), ("h", b"3")] {
                put_varint(&mut r, k.len() as i64);
                r.put_slice(k.as_bytes());
                put_varint(&mut r, v.len() as i64);
                r.put_slice(v);
            }
            put_varint(&mut records, r.len() as i64);
            records.put_slice(&r);
        }
        let batch = crate::log::batch::tests::batch_with_records(10, 2, &records);
        let decoded = decode(&batch, 0, 11, LIMIT, &[]).unwrap();
        assert_eq!(decoded.next_offset, 12);
        assert_eq!(decoded.rows.len(), 1);
        let row = &decoded.rows[0];
        assert_eq!(row.offset, 11);
        assert_eq!(row.timestamp_us, Some((1_700_000_000_000 + 5) * 1000));
        let keys: Vec<_> = row.headers.iter().map(|(k, v)| (k.as_str(), v.clone().unwrap())).collect();
        assert_eq!(
            keys,
            vec![("h", Bytes::from_static(b"1")), ("g", Bytes::from_static(b"2")), ("h", Bytes::from_static(b"3"))]
        );
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let batch = encode(&[record(0, Some(b"key"), Some(b"value"), &[])], Compression::None);
        for cut in HEADER_BYTES..batch.len() {
            let mut bytes = BytesMut::from(&batch[..]);
            // Claim the full length but garble the records section.
            for b in bytes[cut..].iter_mut() {
                *b = 0xff;
            }
            let _ = decode(&bytes.freeze(), 0, 0, LIMIT, &[]);
        }
    }
}
