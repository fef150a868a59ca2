//! The configuration file (TOML). The doc comments here are the user reference; README's config
//! section is generated from the same text. Unknown fields are rejected by name.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the WAL and (with the default block store) the blocks. Default `./data`.
    pub data_dir: PathBuf,
    /// HTTP listen address. Default `127.0.0.1:9393`.
    pub http_listen: String,
    /// gRPC listen address. Default `127.0.0.1:9394`.
    pub grpc_listen: String,
    pub storage: StorageConfig,
    pub query: QueryConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// How far back an instant selector looks for a sample (default `"5m"`).
    #[serde(with = "humantime_serde_compat")]
    pub lookback_delta: Duration,
    /// Most samples one query may hold in memory (default 50,000,000). A split range query
    /// checks it per piece and again over its joined answer.
    pub max_samples: usize,
    /// Longest a query may run (default `"2m"`); a split range query's pieces share one
    /// deadline, counted from the query's start.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// Most samples one `SAMPLES` remote read answer may hold (default 50,000,000, as
    /// Prometheus' `--storage.remote.read-sample-limit`); 0 means no limit.
    pub remote_read_sample_limit: usize,
    /// Most queries (`/api/v1/query`, `/api/v1/query_range`) evaluated at once (default 20,
    /// as Prometheus' `--query.max-concurrency`; 0 is taken as 1).
    pub max_concurrent_queries: usize,
    /// Most queries waiting for a slot; beyond it a query is refused at once with 503
    /// (default 200).
    pub max_queued_queries: usize,
    /// Most distinct series one query may select from storage (default 1,000,000; 0 means
    /// no limit); beyond it the query fails with 422.
    pub max_series: usize,
    /// Largest answer of a query, series, labels, label values or federate request, in bytes (default
    /// 536,870,912 = 512 MiB; 0 means no limit); beyond it the request fails with 422.
    pub max_response_bytes: usize,
    /// Range queries are split at multiples of this interval (counted from the epoch, rounded
    /// up to a multiple of the step), the pieces evaluated in parallel and cached apart
    /// (default `"24h"`); `"0s"` turns splitting and the results cache off.
    #[serde(with = "humantime_serde_compat")]
    pub split_interval: Duration,
    /// Memory the range query results cache may hold, in bytes (approximate; default
    /// 268435456, 256 MiB); 0 turns the cache off.
    pub results_cache_max_bytes: u64,
    /// Results for steps later than now minus this are never cached: data there may still be
    /// arriving (default `"10m"`, as Mimir's `max_cache_freshness`).
    #[serde(with = "humantime_serde_compat")]
    pub cache_freshness: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            lookback_delta: Duration::from_secs(300),
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            remote_read_sample_limit: 50_000_000,
            max_concurrent_queries: 20,
            max_queued_queries: 200,
            max_series: 1_000_000,
            max_response_bytes: 512 << 20,
            split_interval: Duration::from_secs(24 * 3600),
            results_cache_max_bytes: 256 << 20,
            cache_freshness: Duration::from_secs(600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http_listen: "127.0.0.1:9393".into(),
            grpc_listen: "127.0.0.1:9394".into(),
            storage: StorageConfig::default(),
            query: QueryConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Span of a block cut from the head, e.g. `"2h"` (default).
    #[serde(with = "humantime_serde_compat")]
    pub block_duration: Duration,
    /// Blocks older than this are deleted, e.g. `"15d"` (default).
    #[serde(with = "humantime_serde_compat")]
    pub retention: Duration,
    /// How late a sample may arrive behind the tenant's newest sample, e.g. `"30m"` (default).
    #[serde(with = "humantime_serde_compat")]
    pub out_of_order_window: Duration,
    /// fsync the WAL before acknowledging a write (default true). Turning it off keeps data
    /// safe from a process crash but not from power loss or a kernel crash.
    pub fsync: bool,
    /// How often the head is cut into blocks, blocks compacted and retention applied (default `"1m"`).
    #[serde(with = "humantime_serde_compat")]
    pub maintenance_interval: Duration,
    /// Where blocks live. Empty (default): `<data_dir>/blocks`. `"s3://bucket/prefix"`: an
    /// S3-compatible bucket (AWS, MinIO, Ceph, moto, ...; settings in `[storage.s3]`), the
    /// prefix optional. `"file:///absolute/dir"`: another local directory. The WAL and head
    /// chunks stay in `data_dir` either way. `serve` lists the store before it starts and
    /// fails, naming the URL, if the store does not answer or the bucket does not exist.
    pub blocks_url: String,
    pub s3: S3Config,
}

