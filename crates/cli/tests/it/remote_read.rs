//! Remote read: a real Prometheus answers PromQL with data only promlake holds; streamed XOR
//! chunks are byte-identical to the ones Prometheus itself streams for the same samples; a
//! SAMPLES answer carries exactly what was written; tenants, fallback and status codes.

use model::{Labels, Sample, SeriesWrite, WriteBatch};
use prost::Message;
use wire::proto::prompb;

use crate::{Daemon, Promlake, client, json, now_ms};

use crate::remote_write as write;

fn series(pairs: &[(&str, &str)], samples: Vec<Sample>) -> SeriesWrite {
    SeriesWrite {
        labels: Labels::from_pairs(pairs.iter().copied()).unwrap(),
        samples: samples.into(),
        ..Default::default()
    }
}

/// Irregular data: jittered scrape intervals, resets, repeats, NaN, tiny and huge values, so
/// every delta-of-delta width and value-XOR case shows up.
fn irregular(start: i64, n: i64, seed: u64) -> Vec<Sample> {
    let mut x = seed;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = start;
    (0..n)
        .map(|i| {
            let jitter = [0, 0, 1, -1, 250, -3, 7000, 0][(rnd() % 8) as usize];
            t += 15_000 + jitter;
            let v = match i % 9 {
                0 => f64::NAN,
                1 | 2 => 42.0,
                3 => (rnd() % 1000) as f64,
                4 => 1e-300 * (rnd() % 7) as f64,
                5 => -1.5e300,
                _ => (rnd() % 100_000) as f64 / 7.0,
            };
            Sample { t, v }
        })
        .collect()
}

/// A series as (labels joined, samples as (timestamp, value bits)).
type Row = (String, Vec<(i64, u64)>);

