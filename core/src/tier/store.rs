//! The object store behind the tier, from a URL: a local folder by default, or S3 and
//! S3-compatible servers (`s3://bucket/prefix`). Both go through `object_store`, so the
//! rest of the tier has one code path.
//!
//! S3 settings come from the usual environment: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` (a custom endpoint, with
//! path-style requests), `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, RetryConfig};

use super::TierError;

/// An opened object store and the folder inside it that the tier owns.
#[derive(Debug, Clone)]
pub struct TierStore {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// The URL it was opened from, as users give it (for messages and SQL).
    pub url: String,
}

/// Opens the store named by `url`: `s3://bucket/prefix`, `file:///abs/path`, or a plain
/// local path.
///
/// # Errors
/// [`TierError::Config`] for an unknown scheme or a bad URL, [`TierError::Store`] when
/// the store cannot be set up.
pub fn open(url: &str) -> Result<TierStore, TierError> {
    let bad = |reason: String| TierError::Config { reason };
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad(format!("{url}: no bucket in the URL")));
        }
        // A short retry budget: a pass that waits minutes on one request holds up the
        // partitions behind it; the manager retries the partition later anyway.
        let retry = RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(20), ..RetryConfig::default() };
        let store = AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry).build()?;
        return Ok(TierStore { store: Arc::new(store), root: Path::from(prefix.trim_matches('/')), url: url.into() });
    }
    let dir = match url.split_once("://") {
        Some(("file", path)) => path,
        Some((scheme, _)) => return Err(bad(format!("{url}: unsupported scheme {scheme} (use s3:// or file://)"))),
        None => url,
    };
    let dir = FsPath::new(dir);
    if !dir.is_absolute() {
        return Err(bad(format!("{url}: a local tier folder must be an absolute path")));
    }
    std::fs::create_dir_all(dir).map_err(|source| TierError::Io {
        op: "create tier folder",
        path: dir.to_path_buf(),
        source,
    })?;
    let store = LocalFileSystem::new_with_prefix(dir)?;
    Ok(TierStore { store: Arc::new(store), root: Path::from(""), url: format!("file://{}", dir.display()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        let error = open("gs://bucket").unwrap_err().to_string();
        assert!(error.contains("unsupported scheme gs"), "{error}");
        assert!(open("relative/dir").unwrap_err().to_string().contains("absolute"));
        assert!(open("s3://").unwrap_err().to_string().contains("no bucket"));
        let dir = tempfile::tempdir().unwrap();
        let opened = open(dir.path().join("tier").to_str().unwrap()).unwrap();
        assert!(opened.url.starts_with("file://"));
        assert!(dir.path().join("tier").is_dir());
    }
}
