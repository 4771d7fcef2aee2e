//! The catalog side of the Iceberg REST catalog that the HTTP listener serves (read-only): the
//! reader's own catalog connections and the answers in `iceberg-catalog-rest`'s wire types. The
//! HTTP side (routes, status codes) is `http::iceberg_rest`; only this module touches the
//! Iceberg crates (ARCHITECTURE.md, "Invariants").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_catalog_rest::{ListNamespaceResponse, ListTablesResponse, LoadTableResult, NamespaceResponse};
use tokio::sync::OnceCell;

use super::IcebergSink;

/// Namespaces are one level here; levels would be joined by the unit separator, as the spec says.
const NAMESPACE_SEPARATOR: char = '\u{1f}';

/// Why a catalog request failed, in the REST spec's terms.
#[derive(Debug, thiserror::Error)]
pub enum RestCatalogError {
    #[error("Namespace does not exist: {0}")]
    NoSuchNamespace(String),
    #[error("Table does not exist: {0}")]
    NoSuchTable(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the Iceberg catalog cannot be opened: {0}")]
    Unavailable(String),
    #[error("the catalog failed: {0}")]
    Catalog(#[from] iceberg::Error),
}

/// One page of a listing: the index of the first item is the (opaque) token.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub token: Option<String>,
    pub size: Option<usize>,
}

const PAGE_SIZE_MAX: usize = 1000;

impl Page {
    fn cut<T: Clone>(&self, items: &[T]) -> Result<(Vec<T>, Option<String>), RestCatalogError> {
        let start = match self.token.as_deref() {
            None | Some("") => 0,
            Some(token) => {
                token.parse::<usize>().map_err(|_| RestCatalogError::BadRequest("invalid pageToken".into()))?
            }
        };
        let size = self.size.unwrap_or(PAGE_SIZE_MAX).clamp(1, PAGE_SIZE_MAX);
        let end = start.saturating_add(size).min(items.len());
        let slice = items.get(start.min(items.len())..end).unwrap_or_default().to_vec();
        // A token only when the client asked for pages and more remain.
        let next = (self.token.is_some() || self.size.is_some()) && end < items.len();
        Ok((slice, next.then(|| end.to_string())))
    }
}

/// The sink's tables for readers: a catalog of its own, opened on first use on the caller's
/// runtime, so that serving readers never waits behind the sink's commits.
#[derive(Debug)]
pub struct ReaderCatalog {
    sink: Arc<IcebergSink>,
    /// The catalog as first opened (once, however many requests wait for it), and when.
    first: OnceCell<(Arc<dyn Catalog>, Instant)>,
    /// Over an external REST catalog: the one opened since, and when.
    reopened: parking_lot::Mutex<Option<(Arc<dyn Catalog>, Instant)>>,
}

/// Over an external REST catalog the reader catalog is opened again this often:
/// iceberg-catalog-rest never renews the OAuth2 token it got (an hour is usual).
const REST_REOPEN: Duration = Duration::from_secs(15 * 60);

fn namespace_ident(path: &str) -> Result<NamespaceIdent, RestCatalogError> {
    let levels: Vec<String> = path.split(NAMESPACE_SEPARATOR).map(str::to_string).collect();
    NamespaceIdent::from_vec(levels).map_err(|e| RestCatalogError::BadRequest(e.to_string()))
}

impl ReaderCatalog {
    pub fn new(sink: Arc<IcebergSink>) -> ReaderCatalog {
        ReaderCatalog { sink, first: OnceCell::new(), reopened: parking_lot::Mutex::new(None) }
    }

    async fn catalog(&self) -> Result<Arc<dyn Catalog>, RestCatalogError> {
        let open = || async { super::open_reader_catalog(&self.sink).await.map(|catalog| (catalog, Instant::now())) };
        let first = self.first.get_or_try_init(open).await.cloned().map_err(RestCatalogError::Unavailable)?;
        if !matches!(self.sink.settings.catalog, super::CatalogLocation::Rest { .. }) {
            return Ok(first.0);
        }
        let (catalog, opened) = self.reopened.lock().clone().unwrap_or(first);
        if opened.elapsed() < REST_REOPEN {
            return Ok(catalog);
        }
        // Opened without the lock held: requests racing here may each open one, and the last
        // one stays.
        let reopened = open().await.map_err(RestCatalogError::Unavailable)?;
        *self.reopened.lock() = Some(reopened.clone());
        Ok(reopened.0)
    }

