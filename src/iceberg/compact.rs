//! Table maintenance, run by the sink thread between commits (so it never races this process's
//! sink; in a cluster, by the broker leading partition 0, and the other brokers' commits fail it
//! by compare-and-swap): compaction, snapshot expiry and the removal of files that no snapshot
//! references.
//!
//! **Compaction.** The sink commits one small file per table partition and interval at low
//! traffic. Small files (under ¾ of the target size) are rewritten into files near the target
//! size, size-tiered so that no byte is rewritten more than a few times:
//! - within a table partition, a small file's tier is how many times `min_files` fits between
//!   its size and the small limit; `min_files` files of one tier are rewritten together, which
//!   yields about one file of the next tier;
//! - once a partition's time range has ended (day, hour transforms) all its small files are
//!   rewritten together, so a past day ends up in few, large files.
//!
//! Only files the sink wrote (`zombi-` names, the table's current schema and default spec) are
//! rewritten. The rewrite copies rows, checks the count, and commits a `replace` snapshot whose
//! one manifest per spec lists every live file (the rewritten ones as deleted): iceberg-rust's
//! fast append adds a manifest per commit, and this also folds those back into one. The snapshot
//! carries the sink's offsets (`zombi.next-offset.*`) forward unchanged, so rows never move in or
//! out of the table: readers of any snapshot see the same rows, in fewer files.
//!
//! iceberg-rust 0.10 can only commit fast appends, so the snapshot is built here on its manifest
//! writers and committed by `super::commit`: a new metadata file, then a compare-and-swap of
//! `metadata_location` in `iceberg_tables`. A crash before the swap leaves unreferenced files
//! only; after it, the table is complete.
//!
//! **Expiry.** Snapshots older than `snapshot_max_age_ms` are expired (never the current one),
//! through iceberg-rust's expire action.
//!
//! **Unreferenced files.** Files referenced before this pass and not after it (rewritten data
//! files whose snapshots expired, manifests, old metadata files beyond the metadata log) are
//! deleted at once. Files in the table's `data/` and `metadata/` that no snapshot ever referenced
//! (a crash before a commit, a writer that gave up) are deleted once older than
//! `orphan_min_age_ms`, since a writer may still be about to commit them; that sweep lists the
//! table's directories, so it runs on a table's first pass and then every quarter of that age.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use ::iceberg::spec::{
    DataContentType, DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestEntryRef, ManifestFile,
    ManifestList, ManifestListWriter, ManifestWriterBuilder, Operation, PrimitiveLiteral, Snapshot, SnapshotReference,
    SnapshotRetention, Struct, Summary, Transform,
};
use ::iceberg::table::Table;
use ::iceberg::transaction::{ApplyTransactionAction, Transaction};
use ::iceberg::{Catalog, TableRequirement, TableUpdate};
use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use uuid::Uuid;

use super::commit::{CommitError, Committer};
use super::table::CommitWriter;
use super::{MaintenanceSettings, NEXT_OFFSET_PROPERTY_PREFIX, TOPIC_ID_PROPERTY};
use crate::tier::s3::{S3Files, S3Path};

/// Data files the sink writes are named `zombi-<uuid>-…`: only those are rewritten.
pub const OWN_FILE_PREFIX: &str = "zombi-";
/// A partition's time range must have ended this long ago before it counts as closed.
const CLOSED_AFTER_MS: i64 = 3_600_000;
/// Data manifests of a snapshot beyond which a pass folds them into one even without files to
/// rewrite (each fast append adds one; readers open every manifest).
const MANIFESTS_MAX: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("iceberg: {0}")]
    Iceberg(#[from] ::iceberg::Error),
    #[error("reading a data file: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("data file rows: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("committing: {0}")]
    Commit(#[from] CommitError),
    #[error("rewrite of {files} files wrote {written} rows, not {expected}; nothing committed")]
    RowCount { files: usize, expected: u64, written: u64 },
    #[error("table format {0} is not maintained (only v2)")]
    Format(FormatVersion),
    #[error("listing the table's files: {0}")]
    List(std::io::Error),
    #[error("listing the table's objects: {0}")]
    ListObjects(crate::tier::object_store::ObjectStoreError),
}

/// What one pass over a table did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Replace snapshots committed (0 or 1).
    pub rewrites: u64,
    pub files_rewritten: u64,
    pub files_written: u64,
    pub bytes_rewritten: u64,
    pub manifests_folded: u64,
    pub snapshots_expired: u64,
    /// Files deleted because the pass made them unreferenced.
    pub files_deleted: u64,
    /// Files deleted that no snapshot ever referenced.
    pub orphans_deleted: u64,
    /// Data files in the current snapshot when the pass ended (its summary's `total-data-files`).
    pub live_data_files: Option<u64>,
}

