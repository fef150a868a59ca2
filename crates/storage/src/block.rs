//! Immutable blocks: one tenant's samples for one time range as Parquet files (series,
//! label index, samples) plus `meta.json`, written through `object_store`. Byte layout and
//! schemas: docs/format/block.md.
//!
//! A block exists once its `meta.json` exists: it is written last, and deleted first.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use arrow_array::builder::{ListBuilder, MapBuilder, StringBuilder, UInt32Builder};
use arrow_array::{
    Array, BinaryArray, Int64Array, ListArray, MapArray, RecordBatch, StringArray, UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use futures::TryStreamExt;
use model::{HistogramSample, Label, Labels, Matcher, Sample, TenantId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::{Result, StorageError};
use crate::index::Postings;
use crate::objstore::{IoRuntime, ObjectStoreOptions, StoreCounts, StoreStats};

/// 2 added `histograms.parquet`; version 1 blocks (no histograms) open unchanged.
pub const FORMAT_VERSION: u32 = 2;
/// Longest run of samples in one row of samples.parquet.
const MAX_ROW_SAMPLES: usize = 1 << 16;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BlockMeta {
    pub ulid: String,
    pub version: u32,
    /// Inclusive.
    pub min_time: i64,
    /// Inclusive.
    pub max_time: i64,
    pub num_series: u64,
    pub num_samples: u64,
    /// 1 for a block cut from the head; compaction adds one.
    pub level: u32,
    /// Blocks this one replaced (itself for a head cut).
    pub sources: Vec<String>,
    /// Bytes of the Parquet files.
    #[serde(default)]
    pub size_bytes: u64,
    /// Native histogram samples; `histograms.parquet` exists only when this is above 0.
    #[serde(default)]
    pub num_histograms: u64,
}

/// One series as a block holds it: labels, float samples and histogram samples, each sorted
/// by time and deduplicated.
pub type BlockSeries = (Labels, Vec<Sample>, Vec<HistogramSample>);

/// Sync facade over an object store; storage runs on blocking threads. Counts its requests
/// (`stats`). A local store runs object_store's futures on the calling thread, as it always
/// did; a remote one (`objstore.rs`) runs them on its own I/O runtime.
#[derive(Clone)]
pub struct BlockStore {
    store: Arc<dyn ObjectStore>,
    io: Option<Arc<IoRuntime>>,
    stats: Arc<StoreStats>,
    /// What the store is, for logs and errors (`file:///dir`, `s3://bucket/prefix`, `memory://`).
    url: Arc<str>,
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[derive(Clone, Copy)]
enum Op {
    Get,
    Put,
    Head,
    List,
    Delete,
}

impl BlockStore {
    /// A store over any `ObjectStore` whose futures need no runtime of their own (e.g.
    /// `object_store::memory::InMemory` in tests).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        BlockStore { store, io: None, stats: Arc::default(), url: "memory://".into() }
    }

    pub fn local(dir: &std::path::Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(BlockStore {
            store: Arc::new(fs),
            io: None,
            stats: Arc::default(),
            url: format!("file://{}", dir.display()).into(),
        })
    }

    /// The store a URL names (`objstore.rs`). Makes no request: call [`BlockStore::check`]
    /// to find out whether it answers.
    pub fn open_url(opts: &ObjectStoreOptions) -> Result<Self> {
        let (store, io) = crate::objstore::build(opts)?;
        Ok(BlockStore { store, io, stats: Arc::default(), url: opts.url.as_str().into() })
    }

    /// Lists the store's top level: an unreachable store, a missing bucket or refused
    /// credentials fail here with an error naming the URL.
    pub fn check(&self) -> Result<()> {
        self.exec(Op::List, |s| async move { s.list_with_delimiter(None).await.map(|_| ()) })
            .map_err(|e| StorageError::BlockStore {
                url: self.url.to_string(),
                reason: format!("cannot list the store: {e}"),
            })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Requests made so far, by kind, and bytes moved.
    pub fn stats(&self) -> StoreCounts {
        self.stats.snapshot()
    }

    /// Runs one object_store call: on the calling thread for local stores, on the store's I/O
    /// runtime for remote ones (the caller then only waits on a channel, so any thread works).
    fn exec<T, Fut, F>(&self, op: Op, f: F) -> Result<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = object_store::Result<T>> + Send + 'static,
        F: FnOnce(Arc<dyn ObjectStore>) -> Fut,
    {
        let st = &self.stats;
        match op {
            Op::Get => &st.gets,
            Op::Put => &st.puts,
            Op::Head => &st.heads,
            Op::List => &st.lists,
            Op::Delete => &st.deletes,
        }
        .fetch_add(1, Ordering::Relaxed);
        let fut = f(self.store.clone());
        let r = match self.io.as_deref().and_then(IoRuntime::handle) {
            None => run(fut),
            Some(h) => {
                let (tx, rx) = futures::channel::oneshot::channel();
                h.spawn(async move {
                    let _ = tx.send(fut.await);
                });
                run(rx).map_err(|_| {
                    StorageError::ObjectStore(format!(
                        "{}: the object store I/O runtime stopped",
                        self.url
                    ))
                })?
            }
        };
        if r.is_err() {
            st.errors.fetch_add(1, Ordering::Relaxed);
        }
        Ok(r?)
    }

    fn path(tenant: &TenantId, ulid: &str, file: &str) -> ObjPath {
        ObjPath::from(format!("{}/{}/{}", tenant.as_str(), ulid, file))
    }

    pub fn put(&self, tenant: &TenantId, ulid: &str, file: &str, data: Vec<u8>) -> Result<()> {
        let path = Self::path(tenant, ulid, file);
        let n = data.len() as u64;
        self.exec(Op::Put, |s| async move { s.put(&path, Bytes::from(data).into()).await })?;
        self.stats.bytes_written.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    pub fn get(&self, tenant: &TenantId, ulid: &str, file: &str) -> Result<Bytes> {
        let path = Self::path(tenant, ulid, file);
        let b = self.exec(Op::Get, |s| async move { s.get(&path).await?.bytes().await })?;
        self.stats.bytes_read.fetch_add(b.len() as u64, Ordering::Relaxed);
        Ok(b)
    }

    /// Tenants with at least one object.
    pub fn tenants(&self) -> Result<Vec<TenantId>> {
        let l = self.exec(Op::List, |s| async move { s.list_with_delimiter(None).await })?;
        Ok(l.common_prefixes.iter().filter_map(|p| TenantId::new(p.as_ref()).ok()).collect())
    }

    /// Complete blocks (those with a meta.json) of a tenant.
    pub fn blocks(&self, tenant: &TenantId) -> Result<Vec<String>> {
        let prefix = ObjPath::from(tenant.as_str());
        let l =
            self.exec(Op::List, |s| async move { s.list_with_delimiter(Some(&prefix)).await })?;
        let mut out = Vec::new();
        for p in l.common_prefixes {
            let Some(ulid) = p.filename() else { continue };
            let meta = Self::path(tenant, ulid, "meta.json");
            if self.exec(Op::Head, |s| async move { s.head(&meta).await }).is_ok() {
                out.push(ulid.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Names of the objects under one block's prefix.
    fn block_files(&self, tenant: &TenantId, ulid: &str) -> Result<Vec<ObjPath>> {
        let prefix = ObjPath::from(format!("{}/{}", tenant.as_str(), ulid));
        let files =
            self.exec(
                Op::List,
                |s| async move { s.list(Some(&prefix)).try_collect::<Vec<_>>().await },
            )?;
        Ok(files.into_iter().map(|f| f.location).collect())
    }

    /// Copies one block into `dst` (meta.json last, so a partial copy is never a block).
    pub fn copy_block(&self, tenant: &TenantId, ulid: &str, dst: &BlockStore) -> Result<()> {
        let files = self.block_files(tenant, ulid)?;
        let mut names: Vec<String> =
            files.iter().filter_map(|f| f.filename().map(str::to_string)).collect();
        names.sort_by_key(|n| n == "meta.json");
        for n in names {
            let data = self.get(tenant, ulid, &n)?;
            dst.put(tenant, ulid, &n, data.to_vec())?;
        }
        Ok(())
    }

    fn delete_if_exists(&self, path: ObjPath) -> Result<()> {
        self.exec(Op::Delete, |s| async move {
            match s.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Deletes meta.json first, so a half-deleted block is never read.
    pub fn delete_block(&self, tenant: &TenantId, ulid: &str) -> Result<()> {
        self.delete_if_exists(Self::path(tenant, ulid, "meta.json"))?;
        for f in self.block_files(tenant, ulid)? {
            self.delete_if_exists(f)?;
        }
        Ok(())
    }
}

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(8192))
        .build()
}

fn parquet_bytes(batch: RecordBatch) -> Result<Vec<u8>> {
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props()))?;
    w.write(&batch)?;
    Ok(w.into_inner()?)
}

pub fn series_schema() -> Arc<Schema> {
    let map = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()).finish();
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt32, false),
        Field::new("metric_name", DataType::Utf8, true),
        Field::new("labels", map.data_type().clone(), false),
    ]))
}

fn histograms_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("series_id", DataType::UInt32, false),
        Field::new("t", DataType::Int64, false),
        Field::new("h", DataType::Binary, false),
    ]))
}

