//! Closed head chunks live in append-only files instead of the heap, as Prometheus' head
//! chunks do: only the open chunk of each series stays in memory. The files are a cache, not a
//! durability mechanism (the WAL is): they are deleted at start-up and rebuilt by WAL replay,
//! and a file is deleted once every chunk in it has been cut into a block.
//!
//! Layout: `<data_dir>/head_chunks/<tenant>/<file id, 8 digits>`; a chunk is the XOR bytes at
//! an offset (no framing: the head keeps offset and length).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
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
    file: Arc<File>,
    size: u64,
}

pub struct ChunkDisk {
    dir: PathBuf,
    writer: Mutex<Writer>,
    files: RwLock<HashMap<u32, Arc<File>>>,
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
        let file = Arc::new(Self::create(dir, 1)?);
        let mut files = HashMap::new();
        files.insert(1, file.clone());
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
        let file = Arc::new(Self::create(&self.dir, id)?);
        self.files.write().insert(id, file.clone());
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
        (&*w.file).write_all(bytes).map_err(StorageError::io(&p))?;
        w.size += bytes.len() as u64;
        let mut m = self.max_t.lock();
        let e = m.entry(w.id).or_insert(i64::MIN);
        *e = (*e).max(max_t);
        Ok(ChunkRef { file: w.id, offset: offset32, len })
    }

    pub fn read(&self, r: ChunkRef, buf: &mut Vec<u8>) -> Result<()> {
        let file = self.files.read().get(&r.file).cloned();
        let p = Self::path(&self.dir, r.file);
        let file = file.ok_or_else(|| StorageError::Io {
            path: p.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "head chunk file already released",
            ),
        })?;
        buf.resize(r.len as usize, 0);
        file.read_exact_at(buf, u64::from(r.offset)).map_err(StorageError::io(&p))
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
}
