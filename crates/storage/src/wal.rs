//! The write-ahead log: Arrow IPC record batches in CRC-framed, size-rotated segment files,
//! with group commit (concurrent writers share one fsync). Byte layout: docs/format/wal.md.
//!
//! Durability contract: when [`Wal::sync`] returns for a sequence number, every record logged
//! up to it is on disk (fsync), unless the operator turned fsync off.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Float64Array, Int64Array, ListArray, RecordBatch, StringArray,
    UInt32Array,
};
use arrow_schema::{DataType, Field, Schema};
use parking_lot::Mutex;

use crate::error::{Result, StorageError};

/// Every segment starts with these 8 bytes.
pub const SEGMENT_MAGIC: &[u8; 8] = b"PLWAL\x00\x00\x01";
/// Record header: payload length (u32 LE), CRC32 of kind byte + payload (u32 LE), kind (u8).
const HEADER_LEN: usize = 9;
/// A record larger than this is treated as corruption on replay.
const MAX_RECORD: u32 = 256 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// New series: `ref: UInt32, names: List<Utf8>, values: List<Utf8>`.
    Series = 1,
    /// Float samples: `ref: UInt32, t: Int64, v: Float64` (values bit for bit).
    Samples = 2,
    /// Native histogram samples: `ref: UInt32, t: Int64, h: Binary` (`codec::encode_histogram`).
    Histograms = 3,
    /// Metric metadata: `family, type, help, unit: Utf8` (`metadata::encode_metadata`).
    Metadata = 4,
    /// Exemplars with their series' labels inline (`exemplars::encode_exemplars`).
    Exemplars = 5,
}

/// A decoded WAL record.
#[derive(Debug, PartialEq)]
pub enum Record {
    Series(Vec<(u32, Vec<(String, String)>)>),
    Samples(Vec<(u32, i64, f64)>),
    Histograms(Vec<(u32, i64, model::FloatHistogram)>),
    Metadata(Vec<model::MetricMetadata>),
    Exemplars(Vec<(model::Labels, model::Exemplar)>),
}

fn series_schema() -> Arc<Schema> {
    let item = |n| {
        Field::new(n, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false)
    };
    Arc::new(Schema::new(vec![
        Field::new("ref", DataType::UInt32, false),
        item("names"),
        item("values"),
    ]))
}

fn samples_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ref", DataType::UInt32, false),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Float64, false),
    ]))
}

fn histograms_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("ref", DataType::UInt32, false),
        Field::new("t", DataType::Int64, false),
        Field::new("h", DataType::Binary, false),
    ]))
}

pub(crate) fn ipc_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::with_capacity(1024), &batch.schema())
        .map_err(|e| StorageError::WalEncode(e.to_string()))?;
    w.write(batch).map_err(|e| StorageError::WalEncode(e.to_string()))?;
    w.into_inner().map_err(|e| StorageError::WalEncode(e.to_string()))
}

/// Encodes a series record payload.
pub fn encode_series<'a>(
    series: impl Iterator<Item = (u32, &'a model::Labels)>,
) -> Result<Vec<u8>> {
    let mut refs = Vec::new();
    let mut names = ListBuilder::new(StringBuilder::new());
    let mut values = ListBuilder::new(StringBuilder::new());
    for (r, labels) in series {
        refs.push(r);
        for l in labels.iter() {
            names.values().append_value(&*l.name);
            values.values().append_value(&*l.value);
        }
        names.append(true);
        values.append(true);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(refs)),
        Arc::new(names.finish()),
        Arc::new(values.finish()),
    ];
    ipc_bytes(&RecordBatch::try_new(series_schema(), cols)?)
}

/// Encodes a samples record payload from parallel columns.
pub fn encode_samples(refs: Vec<u32>, ts: Vec<i64>, vs: Vec<f64>) -> Result<Vec<u8>> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(refs)),
        Arc::new(Int64Array::from(ts)),
        Arc::new(Float64Array::from(vs)),
    ];
    ipc_bytes(&RecordBatch::try_new(samples_schema(), cols)?)
}

