//! The Iceberg sink's settings (`--iceberg-*`): parsed and checked here, used by `crate::iceberg`.

use std::path::{Path, PathBuf};

use super::storage::{Location, S3Options};

/// Where the catalog lives: a SQLite file, a PostgreSQL database (the same tables as
/// pyiceberg's SqlCatalog and Iceberg's JDBC catalog), or an Iceberg REST catalog.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogLocation {
    Sqlite(PathBuf),
    /// `postgres://user:password@host:port/database?options` as given (sqlx's URL); shown with
    /// the password replaced (see `Display`).
    Postgres(String),
    /// An Iceberg REST catalog: `uri` is the base before `/v1` (`http(s)://HOST:PORT[/PATH]`),
    /// `properties` the catalog's usual properties from the URL's query (`warehouse`,
    /// `credential`, `token`, `oauth2-server-uri`, `scope`, `header.NAME`, …) and from the
    /// environment (`ZOMBI_ICEBERG_CATALOG_CREDENTIAL`, `ZOMBI_ICEBERG_CATALOG_TOKEN`), so that
    /// secrets need not be on the command line. `credential` and `token` are never shown.
    Rest {
        uri: String,
        properties: std::collections::BTreeMap<String, String>,
    },
}

/// Properties of a REST catalog that are secrets: never shown.
const REST_SECRET_PROPERTIES: [&str; 2] = ["credential", "token"];

/// Environment variables that set a REST catalog's secret properties (they win over the URL).
pub const REST_CREDENTIAL_ENV: &str = "ZOMBI_ICEBERG_CATALOG_CREDENTIAL";
pub const REST_TOKEN_ENV: &str = "ZOMBI_ICEBERG_CATALOG_TOKEN";

impl CatalogLocation {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("sqlite://").or_else(|| text.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".to_string());
            }
            return Ok(CatalogLocation::Sqlite(absolute(Path::new(path))));
        }
        if let Some(rest) = text.strip_prefix("postgres://").or_else(|| text.strip_prefix("postgresql://")) {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
            if host.is_empty() {
                return Err(format!("{}: expected postgres://USER:PASSWORD@HOST:PORT/DATABASE", redact(text)));
            }
            return Ok(CatalogLocation::Postgres(text.to_string()));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Self::parse_rest(text);
        }
        Err(format!(
            "unknown catalog {}: expected sqlite://PATH, postgres://USER:PASSWORD@HOST:PORT/DATABASE or http(s)://HOST:PORT[/PATH] (an Iceberg REST catalog)",
            redact(text)
        ))
    }

    /// `http(s)://HOST:PORT[/PATH][?NAME=VALUE&…]`: the query holds the catalog's properties,
    /// percent-encoded.
    fn parse_rest(text: &str) -> Result<Self, String> {
        let (base, query) = text.split_once('?').unwrap_or((text, ""));
        let url = url::Url::parse(base).map_err(|e| format!("{}: {e}", redact(base)))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("{}: expected http(s)://HOST:PORT[/PATH]", redact(base)));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("a REST catalog takes its credential as `credential=ID:SECRET` (OAuth2 client credentials) or `token=`, or from ZOMBI_ICEBERG_CATALOG_CREDENTIAL / ZOMBI_ICEBERG_CATALOG_TOKEN, not in the URL's user info".to_string());
        }
        let mut properties = std::collections::BTreeMap::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if name.is_empty() {
                continue;
            }
            if name == "uri" {
                return Err("`uri` is the catalog URL itself, not a property".to_string());
            }
            properties.insert(name.into_owned(), value.into_owned());
        }
        Ok(CatalogLocation::Rest { uri: base.trim_end_matches('/').to_string(), properties })
    }

    /// With the REST catalog's secrets from the environment, which win over the URL's.
    pub fn with_rest_secrets(self, credential: Option<String>, token: Option<String>) -> Self {
        match self {
            CatalogLocation::Rest { uri, mut properties } => {
                for (name, value) in [("credential", credential), ("token", token)] {
                    if let Some(value) = value.filter(|v| !v.is_empty()) {
                        properties.insert(name.to_string(), value);
                    }
                }
                CatalogLocation::Rest { uri, properties }
            }
            other => other,
        }
    }

    /// Whether SQL statements take `$1`-style placeholders (Postgres) rather than `?`.
    pub fn dollar_placeholders(&self) -> bool {
        matches!(self, CatalogLocation::Postgres(_))
    }

    /// The sqlx connection string (SQLite: the file is created if missing), or the REST
    /// catalog's base URI. Holds the password.
    pub fn uri(&self) -> String {
        match self {
            CatalogLocation::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            CatalogLocation::Postgres(url) => url.clone(),
            CatalogLocation::Rest { uri, .. } => uri.clone(),
        }
    }
}

