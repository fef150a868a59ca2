//! promlake's own metrics, all named here, exposed at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub tenant: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    pub handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseTypeLabels {
    pub response_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// `instant` or `range`.
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The config name of the limit, e.g. `query.max_series`.
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// `get`, `put`, `head`, `list`, `delete`.
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `read` or `written`.
    pub direction: String,
}

pub struct Metrics {
    pub registry: Registry,
    /// `promlake_block_store_requests{op}`: requests to the block store (local dir or bucket)
    /// since start, by kind (a gauge set from storage's counters at scrape).
    pub block_store_requests: Family<OpLabels, Gauge>,
    /// `promlake_block_store_errors`: block store requests that failed since start.
    pub block_store_errors: Gauge,
    /// `promlake_block_store_bytes{direction}`: object bytes read and written since start.
    pub block_store_bytes: Family<DirectionLabels, Gauge>,
    /// `promlake_ingested_samples_total{tenant}`: samples stored.
    pub ingested_samples: Family<TenantLabels, Counter>,
    /// `promlake_ingested_series_created_total{tenant}`: new series.
    pub series_created: Family<TenantLabels, Counter>,
    /// `promlake_ingested_exemplars_total{tenant}`: exemplars stored (duplicates not counted).
    pub ingested_exemplars: Family<TenantLabels, Counter>,
    /// `promlake_exemplars{tenant}`: exemplars held (a ring of at most 100,000), at scrape.
    pub exemplars: Family<TenantLabels, Gauge>,
    /// `promlake_metadata_families{tenant}`: metric families with metadata, at scrape.
    pub metadata_families: Family<TenantLabels, Gauge>,
    /// `promlake_rejected_samples_total{tenant,reason}`.
    pub rejected_samples: Family<RejectLabels, Counter>,
    /// `promlake_http_request_duration_seconds{handler}`.
    pub http_duration: Family<HandlerLabels, Histogram>,
    /// `promlake_head_series{tenant}`, refreshed at scrape.
    pub head_series: Family<TenantLabels, Gauge>,
    /// `promlake_blocks{tenant}`, refreshed at scrape.
    pub blocks: Family<TenantLabels, Gauge>,
    /// `promlake_wal_fsyncs_total{tenant}` and `promlake_wal_bytes_written_total{tenant}`.
    pub wal_fsyncs: Family<TenantLabels, Gauge>,
    pub wal_bytes: Family<TenantLabels, Gauge>,
    /// `promlake_wal_corruptions{tenant}`: damaged records skipped at the last replay.
    pub wal_corruptions: Family<TenantLabels, Gauge>,
    /// `promlake_compactions_total{tenant}`.
    pub compactions: Family<TenantLabels, Gauge>,
    /// `promlake_remote_read_queries_total{response_type}`: remote read queries answered.
    pub remote_read_queries: Family<ResponseTypeLabels, Counter>,
    /// `promlake_query_duration_seconds{endpoint}`: PromQL evaluation, queue wait excluded.
    pub query_duration: Family<QueryLabels, Histogram>,
    /// `promlake_query_samples_loaded{endpoint}`: samples read from storage per query.
    pub query_samples: Family<QueryLabels, Histogram>,
    /// `promlake_queries_rejected_total{limit}`: requests refused or stopped by a limit.
    pub queries_rejected: Family<LimitLabels, Counter>,
    /// `promlake_head_chunks{tenant}`: head chunks (open and closed), at scrape.
    pub head_chunks: Family<TenantLabels, Gauge>,
    /// `promlake_wal_fsync_duration_seconds{tenant}`, read from storage at scrape.
    wal_fsync: std::sync::Arc<WalFsyncCollector>,
    // Range query results cache (`query_cache.rs`).
    /// `promlake_query_cache_hits_total{tenant}`: extents (pieces of a range query's
    /// intervals) answered from the results cache.
    pub query_cache_hits: Family<TenantLabels, Counter>,
    /// `promlake_query_cache_misses_total{tenant}`: pieces of cacheable range queries computed.
    pub query_cache_misses: Family<TenantLabels, Counter>,
    /// `promlake_query_cache_hit_steps_total{tenant}`: steps answered from the cache.
    pub query_cache_hit_steps: Family<TenantLabels, Counter>,
    /// `promlake_query_cache_miss_steps_total{tenant}`: steps of cacheable queries computed.
    pub query_cache_miss_steps: Family<TenantLabels, Counter>,
    /// `promlake_query_cache_invalidations_total{tenant}`: cached extents dropped because a
    /// write touched their range.
    pub query_cache_invalidations: Family<TenantLabels, Counter>,
    /// `promlake_query_cache_evictions_total`: intervals evicted to stay within
    /// `results_cache_max_bytes`.
    pub query_cache_evictions: Counter,
    /// `promlake_query_cache_entries` and `promlake_query_cache_bytes`: held, at scrape.
    pub query_cache_entries: Gauge,
    pub query_cache_bytes: Gauge,
}

