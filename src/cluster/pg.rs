//! The cluster's shared state in PostgreSQL (`--coordinator postgres://…`): brokers and their
//! leases, the controller lease, topics, each partition's leader and leader epoch (with the
//! history of epochs), the segment index, producer-id blocks, dynamic configs. Every time on
//! which a lease depends is PostgreSQL's own clock (`clock_timestamp()`), never a broker's.
//!
//! Zombi creates and migrates its own tables (prefixed `zombi_`, so they can share a database
//! with the Iceberg catalog's); `zombi_schema` records the version.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("coordinator: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("coordinator: {0}")]
    Invalid(String),
}

/// The schema, one statement per step; a database at version `n` runs the steps after `n`.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE zombi_cluster (
        id int PRIMARY KEY CHECK (id = 1),
        cluster_id text NOT NULL,
        next_producer_id bigint NOT NULL DEFAULT 0,
        next_topic_number int NOT NULL DEFAULT 1,
        controller int,
        controller_epoch bigint NOT NULL DEFAULT 0,
        controller_until_ms bigint NOT NULL DEFAULT 0,
        metadata_version bigint NOT NULL DEFAULT 0)",
    "CREATE TABLE zombi_brokers (
        node_id int PRIMARY KEY,
        broker_epoch bigint NOT NULL,
        host text NOT NULL,
        port int NOT NULL,
        rack text,
        lease_until_ms bigint NOT NULL,
        shutting_down boolean NOT NULL DEFAULT false)",
    "CREATE TABLE zombi_topics (
        topic_id text PRIMARY KEY,
        name text NOT NULL UNIQUE,
        number int NOT NULL UNIQUE,
        partitions int NOT NULL,
        configs text NOT NULL)",
    "CREATE TABLE zombi_partitions (
        topic_id text NOT NULL,
        partition int NOT NULL,
        leader int NOT NULL,
        leader_epoch int NOT NULL,
        target_leader int,
        log_start bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (topic_id, partition))",
    "CREATE TABLE zombi_partition_epochs (
        topic_id text NOT NULL,
        partition int NOT NULL,
        leader_epoch int NOT NULL,
        leader int NOT NULL,
        end_offset bigint,
        PRIMARY KEY (topic_id, partition, leader_epoch))",
    "CREATE TABLE zombi_segments (
        topic_id text NOT NULL,
        partition int NOT NULL,
        base_offset bigint NOT NULL,
        next_offset bigint NOT NULL,
        max_timestamp bigint NOT NULL,
        size_bytes bigint NOT NULL,
        PRIMARY KEY (topic_id, partition, base_offset))",
    "CREATE TABLE zombi_dynamic_configs (scope text PRIMARY KEY, configs text NOT NULL)",
    // Consumer groups: records and committed offsets, by the slot that places a group on its
    // coordinator; each slot is a row of zombi_partitions under GROUPS_TOPIC_ID, led like any
    // partition.
    "CREATE TABLE zombi_groups (group_id text PRIMARY KEY, slot int NOT NULL, record bytea NOT NULL)",
    "CREATE TABLE zombi_offsets (
        group_id text NOT NULL,
        slot int NOT NULL,
        topic text NOT NULL,
        partition int NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (group_id, topic, partition))",
    "INSERT INTO zombi_partitions (topic_id, partition, leader, leader_epoch)
        SELECT '00000000-0000-0000-0000-000000000000', slot, -1, 0 FROM generate_series(0, 49) AS slot",
    "INSERT INTO zombi_partition_epochs (topic_id, partition, leader_epoch, leader)
        SELECT '00000000-0000-0000-0000-000000000000', slot, 0, -1 FROM generate_series(0, 49) AS slot",
    // The broker epoch of the leader that served an epoch (set before it serves): a leader that
    // has since registered again sealed that incarnation's streams itself.
    "ALTER TABLE zombi_partition_epochs ADD COLUMN broker_epoch bigint",
    // Each broker's address on every listener, `NAME://HOST:PORT,…` (empty: registered by a
    // version that had one listener, at host and port).
    "ALTER TABLE zombi_brokers ADD COLUMN listeners text NOT NULL DEFAULT ''",
    // The partition's producer snapshot as of the segment's end, which a takeover starts from.
    "ALTER TABLE zombi_segments ADD COLUMN producers bytea",
    // Each transactional id's state (the transaction coordinator's record), in the group slot
    // that places its coordinator.
    "CREATE TABLE zombi_transactions (transactional_id text PRIMARY KEY, slot int NOT NULL, record bytea NOT NULL)",
    // The offsets a producer's transaction in progress commits for a group (TxnOffsetCommit),
    // kept by the group's coordinator until the transaction's marker reaches it.
    "CREATE TABLE zombi_pending_offsets (
        group_id text NOT NULL,
        producer_id bigint NOT NULL,
        slot int NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (group_id, producer_id))",
];