/// A URL with its password (in the user info or a `password=` query parameter) replaced by
/// `***`, for logs, errors and the admin view.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    // The user info ends at the last '@' before the query, even if an unencoded '/' or '@' in the
    // password would make a URL parser stop earlier.
    let query_start = rest.find('?').unwrap_or(rest.len());
    let (user_info, after) = match rest[..query_start].rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let host_end = after.find(['/', '?']).unwrap_or(after.len());
    let (host, tail) = after.split_at(host_end);
    let authority = match user_info {
        Some(user_info) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{user_info}@{host}"),
        },
        None => host.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    if scheme.is_empty() { format!("{authority}{tail}") } else { format!("{scheme}://{authority}{tail}") }
}

impl std::fmt::Display for CatalogLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogLocation::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            CatalogLocation::Postgres(url) => f.write_str(&redact(url)),
            CatalogLocation::Rest { uri, properties } => {
                f.write_str(uri)?;
                for (at, (name, value)) in properties.iter().enumerate() {
                    let shown = if REST_SECRET_PROPERTIES.contains(&name.as_str()) { "***" } else { value };
                    write!(f, "{}{name}={shown}", if at == 0 { '?' } else { '&' })?;
                }
                Ok(())
            }
        }
    }
}

/// As `Display`: the password never reaches a log through `{:?}` of the settings either.
impl std::fmt::Debug for CatalogLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CatalogLocation({self})")
    }
}

/// The partition spec of newly created tables (`--iceberg-partition-by`). A table keeps the spec
/// it was created with: changing the flag does not change existing tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionBy {
    /// `day(timestamp)`, field `timestamp_day`.
    #[default]
    Day,
    /// `hour(timestamp)`, field `timestamp_hour`: for topics that fill files within an hour.
    Hour,
    /// `month(timestamp)`, field `timestamp_month`: for quiet topics.
    Month,
    /// `identity(partition)`, field `partition`: one Iceberg partition per Kafka partition.
    Partition,
    /// Unpartitioned: one file per commit whatever the timestamps.
    None,
}

impl std::str::FromStr for PartitionBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "day" => Ok(PartitionBy::Day),
            "hour" => Ok(PartitionBy::Hour),
            "month" => Ok(PartitionBy::Month),
            "partition" => Ok(PartitionBy::Partition),
            "none" => Ok(PartitionBy::None),
            other => Err(format!("{other:?}: expected day, hour, month, partition or none")),
        }
    }
}

/// The Iceberg flags as given; [`IcebergSettings::resolve`] checks them and fills in the defaults
/// that depend on other sections. The flags' help, defaults and TOML keys are their rows in
/// `definitions.rs`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Iceberg")]
pub struct IcebergFlags {
    #[arg(long = "iceberg-catalog", env = "ZOMBI_ICEBERG_CATALOG")]
    pub catalog: Option<String>,
    #[arg(long = "iceberg-warehouse", env = "ZOMBI_ICEBERG_WAREHOUSE")]
    pub warehouse: Option<String>,
    #[arg(long = "iceberg-partition-by", env = "ZOMBI_ICEBERG_PARTITION_BY")]
    pub partition_by: String,
    #[arg(long = "iceberg-namespace", env = "ZOMBI_ICEBERG_NAMESPACE")]
    pub namespace: String,
    #[arg(long = "iceberg-commit-interval-ms", env = "ZOMBI_ICEBERG_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: u64,
    #[arg(long = "iceberg-target-file-bytes", env = "ZOMBI_ICEBERG_TARGET_FILE_BYTES")]
    pub target_file_bytes: usize,
    #[arg(long = "iceberg-enable", env = "ZOMBI_ICEBERG_ENABLE", action = clap::ArgAction::Set)]
    pub enable: bool,
    #[arg(long = "iceberg-compaction-interval-ms", env = "ZOMBI_ICEBERG_COMPACTION_INTERVAL_MS")]
    pub compaction_interval_ms: u64,
    #[arg(long = "iceberg-compaction-min-files", env = "ZOMBI_ICEBERG_COMPACTION_MIN_FILES")]
    pub compaction_min_files: usize,
    #[arg(long = "iceberg-snapshot-max-age-ms", env = "ZOMBI_ICEBERG_SNAPSHOT_MAX_AGE_MS")]
    pub snapshot_max_age_ms: u64,
    #[arg(long = "iceberg-orphan-min-age-ms", env = "ZOMBI_ICEBERG_ORPHAN_MIN_AGE_MS")]
    pub orphan_min_age_ms: u64,
}