/// Encodes a histograms record payload from parallel columns.
pub fn encode_histograms(
    refs: Vec<u32>,
    ts: Vec<i64>,
    hs: &[&model::FloatHistogram],
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut offsets = Vec::with_capacity(hs.len() + 1);
    offsets.push(0usize);
    for h in hs {
        crate::codec::encode_histogram(h, &mut buf);
        offsets.push(buf.len());
    }
    let encoded = offsets.windows(2).map(|w| &buf[w[0]..w[1]]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(refs)),
        Arc::new(Int64Array::from(ts)),
        Arc::new(BinaryArray::from_iter_values(encoded)),
    ];
    ipc_bytes(&RecordBatch::try_new(histograms_schema(), cols)?)
}

fn decode_payload(kind: u8, payload: &[u8]) -> std::result::Result<Record, String> {
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(payload), None)
        .map_err(|e| e.to_string())?;
    let mut series = Vec::new();
    let mut samples = Vec::new();
    let mut histograms = Vec::new();
    let mut metadata = Vec::new();
    let mut exemplars = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let col = |i: usize| batch.columns().get(i).cloned().ok_or("missing column");
        match kind {
            1 => {
                let refs = col(0)?;
                let refs = refs.as_any().downcast_ref::<UInt32Array>().ok_or("ref column type")?;
                let names = col(1)?;
                let names =
                    names.as_any().downcast_ref::<ListArray>().ok_or("names column type")?;
                let values = col(2)?;
                let values =
                    values.as_any().downcast_ref::<ListArray>().ok_or("values column type")?;
                for i in 0..batch.num_rows() {
                    let n = names.value(i);
                    let v = values.value(i);
                    let n = n.as_any().downcast_ref::<StringArray>().ok_or("names item type")?;
                    let v = v.as_any().downcast_ref::<StringArray>().ok_or("values item type")?;
                    if n.len() != v.len() {
                        return Err("names and values differ in length".into());
                    }
                    let pairs =
                        (0..n.len()).map(|j| (n.value(j).to_string(), v.value(j).to_string()));
                    series.push((refs.value(i), pairs.collect()));
                }
            }
            2 => {
                let r = col(0)?;
                let t = col(1)?;
                let v = col(2)?;
                let r = r.as_any().downcast_ref::<UInt32Array>().ok_or("ref column type")?;
                let t = t.as_any().downcast_ref::<Int64Array>().ok_or("t column type")?;
                let v = v.as_any().downcast_ref::<Float64Array>().ok_or("v column type")?;
                for i in 0..batch.num_rows() {
                    samples.push((r.value(i), t.value(i), v.value(i)));
                }
            }
            3 => {
                let r = col(0)?;
                let t = col(1)?;
                let h = col(2)?;
                let r = r.as_any().downcast_ref::<UInt32Array>().ok_or("ref column type")?;
                let t = t.as_any().downcast_ref::<Int64Array>().ok_or("t column type")?;
                let h = h.as_any().downcast_ref::<BinaryArray>().ok_or("h column type")?;
                for i in 0..batch.num_rows() {
                    let hist = crate::codec::decode_histogram(h.value(i))?;
                    histograms.push((r.value(i), t.value(i), hist));
                }
            }
            4 => crate::metadata::decode_metadata(&batch, &mut metadata)?,
            5 => crate::exemplars::decode_exemplars(&batch, &mut exemplars)?,
            k => return Err(format!("unknown record kind {k}")),
        }
    }
    Ok(match kind {
        1 => Record::Series(series),
        3 => Record::Histograms(histograms),
        4 => Record::Metadata(metadata),
        5 => Record::Exemplars(exemplars),
        _ => Record::Samples(samples),
    })
}

#[derive(Clone, Debug)]
pub struct WalOptions {
    /// fsync before acknowledging. Off trades durability on power loss for speed.
    pub fsync: bool,
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { fsync: true, segment_size: 64 << 20 }
    }
}

struct Writer {
    file: File,
    index: u64,
    size: u64,
}

/// The WAL of one tenant.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    writer: Mutex<Writer>,
    /// A handle on the current segment for fsync outside the writer lock.
    sync_file: Mutex<Arc<File>>,
    sync_lock: Mutex<()>,
    written: AtomicU64,
    synced: AtomicU64,
    /// Bytes and fsyncs, for metrics.
    pub bytes_written: AtomicU64,
    pub fsyncs: AtomicU64,
    /// fsync latency, for metrics (read at scrape; storage knows no metrics library).
    pub fsync_latency: LatencyBuckets,
}

fn segment_name(index: u64) -> String {
    format!("{index:08}")
}

