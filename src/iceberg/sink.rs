//! The sink loop: one commit per table per interval, exactly once.
//!
//! Each round of a topic:
//! 1. Load the table (create it on first sight) and read the next offset of every partition from
//!    the current snapshot's summary (`zombi.next-offset.<p>`); the table is the only state.
//! 2. Read the log from there (whole batches, from the hot tier or the object store), decode the
//!    records and stream them into Parquet files, at most `commit_bytes_max` record bytes a round.
//! 3. Reload the table: if its offsets moved (a commit that reported an error but happened, or
//!    another writer), the files are abandoned and the next round starts from the table again.
//! 4. Commit one fast-append snapshot with the files and the new offsets, as a compare-and-swap
//!    from the table reloaded in step 3: if anyone committed since (in a cluster, the leader of
//!    other partitions), nothing is committed and step 3 runs again on the new table, with the
//!    same files. iceberg-rust's own commit would instead re-apply the append, offsets and all,
//!    on top of the other commit, setting its partitions back (see `super::commit`).
//!
//! A crash before step 4 leaves unreferenced files and nothing else; after it, the snapshot holds
//! both rows and offsets. Hence no row twice and none missing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::iceberg::table::Table;
use ::iceberg::transaction::{ApplyTransactionAction, Transaction};
use ::iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalogBuilder};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;
use uuid::Uuid;

use super::commit::Committer;
use super::compact::{Maintainer, MaintenanceError, Outcome, TableFiles};
use super::records::{self, DecodeError};
use super::storage::WarehouseStorageFactory;
use super::table::{self, CommitWriter};
use super::{CATALOG_NAME, IcebergSink, NEXT_OFFSET_PROPERTY_PREFIX, TOPIC_ID_PROPERTY};
use crate::log::{Isolation, LogError, ReadRequest, Topic, now_ms};
use crate::tier::object_store::ObjectStoreError;
use crate::tier::s3::{S3Files, S3Path};
use crate::unified::UnifiedLog;

/// Rounds started over in a row because another writer committed first, before giving up until
/// the next interval.
const COMMIT_CONFLICTS_MAX: u32 = 8;