/// Writes a block from series sorted by labels, each with sorted, deduplicated samples.
/// Series ids inside the block are their position in label order.
pub fn write_block(
    store: &BlockStore,
    tenant: &TenantId,
    level: u32,
    sources: Vec<String>,
    series: impl Iterator<Item = BlockSeries>,
) -> Result<Option<BlockMeta>> {
    let ulid = ulid::Ulid::new().to_string();
    let mut ids = UInt32Builder::new();
    let mut names = StringBuilder::new();
    let mut labels_b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let mut postings = Postings::new();
    let (mut s_id, mut s_min, mut s_max, mut s_n) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut s_ts, mut s_vs): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    let (mut min_t, mut max_t, mut total) = (i64::MAX, i64::MIN, 0u64);
    let mut n_series = 0u32;
    let (mut h_id, mut h_t, mut h_bytes, mut h_off) = (Vec::new(), Vec::new(), Vec::new(), vec![0]);
    for (labels, samples, histograms) in series {
        if samples.is_empty() && histograms.is_empty() {
            continue;
        }
        let id = n_series;
        n_series += 1;
        ids.append_value(id);
        names.append_option(labels.metric_name());
        for l in labels.iter() {
            labels_b.keys().append_value(&*l.name);
            labels_b.values().append_value(&*l.value);
        }
        labels_b.append(true)?;
        postings.add(id, &labels);
        for run in samples.chunks(MAX_ROW_SAMPLES) {
            let ts: Vec<i64> = run.iter().map(|s| s.t).collect();
            let vs: Vec<f64> = run.iter().map(|s| s.v).collect();
            s_id.push(id);
            s_min.push(ts[0]);
            s_max.push(ts[ts.len() - 1]);
            s_n.push(run.len() as u32);
            s_ts.push(codec::encode_i64(&ts));
            s_vs.push(codec::encode_f64(&vs));
            min_t = min_t.min(ts[0]);
            max_t = max_t.max(ts[ts.len() - 1]);
            total += run.len() as u64;
        }
        for h in &histograms {
            h_id.push(id);
            h_t.push(h.t);
            codec::encode_histogram(&h.h, &mut h_bytes);
            h_off.push(h_bytes.len());
            min_t = min_t.min(h.t);
            max_t = max_t.max(h.t);
        }
    }
    if n_series == 0 {
        return Ok(None);
    }
    let series_batch = RecordBatch::try_new(
        series_schema(),
        vec![Arc::new(ids.finish()), Arc::new(names.finish()), Arc::new(labels_b.finish())],
    )?;
    let samples_batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("series_id", DataType::UInt32, false),
            Field::new("min_time", DataType::Int64, false),
            Field::new("max_time", DataType::Int64, false),
            Field::new("num_samples", DataType::UInt32, false),
            Field::new("timestamps", DataType::Binary, false),
            Field::new("values", DataType::Binary, false),
        ])),
        vec![
            Arc::new(UInt32Array::from(s_id)),
            Arc::new(Int64Array::from(s_min)),
            Arc::new(Int64Array::from(s_max)),
            Arc::new(UInt32Array::from(s_n)),
            Arc::new(BinaryArray::from_iter_values(s_ts.iter())),
            Arc::new(BinaryArray::from_iter_values(s_vs.iter())),
        ],
    )?;
    let mut inames = StringBuilder::new();
    let mut ivalues = StringBuilder::new();
    let mut ilists = ListBuilder::new(UInt32Builder::new());
    for (n, v, p) in postings.iter() {
        inames.append_value(&**n);
        ivalues.append_value(&**v);
        ilists.values().append_slice(&p.iter().collect::<Vec<u32>>());
        ilists.append(true);
    }
    let index_batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, false),
            Field::new(
                "series_ids",
                DataType::List(Arc::new(Field::new("item", DataType::UInt32, true))),
                false,
            ),
        ])),
        vec![Arc::new(inames.finish()), Arc::new(ivalues.finish()), Arc::new(ilists.finish())],
    )?;
    let num_histograms = h_id.len() as u64;
    let mut files = vec![
        ("series.parquet", parquet_bytes(series_batch)?),
        ("index.parquet", parquet_bytes(index_batch)?),
        ("samples.parquet", parquet_bytes(samples_batch)?),
    ];
    if num_histograms > 0 {
        let hist_batch = RecordBatch::try_new(
            histograms_schema(),
            vec![
                Arc::new(UInt32Array::from(h_id)),
                Arc::new(Int64Array::from(h_t)),
                Arc::new(BinaryArray::from_iter_values(
                    h_off.windows(2).map(|w| &h_bytes[w[0]..w[1]]),
                )),
            ],
        )?;
        files.push(("histograms.parquet", parquet_bytes(hist_batch)?));
    }
    let size: u64 = files.iter().map(|f| f.1.len() as u64).sum();
    for (name, data) in files {
        store.put(tenant, &ulid, name, data)?;
    }
    let meta = BlockMeta {
        sources: if sources.is_empty() { vec![ulid.clone()] } else { sources },
        ulid: ulid.clone(),
        version: FORMAT_VERSION,
        min_time: min_t,
        max_time: max_t,
        num_series: n_series as u64,
        num_samples: total,
        level,
        size_bytes: size,
        num_histograms,
    };
    let json =
        serde_json::to_vec_pretty(&meta).map_err(|e| StorageError::Parquet(e.to_string()))?;
    store.put(tenant, &ulid, "meta.json", json)?;
    Ok(Some(meta))
}

