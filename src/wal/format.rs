//! The write-ahead log's objects: names and bytes. Pure format, no I/O.
//!
//! A broker writes one stream of objects per broker epoch, numbered by slot from 0:
//! `wal/<node id, 10 digits>/<broker epoch, 10 digits>/<slot, 12 digits>.wal`, each created only
//! if absent. An object holds the batches of every partition that a broker's group commits made
//! durable since its previous object, exactly as the log stores them (offsets and leader epoch
//! assigned), behind an index:
//!
//! ```text
//! magic "ZWAL" | version u8 (1) | kind u8 (0 data, 1 fill seal, 2 final seal, 3 retired seal)
//! | node id i32
//! | broker epoch u64
//! | slot u64 | writer nonce u64 | entries u32
//! | per entry: topic id (16 bytes) | partition i32 | first offset i64 | next offset i64
//!              | data start u32 | data length u32
//! | the entries' batches, concatenated
//! | CRC32C of everything before it, u32
//! ```
//! (integers big-endian). A seal has no entries and is padded to a size no data object has, so
//! that a listing shows which slots may hold one. A final seal ends a stream: written by its own
//! writer when it moves to a new stream, or by a successor, which first fills the empty slots a
//! late create could still land in (fill seals). Its slot is the stream's cut: no object at or
//! after it was ever acknowledged. A final seal written by the stream's own writer is a retired
//! seal: no writer can still be behind it, so it may go once the stream's objects have. The writer nonce lets a writer whose create came back "already
//! exists" (a retry of a create that had succeeded) tell its own object from anyone else's.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

use crate::log::batch::{BatchHeader, HEADER_BYTES};

const MAGIC: &[u8; 4] = b"ZWAL";
const VERSION: u8 = 1;
const KIND_DATA: u8 = 0;
const KIND_FILL: u8 = 1;
const KIND_FINAL: u8 = 2;
const KIND_RETIRED: u8 = 3;
/// The size of every seal: data objects are either 42 bytes (no entries) or above 90.
pub const SEAL_BYTES: u64 = 64;
const HEADER_LEN: usize = 4 + 1 + 1 + 4 + 8 + 8 + 8 + 4;
const ENTRY_LEN: usize = 16 + 4 + 8 + 8 + 4 + 4;
const CRC_LEN: usize = 4;

pub const WAL_PREFIX: &str = "wal/";
const SUFFIX: &str = ".wal";

/// One broker's stream of objects: its node id and the epoch of its registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub node_id: i32,
    pub broker_epoch: u64,
}

impl StreamId {
    /// The prefix every object of this stream's key starts with.
    pub fn prefix(&self) -> String {
        format!("{}/{:010}/", node_prefix(self.node_id), self.broker_epoch)
    }

    pub fn key(&self, slot: u64) -> String {
        format!("{}{slot:012}{SUFFIX}", self.prefix())
    }
}

/// The prefix of every stream of node `node_id`.
pub fn node_prefix(node_id: i32) -> String {
    format!("{WAL_PREFIX}{node_id:010}")
}

/// The stream and slot a key names.
pub fn parse_key(key: &str) -> Option<(StreamId, u64)> {
    let rest = key.strip_prefix(WAL_PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let node_id: i32 = parts.next()?.parse().ok()?;
    let broker_epoch: u64 = parts.next()?.parse().ok()?;
    let slot: u64 = parts.next()?.strip_suffix(SUFFIX)?.parse().ok()?;
    (node_id >= 0).then_some((StreamId { node_id, broker_epoch }, slot))
}

/// One partition's batches in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub topic_id: Uuid,
    pub partition: i32,
    pub first_offset: i64,
    pub next_offset: i64,
    /// The batches, concatenated, as the log stores them.
    pub batches: Bytes,
}

/// What an object is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Data(Vec<Entry>),
    /// A slot a late create could have landed in, taken so that it cannot.
    FillSeal,
    /// The end of the stream, written by a successor: nothing at or after this slot was
    /// acknowledged.
    FinalSeal,
    /// The end of the stream, written by its own writer after its last object.
    RetiredSeal,
}

impl Body {
    /// Whether this object ends its stream (its slot is a cut).
    pub fn is_final(&self) -> bool {
        matches!(self, Body::FinalSeal | Body::RetiredSeal)
    }
}

/// A decoded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalObject {
    pub stream: StreamId,
    pub slot: u64,
    pub nonce: u64,
    pub body: Body,
}

#[derive(Debug, thiserror::Error)]
#[error("write-ahead log object is corrupt: {0}")]
pub struct CorruptObject(pub String);

