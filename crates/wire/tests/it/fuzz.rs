//! Property tests: no input bytes make a decoder panic or produce output out of proportion to
//! the input; the zero-copy walker agrees with prost and `model::Labels` on valid requests and
//! with a reference conversion on native histograms; text written with escapes parses back.

use model::{Interner, Labels, Sample};
use proptest::prelude::*;
use prost::Message;
use wire::proto::{prompb, v2};
use wire::{DecodeLimits, TextFormat, TextOptions, decode_write_v1, decode_write_v2, parse_text};

use crate::samples;

/// Feeds `bytes` to every decoder. Returns how many succeeded, so callers can assert on it.
pub fn run_all(bytes: &[u8]) -> usize {
    let interner = Interner::new();
    let limits = DecodeLimits::default();
    let mut ok = 0;
    // Through an (empty) series cache, the decoders take the raw-key path too: same outcome.
    let cache = model::SeriesCache::new();
    for (plain, cached) in [
        (
            decode_write_v1(bytes, &interner, &limits),
            wire::decode_write_v1_cached(bytes, &interner, &limits, Some(&cache)),
        ),
        (
            decode_write_v2(bytes, &interner, &limits),
            wire::decode_write_v2_cached(bytes, &interner, &limits, Some(&cache)),
        ),
    ] {
        match (&plain, &cached) {
            (Ok(p), Ok(c)) => {
                assert_eq!((p.received, p.rejected), (c.received, c.rejected));
                assert_eq!(p.batch.series.len(), c.batch.series.len());
            }
            (Err(_), Err(_)) => {}
            _ => panic!("cached and plain decodes disagree: {plain:?} vs {cached:?}"),
        }
    }
    for d in
        [decode_write_v1(bytes, &interner, &limits), decode_write_v2(bytes, &interner, &limits)]
            .into_iter()
            .flatten()
    {
        // Every series, sample and rejection costs at least two input bytes.
        let r = d.received;
        assert!(r.series + r.samples + r.histograms + r.exemplars <= bytes.len());
        assert!(d.batch.series.len() + d.invalid.len() <= r.series + r.exemplars + r.metadata);
        for i in &d.invalid {
            assert!(i.labels_text.len() < 2048, "labels_text is bounded");
        }
        // Everything received is either in the batch or counted as rejected.
        let (b, x) = (&d.batch, d.rejected);
        let sum = |f: fn(&model::SeriesWrite) -> usize| b.series.iter().map(f).sum::<usize>();
        assert_eq!(b.series.len() + x.series, r.series);
        assert_eq!(sum(|s| s.samples.len()) + x.samples, r.samples);
        assert_eq!(sum(|s| s.histograms.len()) + x.histograms, r.histograms);
        assert_eq!(sum(|s| s.exemplars.len()) + x.exemplars, r.exemplars);
        assert_eq!(b.metadata.len() + x.metadata, r.metadata);
        ok += 1;
    }
    for format in [TextFormat::Prometheus, TextFormat::OpenMetrics] {
        let opts = TextOptions::new(format, 0);
        if let Ok(b) = parse_text(bytes, &opts, &interner) {
            assert!(b.sample_count() <= bytes.len());
            ok += 1;
        }
    }
    if let Ok(out) = wire::snappy::decompress_capped(bytes, 1 << 16) {
        assert!(out.len() <= 1 << 16);
        ok += 1;
    }
    ok += usize::from(wire::remote_read::decode_read_request(bytes).is_ok());
    if let Ok(Some((_, used))) = wire::remote_read::read_chunked_frame(bytes, 1 << 16) {
        assert!(used <= bytes.len());
        ok += 1;
    }
    ok
}

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(load_seeds)
}

fn load_seeds() -> Vec<Vec<u8>> {
    let corpus = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(name),
        )
        .unwrap()
    };
    let real_rw = corpus("snappy-ok-prometheus-2.42-remote-write-samples-1.bin");
    vec![
        samples::v1_request(),
        samples::v2_request(),
        samples::PROM_TEXT.as_bytes().to_vec(),
        samples::OM_TEXT.as_bytes().to_vec(),
        wire::snappy::compress(&samples::v1_request()),
        wire::snappy::decompress_capped(&real_rw, 1 << 20).unwrap(),
        corpus("snappy-ok-prometheus-2.42-remote-write-metadata.bin"),
        corpus("prom-ok-pushgateway-metrics.txt"),
    ]
}

fn mutate(mut b: Vec<u8>, muts: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, op, byte) in muts {
        if b.is_empty() {
            b.push(byte);
            continue;
        }
        let p = pos % b.len();
        match op % 4 {
            0 => b[p] = byte,
            1 => b.insert(p, byte),
            2 => {
                b.remove(p);
            }
            _ => b.truncate(p),
        }
    }
    b
}

/// A label set that may break any validation rule, and samples with arbitrary bits.
/// One generated series: label pairs as sent, and (timestamp, value bits) samples.
type RawSeries = (Vec<(String, String)>, Vec<(i64, u64)>);

