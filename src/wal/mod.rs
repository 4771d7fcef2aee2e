//! The shared write-ahead log in object storage (`--wal-store`): with it, a produce is
//! acknowledged only once the object holding its batch exists, so no acknowledged record lives
//! only on this machine's disk, and the local store becomes a cache of the log.
//!
//! - [`format`]: object names and bytes;
//! - [`writer`]: the commit log that gathers group commits into objects;
//! - [`stream`]: listing, sealing and reading a stream, as a successor does.
//!
//! This module sits above [`crate::log`] (whose writer calls the commit log it is given) and
//! [`crate::tier`] (the object store). A broker writes its own stream, one per broker epoch; at
//! start it seals its earlier streams and replays them into the local log, and it deletes an
//! object once every record in it is in a segment (see docs/wal.md).

pub mod format;
pub mod stream;
pub mod writer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::log::commit_log::CommitLog;
use crate::log::{Log, LogError, Partition};
use crate::tier::object_store::ObjectStore;
use format::{Body, StreamId};
use stream::{Cut, StreamError};
pub use writer::{WalSettings, WalStats, WalWriter, Written};

/// Creates a writer keeps going at once. Part of the stream's protocol, not a setting: a
/// successor seals a stream by the window this implies (see `stream`).
pub const IN_FLIGHT_MAX: usize = 8;

impl From<StreamError> for LogError {
    fn from(error: StreamError) -> LogError {
        LogError::Remote(format!("write-ahead log: {error}"))
    }
}

/// One data object's entries: each partition with its first and next offset.
type Index = Vec<(Uuid, i32, i64, i64)>;

/// This broker's write-ahead log: the stream it writes, and every data object still in the store
/// (its own streams' and earlier ones'), until segments cover them.
pub struct Wal {
    store: Arc<dyn ObjectStore>,
    /// The store's request counts, for the metrics.
    requests: Arc<crate::tier::object_store::RequestCounts>,
    writer: Arc<WalWriter>,
    written: Mutex<mpsc::UnboundedReceiver<Written>>,
    /// The earlier streams this broker sealed when it claimed its own, with their cuts.
    sealed: Vec<(StreamId, Cut)>,
    /// Data objects by stream and slot, with what they hold.
    objects: Mutex<BTreeMap<(StreamId, u64), Index>>,
    /// Streams no writer will add to: their data objects may go once covered.
    retired: Mutex<HashSet<StreamId>>,
    /// Retired seals (by stream) that go with their stream's last data object.
    retired_seals: Mutex<HashMap<StreamId, u64>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("sealed", &self.sealed).finish_non_exhaustive()
    }
}

/// What replaying the earlier streams did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub streams: usize,
    pub objects: usize,
    /// Batches written into the local log that it did not have.
    pub batches_restored: usize,
    /// Partitions whose local log ran past what the write-ahead log holds (never acknowledged).
    pub partitions_cut: usize,
}

