//! Object storage: one small trait, a local directory (the embedded default) and S3.
//!
//! Objects are written once and never overwritten: `put_if_absent` is the only write, a
//! conditional create (`If-None-Match: *` on S3, a hard link on a local disk), so two writers can
//! never replace each other's object and a retried upload can tell that it already succeeded.

use std::future::Future;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use crate::config::{Location, S3Options};

use bytes::Bytes;

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("object store: {0}")]
    Io(String),
    #[error("object store configuration: {0}")]
    Config(String),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ObjectStoreError>> + Send + 'a>>;

/// What a conditional create found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    /// An object with this key existed already; it was left as it was.
    AlreadyExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

/// The operations the flusher, the remote reader and recovery need; keys are `/`-separated.
pub trait ObjectStore: Send + Sync {
    /// Creates `key` with `body` unless it exists.
    fn put_if_absent(&self, key: &str, body: Bytes) -> StoreFuture<'_, Put>;
    /// The whole object, or `None` when there is none.
    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>>;
    /// Every object whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> StoreFuture<'_, Vec<ObjectInfo>>;
    /// Deletes `key`; deleting an object that is not there succeeds.
    fn delete(&self, key: &str) -> StoreFuture<'_, ()>;
    /// Where the objects live, for logs and docs (`file:///…` or `s3://bucket/prefix`).
    fn describe(&self) -> String;
}

/// Request counts, for the metrics.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub puts: AtomicU64,
    pub gets: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub errors: AtomicU64,
}

/// Wraps a store to count its requests.
pub struct Counted {
    inner: Box<dyn ObjectStore>,
    pub counts: Arc<RequestCounts>,
}

impl Counted {
    pub fn new(inner: Box<dyn ObjectStore>) -> Self {
        Counted { inner, counts: Arc::default() }
    }

    fn count<'a, T: Send + 'a>(&'a self, counter: &'a AtomicU64, future: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        counter.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            let result = future.await;
            if result.is_err() {
                self.counts.errors.fetch_add(1, Ordering::Relaxed);
            }
            result
        })
    }
}

impl ObjectStore for Counted {
    fn put_if_absent(&self, key: &str, body: Bytes) -> StoreFuture<'_, Put> {
        self.count(&self.counts.puts, self.inner.put_if_absent(key, body))
    }
    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>> {
        self.count(&self.counts.gets, self.inner.get(key))
    }
    fn list(&self, prefix: &str) -> StoreFuture<'_, Vec<ObjectInfo>> {
        self.count(&self.counts.lists, self.inner.list(prefix))
    }
    fn delete(&self, key: &str) -> StoreFuture<'_, ()> {
        self.count(&self.counts.deletes, self.inner.delete(key))
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Opens the store a location names.
pub async fn open(location: &Location, s3: &S3Options) -> Result<Counted, ObjectStoreError> {
    let store: Box<dyn ObjectStore> = match location {
        Location::Directory(path) => Box::new(LocalStore::open(path)?),
        Location::S3 { bucket, prefix } => Box::new(S3Store::open(bucket, prefix, s3).await?),
    };
    Ok(Counted::new(store))
}

/// Refuses keys that could leave the store's root.
fn check_key(key: &str) -> Result<(), ObjectStoreError> {
    let path = Path::new(key);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    if key.is_empty() || !plain || key.contains('\\') {
        return Err(ObjectStoreError::InvalidKey(key.to_string()));
    }
    Ok(())
}

/// A directory on a local disk. Writes go to a temporary file that is fsynced and then hard-linked
/// to its key, which fails when the key exists: creation is atomic and never overwrites.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn open(root: &Path) -> Result<Self, ObjectStoreError> {
        std::fs::create_dir_all(root.join(".tmp"))
            .map_err(|e| ObjectStoreError::Io(format!("cannot create {}: {e}", root.display())))?;
        Ok(LocalStore { root: root.to_path_buf() })
    }

    fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(PathBuf) -> Result<T, ObjectStoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let root = self.root.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || work(root))
                .await
                .map_err(|_| ObjectStoreError::Io("object store task stopped".into()))?
        })
    }
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> ObjectStoreError {
    ObjectStoreError::Io(format!("{what} {}: {error}", path.display()))
}

