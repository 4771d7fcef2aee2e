//! A node's streams of write-ahead log objects as a successor sees them: listing, sealing,
//! claiming and reading. Safety rests on conditional creates alone, never on clocks.
//!
//! A writer starts slot `s` only after slot `s - k` is done (`k` creates in flight at most),
//! acknowledges slot `s` only once every slot up to `s` holds its own object, and never deletes
//! an object of the stream it is writing. Sealing a stream whose writer may still run:
//! 1. list it; let `m` be its highest slot. Every slot up to `m - k` was done before `m` began,
//!    so a create still on its way can only land in `(m - k, m]` or above `m`;
//! 2. create a fill seal in every empty slot of `(m - k, m]`;
//! 3. create a final seal in `m + 1`, `m + 2`, … until one create succeeds, at slot `q`.
//!
//! Every slot below `q` now holds the writer's object or a seal, and the writer's create of `q`
//! fails, so nothing at or after `q` is ever acknowledged: the objects below `q` are final and
//! hold every acknowledged record. The lowest final seal of a stream is its cut; a stream that
//! has one is never sealed again. A writer moving on to a new stream seals its old one the same
//! way, after its creates are done, so its final seal comes right after its last object.
//!
//! A stream is claimed by creating its slot 0 (an object with no entries): two brokers choosing
//! the same stream find out there, and the loser chooses again after sealing what it finds.

use std::collections::BTreeMap;

use super::format::{self, Body, StreamId, WalObject};
use crate::tier::object_store::{ObjectStore, ObjectStoreError, Put};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Store(#[from] ObjectStoreError),
    #[error("{key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("stream {0:?} could not be sealed within {1} slots")]
    Unsealable(StreamId, u64),
    #[error("no stream of node {0} could be claimed")]
    Unclaimable(i32),
}

/// One stream as a listing shows it: its slots, and which may hold seals (by size).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listed {
    pub slots: Vec<u64>,
    pub seal_candidates: Vec<u64>,
}

/// Every stream under `prefix` (one node's, or all) with its slots, in order.
pub async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<BTreeMap<StreamId, Listed>, StreamError> {
    let mut streams: BTreeMap<StreamId, Listed> = BTreeMap::new();
    for object in store.list(prefix).await? {
        if let Some((stream, slot)) = format::parse_key(&object.key) {
            let listed = streams.entry(stream).or_default();
            listed.slots.push(slot);
            if object.size == format::SEAL_BYTES {
                listed.seal_candidates.push(slot);
            }
        }
    }
    for listed in streams.values_mut() {
        listed.slots.sort_unstable();
        listed.seal_candidates.sort_unstable();
    }
    Ok(streams)
}

/// The stream's cut (its lowest final seal) and whether its own writer wrote it, if it has been
/// sealed.
pub async fn cut(store: &dyn ObjectStore, stream: StreamId, listed: &Listed) -> Result<Option<Cut>, StreamError> {
    for &slot in &listed.seal_candidates {
        if let Some(object) = read(store, stream, slot).await?
            && object.body.is_final()
        {
            return Ok(Some(Cut { slot, retired: object.body == Body::RetiredSeal }));
        }
    }
    Ok(None)
}

/// Where the objects that may hold acknowledged records end, in a stream sealed at `cut` (or
/// still being written, `None`): at its lowest fill seal below the cut, if any. A fill seal
/// takes a slot whose create had not landed, and a writer acknowledges a slot only once every
/// slot before it holds its own object, so an object after a fill seal (a create that was
/// already on its way, step 1 above) holds nothing that was acknowledged.
pub async fn acknowledged_end(
    store: &dyn ObjectStore,
    stream: StreamId,
    listed: &Listed,
    cut: Option<u64>,
) -> Result<Option<u64>, StreamError> {
    for &slot in listed.seal_candidates.iter().take_while(|&&slot| cut.is_none_or(|cut| slot < cut)) {
        if let Some(object) = read(store, stream, slot).await?
            && object.body == Body::FillSeal
        {
            return Ok(Some(slot));
        }
    }
    Ok(cut)
}

/// Where a sealed stream ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// Every object the stream's writer acknowledged lies below this slot.
    pub slot: u64,
    /// Sealed by its own writer (which went on to another stream), not by a successor.
    pub retired: bool,
}

/// The most slots a seal walks past the highest listed one before giving up: a writer keeps at
/// most `in_flight_max` creates going, so this many means something is badly wrong.
const SEAL_SLOTS_MAX: u64 = 1024;

