//! Commits to the SQL catalog as a compare-and-swap against the table a writer read.
//!
//! A commit writes a new metadata file, then swaps the table's `metadata_location` in
//! `iceberg_tables` from the location the writer loaded to the new one (what pyiceberg's
//! SqlCatalog and Iceberg's JDBC catalog do). The swap fails if anyone committed in between.
//!
//! iceberg-rust's `Transaction::commit` is no such swap: it reloads the table and, when another
//! writer has committed since the transaction was built, applies the actions again on the new
//! table (and its SQL catalog checks the requirements against that same reload). For the sink
//! that is wrong: a snapshot's `zombi.next-offset.*` were computed from the table the round
//! started from, so a fast append re-applied on a newer table would set another broker's
//! partitions back to older offsets, and their leaders would write those rows again.
//! [`Committer::commit_transaction`] therefore runs a transaction against a catalog pinned to
//! the table the writer read: the actions apply to that table, and the swap succeeds only if the
//! catalog still points at it.

use std::collections::BTreeMap;
use std::str::FromStr;

use ::iceberg::spec::MAIN_BRANCH;
use ::iceberg::table::Table;
use ::iceberg::transaction::Transaction;
use ::iceberg::{
    Catalog, ErrorKind, MetadataLocation, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
    TableRequirement, TableUpdate,
};
use async_trait::async_trait;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

use super::{CATALOG_NAME, CatalogLocation};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("iceberg: {0}")]
    Iceberg(#[from] ::iceberg::Error),
    #[error("catalog database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("the table changed since it was read (another writer?); not committed")]
    Conflict,
    #[error("REST catalog: {0}")]
    Rest(String),
    #[error("REST catalog: the commit's outcome is unknown ({0}); the table is reloaded to see whether it landed")]
    Unknown(String),
}

/// Where commits go, as a compare-and-swap: the SQL catalog's database, or a REST catalog.
pub struct Committer {
    target: Target,
}

enum Target {
    Sql { pool: AnyPool, dollar_placeholders: bool },
    Rest(RestCommitter),
}

impl Committer {
    pub async fn connect(catalog: &CatalogLocation) -> Result<Self, CommitError> {
        let target = match catalog {
            CatalogLocation::Rest { uri, properties } => Target::Rest(RestCommitter::connect(uri, properties).await?),
            _ => {
                sqlx::any::install_default_drivers();
                let pool = AnyPoolOptions::new().max_connections(1).connect(&catalog.uri()).await?;
                Target::Sql { pool, dollar_placeholders: catalog.dollar_placeholders() }
            }
        };
        Ok(Committer { target })
    }