fn read_batches(bytes: Bytes) -> Result<Vec<RecordBatch>> {
    let r = ParquetRecordBatchReaderBuilder::try_new(bytes)?.with_batch_size(8192).build()?;
    Ok(r.collect::<std::result::Result<Vec<_>, _>>()?)
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str, block: &str) -> Result<&'a T> {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).ok_or_else(|| {
        StorageError::BlockCorrupt {
            block: block.into(),
            reason: format!("column {name} missing or mistyped"),
        }
    })
}

struct SampleRows {
    batches: Vec<RecordBatch>,
    /// Per series id: (batch, row) pairs in time order.
    rows: Vec<Vec<(u32, u32)>>,
}

/// An opened block: label index and series in memory, samples loaded on first use.
pub struct Block {
    pub meta: BlockMeta,
    tenant: TenantId,
    store: BlockStore,
    postings: Postings,
    labels: Vec<Labels>,
    samples: OnceLock<std::result::Result<SampleRows, String>>,
    histograms: OnceLock<std::result::Result<SampleRows, String>>,
}

impl Block {
    pub fn open(store: &BlockStore, tenant: &TenantId, ulid: &str) -> Result<Block> {
        let meta: BlockMeta =
            serde_json::from_slice(&store.get(tenant, ulid, "meta.json")?).map_err(|e| {
                StorageError::BlockCorrupt { block: ulid.into(), reason: e.to_string() }
            })?;
        if meta.version > FORMAT_VERSION {
            return Err(StorageError::BlockCorrupt {
                block: ulid.into(),
                reason: format!(
                    "format version {} is newer than this build reads ({FORMAT_VERSION})",
                    meta.version
                ),
            });
        }
        let mut labels = vec![Labels::empty(); meta.num_series as usize];
        for b in read_batches(store.get(tenant, ulid, "series.parquet")?)? {
            let ids = col::<UInt32Array>(&b, "series_id", ulid)?;
            let maps = col::<MapArray>(&b, "labels", ulid)?;
            for i in 0..b.num_rows() {
                let m = maps.value(i);
                let keys = m.column(0).as_any().downcast_ref::<StringArray>();
                let vals = m.column(1).as_any().downcast_ref::<StringArray>();
                let (Some(k), Some(v)) = (keys, vals) else {
                    return Err(StorageError::BlockCorrupt {
                        block: ulid.into(),
                        reason: "labels map".into(),
                    });
                };
                let ls: Vec<Label> = (0..k.len())
                    .map(|j| Label { name: k.value(j).into(), value: v.value(j).into() })
                    .collect();
                let slot = labels.get_mut(ids.value(i) as usize).ok_or_else(|| {
                    StorageError::BlockCorrupt {
                        block: ulid.into(),
                        reason: "series id out of range".into(),
                    }
                })?;
                *slot = Labels::from_sorted_unchecked(ls);
            }
        }
        let mut postings = Postings::new();
        for b in read_batches(store.get(tenant, ulid, "index.parquet")?)? {
            let names = col::<StringArray>(&b, "name", ulid)?;
            let values = col::<StringArray>(&b, "value", ulid)?;
            let lists = col::<ListArray>(&b, "series_ids", ulid)?;
            for i in 0..b.num_rows() {
                let l = lists.value(i);
                let ids = l.as_any().downcast_ref::<UInt32Array>().ok_or_else(|| {
                    StorageError::BlockCorrupt {
                        block: ulid.into(),
                        reason: "postings list type".into(),
                    }
                })?;
                let bm: RoaringBitmap = ids.values().iter().copied().collect();
                postings.add_list(names.value(i).into(), values.value(i).into(), bm);
            }
        }
        Ok(Block {
            meta,
            tenant: tenant.clone(),
            store: store.clone(),
            postings,
            labels,
            samples: OnceLock::new(),
            histograms: OnceLock::new(),
        })
    }

