//! The in-memory head of one tenant: a series registry with stable ids, XOR chunks per series,
//! an out-of-order buffer, and postings. The head applies no durability itself; the tenant
//! database logs to the WAL around it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

use model::{FloatHistogram, HistogramSample, Interner, Labels, Matcher, RejectReason, Sample};
use parking_lot::{Mutex, RwLock};
use roaring::RoaringBitmap;

use crate::chunk::{self, XorChunk};
use crate::chunk_disk::{ChunkDisk, ChunkRef};
use crate::codec::histogram_bits_eq;
use crate::index::Postings;

const SHARDS: usize = 32;

#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// Chunks never cross a multiple of this (the block duration), so a cut moves whole chunks.
    pub chunk_range: i64,
    /// How far behind the newest sample of the tenant a sample may arrive (ms).
    pub ooo_window: i64,
}

/// A closed, immutable chunk: its XOR bytes in the tenant's head chunk file (the usual case),
/// or on the heap when there is no file or writing it failed.
///
/// 24 bytes (checked by a test): the newest time is a 32-bit span from the oldest, and the
/// chunk file handle is not held per chunk but passed in by the reader (a head holds one).
pub struct ClosedChunk {
    pub min_t: i64,
    bytes: ChunkBytes,
}

/// Where the chunk's bytes are, with its sample count and time span (`max_t - min_t`).
enum ChunkBytes {
    /// In the head chunk file at `file`/`offset` ([`ChunkRef`], with the length in 16 bits:
    /// a chunk is at most [`chunk::CHUNK_BYTES`]).
    Disk { count: u8, len: u16, span: u32, file: u32, offset: u32 },
    /// On the heap: boxed, so the common disk case is not sized by it.
    Mem { span: u32, chunk: Box<MemChunk> },
}

struct MemChunk {
    count: u16,
    bytes: Box<[u8]>,
}

impl ClosedChunk {
    fn new(o: &XorChunk, disk: Option<&ChunkDisk>) -> ClosedChunk {
        // The head closes a chunk before its span could pass 32 bits (see `SeriesData::append`).
        let span = u32::try_from(o.max_time() - o.min_time()).unwrap_or(u32::MAX);
        let mem = || ChunkBytes::Mem {
            span,
            chunk: Box::new(MemChunk { count: o.count() as u16, bytes: o.bytes().into() }),
        };
        let small = (u8::try_from(o.count()), u16::try_from(o.byte_len()));
        let bytes = match (disk, small) {
            (Some(d), (Ok(count), Ok(len))) => match d.write(o.bytes(), o.max_time()) {
                Ok(r) => ChunkBytes::Disk { count, len, span, file: r.file, offset: r.offset },
                Err(e) => {
                    tracing::warn!(error = %e, "head chunk stays in memory: writing it to disk failed");
                    mem()
                }
            },
            _ => mem(),
        };
        ClosedChunk { min_t: o.min_time(), bytes }
    }

    pub fn max_t(&self) -> i64 {
        let span = match &self.bytes {
            ChunkBytes::Disk { span, .. } | ChunkBytes::Mem { span, .. } => *span,
        };
        self.min_t + i64::from(span)
    }

    pub fn count(&self) -> u16 {
        match &self.bytes {
            ChunkBytes::Disk { count, .. } => u16::from(*count),
            ChunkBytes::Mem { chunk, .. } => chunk.count,
        }
    }

    /// Hands the chunk's bytes and sample count to `f`. A chunk in the file is read in place,
    /// through the file's map; `disk` is the head's chunk file store (the one the chunk was
    /// written to).
    fn with_bytes(&self, disk: Option<&ChunkDisk>, f: impl FnOnce(&[u8], usize)) {
        match &self.bytes {
            ChunkBytes::Mem { chunk, .. } => f(&chunk.bytes, chunk.count as usize),
            &ChunkBytes::Disk { count, len, file, offset, .. } => {
                let Some(d) = disk else {
                    tracing::error!("head chunk unreadable: no head chunk file store");
                    return;
                };
                let r = ChunkRef { file, offset, len: u32::from(len) };
                if let Err(e) = d.with_chunk(r, |b| f(b, count as usize)) {
                    tracing::error!(error = %e, "head chunk unreadable");
                }
            }
        }
    }

    fn decode_into(&self, disk: Option<&ChunkDisk>, out: &mut Vec<(i64, f64)>) {
        self.with_bytes(disk, |b, n| {
            let _ = chunk::decode(b, n, out);
        });
    }

    /// Decodes the samples in `[mint, maxt]` into `out`.
    fn decode_range(&self, disk: Option<&ChunkDisk>, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        self.with_bytes(disk, |b, n| {
            let _ = chunk::decode_range(b, n, mint, maxt, out);
        });
    }

    /// Heap bytes this chunk holds.
    fn heap_bytes(&self) -> usize {
        let own = std::mem::size_of::<ClosedChunk>();
        match &self.bytes {
            ChunkBytes::Mem { chunk, .. } => {
                chunk.bytes.len() + std::mem::size_of::<MemChunk>() + own
            }
            ChunkBytes::Disk { .. } => own,
        }
    }
}

