//! Deletions: per-tenant tombstones (`<data_dir>/wal/<tenant>/tombstones`), each a set of
//! matchers and an inclusive time range. Byte layout: docs/format/tombstones.md.
//!
//! A tombstone hides the samples it covers on every read (head, data being cut, blocks), and
//! the samples it covers are left out whenever data is rewritten (head cut into a block,
//! compaction, which also rewrites the blocks that held covered data when the tombstone was
//! written). It is dropped once those blocks are gone and the head holds nothing in its range
//! (so nothing it hides can come back: the WAL only replays what the head held). Its end is
//! clamped at deletion to the tenant's newest sample, so data written later, after that
//! time, is not hidden; a late (out-of-order) sample written into a deleted range before the
//! tombstone is dropped is hidden like the deleted data.
//!
//! Durability: the file is rewritten whole (temporary file, fsync, rename, directory fsync)
//! before a deletion is acknowledged.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use model::{Labels, MatchOp, Matcher, Sample};
use parking_lot::{Mutex, RwLock};

use crate::error::{Result, StorageError};
use model::HistogramSample;

const MAGIC: &[u8; 4] = b"PLTS";
const VERSION: u8 = 1;
/// Most tombstones one tenant may hold; a deletion beyond it is refused.
pub const MAX_TOMBSTONES: usize = 10_000;

#[derive(Clone, Debug, PartialEq)]
pub struct Tombstone {
    pub matchers: Vec<Matcher>,
    /// Inclusive.
    pub min_t: i64,
    /// Inclusive.
    pub max_t: i64,
    /// Blocks that held covered data when the tombstone was written; compaction rewrites
    /// them without it. Blocks written later left covered data out already.
    pub pending_blocks: Vec<String>,
}

impl Tombstone {
    pub fn covers_series(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
    }
}

/// A tenant's tombstones: a snapshot for readers, a file for restarts.
pub struct Tombstones {
    path: PathBuf,
    list: RwLock<Arc<Vec<Tombstone>>>,
    write: Mutex<()>,
}

/// The ranges that hide samples of one series, sorted; empty when none applies.
#[derive(Clone, Debug, Default)]
pub struct Hidden(Vec<(i64, i64)>);

impl Hidden {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn hides(&self, t: i64) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= t && t <= hi)
    }

    pub fn filter_samples(&self, s: &mut Vec<Sample>) {
        if !self.is_empty() {
            s.retain(|x| !self.hides(x.t));
        }
    }

    pub fn filter_histograms(&self, h: &mut Vec<HistogramSample>) {
        if !self.is_empty() {
            h.retain(|x| !self.hides(x.t));
        }
    }
}

impl Tombstones {
    /// Loads the tenant's tombstones (none if the file does not exist).
    pub fn open(dir: &Path) -> Result<Tombstones> {
        let path = dir.join("tombstones");
        let list = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes)
                .map_err(|reason| StorageError::TombstonesCorrupt { path: path.clone(), reason })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StorageError::Io { path, source: e }),
        };
        Ok(Tombstones { path, list: RwLock::new(Arc::new(list)), write: Mutex::new(()) })
    }

    pub fn list(&self) -> Arc<Vec<Tombstone>> {
        self.list.read().clone()
    }

    pub fn len(&self) -> usize {
        self.list.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ranges hiding samples of the series `labels`.
    pub fn hidden(&self, labels: &Labels) -> Hidden {
        hidden_in(&self.list(), labels)
    }

    /// Adds a tombstone and makes it durable.
    pub fn add(&self, t: Tombstone) -> Result<()> {
        let _w = self.write.lock();
        let mut next = (*self.list()).clone();
        if next.len() >= MAX_TOMBSTONES {
            return Err(StorageError::TooManyTombstones { limit: MAX_TOMBSTONES });
        }
        next.push(t);
        self.persist(&next)?;
        *self.list.write() = Arc::new(next);
        Ok(())
    }

    /// Drops the tombstones for which `keep` is false (persisted first).
    pub fn retain(&self, keep: impl Fn(&Tombstone) -> bool) -> Result<usize> {
        let _w = self.write.lock();
        let cur = self.list();
        let next: Vec<Tombstone> = cur.iter().filter(|t| keep(t)).cloned().collect();
        let dropped = cur.len() - next.len();
        if dropped > 0 {
            self.persist(&next)?;
            *self.list.write() = Arc::new(next);
        }
        Ok(dropped)
    }

    /// Copies the current file (if any) to `dst` (for snapshots).
    pub fn copy_to(&self, dst: &Path) -> Result<()> {
        let _w = self.write.lock();
        if self.is_empty() {
            return Ok(());
        }
        std::fs::copy(&self.path, dst).map_err(StorageError::io(dst))?;
        Ok(())
    }

    fn persist(&self, list: &[Tombstone]) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        if list.is_empty() {
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::Io { path: self.path.clone(), source: e }),
            }
        } else {
            let tmp = self.path.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp).map_err(StorageError::io(&tmp))?;
            f.write_all(&encode(list)).map_err(StorageError::io(&tmp))?;
            f.sync_all().map_err(StorageError::io(&tmp))?;
            std::fs::rename(&tmp, &self.path).map_err(StorageError::io(&self.path))?;
        }
        if let Ok(d) = std::fs::File::open(dir) {
            d.sync_all().map_err(StorageError::io(dir))?;
        }
        Ok(())
    }
}

