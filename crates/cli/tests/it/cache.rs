//! Range query splitting and the results cache: split (and cached) answers identical to a
//! server that neither splits nor caches; a dashboard refresh answered from the cache; late
//! writes and imports into a cached range seen by the next query; `@` queries never split.

use model::{FloatHistogram, Labels, Sample, SeriesWrite, Span, WriteBatch};
use serde_json::Value;

use crate::{Promlake, client, json, now_ms, remote_write};

const MIN: i64 = 60_000;

/// A server splitting at `split` with the cache on, and its config file's directory.
fn start(split: &str) -> (Promlake, tempfile::TempDir) {
    start_with(split, "")
}

/// `start` with more `[query]` settings.
fn start_with(split: &str, query: &str) -> (Promlake, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("promlake.toml");
    std::fs::write(&cfg, format!("[query]\nsplit_interval = \"{split}\"\n{query}")).unwrap();
    (Promlake::start(&["--config", cfg.to_str().unwrap()]), dir)
}

/// Every 15 s over `[from, to]`: counters, a gauge and a native histogram, 3 instances.
fn dataset(from: i64, to: i64) -> WriteBatch {
    let ts: Vec<i64> = (from..=to).step_by(15_000).collect();
    let mut series = Vec::new();
    for inst in 0..3 {
        let l = |n: &str| {
            Labels::from_pairs([("__name__", n.to_string()), ("instance", format!("h{inst}"))])
                .unwrap()
        };
        let k = inst as f64 + 1.0;
        series.push(SeriesWrite {
            labels: l("req_total"),
            samples: ts
                .iter()
                .enumerate()
                .map(|(i, &t)| Sample { t, v: (i as f64 * k * 2.0 + (i % 7) as f64).floor() })
                .collect(),
            ..Default::default()
        });
        series.push(SeriesWrite {
            labels: l("temp"),
            samples: ts
                .iter()
                .enumerate()
                .map(|(i, &t)| Sample { t, v: 20.0 + (i as f64 * 0.1 * k).sin() * 5.0 })
                .collect(),
            ..Default::default()
        });
        series.push(SeriesWrite {
            labels: l("lat_seconds"),
            histograms: ts
                .iter()
                .enumerate()
                .map(|(i, &t)| {
                    let n = (i as f64) * k;
                    let h = FloatHistogram {
                        schema: 0,
                        count: 3.0 * n,
                        sum: 1.5 * n,
                        positive_spans: vec![Span { offset: 0, length: 3 }],
                        positive_buckets: vec![n, n, n],
                        ..Default::default()
                    };
                    (t, h)
                })
                .collect(),
            ..Default::default()
        });
    }
    WriteBatch { series, metadata: vec![] }
}

/// Writes `data` in 10-minute slices of all series, oldest first (the out-of-order window is
/// relative to the tenant's newest sample).
fn write(url: &str, data: &WriteBatch) {
    let (lo, hi) = data
        .series
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.t).chain(s.histograms.iter().map(|h| h.0)))
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let mut from = lo;
    while from <= hi {
        let to = from + 10 * MIN;
        let series = data
            .series
            .iter()
            .map(|s| SeriesWrite {
                labels: s.labels.clone(),
                samples: s.samples.iter().filter(|x| x.t >= from && x.t < to).cloned().collect(),
                histograms: s
                    .histograms
                    .iter()
                    .filter(|h| h.0 >= from && h.0 < to)
                    .cloned()
                    .collect(),
                ..Default::default()
            })
            .collect();
        remote_write(url, None, &WriteBatch { series, metadata: vec![] });
        from = to;
    }
}

fn range(p: &Promlake, q: &str, start: i64, end: i64, step: &str) -> Value {
    json(&range_text(p, q, start, end, step, &[]))
}