/// Segment indexes present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(StorageError::io(dir)(e)),
    };
    for entry in rd {
        let entry = entry.map_err(StorageError::io(dir))?;
        if let Some(i) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            out.push(i);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io(dir))
}

impl Wal {
    /// Opens the WAL for appending: always starts a fresh segment after the existing ones, so a
    /// torn tail of an earlier segment is never appended to.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Wal> {
        fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        let next = list_segments(dir)?.last().map_or(1, |i| i + 1);
        let file = Self::create_segment(dir, next)?;
        let sync_file = Arc::new(file.try_clone().map_err(StorageError::io(dir))?);
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            writer: Mutex::new(Writer { file, index: next, size: SEGMENT_MAGIC.len() as u64 }),
            sync_file: Mutex::new(sync_file),
            sync_lock: Mutex::new(()),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            fsync_latency: LatencyBuckets::default(),
        })
    }

    fn create_segment(dir: &Path, index: u64) -> Result<File> {
        let path = dir.join(segment_name(index));
        let mut f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(StorageError::io(&path))?;
        f.write_all(SEGMENT_MAGIC).map_err(StorageError::io(&path))?;
        sync_dir(dir)?;
        Ok(f)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes records (to the OS, not yet fsynced) and returns the sequence number to pass to
    /// [`Wal::sync`]. Records of one call are contiguous in the log.
    pub fn log(&self, records: &[(RecordKind, &[u8])]) -> Result<u64> {
        let mut frame = Vec::with_capacity(records.iter().map(|r| r.1.len() + HEADER_LEN).sum());
        for (kind, payload) in records {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&[*kind as u8]);
            crc.update(payload);
            frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            frame.extend_from_slice(&crc.finalize().to_le_bytes());
            frame.push(*kind as u8);
            frame.extend_from_slice(payload);
        }
        let mut w = self.writer.lock();
        if w.size > SEGMENT_MAGIC.len() as u64
            && w.size + frame.len() as u64 > self.opts.segment_size
        {
            self.rotate_locked(&mut w)?;
        }
        let path = self.dir.join(segment_name(w.index));
        w.file.write_all(&frame).map_err(StorageError::io(&path))?;
        w.size += frame.len() as u64;
        self.bytes_written.fetch_add(frame.len() as u64, Ordering::Relaxed);
        Ok(self.written.fetch_add(1, Ordering::AcqRel) + 1)
    }

    fn rotate_locked(&self, w: &mut Writer) -> Result<()> {
        // The finished segment must be durable before anything in the next one is acknowledged.
        let path = self.dir.join(segment_name(w.index));
        if self.opts.fsync {
            w.file.sync_data().map_err(StorageError::io(&path))?;
        }
        let next = w.index + 1;
        let file = Self::create_segment(&self.dir, next)?;
        *self.sync_file.lock() = Arc::new(file.try_clone().map_err(StorageError::io(&path))?);
        *w = Writer { file, index: next, size: SEGMENT_MAGIC.len() as u64 };
        Ok(())
    }

    /// Starts a new segment and returns the index of the last finished one.
    pub fn rotate(&self) -> Result<u64> {
        let mut w = self.writer.lock();
        let finished = w.index;
        self.rotate_locked(&mut w)?;
        Ok(finished)
    }

    /// Makes every record up to `seq` durable. Concurrent callers share one fsync: whoever holds
    /// the sync lock syncs everything written so far, and the others find their records covered.
    pub fn sync(&self, seq: u64) -> Result<()> {
        if !self.opts.fsync || self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let _g = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) >= seq {
            return Ok(());
        }
        let target = self.written.load(Ordering::Acquire);
        let file = self.sync_file.lock().clone();
        let started = std::time::Instant::now();
        file.sync_data().map_err(StorageError::io(&self.dir))?;
        self.fsync_latency.observe(started.elapsed());
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Removes segments with index `<= upto` (their content is in a checkpoint or in blocks).
    pub fn truncate(&self, upto: u64) -> Result<()> {
        for i in list_segments(&self.dir)? {
            if i <= upto {
                let p = self.dir.join(segment_name(i));
                fs::remove_file(&p).map_err(StorageError::io(&p))?;
            }
        }
        Ok(())
    }
}

/// What replay found wrong, reported in the log and a metric; never a refusal to start.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReplayReport {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    /// Corrupt or torn records skipped (the rest of their segment is skipped too).
    pub corruptions: Vec<String>,
}