    fn rows(&self) -> Result<&SampleRows> {
        self.load_rows(&self.samples, "samples.parquet")
    }

    /// Rows of `histograms.parquet` per series (empty for blocks without histograms).
    fn histogram_rows(&self) -> Result<&SampleRows> {
        if self.meta.num_histograms == 0 {
            static EMPTY: SampleRows = SampleRows { batches: Vec::new(), rows: Vec::new() };
            return Ok(&EMPTY);
        }
        self.load_rows(&self.histograms, "histograms.parquet")
    }

    fn load_rows<'a>(
        &'a self,
        cell: &'a OnceLock<std::result::Result<SampleRows, String>>,
        file: &str,
    ) -> Result<&'a SampleRows> {
        let r = cell.get_or_init(|| {
            let load = || -> Result<SampleRows> {
                let ulid = &self.meta.ulid;
                let batches = read_batches(self.store.get(&self.tenant, ulid, file)?)?;
                let mut rows = vec![Vec::new(); self.labels.len()];
                for (bi, b) in batches.iter().enumerate() {
                    let ids = col::<UInt32Array>(b, "series_id", ulid)?;
                    for i in 0..b.num_rows() {
                        if let Some(r) = rows.get_mut(ids.value(i) as usize) {
                            r.push((bi as u32, i as u32));
                        }
                    }
                }
                Ok(SampleRows { batches, rows })
            };
            load().map_err(|e| e.to_string())
        });
        r.as_ref().map_err(|e| StorageError::BlockCorrupt {
            block: self.meta.ulid.clone(),
            reason: e.clone(),
        })
    }

    pub fn postings(&self) -> &Postings {
        &self.postings
    }

    pub fn labels(&self, id: u32) -> &Labels {
        &self.labels[id as usize]
    }

    pub fn num_series(&self) -> usize {
        self.labels.len()
    }

    /// Samples of one series in `[mint, maxt]`, appended to `out` in time order.
    pub fn samples(&self, id: u32, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<()> {
        let rows = self.rows()?;
        let ulid = &self.meta.ulid;
        for &(bi, ri) in rows.rows.get(id as usize).map(|v| v.as_slice()).unwrap_or(&[]) {
            let b = &rows.batches[bi as usize];
            let ri = ri as usize;
            let lo = col::<Int64Array>(b, "min_time", ulid)?.value(ri);
            let hi = col::<Int64Array>(b, "max_time", ulid)?.value(ri);
            if hi < mint || lo > maxt {
                continue;
            }
            let n = col::<UInt32Array>(b, "num_samples", ulid)?.value(ri) as usize;
            let ts = codec::decode_i64(col::<BinaryArray>(b, "timestamps", ulid)?.value(ri), n)?;
            let vs = codec::decode_f64(col::<BinaryArray>(b, "values", ulid)?.value(ri), n)?;
            out.extend(
                ts.into_iter()
                    .zip(vs)
                    .filter(|(t, _)| *t >= mint && *t <= maxt)
                    .map(|(t, v)| Sample { t, v }),
            );
        }
        Ok(())
    }

    /// Histogram samples of one series in `[mint, maxt]`, appended to `out` in time order.
    pub fn histograms(
        &self,
        id: u32,
        mint: i64,
        maxt: i64,
        out: &mut Vec<HistogramSample>,
    ) -> Result<()> {
        let rows = self.histogram_rows()?;
        let ulid = &self.meta.ulid;
        for &(bi, ri) in rows.rows.get(id as usize).map(|v| v.as_slice()).unwrap_or(&[]) {
            let b = &rows.batches[bi as usize];
            let ri = ri as usize;
            let t = col::<Int64Array>(b, "t", ulid)?.value(ri);
            if t < mint || t > maxt {
                continue;
            }
            let bytes = col::<BinaryArray>(b, "h", ulid)?.value(ri);
            let h = codec::decode_histogram(bytes)
                .map_err(|reason| StorageError::BlockCorrupt { block: ulid.clone(), reason })?;
            out.push(HistogramSample { t, h: Box::new(h) });
        }
        Ok(())
    }

    pub fn select(&self, matchers: &[Matcher]) -> RoaringBitmap {
        self.postings.select(matchers)
    }

    /// Every series with all its samples, in label order (for compaction).
    pub fn all_series(&self) -> impl Iterator<Item = Result<BlockSeries>> + '_ {
        (0..self.labels.len() as u32).map(move |id| {
            let mut out = Vec::new();
            self.samples(id, i64::MIN, i64::MAX, &mut out)?;
            let mut hs = Vec::new();
            self.histograms(id, i64::MIN, i64::MAX, &mut hs)?;
            Ok((self.labels[id as usize].clone(), out, hs))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::local(dir.path()).unwrap();
        let t = TenantId::new("t1").unwrap();
        let mk = |job: &str| Labels::from_pairs([("__name__", "up"), ("job", job)]).unwrap();
        let series = vec![
            (
                mk("a"),
                (0..500).map(|i| Sample { t: i * 15_000, v: i as f64 }).collect::<Vec<_>>(),
                vec![],
            ),
            (mk("b"), vec![Sample { t: 5, v: model::stale_nan() }], vec![]),
        ];
        let meta = write_block(&store, &t, 1, vec![], series.clone().into_iter()).unwrap().unwrap();
        assert_eq!(
            (meta.num_series, meta.num_samples, meta.min_time, meta.max_time),
            (2, 501, 0, 499 * 15_000)
        );
        assert_eq!(store.blocks(&t).unwrap(), vec![meta.ulid.clone()]);
        assert_eq!(store.tenants().unwrap(), vec![t.clone()]);
        let b = Block::open(&store, &t, &meta.ulid).unwrap();
        let ids = b.select(&[Matcher::eq("job", "b")]);
        assert_eq!(ids.iter().collect::<Vec<_>>(), vec![1]);
        let mut out = Vec::new();
        b.samples(1, i64::MIN, i64::MAX, &mut out).unwrap();
        assert!(model::is_stale_nan(out[0].v));
        out.clear();
        b.samples(0, 15_000, 30_000, &mut out).unwrap();
        assert_eq!(out, vec![Sample { t: 15_000, v: 1.0 }, Sample { t: 30_000, v: 2.0 }]);
        store.delete_block(&t, &meta.ulid).unwrap();
        assert!(store.blocks(&t).unwrap().is_empty());
    }

    #[test]
    fn histograms_write_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::local(dir.path()).unwrap();
        let t = TenantId::new("t1").unwrap();
        let mk = |job: &str| Labels::from_pairs([("__name__", "h"), ("job", job)]).unwrap();
        let h = |n: f64| {
            Box::new(model::FloatHistogram {
                schema: -53,
                count: n,
                sum: n / 2.0,
                positive_spans: vec![model::Span { offset: 0, length: 1 }],
                positive_buckets: vec![n],
                custom_values: vec![1.0],
                ..Default::default()
            })
        };
        let hs = |ts: &[i64]| -> Vec<HistogramSample> {
            ts.iter().map(|&t| HistogramSample { t, h: h(t as f64) }).collect()
        };
        let series = vec![
            // Only histograms: no row in samples.parquet, still a series of the block.
            (mk("a"), vec![], hs(&[-5, 10, 20])),
            // Floats and histograms at different times.
            (mk("b"), vec![Sample { t: 15, v: 1.0 }], hs(&[30])),
        ];
        let meta = write_block(&store, &t, 1, vec![], series.into_iter()).unwrap().unwrap();
        assert_eq!(
            (meta.version, meta.num_series, meta.num_samples, meta.num_histograms),
            (2, 2, 1, 4)
        );
        assert_eq!((meta.min_time, meta.max_time), (-5, 30), "histograms count in the range");
        let b = Block::open(&store, &t, &meta.ulid).unwrap();
        let mut out = Vec::new();
        b.histograms(0, 0, 20, &mut out).unwrap();
        assert_eq!(out, hs(&[10, 20]));
        out.clear();
        b.histograms(1, i64::MIN, i64::MAX, &mut out).unwrap();
        assert_eq!(out, hs(&[30]));
        let all: Vec<BlockSeries> = b.all_series().map(Result::unwrap).collect();
        assert_eq!((all[0].1.len(), all[0].2.len(), all[1].1.len()), (0, 3, 1));

        // A version newer than this build reads is refused, not read without its data.
        let mut newer = meta.clone();
        newer.version = FORMAT_VERSION + 1;
        store.put(&t, &meta.ulid, "meta.json", serde_json::to_vec(&newer).unwrap()).unwrap();
        let err = Block::open(&store, &t, &meta.ulid).err().unwrap().to_string();
        assert!(err.contains("newer than this build reads"), "{err}");
    }
}