/// What a pass needs beside the table.
pub struct Maintainer<'a> {
    pub catalog: &'a dyn Catalog,
    pub committer: &'a Committer,
    pub files: &'a TableFiles,
    pub settings: &'a MaintenanceSettings,
    pub target_file_bytes: u64,
    pub row_group_rows_max: usize,
    /// Most bytes of input files one rewrite takes in.
    pub rewrite_bytes_max: u64,
}

impl Maintainer<'_> {
    /// One pass over a table: compaction, expiry, and the deletion of files this pass made
    /// unreferenced; with `sweep`, also of files no snapshot ever referenced (a listing of the
    /// table's directories, which on an object store costs requests: the caller spaces sweeps).
    /// A pass that changes nothing reads only the current snapshot's manifests.
    pub async fn run(&self, table: Table, now_ms: i64, sweep: bool) -> Result<Outcome, MaintenanceError> {
        if table.metadata().format_version() != FormatVersion::V2 {
            return Err(MaintenanceError::Format(table.metadata().format_version()));
        }
        let original = table.clone();
        let mut table = table;
        let mut outcome = Outcome::default();
        if let Some(rewritten) = self.compact(&table, now_ms).await? {
            outcome = rewritten;
            table = self.catalog.load_table(table.identifier()).await?;
        }
        let cutoff = now_ms.saturating_sub(i64::try_from(self.settings.snapshot_max_age_ms).unwrap_or(i64::MAX));
        let current = table.metadata().current_snapshot_id();
        let expiring = table
            .metadata()
            .snapshots()
            .filter(|s| s.timestamp_ms() < cutoff && Some(s.snapshot_id()) != current)
            .count();
        if expiring > 0 {
            let transaction = Transaction::new(&table);
            let action = transaction.expire_snapshots().expire_older_than_ms(cutoff).retain_last(1);
            action.apply(transaction)?.commit(self.catalog).await?;
            table = self.catalog.load_table(table.identifier()).await?;
            outcome.snapshots_expired = expiring as u64;
        }
        outcome.live_data_files = table
            .metadata()
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-data-files")?.parse().ok());
        let changed = outcome.rewrites > 0 || expiring > 0;
        if !changed && !sweep {
            return Ok(outcome);
        }
        let after = referenced(&table).await?;
        let before = if changed { referenced(&original).await? } else { HashSet::new() };
        for gone in before.difference(&after) {
            table.file_io().delete(gone).await?;
            outcome.files_deleted += 1;
        }
        if !sweep {
            return Ok(outcome);
        }
        let orphan_cutoff = now_ms.saturating_sub(i64::try_from(self.settings.orphan_min_age_ms).unwrap_or(i64::MAX));
        if let Some(listed) = self.files.list(table.metadata().location()).await? {
            for (path, modified_ms) in listed {
                if modified_ms < orphan_cutoff && !after.contains(&path) && !before.contains(&path) {
                    table.file_io().delete(&path).await?;
                    outcome.orphans_deleted += 1;
                }
            }
        }
        Ok(outcome)
    }

    /// Rewrites what the plan picks and commits the replace snapshot; `None` when there was
    /// nothing to do.
    async fn compact(&self, table: &Table, now_ms: i64) -> Result<Option<Outcome>, MaintenanceError> {
        let metadata = table.metadata();
        let Some(snapshot) = metadata.current_snapshot() else { return Ok(None) };
        let file_io = table.file_io();
        let list = load_manifest_list(table, snapshot).await?;
        let mut data_manifests = Vec::new();
        let mut other_manifests = Vec::new();
        for manifest in list.entries() {
            if manifest.content == ManifestContentType::Data {
                data_manifests.push((manifest.clone(), manifest.load_manifest(file_io).await?));
            } else {
                other_manifests.push(manifest.clone());
            }
        }
        let spec = metadata.default_partition_spec();
        let closes = partition_closing(spec.fields().first().map(|f| (f.source_id, f.transform)), spec.fields().len());
        let live: Vec<(i32, &ManifestEntryRef)> = data_manifests
            .iter()
            .flat_map(|(file, m)| m.entries().iter().map(|e| (file.partition_spec_id, e)))
            .filter(|(_, e)| e.is_alive())
            .collect();
        let candidates: Vec<Candidate> = live
            .iter()
            .enumerate()
            .filter(|(_, (spec_id, e))| {
                let data = e.data_file();
                data.content_type() == DataContentType::Data
                    && *spec_id == spec.spec_id()
                    && file_name(data.file_path()).starts_with(OWN_FILE_PREFIX)
            })
            .map(|(index, (_, e))| (index, e))
            .map(|(index, e)| Candidate {
                index,
                size: e.file_size_in_bytes(),
                sequence: e.sequence_number().unwrap_or(0),
                partition: e.data_file().partition().clone(),
                closed: closes(e.data_file().partition()).is_some_and(|end| end + CLOSED_AFTER_MS <= now_ms),
            })
            .collect();
        let groups = plan(&candidates, self.target_file_bytes, self.settings.min_files, self.rewrite_bytes_max);
        if groups.is_empty() && data_manifests.len() <= MANIFESTS_MAX {
            return Ok(None);
        }
        let mut outcome = Outcome { manifests_folded: data_manifests.len() as u64, ..Outcome::default() };
        let mut removed: HashSet<&str> = HashSet::new();
        let mut added: Vec<DataFile> = Vec::new();
        for group in &groups {
            let inputs: Vec<&ManifestEntryRef> = group.iter().map(|&i| live[candidates[i].index].1).collect();
            let written = self.rewrite(table, &inputs).await?;
            outcome.files_rewritten += inputs.len() as u64;
            outcome.bytes_rewritten += inputs.iter().map(|e| e.file_size_in_bytes()).sum::<u64>();
            outcome.files_written += written.len() as u64;
            removed.extend(inputs.iter().map(|e| e.file_path()));
            added.extend(written);
        }
        self.commit_replace(table, snapshot, &data_manifests, &other_manifests, &removed, added).await?;
        crate::failpoint::hit("iceberg-compaction-after-swap");
        outcome.rewrites = 1;
        Ok(Some(outcome))
    }

    /// Copies the rows of `inputs` (in order) into new files at the target size.
    async fn rewrite(&self, table: &Table, inputs: &[&ManifestEntryRef]) -> Result<Vec<DataFile>, MaintenanceError> {
        let target = usize::try_from(self.target_file_bytes).unwrap_or(usize::MAX);
        let mut writer = CommitWriter::new(table, target, self.row_group_rows_max)?;
        let schema = writer.arrow_schema();
        for input in inputs {
            let bytes = table.file_io().new_input(input.file_path())?.read().await?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(8192).build()?;
            for batch in reader {
                let batch = batch?;
                writer.write_batch(RecordBatch::try_new(schema.clone(), batch.columns().to_vec())?).await?;
            }
        }
        let written = writer.close().await?;
        let expected: u64 = inputs.iter().map(|e| e.record_count()).sum();
        let rows: u64 = written.iter().map(DataFile::record_count).sum();
        if rows != expected {
            for file in &written {
                let _ = table.file_io().delete(file.file_path()).await;
            }
            return Err(MaintenanceError::RowCount { files: inputs.len(), expected, written: rows });
        }
        Ok(written)
    }

    /// The `replace` snapshot: per spec one manifest with every live file (kept files as
    /// existing, rewritten ones as deleted, new ones as added), other manifests as they were.
    async fn commit_replace(
        &self,
        table: &Table,
        parent: &Snapshot,
        data_manifests: &[(ManifestFile, ::iceberg::spec::Manifest)],
        other_manifests: &[ManifestFile],
        removed: &HashSet<&str>,
        added: Vec<DataFile>,
    ) -> Result<(), MaintenanceError> {
        let metadata = table.metadata();
        let file_io = table.file_io();
        let snapshot_id = new_snapshot_id(table);
        let sequence = metadata.next_sequence_number();
        let schema = metadata.current_schema().clone();
        let commit_id = Uuid::now_v7();
        let mut by_spec: BTreeMap<i32, Vec<&ManifestEntryRef>> = BTreeMap::new();
        for (manifest, loaded) in data_manifests {
            by_spec
                .entry(manifest.partition_spec_id)
                .or_default()
                .extend(loaded.entries().iter().filter(|e| e.is_alive()));
        }
        let default_spec = metadata.default_partition_spec_id();
        by_spec.entry(default_spec).or_default();
        let mut manifests = Vec::new();
        let (mut added_files, mut added_records, mut added_size) = (0u64, 0u64, 0u64);
        let (mut deleted_files, mut deleted_records, mut removed_size) = (0u64, 0u64, 0u64);
        let (mut total_files, mut total_records, mut total_size) = (0u64, 0u64, 0u64);
        let mut changed_partitions: HashSet<Struct> = HashSet::new();
        for (spec_id, entries) in by_spec {
            let Some(spec) = metadata.partition_spec_by_id(spec_id) else { continue };
            let adding: Vec<DataFile> = if spec_id == default_spec { added.clone() } else { Vec::new() };
            if entries.is_empty() && adding.is_empty() {
                continue;
            }
            let path = format!("{}/metadata/{commit_id}-m{spec_id}.avro", metadata.location());
            let mut writer = ManifestWriterBuilder::new(
                file_io.new_output(path)?,
                Some(snapshot_id),
                schema.clone(),
                spec.as_ref().clone(),
            )
            .build_v2_data();
            for entry in entries {
                let data = entry.data_file().clone();
                let data_sequence = entry.sequence_number.unwrap_or(0);
                if removed.contains(entry.file_path()) {
                    deleted_files += 1;
                    deleted_records += data.record_count();
                    removed_size += data.file_size_in_bytes();
                    changed_partitions.insert(data.partition().clone());
                    writer.add_delete_file(data, data_sequence, entry.file_sequence_number)?;
                } else {
                    total_files += 1;
                    total_records += data.record_count();
                    total_size += data.file_size_in_bytes();
                    let added_by = entry.snapshot_id().unwrap_or(parent.snapshot_id());
                    writer.add_existing_file(data, added_by, data_sequence, entry.file_sequence_number)?;
                }
            }
            for data in adding {
                added_files += 1;
                added_records += data.record_count();
                added_size += data.file_size_in_bytes();
                total_files += 1;
                total_records += data.record_count();
                total_size += data.file_size_in_bytes();
                changed_partitions.insert(data.partition().clone());
                writer.add_file(data, sequence)?;
            }
            manifests.push(writer.write_manifest_file().await?);
        }
        manifests.extend(other_manifests.iter().cloned());

        let list_path = format!("{}/metadata/snap-{snapshot_id}-0-{commit_id}.avro", metadata.location());
        let mut list = ManifestListWriter::v2(
            file_io.new_output(&list_path)?.writer().await?,
            snapshot_id,
            Some(parent.snapshot_id()),
            sequence,
        );
        list.add_manifests(manifests.into_iter())?;
        list.close().await?;

        let mut properties: HashMap<String, String> = parent
            .summary()
            .additional_properties
            .iter()
            .filter(|(k, _)| {
                k.starts_with(NEXT_OFFSET_PROPERTY_PREFIX)
                    || k.as_str() == TOPIC_ID_PROPERTY
                    || k.starts_with("total-") && k.contains("delete")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, value) in [
            ("added-data-files", added_files),
            ("deleted-data-files", deleted_files),
            ("added-records", added_records),
            ("deleted-records", deleted_records),
            ("added-files-size", added_size),
            ("removed-files-size", removed_size),
            ("changed-partition-count", changed_partitions.len() as u64),
            ("total-data-files", total_files),
            ("total-records", total_records),
            ("total-files-size", total_size),
        ] {
            properties.insert(name.to_string(), value.to_string());
        }
        for name in ["total-delete-files", "total-position-deletes", "total-equality-deletes"] {
            properties.entry(name.to_string()).or_insert_with(|| "0".to_string());
        }
        let snapshot = Snapshot::builder()
            .with_snapshot_id(snapshot_id)
            .with_parent_snapshot_id(Some(parent.snapshot_id()))
            .with_sequence_number(sequence)
            .with_timestamp_ms(crate::log::now_ms().max(metadata.last_updated_ms()))
            .with_manifest_list(list_path)
            .with_summary(Summary { operation: Operation::Replace, additional_properties: properties })
            .with_schema_id(metadata.current_schema_id())
            .build();
        let requirements = [
            TableRequirement::UuidMatch { uuid: metadata.uuid() },
            TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: Some(parent.snapshot_id()),
            },
        ];
        let updates = vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
            },
        ];
        self.committer.commit(table, &requirements, updates).await?;
        Ok(())
    }
}

