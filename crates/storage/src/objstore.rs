//! Where blocks live: the local directory (default) or an object store named by URL
//! (`s3://bucket/prefix` for S3-compatible stores, `file:///abs/dir`), built here from plain
//! options (the server maps its config onto them), and the request counters every block
//! store keeps.
//!
//! A remote store's HTTP client runs on a small I/O runtime owned by the store, so storage's
//! API stays synchronous and callable from any thread (a blocking thread, a plain thread, even
//! an async task) without a tokio context of the caller's.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::client::SpawnedReqwestConnector;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientConfigKey, RetryConfig};

use crate::error::{Result, StorageError};

/// The block store named by URL, with what S3-compatible stores need. Fields left `None` fall
/// back to the standard `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`, ...), then to the S3 defaults.
#[derive(Clone, Default, PartialEq)]
pub struct ObjectStoreOptions {
    /// `s3://bucket[/prefix]` or `file:///absolute/dir`.
    pub url: String,
    /// S3 endpoint, e.g. `http://127.0.0.1:9000` for MinIO or moto (default: AWS).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (default false).
    pub allow_http: Option<bool>,
    pub access_key_id: Option<String>,
    /// Never printed: `Debug` shows it as `<redacted>`.
    pub secret_access_key: Option<String>,
    /// `https://bucket.endpoint/key` instead of `https://endpoint/bucket/key` (default false:
    /// path style, which MinIO, moto and most S3-compatible servers expect).
    pub virtual_hosted_style: Option<bool>,
}

impl fmt::Debug for ObjectStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreOptions")
            .field("url", &self.url)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

/// A parsed block store URL.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    File(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Parses `s3://bucket[/prefix]` or `file:///absolute/dir`; the error says what is wrong.
    pub fn parse(url: &str) -> std::result::Result<Location, String> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("no bucket name after s3://".into());
            }
            // S3 bucket naming rules, so a typo fails here and not at the first request.
            let ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && bucket.as_bytes()[0].is_ascii_alphanumeric()
                && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
            if !ok {
                return Err(format!(
                    "bucket name {bucket:?} is not a valid S3 bucket name (3 to 63 characters: \
                     lowercase letters, digits, '-' and '.', starting and ending with a letter \
                     or digit)"
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p.is_empty() || p == "." || p == "..")
                && !prefix.is_empty()
            {
                return Err(format!("prefix {prefix:?} has an empty, '.' or '..' segment"));
            }
            return Ok(Location::S3 { bucket: bucket.into(), prefix: prefix.into() });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err("a file:// URL needs an absolute path (file:///var/lib/blocks)".into());
            }
            return Ok(Location::File(PathBuf::from(rest)));
        }
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        Err(if scheme.is_empty() {
            "not a URL: expected s3://bucket[/prefix] or file:///absolute/dir".into()
        } else {
            format!("scheme {scheme}:// is not supported (s3:// and file:// are)")
        })
    }
}

impl ObjectStoreOptions {
    /// Checks the URL and the S3 settings without contacting the store (`check-config`).
    pub fn validate(&self) -> Result<()> {
        let err = |reason: String| StorageError::BlockStore { url: self.url.clone(), reason };
        match Location::parse(&self.url).map_err(err)? {
            Location::File(_) => Ok(()),
            Location::S3 { bucket, .. } => {
                install_crypto_provider();
                self.s3_builder(&bucket).build().map(|_| ()).map_err(|e| err(e.to_string()))
            }
        }
    }

    fn s3_builder(&self, bucket: &str) -> AmazonS3Builder {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(v) = &self.endpoint {
            b = b.with_endpoint(v);
        }
        if let Some(v) = &self.region {
            b = b.with_region(v);
        }
        if let Some(v) = self.allow_http {
            b = b.with_allow_http(v);
        }
        if let Some(v) = &self.access_key_id {
            b = b.with_access_key_id(v);
        }
        if let Some(v) = &self.secret_access_key {
            b = b.with_secret_access_key(v);
        }
        if let Some(v) = self.virtual_hosted_style {
            b = b.with_virtual_hosted_style_request(v);
        }
        // Set key by key: `with_client_options` would replace the client options
        // `with_allow_http` and the environment set.
        let client = |k: ClientConfigKey, v: &str| (AmazonS3ConfigKey::Client(k), v.to_string());
        for (k, v) in [
            client(ClientConfigKey::ConnectTimeout, "5s"),
            client(ClientConfigKey::Timeout, "120s"),
        ] {
            b = b.with_config(k, v);
        }
        b.with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
        })
    }
}

