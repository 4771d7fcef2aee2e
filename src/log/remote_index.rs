//! The remote index: which segments of a partition are in the object store.
//!
//! It is log metadata, kept in the store's `remote` family beside the partition's batches and
//! written only by the log's writer (after the segment's object exists), so a broker that reopens
//! its data dir knows what it uploaded without listing the object store. The tier names objects
//! after these entries; the remote log manager creates and deletes them.

/// One uploaded segment, as the remote index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub base_offset: i64,
    /// The offset after the segment's last record.
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub size_bytes: u64,
}

impl SegmentInfo {
    /// The fixed-size encoding of the index entry (the base offset is the key).
    pub fn encode_value(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.next_offset.to_be_bytes());
        out[8..16].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[16..].copy_from_slice(&self.size_bytes.to_be_bytes());
        out
    }

    pub fn decode_value(base_offset: i64, value: &[u8]) -> Option<SegmentInfo> {
        let field = |at: usize| value.get(at..at + 8).and_then(|b| b.try_into().ok());
        Some(SegmentInfo {
            base_offset,
            next_offset: i64::from_be_bytes(field(0)?),
            max_timestamp: i64::from_be_bytes(field(8)?),
            size_bytes: u64::from_be_bytes(field(16)?),
        })
    }
}
