//! Response frames whose record sets are shared, not copied.
//!
//! A Fetch response is mostly the record batches read from the log, already in their wire form.
//! `kafka-protocol` encodes a `Bytes` field by copying it into the output buffer, which for a
//! consumer reading at hundreds of MB/s is a second pass over every byte and a second buffer of a
//! response's size. [`Splicing`] is an output buffer that recognises those record sets as they
//! are written (the same pointer and length as a `Bytes` the response holds) and keeps a
//! reference to them instead: the frame becomes a list of parts, the encoded fields between them
//! and the record sets themselves, which the connection writes in order.

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record sets smaller than this are copied: a separate part costs more than the copy.
pub const SHARE_BYTES_MIN: usize = 4096;

/// An encoded frame: its parts, in order.
#[derive(Debug, Default)]
pub struct Frame {
    pub parts: Vec<Bytes>,
}

impl Frame {
    pub fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one buffer (tests, and callers that need contiguous bytes).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [one] => one.clone(),
            parts => {
                let mut out = BytesMut::with_capacity(self.len());
                parts.iter().for_each(|part| out.extend_from_slice(part));
                out.freeze()
            }
        }
    }
}

/// An output buffer for `kafka-protocol` encoders that shares the given record sets, expected in
/// the order the encoder writes them; anything else is copied as usual.
pub struct Splicing {
    /// Parts finished so far, and their total length.
    done: Vec<Bytes>,
    done_bytes: usize,
    current: BytesMut,
    /// The record sets still expected, the next one first.
    shared: std::vec::IntoIter<Bytes>,
    next: Option<Bytes>,
}

impl Splicing {
    /// `capacity` is a guess at the encoded bytes between the shared parts.
    pub fn new(shared: Vec<Bytes>, capacity: usize) -> Splicing {
        let mut shared: Vec<Bytes> = shared.into_iter().filter(|b| b.len() >= SHARE_BYTES_MIN).collect::<Vec<_>>();
        shared.shrink_to_fit();
        let mut shared = shared.into_iter();
        let next = shared.next();
        Splicing { done: Vec::new(), done_bytes: 0, current: BytesMut::with_capacity(capacity), shared, next }
    }

    pub fn finish(mut self) -> Frame {
        if !self.current.is_empty() {
            self.done.push(self.current.freeze());
        }
        Frame { parts: self.done }
    }

    fn is_next_shared(&self, src: &[u8]) -> bool {
        self.next.as_ref().is_some_and(|next| next.as_ptr() == src.as_ptr() && next.len() == src.len())
    }

    /// Gathers every part into `current`, for the rare encoder that goes back to patch earlier
    /// bytes (`seek`, `range`); nothing is shared after that point.
    fn gather(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let mut all = BytesMut::with_capacity(self.done_bytes + self.current.len());
        self.done.drain(..).for_each(|part| all.extend_from_slice(&part));
        all.extend_from_slice(&self.current);
        self.current = all;
        self.done_bytes = 0;
    }
}

// SAFETY: every method delegates to `current`, a `BytesMut`, whose contract it inherits: `chunk_mut`
// hands out its spare capacity and `advance_mut` marks as written only what the caller wrote there.
unsafe impl BufMut for Splicing {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, count: usize) {
        // SAFETY: forwarded under the caller's contract (`count` bytes of `chunk_mut` written).
        unsafe { self.current.advance_mut(count) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if !self.is_next_shared(src) {
            self.current.extend_from_slice(src);
            return;
        }
        let Some(shared) = std::mem::replace(&mut self.next, self.shared.next()) else { return };
        if !self.current.is_empty() {
            let encoded = self.current.split().freeze();
            self.done_bytes += encoded.len();
            self.done.push(encoded);
        }
        self.done_bytes += shared.len();
        self.done.push(shared);
    }
}

impl ByteBufMut for Splicing {
    fn offset(&self) -> usize {
        self.done_bytes + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        if offset < self.done_bytes {
            self.gather();
        }
        self.next = None;
        let local = offset - self.done_bytes;
        self.current.resize(local, 0);
    }

    fn range(&mut self, range: Range<usize>) -> &mut [u8] {
        if range.start < self.done_bytes {
            self.gather();
        }
        let base = self.done_bytes;
        &mut self.current[range.start - base..range.end - base]
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::*;

    fn response(records: &[Bytes]) -> FetchResponse {
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(StrBytes::from_static_str("t"));
        for (index, records) in records.iter().enumerate() {
            let mut partition = PartitionData::default();
            partition.partition_index = index as i32;
            partition.high_watermark = 42;
            partition.records = Some(records.clone());
            topic.partitions.push(partition);
        }
        let mut response = FetchResponse::default();
        response.responses.push(topic);
        response
    }

    fn records(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    /// The parts are exactly the bytes the copying encoder writes, for every version, and each
    /// large record set is a part of its own that points at the response's own bytes.
    #[test]
    fn shared_frames_are_the_copied_bytes() {
        let sets = vec![records(10_000, 1), records(100, 2), Bytes::new(), records(SHARE_BYTES_MIN, 3)];
        let response = response(&sets);
        for version in [4_i16, 11, 12, 13, 16] {
            let mut copied = BytesMut::new();
            response.encode(&mut copied, version).expect("encodes");
            let mut splicing = Splicing::new(sets.clone(), 256);
            response.encode(&mut splicing, version).expect("encodes");
            let frame = splicing.finish();
            assert_eq!(frame.to_bytes(), copied.freeze(), "v{version}");
            for set in [&sets[0], &sets[3]] {
                assert!(frame.parts.iter().any(|part| part.as_ptr() == set.as_ptr() && part.len() == set.len()));
            }
            assert!(!frame.parts.iter().any(|part| part.as_ptr() == sets[1].as_ptr()), "small sets are copied");
        }
    }

    /// Record sets the encoder writes in another order than expected are copied, not lost.
    #[test]
    fn unexpected_order_copies() {
        let sets = vec![records(5000, 1), records(6000, 2)];
        let response = response(&sets);
        let mut copied = BytesMut::new();
        response.encode(&mut copied, 12).expect("encodes");
        let mut splicing = Splicing::new(vec![sets[1].clone(), sets[0].clone()], 0);
        response.encode(&mut splicing, 12).expect("encodes");
        assert_eq!(splicing.finish().to_bytes(), copied.freeze());
    }

    /// Going back into shared parts gathers them first, so patched bytes land where they belong.
    #[test]
    fn seeking_back_gathers() {
        let shared = records(5000, 7);
        let mut splicing = Splicing::new(vec![shared.clone()], 0);
        splicing.put_slice(b"head");
        splicing.put_slice(&shared);
        splicing.put_slice(b"tail");
        assert_eq!(splicing.offset(), 5008);
        splicing.range(0..4).copy_from_slice(b"HEAD");
        splicing.seek(5006);
        splicing.put_slice(b"TAIL");
        let bytes = splicing.finish().to_bytes();
        assert_eq!(&bytes[..4], b"HEAD");
        assert_eq!(&bytes[4..5004], &shared[..]);
        assert_eq!(&bytes[5004..], b"taTAIL");
    }
}
