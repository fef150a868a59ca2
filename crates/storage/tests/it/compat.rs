//! Files written by format version 1 (checked in under tests/data/v1) must keep opening.
//! Regenerate only when adding a new version: `cargo test -p storage --test it -- --ignored write_v1_fixture`.

use model::{Appendable, Matcher};
use storage::Db;

use crate::{batch, dump, opts, tenant, value};

fn fixture() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
#[ignore = "writes the checked-in fixture"]
fn write_v1_fixture() {
    let dir = fixture();
    let _ = std::fs::remove_dir_all(&dir);
    let db = Db::open(opts(&dir)).unwrap();
    for i in 0..20 {
        db.append(&tenant(), batch(4, i * 15_000)).unwrap();
    }
    db.flush(None).unwrap();
    for i in 20..30 {
        db.append(&tenant(), batch(4, i * 15_000)).unwrap();
    }
}

#[test]
fn v1_wal_and_block_still_open() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let db = Db::open(opts(dir.path())).unwrap();
    let t = db.tenant(&tenant()).unwrap();
    assert_eq!(t.blocks().len(), 1, "one block in the fixture");
    let all = dump(&db, &[Matcher::eq("job", "node")]);
    assert_eq!(all.len(), 4);
    for (i, (_, samples)) in all.iter().enumerate() {
        let want: Vec<(i64, f64)> =
            (0..30).map(|k| (k * 15_000, value(i as u32, k * 15_000))).collect();
        assert_eq!(samples, &want);
    }
}