/// Seals `stream`, whose writer may still run with at most `in_flight_max` creates going;
/// returns its cut: every object the writer acknowledged lies below it. A stream already sealed
/// keeps its cut.
pub async fn seal(
    store: &dyn ObjectStore,
    stream: StreamId,
    in_flight_max: u64,
    nonce: u64,
) -> Result<Cut, StreamError> {
    let listed = list(store, &stream.prefix()).await?.remove(&stream).unwrap_or_default();
    if let Some(cut) = cut(store, stream, &listed).await? {
        return Ok(cut);
    }
    let seal_at = |slot: u64, body: &Body| format::encode(stream, slot, nonce, body);
    let highest = listed.slots.last().copied();
    if let Some(m) = highest {
        for slot in (m + 1).saturating_sub(in_flight_max)..=m {
            if listed.slots.binary_search(&slot).is_err() {
                store.put_if_absent(&stream.key(slot), seal_at(slot, &Body::FillSeal)).await?;
            }
        }
    }
    let first = highest.map_or(0, |m| m + 1);
    for slot in first..first + SEAL_SLOTS_MAX {
        if store.put_if_absent(&stream.key(slot), seal_at(slot, &Body::FinalSeal)).await? == Put::Created {
            // Another successor may have sealed it at the same time, lower: the lowest wins.
            let listed = list(store, &stream.prefix()).await?.remove(&stream).unwrap_or_default();
            let ours = Cut { slot, retired: false };
            return Ok(cut(store, stream, &listed).await?.filter(|c| c.slot < slot).unwrap_or(ours));
        }
    }
    Err(StreamError::Unsealable(stream, SEAL_SLOTS_MAX))
}

/// Claims a new stream for node `node_id` above every stream it has, sealing each of those
/// first (a previous process of this node may still be writing). Returns the claimed stream and
/// the earlier ones with their cuts, in order.
pub async fn claim(
    store: &dyn ObjectStore,
    node_id: i32,
    in_flight_max: u64,
    nonce: u64,
) -> Result<(StreamId, Vec<(StreamId, Cut)>), StreamError> {
    const ATTEMPTS_MAX: usize = 16;
    for _ in 0..ATTEMPTS_MAX {
        let streams = list(store, &format::node_prefix(node_id)).await?;
        let mut sealed = Vec::with_capacity(streams.len());
        for &stream in streams.keys() {
            sealed.push((stream, seal(store, stream, in_flight_max, nonce).await?));
        }
        let broker_epoch = streams.keys().map(|s| s.broker_epoch + 1).max().unwrap_or(1);
        let stream = StreamId { node_id, broker_epoch };
        let claim = format::encode(stream, 0, nonce, &Body::Data(Vec::new()));
        if store.put_if_absent(&stream.key(0), claim).await? == Put::Created {
            return Ok((stream, sealed));
        }
    }
    Err(StreamError::Unclaimable(node_id))
}