/// Reads one segment file record by record, calling `f` for each good record. A torn or corrupt
/// record ends the segment: it and what follows in that segment are reported and skipped.
pub fn replay_segment(
    path: &Path,
    report: &mut ReplayReport,
    f: &mut dyn FnMut(Record),
) -> Result<()> {
    let mut file = File::open(path).map_err(StorageError::io(path))?;
    let len = file.metadata().map_err(StorageError::io(path))?.len();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
    let corrupt = |report: &mut ReplayReport, offset: u64, reason: &str| {
        let e = StorageError::WalSegmentCorrupt {
            segment: name.clone(),
            offset,
            reason: reason.into(),
        };
        tracing::warn!(error = %e, "WAL replay skips the rest of a damaged segment");
        report.corruptions.push(e.to_string());
    };
    report.segments += 1;
    let mut magic = [0u8; 8];
    if len < 8 || file.read_exact(&mut magic).is_err() || &magic != SEGMENT_MAGIC {
        if len > 0 {
            corrupt(report, 0, "bad segment header");
        }
        return Ok(());
    }
    // Records are read one at a time: memory is bounded by the largest record.
    let mut offset = 8u64;
    let mut header = [0u8; HEADER_LEN];
    let mut payload = Vec::new();
    while offset < len {
        if file.read_exact(&mut header).is_err() {
            corrupt(report, offset, "torn record header");
            return Ok(());
        }
        let plen = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let kind = header[8];
        if plen > MAX_RECORD || offset + (HEADER_LEN as u64) + plen as u64 > len {
            corrupt(report, offset, "record length runs past the end of the segment");
            return Ok(());
        }
        payload.resize(plen as usize, 0);
        if file.read_exact(&mut payload).is_err() {
            corrupt(report, offset, "torn record payload");
            return Ok(());
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&[kind]);
        h.update(&payload);
        if h.finalize() != crc {
            corrupt(report, offset, "checksum mismatch");
            return Ok(());
        }
        match decode_payload(kind, &payload) {
            Ok(rec) => f(rec),
            Err(reason) => {
                corrupt(report, offset, &reason);
                return Ok(());
            }
        }
        report.records += 1;
        report.bytes += (HEADER_LEN + plen as usize) as u64;
        offset += (HEADER_LEN as u64) + plen as u64;
    }
    Ok(())
}

/// Writes a checkpoint: a segment-format file holding `records`, fsynced, then renamed into
/// place as `checkpoint.<index>`; older checkpoints are removed.
pub fn write_checkpoint(dir: &Path, index: u64, records: &[(RecordKind, Vec<u8>)]) -> Result<()> {
    let tmp = dir.join(format!("checkpoint.{index:08}.tmp"));
    let dst = dir.join(format!("checkpoint.{index:08}"));
    {
        let mut f = File::create(&tmp).map_err(StorageError::io(&tmp))?;
        let mut buf = Vec::from(&SEGMENT_MAGIC[..]);
        for (kind, payload) in records {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&[*kind as u8]);
            crc.update(payload);
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc.finalize().to_le_bytes());
            buf.push(*kind as u8);
            buf.extend_from_slice(payload);
        }
        f.write_all(&buf).map_err(StorageError::io(&tmp))?;
        f.sync_all().map_err(StorageError::io(&tmp))?;
    }
    fs::rename(&tmp, &dst).map_err(StorageError::io(&dst))?;
    sync_dir(dir)?;
    for (i, p) in list_checkpoints(dir)? {
        if i < index {
            fs::remove_file(&p).map_err(StorageError::io(&p))?;
        }
    }
    Ok(())
}