impl SinkError {
    /// Whether another writer committed to the table first (the round can start over).
    fn is_conflict(&self) -> bool {
        match self {
            SinkError::Moved => true,
            SinkError::Iceberg(error) => error.kind() == ::iceberg::ErrorKind::CatalogCommitConflicts,
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("iceberg: {0}")]
    Iceberg(#[from] ::iceberg::Error),
    #[error("cannot open the catalog: {0}")]
    Catalog(String),
    #[error("cannot reach the S3 warehouse: {0}")]
    Storage(#[from] ObjectStoreError),
    #[error("reading the log: {0}")]
    Log(#[from] LogError),
    #[error("decoding records: {0}")]
    Decode(#[from] DecodeError),
    #[error("table {table} holds topic id {found}, not {expected}: a deleted topic's table; drop it to reuse the name")]
    OtherTopic { table: String, found: String, expected: Uuid },
    #[error("table {table} has snapshots but none that records zombi.next-offset.*; not writing it twice")]
    NoOffsets { table: String },
    #[error("the table's offsets moved during the round (another writer?); starting over")]
    Moved,
    #[error("cannot start the sink's runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the sink on its own thread until `stopped` turns true; resolves when the thread is done.
pub async fn run(sink: Arc<IcebergSink>, log: UnifiedLog, stopped: watch::Receiver<bool>) {
    let (done, finished) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("iceberg-sink".into()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        match runtime {
            Ok(runtime) => runtime.block_on(sink_loop(sink, log, stopped).instrument(tracing::info_span!("iceberg"))),
            Err(error) => tracing::error!(error = %SinkError::Runtime(error), "iceberg sink not started"),
        }
        let _ = done.send(());
    });
    match spawned {
        Ok(_) => {
            let _ = finished.await;
        }
        Err(error) => tracing::error!(%error, "cannot start the iceberg sink thread"),
    }
}

/// Per topic: when it may be tried again after failures.
#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

async fn sink_loop(sink: Arc<IcebergSink>, log: UnifiedLog, mut stopped: watch::Receiver<bool>) {
    let settings = sink.settings.clone();
    let mut catalog: Option<Arc<dyn Catalog>> = None;
    let mut committer: Option<Arc<Committer>> = None;
    let mut files: Option<Arc<TableFiles>> = None;
    let mut catalog_backoff = Backoff::default();
    let mut backoffs: HashMap<String, Backoff> = HashMap::new();
    let mut maintenance_due: HashMap<String, Instant> = HashMap::new();
    let mut last_sweep: HashMap<String, Instant> = HashMap::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(settings.commit_interval_ms));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.changed() => return,
        }
        if catalog.is_none() && ready(&catalog_backoff) {
            let opened = open_all(&sink).await;
            match opened {
                Ok((opened, connected, listed)) => {
                    sink.set_catalog_error(None);
                    catalog_backoff = Backoff::default();
                    catalog = Some(opened);
                    committer = Some(connected);
                    files = Some(listed);
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot open the iceberg catalog; retrying");
                    sink.set_catalog_error(Some(error));
                    fail(&mut catalog_backoff, settings.retry_backoff_ms_max);
                }
            }
        }
        let (Some(open_catalog), Some(open_committer), Some(open_files)) =
            (catalog.clone(), committer.clone(), files.clone())
        else {
            continue;
        };
        // A REST catalog is opened again after a failed round: `iceberg-catalog-rest` never
        // renews its OAuth2 token, which expires (or is refused by a restarted catalog).
        let mut reopen = false;
        for topic in log.log().topics() {
            let (catalog, committer, files) = (open_catalog.as_ref(), &open_committer, &open_files);
            if *stopped.borrow() {
                return;
            }
            // Each partition's records reach the table from the broker that leads it (one broker
            // leads every partition on its own); a commit carries the other partitions'
            // offsets forward, and the catalog's compare-and-swap orders the commits.
            if !topic.config.iceberg_enable || !topic.partitions.iter().any(|p| p.is_leading()) {
                continue;
            }
            let backoff = backoffs.entry(topic.name.clone()).or_default();
            if ready(backoff) && !sink.caught_up(&topic) {
                let span = tracing::info_span!("table", topic = %topic.name);
                match sync_topic(&sink, catalog, committer, &log, &topic, &stopped).instrument(span).await {
                    Ok(()) => *backoff = Backoff::default(),
                    Err(error) => {
                        reopen = true;
                        tracing::warn!(topic = %topic.name, %error, "iceberg commit failed; retrying");
                        let message = error.to_string();
                        sink.update(&topic.name, |state| {
                            state.errors += 1;
                            state.last_error = Some(message);
                        });
                        fail(backoff, settings.retry_backoff_ms_max);
                    }
                }
            }
            // Maintenance is the job of the broker leading the first partition.
            if settings.maintenance.interval_ms > 0
                && topic.partition(0).is_some_and(|p| p.is_leading())
                && maintenance_due.get(&topic.name).is_none_or(|due| Instant::now() >= *due)
                && !*stopped.borrow()
            {
                let span = tracing::info_span!("maintenance", topic = %topic.name);
                let sweep_every = Duration::from_millis(settings.maintenance.orphan_min_age_ms / 4);
                let sweep = last_sweep.get(&topic.name).is_none_or(|at| at.elapsed() >= sweep_every);
                if maintain_topic(&sink, catalog, committer, files, &topic, sweep).instrument(span).await && sweep {
                    last_sweep.insert(topic.name.clone(), Instant::now());
                }
                let next = Instant::now() + Duration::from_millis(settings.maintenance.interval_ms);
                maintenance_due.insert(topic.name.clone(), next);
            }
        }
        if reopen && matches!(settings.catalog, super::CatalogLocation::Rest { .. }) {
            (catalog, committer, files) = (None, None, None);
        }
        maintenance_due.retain(|name, _| log.log().topic(name).is_some());
        last_sweep.retain(|name, _| log.log().topic(name).is_some());
        backoffs.retain(|name, _| log.log().topic(name).is_some());
    }
}

fn ready(backoff: &Backoff) -> bool {
    backoff.retry_at.is_none_or(|at| Instant::now() >= at)
}

/// Doubles the wait from one second up to the maximum.
fn fail(backoff: &mut Backoff, wait_ms_max: u64) {
    backoff.failures = backoff.failures.saturating_add(1);
    let wait_ms = 1000u64.saturating_mul(1 << backoff.failures.min(20).saturating_sub(1)).min(wait_ms_max);
    backoff.retry_at = Some(Instant::now() + Duration::from_millis(wait_ms));
}

/// The catalog, maintenance's commit connection, and the warehouse lister; one S3 client (made
/// here, on the sink's runtime, so that its connections and requests stay on the sink's thread)
/// serves both the tables' file I/O and the lister.
async fn open_all(sink: &IcebergSink) -> Result<(Arc<dyn Catalog>, Arc<Committer>, Arc<TableFiles>), String> {
    let settings = &sink.settings;
    let s3 = warehouse_s3(settings).await?;
    let catalog = open_catalog(sink, s3.clone()).await.map_err(|e| e.to_string())?;
    let committer = Committer::connect(&settings.catalog)
        .await
        .map_err(|e| redact_catalog_error(&settings.catalog, &e.to_string()))?;
    Ok((catalog, Arc::new(committer), Arc::new(TableFiles::new(s3))))
}

/// The S3 client of the warehouse, if it is on S3: a REST catalog's tables are where the
/// catalog puts them, most likely on S3, reached through `--s3-endpoint` and `--s3-region`
/// (and the usual AWS credentials).
async fn warehouse_s3(settings: &super::IcebergSettings) -> Result<Option<S3Files>, String> {
    let on_s3 =
        matches!(settings.catalog, super::CatalogLocation::Rest { .. }) || S3Path::parse(&settings.warehouse).is_some();
    if !on_s3 {
        return Ok(None);
    }
    Ok(Some(S3Files::connect(&settings.s3).await.map_err(|e| e.to_string())?))
}

/// Connections each of the sink's and the REST readers' catalogs opens at most.
pub const CATALOG_CONNECTIONS_MAX: u32 = 4;

async fn open_catalog(sink: &IcebergSink, s3: Option<S3Files>) -> Result<Arc<dyn Catalog>, SinkError> {
    let settings = &sink.settings;
    let storage = Arc::new(WarehouseStorageFactory::new(s3));
    let catalog: Arc<dyn Catalog> = match &settings.catalog {
        super::CatalogLocation::Rest { uri, properties } => {
            let mut properties: HashMap<String, String> =
                properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            properties.insert("uri".to_string(), uri.clone());
            Arc::new(
                RestCatalogBuilder::default()
                    .with_storage_factory(storage)
                    .load(CATALOG_NAME, properties)
                    .await
                    .map_err(|e| SinkError::Catalog(e.to_string()))?,
            )
        }
        _ => Arc::new(open_sql_catalog(settings, storage).await?),
    };
    let namespace = NamespaceIdent::new(settings.namespace.clone());
    if !catalog.namespace_exists(&namespace).await? {
        catalog.create_namespace(&namespace, HashMap::new()).await?;
    }
    tracing::info!(catalog = %settings.catalog, warehouse = %settings.warehouse, "iceberg catalog opened");
    Ok(catalog)
}

async fn open_sql_catalog(
    settings: &super::IcebergSettings,
    storage: Arc<WarehouseStorageFactory>,
) -> Result<iceberg_catalog_sql::SqlCatalog, SinkError> {
    let bind_style = match &settings.catalog {
        super::CatalogLocation::Sqlite(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ::iceberg::Error::new(::iceberg::ErrorKind::Unexpected, e.to_string()))?;
            }
            SqlBindStyle::QMark
        }
        _ => SqlBindStyle::DollarNumeric,
    };
    let catalog = SqlCatalogBuilder::default()
        .uri(settings.catalog.uri())
        .warehouse_location(settings.warehouse.clone())
        .sql_bind_style(bind_style)
        .with_storage_factory(storage)
        // The sink commits one table at a time per task; sqlx's default of 10 connections per
        // pool, times the brokers of a cluster, would exhaust a PostgreSQL's `max_connections`.
        .load(CATALOG_NAME, HashMap::from([("pool.max-connections".to_string(), CATALOG_CONNECTIONS_MAX.to_string())]))
        .await
        .map_err(|e| SinkError::Catalog(redact_catalog_error(&settings.catalog, &e.to_string())))?;
    Ok(catalog)
}