/// The pseudo-topic whose partitions are the group coordinator slots (Kafka's
/// `__consumer_offsets`), never shown to clients.
pub const GROUPS_TOPIC_ID: Uuid = Uuid::nil();

/// The milliseconds of PostgreSQL's clock, in SQL.
const NOW_MS: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A broker as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRow {
    pub node_id: i32,
    pub broker_epoch: i64,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// Its address on every listener, `NAME://HOST:PORT,…` (see [`super::ListenerAddress`]).
    pub listeners: String,
    /// Whether its lease has not expired (by PostgreSQL's clock when read).
    pub live: bool,
    /// How long its lease had left when read (negative: expired that long ago).
    pub lease_remaining_ms: i64,
    pub shutting_down: bool,
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRow {
    pub id: Uuid,
    pub name: String,
    pub number: u32,
    pub partitions: u32,
    pub configs: BTreeMap<String, String>,
}

/// A partition's leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionRow {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    /// Set by the controller when the partition should move to another live broker: its
    /// leader hands it over (controlled move).
    pub target_leader: Option<i32>,
    pub log_start: i64,
}

/// One leadership of a partition: who led it at an epoch, and where that epoch ended when its
/// leader handed the partition over (unknown after a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochRow {
    pub leader_epoch: i32,
    pub leader: i32,
    pub end_offset: Option<i64>,
    /// The leader's broker epoch when it began serving this epoch (`None`: it never did).
    pub broker_epoch: Option<i64>,
}

/// A segment in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRow {
    pub base_offset: i64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub size_bytes: i64,
    /// The producers' state as of `next_offset` (`log::producer::encode_snapshot`); `None` for
    /// a segment recorded before it was kept.
    pub producers: Option<Vec<u8>>,
}

/// Everything a broker's metadata cache holds, read in one go.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: i64,
    pub controller: Option<i32>,
    pub brokers: Vec<BrokerRow>,
    pub topics: Vec<TopicRow>,
    pub partitions: Vec<PartitionRow>,
    pub dynamic_configs: BTreeMap<String, BTreeMap<String, String>>,
}

/// The cluster's PostgreSQL.
#[derive(Debug, Clone)]
pub struct ClusterStore {
    pool: PgPool,
    /// Lease renewals only, on a connection opened at start and kept: a burst of other work
    /// (a joining broker loading its group slots and partitions) or a PostgreSQL at its
    /// `max_connections` must never starve the lease, or the broker stops when it lapses.
    lease_pool: PgPool,
}

/// Connections a broker opens to the cluster's PostgreSQL at most (docs/cluster.md counts them).
pub const POOL_CONNECTIONS_MAX: u32 = 8;
const LEASE_CONNECTIONS: u32 = 1;

fn uuid_of(text: &str) -> Result<Uuid, PgError> {
    Uuid::parse_str(text).map_err(|e| PgError::Invalid(format!("topic id {text:?}: {e}")))
}

fn configs_of(text: &str) -> Result<BTreeMap<String, String>, PgError> {
    serde_json::from_str(text).map_err(|e| PgError::Invalid(format!("configs: {e}")))
}

fn json(configs: &BTreeMap<String, String>) -> String {
    serde_json::to_string(configs).unwrap_or_else(|_| "{}".to_string())
}

