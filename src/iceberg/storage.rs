//! The warehouse's file I/O: iceberg-rust's `Storage` over a local directory (`file://`, through
//! iceberg's own `LocalFsStorage`) and over S3 (`s3://`, through the broker's own S3 client in
//! [`crate::tier::s3`], so no second HTTP stack comes in).
//!
//! One storage serves both schemes, chosen per path: a table keeps the location it was created
//! with, so tables made before the warehouse moved stay readable.
//!
//! Data files are written through [`S3FileWrite`]: bytes gather into a part of
//! [`PART_BYTES`]; a file that stays below one part is sent with one PUT at close, a larger one
//! as a multipart upload, each part sent as soon as it is full, so a 128 MiB Parquet file costs
//! at most one part of buffer beside the chunk the Parquet writer hands over (at most one row
//! group, which it holds in memory anyway, and whose whole parts are sent as slices of it, not
//! copied), not 128 MiB. Parts are sent one after the other from the sink's own thread: the sink
//! already runs tables one at a time, and S3 bandwidth per connection is well above what one
//! core encodes into Parquet (docs/iceberg.md, "Measured").

use std::ops::Range;
use std::sync::Arc;

use ::iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, LocalFsStorage, OutputFile, Storage, StorageConfig, StorageFactory,
};
use ::iceberg::{Error, ErrorKind, Result};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::tier::object_store::ObjectStoreError;
use crate::tier::s3::{S3Files, S3Path};

/// Size of the parts of a multipart upload (S3 wants at least 5 MiB for all but the last; at
/// most 10 000 parts, so files up to 80 GiB).
pub const PART_BYTES: usize = 8 * 1024 * 1024;

fn io_error(error: ObjectStoreError) -> Error {
    Error::new(ErrorKind::Unexpected, error.to_string())
}

fn not_found(path: &str) -> Error {
    Error::new(ErrorKind::DataInvalid, format!("{path}: no such file"))
}

/// Builds [`WarehouseStorage`]; holds the S3 client (made on the sink's runtime, since iceberg's
/// factory is synchronous and the AWS configuration is loaded asynchronously).
#[derive(Debug, Clone)]
pub struct WarehouseStorageFactory {
    storage: Arc<WarehouseStorage>,
}

impl WarehouseStorageFactory {
    /// `s3`: the client for `s3://` paths; without it such paths are refused.
    pub fn new(s3: Option<S3Files>) -> Self {
        WarehouseStorageFactory { storage: Arc::new(WarehouseStorage { local: LocalFsStorage::new(), s3 }) }
    }
}

#[typetag::serde(name = "zombi-warehouse")]
impl StorageFactory for WarehouseStorageFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(self.storage.clone())
    }
}

/// Local files and S3 objects, by the scheme of each path.
#[derive(Debug, Clone)]
pub struct WarehouseStorage {
    local: LocalFsStorage,
    s3: Option<S3Files>,
}

/// Where one path leads.
enum Target<'a> {
    Local,
    S3(&'a S3Files, S3Path),
}

impl WarehouseStorage {
    fn target(&self, path: &str) -> Result<Target<'_>> {
        if let Some(s3_path) = S3Path::parse(path) {
            let files = self.s3.as_ref().ok_or_else(|| {
                Error::new(ErrorKind::FeatureUnsupported, format!("{path}: the warehouse is not on S3 (no S3 client)"))
            })?;
            if s3_path.key.is_empty() {
                return Err(Error::new(ErrorKind::DataInvalid, format!("{path}: no object key")));
            }
            return Ok(Target::S3(files, s3_path));
        }
        if path.starts_with("file:") || path.starts_with('/') {
            return Ok(Target::Local);
        }
        Err(Error::new(ErrorKind::FeatureUnsupported, format!("{path}: expected file:// or s3://")))
    }
}

// The catalog never sends a storage elsewhere (typetag's serialization is for engines that ship
// file I/O between processes); ours holds a live client, so it says what it is and cannot be
// rebuilt from text.
impl Serialize for WarehouseStorage {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_unit_struct("WarehouseStorage")
    }
}

impl<'de> Deserialize<'de> for WarehouseStorage {
    fn deserialize<D: Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
        Err(serde::de::Error::custom("zombi's warehouse storage holds a live S3 client and cannot be deserialized"))
    }
}

impl Serialize for WarehouseStorageFactory {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_unit_struct("WarehouseStorageFactory")
    }
}

impl<'de> Deserialize<'de> for WarehouseStorageFactory {
    fn deserialize<D: Deserializer<'de>>(_: D) -> std::result::Result<Self, D::Error> {
        Err(serde::de::Error::custom("zombi's warehouse storage holds a live S3 client and cannot be deserialized"))
    }
}