/// Encodes each tenant's WAL fsync latency (plain atomics in storage) as a histogram.
#[derive(Debug, Default)]
struct WalFsyncCollector {
    db: parking_lot::Mutex<Option<std::sync::Weak<storage::Db>>>,
}

impl prometheus_client::collector::Collector for WalFsyncCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        let Some(db) = self.db.lock().as_ref().and_then(|w| w.upgrade()) else { return Ok(()) };
        let mut family = encoder.encode_descriptor(
            "wal_fsync_duration_seconds",
            "WAL fsync latency",
            None,
            prometheus_client::metrics::MetricType::Histogram,
        )?;
        for t in db.tenants() {
            let (sum, count, buckets) = t.wal().fsync_latency.snapshot();
            let l = TenantLabels { tenant: t.tenant.to_string() };
            family.encode_family(&l)?.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
        }
        Ok(())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("promlake");
        let ingested_samples = Family::default();
        registry.register("ingested_samples", "Samples stored", ingested_samples.clone());
        let series_created = Family::default();
        registry.register("ingested_series_created", "Series created", series_created.clone());
        let ingested_exemplars = Family::default();
        registry.register("ingested_exemplars", "Exemplars stored", ingested_exemplars.clone());
        let exemplars = Family::default();
        registry.register("exemplars", "Exemplars held in memory", exemplars.clone());
        let metadata_families = Family::default();
        registry.register(
            "metadata_families",
            "Metric families with metadata",
            metadata_families.clone(),
        );
        let rejected_samples = Family::default();
        registry.register(
            "rejected_samples",
            "Samples rejected, by reason",
            rejected_samples.clone(),
        );
        let http_duration = Family::<HandlerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by handler",
            http_duration.clone(),
        );
        let head_series = Family::default();
        registry.register("head_series", "Series in the in-memory head", head_series.clone());
        let blocks = Family::default();
        registry.register("blocks", "Blocks per tenant", blocks.clone());
        let wal_fsyncs = Family::default();
        registry.register(
            "wal_fsyncs",
            "WAL fsyncs since start (group commit shares them)",
            wal_fsyncs.clone(),
        );
        let wal_bytes = Family::default();
        registry.register("wal_bytes_written", "WAL bytes written since start", wal_bytes.clone());
        let wal_corruptions = Family::default();
        registry.register(
            "wal_corruptions",
            "Damaged WAL records skipped at the last replay",
            wal_corruptions.clone(),
        );
        let compactions = Family::default();
        registry.register("compactions", "Compactions since start", compactions.clone());
        let remote_read_queries = Family::default();
        registry.register(
            "remote_read_queries",
            "Remote read queries, by response type (samples, streamed_xor_chunks)",
            remote_read_queries.clone(),
        );
        let query_duration = Family::<QueryLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "query_duration_seconds",
            "PromQL query evaluation latency by endpoint (instant, range), queue wait excluded",
            query_duration.clone(),
        );
        let query_samples = Family::<QueryLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(1.0, 4.0, 15))
        });
        registry.register(
            "query_samples_loaded",
            "Samples read from storage per query, by endpoint",
            query_samples.clone(),
        );
        let queries_rejected = Family::default();
        registry.register(
            "queries_rejected",
            "Queries refused or stopped by a limit, by limit",
            queries_rejected.clone(),
        );
        let head_chunks = Family::default();
        registry.register(
            "head_chunks",
            "Chunks in the head (open and closed)",
            head_chunks.clone(),
        );
        let wal_fsync = std::sync::Arc::new(WalFsyncCollector::default());
        registry.register_collector(Box::new(wal_fsync.clone()));
        let query_cache_hits = Family::default();
        registry.register(
            "query_cache_hits",
            "Range query extents answered from the results cache",
            query_cache_hits.clone(),
        );
        let query_cache_misses = Family::default();
        registry.register(
            "query_cache_misses",
            "Range query extents computed for cacheable queries",
            query_cache_misses.clone(),
        );
        let query_cache_hit_steps = Family::default();
        registry.register(
            "query_cache_hit_steps",
            "Range query steps answered from the results cache",
            query_cache_hit_steps.clone(),
        );
        let query_cache_miss_steps = Family::default();
        registry.register(
            "query_cache_miss_steps",
            "Range query steps computed for cacheable queries",
            query_cache_miss_steps.clone(),
        );
        let query_cache_invalidations = Family::default();
        registry.register(
            "query_cache_invalidations",
            "Cached extents dropped because a write touched their range",
            query_cache_invalidations.clone(),
        );
        let query_cache_evictions = Counter::default();
        registry.register(
            "query_cache_evictions",
            "Intervals evicted from the results cache to stay within its size",
            query_cache_evictions.clone(),
        );
        let query_cache_entries = Gauge::default();
        registry.register(
            "query_cache_entries",
            "Intervals held in the results cache",
            query_cache_entries.clone(),
        );
        let query_cache_bytes = Gauge::default();
        registry.register(
            "query_cache_bytes",
            "Approximate bytes held in the results cache",
            query_cache_bytes.clone(),
        );
        let block_store_requests = Family::default();
        registry.register(
            "block_store_requests",
            "Requests to the block store since start, by kind",
            block_store_requests.clone(),
        );
        let block_store_errors = Gauge::default();
        registry.register(
            "block_store_errors",
            "Block store requests that failed since start",
            block_store_errors.clone(),
        );
        let block_store_bytes = Family::default();
        registry.register(
            "block_store_bytes",
            "Object bytes read from and written to the block store since start",
            block_store_bytes.clone(),
        );
        Metrics {
            registry,
            block_store_requests,
            block_store_errors,
            block_store_bytes,
            query_duration,
            query_samples,
            queries_rejected,
            head_chunks,
            wal_fsync,
            ingested_samples,
            series_created,
            ingested_exemplars,
            exemplars,
            metadata_families,
            rejected_samples,
            http_duration,
            head_series,
            blocks,
            wal_fsyncs,
            wal_bytes,
            wal_corruptions,
            compactions,
            remote_read_queries,
            query_cache_hits,
            query_cache_misses,
            query_cache_hit_steps,
            query_cache_miss_steps,
            query_cache_invalidations,
            query_cache_evictions,
            query_cache_entries,
            query_cache_bytes,
        }
    }

    /// Counts what one append stored and rejected.
    pub fn record_append(&self, tenant: &model::TenantId, outcome: &model::AppendOutcome) {
        let tl = TenantLabels { tenant: tenant.to_string() };
        self.ingested_samples.get_or_create(&tl).inc_by(outcome.samples_written as u64);
        self.series_created.get_or_create(&tl).inc_by(outcome.series_created as u64);
        self.ingested_exemplars.get_or_create(&tl).inc_by(outcome.exemplars_written as u64);
        for r in &outcome.rejected {
            self.record_rejected(tenant, r.reason.name(), r.samples);
        }
    }

    /// Counts samples rejected for `reason`.
    pub fn record_rejected(&self, tenant: &model::TenantId, reason: &str, samples: usize) {
        let l = RejectLabels { tenant: tenant.to_string(), reason: reason.to_string() };
        self.rejected_samples.get_or_create(&l).inc_by(samples as u64);
    }

    /// Counts a request refused or stopped by `limit` (its config name).
    pub fn record_limit(&self, limit: &str) {
        self.queries_rejected.get_or_create(&LimitLabels { limit: limit.to_string() }).inc();
    }

    pub fn refresh(&self, db: &std::sync::Arc<storage::Db>) {
        use std::sync::atomic::Ordering::Relaxed;
        *self.wal_fsync.db.lock() = Some(std::sync::Arc::downgrade(db));
        let c = db.store().stats();
        for (op, n) in [
            ("get", c.gets),
            ("put", c.puts),
            ("head", c.heads),
            ("list", c.lists),
            ("delete", c.deletes),
        ] {
            self.block_store_requests.get_or_create(&OpLabels { op: op.into() }).set(n as i64);
        }
        self.block_store_errors.set(c.errors as i64);
        for (direction, n) in [("read", c.bytes_read), ("written", c.bytes_written)] {
            let l = DirectionLabels { direction: direction.into() };
            self.block_store_bytes.get_or_create(&l).set(n as i64);
        }
        for t in db.tenants() {
            let l = TenantLabels { tenant: t.tenant.to_string() };
            self.head_series.get_or_create(&l).set(t.head.num_series() as i64);
            self.blocks.get_or_create(&l).set(t.blocks().len() as i64);
            self.exemplars.get_or_create(&l).set(t.exemplars.len() as i64);
            self.metadata_families.get_or_create(&l).set(t.metadata.num_families() as i64);
            self.wal_fsyncs.get_or_create(&l).set(t.wal().fsyncs.load(Relaxed) as i64);
            self.wal_bytes.get_or_create(&l).set(t.wal().bytes_written.load(Relaxed) as i64);
            self.wal_corruptions
                .get_or_create(&l)
                .set(t.stats.wal_corruptions.load(Relaxed) as i64);
            self.compactions.get_or_create(&l).set(t.stats.compactions.load(Relaxed) as i64);
            self.head_chunks.get_or_create(&l).set(t.head.num_chunks() as i64);
        }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}