/// The catalog for readers (the REST catalog the HTTP listener serves): its own connections, on
/// the caller's runtime, so that serving readers never waits behind the sink's commits.
pub async fn open_reader_catalog(sink: &IcebergSink) -> Result<Arc<dyn Catalog>, String> {
    let s3 = warehouse_s3(&sink.settings).await?;
    open_catalog(sink, s3).await.map_err(|e| e.to_string())
}

/// sqlx's connection errors may quote the URL; the password must not reach the log or the
/// admin view through them.
fn redact_catalog_error(catalog: &super::CatalogLocation, text: &str) -> String {
    match catalog {
        super::CatalogLocation::Postgres(url) => text.replace(url.as_str(), &catalog.to_string()),
        _ => text.to_string(),
    }
}

/// One maintenance pass over a topic's table (see `compact`); failures are counted and logged,
/// and the next pass is at the next interval. Returns whether the pass ran through on a table.
async fn maintain_topic(
    sink: &IcebergSink,
    catalog: &dyn Catalog,
    committer: &Committer,
    files: &TableFiles,
    topic: &Topic,
    sweep: bool,
) -> bool {
    let settings = &sink.settings;
    let ident = TableIdent::new(NamespaceIdent::new(settings.namespace.clone()), topic.name.clone());
    let maintainer = Maintainer {
        catalog,
        committer,
        files,
        settings: &settings.maintenance,
        target_file_bytes: settings.target_file_bytes as u64,
        row_group_rows_max: settings.row_group_rows_max,
        rewrite_bytes_max: settings.commit_bytes_max as u64,
    };
    let result: Result<_, MaintenanceError> = async {
        if !catalog.table_exists(&ident).await? {
            return Ok(None);
        }
        let table = catalog.load_table(&ident).await?;
        Ok(Some(maintainer.run(table, now_ms(), sweep).await?))
    }
    .await;
    match result {
        Ok(None) => false,
        Ok(Some(outcome)) => {
            if outcome != (Outcome { live_data_files: outcome.live_data_files, ..Outcome::default() }) {
                tracing::info!(
                    rewritten = outcome.files_rewritten,
                    written = outcome.files_written,
                    bytes = outcome.bytes_rewritten,
                    manifests = outcome.manifests_folded,
                    expired = outcome.snapshots_expired,
                    deleted = outcome.files_deleted,
                    orphans = outcome.orphans_deleted,
                    "iceberg table maintained"
                );
            }
            sink.update(&topic.name, |state| {
                state.compactions += outcome.rewrites;
                state.compaction_files_rewritten += outcome.files_rewritten;
                state.compaction_files_written += outcome.files_written;
                state.compaction_bytes_rewritten += outcome.bytes_rewritten;
                state.snapshots_expired += outcome.snapshots_expired;
                state.unreferenced_files_deleted += outcome.files_deleted;
                state.orphan_files_deleted += outcome.orphans_deleted;
                state.live_data_files = outcome.live_data_files;
                state.last_maintenance_error = None;
            });
            true
        }
        Err(error) => {
            tracing::warn!(topic = %topic.name, %error, "iceberg maintenance failed; trying again next interval");
            let message = error.to_string();
            sink.update(&topic.name, |state| {
                state.maintenance_errors += 1;
                state.last_maintenance_error = Some(message);
            });
            false
        }
    }
}

