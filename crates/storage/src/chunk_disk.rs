//! Closed head chunks live in append-only files instead of the heap, as Prometheus' head
//! chunks do: only the open chunk of each series stays in memory. The files are a cache, not a
//! durability mechanism (the WAL is): they are deleted at start-up and rebuilt by WAL replay,
//! and a file is deleted once every chunk in it has been cut into a block.
//!
//! Layout: `<data_dir>/head_chunks/<tenant>/<file id, 8 digits>`; a chunk is the XOR bytes at
//! an offset (no framing: the head keeps offset and length).
//!
//! Chunks are written with `pwrite` and read through a read-only shared map of each file (as
//! Prometheus maps its head chunk files): a query reading thousands of chunks makes no system
//! call and no copy per chunk, and the bytes it reads are the kernel's page cache, not a copy
//! in the process. See [`map_file`] for why the one `unsafe` call this takes is sound.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Result, StorageError};

/// Where a chunk's bytes are. Twelve bytes: every closed head chunk holds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub file: u32,
    /// Below `FILE_SIZE` (a file is rotated before a write would cross it), so 32 bits.
    pub offset: u32,
    pub len: u32,
}

const FILE_SIZE: u64 = 128 << 20;
const _: () = assert!(FILE_SIZE <= u32::MAX as u64);

struct Writer {
    id: u32,
    file: File,
    size: u64,
}

/// Maps `FILE_SIZE` bytes of a head chunk file, read-only and shared: what `write` appends
/// later is visible through the map (one page cache).
fn map_file(file: &File, path: &Path) -> Result<memmap2::Mmap> {
    #[allow(unsafe_code)]
    // SAFETY: a map is unsound if the file is modified or truncated by someone else while it
    // is read. A head chunk file is created (truncated) by this process in its own data
    // directory, only ever grows, by `ChunkDisk::write` at offsets past everything written
    // before, and is unlinked, never truncated, when released (a map of an unlinked file stays
    // valid). Bytes are read only at the `ChunkRef`s `write` returned, after the write
    // succeeded, so never past the end of the file (which would raise SIGBUS), and the map is
    // read-only. Other programs changing files in a running server's data directory are
    // outside the contract, as for Prometheus' own mapped head chunks.
    let map = unsafe { memmap2::MmapOptions::new().len(FILE_SIZE as usize).map(file) };
    map.map_err(StorageError::io(path))
}

pub struct ChunkDisk {
    dir: PathBuf,
    writer: Mutex<Writer>,
    files: RwLock<HashMap<u32, Arc<memmap2::Mmap>>>,
    /// Newest chunk end time per file, to know when a file holds only cut data.
    max_t: Mutex<HashMap<u32, i64>>,
}