    /// Applies `updates` to `table` if `requirements` hold and the catalog still points at the
    /// metadata `table` was loaded from; returns the committed table.
    pub async fn commit(
        &self,
        table: &Table,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<Table, CommitError> {
        match &self.target {
            Target::Sql { pool, dollar_placeholders } => {
                commit_sql(pool, *dollar_placeholders, table, requirements, updates).await
            }
            Target::Rest(rest) => rest.commit(table, requirements, updates).await,
        }
    }

    /// Commits `transaction`, built on `base`, as a swap from `base`: a commit by anyone since
    /// `base` was loaded fails it with [`ErrorKind::CatalogCommitConflicts`] and nothing changes.
    /// A commit whose outcome is unknown (a REST catalog's 500, 502, 504, or a connection lost
    /// after the request went) fails the same way: the caller reloads the table and sees
    /// whether it landed, and never sends it blindly again.
    pub async fn commit_transaction(&self, base: &Table, transaction: Transaction) -> Result<Table, ::iceberg::Error> {
        transaction.commit(&Pinned { base, committer: self }).await
    }
}

async fn commit_sql(
    pool: &AnyPool,
    dollar_placeholders: bool,
    table: &Table,
    requirements: &[TableRequirement],
    updates: Vec<TableUpdate>,
) -> Result<Table, CommitError> {
    for requirement in requirements {
        requirement.check(Some(table.metadata()))?;
    }
    let current = table.metadata_location_result()?;
    let mut builder = table.metadata().clone().into_builder(Some(current.to_string()));
    for update in updates {
        builder = update.apply(builder)?;
    }
    let metadata = builder.build()?.metadata;
    let location = MetadataLocation::from_str(current)?.with_next_version().with_new_metadata(&metadata);
    metadata.write_to(table.file_io(), &location).await?;
    crate::failpoint::hit("iceberg-commit-before-swap");
    let location = location.to_string();
    let mut sql = "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
                   WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
                   AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?"
        .to_string();
    if dollar_placeholders {
        sql = numbered_placeholders(&sql);
    }
    let ident = table.identifier();
    let namespace = ident.namespace().join(".");
    let updated = sqlx::query(&sql)
        .bind(location.as_str())
        .bind(current)
        .bind(CATALOG_NAME)
        .bind(namespace.as_str())
        .bind(ident.name())
        .bind(current)
        .execute(pool)
        .await?;
    if updated.rows_affected() == 0 {
        let _ = table.file_io().delete(&location).await;
        return Err(CommitError::Conflict);
    }
    Ok(Table::builder()
        .identifier(ident.clone())
        .metadata(metadata)
        .metadata_location(location)
        .file_io(table.file_io().clone())
        .runtime(::iceberg::Runtime::try_current()?)
        .build()?)
}

/// Commits to an Iceberg REST catalog (`POST …/namespaces/{ns}/tables/{table}`), the one call
/// `iceberg-catalog-rest` does not let its users make with requirements of their own.
///
/// Every commit asserts the table's uuid and its `main` branch's snapshot as the writer read
/// them: with only zombi committing, that is the same compare-and-swap as the SQL catalog's
/// on the metadata location (every commit of the sink moves `main`; expiry, which does not,
/// runs through iceberg-rust's own transaction). A 409 is a lost swap. A 500, 502, 504 or a
/// connection lost after the request went leaves the outcome unknown: the caller reloads
/// the table, whose snapshot summary says whether the commit landed.
struct RestCommitter {
    client: reqwest::Client,
    /// `URI/v1[/PREFIX]`.
    base: String,
    headers: reqwest::header::HeaderMap,
    auth: RestAuth,
}

/// How the commits authenticate: the catalog's `token`, or OAuth2 client credentials
/// (`credential`), exchanged at `oauth2-server-uri` (default `URI/v1/oauth/tokens`).
enum RestAuth {
    None,
    Token(String),
    Credential { endpoint: String, form: Vec<(String, String)>, token: parking_lot::Mutex<Option<String>> },
}

/// Catalog responses and token exchanges wait at most this long.
const REST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn rest_error(error: impl std::fmt::Display) -> CommitError {
    CommitError::Rest(error.to_string())
}

impl RestCommitter {
    async fn connect(uri: &str, properties: &BTreeMap<String, String>) -> Result<Self, CommitError> {
        let client = reqwest::Client::builder().timeout(REST_TIMEOUT).build().map_err(rest_error)?;
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in properties.iter().filter_map(|(k, v)| k.strip_prefix("header.").map(|k| (k, v))) {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(rest_error)?;
            let value = reqwest::header::HeaderValue::from_str(value).map_err(rest_error)?;
            headers.insert(name, value);
        }
        let auth = match (properties.get("token"), properties.get("credential")) {
            (Some(token), _) => RestAuth::Token(token.clone()),
            (None, Some(credential)) => {
                let (id, secret) = match credential.split_once(':') {
                    Some((id, secret)) => (Some(id), secret),
                    None => (None, credential.as_str()),
                };
                let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
                if let Some(id) = id {
                    form.push(("client_id".to_string(), id.to_string()));
                }
                form.push(("client_secret".to_string(), secret.to_string()));
                form.push(("scope".to_string(), properties.get("scope").cloned().unwrap_or_else(|| "catalog".into())));
                for name in ["audience", "resource"] {
                    if let Some(value) = properties.get(name) {
                        form.push((name.to_string(), value.clone()));
                    }
                }
                let endpoint =
                    properties.get("oauth2-server-uri").cloned().unwrap_or_else(|| format!("{uri}/v1/oauth/tokens"));
                RestAuth::Credential { endpoint, form, token: parking_lot::Mutex::new(None) }
            }
            (None, None) => RestAuth::None,
        };
        let mut committer = RestCommitter { client, base: format!("{uri}/v1"), headers, auth };
        // The prefix the catalog wants (for the warehouse asked for), as its readers get it.
        let mut request = committer.client.get(format!("{uri}/v1/config"));
        if let Some(warehouse) = properties.get("warehouse") {
            request = request.query(&[("warehouse", warehouse)]);
        }
        let response = committer.send(request).await.map_err(rest_error)?;
        if !response.status().is_success() {
            return Err(CommitError::Rest(format!("GET /v1/config: {}", describe(response).await)));
        }
        let config: serde_json::Value = response.json().await.map_err(rest_error)?;
        let prefix = ["overrides", "defaults"]
            .iter()
            .find_map(|kind| config.get(kind)?.get("prefix")?.as_str().map(str::to_string))
            .or_else(|| properties.get("prefix").cloned());
        if let Some(prefix) = prefix.filter(|p| !p.is_empty()) {
            committer.base = format!("{uri}/v1/{prefix}");
        }
        Ok(committer)
    }

