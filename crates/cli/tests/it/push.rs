//! Pushgateway-style pushes: every metric type, grouping labels (plain and `@base64`), tenants,
//! content types, errors naming the line; and the same series a real Pushgateway exposes for
//! the same pushes.

use model::Labels;

use crate::{Daemon, Promlake, client, json};

/// Sends one push; answers `status` and, on error, the error message.
fn push(url: &str, method: &str, path: &str, ct: &str, tenant: Option<&str>, body: &str) -> String {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = client().request(method, format!("{url}{path}")).body(body.to_string());
    if !ct.is_empty() {
        r = r.header("content-type", ct);
    }
    if let Some(t) = tenant {
        r = r.header("x-scope-orgid", t);
    }
    let r = r.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    if status == 200 {
        assert_eq!(text, "", "success has an empty body, as with the Pushgateway");
        return "200".into();
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => format!("{status} {}", v["error"].as_str().unwrap_or(&text)),
        Err(_) => format!("{status} {}", text.trim()),
    }
}

/// The series of `selector` in promlake now, one `labels value` row each, sorted.
fn stored(p: &Promlake, tenant: Option<&str>, selector: &str) -> Vec<String> {
    let mut r = client().get(format!("{}/api/v1/query", p.url)).query(&[("query", selector)]);
    if let Some(t) = tenant {
        r = r.header("x-scope-orgid", t);
    }
    let v = json(&r.send().unwrap().text().unwrap());
    assert_eq!(v["status"], "success", "{selector}: {v}");
    let mut rows: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pairs = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()));
            let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            format!("{} {value}", Labels::from_pairs(pairs).unwrap())
        })
        .collect();
    rows.sort();
    rows
}

/// Pushes `body` with `PUT` to `path` and compares the status (plus error message) and the
/// stored series of `{job="<job>"}` with `expected`.
fn check(p: &Promlake, path: &str, ct: &str, body: &str, job: &str, expected: &str) {
    let mut got = vec![push(&p.url, "PUT", path, ct, None, body)];
    got.extend(stored(p, None, &format!("{{job={job:?}}}")));
    let want: Vec<&str> = expected.trim().lines().map(str::trim).collect();
    assert_eq!(got, want, "push to {path}:\n{body}");
}