/// One series' samples in the head. Kept small: every active series has one, so each word
/// here is a word of resident memory per series (docs/benchmarks/storage.md).
#[derive(Default)]
pub struct SeriesData {
    closed: Vec<ClosedChunk>,
    /// The chunk being appended to. After a cut it may be empty: it then carries the newest
    /// in-order sample (`XorChunk::last`), which the duplicate and out-of-order rules and
    /// series garbage collection read; the head keeps no other copy of it.
    open: Option<XorChunk>,
    /// Out-of-order samples and native histograms, which most series never have: boxed, and
    /// `None` until the first one.
    rare: Option<Box<RareData>>,
}

#[derive(Default)]
struct RareData {
    /// Out-of-order samples, by time.
    ooo: BTreeMap<i64, f64>,
    /// Native histogram samples (kept apart from the float chunks).
    hist: HistogramRun,
}

/// Shared empty values for series without [`RareData`].
static NO_OOO: BTreeMap<i64, f64> = BTreeMap::new();
static NO_HIST: HistogramRun = HistogramRun { samples: BTreeMap::new(), last: None };

/// A series' native histogram samples, by time. Uncompressed for now: correctness first.
#[derive(Default)]
pub struct HistogramRun {
    samples: BTreeMap<i64, FloatHistogram>,
    /// Newest histogram time ever stored (kept across cuts, for series garbage collection).
    last: Option<i64>,
}

impl SeriesData {
    fn ooo(&self) -> &BTreeMap<i64, f64> {
        self.rare.as_ref().map_or(&NO_OOO, |r| &r.ooo)
    }

    fn hist(&self) -> &HistogramRun {
        self.rare.as_ref().map_or(&NO_HIST, |r| &r.hist)
    }

    fn rare_mut(&mut self) -> &mut RareData {
        self.rare.get_or_insert_with(Box::default)
    }

    fn is_empty(&self) -> bool {
        self.closed.is_empty()
            && self.open.as_ref().is_none_or(|o| o.count() == 0)
            && self.ooo().is_empty()
            && self.hist().samples.is_empty()
    }

    fn value_at(&self, disk: Option<&ChunkDisk>, t: i64) -> Option<u64> {
        if let Some(v) = self.ooo().get(&t) {
            return Some(v.to_bits());
        }
        let mut buf = Vec::new();
        for c in &self.closed {
            if c.min_t <= t && t <= c.max_t() {
                c.decode_into(disk, &mut buf);
            }
        }
        if let Some(o) = &self.open
            && o.count() > 0
            && o.min_time() <= t
            && t <= o.max_time()
        {
            o.decode_into(&mut buf);
        }
        buf.iter().find(|s| s.0 == t).map(|s| s.1.to_bits())
    }

    /// Appends one sample. `Ok(true)` when stored, `Ok(false)` for an exact duplicate (no-op).
    /// `ooo_min` is the oldest time accepted out of order; `None` accepts anything (WAL replay).
    fn append(
        &mut self,
        t: i64,
        v: f64,
        ooo_min: Option<i64>,
        chunk_range: i64,
        disk: Option<&ChunkDisk>,
    ) -> Result<bool, RejectReason> {
        let bits = v.to_bits();
        // Nothing older than the window is accepted, in order or not (as Prometheus' min valid time).
        if let Some(min) = ooo_min
            && t < min
        {
            return Err(RejectReason::OutOfBounds { t, min_valid: min });
        }
        // The newest in-order sample, from the open chunk (carried over while it is empty).
        match self.open.as_ref().and_then(XorChunk::last) {
            Some((lt, lv)) if t == lt => {
                return if lv == bits {
                    Ok(false)
                } else {
                    Err(RejectReason::DuplicateTimestamp { t })
                };
            }
            Some((lt, _)) if t < lt => {
                return match self.value_at(disk, t) {
                    Some(b) if b == bits => Ok(false),
                    Some(_) => Err(RejectReason::DuplicateTimestamp { t }),
                    None => {
                        self.rare_mut().ooo.insert(t, v);
                        Ok(true)
                    }
                };
            }
            _ => {}
        }
        let cut = match &self.open {
            None => true,
            Some(o) if o.count() == 0 => false,
            // Full (120 samples or the byte budget), across a range boundary, or a span
            // that a closed chunk's 32-bit span could not hold.
            Some(o) => {
                o.is_full()
                    || t.div_euclid(chunk_range) != o.min_time().div_euclid(chunk_range)
                    || t - o.min_time() > i64::from(u32::MAX)
            }
        };
        if cut {
            // The next chunk reuses the closed one's buffer (see `XorChunk::recycle`).
            let old = self.close_open(disk);
            self.open = Some(old.map_or_else(XorChunk::new, XorChunk::recycle));
        }
        if let Some(o) = self.open.as_mut() {
            o.append(t, v);
        }
        Ok(true)
    }

    /// Closes the open chunk (if it has samples) and hands its buffer back for reuse.
    fn close_open(&mut self, disk: Option<&ChunkDisk>) -> Option<XorChunk> {
        let o = self.open.take()?;
        if o.count() > 0 {
            // Four entries at a time, not doubling: a series holds a dozen or more chunks at a
            // byte budget, and doubling would leave up to half of them unused.
            if self.closed.len() == self.closed.capacity() {
                self.closed.reserve_exact(4);
            }
            self.closed.push(ClosedChunk::new(&o, disk));
        }
        Some(o)
    }