fn new_snapshot_id(table: &Table) -> i64 {
    loop {
        let (high, low) = Uuid::new_v4().as_u64_pair();
        let id = ((high ^ low) & (i64::MAX as u64)) as i64;
        if id != 0 && table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

async fn load_manifest_list(table: &Table, snapshot: &Snapshot) -> Result<ManifestList, MaintenanceError> {
    let bytes = table.file_io().new_input(snapshot.manifest_list())?.read().await?;
    Ok(ManifestList::parse_with_version(&bytes, table.metadata().format_version())?)
}

/// Every file the table's metadata references: metadata files (current and logged), manifest
/// lists, manifests, and the live data and delete files of every snapshot.
async fn referenced(table: &Table) -> Result<HashSet<String>, MaintenanceError> {
    let metadata = table.metadata();
    let mut files = HashSet::new();
    if let Some(location) = table.metadata_location() {
        files.insert(location.to_string());
    }
    files.extend(metadata.metadata_log().iter().map(|entry| entry.metadata_file.clone()));
    files.extend(metadata.statistics_iter().map(|s| s.statistics_path.clone()));
    files.extend(metadata.partition_statistics_iter().map(|s| s.statistics_path.clone()));
    let mut manifests_read = HashSet::new();
    for snapshot in metadata.snapshots() {
        files.insert(snapshot.manifest_list().to_string());
        for manifest in load_manifest_list(table, snapshot).await?.entries() {
            files.insert(manifest.manifest_path.clone());
            if !manifests_read.insert(manifest.manifest_path.clone()) {
                continue;
            }
            let loaded = manifest.load_manifest(table.file_io()).await?;
            files.extend(loaded.entries().iter().filter(|e| e.is_alive()).map(|e| e.file_path().to_string()));
        }
    }
    Ok(files)
}

/// Lists a table's files, in a local or S3 warehouse.
pub struct TableFiles {
    s3: Option<S3Files>,
}

impl TableFiles {
    /// `s3`: the client for `s3://` tables (on the sink's runtime, like the warehouse's).
    pub fn new(s3: Option<S3Files>) -> Self {
        TableFiles { s3 }
    }

    /// The files under a table's `data/` and `metadata/` with their modification times (ms);
    /// `None` for locations this cannot list.
    async fn list(&self, location: &str) -> Result<Option<Vec<(String, i64)>>, MaintenanceError> {
        // Paths are given as `location/…`, spelled as the metadata spells them.
        let location = location.trim_end_matches('/');
        if let Some(table) = S3Path::parse(location) {
            let Some(s3) = &self.s3 else { return Ok(None) };
            let mut found = Vec::new();
            for dir in ["data/", "metadata/"] {
                let prefix = S3Path { bucket: table.bucket.clone(), key: format!("{}/{dir}", table.key) };
                for (key, modified) in s3.list_modified(&prefix).await.map_err(MaintenanceError::ListObjects)? {
                    if let Some(relative) = key.strip_prefix(&table.key).and_then(|k| k.strip_prefix('/')) {
                        found.push((format!("{location}/{relative}"), modified));
                    }
                }
            }
            return Ok(Some(found));
        }
        list_local(location)
    }
}

/// `list` for a `file://` table.
fn list_local(location: &str) -> Result<Option<Vec<(String, i64)>>, MaintenanceError> {
    let Some(root) = location.strip_prefix("file://") else { return Ok(None) };
    let root = std::path::Path::new(root);
    let mut found = Vec::new();
    let mut pending: Vec<std::path::PathBuf> = ["data", "metadata"].iter().map(|d| root.join(d)).collect();
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(MaintenanceError::List(error)),
        };
        for entry in entries {
            let entry = entry.map_err(MaintenanceError::List)?;
            let kind = entry.file_type().map_err(MaintenanceError::List)?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file()
                && let Ok(relative) = path.strip_prefix(root)
            {
                let modified = entry.metadata().and_then(|m| m.modified()).map_err(MaintenanceError::List)?;
                let modified_ms = modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                found.push((format!("{location}/{}", relative.display()), modified_ms));
            }
        }
    }
    Ok(Some(found))
}