/// Encodes an object. The entries' batches are copied once, into the object's buffer.
pub fn encode(stream: StreamId, slot: u64, nonce: u64, body: &Body) -> Bytes {
    let (kind, entries): (u8, &[Entry]) = match body {
        Body::Data(entries) => (KIND_DATA, entries),
        Body::FillSeal => (KIND_FILL, &[]),
        Body::FinalSeal => (KIND_FINAL, &[]),
        Body::RetiredSeal => (KIND_RETIRED, &[]),
    };
    let data_len: usize = entries.iter().map(|e| e.batches.len()).sum();
    let mut out = BytesMut::with_capacity(HEADER_LEN + entries.len() * ENTRY_LEN + data_len + CRC_LEN);
    out.put_slice(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_i32(stream.node_id);
    out.put_u64(stream.broker_epoch);
    out.put_u64(slot);
    out.put_u64(nonce);
    out.put_u32(entries.len() as u32);
    let mut start = 0u32;
    for entry in entries {
        out.put_slice(entry.topic_id.as_bytes());
        out.put_i32(entry.partition);
        out.put_i64(entry.first_offset);
        out.put_i64(entry.next_offset);
        out.put_u32(start);
        out.put_u32(entry.batches.len() as u32);
        start += entry.batches.len() as u32;
    }
    for entry in entries {
        out.put_slice(&entry.batches);
    }
    if kind != KIND_DATA {
        out.resize(SEAL_BYTES as usize - CRC_LEN, 0);
    }
    let crc = crc32c::crc32c(&out);
    out.put_u32(crc);
    out.freeze()
}

/// Decodes and checks an object: its CRC, its index, and that every entry's batches are whole
/// batches whose offsets run from the entry's first offset to its next one. The entries' batches
/// are slices of `bytes`.
pub fn decode(bytes: Bytes) -> Result<WalObject, CorruptObject> {
    let corrupt = |what: &str| CorruptObject(what.to_string());
    if bytes.len() < HEADER_LEN + CRC_LEN || &bytes[..4] != MAGIC {
        return Err(corrupt("not a write-ahead log object"));
    }
    let body_end = bytes.len() - CRC_LEN;
    let stored_crc = u32::from_be_bytes(bytes[body_end..].try_into().map_err(|_| corrupt("crc"))?);
    if crc32c::crc32c(&bytes[..body_end]) != stored_crc {
        return Err(corrupt("CRC mismatch"));
    }
    let mut header = &bytes[4..HEADER_LEN];
    let version = header.get_u8();
    if version != VERSION {
        return Err(CorruptObject(format!("unknown version {version}")));
    }
    let kind = header.get_u8();
    let stream = StreamId { node_id: header.get_i32(), broker_epoch: header.get_u64() };
    let slot = header.get_u64();
    let nonce = header.get_u64();
    let count = header.get_u32() as usize;
    let data_at = HEADER_LEN + count.checked_mul(ENTRY_LEN).ok_or_else(|| corrupt("index size"))?;
    if data_at > body_end {
        return Err(corrupt("index runs past the end"));
    }
    let body = match kind {
        KIND_FILL if count == 0 => Body::FillSeal,
        KIND_FINAL if count == 0 => Body::FinalSeal,
        KIND_RETIRED if count == 0 => Body::RetiredSeal,
        KIND_DATA => {
            let mut index = &bytes[HEADER_LEN..data_at];
            let data = bytes.slice(data_at..body_end);
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let mut id = [0u8; 16];
                index.copy_to_slice(&mut id);
                let (partition, first_offset, next_offset) = (index.get_i32(), index.get_i64(), index.get_i64());
                let (start, len) = (index.get_u32() as usize, index.get_u32() as usize);
                let end = start.checked_add(len).filter(|&end| end <= data.len()).ok_or_else(|| corrupt("entry"))?;
                let entry = Entry {
                    topic_id: Uuid::from_bytes(id),
                    partition,
                    first_offset,
                    next_offset,
                    batches: data.slice(start..end),
                };
                check_batches(&entry)?;
                entries.push(entry);
            }
            Body::Data(entries)
        }
        other => return Err(CorruptObject(format!("unknown kind {other} with {count} entries"))),
    };
    Ok(WalObject { stream, slot, nonce, body })
}

