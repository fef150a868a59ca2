//! `POST /api/v1/import`: backfill of three-day-old samples (which remote write refuses as too
//! old) into blocks, queryable at their times and across kill -9; malformed input is a 400
//! naming the line, and stores nothing.

use crate::{Promlake, client, json, now_ms};

fn import(p: &Promlake, body: &str) -> (u16, serde_json::Value) {
    let r =
        client().post(format!("{}/api/v1/import", p.url)).body(body.to_string()).send().unwrap();
    let code = r.status().as_u16();
    (code, json(&r.text().unwrap()))
}

fn value_at(p: &Promlake, query: &str, t_ms: i64) -> serde_json::Value {
    let (code, body) = p.get(&format!("/api/v1/query?query={query}&time={}", t_ms as f64 / 1000.0));
    assert_eq!(code, 200, "{body}");
    json(&body)["data"]["result"].clone()
}

#[test]
fn three_day_old_data_is_imported_into_blocks() {
    let p = Promlake::start(&[]);
    let t0 = (now_ms() - 3 * 86_400_000) / 60_000 * 60_000;
    let mut body = String::from("# HELP old_temp Temperature.\n# TYPE old_temp gauge\n");
    // Six hours of minutely samples for two series: several block ranges.
    for i in 0..360 {
        let t = t0 + i * 60_000;
        body.push_str(&format!(
            "old_temp{{room=\"a\"}} {i} {t}\nold_temp{{room=\"b\"}} {} {t}\n",
            i * 2
        ));
    }
    let (code, r) = import(&p, &body);
    assert_eq!(code, 200, "{r}");
    assert_eq!((r["data"]["series"].as_u64(), r["data"]["samples"].as_u64()), (Some(2), Some(720)));
    assert!(!r["data"]["blocks"].as_array().unwrap().is_empty());
    let check = |p: &Promlake| {
        let got = value_at(p, "old_temp", t0 + 100 * 60_000);
        let want = serde_json::json!([
            {"metric": {"__name__": "old_temp", "room": "a"}, "value": [(t0 + 100 * 60_000) / 1000, "100"]},
            {"metric": {"__name__": "old_temp", "room": "b"}, "value": [(t0 + 100 * 60_000) / 1000, "200"]},
        ]);
        assert_eq!(got, want);
        let got =
            value_at(p, "count_over_time(old_temp%7Broom%3D%22a%22%7D%5B1d%5D)", t0 + 86_399_000);
        assert_eq!(got[0]["value"][1], "360", "every imported sample is there");
    };
    check(&p);
    let meta = json(&p.get("/api/v1/metadata?metric=old_temp").1);
    assert_eq!(
        meta["data"]["old_temp"],
        serde_json::json!([{"type": "gauge", "help": "Temperature.", "unit": ""}])
    );
    // The data is in blocks, not the head: the WAL holds none of it, yet kill -9 loses nothing.
    let blocks = p.dir.path().join("data/blocks/default");
    assert!(std::fs::read_dir(&blocks).unwrap().count() >= 1, "a block directory exists");
    let p = p.restart(&[]);
    check(&p);
    // Remote write refuses what import took.
    let batch = model::WriteBatch {
        series: vec![model::SeriesWrite {
            labels: model::Labels::from_pairs([("__name__", "fresh")]).unwrap(),
            samples: [model::Sample { t: now_ms(), v: 1.0 }].into(),
            ..Default::default()
        }],
        metadata: vec![],
    };
    let r = client()
        .post(format!("{}/api/v1/write", p.url))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(wire::snappy::compress(&wire::encode_write_v1(&batch)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let old = model::WriteBatch {
        series: vec![model::SeriesWrite {
            samples: [model::Sample { t: t0, v: 1.0 }].into(),
            ..batch.series[0].clone()
        }],
        metadata: vec![],
    };
    let r = client()
        .post(format!("{}/api/v1/write", p.url))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .body(wire::snappy::compress(&wire::encode_write_v1(&old)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400, "the head refuses 3-day-old samples");
}

#[test]
fn malformed_import_is_a_400_naming_the_line_and_stores_nothing() {
    let p = Promlake::start(&[]);
    let t = now_ms() - 3 * 86_400_000;
    let (code, r) = import(&p, &format!("good_metric 1 {t}\nbad_metric{{a=}} 2 {t}\n"));
    assert_eq!(code, 400, "{r}");
    let msg = r["error"].as_str().unwrap();
    assert!(msg.contains("line 2") && msg.contains("bad_metric{a=}"), "{msg}");
    let (code, r) = import(&p, &format!("good_metric 1 {t}\nno_ts{{x=\"y\"}} 2\n"));
    assert_eq!(code, 400, "{r}");
    let msg = r["error"].as_str().unwrap();
    assert!(msg.contains(r#"no_ts{x="y"}"#) && msg.contains("no timestamp"), "{msg}");
    let (code, r) = import(&p, &format!("good_metric 1 {t}\nancient 2 {}\n", t - 30 * 86_400_000));
    assert_eq!(code, 400, "{r}");
    let msg = r["error"].as_str().unwrap();
    assert!(msg.contains("ancient") && msg.contains("retention"), "{msg}");
    assert_eq!(value_at(&p, "good_metric", t), serde_json::json!([]), "nothing stored");
}