/// Reads and checks one object; `None` if it is gone (deleted once covered by segments).
pub async fn read(store: &dyn ObjectStore, stream: StreamId, slot: u64) -> Result<Option<WalObject>, StreamError> {
    let key = stream.key(slot);
    let Some(bytes) = store.get(&key).await? else { return Ok(None) };
    let object = format::decode(bytes).map_err(|e| StreamError::Corrupt { key: key.clone(), reason: e.0 })?;
    if object.stream != stream || object.slot != slot {
        let reason = format!("holds stream {:?} slot {}", object.stream, object.slot);
        return Err(StreamError::Corrupt { key, reason });
    }
    Ok(Some(object))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tier::object_store::LocalStore;

    fn local() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).expect("store"));
        (dir, store)
    }

    fn data(stream: StreamId, slot: u64) -> bytes::Bytes {
        format::encode(stream, slot, 9, &Body::Data(Vec::new()))
    }

    /// A writer with slots 0..=5 done and 7 created while 6 is still on its way (two in flight):
    /// the seal fills 6 and takes 8 as the cut, so the late create of 6 fails and 8 can never be
    /// created; sealing again finds the same cut and writes nothing.
    #[tokio::test]
    async fn a_seal_fills_the_window_and_takes_the_next_slot() {
        let (_dir, store) = local();
        let stream = StreamId { node_id: 1, broker_epoch: 4 };
        for slot in (0..=5).chain([7]) {
            assert_eq!(store.put_if_absent(&stream.key(slot), data(stream, slot)).await.expect("put"), Put::Created);
        }
        assert_eq!(seal(&*store, stream, 2, 1).await.expect("sealed"), Cut { slot: 8, retired: false });
        assert_eq!(store.put_if_absent(&stream.key(6), data(stream, 6)).await.expect("put"), Put::AlreadyExists);
        assert_eq!(store.put_if_absent(&stream.key(8), data(stream, 8)).await.expect("put"), Put::AlreadyExists);
        assert_eq!(read(&*store, stream, 6).await.expect("read").expect("exists").body, Body::FillSeal);
        assert_eq!(read(&*store, stream, 5).await.expect("read").expect("exists").nonce, 9);
        assert_eq!(seal(&*store, stream, 2, 1).await.expect("sealed").slot, 8);
        let listed = list(&*store, &stream.prefix()).await.expect("list").remove(&stream).expect("listed");
        assert_eq!(listed.slots, (0..=8).collect::<Vec<_>>());
        assert_eq!(listed.seal_candidates, vec![6, 8]);
        // 7 landed while 6 was on its way, so 7 was never acknowledged: the acknowledged
        // objects end at the fill seal, not at the cut.
        assert_eq!(acknowledged_end(&*store, stream, &listed, Some(8)).await.expect("read"), Some(6));
        assert_eq!(acknowledged_end(&*store, stream, &listed, Some(6)).await.expect("read"), Some(6));
        let whole = StreamId { node_id: 1, broker_epoch: 5 };
        for slot in 0..=3 {
            store.put_if_absent(&whole.key(slot), data(whole, slot)).await.expect("put");
        }
        assert_eq!(seal(&*store, whole, 2, 1).await.expect("sealed").slot, 4);
        let listed = list(&*store, &whole.prefix()).await.expect("list").remove(&whole).expect("listed");
        assert_eq!(acknowledged_end(&*store, whole, &listed, Some(4)).await.expect("read"), Some(4));
    }

    /// An empty stream (claimed, never written) is sealed at slot 0 or after its claim.
    #[tokio::test]
    async fn an_empty_stream_is_sealed_right_after_what_it_has() {
        let (_dir, store) = local();
        let stream = StreamId { node_id: 0, broker_epoch: 1 };
        assert_eq!(seal(&*store, stream, 4, 1).await.expect("sealed").slot, 0);
        let claimed = StreamId { node_id: 0, broker_epoch: 2 };
        store.put_if_absent(&claimed.key(0), data(claimed, 0)).await.expect("put");
        assert_eq!(seal(&*store, claimed, 4, 1).await.expect("sealed").slot, 1);
        // A stream its own writer retired keeps that cut, marked as such.
        let retired = StreamId { node_id: 0, broker_epoch: 3 };
        store.put_if_absent(&retired.key(0), data(retired, 0)).await.expect("put");
        let seal_bytes = format::encode(retired, 1, 9, &Body::RetiredSeal);
        store.put_if_absent(&retired.key(1), seal_bytes).await.expect("put");
        assert_eq!(seal(&*store, retired, 4, 1).await.expect("sealed"), Cut { slot: 1, retired: true });
    }

    /// Claiming seals every earlier stream of the node and takes the next epoch; a second
    /// process claiming after it seals the first one's stream in turn.
    #[tokio::test]
    async fn claims_seal_what_came_before() {
        let (_dir, store) = local();
        let (first, sealed) = claim(&*store, 3, 4, 1).await.expect("claimed");
        assert_eq!((first, sealed), (StreamId { node_id: 3, broker_epoch: 1 }, Vec::new()));
        store.put_if_absent(&first.key(1), data(first, 1)).await.expect("put");
        let (second, sealed) = claim(&*store, 3, 4, 2).await.expect("claimed");
        assert_eq!(second, StreamId { node_id: 3, broker_epoch: 2 });
        assert_eq!(sealed, vec![(first, Cut { slot: 2, retired: false })]);
        // The first writer's next create finds its slot taken.
        assert_eq!(store.put_if_absent(&first.key(2), data(first, 2)).await.expect("put"), Put::AlreadyExists);
        // Another node's streams are untouched.
        let (other, sealed) = claim(&*store, 4, 4, 3).await.expect("claimed");
        assert_eq!((other.broker_epoch, sealed.len()), (1, 0));
    }
}