/// For a spec of one time transform: when a partition's range ends (ms since the epoch).
fn partition_closing(field: Option<(i32, Transform)>, fields: usize) -> impl Fn(&Struct) -> Option<i64> {
    let unit_ms = match field {
        Some((super::table::FIELD_TIMESTAMP, Transform::Day)) if fields == 1 => Some(86_400_000i64),
        Some((super::table::FIELD_TIMESTAMP, Transform::Hour)) if fields == 1 => Some(3_600_000i64),
        _ => None,
    };
    move |partition: &Struct| {
        let unit_ms = unit_ms?;
        match partition.fields().first()? {
            Some(::iceberg::spec::Literal::Primitive(PrimitiveLiteral::Int(value))) => {
                (i64::from(*value) + 1).checked_mul(unit_ms)
            }
            _ => None,
        }
    }
}

/// A live data file that may be rewritten.
#[derive(Debug, Clone)]
struct Candidate {
    /// Index into the live entries.
    index: usize,
    size: u64,
    sequence: i64,
    partition: Struct,
    /// The partition's time range ended a while ago.
    closed: bool,
}

/// Which candidates to rewrite together (indexes into `candidates`), by the rules of the module
/// comment. Groups keep commit order and hold at most `group_bytes_max` of input (at least two
/// files each).
fn plan(candidates: &[Candidate], target: u64, min_files: usize, group_bytes_max: u64) -> Vec<Vec<usize>> {
    let small = target / 4 * 3;
    let min_files = min_files.max(2);
    let tier = |size: u64| {
        let mut bound = small / min_files as u64;
        let mut tier = 0u32;
        while size < bound && tier < 32 {
            tier += 1;
            bound /= min_files as u64;
        }
        tier
    };
    let mut by_partition: HashMap<&Struct, Vec<usize>> = HashMap::new();
    for (i, c) in candidates.iter().enumerate() {
        if c.size < small {
            by_partition.entry(&c.partition).or_default().push(i);
        }
    }
    let mut partitions: Vec<Vec<usize>> = by_partition.into_values().collect();
    partitions.sort_by_key(|files| files.iter().map(|&i| candidates[i].sequence).min());
    let mut groups = Vec::new();
    for mut files in partitions {
        files.sort_by_key(|&i| (candidates[i].sequence, candidates[i].index));
        let sets: Vec<Vec<usize>> = if files.iter().all(|&i| candidates[i].closed) {
            vec![files]
        } else {
            let mut tiers: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for i in files {
                tiers.entry(tier(candidates[i].size)).or_default().push(i);
            }
            tiers.into_values().filter(|set| set.len() >= min_files).collect()
        };
        for set in sets {
            let mut group = Vec::new();
            let mut bytes = 0u64;
            for i in set {
                if !group.is_empty() && bytes + candidates[i].size > group_bytes_max {
                    if group.len() >= 2 {
                        groups.push(std::mem::take(&mut group));
                    }
                    group.clear();
                    bytes = 0;
                }
                bytes += candidates[i].size;
                group.push(i);
            }
            if group.len() >= 2 {
                groups.push(group);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use ::iceberg::spec::Literal;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn candidate(index: usize, size: u64, day: i32, closed: bool) -> Candidate {
        Candidate {
            index,
            size,
            sequence: index as i64,
            partition: Struct::from_iter([Some(Literal::int(day))]),
            closed,
        }
    }

    #[test]
    fn open_partitions_rewrite_a_tier_once_it_has_min_files() {
        // target 128 MiB: small < 96 MiB; tiers of 4: [24, 96), [6, 24), [1.5, 6) MiB, …
        let mut files: Vec<Candidate> = (0..3).map(|i| candidate(i, MIB, 1, false)).collect();
        assert!(plan(&files, 128 * MIB, 4, 512 * MIB).is_empty(), "three of a tier wait for a fourth");
        files.push(candidate(3, MIB, 1, false));
        files.push(candidate(4, 10 * MIB, 1, false)); // another tier, alone
        files.push(candidate(5, 100 * MIB, 1, false)); // not small
        files.push(candidate(6, MIB, 2, false)); // another partition
        assert_eq!(plan(&files, 128 * MIB, 4, 512 * MIB), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn closed_partitions_rewrite_all_their_small_files() {
        let files = vec![
            candidate(0, 50 * MIB, 1, true),
            candidate(1, MIB, 1, true),
            candidate(2, 100 * MIB, 1, true),
            candidate(3, MIB, 2, true), // alone in its partition
        ];
        assert_eq!(plan(&files, 128 * MIB, 8, 512 * MIB), vec![vec![0, 1]]);
    }

    #[test]
    fn groups_stop_at_the_input_bound_and_keep_commit_order() {
        let files: Vec<Candidate> = (0..5).rev().map(|i| candidate(i, 30 * MIB, 1, true)).collect();
        // Ordered by sequence (= index 0..5 at positions 4..0), 60 MiB a group at most.
        assert_eq!(plan(&files, 128 * MIB, 8, 60 * MIB), vec![vec![4, 3], vec![2, 1]]);
    }

    #[test]
    fn day_and_hour_partitions_close_at_the_end_of_their_range() {
        let day = partition_closing(Some((super::super::table::FIELD_TIMESTAMP, Transform::Day)), 1);
        assert_eq!(day(&Struct::from_iter([Some(Literal::int(0))])), Some(86_400_000));
        let hour = partition_closing(Some((super::super::table::FIELD_TIMESTAMP, Transform::Hour)), 1);
        assert_eq!(hour(&Struct::from_iter([Some(Literal::int(2))])), Some(3 * 3_600_000));
        let identity = partition_closing(Some((1, Transform::Identity)), 1);
        assert_eq!(identity(&Struct::from_iter([Some(Literal::int(2))])), None);
    }
}