impl ClusterStore {
    /// Connects (with `statement_timeout` bounding every query) and brings the schema up to date.
    pub async fn connect(url: &str, query_timeout: Duration) -> Result<ClusterStore, PgError> {
        let timeout_ms = query_timeout.as_millis().max(1);
        let options = || {
            PgPoolOptions::new().acquire_timeout(query_timeout).after_connect(move |connection, _| {
                Box::pin(async move {
                    sqlx::query(&format!("SET statement_timeout = {timeout_ms}")).execute(&mut *connection).await?;
                    Ok(())
                })
            })
        };
        let pool = options().max_connections(POOL_CONNECTIONS_MAX).connect(url).await?;
        let lease_pool = options()
            .max_connections(LEASE_CONNECTIONS)
            .min_connections(LEASE_CONNECTIONS)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect(url)
            .await?;
        let store = ClusterStore { pool, lease_pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), PgError> {
        let mut tx = self.pool.begin().await?;
        // One migrator at a time, whichever broker starts first.
        sqlx::query("SELECT pg_advisory_xact_lock(7264001)").execute(&mut *tx).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS zombi_schema (version int NOT NULL)").execute(&mut *tx).await?;
        let version: Option<i32> =
            sqlx::query("SELECT version FROM zombi_schema").fetch_optional(&mut *tx).await?.map(|row| row.get(0));
        let version = match version {
            Some(version) => version as usize,
            None => {
                sqlx::query("INSERT INTO zombi_schema (version) VALUES (0)").execute(&mut *tx).await?;
                0
            }
        };
        if version > MIGRATIONS.len() {
            return Err(PgError::Invalid(format!(
                "the database's zombi schema is version {version}, newer than this broker's {}",
                MIGRATIONS.len()
            )));
        }
        for step in &MIGRATIONS[version..] {
            sqlx::query(step).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE zombi_schema SET version = $1").bind(MIGRATIONS.len() as i32).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The cluster id, set by the first broker to ask (to `proposed`).
    pub async fn cluster_id(&self, proposed: &str) -> Result<String, PgError> {
        sqlx::query("INSERT INTO zombi_cluster (id, cluster_id) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
            .bind(proposed)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("SELECT cluster_id FROM zombi_cluster WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(row.get(0))
    }

    /// Registers this broker with a lease of `lease_ms`. Refused while another live broker
    /// holds the node id; returns the new broker epoch.
    pub async fn register(
        &self,
        node_id: i32,
        host: &str,
        port: i32,
        listeners: &str,
        rack: Option<&str>,
        lease_ms: i64,
    ) -> Result<Option<i64>, PgError> {
        let sql = format!(
            "INSERT INTO zombi_brokers AS b (node_id, broker_epoch, host, port, rack, lease_until_ms, listeners)
             VALUES ($1, 1, $2, $3, $4, {NOW_MS} + $5, $6)
             ON CONFLICT (node_id) DO UPDATE SET broker_epoch = b.broker_epoch + 1, host = $2, port = $3,
                 rack = $4, lease_until_ms = {NOW_MS} + $5, shutting_down = false, listeners = $6
             WHERE b.lease_until_ms < {NOW_MS}
             RETURNING broker_epoch"
        );
        let row = sqlx::query(&sql)
            .bind(node_id)
            .bind(host)
            .bind(port)
            .bind(rack)
            .bind(lease_ms)
            .bind(listeners)
            .fetch_optional(&self.pool)
            .await?;
        if row.is_some() {
            self.bump_version().await?;
        }
        Ok(row.map(|row| row.get(0)))
    }

    /// Renews this broker's lease while it has not expired; false when the registration is no
    /// longer ours or its lease ran out (the controller may have moved its partitions since).
    pub async fn renew(&self, node_id: i32, broker_epoch: i64, lease_ms: i64) -> Result<bool, PgError> {
        let sql = format!(
            "UPDATE zombi_brokers SET lease_until_ms = {NOW_MS} + $3
             WHERE node_id = $1 AND broker_epoch = $2 AND lease_until_ms >= {NOW_MS}"
        );
        let done = sqlx::query(&sql).bind(node_id).bind(broker_epoch).bind(lease_ms).execute(&self.lease_pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks this broker as shutting down: the controller moves its partitions away.
    pub async fn set_shutting_down(&self, node_id: i32, broker_epoch: i64) -> Result<(), PgError> {
        sqlx::query("UPDATE zombi_brokers SET shutting_down = true WHERE node_id = $1 AND broker_epoch = $2")
            .bind(node_id)
            .bind(broker_epoch)
            .execute(&self.pool)
            .await?;
        self.bump_version().await
    }

    /// Ends this broker's lease at once (after a controlled shutdown).
    pub async fn unregister(&self, node_id: i32, broker_epoch: i64) -> Result<(), PgError> {
        sqlx::query("UPDATE zombi_brokers SET lease_until_ms = 0 WHERE node_id = $1 AND broker_epoch = $2")
            .bind(node_id)
            .bind(broker_epoch)
            .execute(&self.pool)
            .await?;
        self.bump_version().await
    }

    /// Takes or renews the controller lease for this broker; true while it holds it.
    pub async fn hold_controller(&self, node_id: i32, lease_ms: i64) -> Result<bool, PgError> {
        let sql = format!(
            "UPDATE zombi_cluster SET
                controller_epoch = CASE WHEN controller = $1 AND controller_until_ms >= {NOW_MS}
                                        THEN controller_epoch ELSE controller_epoch + 1 END,
                controller = $1, controller_until_ms = {NOW_MS} + $2
             WHERE id = 1 AND (controller = $1 OR controller IS NULL OR controller_until_ms < {NOW_MS})"
        );
        let done = sqlx::query(&sql).bind(node_id).bind(lease_ms).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn bump_version(&self) -> Result<(), PgError> {
        sqlx::query("UPDATE zombi_cluster SET metadata_version = metadata_version + 1 WHERE id = 1")
            .execute(&self.pool)
            .await?;
        sqlx::query("NOTIFY zombi_metadata").execute(&self.pool).await?;
        Ok(())
    }

    async fn bump_version_in(tx: &mut Transaction<'_, Postgres>) -> Result<(), PgError> {
        sqlx::query("UPDATE zombi_cluster SET metadata_version = metadata_version + 1 WHERE id = 1")
            .execute(&mut **tx)
            .await?;
        sqlx::query("NOTIFY zombi_metadata").execute(&mut **tx).await?;
        Ok(())
    }

    /// The metadata version: it changes whenever brokers, topics, leaders or configs do.
    pub async fn version(&self) -> Result<i64, PgError> {
        let row = sqlx::query("SELECT metadata_version FROM zombi_cluster WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(row.get(0))
    }

    /// Everything the metadata cache holds, consistently (one repeatable-read transaction).
    pub async fn snapshot(&self) -> Result<Snapshot, PgError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
        let sql = format!("SELECT metadata_version, controller, controller_until_ms >= {NOW_MS} FROM zombi_cluster");
        let row = sqlx::query(&sql).fetch_one(&mut *tx).await?;
        let (version, controller, controller_live): (i64, Option<i32>, bool) = (row.get(0), row.get(1), row.get(2));
        let sql = format!(
            "SELECT node_id, broker_epoch, host, port, rack, lease_until_ms >= {NOW_MS}, shutting_down,
                    lease_until_ms - {NOW_MS}, listeners
             FROM zombi_brokers ORDER BY node_id"
        );
        let brokers = sqlx::query(&sql)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| BrokerRow {
                node_id: row.get(0),
                broker_epoch: row.get(1),
                host: row.get(2),
                port: row.get(3),
                rack: row.get(4),
                live: row.get(5),
                shutting_down: row.get(6),
                lease_remaining_ms: row.get(7),
                listeners: row.get(8),
            })
            .collect();
        let mut topics = Vec::new();
        for row in sqlx::query("SELECT topic_id, name, number, partitions, configs FROM zombi_topics ORDER BY name")
            .fetch_all(&mut *tx)
            .await?
        {
            let (id, configs): (String, String) = (row.get(0), row.get(4));
            let (number, partitions): (i32, i32) = (row.get(2), row.get(3));
            topics.push(TopicRow {
                id: uuid_of(&id)?,
                name: row.get(1),
                number: number as u32,
                partitions: partitions as u32,
                configs: configs_of(&configs)?,
            });
        }
        let mut partitions = Vec::new();
        for row in sqlx::query(
            "SELECT topic_id, partition, leader, leader_epoch, target_leader, log_start FROM zombi_partitions",
        )
        .fetch_all(&mut *tx)
        .await?
        {
            let id: String = row.get(0);
            partitions.push(PartitionRow {
                topic_id: uuid_of(&id)?,
                partition: row.get(1),
                leader: row.get(2),
                leader_epoch: row.get(3),
                target_leader: row.get(4),
                log_start: row.get(5),
            });
        }
        let mut dynamic_configs = BTreeMap::new();
        for row in sqlx::query("SELECT scope, configs FROM zombi_dynamic_configs").fetch_all(&mut *tx).await? {
            let (scope, configs): (String, String) = (row.get(0), row.get(1));
            dynamic_configs.insert(scope, configs_of(&configs)?);
        }
        tx.commit().await?;
        Ok(Snapshot {
            version,
            controller: controller.filter(|_| controller_live),
            brokers,
            topics,
            partitions,
            dynamic_configs,
        })
    }

    /// Creates a topic with every partition led by `leaders[i]` at epoch 0; the cluster gives it
    /// its number. `None` when the name is taken.
    pub async fn create_topic(
        &self,
        id: Uuid,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
        leaders: &[i32],
    ) -> Result<Option<TopicRow>, PgError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE zombi_cluster SET next_topic_number = next_topic_number + 1 WHERE id = 1
             RETURNING next_topic_number - 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        let number: i32 = row.get(0);
        let inserted = sqlx::query(
            "INSERT INTO zombi_topics (topic_id, name, number, partitions, configs) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(name)
        .bind(number)
        .bind(partitions as i32)
        .bind(json(configs))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(None);
        }
        Self::add_partitions(&mut tx, id, 0, partitions, leaders).await?;
        Self::bump_version_in(&mut tx).await?;
        tx.commit().await?;
        Ok(Some(TopicRow { id, name: name.to_string(), number: number as u32, partitions, configs: configs.clone() }))
    }

    async fn add_partitions(
        tx: &mut Transaction<'_, Postgres>,
        id: Uuid,
        from: u32,
        to: u32,
        leaders: &[i32],
    ) -> Result<(), PgError> {
        for (index, partition) in (from..to).enumerate() {
            let leader = leaders.get(index).copied().unwrap_or(-1);
            sqlx::query(
                "INSERT INTO zombi_partitions (topic_id, partition, leader, leader_epoch) VALUES ($1, $2, $3, 0)",
            )
            .bind(id.to_string())
            .bind(partition as i32)
            .bind(leader)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO zombi_partition_epochs (topic_id, partition, leader_epoch, leader) VALUES ($1, $2, 0, $3)",
            )
            .bind(id.to_string())
            .bind(partition as i32)
            .bind(leader)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Replaces a topic's partition count (raising it adds partitions led by `leaders`) and
    /// configs.
    pub async fn update_topic(
        &self,
        id: Uuid,
        partitions: u32,
        configs: &BTreeMap<String, String>,
        leaders: &[i32],
    ) -> Result<(), PgError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT partitions FROM zombi_topics WHERE topic_id = $1 FOR UPDATE")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Err(PgError::Invalid(format!("no topic {id}"))) };
        let current: i32 = row.get(0);
        sqlx::query("UPDATE zombi_topics SET partitions = $2, configs = $3 WHERE topic_id = $1")
            .bind(id.to_string())
            .bind(partitions as i32)
            .bind(json(configs))
            .execute(&mut *tx)
            .await?;
        if partitions > current as u32 {
            Self::add_partitions(&mut tx, id, current as u32, partitions, leaders).await?;
        }
        Self::bump_version_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a topic and everything the cluster knew of it.
    pub async fn delete_topic(&self, id: Uuid) -> Result<(), PgError> {
        let mut tx = self.pool.begin().await?;
        for table in ["zombi_topics", "zombi_partitions", "zombi_partition_epochs", "zombi_segments"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE topic_id = $1"))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        Self::bump_version_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_dynamic_configs(&self, scope: &str, configs: &BTreeMap<String, String>) -> Result<(), PgError> {
        sqlx::query(
            "INSERT INTO zombi_dynamic_configs (scope, configs) VALUES ($1, $2)
             ON CONFLICT (scope) DO UPDATE SET configs = $2",
        )
        .bind(scope)
        .bind(json(configs))
        .execute(&self.pool)
        .await?;
        self.bump_version().await
    }

    /// The next `count` producer ids, never handed out before.
    pub async fn allocate_producer_ids(&self, count: i64) -> Result<std::ops::Range<i64>, PgError> {
        let row = sqlx::query(
            "UPDATE zombi_cluster SET next_producer_id = next_producer_id + $1 WHERE id = 1
             RETURNING next_producer_id - $1",
        )
        .bind(count)
        .fetch_one(&self.pool)
        .await?;
        let start: i64 = row.get(0);
        Ok(start..start + count)
    }

    /// Moves a partition to `leader` at the next epoch, if it is still at `epoch` (a controller's
    /// reassignment of a dead broker's partition, or a leader handing it over, when `end_offset`
    /// says where its epoch ended). False when the partition moved meanwhile.
    pub async fn move_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        epoch: i32,
        leader: i32,
        end_offset: Option<i64>,
    ) -> Result<bool, PgError> {
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE zombi_partitions SET leader = $4, leader_epoch = $3 + 1, target_leader = NULL
             WHERE topic_id = $1 AND partition = $2 AND leader_epoch = $3",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .bind(epoch)
        .bind(leader)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE zombi_partition_epochs SET end_offset = $4
             WHERE topic_id = $1 AND partition = $2 AND leader_epoch = $3",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .bind(epoch)
        .bind(end_offset)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO zombi_partition_epochs (topic_id, partition, leader_epoch, leader) VALUES ($1, $2, $3 + 1, $4)",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .bind(epoch)
        .bind(leader)
        .execute(&mut *tx)
        .await?;
        Self::bump_version_in(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Asks a partition's leader to hand it over to `target` (or cancels with `None`).
    pub async fn set_target_leader(&self, topic_id: Uuid, partition: i32, target: Option<i32>) -> Result<(), PgError> {
        sqlx::query("UPDATE zombi_partitions SET target_leader = $3 WHERE topic_id = $1 AND partition = $2")
            .bind(topic_id.to_string())
            .bind(partition)
            .bind(target)
            .execute(&self.pool)
            .await?;
        self.bump_version().await
    }

    /// A partition's leaderships, oldest first.
    pub async fn epochs(&self, topic_id: Uuid, partition: i32) -> Result<Vec<EpochRow>, PgError> {
        let rows = sqlx::query(
            "SELECT leader_epoch, leader, end_offset, broker_epoch FROM zombi_partition_epochs
             WHERE topic_id = $1 AND partition = $2 ORDER BY leader_epoch",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| EpochRow {
                leader_epoch: row.get(0),
                leader: row.get(1),
                end_offset: row.get(2),
                broker_epoch: row.get(3),
            })
            .collect())
    }

    /// Records that `node_id`, registered at `broker_epoch`, serves the partition at `epoch`
    /// (before it does). False unless the partition is at `epoch` with `node_id` its leader.
    pub async fn start_epoch(
        &self,
        topic_id: Uuid,
        partition: i32,
        epoch: i32,
        node_id: i32,
        broker_epoch: i64,
    ) -> Result<bool, PgError> {
        let mut tx = self.pool.begin().await?;
        // Only while the partition is still at that epoch with this leader: a takeover that
        // finished after the partition moved on, or one started from a round's snapshot older
        // than this broker's own hand-over, must not make this broker lead it again at an epoch
        // that is over.
        if !Self::leads(&mut tx, topic_id, partition, node_id, epoch).await? {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE zombi_partition_epochs SET broker_epoch = $5
             WHERE topic_id = $1 AND partition = $2 AND leader_epoch = $3 AND leader = $4",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .bind(epoch)
        .bind(node_id)
        .bind(broker_epoch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// A partition's segments in offset order.
    pub async fn segments(&self, topic_id: Uuid, partition: i32) -> Result<Vec<SegmentRow>, PgError> {
        let rows = sqlx::query(
            "SELECT base_offset, next_offset, max_timestamp, size_bytes, producers FROM zombi_segments
             WHERE topic_id = $1 AND partition = $2 ORDER BY base_offset",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| SegmentRow {
                base_offset: row.get(0),
                next_offset: row.get(1),
                max_timestamp: row.get(2),
                size_bytes: row.get(3),
                producers: row.get(4),
            })
            .collect())
    }

    /// Records a segment, only while `leader_epoch` is the partition's: a deposed leader's
    /// upload never enters the index. False when the epoch moved on.
    pub async fn record_segment(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        segment: SegmentRow,
    ) -> Result<bool, PgError> {
        let done = sqlx::query(
            "INSERT INTO zombi_segments (topic_id, partition, base_offset, next_offset, max_timestamp, size_bytes, producers)
             SELECT $1, $2, $4, $5, $6, $7, $8 WHERE EXISTS (
                 SELECT 1 FROM zombi_partitions WHERE topic_id = $1 AND partition = $2 AND leader_epoch = $3)
             ON CONFLICT (topic_id, partition, base_offset) DO UPDATE SET next_offset = EXCLUDED.next_offset,
                 max_timestamp = EXCLUDED.max_timestamp, size_bytes = EXCLUDED.size_bytes,
                 producers = EXCLUDED.producers",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .bind(leader_epoch)
        .bind(segment.base_offset)
        .bind(segment.next_offset)
        .bind(segment.max_timestamp)
        .bind(segment.size_bytes)
        .bind(segment.producers)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_segment(&self, topic_id: Uuid, partition: i32, base_offset: i64) -> Result<(), PgError> {
        sqlx::query("DELETE FROM zombi_segments WHERE topic_id = $1 AND partition = $2 AND base_offset = $3")
            .bind(topic_id.to_string())
            .bind(partition)
            .bind(base_offset)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a partition's log start forward (DeleteRecords, retention), while `leader_epoch` is
    /// the partition's.
    pub async fn set_log_start(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        log_start: i64,
    ) -> Result<bool, PgError> {
        let done = sqlx::query(
            "UPDATE zombi_partitions SET log_start = GREATEST(log_start, $4)
             WHERE topic_id = $1 AND partition = $2 AND leader_epoch = $3",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .bind(leader_epoch)
        .bind(log_start)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The group records and committed offsets of `slot` (every slot when `None`).
    pub async fn load_groups(&self, slot: Option<u32>) -> Result<crate::log::GroupRecords, PgError> {
        let slot = slot.map(|s| s as i32);
        let groups = sqlx::query("SELECT group_id, record FROM zombi_groups WHERE $1::int IS NULL OR slot = $1")
            .bind(slot)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let offsets = sqlx::query(
            "SELECT group_id, topic, partition, record FROM zombi_offsets WHERE $1::int IS NULL OR slot = $1",
        )
        .bind(slot)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
        let pending = sqlx::query(
            "SELECT group_id, producer_id, record FROM zombi_pending_offsets WHERE $1::int IS NULL OR slot = $1",
        )
        .bind(slot)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
        Ok(crate::log::GroupRecords { groups, offsets, pending })
    }

    /// The transactional ids' records of `slot` (every slot when `None`).
    pub async fn load_transactions(&self, slot: Option<u32>) -> Result<Vec<(String, Vec<u8>)>, PgError> {
        let slot = slot.map(|s| s as i32);
        let rows =
            sqlx::query("SELECT transactional_id, record FROM zombi_transactions WHERE $1::int IS NULL OR slot = $1")
                .bind(slot)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
    }

    /// Makes transaction state changes durable in one transaction (a `None` record deletes the
    /// id), only while `node_id` coordinates each slot involved at the epoch it loaded it at
    /// (`fences`: slot → epoch). False when a fence failed.
    pub async fn write_transactions(
        &self,
        node_id: i32,
        fences: &[(u32, i32)],
        writes: &[(u32, String, Option<Vec<u8>>)],
    ) -> Result<bool, PgError> {
        let mut tx = self.pool.begin().await?;
        if !Self::slots_held(&mut tx, node_id, fences).await? {
            return Ok(false);
        }
        for (slot, id, record) in writes {
            match record {
                Some(record) => {
                    sqlx::query(
                        "INSERT INTO zombi_transactions (transactional_id, slot, record) VALUES ($1, $2, $3)
                         ON CONFLICT (transactional_id) DO UPDATE SET record = $3",
                    )
                    .bind(id)
                    .bind(*slot as i32)
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM zombi_transactions WHERE transactional_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Whether `node_id` still leads each slot of `fences` at its epoch, locking those rows
    /// against a move until `tx` ends.
    async fn slots_held(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        node_id: i32,
        fences: &[(u32, i32)],
    ) -> Result<bool, PgError> {
        for &(slot, epoch) in fences {
            if !Self::leads(tx, GROUPS_TOPIC_ID, slot as i32, node_id, epoch).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `node_id` leads the partition (or group slot) at `epoch`, locking its row against
    /// a move until `tx` ends.
    async fn leads(
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        topic_id: Uuid,
        partition: i32,
        node_id: i32,
        epoch: i32,
    ) -> Result<bool, PgError> {
        let held = sqlx::query(
            "SELECT 1 FROM zombi_partitions WHERE topic_id = $1 AND partition = $2 AND leader = $3
             AND leader_epoch = $4 FOR SHARE",
        )
        .bind(topic_id.to_string())
        .bind(partition)
        .bind(node_id)
        .bind(epoch)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(held.is_some())
    }

    /// Makes group changes durable in one transaction, only while `node_id` coordinates each
    /// slot involved at the epoch it loaded it at (`fences`: slot → epoch). False when a fence
    /// failed: another broker coordinates the slot now.
    pub async fn write_groups(
        &self,
        node_id: i32,
        fences: &[(u32, i32)],
        writes: &[(u32, crate::log::GroupWrite)],
    ) -> Result<bool, PgError> {
        use crate::log::GroupWrite;
        let mut tx = self.pool.begin().await?;
        if !Self::slots_held(&mut tx, node_id, fences).await? {
            return Ok(false);
        }
        for (slot, write) in writes {
            let slot = *slot as i32;
            match write {
                GroupWrite::Group { group, record } => {
                    sqlx::query(
                        "INSERT INTO zombi_groups (group_id, slot, record) VALUES ($1, $2, $3)
                         ON CONFLICT (group_id) DO UPDATE SET record = $3",
                    )
                    .bind(group)
                    .bind(slot)
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
                }
                GroupWrite::DeleteGroup { group } => {
                    for table in ["zombi_groups", "zombi_offsets"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE group_id = $1"))
                            .bind(group)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                GroupWrite::Offset { group, topic, partition, record } => {
                    sqlx::query(
                        "INSERT INTO zombi_offsets (group_id, slot, topic, partition, record) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (group_id, topic, partition) DO UPDATE SET record = $5",
                    )
                    .bind(group)
                    .bind(slot)
                    .bind(topic)
                    .bind(partition)
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
                }
                GroupWrite::DeleteOffset { group, topic, partition } => {
                    sqlx::query("DELETE FROM zombi_offsets WHERE group_id = $1 AND topic = $2 AND partition = $3")
                        .bind(group)
                        .bind(topic)
                        .bind(partition)
                        .execute(&mut *tx)
                        .await?;
                }
                GroupWrite::PendingOffsets { group, producer_id, record: Some(record) } => {
                    sqlx::query(
                        "INSERT INTO zombi_pending_offsets (group_id, producer_id, slot, record) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (group_id, producer_id) DO UPDATE SET record = $4",
                    )
                    .bind(group)
                    .bind(producer_id)
                    .bind(slot)
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
                }
                GroupWrite::PendingOffsets { group, producer_id, record: None } => {
                    sqlx::query("DELETE FROM zombi_pending_offsets WHERE group_id = $1 AND producer_id = $2")
                        .bind(group)
                        .bind(producer_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Per partition, the offset below which its records are in segments or deleted: the
    /// higher of its segments' end and its log start.
    pub async fn coverage(&self) -> Result<std::collections::HashMap<(Uuid, i32), i64>, PgError> {
        let rows = sqlx::query(
            "SELECT p.topic_id, p.partition, GREATEST(p.log_start, COALESCE(max(s.next_offset), 0))
             FROM zombi_partitions p LEFT JOIN zombi_segments s USING (topic_id, partition)
             GROUP BY p.topic_id, p.partition, p.log_start",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut coverage = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get(0);
            coverage.insert((uuid_of(&id)?, row.get::<i32, _>(1)), row.get::<i64, _>(2));
        }
        Ok(coverage)
    }

    /// Waits for a `zombi_metadata` notification or `timeout`, whichever first (a listener
    /// connection of its own; errors only delay the next poll).
    pub async fn listener(&self) -> Result<sqlx::postgres::PgListener, PgError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen("zombi_metadata").await?;
        Ok(listener)
    }
}