fn series() -> impl Strategy<Value = RawSeries> {
    let name = prop_oneof![Just("__name__".to_string()), "[a-c_]{0,3}"];
    let value = prop_oneof![Just(String::new()), "[a-z]{1,3}", "\\PC{0,4}"];
    (
        prop::collection::vec((name, value), 0..5),
        prop::collection::vec((any::<i64>(), any::<u64>()), 0..4),
    )
}

/// What the decoder must produce for one series: its labels if valid. Stricter than
/// `Labels::from_pairs`: an empty name is invalid even with an empty value, as in Prometheus.
fn expected(pairs: &[(String, String)]) -> Option<Labels> {
    if pairs.iter().any(|(n, _)| n.is_empty()) {
        return None;
    }
    let l = Labels::from_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))).ok()?;
    let mut names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    let unique = names.windows(2).all(|w| w[0] != w[1]);
    (unique && l.metric_name().is_some()).then_some(l)
}

fn check_against(input: &[RawSeries], got: wire::DecodedWrite) -> Result<(), TestCaseError> {
    // The same invariants as for fuzzed bytes, on inputs that reach every rule.
    let counted = got.clone();
    let r = counted.received;
    prop_assert_eq!(counted.batch.series.len() + counted.rejected.series, r.series);
    prop_assert_eq!(counted.batch.sample_count() + counted.rejected.samples, r.samples);
    let mut valid = got.batch.series.iter();
    let mut invalid = 0;
    for (pairs, samples) in input {
        match expected(pairs) {
            Some(labels) => {
                let w = valid.next().expect("a valid series is in the batch");
                prop_assert_eq!(&w.labels, &labels);
                let want: Vec<Sample> =
                    samples.iter().map(|&(t, v)| Sample { t, v: f64::from_bits(v) }).collect();
                prop_assert_eq!(w.samples.as_slice(), want.as_slice());
            }
            None => invalid += 1,
        }
    }
    prop_assert!(valid.next().is_none());
    prop_assert_eq!(got.invalid.len(), invalid);
    Ok(())
}

proptest! {
    // 1024 cases per property in a normal run; PROPTEST_CASES=100000 for a longer hunt.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1024)
    ))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        run_all(&bytes);
    }

    #[test]
    fn mutated_valid_inputs_never_panic(
        seed in 0usize..8,
        muts in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let b = mutate(seeds()[seed].clone(), &muts);
        run_all(&b);
        // A mutated snappy body goes on to the protobuf decoders, as a server would do.
        if let Ok(inner) = wire::snappy::decompress_capped(&b, 1 << 16) {
            run_all(&inner);
        }
    }

    #[test]
    fn v1_walker_agrees_with_prost(input in prop::collection::vec(series(), 0..6)) {
        let req = prompb::WriteRequest {
            timeseries: input.iter().map(|(pairs, samples)| prompb::TimeSeries {
                labels: pairs.iter().map(|(n, v)| prompb::Label { name: n.clone(), value: v.clone() }).collect(),
                samples: samples.iter().map(|&(t, v)| prompb::Sample { value: f64::from_bits(v), timestamp: t }).collect(),
                ..Default::default()
            }).collect(),
            metadata: vec![],
        };
        let got = decode_write_v1(&req.encode_to_vec(), &Interner::new(), &DecodeLimits::default()).unwrap();
        check_against(&input, got)?;
    }

    #[test]
    fn v2_walker_agrees_with_prost(input in prop::collection::vec(series(), 0..6)) {
        let mut symbols = vec![String::new()];
        let mut sym = |s: &String| -> u32 {
            match symbols.iter().position(|x| x == s) {
                Some(i) => i as u32,
                None => { symbols.push(s.clone()); (symbols.len() - 1) as u32 }
            }
        };
        let timeseries = input.iter().map(|(pairs, samples)| v2::TimeSeries {
            labels_refs: pairs.iter().flat_map(|(n, v)| [sym(n), sym(v)]).collect(),
            samples: samples.iter().map(|&(t, v)| v2::Sample { value: f64::from_bits(v), timestamp: t }).collect(),
            ..Default::default()
        }).collect();
        let req = v2::Request { symbols, timeseries };
        let got = decode_write_v2(&req.encode_to_vec(), &Interner::new(), &DecodeLimits::default()).unwrap();
        check_against(&input, got)?;
    }
}

/// Escapes a label value as the text format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    match v {
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        v if v.is_nan() => "NaN".into(),
        v => format!("{v:?}"),
    }
}

type TextLine = (std::collections::BTreeMap<String, String>, f64, Option<i64>);

