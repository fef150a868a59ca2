//! One tenant's database: WAL + head + blocks, the append path (the durability point), the read
//! path across head and blocks, head cutting with WAL checkpoints, compaction and retention.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use model::{
    AppendOutcome, FloatHistogram, HistogramSample, Labels, Matcher, Rejection, Sample,
    SelectHints, Series, SeriesCache, SeriesKey, TenantId, WriteBatch,
};
use parking_lot::{Mutex, RwLock};

use crate::block::{Block, BlockMeta, BlockStore, write_block};
use crate::changes::ChangeLog;
use crate::chunk_disk::ChunkDisk;
use crate::error::{Result, StorageError};
use crate::exemplars::{ExemplarStore, encode_exemplars};
use crate::head::{CutData, Head, HeadOptions, MemSeries, merge_into};
use crate::metadata::{MetadataStore, encode_metadata};
use crate::tombstones::{Tombstone, Tombstones, hidden_in};
use crate::wal::{self, RecordKind, Wal, WalOptions};

/// How many series ahead `TenantDb::append` starts loading a series' memory: far enough for
/// the loads to arrive (a miss is a few hundred cycles; resolving or appending one series
/// takes about as long), near enough for the lines to stay in L1/L2.
const PREFETCH_AHEAD: usize = 8;

#[derive(Clone, Debug)]
pub struct TenantOptions {
    pub block_duration: i64,
    pub retention: i64,
    pub ooo_window: i64,
    pub wal: WalOptions,
}

#[derive(Default)]
pub struct TenantStats {
    pub replayed_records: AtomicU64,
    pub wal_corruptions: AtomicU64,
    pub blocks_written: AtomicU64,
    pub compactions: AtomicU64,
    pub blocks_deleted_by_retention: AtomicU64,
    pub samples_rejected: AtomicU64,
}

pub struct TenantDb {
    pub tenant: TenantId,
    pub(crate) opts: TenantOptions,
    pub head: Head,
    wal: Wal,
    pub(crate) store: BlockStore,
    /// Metric metadata (WAL kind 4), bounded per family and per tenant.
    pub metadata: MetadataStore,
    /// Exemplars (WAL kind 5) in a bounded ring.
    pub exemplars: ExemplarStore,
    /// Deletions not yet rewritten away (`tombstones.rs`).
    pub tombstones: Tombstones,
    /// Raw label bytes → head series, for the decoders (see `model::SeriesCache`): filled by
    /// `append`, purged of dropped series after each garbage collection of the head.
    pub series_cache: SeriesCache,
    /// Serialises series creation so a series' WAL record precedes any sample of it.
    create_lock: Mutex<()>,
    /// Appends hold it shared; series garbage collection holds it exclusively.
    append_gate: RwLock<()>,
    /// One cut, compaction, import or retention pass at a time.
    pub(crate) maintenance: Mutex<()>,
    blocks: RwLock<Vec<Arc<Block>>>,
    /// Data moved out of the head whose block is being written: still queryable.
    cutting: RwLock<Arc<CutList>>,
    pub stats: TenantStats,
    /// Writes that changed stored data, for results caches (`changes.rs`).
    pub changes: ChangeLog,
}

/// Where one series' samples live; owned so a result iterator holds no locks.
enum Source {
    Head(Arc<MemSeries>),
    Cut(Arc<CutList>, usize),
    Block(Arc<Block>, u32),
}

type CutList = Vec<(Arc<MemSeries>, CutData)>;

/// Selections of at least this many series, over at least `PARALLEL_SELECT_SPAN_MS`, are
/// decoded on two threads (see [`SeriesReader::two_threads`]): four runs or more, two per
/// thread. Below it a helper thread's start (tens of microseconds) is a noticeable share of
/// a small query. Not tuned by measurement on a quiet machine.
const PARALLEL_SELECT_MIN: usize = 512;

/// Shorter selections (an instant query's 5-minute window: a few samples per series) stay
/// on one thread: on a loaded 2-core machine the second thread cost instant queries 2–6 ms
/// of CPU (of 34–56) for no measurable gain (docs/benchmarks/query.md, session 11), while
/// 1 h range queries, with 20 times the samples per series, are where the reading is long.
const PARALLEL_SELECT_SPAN_MS: i64 = 15 * 60_000;

/// Series in one run of a two-thread selection: the unit handed from the helper thread.
const PARALLEL_SELECT_RUN: usize = 128;

/// Runs the helper thread may have read ahead of the reader, at most: with the run it is
/// reading, it bounds the memory a two-thread selection holds beyond the series being read.
const PARALLEL_SELECT_AHEAD: usize = 2;

/// Whether the machine has a second core to decode on (asked once).
fn parallel_select() -> bool {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())) > 1
}

/// One of two iterator types, as one.
enum Either<A, B> {
    One(A),
    Two(B),
}

impl<T, A: Iterator<Item = T>, B: Iterator<Item = T>> Iterator for Either<A, B> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            Either::One(a) => a.next(),
            Either::Two(b) => b.next(),
        }
    }
}

/// Reads the samples of selected series: each series' sources merged by timestamp, the
/// tombstones applied. Owns everything it needs, so a selection holds no lock.
#[derive(Clone)]
struct SeriesReader {
    hints: SelectHints,
    tombstones: Arc<Vec<crate::tombstones::Tombstone>>,
    /// The head's closed chunks, for series read from the head.
    disk: Option<Arc<ChunkDisk>>,
    /// Samples of the last series read: series selected together mostly hold about as
    /// many, so the next one's buffer is sized for that many at once rather than grown
    /// step by step (a reallocation and a copy per doubling).
    expect: usize,
}

