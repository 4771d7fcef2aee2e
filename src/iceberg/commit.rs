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

use std::str::FromStr;

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
}

/// The catalog database, for compare-and-swap commits.
pub struct Committer {
    pool: AnyPool,
    dollar_placeholders: bool,
}

impl Committer {
    pub async fn connect(catalog: &CatalogLocation) -> Result<Self, CommitError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(1).connect(&catalog.uri()).await?;
        Ok(Committer { pool, dollar_placeholders: catalog.dollar_placeholders() })
    }

    /// Applies `updates` to `table` if `requirements` hold and the catalog still points at the
    /// metadata `table` was loaded from; returns the committed table.
    pub async fn commit(
        &self,
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
        if self.dollar_placeholders {
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
            .execute(&self.pool)
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

    /// Commits `transaction`, built on `base`, as a swap from `base`: a commit by anyone since
    /// `base` was loaded fails it with [`ErrorKind::CatalogCommitConflicts`] and nothing changes.
    pub async fn commit_transaction(&self, base: &Table, transaction: Transaction) -> Result<Table, ::iceberg::Error> {
        transaction.commit(&Pinned { base, committer: self }).await
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
            Err(CommitError::Iceberg(error)) => Err(error),
            Err(error @ CommitError::Sql(_)) => Err(::iceberg::Error::new(ErrorKind::Unexpected, error.to_string())),
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
