//! Reading a series' samples out of the head: closed chunks are read one by one from the head
//! chunk file (through its map), so the number of chunks per series (set by the chunk cutting rule:
//! `chunk::CHUNK_SAMPLES` and `chunk::CHUNK_BYTES`) is a cost of every query over recent data.
//! Two reads per series: the whole 2 h a series holds (a range query) and its last 5 minutes
//! (an instant query's window).
//!
//! `cargo bench -p storage --bench head`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use model::{Labels, Sample};
use storage::chunk_disk::ChunkDisk;
use storage::head::{Head, HeadOptions, MemSeries};

const SERIES: usize = 1_000;
const SAMPLES: i64 = 480;
const START: i64 = 1_699_999_200_000; // a multiple of 2 h

/// Node-exporter-like series (as `benches/chunk.rs`): CPU-seconds counters with two decimals
/// and page-multiple memory gauges, 15 s apart with a few ms of jitter.
fn head(dir: &std::path::Path) -> (Head, Vec<Arc<MemSeries>>) {
    let disk = Arc::new(ChunkDisk::open(&dir.join("hc")).unwrap());
    let h =
        Head::with_disk(HeadOptions { chunk_range: 7_200_000, ooo_window: 86_400_000 }, Some(disk));
    let mut all = Vec::new();
    for s in 0..SERIES {
        let l = Labels::from_pairs([("__name__", "x"), ("i", &s.to_string())]).unwrap();
        let series = h.create(&l, None);
        let (mut c, mut g) = (12_345.67 + s as f64, 8_000_000_000f64);
        let pts: Vec<Sample> = (0..SAMPLES)
            .map(|i| {
                let t = START + i * 15_000 + (i * 7919 + s as i64) % 7 - 3;
                c = ((c + 0.37 + (i % 5) as f64 * 0.11) * 100.0).round() / 100.0;
                g += ((i * 31 + s as i64) % 17 - 8) as f64 * 4096.0;
                Sample { t, v: if s % 2 == 0 { c } else { g } }
            })
            .collect();
        assert_eq!(h.append_series(&series, &pts, false, |_, _| {}).0, SAMPLES as usize);
        all.push(series);
    }
    (h, all)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (h, series) = head(dir.path());
    let disk = h.chunk_disk().map(Arc::as_ref);
    let end = START + SAMPLES * 15_000;
    eprintln!("{} chunks for {SERIES} series", h.num_chunks());
    let mut out = Vec::with_capacity(SAMPLES as usize);
    for (name, mint) in [("all_2h", START), ("last_5m", end - 300_000)] {
        c.bench_function(&format!("head_samples/{SERIES}_series/{name}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for s in &series {
                    out.clear();
                    s.data.lock().samples(disk, mint, end, &mut out);
                    n += out.len();
                }
                black_box(n)
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