impl Wal {
    /// Claims a stream for node `node_id` in `store` above every earlier one (sealing those, so
    /// that an earlier process of this node can acknowledge nothing more) and starts its writer.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        requests: Arc<crate::tier::object_store::RequestCounts>,
        node_id: i32,
        settings: WalSettings,
    ) -> Result<Wal, LogError> {
        let nonce = writer::rand_nonce();
        let (stream, sealed) = stream::claim(&*store, node_id, IN_FLIGHT_MAX as u64, nonce).await?;
        let (sender, written) = mpsc::unbounded_channel();
        let settings = WalSettings { in_flight_max: IN_FLIGHT_MAX, ..settings };
        let writer = Arc::new(WalWriter::start(store.clone(), stream, nonce, settings, sender));
        tracing::info!(?stream, sealed = sealed.len(), store = %store.describe(), "write-ahead log opened");
        let retired = sealed.iter().map(|(stream, _)| *stream).collect();
        let retired_seals =
            sealed.iter().filter(|(_, cut)| cut.retired).map(|(stream, cut)| (*stream, cut.slot)).collect();
        Ok(Wal {
            store,
            requests,
            writer,
            written: Mutex::new(written),
            sealed,
            objects: Mutex::new(BTreeMap::new()),
            retired: Mutex::new(retired),
            retired_seals: Mutex::new(retired_seals),
        })
    }

    /// The commit log the local log's writer acknowledges through.
    pub fn commit_log(&self) -> Arc<dyn CommitLog> {
        self.writer.clone()
    }

    pub fn writer(&self) -> &Arc<WalWriter> {
        &self.writer
    }

    /// The store's requests since start: PUT, GET, LIST, DELETE and errors.
    pub fn requests(&self) -> &crate::tier::object_store::RequestCounts {
        &self.requests
    }

    /// The store the log's objects are in.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The stream this broker writes now (it moves on every `--wal-stream-roll-ms`).
    pub fn current_stream(&self) -> StreamId {
        self.writer.stream()
    }

    /// Replays the earlier streams into `log`: each partition's local records past what the
    /// streams and its segments hold were never acknowledged and go; what the streams hold past
    /// the local records is written in. Run before serving.
    pub async fn recover(&self, log: &Log) -> Result<Replayed, LogError> {
        let mut replayed = Replayed::default();
        // Per partition, every batch the earlier streams hold, in stream and slot order.
        let mut found: HashMap<(Uuid, i32), Vec<Bytes>> = HashMap::new();
        let (streams, objects) = self
            .read_sealed(|entries| {
                for entry in entries {
                    let batches = found.entry((entry.topic_id, entry.partition)).or_default();
                    batches.extend(format::batches(entry).map(|(_, bytes)| bytes));
                }
            })
            .await?;
        (replayed.streams, replayed.objects) = (streams, objects);
        for topic in log.topics() {
            for partition in &topic.partitions {
                let batches = found.remove(&(topic.id, partition.index)).unwrap_or_default();
                let (restored, cut) = replay_partition(log, partition, batches).await?;
                replayed.batches_restored += restored;
                replayed.partitions_cut += usize::from(cut);
            }
        }
        for ((topic_id, index), batches) in found {
            tracing::warn!(%topic_id, partition = index, batches = batches.len(),
                "write-ahead log holds records of a partition the log does not know; left unreplayed");
        }
        tracing::info!(?replayed, "write-ahead log replayed");
        Ok(replayed)
    }

    /// Learns what the earlier streams hold, so that their objects can be deleted once covered,
    /// without replaying them (a cluster rebuilds a partition when it takes it over).
    pub async fn index_sealed(&self) -> Result<usize, LogError> {
        let (_, objects) = self.read_sealed(|_| {}).await?;
        Ok(objects)
    }

    /// Reads the data objects below each sealed stream's cut, indexing them and handing their
    /// entries to `each`; objects after a cut (never acknowledged) are deleted. Returns how many
    /// streams and data objects.
    async fn read_sealed(&self, mut each: impl FnMut(&[format::Entry])) -> Result<(usize, usize), LogError> {
        let mut objects = 0;
        for &(old, Cut { slot: cut, retired }) in &self.sealed {
            let listed = stream::list(&*self.store, &old.prefix()).await?.remove(&old).unwrap_or_default();
            if retired && listed.seal_candidates.iter().any(|s| *s < cut) {
                // A successor raced the writer's own seal: its fill seals and the cut stay.
                self.retired_seals.lock().remove(&old);
            }
            // Objects past a fill seal, below the cut, were never acknowledged either.
            let end = stream::acknowledged_end(&*self.store, old, &listed, Some(cut)).await?.unwrap_or(cut);
            if end < cut {
                tracing::info!(stream = ?old, end, cut, "write-ahead log objects past a fill seal were never acknowledged");
            }
            for &slot in &listed.slots {
                if slot >= end {
                    // Created after the cut, or after a fill seal, so never acknowledged: only
                    // seals stay.
                    if listed.seal_candidates.binary_search(&slot).is_err() {
                        self.store.delete(&old.key(slot)).await.map_err(|e| LogError::Remote(e.to_string()))?;
                    }
                    continue;
                }
                let Some(object) = stream::read(&*self.store, old, slot).await? else { continue };
                let Body::Data(entries) = object.body else { continue };
                objects += 1;
                let index = entries.iter().map(|e| (e.topic_id, e.partition, e.first_offset, e.next_offset)).collect();
                self.objects.lock().insert((old, slot), index);
                each(&entries);
            }
        }
        Ok((self.sealed.len(), objects))
    }

    /// Deletes the data objects of retired streams whose every record is in a segment (or below
    /// its partition's log start, or of a deleted topic), as the local log knows. Returns how
    /// many went.
    pub async fn collect(&self, log: &Log) -> Result<usize, LogError> {
        self.collect_covered(|id, partition, next| is_covered(log, id, partition, next)).await
    }

    /// As `collect`, with `covered(topic, partition, next)` saying whether the partition's
    /// records below `next` are in segments or gone (a cluster asks its coordinator).
    pub async fn collect_covered(&self, covered: impl Fn(Uuid, i32, i64) -> bool) -> Result<usize, LogError> {
        {
            let mut written = self.written.lock();
            let mut objects = self.objects.lock();
            let mut retired = self.retired.lock();
            while let Ok(event) = written.try_recv() {
                match event {
                    Written::Object { stream, slot, entries } => {
                        objects.insert((stream, slot), entries);
                    }
                    Written::Retired { stream, cut } => {
                        // Its claim (slot 0) holds nothing and goes with the rest.
                        objects.insert((stream, 0), Vec::new());
                        retired.insert(stream);
                        self.retired_seals.lock().insert(stream, cut);
                    }
                }
            }
        }
        let covered: Vec<(StreamId, u64)> = {
            let retired = self.retired.lock();
            self.objects
                .lock()
                .iter()
                .filter(|((stream, _), _)| retired.contains(stream))
                .filter(|(_, index)| index.iter().all(|&(id, p, _, next)| covered(id, p, next)))
                .map(|(key, _)| *key)
                .collect()
        };
        for &(stream, slot) in &covered {
            self.store.delete(&stream.key(slot)).await.map_err(|e| LogError::Remote(e.to_string()))?;
            self.objects.lock().remove(&(stream, slot));
        }
        // A retired stream with no data object left goes whole: no writer is behind its seal.
        let emptied: Vec<(StreamId, u64)> = {
            let objects = self.objects.lock();
            let seals = self.retired_seals.lock();
            seals
                .iter()
                .filter(|(stream, _)| !objects.keys().any(|(s, _)| s == *stream))
                .map(|(s, c)| (*s, *c))
                .collect()
        };
        for (stream, cut) in emptied {
            self.store.delete(&stream.key(cut)).await.map_err(|e| LogError::Remote(e.to_string()))?;
            self.retired_seals.lock().remove(&stream);
        }
        Ok(covered.len())
    }
}