fn sync_dir(path: &Path) -> Result<(), ObjectStoreError> {
    std::fs::File::open(path).and_then(|dir| dir.sync_all()).map_err(|e| io_error("cannot sync", path, e))
}

impl ObjectStore for LocalStore {
    fn put_if_absent(&self, key: &str, body: Bytes) -> StoreFuture<'_, Put> {
        let key = key.to_string();
        self.blocking(move |root| {
            check_key(&key)?;
            let target = root.join(&key);
            let parent = target.parent().unwrap_or(&root).to_path_buf();
            std::fs::create_dir_all(&parent).map_err(|e| io_error("cannot create", &parent, e))?;
            let temporary = root.join(".tmp").join(uuid::Uuid::new_v4().to_string());
            let written = (|| {
                let mut file = std::fs::File::create(&temporary)?;
                file.write_all(&body)?;
                file.sync_all()
            })();
            if let Err(error) = written {
                let _ = std::fs::remove_file(&temporary);
                return Err(io_error("cannot write", &temporary, error));
            }
            let linked = std::fs::hard_link(&temporary, &target);
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Ok(()) => {
                    sync_dir(&parent)?;
                    Ok(Put::Created)
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(Put::AlreadyExists),
                Err(error) => Err(io_error("cannot create", &target, error)),
            }
        })
    }

    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>> {
        let key = key.to_string();
        self.blocking(move |root| {
            check_key(&key)?;
            let path = root.join(&key);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(io_error("cannot read", &path, error)),
            }
        })
    }

    fn list(&self, prefix: &str) -> StoreFuture<'_, Vec<ObjectInfo>> {
        let prefix = prefix.to_string();
        self.blocking(move |root| {
            // Walk the directory that holds the prefix, then filter by the whole prefix.
            let directory = match prefix.rfind('/') {
                Some(slash) => root.join(&prefix[..slash]),
                None => root.clone(),
            };
            let mut out = Vec::new();
            let mut stack = vec![directory];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(io_error("cannot list", &dir, error)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error("cannot list", &dir, e))?;
                    let path = entry.path();
                    let Ok(relative) = path.strip_prefix(&root) else { continue };
                    let Some(key) = relative.to_str().map(|k| k.replace(std::path::MAIN_SEPARATOR, "/")) else {
                        continue;
                    };
                    if key.starts_with(".tmp") {
                        continue;
                    }
                    let metadata = entry.metadata().map_err(|e| io_error("cannot stat", &path, e))?;
                    if metadata.is_dir() {
                        stack.push(path);
                    } else if key.starts_with(&prefix) {
                        out.push(ObjectInfo { key, size: metadata.len() });
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn delete(&self, key: &str) -> StoreFuture<'_, ()> {
        let key = key.to_string();
        self.blocking(move |root| {
            check_key(&key)?;
            let path = root.join(&key);
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(error) => Err(io_error("cannot delete", &path, error)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }
}

/// An S3 bucket (AWS S3, S3 Express One Zone directory buckets, or an S3-compatible server through
/// a custom endpoint), with keys under an optional prefix.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    pub async fn open(bucket: &str, prefix: &str, options: &S3Options) -> Result<Self, ObjectStoreError> {
        Ok(S3Store {
            client: super::s3::client(options).await?,
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() { String::new() } else { format!("{prefix}/") },
        })
    }

    fn full_key(&self, key: &str) -> Result<String, ObjectStoreError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }
}

fn s3_error<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    key: &str,
    error: aws_sdk_s3::error::SdkError<E>,
) -> ObjectStoreError {
    let status = error.raw_response().map(|r| r.status().as_u16());
    let detail = aws_sdk_s3::error::DisplayErrorContext(&error);
    match status {
        Some(status) => ObjectStoreError::Io(format!("{what} {key}: HTTP {status}: {detail}")),
        None => ObjectStoreError::Io(format!("{what} {key}: {detail}")),
    }
}