/// `[storage.s3]`: settings for an `s3://` `blocks_url`. Every field left out falls back to the
/// standard environment variable in brackets, then to the S3 default.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server, e.g. `"http://127.0.0.1:9000"` (`AWS_ENDPOINT`;
    /// default: AWS itself).
    pub endpoint: Option<String>,
    /// Region (`AWS_REGION`; default `"us-east-1"`).
    pub region: Option<String>,
    /// Allow a plain `http://` endpoint (`AWS_ALLOW_HTTP`; default false).
    pub allow_http: Option<bool>,
    /// Access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (`AWS_SECRET_ACCESS_KEY`). Prefer the environment variable or
    /// `secret_access_key_file`; never printed or logged.
    pub secret_access_key: Option<String>,
    /// File holding the secret access key (surrounding whitespace ignored).
    pub secret_access_key_file: Option<PathBuf>,
    /// Virtual-hosted-style requests (`https://bucket.endpoint/key`) instead of path style
    /// (`https://endpoint/bucket/key`, what MinIO and moto expect) (`AWS_VIRTUAL_HOSTED_STYLE_REQUEST`;
    /// default false).
    pub virtual_hosted_style: Option<bool>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key.as_ref().map(|_| "<redacted>"))
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            block_duration: Duration::from_secs(2 * 3600),
            retention: Duration::from_secs(15 * 24 * 3600),
            out_of_order_window: Duration::from_secs(30 * 60),
            fsync: true,
            maintenance_interval: Duration::from_secs(60),
            blocks_url: String::new(),
            s3: S3Config::default(),
        }
    }
}

impl S3Config {
    /// `[storage.s3]` for the effective config: the fields set, the secret redacted.
    fn to_toml(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push_str(&format!("{k} = {v}\n"));
            }
        };
        line("endpoint", self.endpoint.as_ref().map(|v| format!("{v:?}")));
        line("region", self.region.as_ref().map(|v| format!("{v:?}")));
        line("allow_http", self.allow_http.map(|v| v.to_string()));
        line("access_key_id", self.access_key_id.as_ref().map(|v| format!("{v:?}")));
        line("secret_access_key", self.secret_access_key.as_ref().map(|_| "\"<redacted>\"".into()));
        line(
            "secret_access_key_file",
            self.secret_access_key_file.as_ref().map(|v| format!("{:?}", v.display().to_string())),
        );
        line("virtual_hosted_style", self.virtual_hosted_style.map(|v| v.to_string()));
        if out.is_empty() { out } else { format!("\n[storage.s3]\n{out}") }
    }
}

mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The effective configuration as TOML (for `/api/v1/status/config`).
    pub fn to_toml(&self) -> String {
        let d = |d: Duration| format!("{:?}", humantime::format_duration(d).to_string());
        format!(
            "data_dir = {:?}\nhttp_listen = {:?}\ngrpc_listen = {:?}\n\n[storage]\nblock_duration = {}\nretention = {}\nout_of_order_window = {}\nfsync = {}\nmaintenance_interval = {}\nblocks_url = {:?}\n{}\n[query]\nlookback_delta = {}\nmax_samples = {}\ntimeout = {}\nremote_read_sample_limit = {}\nsplit_interval = {}\nresults_cache_max_bytes = {}\ncache_freshness = {}\nmax_concurrent_queries = {}\nmax_queued_queries = {}\nmax_series = {}\nmax_response_bytes = {}\n",
            self.data_dir.display().to_string(),
            self.http_listen,
            self.grpc_listen,
            d(self.storage.block_duration),
            d(self.storage.retention),
            d(self.storage.out_of_order_window),
            self.storage.fsync,
            d(self.storage.maintenance_interval),
            self.storage.blocks_url,
            self.storage.s3.to_toml(),
            d(self.query.lookback_delta),
            self.query.max_samples,
            d(self.query.timeout),
            self.query.remote_read_sample_limit,
            d(self.query.split_interval),
            self.query.results_cache_max_bytes,
            d(self.query.cache_freshness),
            self.query.max_concurrent_queries,
            self.query.max_queued_queries,
            self.query.max_series,
            self.query.max_response_bytes,
        )
    }

    pub fn engine_options(&self) -> promql::EngineOptions {
        promql::EngineOptions {
            lookback_delta_ms: self.query.lookback_delta.as_millis() as i64,
            max_samples: self.query.max_samples,
            timeout: Some(self.query.timeout),
            ..Default::default()
        }
    }

    pub fn query_cache_settings(&self) -> crate::query_cache::Settings {
        crate::query_cache::Settings {
            split_interval_ms: self.query.split_interval.as_millis() as i64,
            max_bytes: self.query.results_cache_max_bytes,
            freshness_ms: self.query.cache_freshness.as_millis() as i64,
        }
    }

    /// Storage options; reads `secret_access_key_file` if set (the error names the file).
    pub fn storage_options(&self) -> Result<storage::Options, String> {
        let ms = |d: Duration| d.as_millis() as i64;
        let mut o = storage::Options::new(&self.data_dir);
        o.block_duration = ms(self.storage.block_duration).max(60_000);
        o.retention = ms(self.storage.retention);
        o.ooo_window = ms(self.storage.out_of_order_window);
        o.wal.fsync = self.storage.fsync;
        o.blocks = self.object_store_options()?;
        Ok(o)
    }

    /// The block store of `[storage] blocks_url`, `None` for the default local directory.
    fn object_store_options(&self) -> Result<Option<storage::ObjectStoreOptions>, String> {
        let url = self.storage.blocks_url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        let s3 = &self.storage.s3;
        let secret = match (&s3.secret_access_key, &s3.secret_access_key_file) {
            (Some(_), Some(_)) => {
                return Err("[storage.s3] sets both secret_access_key and \
                            secret_access_key_file: keep one"
                    .into());
            }
            (Some(k), None) => Some(k.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| {
                        format!(
                            "[storage.s3] secret_access_key_file {}: cannot read: {e}",
                            f.display()
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        Ok(Some(storage::ObjectStoreOptions {
            url: url.to_string(),
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            allow_http: s3.allow_http,
            access_key_id: s3.access_key_id.clone(),
            secret_access_key: secret,
            virtual_hosted_style: s3.virtual_hosted_style,
        }))
    }

    /// Checks what can be checked without contacting anything: the block store URL's syntax
    /// and S3 settings, the secret file (`check-config`; `serve` also lists the store).
    pub fn validate(&self) -> Result<(), String> {
        if let Some(o) = self.object_store_options()? {
            o.validate().map_err(|e| format!("[storage] blocks_url: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_config_round_trips() {
        let c = Config::from_toml("data_dir = \"/x\"\n[storage]\nretention = \"30d\"\nfsync = false\n[query]\ntimeout = \"90s\"\nsplit_interval = \"0s\"\nresults_cache_max_bytes = 1000\nmax_series = 7\nmax_response_bytes = 1000\n").unwrap();
        let back = Config::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back.to_toml(), c.to_toml());
        assert_eq!(back.storage.retention, Duration::from_secs(30 * 86400));
        assert_eq!(back.query.timeout, Duration::from_secs(90));
        assert_eq!((back.query.max_series, back.query.max_response_bytes), (7, 1000));
        assert_eq!(back.query.max_concurrent_queries, 20);
        assert!(!back.storage.fsync);
        assert_eq!(back.query.split_interval, Duration::ZERO);
        assert_eq!(back.query.results_cache_max_bytes, 1000);
        assert_eq!(back.query.cache_freshness, Duration::from_secs(600));
    }

    #[test]
    fn parses_and_rejects_unknown_fields() {
        let c =
            Config::from_toml("data_dir = \"/x\"\n[storage]\nretention = \"30d\"\nfsync = false\n")
                .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.storage.retention, Duration::from_secs(30 * 86400));
        assert!(!c.storage.fsync);
        let e = Config::from_toml("[storage]\nretension = \"1d\"\n").unwrap_err();
        assert!(e.contains("retension"), "{e}");
        let e = Config::from_toml("[storage]\nretention = \"soon\"\n").unwrap_err();
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn blocks_url_and_s3_settings() {
        let text = "[storage]\nblocks_url = \"s3://metrics/prod\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\nallow_http = true\naccess_key_id = \"AKID\"\nsecret_access_key = \"hunter2\"\n";
        let c = Config::from_toml(text).unwrap();
        let o = c.storage_options().unwrap().blocks.unwrap();
        assert_eq!(
            (o.url.as_str(), o.endpoint.as_deref(), o.region.as_deref(), o.allow_http),
            ("s3://metrics/prod", Some("http://127.0.0.1:9000"), Some("eu-west-1"), Some(true))
        );
        assert_eq!(o.secret_access_key.as_deref(), Some("hunter2"));
        assert_eq!(o.virtual_hosted_style, None, "left to the environment, then path style");
        c.validate().unwrap();
        // The secret is never shown: not in the effective config, not in Debug (check-config).
        let shown = format!("{}{c:?}", c.to_toml());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(c.to_toml().contains("[storage.s3]\nendpoint = \"http://127.0.0.1:9000\""));
        let back = Config::from_toml(&c.to_toml()).unwrap();
        assert_eq!(back.storage.blocks_url, "s3://metrics/prod");
        assert_eq!(back.storage.s3.allow_http, Some(true));
        // Default: local blocks, no [storage.s3] table in the effective config.
        let d = Config::default();
        assert!(d.storage_options().unwrap().blocks.is_none());
        assert!(!d.to_toml().contains("[storage.s3]"));
    }

    /// A config's text and the words `validate` (or `storage_options`) must answer with.
    fn check_invalid(text: &str, expected: &str) {
        let c = Config::from_toml(text).unwrap();
        let e = c.validate().unwrap_err();
        assert!(e.contains(expected), "{text}: {e}");
    }

    #[test]
    fn bad_block_store_settings_are_named() {
        check_invalid(
            "[storage]\nblocks_url = \"gs://bucket\"\n",
            "[storage] blocks_url: block store gs://bucket: scheme gs:// is not supported",
        );
        check_invalid(
            "[storage]\nblocks_url = \"s3://Bad_Bucket\"\n",
            "not a valid S3 bucket name",
        );
        check_invalid("[storage]\nblocks_url = \"file://rel\"\n", "absolute path");
        check_invalid(
            "[storage]\nblocks_url = \"s3://bucket\"\n[storage.s3]\nsecret_access_key = \"a\"\nsecret_access_key_file = \"/x\"\n",
            "both secret_access_key and secret_access_key_file",
        );
        check_invalid(
            "[storage]\nblocks_url = \"s3://bucket\"\n[storage.s3]\nsecret_access_key_file = \"/nonexistent/secret\"\n",
            "secret_access_key_file /nonexistent/secret: cannot read",
        );
        let e = Config::from_toml("[storage.s3]\nendpont = \"x\"\n").unwrap_err();
        assert!(e.contains("endpont"), "{e}");
    }

    #[test]
    fn secret_from_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        let text = format!(
            "[storage]\nblocks_url = \"s3://bucket\"\n[storage.s3]\nsecret_access_key_file = {:?}\n",
            f.display().to_string()
        );
        let c = Config::from_toml(&text).unwrap();
        let o = c.storage_options().unwrap().blocks.unwrap();
        assert_eq!(o.secret_access_key.as_deref(), Some("s3cr3t"));
    }
}