/// Whether the records of `(topic, partition)` below `next` are in segments or gone.
fn is_covered(log: &Log, topic_id: Uuid, partition: i32, next: i64) -> bool {
    let Some(topic) = log.topic_by_id(topic_id) else { return true };
    let Some(partition) = topic.partition(partition) else { return true };
    partition.remote_end() >= next || partition.log_start() >= next
}

/// Brings one partition's local log to what the write-ahead log and the segments hold.
/// Returns the batches written in and whether a local tail was cut.
async fn replay_partition(
    log: &Log,
    partition: &Arc<Partition>,
    batches: Vec<Bytes>,
) -> Result<(usize, bool), LogError> {
    let last_next = batches.iter().rev().find_map(next_offset).unwrap_or(i64::MIN);
    let durable_end = partition.remote_end().max(last_next).max(partition.log_start());
    let mut cut = false;
    if partition.high_watermark() > durable_end {
        tracing::info!(partition = ?partition.key, local_end = partition.high_watermark(), durable_end,
            "dropping records the write-ahead log never acknowledged");
        log.truncate_suffix(partition, durable_end).await?;
        cut = true;
    }
    let local_end = partition.high_watermark();
    let missing: Vec<Bytes> = batches.into_iter().filter(|b| b.len() >= 8 && base_offset(b) >= local_end).collect();
    if let Some(first) = missing.first()
        && base_offset(first) != local_end
    {
        return Err(LogError::Remote(format!(
            "write-ahead log: partition {:?} ends at {local_end} but its log resumes at {}",
            partition.key,
            base_offset(first)
        )));
    }
    let restored = missing.len();
    log.restore(partition, Vec::new(), missing).await?;
    Ok((restored, cut))
}

fn base_offset(batch: &Bytes) -> i64 {
    i64::from_be_bytes(batch[..8].try_into().unwrap_or_default())
}

fn next_offset(batch: &Bytes) -> Option<i64> {
    let header = crate::log::batch::BatchHeader::parse(batch).ok()?;
    Some(header.last_offset() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::object_store::{LocalStore, Put, RequestCounts};
    use format::tests::entry;

    /// A broker killed with slot 2 on its way and slot 3 already created: its successor fills 2
    /// and replays slot 1 only, since 3 was never acknowledged (the writer acknowledges a slot
    /// once every slot before it is done), and deletes 3. Replaying 3 would leave a gap.
    #[tokio::test]
    async fn a_successor_replays_nothing_past_a_fill_seal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).expect("store"));
        let old = StreamId { node_id: 0, broker_epoch: 1 };
        let objects = [(0, Vec::new()), (1, vec![entry(0, 0, &[10])]), (3, vec![entry(0, 20, &[10])])];
        for (slot, entries) in objects {
            let bytes = format::encode(old, slot, 1, &Body::Data(entries));
            assert_eq!(store.put_if_absent(&old.key(slot), bytes).await.expect("put"), Put::Created);
        }
        let settings = WalSettings {
            interval_ms: 5,
            bytes_max: 1 << 20,
            in_flight_max: IN_FLIGHT_MAX,
            queue_max: 16,
            roll_ms: 3_600_000,
        };
        let wal = Wal::open(store.clone(), Arc::new(RequestCounts::default()), 0, settings).await.expect("open");
        let mut replayed = Vec::new();
        wal.read_sealed(|entries| replayed.extend(entries.iter().map(|e| (e.first_offset, e.next_offset))))
            .await
            .expect("read");
        assert_eq!(replayed, vec![(0, 10)]);
        assert_eq!(stream::read(&*store, old, 2).await.expect("read").map(|o| o.body), Some(Body::FillSeal));
        assert!(stream::read(&*store, old, 3).await.expect("read").is_none(), "an unacknowledged object stays");
        assert!(wal.objects.lock().keys().all(|(_, slot)| *slot < 2));
    }
}