    /// Sends `request` with the headers and the bearer token; on a 401 with OAuth2 client
    /// credentials, once more with a fresh token (a refused request changed nothing).
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, reqwest::Error> {
        let retry = request.try_clone();
        let response = self.authorized(request, false).await?.send().await?;
        match (response.status(), retry, &self.auth) {
            (reqwest::StatusCode::UNAUTHORIZED, Some(retry), RestAuth::Credential { .. }) => {
                self.authorized(retry, true).await?.send().await
            }
            _ => Ok(response),
        }
    }

    async fn authorized(
        &self,
        request: reqwest::RequestBuilder,
        fresh: bool,
    ) -> Result<reqwest::RequestBuilder, reqwest::Error> {
        let request = request.headers(self.headers.clone());
        let token = match &self.auth {
            RestAuth::None => return Ok(request),
            RestAuth::Token(token) => token.clone(),
            RestAuth::Credential { endpoint, form, token } => {
                let cached = if fresh { None } else { token.lock().clone() };
                match cached {
                    Some(cached) => cached,
                    None => {
                        let response = self.client.post(endpoint).form(form).send().await?.error_for_status()?;
                        let body: serde_json::Value = response.json().await?;
                        let fetched = body.get("access_token").and_then(|t| t.as_str()).unwrap_or_default().to_string();
                        *token.lock() = Some(fetched.clone());
                        fetched
                    }
                }
            }
        };
        Ok(request.bearer_auth(token))
    }

    async fn commit(
        &self,
        table: &Table,
        requirements: &[TableRequirement],
        updates: Vec<TableUpdate>,
    ) -> Result<Table, CommitError> {
        let metadata = table.metadata();
        let mut requirements = requirements.to_vec();
        requirements.push(TableRequirement::UuidMatch { uuid: metadata.uuid() });
        let asserts_main = requirements
            .iter()
            .any(|r| matches!(r, TableRequirement::RefSnapshotIdMatch { r#ref, .. } if r#ref == MAIN_BRANCH));
        if !asserts_main {
            requirements.push(TableRequirement::RefSnapshotIdMatch {
                r#ref: MAIN_BRANCH.to_string(),
                snapshot_id: metadata.current_snapshot_id(),
            });
        }
        let ident = table.identifier();
        let url = format!(
            "{}/namespaces/{}/tables/{}",
            self.base,
            ident.namespace().to_url_string(),
            url::form_urlencoded::byte_serialize(ident.name().as_bytes()).collect::<String>()
        );
        let body = iceberg_catalog_rest::CommitTableRequest { identifier: Some(ident.clone()), requirements, updates };
        crate::failpoint::hit("iceberg-commit-before-swap");
        let response = match self.send(self.client.post(&url).json(&body)).await {
            Ok(response) => response,
            // Refused before anything was sent (no connection): nothing changed.
            Err(error) if error.is_connect() => return Err(rest_error(error)),
            Err(error) => return Err(CommitError::Unknown(error.to_string())),
        };
        let status = response.status();
        match status.as_u16() {
            200 => {
                let committed: iceberg_catalog_rest::CommitTableResponse =
                    response.json().await.map_err(|e| CommitError::Unknown(e.to_string()))?;
                Ok(Table::builder()
                    .identifier(ident.clone())
                    .metadata(committed.metadata)
                    .metadata_location(committed.metadata_location)
                    .file_io(table.file_io().clone())
                    .runtime(::iceberg::Runtime::try_current()?)
                    .build()?)
            }
            409 => Err(CommitError::Conflict),
            500 | 502 | 503 | 504 => Err(CommitError::Unknown(describe(response).await)),
            _ => Err(CommitError::Rest(describe(response).await)),
        }
    }
}

/// A catalog's error response, as its `ErrorModel` says (or its status and first bytes).
async fn describe(response: reqwest::Response) -> String {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v.get("error").cloned()) {
        Some(error) => format!(
            "{status}: {} ({})",
            error.get("message").and_then(|m| m.as_str()).unwrap_or_default(),
            error.get("type").and_then(|m| m.as_str()).unwrap_or_default()
        ),
        None => format!("{status}: {}", text.chars().take(200).collect::<String>()),
    }
}

/// A catalog that holds one table as it was read and commits to it by [`Committer::commit`].
struct Pinned<'a> {
    base: &'a Table,
    committer: &'a Committer,
}

impl std::fmt::Debug for Pinned<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned").field("table", self.base.identifier()).finish()
    }
}