/// Rounds until the table has caught up with the log (each round is one commit), or until the
/// broker stops: a backlog is left between rounds, never in the middle of one.
async fn sync_topic(
    sink: &IcebergSink,
    catalog: &dyn Catalog,
    committer: &Committer,
    log: &UnifiedLog,
    topic: &Topic,
    stopped: &watch::Receiver<bool>,
) -> Result<(), SinkError> {
    // Another writer's commit between this one's load and its swap (a cluster's other
    // partition leaders) is no failure: the round starts over from the new snapshot.
    let mut conflicts = 0;
    while !*stopped.borrow() {
        let table = load_or_create(sink, catalog, topic).await?;
        let committed = match committed_offsets(&table, topic) {
            Err(SinkError::OtherTopic { found, .. }) => {
                archive(catalog, &table, &found).await?;
                continue;
            }
            committed => committed?,
        };
        sink.update(&topic.name, |state| state.committed = committed.clone());
        match commit_round(sink, catalog, committer, log, topic, table, committed).await {
            Ok(true) => conflicts = 0,
            Ok(false) => break,
            Err(error) if error.is_conflict() && conflicts < COMMIT_CONFLICTS_MAX => {
                conflicts += 1;
                tracing::debug!(%error, conflicts, "another writer committed first; starting the round over");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

async fn load_or_create(sink: &IcebergSink, catalog: &dyn Catalog, topic: &Topic) -> Result<Table, SinkError> {
    let ident = TableIdent::new(NamespaceIdent::new(sink.settings.namespace.clone()), topic.name.clone());
    if catalog.table_exists(&ident).await? {
        return Ok(catalog.load_table(&ident).await?);
    }
    // Beside an archived table of an earlier topic of this name, the new table gets a directory
    // of its own: the archived table's files stay where they are, and the new table's orphan
    // sweep must never see them.
    let archived_prefix = format!("{}{ARCHIVED_TABLE_SEPARATOR}", topic.name);
    let mut location = None;
    for archived in catalog.list_tables(ident.namespace()).await? {
        if archived.name().starts_with(&archived_prefix) {
            let archived = catalog.load_table(&archived).await?;
            let base = archived.metadata().location().trim_end_matches('/').to_string();
            location = Some(format!("{base}-{}", topic.id.simple()));
            break;
        }
    }
    let creation = TableCreation::builder()
        .name(topic.name.clone())
        .schema(table::schema()?)
        .partition_spec(table::partition_spec(sink.settings.partition_by)?)
        .properties(table::properties())
        .location_opt(location)
        .build();
    let created = catalog.create_table(ident.namespace(), creation).await?;
    tracing::info!(table = %ident, "iceberg table created");
    Ok(created)
}

/// Between a topic's name and the id of the earlier topic whose table was archived under it.
const ARCHIVED_TABLE_SEPARATOR: &str = "__";

/// The table holds the rows of an earlier topic of the same name (deleted, then created again):
/// it is kept whole under `<topic>__<old topic id, no hyphens>` for queries, and the new topic
/// gets a table of its own on the next round, rather than mixing two topics' offsets in one.
async fn archive(catalog: &dyn Catalog, table: &Table, old_topic_id: &str) -> Result<(), SinkError> {
    let from = table.identifier();
    let name = format!("{}{ARCHIVED_TABLE_SEPARATOR}{}", from.name(), old_topic_id.replace('-', ""));
    let to = TableIdent::new(from.namespace().clone(), name);
    catalog.rename_table(from, &to).await?;
    tracing::warn!(table = %from, archived_as = %to, "the table held an earlier topic of this name; archived it");
    Ok(())
}

/// The next offset per partition recorded by the newest snapshot of the table's history that
/// the sink wrote (none: the table is empty). Snapshots written by other engines (a file rewrite
/// by Spark, say) carry no offsets and are passed over; if none in the history has them although
/// the table has snapshots, the table is refused rather than filled again from offset 0.
fn committed_offsets(table: &Table, topic: &Topic) -> Result<BTreeMap<i32, i64>, SinkError> {
    let metadata = table.metadata();
    let mut snapshot = metadata.current_snapshot().cloned();
    let has_history = snapshot.is_some();
    while let Some(current) = snapshot {
        let properties = &current.summary().additional_properties;
        if let Some(found) = properties.get(TOPIC_ID_PROPERTY) {
            if found != &topic.id.to_string() {
                return Err(SinkError::OtherTopic {
                    table: table.identifier().to_string(),
                    found: found.clone(),
                    expected: topic.id,
                });
            }
            return Ok(properties
                .iter()
                .filter_map(|(name, value)| {
                    let partition = name.strip_prefix(NEXT_OFFSET_PROPERTY_PREFIX)?.parse().ok()?;
                    Some((partition, value.parse().ok()?))
                })
                .collect());
        }
        snapshot = current.parent_snapshot_id().and_then(|id| metadata.snapshot_by_id(id)).cloned();
    }
    if has_history {
        return Err(SinkError::NoOffsets { table: table.identifier().to_string() });
    }
    Ok(BTreeMap::new())
}

/// What one round took in, beside the files.
#[derive(Default)]
struct Intake {
    records: u64,
    skipped_below_log_start: u64,
    control_records: u64,
    aborted_records: u64,
    header_keys_replaced: u64,
    timestamps_out_of_range: u64,
}

/// One commit; returns whether more is waiting (the round stopped at its byte budget).
async fn commit_round(
    sink: &IcebergSink,
    catalog: &dyn Catalog,
    committer: &Committer,
    log: &UnifiedLog,
    topic: &Topic,
    table: Table,
    committed: BTreeMap<i32, i64>,
) -> Result<bool, SinkError> {
    let settings = &sink.settings;
    let started = Instant::now();
    // Before any high watermark is read: if the round takes in every partition up to the high
    // watermark it reads, the table then holds everything appended before this instant.
    let started_ms = now_ms();
    let mut complete = true;
    let mut next = committed.clone();
    let mut intake = Intake::default();
    let mut writer: Option<CommitWriter> = None;
    // Counted in decoded record bytes: Parquet output is smaller, so a round takes in several
    // times the target file size (see `commit_bytes_max`); memory does not grow with it, since
    // rows stream into the writers.
    let mut budget = settings.commit_bytes_max;
    let mut read_bytes = 0usize;
    let mut more = false;
    // Only partitions led here: their records are complete in this broker's log. Leadership may
    // move during the round; what counts at commit is the set read here, whose rows are in the
    // files.
    let taken: Vec<i32> = topic.partitions.iter().filter(|p| p.is_leading()).map(|p| p.index).collect();
    for partition in topic.partitions.iter().filter(|p| taken.contains(&p.index)) {
        let mut offset = committed.get(&partition.index).copied().unwrap_or(0);
        let log_start = partition.log_start();
        if offset < log_start {
            intake.skipped_below_log_start += u64::try_from(log_start - offset).unwrap_or(0);
            offset = log_start;
        }
        let end = partition.high_watermark();
        while offset < end {
            if budget == 0 {
                more = true;
                break;
            }
            let request = ReadRequest {
                partition: partition.clone(),
                offset,
                max_bytes: settings.read_bytes_max,
                at_least_one: true,
                // A table holds what consumers that read committed records see.
                isolation: Isolation::Committed,
                verify_checksums: true,
            };
            let read = log.read(vec![request], settings.read_bytes_max).await.pop().ok_or(LogError::Unavailable)?;
            let read = match read {
                Ok(read) => read,
                // Retention moved the start while we read: skip to it (counted next round).
                Err(LogError::OffsetOutOfRange) if partition.log_start() > offset => break,
                Err(error) => return Err(error.into()),
            };
            let decoded = records::decode(
                &read.records,
                partition.index,
                offset,
                log.log().record_batch_decompressed_bytes_max(),
                &read.aborted,
            )?;
            if decoded.next_offset <= offset {
                // Nothing readable (a gap in the log): leave it for the next round.
                break;
            }
            read_bytes += read.records.len();
            budget = budget.saturating_sub(decoded.rows.iter().map(records::Row::size_bytes).sum());
            intake.records += decoded.rows.len() as u64;
            intake.control_records += decoded.control_records;
            intake.aborted_records += decoded.aborted_records;
            intake.header_keys_replaced += decoded.unrepresentable.header_keys_replaced;
            intake.timestamps_out_of_range += decoded.unrepresentable.timestamps_out_of_range;
            if !decoded.rows.is_empty() {
                let writer = match &mut writer {
                    Some(writer) => writer,
                    None => writer.insert(CommitWriter::new(
                        &table,
                        settings.target_file_bytes,
                        settings.row_group_rows_max,
                    )?),
                };
                writer.write(&decoded.rows).await?;
            }
            offset = decoded.next_offset;
        }
        complete &= offset >= end;
        if offset > committed.get(&partition.index).copied().unwrap_or(0) {
            next.insert(partition.index, offset);
        }
    }
    if next == committed {
        return Ok(false);
    }
    let files = match writer {
        Some(writer) => writer.close().await?,
        None => Vec::new(),
    };
    // The partitions this round took in must still be where it started (see the module
    // comment); in a cluster, the others' leaders may have committed theirs meanwhile, and
    // those offsets are carried forward as the table has them now. Each partition whose rows
    // are in the files gets its offset in this same snapshot, even if its leadership moved
    // during the round: leaving one out would let its next leader write its rows again.
    let written = started.elapsed();
    let file_count = files.len() as u64;
    let file_bytes: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
    let mut swaps_lost = 0;
    loop {
        let current = catalog.load_table(table.identifier()).await?;
        let mut merged = committed_offsets(&current, topic)?;
        if taken.iter().any(|p| merged.get(p) != committed.get(p)) {
            return Err(SinkError::Moved);
        }
        for partition in &taken {
            if let Some(offset) = next.get(partition) {
                merged.insert(*partition, *offset);
            }
        }
        let mut properties: HashMap<String, String> =
            merged.iter().map(|(p, o)| (format!("{NEXT_OFFSET_PROPERTY_PREFIX}{p}"), o.to_string())).collect();
        properties.insert(TOPIC_ID_PROPERTY.to_string(), topic.id.to_string());
        let transaction = Transaction::new(&current);
        let action = transaction.fast_append().add_data_files(files.clone()).set_snapshot_properties(properties);
        // A swap from `current`: the offsets above are right only on top of it (see `commit`).
        match committer.commit_transaction(&current, action.apply(transaction)?).await {
            Ok(_) => break,
            // Another partition's leader committed between the load and the swap: this round's
            // partitions are checked again on the new table, and the same files go on top of it.
            Err(error)
                if error.kind() == ::iceberg::ErrorKind::CatalogCommitConflicts
                    && swaps_lost < COMMIT_CONFLICTS_MAX =>
            {
                swaps_lost += 1;
                tracing::debug!(%error, swaps_lost, "another writer committed first; merging again");
            }
            Err(error) => return Err(error.into()),
        }
    }
    tracing::debug!(
        records = intake.records,
        read_bytes,
        record_bytes = settings.commit_bytes_max - budget,
        files = file_count,
        file_bytes,
        write_ms = written.as_millis() as u64,
        commit_ms = (started.elapsed() - written).as_millis() as u64,
        "iceberg commit"
    );
    sink.update(&topic.name, |state| {
        state.committed = next;
        state.last_commit_ms = Some(now_ms());
        state.commits += 1;
        state.records_written += intake.records;
        state.data_files += file_count;
        state.data_file_bytes += file_bytes;
        state.skipped_below_log_start += intake.skipped_below_log_start;
        state.control_records += intake.control_records;
        state.aborted_records += intake.aborted_records;
        state.header_keys_replaced += intake.header_keys_replaced;
        state.timestamps_out_of_range += intake.timestamps_out_of_range;
        state.last_error = None;
        if complete {
            state.caught_up_at_ms = Some(started_ms);
        }
    });
    Ok(more)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::log::topic_config::{BrokerDefaults, TopicConfig};

    fn topic(name: &str) -> Topic {
        Topic {
            name: name.to_string(),
            id: Uuid::new_v4(),
            number: 1,
            partitions: Vec::new(),
            config: TopicConfig::resolve(BTreeMap::new(), &BrokerDefaults::basic(-1, -1, 1 << 20)),
            metrics: std::sync::OnceLock::new(),
        }
    }

    /// An empty fast-append snapshot with the given summary properties.
    async fn commit(catalog: &dyn Catalog, table: &Table, properties: &[(&str, String)]) -> Table {
        let properties = properties.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let transaction = Transaction::new(table);
        let action = transaction.fast_append().set_snapshot_properties(properties);
        action.apply(transaction).unwrap().commit(catalog).await.unwrap()
    }

    /// The offsets come from the newest snapshot the sink wrote, past snapshots of other engines;
    /// a table of another topic, or with history but none of ours, is refused.
    #[tokio::test]
    async fn offsets_come_from_the_newest_own_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let flags = ["zombi", "--data-dir", data_dir, "--iceberg-commit-interval-ms", "1000"];
        let config =
            crate::config::Config::try_parse_from(flags.into_iter().chain(["--iceberg-target-file-bytes", "1048576"]));
        let sink = IcebergSink::new(config.unwrap().iceberg);
        let catalog = open_catalog(&sink, None).await.unwrap();
        let catalog = &*catalog;
        let ours = topic("orders.v1-eu");
        let table = load_or_create(&sink, catalog, &ours).await.unwrap();
        assert_eq!(committed_offsets(&table, &ours).unwrap(), BTreeMap::new());

        let id = ours.id.to_string();
        let next = |p: i32| format!("{NEXT_OFFSET_PROPERTY_PREFIX}{p}");
        let table =
            commit(catalog, &table, &[(&next(0), "5".into()), (&next(1), "7".into()), (TOPIC_ID_PROPERTY, id)]).await;
        let table = commit(catalog, &table, &[("written-by", "spark".into())]).await;
        assert_eq!(committed_offsets(&table, &ours).unwrap(), BTreeMap::from([(0, 5), (1, 7)]));

        let other = Topic { id: Uuid::new_v4(), ..topic("orders.v1-eu") };
        assert!(matches!(committed_offsets(&table, &other), Err(SinkError::OtherTopic { .. })));

        let foreign = topic("foreign");
        let table = load_or_create(&sink, catalog, &foreign).await.unwrap();
        let table = commit(catalog, &table, &[("written-by", "spark".into())]).await;
        assert!(matches!(committed_offsets(&table, &foreign), Err(SinkError::NoOffsets { .. })));
    }

    /// A snapshot's offsets are committed only on top of the table they were computed from: a
    /// writer whose table another writer committed to meanwhile gets a conflict, and the other
    /// writer's offsets stay (iceberg-rust's own commit re-applied the append on the newer table
    /// and set them back, so that partition's rows were written twice).
    #[tokio::test]
    async fn a_commit_on_a_table_another_writer_moved_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let flags = ["zombi", "--data-dir", dir.path().to_str().unwrap()];
        let sink = IcebergSink::new(crate::config::Config::try_parse_from(flags).unwrap().iceberg);
        let catalog = open_catalog(&sink, None).await.unwrap();
        let catalog = &*catalog;
        let committer = Committer::connect(&sink.settings.catalog).await.unwrap();
        let ours = topic("moved");
        let id = ours.id.to_string();
        let next = |p: i32| format!("{NEXT_OFFSET_PROPERTY_PREFIX}{p}");
        let snapshot = |offsets: &[(i32, i64)]| -> HashMap<String, String> {
            let mut properties: HashMap<String, String> =
                offsets.iter().map(|(p, o)| (next(*p), o.to_string())).collect();
            properties.insert(TOPIC_ID_PROPERTY.to_string(), id.clone());
            properties
        };
        let append = |table: &Table, offsets: &[(i32, i64)]| {
            let transaction = Transaction::new(table);
            let action = transaction.fast_append().set_snapshot_properties(snapshot(offsets));
            action.apply(transaction).unwrap()
        };
        let base = load_or_create(&sink, catalog, &ours).await.unwrap();
        let first = committer.commit_transaction(&base, append(&base, &[(0, 5), (1, 0)])).await.unwrap();
        assert_eq!(committed_offsets(&first, &ours).unwrap(), BTreeMap::from([(0, 5), (1, 0)]));

        // Writer A read `first`; writer B commits partition 0's next rows on it.
        let b = committer.commit_transaction(&first, append(&first, &[(0, 9), (1, 0)])).await.unwrap();
        assert_eq!(committed_offsets(&b, &ours).unwrap(), BTreeMap::from([(0, 9), (1, 0)]));
        let stale = committer.commit_transaction(&first, append(&first, &[(0, 5), (1, 4)])).await;
        let error = stale.expect_err("a commit on a table that moved");
        assert_eq!(error.kind(), ::iceberg::ErrorKind::CatalogCommitConflicts);
        let now = catalog.load_table(first.identifier()).await.unwrap();
        assert_eq!(now.metadata().current_snapshot_id(), b.metadata().current_snapshot_id());
        assert_eq!(committed_offsets(&now, &ours).unwrap(), BTreeMap::from([(0, 9), (1, 0)]));

        // Started over from the table as it is, the commit goes through.
        let retried = committer.commit_transaction(&now, append(&now, &[(0, 9), (1, 4)])).await.unwrap();
        let reloaded = catalog.load_table(first.identifier()).await.unwrap();
        assert_eq!(reloaded.metadata_location(), retried.metadata_location());
        assert_eq!(committed_offsets(&reloaded, &ours).unwrap(), BTreeMap::from([(0, 9), (1, 4)]));
    }

    #[test]
    fn backoff_doubles_from_a_second_up_to_the_maximum() {
        let mut backoff = Backoff::default();
        assert!(ready(&backoff));
        let waits: Vec<u64> = (0..12)
            .map(|_| {
                let before = Instant::now();
                fail(&mut backoff, 300_000);
                backoff.retry_at.map_or(0, |at| at.duration_since(before).as_millis() as u64) / 1000
            })
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert!(!ready(&backoff));
    }
}
