//! Acknowledged data survives restarts, SIGKILL and torn WAL tails.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use model::{Appendable, Matcher};
use storage::Db;

use crate::{batch, dump, opts, tenant, value};

#[test]
fn reopen_replays_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        for i in 0..50 {
            let out = db.append(&tenant(), batch(20, i * 15_000)).unwrap();
            assert_eq!(out.samples_written, 20);
        }
    }
    let db = Db::open(opts(dir.path())).unwrap();
    let all = dump(&db, &[Matcher::eq("job", "node")]);
    assert_eq!(all.len(), 20);
    assert!(all.iter().all(|(_, s)| s.len() == 50));
    assert_eq!(all[0].1[49], (49 * 15_000, value(0, 49 * 15_000)));
}

/// Run by `crash_loop` in a child process: appends until killed, printing each acknowledged t.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("PROMLAKE_CRASH_DIR") else { return };
    let db = Db::open(opts(std::path::Path::new(&dir))).unwrap();
    let start: i64 = std::env::var("PROMLAKE_CRASH_START").unwrap().parse().unwrap();
    let mut out = std::io::stdout();
    for i in 0.. {
        let t = start + i * 1000;
        db.append(&tenant(), batch(50, t)).unwrap();
        use std::io::Write;
        writeln!(out, "ACK {t}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn crash_loop_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut acked: Vec<i64> = Vec::new();
    let mut iteration = 0u64;
    let mut start = 1_000_000i64;
    while Instant::now() < deadline && iteration < 12 {
        iteration += 1;
        let mut child = Command::new(&exe)
            .args(["--exact", "durability::crash_child", "--nocapture", "--test-threads=1"])
            .env("PROMLAKE_CRASH_DIR", dir.path())
            .env("PROMLAKE_CRASH_START", start.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Kill after a pseudo-random number of acknowledgements (varies per iteration).
        let kill_after = 5 + (iteration * 7919 % 60) as usize;
        let mut n = 0;
        let mut last = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(t) = line.strip_prefix("ACK ") {
                let t: i64 = t.parse().unwrap();
                acked.push(t);
                last = Some(t);
                n += 1;
                if n >= kill_after {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        start = last.unwrap_or(start) + 1_000_000;
    }
    assert!(iteration >= 3, "ran {iteration} iterations");
    let db = Db::open(opts(dir.path())).unwrap();
    let all = dump(&db, &[Matcher::eq("instance", "host-7")]);
    assert_eq!(all.len(), 1);
    let have: std::collections::HashMap<i64, f64> = all[0].1.iter().copied().collect();
    for t in &acked {
        assert_eq!(have.get(t), Some(&value(7, *t)), "acknowledged sample at {t} lost");
    }
}

#[test]
fn torn_wal_tail_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(opts(dir.path())).unwrap();
        for i in 0..10 {
            db.append(&tenant(), batch(5, i * 1000)).unwrap();
        }
    }
    let wal_dir = dir.path().join("wal").join("acme");
    let seg = std::fs::read_dir(&wal_dir).unwrap().flatten().map(|e| e.path()).max().unwrap();
    let full = std::fs::read(&seg).unwrap();
    for (k, cut) in [full.len() - 3, full.len() - 200, full.len() / 2].into_iter().enumerate() {
        let copy = tempfile::tempdir().unwrap();
        let cw = copy.path().join("wal").join("acme");
        std::fs::create_dir_all(&cw).unwrap();
        std::fs::write(cw.join(seg.file_name().unwrap()), &full[..cut]).unwrap();
        let db = Db::open(opts(copy.path())).unwrap();
        let all = dump(&db, &[Matcher::eq("instance", "host-0")]);
        let n = all.first().map_or(0, |s| s.1.len());
        assert!((4..10).contains(&n), "case {k}: {n} samples survive a tear at {cut}");
        // Samples that survive are a prefix: nothing after the tear is invented.
        let ts: Vec<i64> = all[0].1.iter().map(|s| s.0).collect();
        assert_eq!(ts, (0..n as i64).map(|i| i * 1000).collect::<Vec<_>>());
        // The db accepts new writes after a torn tail.
        db.append(&tenant(), batch(5, 100_000)).unwrap();
    }
}