#[async_trait]
#[typetag::serde(name = "zombi-warehouse-storage")]
impl Storage for WarehouseStorage {
    async fn exists(&self, path: &str) -> Result<bool> {
        match self.target(path)? {
            Target::Local => self.local.exists(path).await,
            Target::S3(files, key) => Ok(files.size(&key).await.map_err(io_error)?.is_some()),
        }
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        match self.target(path)? {
            Target::Local => self.local.metadata(path).await,
            Target::S3(files, key) => {
                let size = files.size(&key).await.map_err(io_error)?.ok_or_else(|| not_found(path))?;
                Ok(FileMetadata { size })
            }
        }
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        match self.target(path)? {
            Target::Local => self.local.read(path).await,
            Target::S3(files, key) => files.get(&key, None).await.map_err(io_error)?.ok_or_else(|| not_found(path)),
        }
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        match self.target(path)? {
            Target::Local => self.local.reader(path).await,
            Target::S3(files, key) => Ok(Box::new(S3FileRead { files: files.clone(), path: key })),
        }
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        match self.target(path)? {
            Target::Local => self.local.write(path, bs).await,
            Target::S3(files, key) => files.put(&key, bs).await.map_err(io_error),
        }
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        match self.target(path)? {
            Target::Local => self.local.writer(path).await,
            Target::S3(files, key) => Ok(Box::new(S3FileWrite::new(files.clone(), key, PART_BYTES))),
        }
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.target(path)? {
            Target::Local => self.local.delete(path).await,
            Target::S3(files, key) => files.delete(&key).await.map_err(io_error),
        }
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        match self.target(path)? {
            Target::Local => self.local.delete_prefix(path).await,
            Target::S3(files, mut prefix) => {
                // As for a directory: `a/b` removes `a/b/...`, not `a/bc`.
                if !prefix.key.ends_with('/') {
                    prefix.key.push('/');
                }
                for key in files.list(&prefix).await.map_err(io_error)? {
                    files.delete(&S3Path { bucket: prefix.bucket.clone(), key }).await.map_err(io_error)?;
                }
                Ok(())
            }
        }
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        self.target(path)?;
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        self.target(path)?;
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Ranged reads of one object.
struct S3FileRead {
    files: S3Files,
    path: S3Path,
}

#[async_trait]
impl FileRead for S3FileRead {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        self.files
            .get(&self.path, Some(range))
            .await
            .map_err(io_error)?
            .ok_or_else(|| not_found(&self.path.to_string()))
    }
}

/// Writes one object: a single PUT if it stays under a part, else a multipart upload.
pub struct S3FileWrite {
    files: S3Files,
    path: S3Path,
    part_bytes: usize,
    /// Bytes not yet sent: less than a part between writes.
    buffer: BytesMut,
    /// The multipart upload, once the first part is full.
    upload_id: Option<String>,
    /// (part number, ETag) of the parts sent.
    parts: Vec<(i32, String)>,
    closed: bool,
}

impl S3FileWrite {
    /// `part_bytes` at least 5 MiB for real S3 (smaller only where a test server allows it).
    pub fn new(files: S3Files, path: S3Path, part_bytes: usize) -> Self {
        S3FileWrite {
            files,
            path,
            part_bytes,
            buffer: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            closed: false,
        }
    }

    /// Sends `body` as the next part.
    async fn send_part(&mut self, body: Bytes) -> std::result::Result<(), ObjectStoreError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => self.upload_id.insert(self.files.start_upload(&self.path).await?).clone(),
        };
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let etag = self.files.upload_part(&self.path, &upload_id, number, body).await?;
        self.parts.push((number, etag));
        Ok(())
    }

    /// Sends every whole part in the buffer and `bytes`, keeping the rest (less than a part).
    /// Whole parts of `bytes` go out as slices of it, not copies: the Parquet writer hands over
    /// a row group at a time, which may span several parts.
    async fn send_whole_parts(&mut self, mut bytes: Bytes) -> std::result::Result<(), ObjectStoreError> {
        while !bytes.is_empty() {
            if self.buffer.is_empty() && bytes.len() >= self.part_bytes {
                let part = bytes.split_to(self.part_bytes);
                self.send_part(part).await?;
                continue;
            }
            let take = (self.part_bytes - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes.split_to(take));
            if self.buffer.len() >= self.part_bytes {
                let part = self.buffer.split().freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> std::result::Result<(), ObjectStoreError> {
        let rest = self.buffer.split().freeze();
        let Some(upload_id) = self.upload_id.clone() else {
            return self.files.put(&self.path, rest).await;
        };
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        self.files.complete_upload(&self.path, &upload_id, &self.parts).await?;
        self.upload_id = None;
        Ok(())
    }

    /// After a failure: drop the parts already stored (best effort; a bucket lifecycle rule for
    /// incomplete uploads catches what this misses, e.g. after a crash).
    async fn abort(&mut self) {
        if let Some(upload_id) = self.upload_id.take()
            && let Err(error) = self.files.abort_upload(&self.path, &upload_id).await
        {
            tracing::warn!(%error, "cannot abort a multipart upload");
        }
    }
}

#[async_trait]
impl FileWrite for S3FileWrite {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        if self.closed {
            return Err(Error::new(ErrorKind::DataInvalid, format!("{}: written after close", self.path)));
        }
        if let Err(error) = self.send_whole_parts(bs).await {
            self.abort().await;
            return Err(io_error(error));
        }
        Ok(())
    }

    async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::new(ErrorKind::DataInvalid, format!("{}: closed twice", self.path)));
        }
        self.closed = true;
        if let Err(error) = self.finish().await {
            self.abort().await;
            return Err(io_error(error));
        }
        Ok(())
    }
}

impl Drop for S3FileWrite {
    /// A writer dropped mid-upload (its round failed elsewhere) aborts the upload in the
    /// background, on the runtime it was used from (the sink's).
    fn drop(&mut self) {
        let Some(upload_id) = self.upload_id.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (files, path) = (self.files.clone(), self.path.clone());
        runtime.spawn(async move {
            if let Err(error) = files.abort_upload(&path, &upload_id).await {
                tracing::warn!(%error, "cannot abort a multipart upload");
            }
        });
    }
}
