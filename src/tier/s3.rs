//! S3 by bucket and key, for writers beside the flusher: the Iceberg sink's warehouse.
//!
//! The flusher's [`S3Store`](super::object_store::S3Store) is confined to one bucket and prefix
//! and only creates objects; Iceberg addresses files by whole `s3://bucket/key` URLs, overwrites
//! nothing but may write the same name again on retry, reads byte ranges, and writes data files of
//! up to the target size (128 MiB by default) that are sent in parts (multipart upload) so that
//! memory holds one part at a time. Both are built from the same flags (`--s3-endpoint`,
//! `--s3-region`, the standard AWS credential chain) by [`client`]; this module keeps every use of
//! `aws-sdk-s3` inside `tier`.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::object_store::{ObjectStoreError, S3Options};

/// An S3 client configured from the broker's flags. Retries up to 5 attempts, backing off up to
/// 5 s; a custom endpoint implies path-style addressing (what S3-compatible servers expect).
pub async fn client(options: &S3Options) -> Result<aws_sdk_s3::Client, ObjectStoreError> {
    use aws_config::retry::RetryConfig;
    use aws_smithy_http_client::tls;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    match (&options.region, &options.endpoint) {
        (Some(region), _) => loader = loader.region(aws_config::Region::new(region.clone())),
        // S3-compatible servers rarely care; signing still needs a region.
        (None, Some(_)) => {
            loader =
                loader.region(aws_config::meta::region::RegionProviderChain::default_provider().or_else("us-east-1"))
        }
        (None, None) => {}
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(ObjectStoreError::Config("no AWS region: set --s3-region, AWS_REGION or a profile region".into()));
    }
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .retry_config(RetryConfig::standard().with_max_attempts(5).with_max_backoff(Duration::from_secs(5)));
    if let Some(endpoint) = &options.endpoint {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    Ok(aws_sdk_s3::Client::from_conf(config.build()))
}

/// A bucket and key parsed from `s3://bucket/key` (also `s3a://` and `s3n://`, which Hadoop-based
/// engines write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Path {
    pub bucket: String,
    pub key: String,
}

impl S3Path {
    /// `None` when `url` is not an S3 URL with a bucket.
    pub fn parse(url: &str) -> Option<S3Path> {
        let rest = ["s3://", "s3a://", "s3n://"].iter().find_map(|scheme| url.strip_prefix(scheme))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return None;
        }
        Some(S3Path { bucket: bucket.to_string(), key: key.to_string() })
    }
}

impl std::fmt::Display for S3Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// Whole-object and ranged reads, plain and multipart writes, listing and deletion, by
/// bucket and key.
#[derive(Debug, Clone)]
pub struct S3Files {
    client: aws_sdk_s3::Client,
}

fn s3_error<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
    path: &S3Path,
    error: aws_sdk_s3::error::SdkError<E>,
) -> ObjectStoreError {
    let status = error.raw_response().map(|r| r.status().as_u16());
    let detail = aws_sdk_s3::error::DisplayErrorContext(&error);
    match status {
        Some(status) => ObjectStoreError::Io(format!("{what} {path}: HTTP {status}: {detail}")),
        None => ObjectStoreError::Io(format!("{what} {path}: {detail}")),
    }
}