    /// Samples in `[mint, maxt]`, sorted, in-order data winning over out-of-order on ties.
    /// Only the chunks overlapping the range are decoded, and each only up to `maxt`. `disk`
    /// is the head's chunk file store ([`Head::chunk_disk`]).
    pub fn samples(&self, disk: Option<&ChunkDisk>, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let start = out.len();
        for c in &self.closed {
            if c.max_t() >= mint && c.min_t <= maxt {
                c.decode_range(disk, mint, maxt, out);
            }
        }
        if let Some(o) = &self.open
            && o.count() > 0
            && o.max_time() >= mint
            && o.min_time() <= maxt
        {
            o.decode_range(mint, maxt, out);
        }
        if !self.ooo().is_empty() {
            let ooo: Vec<Sample> =
                self.ooo().range(mint..=maxt).map(|(t, v)| Sample { t: *t, v: *v }).collect();
            if !ooo.is_empty() {
                let inorder: Vec<Sample> = out.drain(start..).collect();
                merge_into(out, &inorder, &ooo);
            }
        }
    }

    pub fn sample_count(&self) -> usize {
        self.closed.iter().map(|c| c.count() as usize).sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.count())
            + self.ooo().len()
    }

    pub fn chunk_bytes(&self) -> usize {
        self.closed.iter().map(ClosedChunk::heap_bytes).sum::<usize>()
            + self.open.as_ref().map_or(0, |o| o.byte_len() + 64)
            + self.ooo().len() * 40
            + self.rare.as_ref().map_or(0, |_| std::mem::size_of::<RareData>())
    }

    /// Moves out everything older than `upto` (whole chunks: they never cross a chunk range).
    fn take_before(&mut self, upto: i64) -> CutData {
        if self.open.as_ref().is_some_and(|o| o.count() > 0 && o.max_time() < upto) {
            // Kept on the heap: it leaves the head with this cut, and a chunk file written now
            // would outlive it. The empty chunk left behind keeps only the newest sample.
            self.open = self.close_open(None).map(XorChunk::retire);
        }
        let (old, keep): (Vec<ClosedChunk>, Vec<ClosedChunk>) =
            std::mem::take(&mut self.closed).into_iter().partition(|c| c.max_t() < upto);
        self.closed = keep;
        let Some(rare) = self.rare.as_mut() else {
            return CutData { chunks: old, ooo: Vec::new(), histograms: Vec::new(), disk: None };
        };
        let newer = rare.ooo.split_off(&upto);
        let ooo = std::mem::replace(&mut rare.ooo, newer);
        let histograms = rare.hist.take_before(upto);
        // Nothing left that needs the box (the newest histogram time is kept for gc).
        if rare.ooo.is_empty() && rare.hist.samples.is_empty() && rare.hist.last.is_none() {
            self.rare = None;
        }
        CutData {
            chunks: old,
            ooo: ooo.into_iter().map(|(t, v)| Sample { t, v }).collect(),
            histograms,
            disk: None,
        }
    }
}

impl SeriesData {
    /// Appends one histogram sample under the float rules: nothing older than `ooo_min`; the
    /// same time again is a no-op when the histogram is identical (bit for bit), a
    /// `DuplicateTimestamp` when it differs or when a float sample holds that time.
    fn append_histogram(
        &mut self,
        t: i64,
        h: &FloatHistogram,
        ooo_min: Option<i64>,
        disk: Option<&ChunkDisk>,
    ) -> Result<bool, RejectReason> {
        if let Some(min) = ooo_min
            && t < min
        {
            return Err(RejectReason::OutOfBounds { t, min_valid: min });
        }
        if let Some(old) = self.hist().samples.get(&t) {
            return if histogram_bits_eq(old, h) {
                Ok(false)
            } else {
                Err(RejectReason::DuplicateTimestamp { t })
            };
        }
        if self.value_at(disk, t).is_some() {
            return Err(RejectReason::DuplicateTimestamp { t });
        }
        let hist = &mut self.rare_mut().hist;
        hist.samples.insert(t, h.clone());
        hist.last = Some(hist.last.map_or(t, |l| l.max(t)));
        Ok(true)
    }

    /// True when a histogram sample holds time `t` (a float may not take it).
    fn has_histogram_at(&self, t: i64) -> bool {
        self.rare.as_ref().is_some_and(|r| r.hist.samples.contains_key(&t))
    }

    /// Histogram samples in `[mint, maxt]`, in time order.
    pub fn histograms(&self, mint: i64, maxt: i64, out: &mut Vec<HistogramSample>) {
        self.hist().range(mint, maxt, out);
    }

    pub fn histogram_count(&self) -> usize {
        self.hist().samples.len()
    }

    /// Oldest and newest histogram times held, if any.
    fn histogram_range(&self) -> Option<(i64, i64)> {
        let s = &self.hist().samples;
        Some((*s.keys().next()?, *s.keys().next_back()?))
    }
}