impl SeriesReader {
    /// The series' samples and histograms; `None` when it has neither in the range.
    fn read(&mut self, labels: Labels, sources: Vec<Source>) -> Option<Result<Series>> {
        let (start, end) = (self.hints.start, self.hints.end);
        let mut samples: Vec<Sample> = Vec::new();
        let mut histograms: Vec<HistogramSample> = Vec::new();
        for src in sources {
            // Only the first source's buffer: later ones are merged into it.
            let mut part = Vec::with_capacity(if samples.is_empty() { self.expect } else { 0 });
            let mut hpart = Vec::new();
            match src {
                Source::Head(s) => {
                    let d = s.data.lock();
                    d.samples(self.disk.as_deref(), start, end, &mut part);
                    d.histograms(start, end, &mut hpart);
                }
                Source::Cut(c, i) => {
                    c[i].1.samples(start, end, &mut part);
                    c[i].1.histograms(start, end, &mut hpart);
                }
                Source::Block(b, id) => {
                    if let Err(e) = b.samples(id, start, end, &mut part) {
                        return Some(Err(e));
                    }
                    if let Err(e) = b.histograms(id, start, end, &mut hpart) {
                        return Some(Err(e));
                    }
                }
            }
            if samples.is_empty() {
                samples = part;
            } else if !part.is_empty() {
                let prev = std::mem::take(&mut samples);
                merge_into(&mut samples, &prev, &part);
            }
            merge_histograms(&mut histograms, hpart);
        }
        if !samples.is_empty() {
            self.expect = samples.len();
        }
        let hidden = hidden_in(&self.tombstones, &labels);
        hidden.filter_samples(&mut samples);
        hidden.filter_histograms(&mut histograms);
        (!samples.is_empty() || !histograms.is_empty()).then_some(Ok(Series {
            labels,
            samples,
            histograms,
        }))
    }

    /// Reads the series one at a time, as the iterator reaches them.
    fn one_thread(
        mut self,
    ) -> impl FnMut((Labels, Vec<Source>)) -> Option<Result<Series>> + Send + 'static {
        move |(labels, sources)| self.read(labels, sources)
    }

    /// Reads the series on two threads, in the same order: the series are cut into runs
    /// of `PARALLEL_SELECT_RUN`; a helper thread reads the odd-numbered runs and hands each
    /// over whole through a channel of `PARALLEL_SELECT_AHEAD` runs, while the iterator reads
    /// the even-numbered ones itself, one series at a time, and takes the odd ones from the
    /// channel in turn. Whole runs keep the hand-overs (and thread wake-ups) to a few per
    /// thousand series; memory stays bounded (a few runs ahead); a reader that stops early
    /// drops the channel, and the helper stops at its next hand-over.
    fn two_threads(
        self,
        groups: Vec<(Labels, Vec<Source>)>,
    ) -> impl Iterator<Item = Result<Series>> + Send + 'static {
        type Run = Vec<(Labels, Vec<Source>)>;
        let mut runs: Vec<Run> = Vec::new();
        let mut groups = groups.into_iter();
        loop {
            let run: Run = groups.by_ref().take(PARALLEL_SELECT_RUN).collect();
            if run.is_empty() {
                break;
            }
            runs.push(run);
        }
        let total = runs.len();
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for (i, r) in runs.into_iter().enumerate() {
            if i.is_multiple_of(2) { mine.push(r) } else { theirs.push(r) }
        }
        let (tx, rx) =
            std::sync::mpsc::sync_channel::<Vec<Option<Result<Series>>>>(PARALLEL_SELECT_AHEAD);
        let mut helper = self.clone();
        let spawned = std::thread::Builder::new().name("select-read".into()).spawn(move || {
            for run in theirs {
                let out = run.into_iter().map(|(l, s)| helper.read(l, s)).collect();
                if tx.send(out).is_err() {
                    return;
                }
            }
        });
        if let Err(e) = spawned {
            // The odd runs went with the closure that failed to start: a selection without
            // them would be wrong, so the error is the answer.
            let err = StorageError::SelectReader(format!("could not start: {e}"));
            return Either::One(std::iter::once(Err(err)));
        }
        enum Cur {
            Mine(std::vec::IntoIter<(Labels, Vec<Source>)>),
            Theirs(std::vec::IntoIter<Option<Result<Series>>>),
        }
        let mut me = self;
        let mut mine = mine.into_iter();
        let mut cur: Option<Cur> = None;
        let mut next_run = 0usize;
        Either::Two(std::iter::from_fn(move || {
            loop {
                match &mut cur {
                    Some(Cur::Mine(it)) => {
                        if let Some((labels, sources)) = it.next() {
                            match me.read(labels, sources) {
                                Some(r) => return Some(r),
                                None => continue,
                            }
                        }
                    }
                    Some(Cur::Theirs(it)) => {
                        if let Some(r) = it.next() {
                            match r {
                                Some(r) => return Some(r),
                                None => continue,
                            }
                        }
                    }
                    None => {}
                }
                // The current run is done: on to the next one.
                if next_run >= total {
                    return None;
                }
                let k = next_run;
                next_run += 1;
                cur = Some(if k.is_multiple_of(2) {
                    Cur::Mine(mine.next()?.into_iter())
                } else {
                    match rx.recv() {
                        Ok(run) => Cur::Theirs(run.into_iter()),
                        Err(_) => {
                            // The helper ends early only by panicking: never silently short.
                            next_run = total;
                            return Some(Err(StorageError::SelectReader(
                                "stopped before the selection's end".into(),
                            )));
                        }
                    }
                });
            }
        }))
    }
}