    /// What a reader needs to open the warehouse's files: for S3, the endpoint, region and
    /// path-style addressing (credentials stay the reader's own).
    pub fn storage_config(&self) -> HashMap<String, String> {
        let settings = &self.sink.settings;
        let mut config = HashMap::new();
        if settings.warehouse.starts_with("s3://") {
            if let Some(endpoint) = &settings.s3.endpoint {
                config.insert("s3.endpoint".to_string(), endpoint.clone());
                config.insert("s3.path-style-access".to_string(), "true".to_string());
            }
            if let Some(region) = &settings.s3.region {
                config.insert("s3.region".to_string(), region.clone());
                config.insert("client.region".to_string(), region.clone());
            }
        }
        config
    }

    pub async fn list_namespaces(
        &self,
        parent: Option<&str>,
        page: &Page,
    ) -> Result<ListNamespaceResponse, RestCatalogError> {
        let catalog = self.catalog().await?;
        let parent = parent.map(namespace_ident).transpose()?;
        let namespaces = catalog.list_namespaces(parent.as_ref()).await?;
        let (namespaces, next_page_token) = page.cut(&namespaces)?;
        Ok(ListNamespaceResponse { namespaces, next_page_token })
    }

    async fn existing_namespace(
        &self,
        namespace: &str,
    ) -> Result<(Arc<dyn Catalog>, NamespaceIdent), RestCatalogError> {
        let catalog = self.catalog().await?;
        let ident = namespace_ident(namespace)?;
        if !catalog.namespace_exists(&ident).await? {
            return Err(RestCatalogError::NoSuchNamespace(ident.join(".")));
        }
        Ok((catalog, ident))
    }

    pub async fn namespace_exists(&self, namespace: &str) -> Result<(), RestCatalogError> {
        self.existing_namespace(namespace).await.map(|_| ())
    }

    pub async fn load_namespace(&self, namespace: &str) -> Result<NamespaceResponse, RestCatalogError> {
        let (catalog, ident) = self.existing_namespace(namespace).await?;
        Ok(NamespaceResponse::from(&catalog.get_namespace(&ident).await?))
    }

    /// The namespace's tables for which `visible` holds, a page of them.
    pub async fn list_tables(
        &self,
        namespace: &str,
        page: &Page,
        visible: impl Fn(&str) -> bool,
    ) -> Result<ListTablesResponse, RestCatalogError> {
        let (catalog, ident) = self.existing_namespace(namespace).await?;
        let mut tables = catalog.list_tables(&ident).await?;
        tables.retain(|table| visible(table.name()));
        tables.sort_by(|a, b| a.name().cmp(b.name()));
        let (identifiers, next_page_token) = page.cut(&tables)?;
        Ok(ListTablesResponse { identifiers, next_page_token })
    }

    async fn existing_table(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<(Arc<dyn Catalog>, TableIdent), RestCatalogError> {
        let catalog = self.catalog().await?;
        let ident = TableIdent::new(namespace_ident(namespace)?, table.to_string());
        if !catalog.table_exists(&ident).await? {
            return Err(RestCatalogError::NoSuchTable(ident.to_string()));
        }
        Ok((catalog, ident))
    }

    pub async fn table_exists(&self, namespace: &str, table: &str) -> Result<(), RestCatalogError> {
        self.existing_table(namespace, table).await.map(|_| ())
    }

    /// The table's current metadata and its location, with the warehouse's storage settings.
    pub async fn load_table(&self, namespace: &str, table: &str) -> Result<LoadTableResult, RestCatalogError> {
        let (catalog, ident) = self.existing_table(namespace, table).await?;
        let loaded = catalog.load_table(&ident).await?;
        Ok(LoadTableResult {
            metadata_location: loaded.metadata_location().map(str::to_string),
            metadata: loaded.metadata().clone(),
            config: self.storage_config(),
            storage_credentials: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_token() {
        let items: Vec<i32> = (0..5).collect();
        let page = |token: Option<&str>, size: Option<usize>| Page { token: token.map(str::to_string), size };
        assert_eq!(page(None, None).cut(&items).unwrap(), (items.clone(), None));
        assert_eq!(page(Some(""), Some(2)).cut(&items).unwrap(), (vec![0, 1], Some("2".into())));
        assert_eq!(page(Some("2"), Some(2)).cut(&items).unwrap(), (vec![2, 3], Some("4".into())));
        assert_eq!(page(Some("4"), Some(2)).cut(&items).unwrap(), (vec![4], None));
        assert_eq!(page(Some("9"), Some(2)).cut(&items).unwrap(), (vec![], None));
        assert!(page(Some("x"), None).cut(&items).is_err());
    }
}