impl HistogramRun {
    fn range(&self, mint: i64, maxt: i64, out: &mut Vec<HistogramSample>) {
        if mint > maxt {
            return;
        }
        out.extend(
            self.samples
                .range(mint..=maxt)
                .map(|(t, h)| HistogramSample { t: *t, h: Box::new(h.clone()) }),
        );
    }

    fn take_before(&mut self, upto: i64) -> Vec<HistogramSample> {
        let newer = self.samples.split_off(&upto);
        let old = std::mem::replace(&mut self.samples, newer);
        old.into_iter().map(|(t, h)| HistogramSample { t, h: Box::new(h) }).collect()
    }
}

/// Merges two sorted sample runs; on equal timestamps the first run wins.
pub(crate) fn merge_into(out: &mut Vec<Sample>, a: &[Sample], b: &[Sample]) {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].t.cmp(&b[j].t) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// Data moved out of the head by a cut, kept queryable until its block is registered.
pub struct CutData {
    pub chunks: Vec<ClosedChunk>,
    pub ooo: Vec<Sample>,
    /// Native histogram samples, in time order.
    pub histograms: Vec<HistogramSample>,
    /// The head's chunk file store, which the chunks' bytes are in (set by [`Head::cut`]).
    disk: Option<Arc<ChunkDisk>>,
}

impl CutData {
    pub fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) {
        let mut inorder = Vec::new();
        for c in &self.chunks {
            if c.max_t() >= mint && c.min_t <= maxt {
                c.decode_range(self.disk.as_deref(), mint, maxt, &mut inorder);
            }
        }
        let ooo: Vec<Sample> =
            self.ooo.iter().filter(|s| s.t >= mint && s.t <= maxt).copied().collect();
        merge_into(out, &inorder, &ooo);
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.ooo.is_empty() && self.histograms.is_empty()
    }

    /// Histogram samples in `[mint, maxt]`, in time order.
    pub fn histograms(&self, mint: i64, maxt: i64, out: &mut Vec<HistogramSample>) {
        out.extend(self.histograms.iter().filter(|h| h.t >= mint && h.t <= maxt).cloned());
    }
}

/// Index statistics of a head (see [`Head::cardinality`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cardinality {
    pub series_by_metric: Vec<(String, u64)>,
    pub values_by_label: Vec<(String, u64)>,
    pub series_by_pair: Vec<(String, u64)>,
    pub label_pairs: u64,
}

pub struct MemSeries {
    pub id: u32,
    pub labels: Labels,
    pub data: Mutex<SeriesData>,
    /// Cleared when garbage collection drops the series from the head (under the tenant's
    /// append gate), so a handle held by the series cache is known to be stale.
    live: AtomicBool,
}

impl MemSeries {
    /// Starts loading the series' lock and the start of its data, for an append a few series
    /// later (see `TenantDb::append` and `model::prefetch`).
    pub fn prefetch(&self) {
        let data: *const u8 = (&raw const self.data).cast();
        model::prefetch(data);
        model::prefetch(data.wrapping_add(64));
    }

    /// Starts loading the last byte of the series' open chunk, which its next append writes.
    /// Takes the series lock only if it is free (the bytes may move under another writer).
    pub fn prefetch_open_chunk(&self) {
        if let Some(d) = self.data.try_lock()
            && let Some(open) = &d.open
        {
            model::prefetch(open.tail_ptr());
        }
    }
}

impl model::SeriesHandle for MemSeries {
    fn labels(&self) -> &Labels {
        &self.labels
    }

    fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// Seeded per process (foldhash): several times faster than SipHash on ~250-byte label sets,
/// measured in docs/benchmarks/storage.md.
/// The map holds one pointer per series, looked up by the series' own labels (see [`ByLabels`]).
type Shard = RwLock<HashSet<ByLabels, foldhash::fast::RandomState>>;

/// A registry entry: the series, hashed and compared by its labels, so the label-set map holds
/// one pointer per series rather than a (labels, series) pair.
struct ByLabels(Arc<MemSeries>);

impl PartialEq for ByLabels {
    fn eq(&self, other: &Self) -> bool {
        self.0.labels == other.0.labels
    }
}

impl Eq for ByLabels {}

impl std::hash::Hash for ByLabels {
    /// Exactly `Labels`' hash, as `Borrow<Labels>` requires.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.labels.hash(state)
    }
}

impl std::borrow::Borrow<Labels> for ByLabels {
    fn borrow(&self) -> &Labels {
        &self.0.labels
    }
}

pub struct Head {
    pub opts: HeadOptions,
    /// Where closed chunks go; `None` keeps them on the heap.
    disk: Option<Arc<ChunkDisk>>,
    interner: Interner,
    shards: Vec<Shard>,
    by_id: RwLock<HashMap<u32, Arc<MemSeries>>>,
    postings: RwLock<Postings>,
    next_id: AtomicU32,
    min_t: AtomicI64,
    max_t: AtomicI64,
}

impl Head {
    pub fn new(opts: HeadOptions) -> Head {
        Self::with_disk(opts, None)
    }