fn text_line() -> impl Strategy<Value = TextLine> {
    (
        prop::collection::btree_map("[a-z][a-z0-9_]{0,5}", "\\PC{0,6}|[\"\\\\\n a]{0,4}", 0..4),
        any::<f64>(),
        prop::option::of(any::<i64>()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
    ))]

    /// Random series written in the text format (escapes, special floats, optional
    /// timestamps) parse back to the same labels, values and timestamps.
    #[test]
    fn text_round_trips(lines in prop::collection::vec(text_line(), 0..6), blank in 0usize..3) {
        let sep = [" ", "\t", "  "][blank];
        let mut text = String::new();
        for (i, (labels, v, t)) in lines.iter().enumerate() {
            let ls: Vec<String> =
                labels.iter().map(|(n, v)| format!("{n}=\"{}\"", escape(v))).collect();
            text.push_str(&format!("m{i}{{{}}}{sep}{}", ls.join(","), format_value(*v)));
            if let Some(t) = t {
                text.push_str(&format!("{sep}{t}"));
            }
            text.push('\n');
        }
        let opts = TextOptions::new(TextFormat::Prometheus, -5);
        let b = parse_text(text.as_bytes(), &opts, &Interner::new()).unwrap();
        prop_assert_eq!(b.series.len(), lines.len());
        for (i, ((labels, v, t), s)) in lines.iter().zip(&b.series).enumerate() {
            let name = format!("m{i}");
            let want = Labels::from_pairs(
                labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).chain([("__name__", name.as_str())]),
            ).unwrap();
            prop_assert_eq!(&s.labels, &want);
            let got = s.samples[0];
            prop_assert_eq!(got.t, t.unwrap_or(-5));
            prop_assert!(got.v == *v || (got.v.is_nan() && v.is_nan()), "{} vs {}", got.v, v);
        }
    }
}

/// Spans (offset, length) and bucket deltas (or counts) of one side of a native histogram.
type HistSide = (Vec<(i32, u32)>, Vec<i64>);

/// Spans and buckets that agree nine times in ten.
fn hist_side() -> impl Strategy<Value = HistSide> {
    (prop::collection::vec((-3i32..3, 0u32..3), 0..3), prop::bool::weighted(0.1)).prop_flat_map(
        |(spans, off)| {
            let n = spans.iter().map(|s| s.1 as usize).sum::<usize>() + usize::from(off);
            (Just(spans), prop::collection::vec(-5i64..5, n))
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
    ))]

    /// Random integer and float native histograms: the walker turns deltas into absolute
    /// counts, keeps float counts as sent, and rejects spans that disagree with the buckets.
    #[test]
    fn histograms_agree_with_reference(
        float in any::<bool>(),
        pos in hist_side(),
        neg in hist_side(),
        schema in -4i32..9,
        count in 0u64..1000,
        hint in 0i32..5,
        t in any::<i64>(),
    ) {
        let spans = |s: &HistSide| {
            s.0.iter().map(|&(offset, length)| prompb::BucketSpan { offset, length }).collect::<Vec<_>>()
        };
        let h = prompb::Histogram {
            count: Some(if float {
                prompb::histogram::Count::CountFloat(count as f64)
            } else {
                prompb::histogram::Count::CountInt(count)
            }),
            sum: 1.5,
            schema,
            zero_threshold: 0.5,
            zero_count: Some(prompb::histogram::ZeroCount::ZeroCountInt(3)),
            negative_spans: spans(&neg),
            negative_deltas: if float { vec![] } else { neg.1.clone() },
            negative_counts: if float { neg.1.iter().map(|&c| c as f64).collect() } else { vec![] },
            positive_spans: spans(&pos),
            positive_deltas: if float { vec![] } else { pos.1.clone() },
            positive_counts: if float { pos.1.iter().map(|&c| c as f64).collect() } else { vec![] },
            reset_hint: hint,
            timestamp: t,
            custom_values: vec![],
        };
        let series = prompb::TimeSeries {
            labels: vec![prompb::Label { name: "__name__".into(), value: "h".into() }],
            histograms: vec![h],
            ..Default::default()
        };
        let req = prompb::WriteRequest { timeseries: vec![series], metadata: vec![] };
        let got = decode_write_v1(&req.encode_to_vec(), &Interner::new(), &DecodeLimits::default()).unwrap();
        let abs = |s: &HistSide| -> Vec<f64> {
            if float {
                s.1.iter().map(|&c| c as f64).collect()
            } else {
                s.1.iter().scan(0i64, |acc, d| { *acc += d; Some(*acc as f64) }).collect()
            }
        };
        let fits = |s: &HistSide| s.0.iter().map(|x| x.1 as usize).sum::<usize>() == s.1.len();
        if !(fits(&pos) && fits(&neg)) {
            prop_assert!(got.batch.series.is_empty());
            prop_assert!(got.invalid[0].reason.to_string().contains("spans describe"));
            return Ok(());
        }
        let (gt, gh) = &got.batch.series[0].histograms[0];
        prop_assert_eq!(*gt, t);
        prop_assert_eq!(gh.count, count as f64);
        prop_assert_eq!((gh.schema, gh.sum, gh.zero_threshold, gh.zero_count), (schema, 1.5, 0.5, 3.0));
        prop_assert_eq!(gh.counter_reset_hint, if hint <= 3 { hint as u8 } else { 0 });
        prop_assert_eq!(&gh.positive_buckets, &abs(&pos));
        prop_assert_eq!(&gh.negative_buckets, &abs(&neg));
        let spans_of = |s: &[model::Span]| s.iter().map(|x| (x.offset, x.length)).collect::<Vec<_>>();
        prop_assert_eq!(spans_of(&gh.positive_spans), pos.0.clone());
        prop_assert_eq!(spans_of(&gh.negative_spans), neg.0.clone());
    }
}