impl TenantDb {
    /// Opens the tenant: loads its blocks and replays its WAL into the head.
    /// `chunk_dir` holds closed head chunks off the heap (`None`: keep them in memory).
    pub fn open(
        tenant: TenantId,
        wal_dir: &Path,
        chunk_dir: Option<&Path>,
        store: BlockStore,
        opts: TenantOptions,
    ) -> Result<TenantDb> {
        let disk = chunk_dir.map(ChunkDisk::open).transpose()?.map(Arc::new);
        let head = Head::with_disk(
            HeadOptions { chunk_range: opts.block_duration, ooo_window: opts.ooo_window },
            disk,
        );
        let tombstones = Tombstones::open(wal_dir)?;
        let mut blocks = Vec::new();
        for ulid in store.blocks(&tenant)? {
            match Block::open(&store, &tenant, &ulid) {
                Ok(b) => blocks.push(Arc::new(b)),
                Err(e) => {
                    tracing::error!(tenant = %tenant, block = %ulid, error = %e, "skipping unreadable block")
                }
            }
        }
        blocks.sort_by_key(|b| (b.meta.min_time, b.meta.ulid.clone()));
        let stats = TenantStats::default();
        let started = std::time::Instant::now();
        let mut unknown = 0u64;
        let metadata = MetadataStore::default();
        let exemplars = ExemplarStore::default();
        let report = wal::replay(wal_dir, &mut |rec| match rec {
            wal::Record::Series(series) => {
                for (id, pairs) in series {
                    if let Ok(l) = Labels::from_pairs(pairs) {
                        head.create(&l, Some(id));
                    }
                }
            }
            wal::Record::Samples(samples) => {
                let mut i = 0;
                while i < samples.len() {
                    let id = samples[i].0;
                    let j = i + samples[i..].iter().take_while(|s| s.0 == id).count();
                    let run: Vec<Sample> =
                        samples[i..j].iter().map(|s| Sample { t: s.1, v: s.2 }).collect();
                    match head.by_id(id) {
                        Some(s) => {
                            head.append_series(&s, &run, true, |_, _| {});
                        }
                        None => unknown += run.len() as u64,
                    }
                    i = j;
                }
            }
            wal::Record::Histograms(hs) => {
                // Runs of one series, moved (not cloned) out of the record.
                let mut it = hs.into_iter().peekable();
                while let Some((id, t, h)) = it.next() {
                    let mut run: Vec<(i64, FloatHistogram)> = vec![(t, h)];
                    while let Some((_, t, h)) = it.next_if(|x| x.0 == id) {
                        run.push((t, h));
                    }
                    match head.by_id(id) {
                        Some(s) => {
                            head.append_histograms(&s, &run, true, |_, _| {});
                        }
                        None => unknown += run.len() as u64,
                    }
                }
            }
            wal::Record::Metadata(items) => {
                metadata.apply(&items);
            }
            wal::Record::Exemplars(items) => {
                for (series, e) in items {
                    exemplars.add(&series, std::slice::from_ref(&e));
                }
            }
        })?;
        stats.replayed_records.store(report.records, Ordering::Relaxed);
        stats.wal_corruptions.store(report.corruptions.len() as u64, Ordering::Relaxed);
        tracing::info!(
            tenant = %tenant, segments = report.segments, records = report.records, bytes = report.bytes,
            series = head.num_series(), metric_families = metadata.num_families(), exemplars = exemplars.len(), corruptions = report.corruptions.len(), unknown_series_samples = unknown,
            blocks = blocks.len(), elapsed_ms = started.elapsed().as_millis() as u64, "tenant opened"
        );
        let wal = Wal::open(wal_dir, opts.wal.clone())?;
        Ok(TenantDb {
            tenant,
            opts,
            head,
            wal,
            store,
            metadata,
            exemplars,
            tombstones,
            series_cache: SeriesCache::new(),
            create_lock: Mutex::new(()),
            append_gate: RwLock::new(()),
            maintenance: Mutex::new(()),
            blocks: RwLock::new(blocks),
            cutting: RwLock::new(Arc::new(Vec::new())),
            stats,
            changes: ChangeLog::default(),
        })
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The write path: resolve series (creating and logging new ones), append to the head,
    /// log the accepted samples, fsync (shared with concurrent writers), acknowledge.
    pub fn append(&self, mut batch: WriteBatch) -> Result<AppendOutcome> {
        let _gate = self.append_gate.read();
        let mut out = AppendOutcome::default();
        // A cache hit is used only if its series is still in the head: garbage collection
        // clears `live` under the exclusive gate, so it cannot change while we hold it shared.
        // The handle is moved out of the key, not cloned (a `Miss` key stays for below). A hit
        // may come without labels (see `SeriesWrite::key`): below, the labels of a resolved
        // series are always taken from the series, and a hit whose series is gone gets its
        // labels back from the handle before it is resolved by them.
        let mut resolved: Vec<Option<Arc<MemSeries>>> = Vec::with_capacity(batch.series.len());
        for i in 0..batch.series.len() {
            // Each series' memory is a cache miss, and each step below waits for the one
            // before: start loading a few series ahead (`model::prefetch`).
            if let Some(SeriesKey::Hit(h)) = batch.series.get(i + PREFETCH_AHEAD).map(|s| &s.key) {
                model::prefetch(Arc::as_ptr(h));
            }
            let s = &mut batch.series[i];
            let hit = match &s.key {
                SeriesKey::Hit(_) => std::mem::take(&mut s.key),
                _ => SeriesKey::None,
            };
            if let SeriesKey::Hit(h) = hit {
                if !h.is_live() {
                    if s.labels.is_empty() {
                        s.labels = h.labels().clone();
                    }
                } else {
                    match h.as_any().downcast::<MemSeries>() {
                        Ok(m) => {
                            resolved.push(Some(m));
                            continue;
                        }
                        // Only this storage's caches hand out handles, and they hold MemSeries.
                        Err(_) if s.labels.is_empty() => {
                            return Err(StorageError::ForeignSeriesHandle);
                        }
                        Err(_) => {}
                    }
                }
            }
            resolved.push(self.head.get(&s.labels));
        }
        if resolved.iter().any(Option::is_none) {
            let _g = self.create_lock.lock();
            let mut fresh: HashMap<&Labels, u32, foldhash::fast::RandomState> = HashMap::default();
            let mut new: Vec<(u32, &Labels)> = Vec::new();
            // Series of this batch still to create, and which of them each unresolved one is.
            let mut pending: Vec<(usize, usize)> = Vec::new();
            for (i, sw) in batch.series.iter().enumerate() {
                if resolved[i].is_some() {
                    continue;
                }
                if let Some(s) = self.head.get(&sw.labels) {
                    resolved[i] = Some(s);
                    continue;
                }
                let k = *fresh.entry(&sw.labels).or_insert_with(|| {
                    new.push((self.head.peek_next_id(1), &sw.labels));
                    (new.len() - 1) as u32
                });
                pending.push((i, k as usize));
            }
            if !new.is_empty() {
                let rec = wal::encode_series(new.iter().map(|(id, l)| (*id, *l)))?;
                self.wal.log(&[(RecordKind::Series, &rec)])?;
                let created: Vec<Arc<MemSeries>> =
                    new.iter().map(|(id, l)| self.head.create(l, Some(*id))).collect();
                for (i, k) in pending {
                    resolved[i] = Some(created[k].clone());
                }
                out.series_created = new.len();
            }
        }
        for (sw, s) in batch.series.iter().zip(&resolved) {
            if let (SeriesKey::Miss(id), Some(s)) = (&sw.key, s) {
                // `s` was resolved by exactly the labels the decoder built from these bytes.
                self.series_cache.insert(*id, s.clone());
            }
        }
        let n = batch.sample_count();
        let (mut refs, mut ts, mut vs) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (i, (sw, s)) in batch.series.iter().zip(&resolved).enumerate() {
            // As above: the series a few ahead, and the open chunks of those half as far.
            if let Some(Some(next)) = resolved.get(i + PREFETCH_AHEAD) {
                next.prefetch();
            }
            if let Some(Some(next)) = resolved.get(i + PREFETCH_AHEAD / 2) {
                next.prefetch_open_chunk();
            }
            let Some(s) = s else { continue };
            let (stored, rejected) = self.head.append_series(s, &sw.samples, false, |t, v| {
                refs.push(s.id);
                ts.push(t);
                vs.push(v);
            });
            out.samples_written += stored;
            for (reason, count) in rejected {
                self.stats.samples_rejected.fetch_add(count as u64, Ordering::Relaxed);
                out.rejected.push(Rejection { labels: s.labels.clone(), reason, samples: count });
            }
        }
        let (mut h_refs, mut h_ts, mut h_hs) = (Vec::new(), Vec::new(), Vec::new());
        for (sw, s) in batch.series.iter().zip(&resolved) {
            let Some(s) = s else { continue };
            if sw.histograms.is_empty() {
                continue;
            }
            let (stored, rejected) =
                self.head.append_histograms(s, &sw.histograms, false, |t, h| {
                    h_refs.push(s.id);
                    h_ts.push(t);
                    h_hs.push(h);
                });
            out.histograms_written += stored;
            for (reason, count) in rejected {
                self.stats.samples_rejected.fetch_add(count as u64, Ordering::Relaxed);
                // Merged with the float rejection of the same series and reason, if any.
                match out.rejected.iter_mut().find(|r| {
                    r.labels == s.labels
                        && std::mem::discriminant(&r.reason) == std::mem::discriminant(&reason)
                }) {
                    Some(r) => r.samples += count,
                    None => out.rejected.push(Rejection {
                        labels: s.labels.clone(),
                        reason,
                        samples: count,
                    }),
                }
            }
        }
        // The accepted samples are visible to readers now: tell results caches, before any
        // WAL error can return early (the head keeps them either way).
        if let Some(min_t) = ts.iter().chain(&h_ts).min() {
            self.changes.record(*min_t);
        }
        // Metadata and exemplars become visible only once logged (after the sync below), so a
        // failed WAL write leaves them unknown and a retry logs them again.
        let mut fresh_exemplars = Vec::new();
        for (sw, s) in batch.series.iter().zip(&resolved) {
            let Some(s) = s else { continue };
            for e in self.exemplars.fresh(&s.labels, &sw.exemplars) {
                fresh_exemplars.push((s.labels.clone(), e));
            }
        }
        let mut records: Vec<(RecordKind, Vec<u8>)> = Vec::new();
        let changed = self.metadata.fresh(&batch.metadata);
        if !changed.is_empty() {
            records.push((RecordKind::Metadata, encode_metadata(&changed)?));
        }
        if !fresh_exemplars.is_empty() {
            let it = fresh_exemplars.iter().map(|(l, e)| (l, e));
            records.push((RecordKind::Exemplars, encode_exemplars(it)?));
        }
        if !refs.is_empty() {
            records.push((RecordKind::Samples, wal::encode_samples(refs, ts, vs)?));
        }
        if !h_refs.is_empty() {
            records.push((RecordKind::Histograms, wal::encode_histograms(h_refs, h_ts, &h_hs)?));
        }
        let seq = if records.is_empty() {
            None
        } else {
            let recs: Vec<(RecordKind, &[u8])> =
                records.iter().map(|(k, r)| (*k, r.as_slice())).collect();
            Some(self.wal.log(&recs)?)
        };
        if let Some(seq) = seq {
            self.wal.sync(seq)?;
        }
        if !changed.is_empty() {
            self.metadata.apply(&changed);
        }
        // A concurrent write may have added some of them meanwhile: count only ours.
        for (l, e) in &fresh_exemplars {
            out.exemplars_written += self.exemplars.add(l, std::slice::from_ref(e)).len();
        }
        Ok(out)
    }

    fn overlapping_blocks(&self, hints: SelectHints) -> Vec<Arc<Block>> {
        self.blocks
            .read()
            .iter()
            .filter(|b| b.meta.max_time >= hints.start && b.meta.min_time <= hints.end)
            .cloned()
            .collect()
    }

    /// Series matching `matchers` with samples in the range, merged across head and blocks,
    /// in label order. Only the label sets are resolved up front; each series' samples are
    /// decoded when the iterator reaches it, so a reader holds one series at a time.
    pub fn select(
        &self,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> impl Iterator<Item = Result<Series>> + Send + 'static {
        let blocks = self.overlapping_blocks(hints);
        let cutting = self.cutting.read().clone();
        let disk = self.head.chunk_disk().cloned();
        let tombstones = self.tombstones.list();
        // (labels, source) pairs, sorted by labels with a stable sort: a series' sources stay
        // in the order head, data being cut, blocks, which `merge_into` relies on (the
        // first source wins on equal timestamps).
        let mut found: Vec<(Labels, Source)> = Vec::new();
        for id in self.head.select_ids(matchers) {
            if let Some(s) = self.head.by_id(id) {
                found.push((s.labels.clone(), Source::Head(s)));
            }
        }
        for (i, (s, _)) in cutting.iter().enumerate() {
            if matchers.iter().all(|m| m.matches(s.labels.get(&m.name).unwrap_or(""))) {
                found.push((s.labels.clone(), Source::Cut(cutting.clone(), i)));
            }
        }
        for b in &blocks {
            for id in b.select(matchers) {
                found.push((b.labels(id).clone(), Source::Block(b.clone(), id)));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let mut groups: Vec<(Labels, Vec<Source>)> = Vec::new();
        for (labels, src) in found {
            match groups.last_mut() {
                Some((l, sources)) if *l == labels => sources.push(src),
                _ => groups.push((labels, vec![src])),
            }
        }
        let read = SeriesReader { hints, tombstones, disk, expect: 0 };
        if groups.len() >= PARALLEL_SELECT_MIN
            && hints.end.saturating_sub(hints.start) >= PARALLEL_SELECT_SPAN_MS
            && parallel_select()
        {
            Either::Two(read.two_threads(groups))
        } else {
            Either::One(groups.into_iter().filter_map(read.one_thread()))
        }
    }

    pub fn label_names(&self, hints: SelectHints, matchers: &[Matcher]) -> Result<Vec<String>> {
        let mut names: std::collections::BTreeSet<String> = Default::default();
        if matchers.is_empty() {
            names.extend(self.head.label_names(None));
            for b in self.overlapping_blocks(hints) {
                names.extend(b.postings().label_names().map(str::to_string));
            }
        } else {
            let ids = self.head.select_ids(matchers);
            names.extend(self.head.label_names(Some(&ids)));
            for b in self.overlapping_blocks(hints) {
                let ids = b.select(matchers);
                let p = b.postings();
                names.extend(
                    p.label_names()
                        .filter(|n| p.label_values(n).any(|(_, x)| !x.is_disjoint(&ids)))
                        .map(str::to_string),
                );
            }
        }
        Ok(names.into_iter().collect())
    }

    pub fn label_values(
        &self,
        name: &str,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>> {
        let mut values: std::collections::BTreeSet<String> = Default::default();
        let head_ids = (!matchers.is_empty()).then(|| self.head.select_ids(matchers));
        values.extend(self.head.label_values(name, head_ids.as_ref()));
        for b in self.overlapping_blocks(hints) {
            let ids = (!matchers.is_empty()).then(|| b.select(matchers));
            values.extend(
                b.postings()
                    .label_values(name)
                    .filter(|(_, x)| ids.as_ref().is_none_or(|ids| !x.is_disjoint(ids)))
                    .map(|(v, _)| v.to_string()),
            );
        }
        Ok(values.into_iter().collect())
    }

    pub fn blocks(&self) -> Vec<BlockMeta> {
        self.blocks.read().iter().map(|b| b.meta.clone()).collect()
    }

    /// Deletes the samples of series matching `matchers` in `[min_t, max_t]` by writing a
    /// tombstone (durable on return). The end is clamped to the tenant's newest sample, so
    /// later writes stay visible. Returns the range deleted, or `None` if nothing can match.
    pub fn delete(
        &self,
        matchers: &[Matcher],
        min_t: i64,
        max_t: i64,
    ) -> Result<Option<(i64, i64)>> {
        // Under the maintenance lock: no cut or merge is writing a block from an older list.
        let _m = self.maintenance.lock();
        let newest = self
            .blocks
            .read()
            .iter()
            .map(|b| b.meta.max_time)
            .chain([self.head.max_time()])
            .max()
            .unwrap_or(i64::MIN);
        let max_t = max_t.min(newest);
        if max_t < min_t {
            return Ok(None);
        }
        let pending_blocks = self
            .blocks
            .read()
            .iter()
            .filter(|b| b.meta.max_time >= min_t && b.meta.min_time <= max_t)
            .filter(|b| !b.select(matchers).is_empty())
            .map(|b| b.meta.ulid.clone())
            .collect();
        self.tombstones.add(Tombstone {
            matchers: matchers.to_vec(),
            min_t,
            max_t,
            pending_blocks,
        })?;
        tracing::info!(tenant = %self.tenant, min_t, max_t, "series deleted (tombstone written)");
        Ok(Some((min_t, max_t)))
    }

    /// Rewrites the blocks tombstones wait for, then drops the tombstones nothing needs any
    /// more: none of their blocks is left and the head holds nothing in their range.
    /// Called with the maintenance lock held.
    fn drop_tombstones(&self) -> Result<usize> {
        if self.tombstones.is_empty() {
            return Ok(0);
        }
        let pending: std::collections::BTreeSet<String> =
            self.tombstones.list().iter().flat_map(|t| t.pending_blocks.clone()).collect();
        let to_rewrite: Vec<Arc<Block>> =
            self.blocks.read().iter().filter(|b| pending.contains(&b.meta.ulid)).cloned().collect();
        for b in to_rewrite {
            self.merge(std::slice::from_ref(&b))?;
        }
        let live: std::collections::HashSet<String> =
            self.blocks.read().iter().map(|b| b.meta.ulid.clone()).collect();
        let head_min = self.head.min_time();
        let cutting = !self.cutting.read().is_empty();
        let dropped = self.tombstones.retain(|t| {
            cutting || head_min <= t.max_t || t.pending_blocks.iter().any(|u| live.contains(u))
        })?;
        if dropped > 0 {
            tracing::info!(tenant = %self.tenant, dropped, "tombstones dropped");
        }
        Ok(dropped)
    }

    /// Copies the tenant's blocks (and tombstones) into `dst`, laid out as a data directory
    /// (`dst/blocks/<tenant>/<ulid>/...`, `dst/wal/<tenant>/tombstones`), so promlake can serve
    /// it. The head is flushed into blocks first unless `skip_head`. Returns the blocks copied.
    pub fn snapshot(&self, dst: &Path, skip_head: bool) -> Result<usize> {
        if !skip_head {
            self.flush()?;
        }
        // No compaction or retention deletes a block while it is being copied.
        let _m = self.maintenance.lock();
        let out = BlockStore::local(&dst.join("blocks"))?;
        let blocks = self.blocks.read().clone();
        for b in &blocks {
            self.store.copy_block(&self.tenant, &b.meta.ulid, &out)?;
        }
        let wal_dir = dst.join("wal").join(self.tenant.as_str());
        std::fs::create_dir_all(&wal_dir).map_err(crate::error::StorageError::io(&wal_dir))?;
        self.tombstones.copy_to(&wal_dir.join("tombstones"))?;
        Ok(blocks.len())
    }

    /// Persists the whole head into blocks now; returns the blocks written.
    pub fn flush(&self) -> Result<Vec<BlockMeta>> {
        let max = self.head.max_time();
        if max == i64::MIN {
            return Ok(Vec::new());
        }
        self.cut_to(max.saturating_add(1))
    }

    /// Cuts full block ranges once the head spans 1.5 block durations (as Prometheus does).
    pub fn maybe_cut(&self) -> Result<Vec<BlockMeta>> {
        let bd = self.opts.block_duration;
        let (mn, mx) = (self.head.min_time(), self.head.max_time());
        if mn == i64::MAX || mx == i64::MIN || mx - mn < bd / 2 * 3 {
            return Ok(Vec::new());
        }
        // Cut every whole range that ends at least half a block before the newest sample.
        let upto = (mx - bd / 2).div_euclid(bd) * bd;
        if upto <= mn {
            return Ok(Vec::new());
        }
        self.cut_to(upto)
    }

    fn cut_to(&self, upto: i64) -> Result<Vec<BlockMeta>> {
        let _m = self.maintenance.lock();
        let finished_segment = self.wal.rotate()?;
        // Chunk files sealed now hold only chunks the cut below moves out (or newer data).
        let sealed = self.head.chunk_disk().map(|d| d.rotate()).transpose()?;
        let moved = self.head.cut(upto);
        let bd = self.opts.block_duration;
        let mut ranges: Vec<i64> = Vec::new();
        for (_, c) in &moved {
            for ch in &c.chunks {
                ranges.push(ch.min_t.div_euclid(bd));
            }
            for s in &c.ooo {
                ranges.push(s.t.div_euclid(bd));
            }
            for h in &c.histograms {
                ranges.push(h.t.div_euclid(bd));
            }
        }
        ranges.sort_unstable();
        ranges.dedup();
        *self.cutting.write() = Arc::new(moved);
        let mut written = Vec::new();
        {
            let cutting = self.cutting.read();
            let tombstones = self.tombstones.list();
            let mut order: Vec<usize> = (0..cutting.len()).collect();
            order.sort_by(|a, b| cutting[*a].0.labels.cmp(&cutting[*b].0.labels));
            for r in ranges {
                let (lo, hi) = (r * bd, r * bd + bd - 1);
                let series = order.iter().map(|&i| {
                    let mut s = Vec::new();
                    cutting[i].1.samples(lo, hi, &mut s);
                    let mut h = Vec::new();
                    cutting[i].1.histograms(lo, hi, &mut h);
                    let hidden = hidden_in(&tombstones, &cutting[i].0.labels);
                    hidden.filter_samples(&mut s);
                    hidden.filter_histograms(&mut h);
                    (cutting[i].0.labels.clone(), s, h)
                });
                if let Some(meta) = write_block(&self.store, &self.tenant, 1, vec![], series)? {
                    let block = Block::open(&self.store, &self.tenant, &meta.ulid)?;
                    self.add_block(block);
                    self.stats.blocks_written.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(tenant = %self.tenant, block = %meta.ulid, series = meta.num_series,
                        samples = meta.num_samples, min_time = meta.min_time, max_time = meta.max_time, "block written");
                    written.push(meta);
                }
            }
        }
        *self.cutting.write() = Arc::new(Vec::new());
        if let (Some(d), Some(sealed)) = (self.head.chunk_disk(), sealed) {
            d.release(sealed, upto);
        }
        {
            let _g = self.append_gate.write();
            self.head.gc(upto);
        }
        self.series_cache.purge_dead();
        self.checkpoint(finished_segment)?;
        Ok(written)
    }

    pub(crate) fn add_block(&self, block: Block) {
        let mut blocks = self.blocks.write();
        blocks.push(Arc::new(block));
        blocks.sort_by_key(|b| (b.meta.min_time, b.meta.ulid.clone()));
    }

    /// Rewrites what the head still holds as a checkpoint and drops the segments it replaces.
    fn checkpoint(&self, upto_segment: u64) -> Result<()> {
        let series = self.head.all_series();
        let disk = self.head.chunk_disk().map(Arc::as_ref);
        let mut records = Vec::new();
        for group in series.chunks(10_000) {
            records.push((
                RecordKind::Series,
                wal::encode_series(group.iter().map(|s| (s.id, &s.labels)))?,
            ));
            let (mut r, mut t, mut v) = (Vec::new(), Vec::new(), Vec::new());
            for s in group {
                let mut buf = Vec::new();
                s.data.lock().samples(disk, i64::MIN, i64::MAX, &mut buf);
                for smp in buf {
                    r.push(s.id);
                    t.push(smp.t);
                    v.push(smp.v);
                }
            }
            if !r.is_empty() {
                records.push((RecordKind::Samples, wal::encode_samples(r, t, v)?));
            }
            let (mut r, mut t, mut hs) = (Vec::new(), Vec::new(), Vec::new());
            for s in group {
                s.data.lock().histograms(i64::MIN, i64::MAX, &mut hs);
                r.resize(hs.len(), s.id);
            }
            for h in &hs {
                t.push(h.t);
            }
            if !r.is_empty() {
                let refs: Vec<&FloatHistogram> = hs.iter().map(|h| &*h.h).collect();
                records.push((RecordKind::Histograms, wal::encode_histograms(r, t, &refs)?));
            }
        }
        let metadata = self.metadata.snapshot();
        for group in metadata.chunks(10_000) {
            records.push((RecordKind::Metadata, encode_metadata(group)?));
        }
        let exemplars = self.exemplars.snapshot();
        for group in exemplars.chunks(10_000) {
            records.push((
                RecordKind::Exemplars,
                encode_exemplars(group.iter().map(|(l, e)| (l, e)))?,
            ));
        }
        wal::write_checkpoint(self.wal.dir(), upto_segment, &records)?;
        self.wal.truncate(upto_segment)
    }

    /// Merges overlapping blocks, then adjacent blocks into ranges of 3×, 9×, 27× the block
    /// duration (capped at a tenth of retention) once the head has moved past the range.
    pub fn compact(&self) -> Result<usize> {
        let _m = self.maintenance.lock();
        let mut merged = 0;
        loop {
            let blocks = self.blocks.read().clone();
            let Some(group) = self.plan_compaction(&blocks) else { break };
            self.merge(&group)?;
            merged += 1;
        }
        self.drop_tombstones()?;
        Ok(merged)
    }

    fn plan_compaction(&self, blocks: &[Arc<Block>]) -> Option<Vec<Arc<Block>>> {
        // Overlaps first: they come from out-of-order data or a flush.
        for w in blocks.windows(2) {
            if w[1].meta.min_time <= w[0].meta.max_time {
                let lo = w[0].meta.min_time;
                let mut hi = w[0].meta.max_time;
                let mut g = Vec::new();
                for b in blocks.iter().filter(|b| b.meta.min_time >= lo) {
                    if b.meta.min_time <= hi {
                        hi = hi.max(b.meta.max_time);
                        g.push(b.clone());
                    }
                }
                return Some(g);
            }
        }
        let bd = self.opts.block_duration;
        let head_min = self.head.min_time();
        let mut range = bd * 3;
        while range <= (self.opts.retention / 10).max(bd * 3) {
            let mut groups: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
            for b in blocks {
                let w = b.meta.min_time.div_euclid(range);
                if b.meta.max_time.div_euclid(range) == w {
                    groups.entry(w).or_default().push(b.clone());
                }
            }
            for (w, g) in groups {
                let window_end = (w + 1) * range;
                let span = g.iter().map(|b| b.meta.max_time).max().unwrap_or(0)
                    - g.iter().map(|b| b.meta.min_time).min().unwrap_or(0);
                if g.len() > 1 && window_end <= head_min && span < range {
                    return Some(g);
                }
            }
            range *= 3;
        }
        None
    }

    fn merge(&self, group: &[Arc<Block>]) -> Result<()> {
        let level = group.iter().map(|b| b.meta.level).max().unwrap_or(1) + 1;
        let sources: Vec<String> = group.iter().flat_map(|b| b.meta.sources.clone()).collect();
        // k-way merge of the blocks' series, each in label order; one series in memory at a time.
        let mut iters: Vec<_> = group.iter().map(|b| b.all_series().peekable()).collect();
        let tombstones = self.tombstones.list();
        let mut err = None;
        let merged = std::iter::from_fn(|| {
            let mut next: Option<Labels> = None;
            for it in iters.iter_mut() {
                match it.peek() {
                    Some(Ok((l, _, _))) if next.as_ref().is_none_or(|n| l < n) => {
                        next = Some(l.clone());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        if let Some(Err(e)) = it.next() {
                            err = Some(e);
                        }
                        return None;
                    }
                    None => {}
                }
            }
            let labels = next?;
            let mut samples: Vec<Sample> = Vec::new();
            let mut histograms: Vec<HistogramSample> = Vec::new();
            for it in iters.iter_mut() {
                if matches!(it.peek(), Some(Ok((l, _, _))) if *l == labels)
                    && let Some(Ok((_, s, h))) = it.next()
                {
                    let prev = std::mem::take(&mut samples);
                    merge_into(&mut samples, &prev, &s);
                    merge_histograms(&mut histograms, h);
                }
            }
            let hidden = hidden_in(&tombstones, &labels);
            hidden.filter_samples(&mut samples);
            hidden.filter_histograms(&mut histograms);
            Some((labels, samples, histograms))
        });
        let meta = write_block(&self.store, &self.tenant, level, sources, merged)?;
        if let Some(e) = err {
            return Err(e);
        }
        let new_block = match meta {
            Some(m) => Some(Block::open(&self.store, &self.tenant, &m.ulid)?),
            None => None,
        };
        {
            let mut blocks = self.blocks.write();
            blocks.retain(|b| !group.iter().any(|g| g.meta.ulid == b.meta.ulid));
            if let Some(b) = new_block {
                tracing::info!(tenant = %self.tenant, block = %b.meta.ulid, level, inputs = group.len(), "blocks compacted");
                blocks.push(Arc::new(b));
            }
            blocks.sort_by_key(|b| (b.meta.min_time, b.meta.ulid.clone()));
        }
        for g in group {
            self.store.delete_block(&self.tenant, &g.meta.ulid)?;
        }
        self.stats.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes blocks entirely older than `now - retention`.
    pub fn apply_retention(&self, now: i64) -> Result<usize> {
        let _m = self.maintenance.lock();
        let cutoff = now - self.opts.retention;
        let old: Vec<Arc<Block>> =
            self.blocks.read().iter().filter(|b| b.meta.max_time < cutoff).cloned().collect();
        for b in &old {
            self.blocks.write().retain(|x| x.meta.ulid != b.meta.ulid);
            self.store.delete_block(&self.tenant, &b.meta.ulid)?;
            tracing::info!(tenant = %self.tenant, block = %b.meta.ulid, "block deleted by retention");
        }
        self.stats.blocks_deleted_by_retention.fetch_add(old.len() as u64, Ordering::Relaxed);
        // The data is gone from `select` now: results caches must drop what they computed
        // from it (a deletion, recorded from its oldest time like a late write).
        if let Some(min_t) = old.iter().map(|b| b.meta.min_time).min() {
            self.changes.record(min_t);
        }
        Ok(old.len())
    }
}

/// Merges a sorted run of histogram samples into `acc` (sorted); on equal timestamps the
/// sample already in `acc` wins, as `merge_into` does for floats.
fn merge_histograms(acc: &mut Vec<HistogramSample>, part: Vec<HistogramSample>) {
    if part.is_empty() {
        return;
    }
    if acc.is_empty() {
        *acc = part;
        return;
    }
    let prev = std::mem::take(acc);
    acc.reserve(prev.len() + part.len());
    let (mut a, mut b) = (prev.into_iter().peekable(), part.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.t < y.t => a.next(),
            (Some(x), Some(y)) if x.t > y.t => b.next(),
            (Some(_), Some(_)) => {
                b.next();
                a.next()
            }
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => break,
        };
        acc.extend(next);
    }
}