/// reqwest is built with `rustls-no-provider` (no aws-lc-sys): the process-wide TLS provider
/// is ring's, installed here. Any reqwest client built in this process (the binary's own
/// clients too) needs it first: `promlake`'s `main` calls this at start.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is all we need.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The I/O runtime of a remote store's HTTP client. Shut down without waiting, so dropping
/// the last store is fine on any thread (dropping a tokio runtime inside another would panic).
pub(crate) struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    pub(crate) fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|r| r.handle())
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A store, and the I/O runtime its client runs on (remote stores only).
pub(crate) type Built = (Arc<dyn ObjectStore>, Option<Arc<IoRuntime>>);

/// Builds the store a URL names: no request is made (see `BlockStore::check`).
pub(crate) fn build(opts: &ObjectStoreOptions) -> Result<Built> {
    let err = |reason: String| StorageError::BlockStore { url: opts.url.clone(), reason };
    match Location::parse(&opts.url).map_err(err)? {
        Location::File(dir) => {
            std::fs::create_dir_all(&dir).map_err(StorageError::io(&dir))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| err(e.to_string()))?;
            Ok((Arc::new(fs), None))
        }
        Location::S3 { bucket, prefix } => {
            install_crypto_provider();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("promlake-objstore")
                .enable_all()
                .build()
                .map_err(|e| err(format!("cannot start the object store I/O runtime: {e}")))?;
            let s3 = opts
                .s3_builder(&bucket)
                .with_http_connector(SpawnedReqwestConnector::new(rt.handle().clone()))
                .build()
                .map_err(|e| err(e.to_string()))?;
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(PrefixStore::new(s3, prefix.as_str()))
            };
            Ok((store, Some(Arc::new(IoRuntime(Some(rt))))))
        }
    }
}

/// Requests a block store made, by kind, and bytes moved (read at `/metrics` scrape).
#[derive(Debug, Default)]
pub struct StoreStats {
    pub gets: AtomicU64,
    pub puts: AtomicU64,
    pub heads: AtomicU64,
    pub lists: AtomicU64,
    pub deletes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub errors: AtomicU64,
}

/// A point-in-time copy of [`StoreStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub gets: u64,
    pub puts: u64,
    pub heads: u64,
    pub lists: u64,
    pub deletes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub errors: u64,
}

impl StoreStats {
    pub fn snapshot(&self) -> StoreCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreCounts {
            gets: l(&self.gets),
            puts: l(&self.puts),
            heads: l(&self.heads),
            lists: l(&self.lists),
            deletes: l(&self.deletes),
            bytes_read: l(&self.bytes_read),
            bytes_written: l(&self.bytes_written),
            errors: l(&self.errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One URL, and the location or the words of the error it gives.
    fn check(url: &str, expected: std::result::Result<Location, &str>) {
        match (Location::parse(url), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{url}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{url}: {got}"),
            (got, want) => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_block_store_urls() {
        let s3 = |b: &str, p: &str| Ok(Location::S3 { bucket: b.into(), prefix: p.into() });
        check("s3://metrics", s3("metrics", ""));
        check("s3://metrics/", s3("metrics", ""));
        check("s3://metrics/prod/blocks/", s3("metrics", "prod/blocks"));
        check("s3://my.bucket-1/x", s3("my.bucket-1", "x"));
        check("file:///var/lib/promlake", Ok(Location::File("/var/lib/promlake".into())));
        check("s3://", Err("no bucket name"));
        check("s3:///prefix", Err("no bucket name"));
        check("s3://My_Bucket", Err("not a valid S3 bucket name"));
        check("s3://ab", Err("not a valid S3 bucket name"));
        check("s3://b-/x", Err("not a valid S3 bucket name"));
        check("s3://bucket/a//b", Err("empty, '.' or '..' segment"));
        check("s3://bucket/a/../b", Err("empty, '.' or '..' segment"));
        check("file://relative/dir", Err("absolute path"));
        check("gs://bucket", Err("scheme gs:// is not supported"));
        check("bucket", Err("not a URL"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let o = ObjectStoreOptions {
            url: "s3://b1b".into(),
            secret_access_key: Some("hunter2".into()),
            ..Default::default()
        };
        let d = format!("{o:?}");
        assert!(!d.contains("hunter2") && d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn validate_names_the_url() {
        let o = ObjectStoreOptions { url: "s3://B".into(), ..Default::default() };
        let e = o.validate().unwrap_err().to_string();
        assert!(e.contains("s3://B") && e.contains("not a valid S3 bucket name"), "{e}");
        let o = ObjectStoreOptions {
            url: "s3://bucket/p".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_http: Some(true),
            ..Default::default()
        };
        o.validate().unwrap();
    }
}