fn matcher(t: prompb::label_matcher::Type, name: &str, value: &str) -> prompb::LabelMatcher {
    prompb::LabelMatcher { r#type: t as i32, name: name.into(), value: value.into() }
}

fn read_request(queries: Vec<prompb::Query>, accepted: &[i32]) -> Vec<u8> {
    let req = prompb::ReadRequest { queries, accepted_response_types: accepted.to_vec() };
    wire::snappy::compress(&req.encode_to_vec())
}

fn query(start: i64, end: i64, matchers: Vec<prompb::LabelMatcher>) -> prompb::Query {
    prompb::Query { start_timestamp_ms: start, end_timestamp_ms: end, matchers, hints: None }
}

fn post_read(url: &str, tenant: Option<&str>, body: Vec<u8>) -> reqwest::blocking::Response {
    let mut r = client()
        .post(format!("{url}/api/v1/read"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-read-version", "0.1.0");
    if let Some(t) = tenant {
        r = r.header("x-scope-orgid", t);
    }
    r.body(body).send().unwrap()
}

fn samples_answer(url: &str, tenant: Option<&str>, body: Vec<u8>) -> prompb::ReadResponse {
    let r = post_read(url, tenant, body);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert_eq!(r.headers()["content-encoding"], "snappy");
    let raw = wire::snappy::decompress_capped(&r.bytes().unwrap(), 64 << 20).unwrap();
    wire::remote_read::decode_read_response(&raw).unwrap()
}

/// All frames of a streamed answer as (query index, labels, chunks).
fn streamed_answer(url: &str, body: Vec<u8>) -> Vec<(i64, String, Vec<prompb::Chunk>)> {
    let r = post_read(url, None, body);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let bytes = r.bytes().unwrap();
    let mut rest = &bytes[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (msg, used) = wire::remote_read::read_chunked_frame(rest, 4 << 20)
            .unwrap()
            .expect("whole frames only");
        rest = &rest[used..];
        for s in msg.chunked_series {
            let labels: Vec<String> =
                s.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
            out.push((msg.query_index, labels.join(","), s.chunks));
        }
    }
    out
}

/// Prometheus 2.42 with promlake as its remote read endpoint and nothing of its own.
fn prometheus_reading_from(promlake: &str, extra: &str) -> Daemon {
    Daemon::start(
        "prometheus",
        |dir, port| {
            let cfg = format!(
                "global: {{}}\nremote_read:\n  - url: {promlake}/api/v1/read\n    read_recent: true\n{extra}"
            );
            std::fs::write(dir.join("p.yml"), cfg).unwrap();
            vec![
                format!("--config.file={}", dir.join("p.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        },
        "/-/ready",
    )
}

fn remote_read_queries(p: &Promlake, response_type: &str) -> u64 {
    let (_, metrics) = p.get("/metrics");
    let key = format!("promlake_remote_read_queries_total{{response_type=\"{response_type}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn real_prometheus_answers_promql_from_data_only_promlake_holds() {
    let p = Promlake::start(&[]);
    let end = now_ms() - 60_000;
    let start = end - 20 * 60_000;
    let mut batch = WriteBatch::default();
    for (inst, k) in [("a", 1.0), ("b", 2.0), ("c", 3.0)] {
        let samples = (0..=80).map(|i| Sample { t: start + i * 15_000, v: i as f64 * k }).collect();
        batch.series.push(series(
            &[("__name__", "rr_requests_total"), ("job", "api"), ("instance", inst)],
            samples,
        ));
    }
    write(&p.url, None, &batch);
    // Another tenant's data must not leak into the default tenant's answers.
    let other = series(
        &[("__name__", "rr_requests_total"), ("job", "api"), ("instance", "z")],
        vec![Sample { t: end, v: 99.0 }],
    );
    write(&p.url, Some("other"), &WriteBatch { series: vec![other], metadata: vec![] });

    let prom = prometheus_reading_from(&p.url, "");
    let at = (end as f64 / 1000.0).to_string();
    let ask = |q: &str| {
        let r = client()
            .get(format!("{}/api/v1/query", prom.url))
            .query(&[("query", q), ("time", at.as_str())])
            .send()
            .unwrap();
        let v = json(&r.text().unwrap());
        assert_eq!(v["status"], "success", "{q}: {v}");
        let mut rows: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {}", s["metric"], s["value"][1].as_str().unwrap()))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        ask("rr_requests_total{instance=~\"a|b\"}"),
        [
            r#"{"__name__":"rr_requests_total","instance":"a","job":"api"} 80"#,
            r#"{"__name__":"rr_requests_total","instance":"b","job":"api"} 160"#,
        ]
    );
    // 15 s steps of k per step: rate is k/15 per second for every instance.
    assert_eq!(ask("round(sum(rate(rr_requests_total[5m])) * 15)"), ["{} 6"]);
    assert_eq!(ask("count(rr_requests_total)"), ["{} 3"]);
    // Prometheus 2.42's remote read client asks for SAMPLES only (streamed reads arrived in
    // its client later); streamed answers are checked byte for byte in the next test.
    assert!(remote_read_queries(&p, "samples") >= 3);
    assert_eq!(remote_read_queries(&p, "streamed_xor_chunks"), 0);
}

/// The streamed answer checked against Prometheus' own remote read endpoint: the same
/// samples written into both, the same frames and chunk bytes back.
#[test]
fn streamed_chunks_are_byte_identical_to_prometheus() {
    let p = Promlake::start(&[]);
    let prom = Daemon::start(
        "prometheus",
        |dir, port| {
            std::fs::write(dir.join("p.yml"), "global: {}\n").unwrap();
            vec![
                format!("--config.file={}", dir.join("p.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-remote-write-receiver".into(),
            ]
        },
        "/-/ready",
    );
    // Inside one 2 h head range, under 120 samples and 1/4 of the range: Prometheus keeps each
    // series in a single head chunk, which is what we re-encode.
    let two_hours = 2 * 3600 * 1000;
    let start = (now_ms() / two_hours) * two_hours - two_hours + 60_000;
    let mut batch = WriteBatch::default();
    for (i, n) in [(0, 1), (1, 2), (2, 3), (3, 50), (4, 100)] {
        let inst = format!("i{i}");
        batch.series.push(series(
            &[("__name__", "rr_chunked"), ("instance", &inst)],
            irregular(start, n, 0x9e37_79b9 + i as u64),
        ));
    }
    // Values a few ulps apart: XOR deltas with 32+ leading zeros, which the 5-bit field clamps.
    let close = (0..60).map(|i| Sample { t: start + i * 15_000, v: 1e6 + (i * i) as f64 * 1e-9 });
    batch.series.push(series(&[("__name__", "rr_chunked"), ("instance", "i5")], close.collect()));
    write(&p.url, None, &batch);
    write(&prom.url, None, &batch);

    let q = || {
        vec![
            query(
                start,
                start + two_hours,
                vec![matcher(prompb::label_matcher::Type::Eq, "__name__", "rr_chunked")],
            ),
            query(
                start,
                start + two_hours,
                vec![
                    matcher(prompb::label_matcher::Type::Re, "instance", "i[34]"),
                    matcher(prompb::label_matcher::Type::Eq, "__name__", "rr_chunked"),
                ],
            ),
        ]
    };
    let ours = streamed_answer(&p.url, read_request(q(), &[1, 0]));
    let theirs = streamed_answer(&prom.url, read_request(q(), &[1, 0]));
    assert_eq!(ours.len(), 8, "6 series for the first query, 2 for the second");
    assert_eq!(ours, theirs);
    assert!(ours.iter().all(|(_, _, c)| c.len() == 1 && c[0].r#type == 1));

    // Longer series cut into chunks of 120 that each read back (Prometheus cuts its head by
    // time as well, so here the bytes are compared per chunk against a SAMPLES answer).
    let long = irregular(start, 300, 7);
    batch = WriteBatch {
        series: vec![series(&[("__name__", "rr_long")], long.clone())],
        metadata: vec![],
    };
    write(&p.url, None, &batch);
    let m = || vec![matcher(prompb::label_matcher::Type::Eq, "__name__", "rr_long")];
    let frames = streamed_answer(&p.url, read_request(vec![query(start, i64::MAX, m())], &[1]));
    let chunks = &frames[0].2;
    assert_eq!(chunks.len(), 3);
    let counts: Vec<u16> =
        chunks.iter().map(|c| u16::from_be_bytes([c.data[0], c.data[1]])).collect();
    assert_eq!(counts, [120, 120, 60]);
    assert_eq!((chunks[0].min_time_ms, chunks[2].max_time_ms), (long[0].t, long[299].t));
    assert_eq!(chunks[1].min_time_ms, long[120].t);
}

#[test]
fn samples_answers_carry_exactly_what_was_written() {
    let p = Promlake::start(&[]);
    let start = now_ms() - 3_600_000;
    let a = irregular(start, 40, 1);
    let b = irregular(start, 7, 2);
    let batch = WriteBatch {
        series: vec![
            series(&[("__name__", "rr_s"), ("k", "a")], a.clone()),
            series(&[("__name__", "rr_s"), ("k", "b")], b.clone()),
            series(&[("__name__", "rr_other"), ("k", "a")], b.clone()),
        ],
        metadata: vec![],
    };
    write(&p.url, Some("team-1"), &batch);
    let eq = prompb::label_matcher::Type::Eq;
    let nre = prompb::label_matcher::Type::Nre;
    let queries = vec![
        query(i64::MIN / 2, i64::MAX / 2, vec![matcher(eq, "__name__", "rr_s")]),
        // Inclusive bounds: exactly samples 10..=20 of `a`, none of `b` excluded by k!~"b".
        query(a[10].t, a[20].t, vec![matcher(eq, "__name__", "rr_s"), matcher(nre, "k", "b")]),
        query(0, i64::MAX / 2, vec![matcher(eq, "__name__", "nothing")]),
    ];
    // No accepted types, SAMPLES, and an unknown type all get SAMPLES.
    for accepted in [&[][..], &[0], &[9]] {
        let resp = samples_answer(&p.url, Some("team-1"), read_request(queries.clone(), accepted));
        let got: Vec<Vec<Row>> = resp
            .results
            .iter()
            .map(|r| {
                r.timeseries
                    .iter()
                    .map(|ts| {
                        let l: Vec<String> =
                            ts.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
                        (
                            l.join(","),
                            ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect(),
                        )
                    })
                    .collect()
            })
            .collect();
        let bits = |s: &[Sample]| s.iter().map(|s| (s.t, s.v.to_bits())).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                vec![
                    ("__name__=rr_s,k=a".to_string(), bits(&a)),
                    ("__name__=rr_s,k=b".to_string(), bits(&b))
                ],
                vec![("__name__=rr_s,k=a".to_string(), bits(&a[10..=20]))],
                vec![],
            ],
            "accepted {accepted:?}"
        );
    }
    // The default tenant holds none of it.
    let resp = samples_answer(&p.url, None, read_request(queries.clone(), &[]));
    assert!(resp.results.iter().all(|r| r.timeseries.is_empty()), "{resp:?}");
    assert_eq!(remote_read_queries(&p, "samples"), 12);
}

#[test]
fn malformed_requests_are_400_naming_the_problem() {
    let p = Promlake::start(&[]);
    let check = |body: Vec<u8>, tenant: Option<&str>, status: u16, needle: &str| {
        let r = post_read(&p.url, tenant, body);
        let got = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(got, status, "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text}");
    };
    check(b"not snappy at all".to_vec(), None, 400, "snappy");
    check(wire::snappy::compress(&[0xff, 0xff, 0xff]), None, 400, "malformed ReadRequest");
    let bad_regex = read_request(
        vec![query(0, 1, vec![matcher(prompb::label_matcher::Type::Re, "a", "(")])],
        &[],
    );
    check(bad_regex, None, 400, "invalid remote read matcher");
    let bad_type = read_request(
        vec![query(
            0,
            1,
            vec![prompb::LabelMatcher { r#type: 9, name: "a".into(), value: "b".into() }],
        )],
        &[],
    );
    check(bad_type, None, 400, "unknown matcher type 9");
    check(read_request(vec![], &[]), Some("bad tenant/"), 400, "X-Scope-OrgID");
}

/// Over the sample limit a SAMPLES answer is refused the way Prometheus refuses it (same
/// limit on both), while a streamed answer of the same data is not limited.
#[test]
fn sample_limit_refuses_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("promlake.toml");
    std::fs::write(&cfg, "[query]\nremote_read_sample_limit = 10\n").unwrap();
    let p = Promlake::start(&["--config", cfg.to_str().unwrap()]);
    let prom = Daemon::start(
        "prometheus",
        |dir, port| {
            std::fs::write(dir.join("p.yml"), "global: {}\n").unwrap();
            vec![
                format!("--config.file={}", dir.join("p.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--web.enable-remote-write-receiver".into(),
                "--storage.remote.read-sample-limit=10".into(),
            ]
        },
        "/-/ready",
    );
    let start = now_ms() - 600_000;
    let batch = WriteBatch {
        series: vec![
            series(&[("__name__", "rr_lim"), ("k", "a")], irregular(start, 6, 1)),
            series(&[("__name__", "rr_lim"), ("k", "b")], irregular(start, 6, 2)),
        ],
        metadata: vec![],
    };
    write(&p.url, None, &batch);
    write(&prom.url, None, &batch);
    let eq = prompb::label_matcher::Type::Eq;
    let q = |k: &str| {
        let mut m = vec![matcher(eq, "__name__", "rr_lim")];
        if !k.is_empty() {
            m.push(matcher(eq, "k", k));
        }
        vec![query(start, start + 3_600_000, m)]
    };
    let status = |url: &str, k: &str, accepted: &[i32]| {
        let r = post_read(url, None, read_request(q(k), accepted));
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    for (k, accepted) in [("a", &[][..]), ("", &[]), ("", &[1])] {
        let (ours, msg) = status(&p.url, k, accepted);
        let (theirs, their_msg) = status(&prom.url, k, accepted);
        assert_eq!(ours, theirs, "k={k:?} {accepted:?}: ours {msg:?}, theirs {their_msg:?}");
    }
    let (code, msg) = status(&p.url, "", &[]);
    assert_eq!(code, 400);
    assert!(msg.contains("sample limit of 10 (query.remote_read_sample_limit)"), "{msg}");
}