impl ObjectStore for S3Store {
    fn put_if_absent(&self, key: &str, body: Bytes) -> StoreFuture<'_, Put> {
        let key = key.to_string();
        Box::pin(async move {
            let full = self.full_key(&key)?;
            let sent = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .if_none_match("*")
                .body(aws_sdk_s3::primitives::ByteStream::from(body))
                .send()
                .await;
            match sent {
                Ok(_) => Ok(Put::Created),
                Err(error) if error.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                    Ok(Put::AlreadyExists)
                }
                Err(error) => Err(s3_error("cannot put", &full, error)),
            }
        })
    }

    fn get(&self, key: &str) -> StoreFuture<'_, Option<Bytes>> {
        let key = key.to_string();
        Box::pin(async move {
            let full = self.full_key(&key)?;
            let sent = self.client.get_object().bucket(&self.bucket).key(&full).send().await;
            match sent {
                Ok(output) => {
                    let body = output
                        .body
                        .collect()
                        .await
                        .map_err(|e| ObjectStoreError::Io(format!("cannot read {full}: {e}")))?;
                    Ok(Some(body.into_bytes()))
                }
                Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
                Err(error) if error.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
                Err(error) => Err(s3_error("cannot get", &full, error)),
            }
        })
    }

    fn list(&self, prefix: &str) -> StoreFuture<'_, Vec<ObjectInfo>> {
        let prefix = prefix.to_string();
        Box::pin(async move {
            let full = format!("{}{prefix}", self.prefix);
            let mut out = Vec::new();
            let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&full).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| s3_error("cannot list", &full, e))?;
                for object in page.contents() {
                    let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else { continue };
                    out.push(ObjectInfo { key: key.to_string(), size: object.size().unwrap_or(0).max(0) as u64 });
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn delete(&self, key: &str) -> StoreFuture<'_, ()> {
        let key = key.to_string();
        Box::pin(async move {
            let full = self.full_key(&key)?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| s3_error("cannot delete", &full, e))?;
            Ok(())
        })
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(Location::parse("file:///var/zombi").unwrap(), Location::Directory("/var/zombi".into()));
        assert_eq!(
            Location::parse("s3://logs/zombi/prod/").unwrap(),
            Location::S3 { bucket: "logs".into(), prefix: "zombi/prod".into() }
        );
        assert_eq!(
            Location::parse("s3://logs").unwrap(),
            Location::S3 { bucket: "logs".into(), prefix: String::new() }
        );
        for bad in ["", "s3://", "file://", "http://x", "/var/zombi"] {
            assert!(Location::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn keys_stay_inside_the_root() {
        assert!(check_key("data/abc/0/1.batches").is_ok());
        for bad in ["", "../x", "a/../../b", "/abs", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[tokio::test]
    async fn local_creates_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        assert_eq!(store.put_if_absent("a/b/1", Bytes::from_static(b"one")).await.unwrap(), Put::Created);
        assert_eq!(store.put_if_absent("a/b/1", Bytes::from_static(b"two")).await.unwrap(), Put::AlreadyExists);
        assert_eq!(store.get("a/b/1").await.unwrap().unwrap(), Bytes::from_static(b"one"));
        assert_eq!(store.get("a/b/2").await.unwrap(), None);
        store.put_if_absent("a/c", Bytes::from_static(b"x")).await.unwrap();
        let keys: Vec<_> = store.list("a/b").await.unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["a/b/1"]);
        store.delete("a/b/1").await.unwrap();
        store.delete("a/b/1").await.unwrap();
        assert!(store.list("a/b/").await.unwrap().is_empty());
        assert_eq!(store.list("").await.unwrap().len(), 1);
    }
}
