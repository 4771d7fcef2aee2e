//! Where the object store is (`--object-store`, `--s3-*`): the tier opens it, the Iceberg sink
//! derives its default warehouse from it.

use std::path::PathBuf;

/// Where objects go, parsed from `--object-store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Directory(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses `file:///path`, `file://relative/path` or `s3://bucket[/prefix]`.
    pub fn parse(text: &str) -> Result<Location, String> {
        if let Some(path) = text.strip_prefix("file://") {
            if path.is_empty() {
                return Err("file:// needs a directory".to_string());
            }
            return Ok(Location::Directory(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("{text}: the bucket name is missing"));
            }
            let prefix = prefix.trim_matches('/');
            return Ok(Location::S3 { bucket: bucket.to_string(), prefix: prefix.to_string() });
        }
        Err(format!("{text}: expected file://DIR or s3://BUCKET/PREFIX"))
    }
}

/// S3 settings beside the location.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// A custom endpoint (S3-compatible servers); addressing is then path-style.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}