/// The response body as sent (cached answers must be byte-identical, not only equal JSON).
fn range_text(
    p: &Promlake,
    q: &str,
    start: i64,
    end: i64,
    step: &str,
    extra: &[(&str, &str)],
) -> String {
    let r = client()
        .get(format!("{}/api/v1/query_range", p.url))
        .query(&[
            ("query", q),
            ("start", &(start as f64 / 1000.0).to_string()),
            ("end", &(end as f64 / 1000.0).to_string()),
            ("step", step),
        ])
        .query(extra)
        .send()
        .unwrap();
    let code = r.status().as_u16();
    let body = r.text().unwrap();
    assert_eq!(code, 200, "{q}: {body}");
    body
}

/// The sum of a counter over all its label sets in `/metrics`.
fn counter(p: &Promlake, name: &str) -> f64 {
    let (_, text) = p.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

const HITS: &str = "promlake_query_cache_hits_total";
const MISSES: &str = "promlake_query_cache_misses_total";
const HIT_STEPS: &str = "promlake_query_cache_hit_steps_total";
const MISS_STEPS: &str = "promlake_query_cache_miss_steps_total";

/// Queries answered by a splitting server (computed, then again from its cache) and by one
/// that neither splits nor caches must be identical, over ranges crossing many 7m boundaries,
/// with unaligned starts, odd steps, offsets, subqueries and native histograms.
#[test]
fn split_and_cached_results_equal_unsplit_ones() {
    let (split, _d1) = start("7m");
    let (whole, _d2) = start("0s");
    let end = (now_ms() - 2 * 3_600_000) / MIN * MIN;
    let from = end - 3 * 3_600_000;
    let data = dataset(from, end);
    write(&split.url, &data);
    write(&whole.url, &data);
    let queries = [
        "req_total",
        "rate(req_total[2m])",
        "sum by (instance) (increase(req_total[5m] offset 3m))",
        "temp > 21",
        "max_over_time(rate(req_total[1m])[10m:1m])",
        "avg_over_time(temp[7m]) - temp offset 1h",
        "histogram_quantile(0.9, rate(lat_seconds[5m]))",
        "lat_seconds",
        "histogram_count(rate(lat_seconds[3m]))",
        "time() - timestamp(temp)",
        "count(temp) * 2",
        // Raises an info (not a counter): annotations must match too.
        "rate(temp[5m])",
    ];
    // (start, end, step): aligned and unaligned, short and long.
    let ranges = [
        (from, end, "60"),
        (from + 7_777, end - 1_234, "37"),
        (from + 30 * MIN, from + 95 * MIN, "15s"),
        (from + 13 * MIN + 500, from + 14 * MIN, "1"),
    ];
    let hits0 = counter(&split, HITS);
    for q in queries {
        let mut points = 0;
        for &(s, e, step) in &ranges {
            let want = range_text(&whole, q, s, e, step, &[]);
            points += json(&want)["data"]["result"].as_array().unwrap().len();
            let first = range_text(&split, q, s, e, step, &[]);
            assert_eq!(first, want, "{q} [{s}, {e}] step {step}: split");
            let again = range_text(&split, q, s, e, step, &[]);
            assert_eq!(again, want, "{q} [{s}, {e}] step {step}: from the cache");
            // A range overlapping the cached one on both sides: cached and computed pieces
            // joined within one interval.
            let (s2, e2) = (s - 11 * MIN, e + 3 * MIN);
            let want = range_text(&whole, q, s2, e2, step, &[]);
            assert_eq!(range_text(&split, q, s2, e2, step, &[]), want, "{q} [{s2}, {e2}]");
        }
        assert!(points > 0, "{q} has data");
    }
    assert!(counter(&split, HITS) > hits0, "the repeated queries were answered from the cache");
    assert_eq!(counter(&whole, HITS) + counter(&whole, MISSES), 0.0, "split_interval 0s: off");
}

/// A dashboard refreshed every 30 s over live data: each refresh computes only its last
/// minutes (the freshness window) and answers the rest from the cache.
#[test]
fn a_dashboard_refresh_is_answered_mostly_from_the_cache() {
    let (split, _d1) = start("24h");
    let (whole, _d2) = start("0s");
    let now = now_ms() / 15_000 * 15_000;
    let data = dataset(now - 3 * 3_600_000, now);
    write(&split.url, &data);
    write(&whole.url, &data);
    let q = "sum by (instance) (rate(req_total[5m]))";
    let (s0, e0) = (now - 2 * 3_600_000, now);
    let first = range(&split, q, s0, e0, "15");
    assert_eq!(first, range(&whole, q, s0, e0, "15"));
    let (hits, hit_steps, miss_steps) =
        (counter(&split, HITS), counter(&split, HIT_STEPS), counter(&split, MISS_STEPS));
    for refresh in 1..=3 {
        let (s, e) = (s0 + refresh * 30_000, e0 + refresh * 30_000);
        let want = range_text(&whole, q, s, e, "15", &[]);
        assert_eq!(range_text(&split, q, s, e, "15", &[]), want, "refresh {refresh}");
    }
    // stats=all: the same result, and the samples read from storage are those of the
    // computed part only (fewer than the uncached query reads, but some).
    let (s, e) = (s0 + 4 * 30_000, e0 + 4 * 30_000);
    let stats = [("stats", "all")];
    let cached = json(&range_text(&split, q, s, e, "15", &stats));
    let uncached = json(&range_text(&whole, q, s, e, "15", &stats));
    assert_eq!(cached["data"]["result"], uncached["data"]["result"]);
    let samples = |v: &Value| v["data"]["stats"]["samples"]["totalQueryableSamples"].as_f64();
    let (c, u) = (samples(&cached).unwrap(), samples(&uncached).unwrap());
    assert!(c > 0.0 && c * 5.0 < u, "samples read: cached {c}, uncached {u}");
    let new_hits = counter(&split, HITS) - hits;
    let new_hit_steps = counter(&split, HIT_STEPS) - hit_steps;
    let new_miss_steps = counter(&split, MISS_STEPS) - miss_steps;
    assert!(new_hits >= 3.0, "every refresh hit the cache: {new_hits}");
    // 2h at 15 s is 481 steps; the 10m freshness window plus 30 s is about 42 of them.
    assert!(
        new_hit_steps > 9.0 * new_miss_steps,
        "mostly from cache: {new_hit_steps} steps hit, {new_miss_steps} computed"
    );
}

/// A late remote write and an import into a cached range are seen by the next query (and
/// counted as invalidations). Without invalidation the second answers would be stale.
#[test]
fn late_writes_into_a_cached_range_are_seen() {
    let (p, _d) = start("24h");
    let end = (now_ms() - 3_600_000) / MIN * MIN;
    let from = end - 40 * MIN;
    write(&p.url, &dataset(from, end));
    let q = "count_over_time(temp{instance=\"h0\"}[1m])";
    let (s, e) = (from + 10 * MIN, end);
    let count_at = |r: &Value, t: i64| -> String {
        let values = r["data"]["result"][0]["values"].as_array().unwrap();
        let v = values.iter().find(|v| v[0].as_f64() == Some(t as f64 / 1000.0)).unwrap();
        v[1].as_str().unwrap().to_string()
    };
    let before = range(&p, q, s, e, "60");
    let t = from + 20 * MIN;
    assert_eq!(count_at(&before, t), "4");
    let hits = counter(&p, HITS);
    assert_eq!(range(&p, q, s, e, "60"), before);
    assert!(counter(&p, HITS) > hits, "the repeat was a cache hit");
    // A sample 7 s after an existing one: within the out-of-order window, inside the range.
    let late = WriteBatch {
        series: vec![SeriesWrite {
            labels: Labels::from_pairs([("__name__", "temp"), ("instance", "h0")]).unwrap(),
            samples: [Sample { t: t - 8_000, v: 1.0 }].into(),
            ..Default::default()
        }],
        metadata: vec![],
    };
    remote_write(&p.url, None, &late);
    let after = range(&p, q, s, e, "60");
    assert_eq!(count_at(&after, t), "5", "the late sample is counted");
    assert!(counter(&p, "promlake_query_cache_invalidations_total") >= 1.0);
    // A backfill by import, also inside the cached range.
    let body = format!("temp{{instance=\"h0\"}} 2 {}\n", t - 4_000);
    let r = client().post(format!("{}/api/v1/import", p.url)).body(body).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    let after = range(&p, q, s, e, "60");
    assert_eq!(count_at(&after, t), "6", "the imported sample is counted");
}

/// `@ start()`, `@ end()` and `@ t` depend on the query's range or pin one time: such queries
/// are neither split nor cached, and answer as unsplit.
#[test]
fn at_modifier_queries_are_neither_split_nor_cached() {
    let (split, _d1) = start("5m");
    let (whole, _d2) = start("0s");
    let end = (now_ms() - 2 * 3_600_000) / MIN * MIN;
    let from = end - 60 * MIN;
    let data = dataset(from, end);
    write(&split.url, &data);
    write(&whole.url, &data);
    let at = format!("{}", (from + 17 * MIN) as f64 / 1000.0);
    let queries = [
        "temp @ start()".to_string(),
        "rate(req_total[5m] @ end())".to_string(),
        "temp - temp @ end()".to_string(),
        format!("temp @ {at}"),
        "max_over_time(temp[10m:1m] @ start())".to_string(),
    ];
    let before = counter(&split, HITS) + counter(&split, MISSES);
    for q in &queries {
        for _ in 0..2 {
            let want = range(&whole, q, from + 5 * MIN, end, "60");
            assert_eq!(range(&split, q, from + 5 * MIN, end, "60"), want, "{q}");
        }
    }
    assert_eq!(counter(&split, HITS) + counter(&split, MISSES), before, "nothing looked up");
    // A query with a negative offset is split but not cached, and still equal.
    let q = "temp offset -2m";
    let want = range(&whole, q, from, end - 10 * MIN, "60");
    assert_eq!(range(&split, q, from, end - 10 * MIN, "60"), want);
    assert_eq!(counter(&split, HITS) + counter(&split, MISSES), before, "nothing looked up");
}

/// `max_samples` bounds a split query's joined answer, not only each piece: pieces each well
/// under the limit whose answer together passes it fail as the unsplit query does (422), from
/// computed pieces and from cached ones alike.
#[test]
fn max_samples_bounds_the_joined_answer_of_a_split_query() {
    let (split, _d1) = start_with("7m", "max_samples = 300\n");
    let (whole, _d2) = start_with("0s", "max_samples = 300\n");
    let end = (now_ms() - 2 * 3_600_000) / MIN * MIN;
    let from = end - 3 * 3_600_000;
    let data = dataset(from, end);
    write(&split.url, &data);
    write(&whole.url, &data);
    let status = |p: &Promlake, s: i64, e: i64| {
        let r = client()
            .get(format!("{}/api/v1/query_range", p.url))
            .query(&[
                ("query", "temp"),
                ("start", &(s as f64 / 1000.0).to_string()),
                ("end", &(e as f64 / 1000.0).to_string()),
                ("step", "60"),
            ])
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.text().unwrap())
    };
    // 3 series x 21 steps: within the limit either way (and now cached).
    let short = (from + 60 * MIN, from + 80 * MIN);
    assert_eq!(status(&split, short.0, short.1).0, 200);
    assert_eq!(status(&whole, short.0, short.1).0, 200);
    // 3 series x 181 steps: each 7m piece holds 21 points, the answer 543.
    let long = (from + 30 * MIN, from + 210 * MIN);
    for p in [&whole, &split, &split] {
        let (code, body) = status(p, long.0, long.1);
        assert_eq!(code, 422, "{body}");
        assert!(body.contains("query.max_samples"), "{body}");
    }
}