    pub fn with_disk(opts: HeadOptions, disk: Option<Arc<ChunkDisk>>) -> Head {
        Head {
            opts,
            disk,
            interner: Interner::new(),
            shards: (0..SHARDS)
                .map(|_| RwLock::new(HashSet::with_hasher(Default::default())))
                .collect(),
            by_id: RwLock::new(HashMap::new()),
            postings: RwLock::new(Postings::new()),
            next_id: AtomicU32::new(1),
            min_t: AtomicI64::new(i64::MAX),
            max_t: AtomicI64::new(i64::MIN),
        }
    }

    /// Picks a shard from the last label's value only (usually `job` or `instance`, or a
    /// distinguishing label such as `le`): the map hashes the whole label set anyway, and
    /// hashing it twice per lookup was a tenth of ingest CPU (docs/benchmarks/ingest.md).
    fn shard(&self, labels: &Labels) -> &Shard {
        let key = labels.as_slice().last().map_or(&[][..], |l| l.value.as_bytes());
        let h = key
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3));
        &self.shards[(h as usize) % SHARDS]
    }

    pub fn get(&self, labels: &Labels) -> Option<Arc<MemSeries>> {
        self.shard(labels).read().get(labels).map(|e| e.0.clone())
    }

    pub fn by_id(&self, id: u32) -> Option<Arc<MemSeries>> {
        self.by_id.read().get(&id).cloned()
    }

    /// Registers a new series under a fresh id (or the given id on replay). Callers serialise
    /// creation and log the series to the WAL before calling this.
    pub fn create(&self, labels: &Labels, id: Option<u32>) -> Arc<MemSeries> {
        if let Some(s) = self.get(labels) {
            return s;
        }
        let id = match id {
            Some(id) => {
                self.next_id.fetch_max(id + 1, Ordering::AcqRel);
                id
            }
            None => self.next_id.fetch_add(1, Ordering::AcqRel),
        };
        let labels = self.interner.intern_labels(labels);
        let s = Arc::new(MemSeries {
            id,
            labels: labels.clone(),
            data: Mutex::new(SeriesData::default()),
            live: AtomicBool::new(true),
        });
        self.shard(&labels).write().insert(ByLabels(s.clone()));
        self.by_id.write().insert(id, s.clone());
        self.postings.write().add(id, &labels);
        s
    }

    /// The id the next `create` without an id would take.
    pub fn peek_next_id(&self, n: u32) -> u32 {
        self.next_id.fetch_add(n, Ordering::AcqRel)
    }

    pub fn min_time(&self) -> i64 {
        self.min_t.load(Ordering::Acquire)
    }

    pub fn max_time(&self) -> i64 {
        self.max_t.load(Ordering::Acquire)
    }

    /// Oldest timestamp accepted right now: the window behind the tenant's newest sample.
    pub fn ooo_min(&self) -> i64 {
        let max = self.max_time();
        if max == i64::MIN { i64::MIN } else { max.saturating_sub(self.opts.ooo_window) }
    }

    /// Appends samples to one series; returns (stored, rejected-with-reason) counts.
    pub fn append_series(
        &self,
        s: &MemSeries,
        samples: &[Sample],
        lenient: bool,
        mut accepted: impl FnMut(i64, f64),
    ) -> (usize, Vec<(RejectReason, usize)>) {
        let ooo_min = if lenient { None } else { Some(self.ooo_min()) };
        let mut tally = Tally::default();
        {
            let mut d = s.data.lock();
            for smp in samples {
                let r = if d.has_histogram_at(smp.t) {
                    Err(RejectReason::DuplicateTimestamp { t: smp.t })
                } else {
                    d.append(smp.t, smp.v, ooo_min, self.opts.chunk_range, self.disk.as_deref())
                };
                match r {
                    Ok(true) => {
                        tally.stored(smp.t);
                        accepted(smp.t, smp.v);
                    }
                    Ok(false) => {}
                    Err(r) => tally.reject(r),
                }
            }
        }
        tally.publish(self)
    }

    /// Appends histogram samples to one series; returns (stored, rejected-with-reason) counts.
    /// `accepted` sees each stored sample (for the WAL).
    pub fn append_histograms<'h>(
        &self,
        s: &MemSeries,
        histograms: &'h [(i64, FloatHistogram)],
        lenient: bool,
        mut accepted: impl FnMut(i64, &'h FloatHistogram),
    ) -> (usize, Vec<(RejectReason, usize)>) {
        let ooo_min = if lenient { None } else { Some(self.ooo_min()) };
        let mut tally = Tally::default();
        {
            let mut d = s.data.lock();
            for (t, h) in histograms {
                match d.append_histogram(*t, h, ooo_min, self.disk.as_deref()) {
                    Ok(true) => {
                        tally.stored(*t);
                        accepted(*t, h);
                    }
                    Ok(false) => {}
                    Err(r) => tally.reject(r),
                }
            }
        }
        tally.publish(self)
    }

    pub fn select_ids(&self, matchers: &[Matcher]) -> RoaringBitmap {
        self.postings.read().select(matchers)
    }

    pub fn label_names(&self, ids: Option<&RoaringBitmap>) -> Vec<String> {
        let p = self.postings.read();
        p.label_names()
            .filter(|n| match ids {
                None => true,
                Some(ids) => p.label_values(n).any(|(_, b)| !b.is_disjoint(ids)),
            })
            .map(str::to_string)
            .collect()
    }

    pub fn label_values(&self, name: &str, ids: Option<&RoaringBitmap>) -> Vec<String> {
        let p = self.postings.read();
        p.label_values(name)
            .filter(|(_, b)| ids.is_none_or(|ids| !b.is_disjoint(ids)))
            .map(|(v, _)| v.to_string())
            .collect()
    }

    /// Cardinality from the index alone, for `/api/v1/status/tsdb`: the `limit` largest
    /// (series per metric name, values per label name, series per label pair).
    pub fn cardinality(&self, limit: usize) -> Cardinality {
        let p = self.postings.read();
        let top = |mut v: Vec<(String, u64)>| {
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(limit);
            v
        };
        let by_metric =
            p.label_values(model::METRIC_NAME).map(|(v, ids)| (v.to_string(), ids.len())).collect();
        let values_per_name =
            p.label_names().map(|n| (n.to_string(), p.label_values(n).count() as u64)).collect();
        let by_pair = p.iter().map(|(n, v, ids)| (format!("{n}={v}"), ids.len())).collect();
        Cardinality {
            series_by_metric: top(by_metric),
            values_by_label: top(values_per_name),
            series_by_pair: top(by_pair),
            label_pairs: p.iter().count() as u64,
        }
    }

    pub fn num_series(&self) -> usize {
        self.by_id.read().len()
    }

    /// Chunks held for the head's series (closed, on disk or not, and open), counted now.
    pub fn num_chunks(&self) -> usize {
        let all: Vec<Arc<MemSeries>> = self.by_id.read().values().cloned().collect();
        all.iter()
            .map(|s| {
                let d = s.data.lock();
                d.closed.len() + usize::from(d.open.as_ref().is_some_and(|o| o.count() > 0))
            })
            .sum()
    }

    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        let mut v: Vec<_> = self.by_id.read().values().cloned().collect();
        v.sort_by_key(|s| s.id);
        v
    }

    pub fn chunk_disk(&self) -> Option<&Arc<ChunkDisk>> {
        self.disk.as_ref()
    }

    /// Moves all data older than `upto` out of the head, per series.
    pub fn cut(&self, upto: i64) -> Vec<(Arc<MemSeries>, CutData)> {
        let mut out = Vec::new();
        for s in self.all_series() {
            let mut cut = s.data.lock().take_before(upto);
            if !cut.is_empty() {
                cut.disk = self.disk.clone();
                out.push((s, cut));
            }
        }
        // Recompute the head's time range from what is left.
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for s in self.all_series() {
            let d = s.data.lock();
            for c in &d.closed {
                lo = lo.min(c.min_t);
                hi = hi.max(c.max_t());
            }
            if let Some(o) = d.open.as_ref().filter(|o| o.count() > 0) {
                lo = lo.min(o.min_time());
                hi = hi.max(o.max_time());
            }
            if let (Some(a), Some(b)) = (d.ooo().keys().next(), d.ooo().keys().next_back()) {
                lo = lo.min(*a);
                hi = hi.max(*b);
            }
            if let Some((a, b)) = d.histogram_range() {
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        self.min_t.store(lo, Ordering::Release);
        // max_t keeps the newest time ever seen: the out-of-order window is relative to it.
        if hi != i64::MIN {
            self.max_t.fetch_max(hi, Ordering::AcqRel);
        }
        out
    }

    /// Drops series that hold no data and were last written before `before` (ms).
    pub fn gc(&self, before: i64) -> usize {
        let mut removed = 0;
        for s in self.all_series() {
            let d = s.data.lock();
            let stale = d.is_empty()
                && d.open.as_ref().and_then(XorChunk::last).is_none_or(|(t, _)| t < before)
                && d.hist().last.is_none_or(|t| t < before);
            drop(d);
            if stale {
                s.live.store(false, Ordering::Release);
                self.shard(&s.labels).write().remove(&s.labels);
                self.by_id.write().remove(&s.id);
                self.postings.write().remove(s.id, &s.labels);
                removed += 1;
            }
        }
        removed
    }
}

/// What one append to one series stored and rejected, published to the head once at the end.
struct Tally {
    stored: usize,
    rejected: Vec<(RejectReason, usize)>,
    lo: i64,
    hi: i64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally { stored: 0, rejected: Vec::new(), lo: i64::MAX, hi: i64::MIN }
    }
}