/// Checkpoints present, ascending by index.
pub fn list_checkpoints(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else { return Ok(out) };
    for entry in rd {
        let entry = entry.map_err(StorageError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(i) = name.strip_prefix("checkpoint.").and_then(|s| s.parse::<u64>().ok()) {
            out.push((i, entry.path()));
        } else if name.starts_with("checkpoint.") && name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
    out.sort_by_key(|c| c.0);
    Ok(out)
}

/// Replays the newest checkpoint, then every segment after it, in order.
pub fn replay(dir: &Path, f: &mut dyn FnMut(Record)) -> Result<ReplayReport> {
    let mut report = ReplayReport::default();
    let checkpoint = list_checkpoints(dir)?.pop();
    let after = checkpoint.as_ref().map_or(0, |c| c.0);
    if let Some((_, p)) = &checkpoint {
        replay_segment(p, &mut report, f)?;
    }
    let segments: Vec<u64> = list_segments(dir)?.into_iter().filter(|i| *i > after).collect();
    let total = segments.len();
    for (n, i) in segments.into_iter().enumerate() {
        replay_segment(&dir.join(segment_name(i)), &mut report, f)?;
        if total > 4 && (n + 1) % (total / 4).max(1) == 0 {
            tracing::info!(dir = %dir.display(), done = n + 1, total, "WAL replay progress");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: &str) -> model::Labels {
        model::Labels::from_pairs([("__name__", n), ("job", "j")]).unwrap()
    }

    fn read_all(dir: &Path) -> (Vec<Record>, ReplayReport) {
        let mut recs = Vec::new();
        let rep = replay(dir, &mut |r| recs.push(r)).unwrap();
        (recs, rep)
    }

    #[test]
    fn latency_snapshot_counts_each_bucket_once() {
        let b = LatencyBuckets::default();
        for ms in [1, 1, 3, 5000] {
            b.observe(std::time::Duration::from_millis(ms));
        }
        let (sum, count, buckets) = b.snapshot();
        assert_eq!(count, 4);
        assert!((sum - 5.005).abs() < 1e-9);
        let nonzero: Vec<(f64, u64)> = buckets.into_iter().filter(|b| b.1 > 0).collect();
        assert_eq!(nonzero, vec![(0.0016, 2), (0.0032, 1), (f64::INFINITY, 1)]);
    }

    #[test]
    fn roundtrip_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions { fsync: true, segment_size: 600 }).unwrap();
        let l = labels("up");
        let s = encode_series([(1u32, &l)].into_iter()).unwrap();
        let seq = wal.log(&[(RecordKind::Series, &s)]).unwrap();
        wal.sync(seq).unwrap();
        for i in 0..10 {
            let p = encode_samples(vec![1], vec![i], vec![model::stale_nan()]).unwrap();
            let seq = wal.log(&[(RecordKind::Samples, &p)]).unwrap();
            wal.sync(seq).unwrap();
        }
        assert!(list_segments(dir.path()).unwrap().len() > 2, "segments rotate");
        let (recs, rep) = read_all(dir.path());
        assert!(rep.corruptions.is_empty());
        assert_eq!(recs.len(), 11);
        assert_eq!(
            recs[0],
            Record::Series(vec![(
                1,
                vec![("__name__".into(), "up".into()), ("job".into(), "j".into())]
            )])
        );
        match &recs[10] {
            Record::Samples(s) => {
                assert_eq!(s[0].1, 9);
                assert!(model::is_stale_nan(s[0].2), "staleness marker survives bit for bit");
            }
            r => panic!("unexpected {r:?}"),
        }
    }

    #[test]
    fn torn_tail_loses_only_the_broken_record() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        for i in 0..5 {
            let p = encode_samples(vec![1, 2], vec![i, i], vec![1.0, 2.0]).unwrap();
            wal.sync(wal.log(&[(RecordKind::Samples, &p)]).unwrap()).unwrap();
        }
        drop(wal);
        let seg = dir.path().join(segment_name(1));
        let full = fs::read(&seg).unwrap();
        let (_, rep) = read_all(dir.path());
        let per = (full.len() - 8) / 5;
        assert_eq!(rep.records, 5);
        for cut in [full.len() - 1, full.len() - per / 2, 8 + per + 3] {
            fs::write(&seg, &full[..cut]).unwrap();
            let (recs, rep) = read_all(dir.path());
            assert_eq!(recs.len(), (cut - 8) / per, "cut at {cut}");
            assert_eq!(rep.corruptions.len(), 1);
        }
        // A flipped byte inside the 3rd record: records 1 and 2 survive.
        let mut bad = full.clone();
        bad[8 + 2 * per + 20] ^= 0x55;
        fs::write(&seg, &bad).unwrap();
        let (recs, rep) = read_all(dir.path());
        assert_eq!(recs.len(), 2);
        assert!(rep.corruptions[0].contains("checksum"), "{:?}", rep.corruptions);
    }

    #[test]
    fn histograms_record_roundtrips_and_rejects_bad_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let h1 = model::FloatHistogram {
            schema: -53,
            count: 3.0,
            sum: 1.5,
            positive_spans: vec![model::Span { offset: 0, length: 2 }],
            positive_buckets: vec![1.0, 2.0],
            custom_values: vec![0.5],
            counter_reset_hint: 2,
            ..Default::default()
        };
        let h2 = model::FloatHistogram { count: 7.0, ..h1.clone() };
        let p = encode_histograms(vec![4, 5], vec![10, 20], &[&h1, &h2]).unwrap();
        wal.sync(wal.log(&[(RecordKind::Histograms, &p)]).unwrap()).unwrap();
        let (recs, rep) = read_all(dir.path());
        assert!(rep.corruptions.is_empty());
        assert_eq!(recs, vec![Record::Histograms(vec![(4, 10, h1.clone()), (5, 20, h2)])]);
        // A well-framed record whose histogram bytes are damaged is corruption, not a panic.
        let bad = {
            let cols: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from(vec![1])),
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(BinaryArray::from_iter_values([[1u8, 0, 0].as_slice()])),
            ];
            ipc_bytes(&RecordBatch::try_new(histograms_schema(), cols).unwrap()).unwrap()
        };
        assert!(decode_payload(3, &bad).unwrap_err().contains("truncated"));
    }

    #[test]
    fn metadata_and_exemplar_records_decode_and_reject_wrong_shapes() {
        let m = model::MetricMetadata {
            metric_family: "up".into(),
            kind: model::MetricType::Gauge,
            help: "Up.".into(),
            unit: String::new(),
        };
        let p = crate::metadata::encode_metadata(std::slice::from_ref(&m)).unwrap();
        assert_eq!(decode_payload(4, &p).unwrap(), Record::Metadata(vec![m]));
        let l = labels("up");
        let e = model::Exemplar { labels: model::Labels::empty(), t: 3, v: 1.0 };
        let p = crate::exemplars::encode_exemplars([(&l, &e)]).unwrap();
        assert_eq!(decode_payload(5, &p).unwrap(), Record::Exemplars(vec![(l, e)]));
        // A well-framed record of the wrong shape is corruption, never a panic.
        let samples = encode_samples(vec![1], vec![1], vec![1.0]).unwrap();
        for kind in [4, 5] {
            assert!(decode_payload(kind, &samples).is_err(), "kind {kind}");
            assert!(decode_payload(kind, &samples[..samples.len() / 2]).is_err(), "kind {kind}");
        }
        assert!(decode_payload(5, &p[..p.len() - 9]).is_err());
    }

    #[test]
    fn checkpoint_then_newer_segments() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let p = encode_samples(vec![1], vec![1], vec![1.0]).unwrap();
        wal.sync(wal.log(&[(RecordKind::Samples, &p)]).unwrap()).unwrap();
        let done = wal.rotate().unwrap();
        let cp = encode_samples(vec![7], vec![7], vec![7.0]).unwrap();
        write_checkpoint(dir.path(), done, &[(RecordKind::Samples, cp)]).unwrap();
        wal.truncate(done).unwrap();
        let p = encode_samples(vec![2], vec![2], vec![2.0]).unwrap();
        wal.sync(wal.log(&[(RecordKind::Samples, &p)]).unwrap()).unwrap();
        let (recs, _) = read_all(dir.path());
        assert_eq!(
            recs,
            vec![Record::Samples(vec![(7, 7, 7.0)]), Record::Samples(vec![(2, 2, 2.0)])]
        );
    }
}

/// Upper bounds (seconds) of [`LatencyBuckets`]: 100 µs doubling to about 3.3 s.
pub const LATENCY_BOUNDS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

/// A latency histogram of plain atomics (bucket counts over [`LATENCY_BOUNDS`], then +Inf),
/// read by the server at scrape.
#[derive(Default)]
pub struct LatencyBuckets {
    counts: [AtomicU64; 17],
    sum_nanos: AtomicU64,
}

impl LatencyBuckets {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS.iter().position(|b| secs <= *b).unwrap_or(LATENCY_BOUNDS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// (sum in seconds, count, count of each bucket by upper bound, +Inf last). The bucket
    /// counts are *not* cumulative: `prometheus_client`'s `encode_histogram` cumulates them.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let mut buckets = Vec::with_capacity(17);
        for (i, c) in self.counts.iter().enumerate() {
            let c = c.load(Ordering::Relaxed);
            count += c;
            buckets.push((LATENCY_BOUNDS.get(i).copied().unwrap_or(f64::INFINITY), c));
        }
        (self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9, count, buckets)
    }
}
