//! Replays the checked-in inputs of `tests/corpus/`. A file named `<decoder>-ok-*` must decode
//! with that decoder, `<decoder>-err-*` must be refused by it; every file goes through every
//! decoder too, which must not panic. Decoders: v1, v2, prom, om, snappy.
//! `cargo test -p wire --test it -- --ignored regenerate_corpus` rewrites the seeded files.

use std::path::{Path, PathBuf};

use model::Interner;
use wire::{DecodeLimits, TextFormat, TextOptions, decode_write_v1, decode_write_v2, parse_text};

use crate::{fuzz::run_all, samples};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn decode(decoder: &str, bytes: &[u8]) -> Result<(), String> {
    let i = Interner::new();
    let l = DecodeLimits::default();
    let text = |format| {
        let opts = TextOptions::new(format, 0);
        parse_text(bytes, &opts, &i).map(drop)
    };
    match decoder {
        "v1" => decode_write_v1(bytes, &i, &l).map(drop),
        "v2" => decode_write_v2(bytes, &i, &l).map(drop),
        "prom" => text(TextFormat::Prometheus),
        "om" => text(TextFormat::OpenMetrics),
        "snappy" => wire::snappy::decompress_capped(bytes, 1 << 20).map(drop),
        other => panic!("unknown decoder {other:?} in corpus file name"),
    }
    .map_err(|e| e.to_string())
}

#[test]
fn replay_corpus() {
    let mut n = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let mut parts = name.splitn(3, '-');
        let (decoder, outcome) = (parts.next().unwrap(), parts.next().unwrap_or(""));
        let got = decode(decoder, &bytes);
        match outcome {
            "ok" => assert!(got.is_ok(), "{name}: {got:?}"),
            "err" => assert!(got.is_err(), "{name} decoded but should not"),
            other => panic!("{name}: outcome {other:?} is neither ok nor err"),
        }
        run_all(&bytes);
        n += 1;
    }
    assert!(n >= 10, "corpus has only {n} files");
}

#[test]
#[ignore = "rewrites tests/corpus; run by hand after changing the samples"]
fn regenerate_corpus() {
    let v1 = samples::v1_request();
    let v2 = samples::v2_request();
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("v1-ok-sample.bin", v1.clone()),
        ("v1-err-truncated.bin", v1[..v1.len() - 3].to_vec()),
        ("v1-err-group-unclosed.bin", vec![0x0b, 0x10, 0x05]),
        ("v1-ok-empty.bin", vec![]),
        ("v2-ok-sample.bin", v2.clone()),
        ("v2-err-is-v1.bin", v1.clone()),
        ("v2-err-truncated.bin", v2[..v2.len() / 2].to_vec()),
        ("prom-ok-sample.txt", samples::PROM_TEXT.as_bytes().to_vec()),
        ("prom-err-unterminated.txt", b"x{a=\"1} 1\n".to_vec()),
        ("om-ok-sample.txt", samples::OM_TEXT.as_bytes().to_vec()),
        ("om-err-no-eof.txt", b"x 1\n".to_vec()),
        ("snappy-ok-v1.bin", wire::snappy::compress(&v1)),
        ("snappy-err-huge-header.bin", vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
        ("snappy-err-bad-copy.bin", vec![0x0a, 0x01, 0x00, 0x00]),
    ];
    // A long varint chain and deeply nested groups.
    files.push(("v1-err-deep-groups.bin", vec![0x0b; 200]));
    files.push((
        "v1-err-varint-overflow.bin",
        vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
    ));
    for (name, bytes) in files {
        std::fs::write(dir().join(name), bytes).unwrap();
    }
}

/// Remote write bodies captured from a real Prometheus (2.42, scraping itself, sending
/// metadata): the walker must produce exactly what prost decodes, series by series.
#[test]
fn real_prometheus_requests_match_prost() {
    use prost::Message;
    use wire::proto::prompb;
    let mut checked = (0, 0);
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("snappy-ok-prometheus") {
            continue;
        }
        let body =
            wire::snappy::decompress_capped(&std::fs::read(&path).unwrap(), 1 << 24).unwrap();
        let want = prompb::WriteRequest::decode(&body[..]).unwrap();
        let got = decode_write_v1(&body, &Interner::new(), &DecodeLimits::default()).unwrap();
        assert!(got.invalid.is_empty(), "{name}: {:?}", got.invalid);
        assert_eq!(got.batch.series.len(), want.timeseries.len(), "{name}");
        for (g, w) in got.batch.series.iter().zip(&want.timeseries) {
            let labels =
                model::Labels::from_pairs(w.labels.iter().map(|l| (&l.name, &l.value))).unwrap();
            assert_eq!(g.labels, labels);
            let samples: Vec<model::Sample> =
                w.samples.iter().map(|s| model::Sample { t: s.timestamp, v: s.value }).collect();
            assert_eq!(g.samples.as_slice(), samples.as_slice());
            assert_eq!(g.exemplars.len(), w.exemplars.len());
            assert_eq!(g.histograms.len(), w.histograms.len());
        }
        assert_eq!(got.batch.metadata.len(), want.metadata.len(), "{name}");
        for (g, w) in got.batch.metadata.iter().zip(&want.metadata) {
            assert_eq!(
                (&g.metric_family, &g.help, &g.unit),
                (&w.metric_family_name, &w.help, &w.unit)
            );
            assert_eq!(g.kind as i32 != 0, w.r#type != 0);
        }
        println!("{name}: {} series, {} metadata", want.timeseries.len(), want.metadata.len());
        checked.0 += want.timeseries.len();
        checked.1 += want.metadata.len();
    }
    assert!(checked.0 > 100 && checked.1 > 10, "checked {checked:?}");
}

/// Text captured from a real Prometheus' and Pushgateway's /metrics: one sample per sample
/// line, HELP/TYPE for every family.
#[test]
fn real_text_exposition() {
    for (file, families) in
        [("prom-ok-prometheus-2.42-metrics.txt", 150), ("prom-ok-pushgateway-metrics.txt", 20)]
    {
        let text = std::fs::read_to_string(dir().join(file)).unwrap();
        let opts = TextOptions::new(TextFormat::Prometheus, 7);
        let b = parse_text(text.as_bytes(), &opts, &Interner::new()).unwrap();
        let lines = text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
        assert_eq!(b.sample_count(), lines, "{file}");
        assert_eq!(b.series.len(), lines, "{file}: every line is its own series");
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(b.metadata.len(), types, "{file}");
        assert!(types > families, "{file}: {types} families");
        assert!(b.series.iter().all(|s| s.samples[0].t == 7 && s.labels.metric_name().is_some()));
    }
}