impl Pinned<'_> {
    fn this_table(&self, table: &TableIdent) -> ::iceberg::Result<()> {
        if table == self.base.identifier() {
            Ok(())
        } else {
            Err(::iceberg::Error::new(
                ErrorKind::Unexpected,
                format!("a commit to {table}, not {}", self.base.identifier()),
            ))
        }
    }
}

fn unsupported<T>() -> ::iceberg::Result<T> {
    Err(::iceberg::Error::new(ErrorKind::FeatureUnsupported, "a pinned catalog only commits to its one table"))
}

#[async_trait]
impl Catalog for Pinned<'_> {
    async fn list_namespaces(&self, _: Option<&NamespaceIdent>) -> ::iceberg::Result<Vec<NamespaceIdent>> {
        unsupported()
    }
    async fn create_namespace(
        &self,
        _: &NamespaceIdent,
        _: std::collections::HashMap<String, String>,
    ) -> ::iceberg::Result<Namespace> {
        unsupported()
    }
    async fn get_namespace(&self, _: &NamespaceIdent) -> ::iceberg::Result<Namespace> {
        unsupported()
    }
    async fn namespace_exists(&self, _: &NamespaceIdent) -> ::iceberg::Result<bool> {
        unsupported()
    }
    async fn update_namespace(
        &self,
        _: &NamespaceIdent,
        _: std::collections::HashMap<String, String>,
    ) -> ::iceberg::Result<()> {
        unsupported()
    }
    async fn drop_namespace(&self, _: &NamespaceIdent) -> ::iceberg::Result<()> {
        unsupported()
    }
    async fn list_tables(&self, _: &NamespaceIdent) -> ::iceberg::Result<Vec<TableIdent>> {
        unsupported()
    }
    async fn create_table(&self, _: &NamespaceIdent, _: TableCreation) -> ::iceberg::Result<Table> {
        unsupported()
    }
    async fn load_table(&self, table: &TableIdent) -> ::iceberg::Result<Table> {
        self.this_table(table)?;
        Ok(self.base.clone())
    }
    async fn drop_table(&self, _: &TableIdent) -> ::iceberg::Result<()> {
        unsupported()
    }
    async fn purge_table(&self, _: &TableIdent) -> ::iceberg::Result<()> {
        unsupported()
    }
    async fn table_exists(&self, table: &TableIdent) -> ::iceberg::Result<bool> {
        Ok(table == self.base.identifier())
    }
    async fn rename_table(&self, _: &TableIdent, _: &TableIdent) -> ::iceberg::Result<()> {
        unsupported()
    }
    async fn register_table(&self, _: &TableIdent, _: String) -> ::iceberg::Result<Table> {
        unsupported()
    }
    async fn update_table(&self, mut commit: TableCommit) -> ::iceberg::Result<Table> {
        self.this_table(commit.identifier())?;
        let requirements = commit.take_requirements();
        match self.committer.commit(self.base, &requirements, commit.take_updates()).await {
            Ok(table) => Ok(table),
            // Not retryable: a retry would load the same pinned table and fail the same way.
            Err(CommitError::Conflict) => Err(::iceberg::Error::new(
                ErrorKind::CatalogCommitConflicts,
                format!("{} changed since it was read", self.base.identifier()),
            )),
            Err(error @ CommitError::Unknown(_)) => {
                Err(::iceberg::Error::new(ErrorKind::CatalogCommitConflicts, error.to_string()))
            }
            Err(CommitError::Iceberg(error)) => Err(error),
            Err(error @ (CommitError::Sql(_) | CommitError::Rest(_))) => {
                Err(::iceberg::Error::new(ErrorKind::Unexpected, error.to_string()))
            }
        }
    }
}

/// `?` placeholders as `$1, $2, …` (Postgres).
fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_numbered_placeholders() {
        assert_eq!(numbered_placeholders("a = ? AND b = ?"), "a = $1 AND b = $2");
    }
}