/// The sink's settings, resolved (the Iceberg section of the config).
#[derive(Debug, Clone)]
pub struct IcebergSettings {
    pub catalog: CatalogLocation,
    /// `file:///DIR` or `s3://BUCKET/PATH` URL of the warehouse (no trailing slash).
    pub warehouse: String,
    /// Endpoint and region for an S3 warehouse: the object store's flags.
    pub s3: S3Options,
    pub namespace: String,
    /// The partition spec of tables the sink creates.
    pub partition_by: PartitionBy,
    /// How often each table gets a commit (when something was produced).
    pub commit_interval_ms: u64,
    /// Data files are closed near this size.
    pub target_file_bytes: usize,
    /// Decoded record bytes (keys, values, headers) one commit of one table takes in at most:
    /// four times the target file size, since Parquet with zstd is usually several times smaller
    /// than the records, so that a backlog is committed in files near the target size. Memory
    /// does not grow with it (rows stream into the writers; see `row_group_rows_max`).
    pub commit_bytes_max: usize,
    /// Bytes of record batches read from the log at once.
    pub read_bytes_max: usize,
    /// Rows per Parquet row group (a row group is buffered in memory until written).
    pub row_group_rows_max: usize,
    /// Longest wait between retries of a failing table or catalog.
    pub retry_backoff_ms_max: u64,
    /// Default of `zombi.iceberg.enable`.
    pub enable: bool,
    /// Compaction, snapshot expiry and removal of unreferenced files.
    pub maintenance: MaintenanceSettings,
}