const TYPES: &str = "\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{code=\"200\"} 1027
http_requests_total{code=\"500\"} 3
# TYPE temperature gauge
temperature -3.5
untyped_thing 42
# TYPE rpc_seconds histogram
rpc_seconds_bucket{le=\"0.1\"} 3
rpc_seconds_bucket{le=\"1\"} 5
rpc_seconds_bucket{le=\"+Inf\"} 6
rpc_seconds_sum 2.5
rpc_seconds_count 6
# TYPE lat summary
lat{quantile=\"0.5\"} 0.2
lat{quantile=\"0.99\"} 0.9
lat_sum 10
lat_count 40
";

#[test]
fn pushes_store_every_type_with_grouping_labels() {
    let p = Promlake::start(&[]);
    check(
        &p,
        "/metrics/job/types/instance/h1",
        "text/plain; version=0.0.4",
        TYPES,
        "types",
        r#"
        200
        http_requests_total{code="200", instance="h1", job="types"} 1027
        http_requests_total{code="500", instance="h1", job="types"} 3
        lat_count{instance="h1", job="types"} 40
        lat_sum{instance="h1", job="types"} 10
        lat{instance="h1", job="types", quantile="0.5"} 0.2
        lat{instance="h1", job="types", quantile="0.99"} 0.9
        rpc_seconds_bucket{instance="h1", job="types", le="+Inf"} 6
        rpc_seconds_bucket{instance="h1", job="types", le="0.1"} 3
        rpc_seconds_bucket{instance="h1", job="types", le="1"} 5
        rpc_seconds_count{instance="h1", job="types"} 6
        rpc_seconds_sum{instance="h1", job="types"} 2.5
        temperature{instance="h1", job="types"} -3.5
        untyped_thing{instance="h1", job="types"} 42
    "#,
    );
    // curl --data-binary sends a form Content-Type; the Pushgateway reads it as text, so do we.
    check(
        &p,
        "/metrics/job/curl",
        "application/x-www-form-urlencoded",
        "some_metric 3.14\n",
        "curl",
        r#"
        200
        some_metric{job="curl"} 3.14
    "#,
    );
    // `@base64` values may hold slashes; "=" alone is the empty value (that is, no label).
    check(
        &p,
        "/metrics/job@base64/YS9i/path@base64/L3Zhci9sb2c/empty@base64/=",
        "",
        "b64 1\n",
        "a/b",
        r#"
        200
        b64{job="a/b", path="/var/log"} 1
    "#,
    );
    check(
        &p,
        "/metrics/job/om",
        "application/openmetrics-text; version=1.0.0",
        "# TYPE om_events counter\nom_events_total 7\n# EOF\n",
        "om",
        r#"
        200
        om_events_total{job="om"} 7
    "#,
    );
    // Every failure stores nothing and says why.
    check(
        &p,
        "/metrics/job/bad",
        "",
        "ok_metric 1\nok_metric{a=\"1\"} 2\nbad metric here\n",
        "bad",
        r#"
        400 text format line 3: invalid sample value "metric": "bad metric here"
    "#,
    );
    // Grouping labels win over pushed ones, and a repeated path label keeps its last value.
    check(
        &p,
        "/metrics/job/win/instance/x/a/1/a/2",
        "",
        "m{job=\"other\",instance=\"z\"} 1\n",
        "win",
        r#"
        200
        m{a="2", instance="x", job="win"} 1
    "#,
    );
    check(
        &p,
        "/metrics/job/bad/instance",
        "",
        "m 1\n",
        "bad",
        r#"
        400 invalid push path /metrics/job/bad/instance: odd number of components in the label path
    "#,
    );
    check(
        &p,
        "/metrics/job/bad/__x/y",
        "",
        "m 1\n",
        "bad",
        r#"
        400 invalid push path /metrics/job/bad/__x/y: improper label name "__x"
    "#,
    );
    check(
        &p,
        "/metrics/job/bad",
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        "m 1\n",
        "bad",
        r#"
        415 unsupported Content-Type "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited": push text exposition format (text/plain) or OpenMetrics
    "#,
    );
    check(
        &p,
        "/metrics/job/bad",
        "application/openmetrics-text",
        "m 1\n",
        "bad",
        r#"
        400 text format line 2: OpenMetrics payload does not end with # EOF: ""
    "#,
    );
}

#[test]
fn post_and_tenants_and_methods() {
    let p = Promlake::start(&[]);
    assert_eq!(
        push(&p.url, "POST", "/metrics/job/t/instance/x", "", Some("team-a"), "m 1\n"),
        "200"
    );
    assert_eq!(push(&p.url, "POST", "/metrics/job/t/instance/x", "", None, "m 2\n"), "200");
    assert_eq!(stored(&p, Some("team-a"), "m"), [r#"m{instance="x", job="t"} 1"#]);
    assert_eq!(stored(&p, None, "m"), [r#"m{instance="x", job="t"} 2"#]);
    assert_eq!(
        push(&p.url, "POST", "/metrics/job/t", "", Some("no/slash"), "m 1\n"),
        "400 X-Scope-OrgID: invalid tenant id \"no/slash\": 1-150 characters of [a-zA-Z0-9_.-], not '.' or '..'"
    );
    assert!(push(&p.url, "DELETE", "/metrics/job/t", "", None, "").starts_with("405"));
    assert!(push(&p.url, "GET", "/metrics/job/t", "", None, "").starts_with("405"));
    // A push with its own timestamp keeps it.
    let t = crate::now_ms() - 30_000;
    assert_eq!(
        push(&p.url, "PUT", "/metrics/job/ts", "", None, &format!("stamped 5 {t}\n")),
        "200"
    );
    let (_, body) = p.get(&format!("/api/v1/query?query=timestamp(stamped)&time={}", t / 1000 + 1));
    assert_eq!(json(&body)["data"]["result"][0]["value"][1], format!("{}", t as f64 / 1000.0));
}

/// What a real Pushgateway exposes for a push, as rows like [`stored`]'s: its own metrics and
/// per-group `push_time_seconds`/`push_failure_time_seconds` left out, `instance=""` dropped.
fn pushgateway_rows(pg: &Daemon, job: &str) -> Vec<String> {
    let body = client().get(format!("{}/metrics", pg.url)).send().unwrap().text().unwrap();
    let opts = wire::TextOptions::new(wire::TextFormat::Prometheus, 0);
    let batch = wire::parse_text(body.as_bytes(), &opts, &model::Interner::new()).unwrap();
    let mut rows: Vec<String> = batch
        .series
        .iter()
        .filter(|s| s.labels.get("job") == Some(job))
        .filter(|s| {
            !matches!(
                s.labels.metric_name(),
                Some("push_time_seconds" | "push_failure_time_seconds")
            )
        })
        .map(|s| format!("{} {}", s.labels, s.samples[0].v))
        .collect();
    rows.sort();
    rows
}

#[test]
fn same_series_as_a_real_pushgateway() {
    let p = Promlake::start(&[]);
    let pg = Daemon::start(
        "prometheus-pushgateway",
        |_, port| vec![format!("--web.listen-address=127.0.0.1:{port}")],
        "/-/ready",
    );
    for (path, job, body) in [
        ("/metrics/job/cmp/instance/h1", "cmp", TYPES),
        (
            "/metrics/job/cmp2",
            "cmp2",
            "# TYPE g gauge\ng{a=\"x\"} 1.5\ng{a=\"y\"} -2\nplain 1e+06\n",
        ),
        ("/metrics/job@base64/Y29tcC8z/zone@base64/ZXUvMQ", "comp/3", "z 3\n"),
        ("/metrics/job/cmp4/instance/x/a/1/a/2", "cmp4", "m{job=\"other\",instance=\"z\"} 1\n"),
    ] {
        for method in ["PUT", "POST"] {
            let theirs = push(&pg.url, method, path, "", None, body);
            let ours = push(&p.url, method, path, "", None, body);
            assert_eq!(ours, theirs, "{method} {path}");
        }
        let theirs = pushgateway_rows(&pg, job);
        assert!(!theirs.is_empty(), "the pushgateway exposes {job}");
        assert_eq!(stored(&p, None, &format!("{{job={job:?}}}")), theirs, "{path}");
    }
    // Both refuse a malformed line and a series pushed twice with 400.
    for bad in ["good 1\nthis is not a sample\n", "twice 1\ntwice 2\n"] {
        let theirs = push(&pg.url, "PUT", "/metrics/job/cmp_bad", "", None, bad);
        let ours = push(&p.url, "PUT", "/metrics/job/cmp_bad", "", None, bad);
        assert_eq!((&ours[..3], &theirs[..3]), ("400", "400"), "{bad:?}: {ours} / {theirs}");
    }
    // The one deliberate difference: promlake keeps pushed timestamps, the Pushgateway refuses.
    let stamped = format!("stamped 1 {}\n", crate::now_ms());
    assert!(push(&pg.url, "PUT", "/metrics/job/ts", "", None, &stamped).starts_with("400"));
    assert_eq!(push(&p.url, "PUT", "/metrics/job/ts", "", None, &stamped), "200");
}
