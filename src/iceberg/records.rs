//! Record batches (magic v2, as stored) decoded into table rows.
//!
//! kafka-protocol's decoder folds headers into a map, losing their order and repeated keys, so the
//! records are parsed here; only decompression is borrowed from it. Keys, values and header values
//! are slices of the (decompressed) batch bytes, not copies.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

use crate::log::batch::{BatchHeader, HEADER_BYTES};

/// Bit of the batch attributes that says every record's timestamp is the batch's max timestamp.
const TIMESTAMP_TYPE_LOG_APPEND: i16 = 0x08;
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
    pub unrepresentable: Unrepresentable,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record batch at offset {offset} is truncated or inconsistent")]
    Corrupt { offset: i64 },
    #[error("record batch at offset {offset} uses unknown compression codec {codec}")]
    UnknownCodec { offset: i64, codec: i16 },
    #[error("record batch at offset {offset} cannot be decompressed: {reason}")]
    Decompress { offset: i64, reason: String },
}

/// Decodes the batches in `bytes` into rows of `partition`, leaving out records below `from_offset`.
pub fn decode(bytes: &Bytes, partition: i32, from_offset: i64) -> Result<Decoded, DecodeError> {
    let mut decoded = Decoded { next_offset: from_offset, ..Decoded::default() };
    let mut at = 0;
    while bytes.len() - at >= HEADER_BYTES {
        let header =
            BatchHeader::parse(&bytes[at..]).map_err(|_| DecodeError::Corrupt { offset: decoded.next_offset })?;
        let size = header.size_bytes();
        if header.batch_length < (HEADER_BYTES - 12) as i32 || bytes.len() - at < size {
            // A read may end in a partial batch only if it was cut short; stop before it.
            break;
        }
        let batch = bytes.slice(at..at + size);
        at += size;
        if header.last_offset() < from_offset {
            continue;
        }
        if header.is_control() {
            decoded.control_records += u64::try_from(header.record_count).unwrap_or(0);
        } else {
            decode_batch(&header, batch, partition, from_offset, &mut decoded)?;
        }
        decoded.next_offset = decoded.next_offset.max(header.last_offset() + 1);
    }
    Ok(decoded)
}

fn decode_batch(
    header: &BatchHeader,
    batch: Bytes,
    partition: i32,
    from_offset: i64,
    decoded: &mut Decoded,
) -> Result<(), DecodeError> {
    let offset = header.base_offset;
    let corrupt = || DecodeError::Corrupt { offset };
    let mut compressed = batch.slice(HEADER_BYTES..);
    let decompress_error = |e: anyhow::Error| DecodeError::Decompress { offset, reason: e.to_string() };
    let mut records = match header.compression() {
        0 => compressed,
        1 => <Gzip as Decompressor<Bytes>>::decompress(&mut compressed, |b| Ok(b.clone())).map_err(decompress_error)?,
        2 => {
            <Snappy as Decompressor<Bytes>>::decompress(&mut compressed, |b| Ok(b.clone())).map_err(decompress_error)?
        }
        3 => <Lz4 as Decompressor<Bytes>>::decompress(&mut compressed, |b| Ok(b.clone())).map_err(decompress_error)?,
        4 => <Zstd as Decompressor<Bytes>>::decompress(&mut compressed, |b| Ok(b.clone())).map_err(decompress_error)?,
        codec => return Err(DecodeError::UnknownCodec { offset, codec }),
    };
    let log_append_time = header.attributes & TIMESTAMP_TYPE_LOG_APPEND != 0;
    for _ in 0..header.record_count.max(0) {
        let length = usize::try_from(varint(&mut records).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        if records.remaining() < length {
            return Err(corrupt());
        }
        let mut record = records.split_to(length);
        let row = decode_record(&mut record, header, partition, log_append_time, &mut decoded.unrepresentable)
            .ok_or_else(corrupt)?;
        if row.offset >= from_offset {
            decoded.rows.push(row);
        }
    }
    Ok(())
}

/// One record: `length` was already taken; `None` if the bytes do not hold a whole record.
fn decode_record(
    record: &mut Bytes,
    header: &BatchHeader,
    partition: i32,
    log_append_time: bool,
    unrepresentable: &mut Unrepresentable,
) -> Option<Row> {
    if !record.has_remaining() {
        return None;
    }
    record.advance(1); // attributes: unused in v2
    let timestamp_delta = varint(record)?;
    let offset_delta = varint(record)?;
    let key = nullable_bytes(record)?;
    let value = nullable_bytes(record)?;
    let header_count = usize::try_from(varint(record)?).ok()?;
    // Each header takes at least two bytes: a count larger than that is corrupt, not an allocation.
    if header_count > record.remaining() / 2 {
        return None;
    }
    let mut headers = Vec::with_capacity(header_count);
    for _ in 0..header_count {
        let name = nullable_bytes(record)??;
        let name = match std::str::from_utf8(&name) {
            Ok(name) => name.to_string(),
            Err(_) => {
                unrepresentable.header_keys_replaced += 1;
                String::from_utf8_lossy(&name).into_owned()
            }
        };
        headers.push((name, nullable_bytes(record)?));
    }
    let timestamp_ms = if log_append_time { header.max_timestamp } else { header.base_timestamp + timestamp_delta };
    let timestamp_us = match timestamp_ms {
        NO_TIMESTAMP => None,
        ms => {
            let us = ms.checked_mul(1000);
            if us.is_none() {
                unrepresentable.timestamps_out_of_range += 1;
            }
            us
        }
    };
    Some(Row { partition, offset: header.base_offset + offset_delta, timestamp_us, key, value, headers })
}

/// A length-prefixed byte string; `Some(None)` is a null (-1 length).
fn nullable_bytes(buf: &mut Bytes) -> Option<Option<Bytes>> {
    match varint(buf)? {
        -1 => Some(None),
        length if length < 0 => None,
        length => {
            let length = usize::try_from(length).ok()?;
            (buf.remaining() >= length).then(|| Some(buf.split_to(length)))
        }
    }
}

/// A zigzag varint of up to 64 bits.
fn varint(buf: &mut Bytes) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        if !buf.has_remaining() || shift > 63 {
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

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    use super::*;

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
            let decoded = decode(&encode(&records, compression), 3, 0).unwrap();
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
        let decoded = decode(&batch, 0, 11).unwrap();
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
            let _ = decode(&bytes.freeze(), 0, 0);
        }
    }

    fn put_varint(buf: &mut BytesMut, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        while zigzag >= 0x80 {
            buf.put_u8((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        buf.put_u8(zigzag as u8);
    }
}