impl IcebergSettings {
    /// Defaults under `data_dir`, or under the object store's S3 prefix for the warehouse when
    /// the log goes to S3; errors name the flag. In a cluster (`coordinator`, its PostgreSQL URL)
    /// the tables are shared: their catalog defaults to the coordinator's PostgreSQL, and their
    /// warehouse to the shared object store even when it is a directory.
    pub fn resolve(
        data_dir: &Path,
        flags: IcebergFlags,
        object_store: &Location,
        s3: &S3Options,
        coordinator: Option<&str>,
    ) -> Result<Self, (&'static str, String)> {
        let data_dir = absolute(data_dir);
        let shared_warehouse = match (coordinator, object_store) {
            (Some(_), Location::Directory(dir)) => {
                Some(format!("file://{}", absolute(dir).join("iceberg").join("warehouse").display()))
            }
            _ => None,
        };
        let flag_warehouse = flags.warehouse.clone();
        let warehouse = flags.warehouse.or(shared_warehouse);
        let catalog = match flags.catalog.or(coordinator.map(str::to_string)) {
            Some(text) => CatalogLocation::parse(&text)
                .map_err(|e| ("iceberg-catalog", e))?
                .with_rest_secrets(std::env::var(REST_CREDENTIAL_ENV).ok(), std::env::var(REST_TOKEN_ENV).ok()),
            None => CatalogLocation::Sqlite(data_dir.join("iceberg").join("catalog.db")),
        };
        // A REST catalog decides where its tables go; `warehouse` is its property (a name or a
        // location, as the catalog understands it), from the URL or `--iceberg-warehouse`.
        let (catalog, warehouse) = match catalog {
            CatalogLocation::Rest { uri, mut properties } => {
                let from_url = properties.get("warehouse").cloned();
                let warehouse = match (from_url, flag_warehouse) {
                    (Some(url), Some(flag)) if url != flag => {
                        return Err((
                            "iceberg-warehouse",
                            format!("{flag:?} differs from the catalog URL's warehouse={url:?}; give one"),
                        ));
                    }
                    (Some(text), _) | (None, Some(text)) => text,
                    (None, None) => String::new(),
                };
                if !warehouse.is_empty() {
                    properties.insert("warehouse".to_string(), warehouse.clone());
                }
                (CatalogLocation::Rest { uri, properties }, Some(warehouse))
            }
            other => (other, warehouse),
        };
        let warehouse = match (warehouse, object_store) {
            (Some(text), _) if matches!(catalog, CatalogLocation::Rest { .. }) => text,
            (Some(text), _) if text.starts_with("file:///") => text.trim_end_matches('/').to_string(),
            (Some(text), _) if text.starts_with("s3://") => match text["s3://".len()..].split('/').next() {
                Some(bucket) if !bucket.is_empty() => text.trim_end_matches('/').to_string(),
                _ => return Err(("iceberg-warehouse", format!("{text:?}: expected s3://BUCKET/PATH"))),
            },
            (Some(text), _) => {
                return Err((
                    "iceberg-warehouse",
                    format!("{text:?}: expected file:///ABSOLUTE/DIR or s3://BUCKET/PATH"),
                ));
            }
            (None, Location::S3 { bucket, prefix }) if prefix.is_empty() => format!("s3://{bucket}/iceberg/warehouse"),
            (None, Location::S3 { bucket, prefix }) => format!("s3://{bucket}/{prefix}/iceberg/warehouse"),
            (None, Location::Directory(_)) => {
                format!("file://{}", data_dir.join("iceberg").join("warehouse").display())
            }
        };
        let partition_by = flags.partition_by.parse().map_err(|e| ("iceberg-partition-by", e))?;
        let IcebergFlags {
            namespace,
            commit_interval_ms,
            target_file_bytes,
            enable,
            compaction_interval_ms,
            compaction_min_files,
            snapshot_max_age_ms,
            orphan_min_age_ms,
            ..
        } = flags;
        if namespace.is_empty() || namespace.contains('.') {
            return Err(("iceberg-namespace", "must be a non-empty name without '.'".to_string()));
        }
        if commit_interval_ms == 0 {
            return Err(("iceberg-commit-interval-ms", "must be at least 1".to_string()));
        }
        if target_file_bytes < 1024 * 1024 {
            return Err(("iceberg-target-file-bytes", "must be at least 1 MiB".to_string()));
        }
        if compaction_min_files < 2 {
            return Err(("iceberg-compaction-min-files", "must be at least 2".to_string()));
        }
        let maintenance = MaintenanceSettings {
            interval_ms: compaction_interval_ms,
            min_files: compaction_min_files,
            snapshot_max_age_ms,
            orphan_min_age_ms,
        };
        Ok(IcebergSettings {
            catalog,
            warehouse,
            s3: s3.clone(),
            namespace,
            partition_by,
            commit_interval_ms,
            target_file_bytes,
            commit_bytes_max: target_file_bytes.saturating_mul(4),
            read_bytes_max: 4 * 1024 * 1024,
            row_group_rows_max: 64 * 1024,
            retry_backoff_ms_max: 300_000,
            enable,
            maintenance,
        })
    }
}

pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Maintenance settings (`--iceberg-compaction-*`, `--iceberg-snapshot-max-age-ms`, `--iceberg-orphan-min-age-ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceSettings {
    /// How often each table is looked at; 0 turns maintenance off.
    pub interval_ms: u64,
    /// Small files of one size tier in one table partition that make a rewrite.
    pub min_files: usize,
    /// Snapshots older than this are expired (the current one never is).
    pub snapshot_max_age_ms: u64,
    /// Files no snapshot referenced are deleted once older than this.
    pub orphan_min_age_ms: u64,
}