fn not_found<E>(error: &aws_sdk_s3::error::SdkError<E>) -> bool {
    error.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

impl S3Files {
    pub async fn connect(options: &S3Options) -> Result<S3Files, ObjectStoreError> {
        Ok(S3Files { client: client(options).await? })
    }

    /// The object's size, or `None` when there is no such object.
    pub async fn size(&self, path: &S3Path) -> Result<Option<u64>, ObjectStoreError> {
        let sent = self.client.head_object().bucket(&path.bucket).key(&path.key).send().await;
        match sent {
            Ok(output) => Ok(Some(output.content_length().unwrap_or(0).max(0) as u64)),
            Err(error) if not_found(&error) => Ok(None),
            Err(error) => Err(s3_error("cannot stat", path, error)),
        }
    }

    /// The whole object, or the bytes in `range` (which must not be empty). `None`: no object.
    pub async fn get(&self, path: &S3Path, range: Option<Range<u64>>) -> Result<Option<Bytes>, ObjectStoreError> {
        let mut request = self.client.get_object().bucket(&path.bucket).key(&path.key);
        if let Some(range) = &range {
            // HTTP ranges are inclusive.
            request = request.range(format!("bytes={}-{}", range.start, range.end.saturating_sub(1)));
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(error) if not_found(&error) => return Ok(None),
            Err(error) => return Err(s3_error("cannot get", path, error)),
        };
        let body = output.body.collect().await.map_err(|e| ObjectStoreError::Io(format!("cannot read {path}: {e}")))?;
        let body = body.into_bytes();
        if let Some(range) = range
            && body.len() as u64 != range.end - range.start
        {
            return Err(ObjectStoreError::Io(format!(
                "cannot read {path}: asked for bytes {}..{}, got {} bytes",
                range.start,
                range.end,
                body.len()
            )));
        }
        Ok(Some(body))
    }

    /// Writes the object in one request, replacing any object of that key.
    pub async fn put(&self, path: &S3Path, body: Bytes) -> Result<(), ObjectStoreError> {
        self.client
            .put_object()
            .bucket(&path.bucket)
            .key(&path.key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("cannot put", path, e))?;
        Ok(())
    }

    /// Starts a multipart upload; returns its id.
    pub async fn start_upload(&self, path: &S3Path) -> Result<String, ObjectStoreError> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&path.bucket)
            .key(&path.key)
            .send()
            .await
            .map_err(|e| s3_error("cannot start an upload of", path, e))?;
        output
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| ObjectStoreError::Io(format!("cannot start an upload of {path}: no upload id")))
    }

    /// Uploads part `number` (from 1; every part but the last at least 5 MiB); returns its ETag.
    pub async fn upload_part(
        &self,
        path: &S3Path,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, ObjectStoreError> {
        let output = self
            .client
            .upload_part()
            .bucket(&path.bucket)
            .key(&path.key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| s3_error("cannot upload a part of", path, e))?;
        output
            .e_tag()
            .map(str::to_string)
            .ok_or_else(|| ObjectStoreError::Io(format!("cannot upload part {number} of {path}: no ETag")))
    }

    /// Joins the parts (number, ETag) into the object.
    pub async fn complete_upload(
        &self,
        path: &S3Path,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ObjectStoreError> {
        let parts = parts
            .iter()
            .map(|(number, etag)| CompletedPart::builder().part_number(*number).e_tag(etag).build())
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&path.bucket)
            .key(&path.key)
            .upload_id(upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map_err(|e| s3_error("cannot complete the upload of", path, e))?;
        Ok(())
    }

    /// Drops an unfinished upload and the parts it stored.
    pub async fn abort_upload(&self, path: &S3Path, upload_id: &str) -> Result<(), ObjectStoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&path.bucket)
            .key(&path.key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| s3_error("cannot abort the upload of", path, e))?;
        Ok(())
    }

    /// Keys of every object whose key starts with `path.key`, in the same bucket.
    pub async fn list(&self, path: &S3Path) -> Result<Vec<String>, ObjectStoreError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&path.bucket).prefix(&path.key).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("cannot list", path, e))?;
            out.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        }
        Ok(out)
    }

    /// Keys and last-modified times (ms since the epoch) of every object whose key starts with
    /// `path.key`, in the same bucket.
    pub async fn list_modified(&self, path: &S3Path) -> Result<Vec<(String, i64)>, ObjectStoreError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&path.bucket).prefix(&path.key).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("cannot list", path, e))?;
            out.extend(page.contents().iter().filter_map(|o| {
                let modified = o.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(i64::MAX);
                Some((o.key()?.to_string(), modified))
            }));
        }
        Ok(out)
    }

    /// Deletes the object; deleting an object that is not there succeeds.
    pub async fn delete(&self, path: &S3Path) -> Result<(), ObjectStoreError> {
        self.client
            .delete_object()
            .bucket(&path.bucket)
            .key(&path.key)
            .send()
            .await
            .map_err(|e| s3_error("cannot delete", path, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_urls() {
        let path = S3Path::parse("s3://bucket/a/b.parquet").unwrap();
        assert_eq!((path.bucket.as_str(), path.key.as_str()), ("bucket", "a/b.parquet"));
        assert_eq!(path.to_string(), "s3://bucket/a/b.parquet");
        assert_eq!(S3Path::parse("s3a://b/k").unwrap().key, "k");
        assert_eq!(S3Path::parse("s3://b").unwrap().key, "");
        for bad in ["s3://", "s3:///k", "file:///x", "/x", "gs://b/k"] {
            assert!(S3Path::parse(bad).is_none(), "{bad:?}");
        }
    }
}