impl ChunkDisk {
    /// Starts empty: leftovers of an earlier run are deleted (replay rebuilds the head).
    pub fn open(dir: &Path) -> Result<ChunkDisk> {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(StorageError::io(dir))?;
        }
        fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        let file = Self::create(dir, 1)?;
        let mut files = HashMap::new();
        files.insert(1, Arc::new(map_file(&file, &Self::path(dir, 1))?));
        Ok(ChunkDisk {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer { id: 1, file, size: 0 }),
            files: RwLock::new(files),
            max_t: Mutex::new(HashMap::new()),
        })
    }

    fn path(dir: &Path, id: u32) -> PathBuf {
        dir.join(format!("{id:08}"))
    }

    fn create(dir: &Path, id: u32) -> Result<File> {
        let p = Self::path(dir, id);
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&p)
            .map_err(StorageError::io(&p))
    }

    fn rotate_locked(&self, w: &mut Writer) -> Result<u32> {
        let id = w.id + 1;
        let file = Self::create(&self.dir, id)?;
        let map = map_file(&file, &Self::path(&self.dir, id))?;
        self.files.write().insert(id, Arc::new(map));
        *w = Writer { id, file, size: 0 };
        Ok(id)
    }

    /// Starts a new file; returns its id. Chunks written before belong to older files.
    pub fn rotate(&self) -> Result<u32> {
        let mut w = self.writer.lock();
        self.rotate_locked(&mut w)
    }

    pub fn write(&self, bytes: &[u8], max_t: i64) -> Result<ChunkRef> {
        let mut w = self.writer.lock();
        if w.size + bytes.len() as u64 > FILE_SIZE {
            self.rotate_locked(&mut w)?;
        }
        let offset = w.size;
        // A chunk larger than a whole file cannot happen (at most 120 samples); refuse rather
        // than wrap the 32-bit offset.
        let (Ok(offset32), Ok(len)) = (u32::try_from(offset), u32::try_from(bytes.len())) else {
            return Err(StorageError::Io {
                path: Self::path(&self.dir, w.id),
                source: std::io::Error::other("head chunk does not fit a head chunk file"),
            });
        };
        let p = Self::path(&self.dir, w.id);
        // At our own offset, not the file's cursor: after a failed (partial) write the next
        // chunk overwrites what it left, and offsets stay exact.
        w.file.write_all_at(bytes, offset).map_err(StorageError::io(&p))?;
        w.size += bytes.len() as u64;
        let mut m = self.max_t.lock();
        let e = m.entry(w.id).or_insert(i64::MIN);
        *e = (*e).max(max_t);
        Ok(ChunkRef { file: w.id, offset: offset32, len })
    }

    /// Hands the chunk's bytes, read in place through the file's map, to `f`.
    pub fn with_chunk<R>(&self, r: ChunkRef, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        let files = self.files.read();
        let missing = |why: &str| StorageError::Io {
            path: Self::path(&self.dir, r.file),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, why.to_string()),
        };
        let map = files.get(&r.file).ok_or_else(|| missing("head chunk file already released"))?;
        let (start, end) = (r.offset as usize, r.offset as usize + r.len as usize);
        let bytes = map.get(start..end).ok_or_else(|| missing("head chunk past its file's map"))?;
        Ok(f(bytes))
    }

    /// Copies the chunk's bytes into `buf`.
    pub fn read(&self, r: ChunkRef, buf: &mut Vec<u8>) -> Result<()> {
        self.with_chunk(r, |b| {
            buf.clear();
            buf.extend_from_slice(b);
        })
    }

    /// Deletes files older than `before` whose chunks all end before `upto` (they were cut
    /// into blocks). Returns how many were deleted.
    pub fn release(&self, before: u32, upto: i64) -> usize {
        let doomed: Vec<u32> = {
            let m = self.max_t.lock();
            let files = self.files.read();
            files
                .keys()
                .copied()
                .filter(|id| *id < before && m.get(id).is_none_or(|t| *t < upto))
                .collect()
        };
        for id in &doomed {
            self.files.write().remove(id);
            self.max_t.lock().remove(id);
            let _ = fs::remove_file(Self::path(&self.dir, *id));
        }
        doomed.len()
    }

    pub fn files(&self) -> usize {
        self.files.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_release() {
        let dir = tempfile::tempdir().unwrap();
        let d = ChunkDisk::open(&dir.path().join("hc")).unwrap();
        let a = d.write(b"hello", 10).unwrap();
        let b = d.write(b"world!", 20).unwrap();
        let mut buf = Vec::new();
        d.read(b, &mut buf).unwrap();
        assert_eq!(buf, b"world!");
        let sealed = d.rotate().unwrap();
        let c = d.write(b"new", 5).unwrap();
        assert_eq!(d.release(sealed, 15), 0, "file 1 still has a chunk ending at 20");
        assert_eq!(d.release(sealed, 21), 1);
        assert!(d.read(a, &mut buf).is_err(), "released data is gone, reported as an error");
        d.read(c, &mut buf).unwrap();
        assert_eq!(buf, b"new", "the newer file survives even though its chunk ends before upto");
    }

    /// Every chunk reads back through the map exactly as written: across page boundaries,
    /// in files mapped before they grew, and after rotations.
    #[test]
    fn mapped_reads_see_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let d = ChunkDisk::open(&dir.path().join("hc")).unwrap();
        let chunk =
            |i: usize| -> Vec<u8> { (0..1 + i * 37 % 300).map(|j| (i * 7 + j) as u8).collect() };
        let mut refs = Vec::new();
        for i in 0..5_000 {
            if i % 1_700 == 1_699 {
                d.rotate().unwrap();
            }
            refs.push(d.write(&chunk(i), i as i64).unwrap());
            // A read right after the write, in a file whose map predates it.
            assert_eq!(d.with_chunk(refs[i], <[u8]>::to_vec).unwrap(), chunk(i), "chunk {i}");
        }
        assert_eq!(d.files(), 3);
        for (i, r) in refs.iter().enumerate() {
            assert_eq!(d.with_chunk(*r, <[u8]>::to_vec).unwrap(), chunk(i), "chunk {i}");
        }
        let past = ChunkRef { file: 1, offset: (FILE_SIZE - 2) as u32, len: 4 };
        assert!(d.with_chunk(past, |_| ()).is_err(), "a ref past the map is an error, not a fault");
    }
}
