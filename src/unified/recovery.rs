//! Rebuilding a broker from the object store alone.
//!
//! When a broker opens a data directory that has never been recovered and holds no topics, it
//! lists the object store: every topic described under `meta/topics/` comes back with its id,
//! partitions and configs, and each partition's segments become its remote index. The partition
//! starts at its first segment and continues after its last one; the `.aborted` objects beside
//! its segments become its aborted-transaction index. What had not been uploaded when
//! the old broker's disk was lost is gone: at most `segment.bytes`, or `segment.ms` of records,
//! per partition (see docs/tiering.md). So are the markers of the transactions unresolved at the
//! end of the last segment, and the coordinator that would have finished them: each is aborted
//! with a marker of its own, so `read_committed` readers never see its records and the last
//! stable offset is not held back for ever.

use std::collections::{BTreeMap, HashSet};

use uuid::Uuid;

use super::UnifiedLog;
use super::remote_log_manager::TopicMeta;
use crate::log::{LogError, OpenTxn, RestoredPartition, SegmentInfo};
use crate::tier::segment;

fn remote(error: crate::tier::object_store::ObjectStoreError) -> LogError {
    LogError::Remote(error.to_string())
}

/// Aborts the transactions unresolved at the end of a recovered partition: each producer gets
/// back its open transaction, then an abort marker closes it (at the partition's end, as the
/// coordinator's would have been).
async fn abort_unresolved(
    log: &crate::log::Log,
    topic: &str,
    partition: &std::sync::Arc<crate::log::Partition>,
    txns: Vec<OpenTxn>,
) -> Result<(), LogError> {
    let producers = txns
        .iter()
        .map(|txn| {
            let mut entry = crate::log::producer::ProducerEntry::empty(txn.producer_epoch);
            entry.txn_first_offset = Some(txn.first_offset);
            (txn.producer_id, entry)
        })
        .collect();
    log.restore(partition, producers, Vec::new()).await?;
    for txn in txns {
        let written =
            log.write_markers(vec![partition.clone()], txn.producer_id, txn.producer_epoch, false, -1).await?;
        for result in written {
            let info = result?;
            tracing::warn!(
                topic,
                partition = partition.index,
                producer_id = txn.producer_id,
                first_offset = txn.first_offset,
                marker = info.base_offset,
                "aborted a transaction whose end was not in the object store"
            );
        }
    }
    Ok(())
}

/// Recovers topics from the object store into a fresh data directory, once.
pub async fn recover_if_fresh(unified: &UnifiedLog) -> Result<(), LogError> {
    let log = unified.log();
    if log.is_recovered().await? {
        return Ok(());
    }
    if log.topics().is_empty() {
        recover(unified).await?;
    }
    log.mark_recovered().await
}

async fn recover(unified: &UnifiedLog) -> Result<(), LogError> {
    let log = unified.log();
    let objects = unified.tier().store();
    let mut latest: BTreeMap<Uuid, u64> = BTreeMap::new();
    for object in objects.list(segment::TOPIC_META_PREFIX).await.map_err(remote)? {
        if let Some((id, version)) = segment::parse_topic_meta_key(&object.key) {
            let entry = latest.entry(id).or_insert(version);
            *entry = (*entry).max(version);
        }
    }
    for (id, version) in latest {
        let key = segment::topic_meta_key(id, version);
        let Some(body) = objects.get(&key).await.map_err(remote)? else { continue };
        let meta: TopicMeta = match serde_json::from_slice(&body) {
            Ok(meta) => meta,
            Err(error) => {
                tracing::warn!(%key, %error, "skipping an unreadable topic description");
                continue;
            }
        };
        let mut partitions = Vec::with_capacity(meta.partitions as usize);
        let mut unresolved: Vec<(usize, Vec<OpenTxn>)> = Vec::new();
        let mut records = 0;
        for index in 0..meta.partitions as i32 {
            let prefix = segment::partition_prefix(id, index);
            let listed = objects.list(&prefix).await.map_err(remote)?;
            let keys: HashSet<&str> = listed.iter().map(|o| o.key.as_str()).collect();
            let mut found: Vec<SegmentInfo> = listed
                .iter()
                .filter_map(|o| segment::parse_segment_key(&o.key, o.size))
                .map(|(_, _, info)| info)
                .collect();
            found.sort_by_key(|info| info.base_offset);
            // Keep a contiguous run: an overlapping object is an orphan of an interrupted upload,
            // which the flusher's reconciliation deletes.
            let mut chain: Vec<SegmentInfo> = Vec::with_capacity(found.len());
            for info in found {
                match chain.last() {
                    Some(last) if info.base_offset != last.next_offset => {
                        tracing::warn!(?info, "skipping a segment that does not continue the partition");
                    }
                    _ => chain.push(info),
                }
            }
            records += chain.last().map_or(0, |s| s.next_offset) - chain.first().map_or(0, |s| s.base_offset);
            let mut aborted = Vec::new();
            for (at, info) in chain.iter().enumerate() {
                let key = segment::aborted_key(id, index, info);
                if !keys.contains(key.as_str()) {
                    continue;
                }
                // Stored before its segment, so it is there unless someone deleted it since.
                let body = objects.get(&key).await.map_err(remote)?.unwrap_or_default();
                let txns = segment::decode_txns(&body, info).map_err(|e| LogError::Remote(format!("{key}: {e}")))?;
                aborted.extend(txns.aborted);
                if at + 1 == chain.len() && !txns.unresolved.is_empty() {
                    unresolved.push((index as usize, txns.unresolved));
                }
            }
            partitions.push(RestoredPartition { segments: chain, aborted });
        }
        match log.restore_topic(&meta.name, id, meta.configs, partitions).await {
            Ok(topic) => {
                tracing::info!(topic = %topic.name, partitions = topic.partitions.len(), records, "topic recovered from the object store");
                for (index, txns) in unresolved {
                    let Some(partition) = topic.partitions.get(index) else { continue };
                    abort_unresolved(log, &topic.name, partition, txns).await?;
                }
            }
            Err(error) => tracing::warn!(topic = %meta.name, %error, "cannot recover topic"),
        }
    }
    Ok(())
}