/// Every batch whole, CRC intact, offsets dense from the entry's first to its next offset.
fn check_batches(entry: &Entry) -> Result<(), CorruptObject> {
    let mut expected = entry.first_offset;
    let mut rest = &entry.batches[..];
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).map_err(|e| CorruptObject(format!("batch: {e}")))?;
        let size = header.size_bytes();
        if size < HEADER_BYTES || size > rest.len() || !header.crc_matches(&rest[..size]) {
            return Err(CorruptObject(format!("batch at offset {} is damaged", header.base_offset)));
        }
        if header.base_offset != expected {
            return Err(CorruptObject(format!("batch at offset {} where {expected} was due", header.base_offset)));
        }
        expected = header.last_offset() + 1;
        rest = &rest[size..];
    }
    if expected != entry.next_offset {
        return Err(CorruptObject(format!("entry ends at {expected}, its index says {}", entry.next_offset)));
    }
    Ok(())
}

/// Each batch of an entry with its header, in order.
pub fn batches(entry: &Entry) -> impl Iterator<Item = (BatchHeader, Bytes)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = BatchHeader::parse(&entry.batches[at..]).ok()?;
        let size = header.size_bytes();
        let batch = entry.batches.slice(at..at + size);
        at += size;
        Some((header, batch))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid batch of `count` records at `offset` (the base offset is outside the CRC).
    pub(crate) fn batch_at(offset: i64, count: i32) -> Bytes {
        let mut bytes = BytesMut::from(&crate::log::batch::tests::batch(count, b"value", None)[..]);
        bytes[..8].copy_from_slice(&offset.to_be_bytes());
        bytes.freeze()
    }

    pub(crate) fn entry(partition: i32, first: i64, counts: &[i32]) -> Entry {
        let mut bytes = BytesMut::new();
        let mut offset = first;
        for &count in counts {
            bytes.put_slice(&batch_at(offset, count));
            offset += i64::from(count);
        }
        Entry {
            topic_id: Uuid::from_u128(7),
            partition,
            first_offset: first,
            next_offset: offset,
            batches: bytes.freeze(),
        }
    }

    /// An object round-trips: stream, slot, nonce and every entry's batches byte for byte.
    #[test]
    fn objects_round_trip() {
        let stream = StreamId { node_id: 3, broker_epoch: 42 };
        let body = Body::Data(vec![entry(0, 10, &[2, 3]), entry(5, 0, &[1])]);
        let bytes = encode(stream, 9, 77, &body);
        let object = decode(bytes).expect("decodes");
        assert_eq!(object, WalObject { stream, slot: 9, nonce: 77, body });
        let Body::Data(entries) = &object.body else { panic!("data") };
        let offsets: Vec<i64> = batches(&entries[0]).map(|(h, _)| h.base_offset).collect();
        assert_eq!(offsets, vec![10, 12]);
        for seal in [Body::FillSeal, Body::FinalSeal, Body::RetiredSeal] {
            let bytes = encode(stream, 10, 1, &seal);
            assert_eq!(bytes.len() as u64, SEAL_BYTES);
            assert_eq!(decode(bytes).expect("decodes").body, seal);
        }
        let empty = encode(stream, 0, 1, &Body::Data(Vec::new()));
        assert_ne!(empty.len() as u64, SEAL_BYTES);
        assert!(encode(stream, 0, 1, &Body::Data(vec![entry(0, 0, &[1])])).len() as u64 > SEAL_BYTES);
    }

    /// Any flipped byte is caught (by the CRC, or the magic), and an index that lies about its
    /// offsets is refused even with a good CRC.
    #[test]
    fn damage_is_refused() {
        let stream = StreamId { node_id: 0, broker_epoch: 1 };
        let bytes = encode(stream, 0, 1, &Body::Data(vec![entry(0, 0, &[4])]));
        for at in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[at] ^= 0x40;
            assert!(decode(Bytes::from(damaged)).is_err(), "flip at byte {at} went unnoticed");
        }
        let mut lying = entry(0, 0, &[4]);
        lying.next_offset = 5;
        assert!(decode(encode(stream, 0, 1, &Body::Data(vec![lying]))).is_err());
        assert!(decode(Bytes::from_static(b"ZWAL")).is_err());
    }

    #[test]
    fn keys_round_trip_and_sort_by_slot() {
        let stream = StreamId { node_id: 12, broker_epoch: 3 };
        assert_eq!(stream.key(7), "wal/0000000012/0000000003/000000000007.wal");
        assert_eq!(parse_key(&stream.key(7)), Some((stream, 7)));
        assert!(stream.key(9) < stream.key(10));
        assert_eq!(parse_key("wal/x/1/2.wal"), None);
        assert_eq!(parse_key("data/0/1/2.wal"), None);
    }
}