pub fn hidden_in(list: &[Tombstone], labels: &Labels) -> Hidden {
    let mut v: Vec<(i64, i64)> =
        list.iter().filter(|t| t.covers_series(labels)).map(|t| (t.min_t, t.max_t)).collect();
    v.sort_unstable();
    Hidden(v)
}

fn op_code(op: MatchOp) -> u8 {
    match op {
        MatchOp::Equal => 0,
        MatchOp::NotEqual => 1,
        MatchOp::RegexMatch => 2,
        MatchOp::RegexNoMatch => 3,
    }
}

pub fn encode(list: &[Tombstone]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(MAGIC);
    b.push(VERSION);
    b.extend_from_slice(&(list.len() as u32).to_le_bytes());
    for t in list {
        b.extend_from_slice(&t.min_t.to_le_bytes());
        b.extend_from_slice(&t.max_t.to_le_bytes());
        b.extend_from_slice(&(t.matchers.len() as u32).to_le_bytes());
        for m in &t.matchers {
            b.push(op_code(m.op));
            for s in [&m.name, &m.value] {
                b.extend_from_slice(&(s.len() as u32).to_le_bytes());
                b.extend_from_slice(s.as_bytes());
            }
        }
        b.extend_from_slice(&(t.pending_blocks.len() as u32).to_le_bytes());
        for u in &t.pending_blocks {
            b.extend_from_slice(&(u.len() as u32).to_le_bytes());
            b.extend_from_slice(u.as_bytes());
        }
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

pub fn decode(bytes: &[u8]) -> std::result::Result<Vec<Tombstone>, String> {
    if bytes.len() < 13 || &bytes[..4] != MAGIC {
        return Err("missing PLTS header".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err("checksum mismatch".into());
    }
    if body[4] != VERSION {
        return Err(format!("unknown version {}", body[4]));
    }
    let mut r = Reader { b: body, at: 5 };
    let n = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let min_t = r.i64()?;
        let max_t = r.i64()?;
        let nm = r.u32()?;
        let mut matchers = Vec::new();
        for _ in 0..nm {
            let op = match r.take(1)?[0] {
                0 => MatchOp::Equal,
                1 => MatchOp::NotEqual,
                2 => MatchOp::RegexMatch,
                3 => MatchOp::RegexNoMatch,
                x => return Err(format!("unknown matcher op {x}")),
            };
            let name = r.string()?;
            let value = r.string()?;
            matchers.push(Matcher::new(op, &name, &value).map_err(|e| e.to_string())?);
        }
        let nb = r.u32()?;
        let mut pending_blocks = Vec::new();
        for _ in 0..nb {
            pending_blocks.push(r.string()?);
        }
        out.push(Tombstone { matchers, min_t, max_t, pending_blocks });
    }
    if r.at != body.len() {
        return Err(format!("{} trailing bytes", body.len() - r.at));
    }
    Ok(out)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| format!("truncated at byte {}", self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_le_bytes(a))
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| "matcher is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(list: Vec<Tombstone>) {
        let bytes = encode(&list);
        // The layout of docs/format/tombstones.md: magic, version, count, ..., CRC.
        assert_eq!(&bytes[..5], b"PLTS\x01");
        assert_eq!(decode(&bytes).unwrap(), list);
        // Every truncation and every flipped byte is an error, never a panic.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
            let mut b = bytes.clone();
            b[n] ^= 0x41;
            assert!(decode(&b).is_err(), "byte {n} flipped");
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        check(vec![]);
        check(vec![Tombstone {
            matchers: vec![
                Matcher::eq("__name__", "up"),
                Matcher::new(MatchOp::RegexMatch, "job", "a|b.*").unwrap(),
                Matcher::new(MatchOp::NotEqual, "i", "é\n").unwrap(),
            ],
            min_t: i64::MIN,
            max_t: 42,
            pending_blocks: vec!["01ABC".into(), "01ABD".into()],
        }]);
    }

    #[test]
    fn hidden_ranges_filter_samples() {
        let l = Labels::from_pairs([("__name__", "up".to_string())]).unwrap();
        let list = vec![
            Tombstone {
                matchers: vec![Matcher::eq("__name__", "up")],
                min_t: 10,
                max_t: 20,
                pending_blocks: vec![],
            },
            Tombstone {
                matchers: vec![Matcher::eq("__name__", "down")],
                min_t: 0,
                max_t: 100,
                pending_blocks: vec![],
            },
        ];
        let h = hidden_in(&list, &l);
        let mut s: Vec<Sample> = (0..30).step_by(5).map(|t| Sample { t, v: 1.0 }).collect();
        h.filter_samples(&mut s);
        assert_eq!(s.iter().map(|x| x.t).collect::<Vec<_>>(), vec![0, 5, 25]);
    }
}