impl Tally {
    fn stored(&mut self, t: i64) {
        self.stored += 1;
        self.lo = self.lo.min(t);
        self.hi = self.hi.max(t);
    }

    /// Counts a rejection under the first reason of its kind.
    fn reject(&mut self, r: RejectReason) {
        let kind = std::mem::discriminant(&r);
        match self.rejected.iter_mut().find(|(x, _)| std::mem::discriminant(x) == kind) {
            Some(e) => e.1 += 1,
            None => self.rejected.push((r, 1)),
        }
    }

    /// Widens the head's time range; returns (stored, rejections).
    fn publish(self, head: &Head) -> (usize, Vec<(RejectReason, usize)>) {
        // Read before writing: concurrent writers of one scrape share these two words, and a
        // read-modify-write per series kept their cache line bouncing between cores.
        if self.stored > 0 {
            if self.lo < head.min_t.load(Ordering::Acquire) {
                head.min_t.fetch_min(self.lo, Ordering::AcqRel);
            }
            if self.hi > head.max_t.load(Ordering::Acquire) {
                head.max_t.fetch_max(self.hi, Ordering::AcqRel);
            }
        }
        (self.stored, self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head {
        Head::new(HeadOptions { chunk_range: 7_200_000, ooo_window: 600_000 })
    }

    fn samples(h: &Head, s: &MemSeries) -> Vec<(i64, f64)> {
        let mut out = Vec::new();
        s.data.lock().samples(h.chunk_disk().map(Arc::as_ref), i64::MIN, i64::MAX, &mut out);
        out.into_iter().map(|s| (s.t, s.v)).collect()
    }

    #[test]
    fn duplicates_and_out_of_order() {
        let h = head();
        let l = Labels::from_pairs([("__name__", "x")]).unwrap();
        let s = h.create(&l, None);
        let app = |t: i64, v: f64| h.append_series(&s, &[Sample { t, v }], false, |_, _| {});
        assert_eq!(app(1_000_000, 1.0).0, 1);
        assert_eq!(app(1_000_000, 1.0).0, 0, "same value: no-op");
        assert_eq!(app(1_000_000, 2.0).1[0].0, RejectReason::DuplicateTimestamp { t: 1_000_000 });
        assert_eq!(app(2_000_000, 2.0).0, 1);
        assert_eq!(app(1_500_000, 1.5).0, 1, "within the 10m window");
        assert_eq!(app(1_500_000, 9.0).1[0].0, RejectReason::DuplicateTimestamp { t: 1_500_000 });
        assert_eq!(
            app(1_000_000, 7.0).1[0].0,
            RejectReason::OutOfBounds { t: 1_000_000, min_valid: 1_400_000 }
        );
        assert_eq!(samples(&h, &s), vec![(1_000_000, 1.0), (1_500_000, 1.5), (2_000_000, 2.0)]);
    }

    /// The newest in-order sample lives only in the open chunk: after a cut took the open
    /// chunk away, the empty chunk left behind (its buffer freed) still decides duplicates of
    /// that sample and keeps the series from garbage collection until it is old enough.
    #[test]
    fn newest_sample_survives_a_cut_of_the_open_chunk() {
        let h = head();
        let l = Labels::from_pairs([("__name__", "x")]).unwrap();
        let s = h.create(&l, None);
        let app = |t: i64, v: f64| h.append_series(&s, &[Sample { t, v }], false, |_, _| {});
        let pts: Vec<Sample> = (0..480).map(|i| Sample { t: i * 15_000, v: i as f64 }).collect();
        assert_eq!(h.append_series(&s, &pts, false, |_, _| {}).0, 480);
        assert_eq!(h.cut(7_200_000).len(), 1);
        {
            let d = s.data.lock();
            let o = d.open.as_ref().unwrap();
            assert_eq!((o.count(), o.bytes().len()), (0, 0), "nothing left in the head");
            assert_eq!(o.last(), Some((7_185_000, 479f64.to_bits())));
        }
        assert_eq!(h.num_chunks(), 0, "an empty open chunk is not a chunk");
        assert_eq!(h.gc(7_185_000), 0, "written at 7_185_000: not stale before it");
        assert_eq!(app(7_185_000, 479.0).0, 0, "same value: no-op");
        assert_eq!(app(7_185_000, 1.0).1[0].0, RejectReason::DuplicateTimestamp { t: 7_185_000 });
        assert!(samples(&h, &s).is_empty());
        assert_eq!(app(7_200_000, 2.0).0, 1);
        assert_eq!(app(7_215_000, 3.0).0, 1);
        assert_eq!(samples(&h, &s), vec![(7_200_000, 2.0), (7_215_000, 3.0)]);
        assert_eq!(h.num_chunks(), 1);
        assert_eq!(h.cut(7_220_000).len(), 1);
        assert_eq!(h.gc(7_215_001), 1, "empty and older than the bound: collected");
    }

    /// Resident memory per series: the per-series structures keep the sizes the head's memory
    /// figures were measured with (docs/benchmarks/storage.md); a new field must pay its way.
    #[test]
    fn per_series_structures_stay_small() {
        assert!(std::mem::size_of::<ClosedChunk>() <= 24, "{}", std::mem::size_of::<ClosedChunk>());
        assert!(std::mem::size_of::<SeriesData>() <= 96, "{}", std::mem::size_of::<SeriesData>());
        assert!(std::mem::size_of::<XorChunk>() <= 64, "{}", std::mem::size_of::<XorChunk>());
        assert!(std::mem::size_of::<MemSeries>() <= 128, "{}", std::mem::size_of::<MemSeries>());
        assert_eq!(std::mem::size_of::<ChunkRef>(), 12);
        assert_eq!(std::mem::size_of::<model::Label>(), 16);
    }

    proptest::proptest! {
        /// The open chunk, the biggest per-series cost, never holds or allocates more than
        /// `chunk::CHUNK_BYTES`, whatever the values and timestamps; the chunks closed at the
        /// budget (in the head chunk file or on the heap) read back as written, and a cut
        /// moves them whole.
        #[test]
        fn open_chunk_stays_within_its_byte_budget(
            on_disk in proptest::bool::ANY,
            deltas in proptest::collection::vec(1i64..200_000, 1..600),
            values in proptest::collection::vec(proptest::num::f64::ANY, 600),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let disk = on_disk.then(|| Arc::new(ChunkDisk::open(&dir.path().join("hc")).unwrap()));
            let h = Head::with_disk(HeadOptions { chunk_range: 7_200_000, ooo_window: 0 }, disk);
            let s = h.create(&Labels::from_pairs([("__name__", "x")]).unwrap(), None);
            let mut want = Vec::new();
            let mut t = 0;
            for (d, v) in deltas.iter().zip(&values) {
                t += d;
                proptest::prop_assert_eq!(h.append_series(&s, &[Sample { t, v: *v }], false, |_, _| {}).0, 1);
                want.push((t, v.to_bits()));
                let d = s.data.lock();
                let o = d.open.as_ref().unwrap();
                proptest::prop_assert!(o.byte_len() <= chunk::CHUNK_BYTES, "{} bytes", o.byte_len());
                proptest::prop_assert!(o.capacity() <= chunk::CHUNK_BYTES, "{} allocated", o.capacity());
                proptest::prop_assert!(o.count() <= chunk::CHUNK_SAMPLES);
            }
            let got: Vec<(i64, u64)> = samples(&h, &s).iter().map(|s| (s.0, s.1.to_bits())).collect();
            proptest::prop_assert_eq!(&got, &want);
            let mut moved = Vec::new();
            for (_, c) in h.cut(t / 2) {
                c.samples(i64::MIN, i64::MAX, &mut moved);
            }
            let left: Vec<(i64, u64)> = samples(&h, &s).iter().map(|s| (s.0, s.1.to_bits())).collect();
            let moved: Vec<(i64, u64)> = moved.iter().map(|s| (s.t, s.v.to_bits())).collect();
            proptest::prop_assert_eq!([moved, left].concat(), want);
        }
    }

    #[test]
    fn out_of_order_data_is_boxed_only_while_held() {
        let h = head();
        let l = Labels::from_pairs([("__name__", "x")]).unwrap();
        let s = h.create(&l, None);
        let app = |t: i64, v: f64| h.append_series(&s, &[Sample { t, v }], false, |_, _| {});
        assert_eq!(app(7_300_000, 1.0).0, 1);
        assert!(s.data.lock().rare.is_none(), "in-order samples need no box");
        assert_eq!(app(7_250_000, 0.5).0, 1);
        assert!(s.data.lock().rare.is_some());
        let cut = h.cut(7_280_000);
        assert_eq!(cut[0].1.ooo, vec![Sample { t: 7_250_000, v: 0.5 }]);
        assert!(s.data.lock().rare.is_none(), "freed once its samples were cut");
        assert_eq!(samples(&h, &s), vec![(7_300_000, 1.0)]);
    }

    #[test]
    fn chunks_split_at_range_boundaries_and_cut_moves_them() {
        let h = head();
        let l = Labels::from_pairs([("__name__", "x")]).unwrap();
        let s = h.create(&l, None);
        let pts: Vec<Sample> = (0..1000).map(|i| Sample { t: i * 15_000, v: i as f64 }).collect();
        assert_eq!(h.append_series(&s, &pts, false, |_, _| {}).0, 1000);
        let cut = h.cut(7_200_000);
        assert_eq!(cut.len(), 1);
        let mut moved = Vec::new();
        cut[0].1.samples(i64::MIN, i64::MAX, &mut moved);
        assert_eq!(moved.len(), 480);
        assert_eq!(moved.last().unwrap().t, 7_185_000);
        let left = samples(&h, &s);
        assert_eq!(left.len(), 520);
        assert_eq!(left[0].0, 7_200_000);
        assert_eq!(h.min_time(), 7_200_000);
    }

    #[test]
    fn histograms_follow_the_head_time_range_and_cut() {
        let h = head();
        let l = Labels::from_pairs([("__name__", "x")]).unwrap();
        let s = h.create(&l, None);
        let fh = |n: f64| FloatHistogram { count: n, sum: n, ..Default::default() };
        let hs: Vec<(i64, FloatHistogram)> =
            [7_000_000, 7_100_000, 7_300_000].iter().map(|&t| (t, fh(t as f64))).collect();
        assert_eq!(h.append_histograms(&s, &hs, false, |_, _| {}).0, 3);
        assert_eq!((h.min_time(), h.max_time()), (7_000_000, 7_300_000));
        let cut = h.cut(7_200_000);
        let moved: Vec<i64> = cut[0].1.histograms.iter().map(|x| x.t).collect();
        assert_eq!(moved, vec![7_000_000, 7_100_000]);
        assert_eq!(h.min_time(), 7_300_000, "recomputed from the histogram left behind");
        let mut left = Vec::new();
        s.data.lock().histograms(i64::MIN, i64::MAX, &mut left);
        assert_eq!(left, vec![HistogramSample { t: 7_300_000, h: Box::new(fh(7_300_000.0)) }]);
        assert_eq!(h.gc(i64::MAX), 0, "a series holding histograms is not collected");
    }
}
