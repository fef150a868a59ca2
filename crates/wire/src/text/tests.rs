//! Text exposition parsing, data-driven: payload in, rendered batch (or error) out.

use std::fmt::Write as _;

use model::{Interner, Labels};

use super::*;

fn render(b: &WriteBatch) -> String {
    let mut s = String::new();
    for w in &b.series {
        write!(s, "{}", w.labels).unwrap();
        for x in &w.samples {
            write!(s, " {:?}@{}", x.v, x.t).unwrap();
        }
        for e in &w.exemplars {
            write!(s, " ex{}{:?}@{}", e.labels, e.v, e.t).unwrap();
        }
        s.push('\n');
    }
    for m in &b.metadata {
        writeln!(s, "meta {} {} {:?} {:?}", m.metric_family, m.kind.as_str(), m.help, m.unit)
            .unwrap();
    }
    s
}

fn check_with(format: TextFormat, extra: &[(&str, &str)], input: &str, expected: &str) {
    let opts = TextOptions {
        extra_labels: Labels::from_pairs(extra.iter().copied()).unwrap(),
        ..TextOptions::new(format, 1000)
    };
    let got = match parse_text(input.as_bytes(), &opts, &Interner::new()) {
        Ok(b) => render(&b),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got.trim_end(), expected.trim(), "\n--- got:\n{got}");
}

fn check(input: &str, expected: &str) {
    check_with(TextFormat::Prometheus, &[], input, expected);
}

fn check_om(input: &str, expected: &str) {
    check_with(TextFormat::OpenMetrics, &[], input, expected);
}

#[test]
fn prometheus_text_families() {
    check(
        r##"
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# A normal comment.
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
metric_without_timestamp_and_labels 12.47
something_weird{problem="division by zero"} +Inf -3982045
# HELP rpc_duration_seconds A summary\nwith \\ escapes.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} NaN
rpc_duration_seconds_sum 1.7560473e+07
# TYPE h histogram
h_bucket{le="+Inf",} -Inf
# TYPE u untyped
u{ a = "1" , b="" } 0
"##,
        r##"
http_requests_total{code="200", method="post"} 1027.0@1395066363000
http_requests_total{code="400", method="post"} 3.0@1395066363000
msdos_file_access_time_seconds{error="Cannot find file:\n\"FILE.TXT\"", path="C:\\DIR\\FILE.TXT"} 1458255915.0@1000
metric_without_timestamp_and_labels{} 12.47@1000
something_weird{problem="division by zero"} inf@-3982045
rpc_duration_seconds{quantile="0.5"} NaN@1000
rpc_duration_seconds_sum{} 17560473.0@1000
h_bucket{le="+Inf"} -inf@1000
u{a="1"} 0.0@1000
meta http_requests_total counter "The total number of HTTP requests." ""
meta rpc_duration_seconds summary "A summary\nwith \\ escapes." ""
meta h histogram "" ""
meta u unknown "" ""
"##,
    );
}

#[test]
fn repeated_series_share_one_write_and_utf8_names() {
    check(
        "up 1 10\nup 0 20\n{\"my.metric\", \"label.with.dots\"=\"x\"} 2\n",
        r##"
up{} 1.0@10 0.0@20
my.metric{label.with.dots="x"} 2.0@1000
"##,
    );
}

#[test]
fn prometheus_format_is_lenient_about_blanks() {
    check(
        "  a {x=\"1\"} 1\n\tb{x=\"2\"}2\n  # TYPE a gauge\nc\t3\t4\n",
        r##"
a{x="1"} 1.0@1000
b{x="2"} 2.0@1000
c{} 3.0@4
meta a gauge "" ""
"##,
    );
    check_om(" a 1\n# EOF", r##"error: text format line 1: expected a metric name: " a 1""##);
    check_om(
        "a{x=\"1\"}2\n# EOF",
        r##"error: text format line 1: expected whitespace and a value after the metric: "a{x=\"1\"}2""##,
    );
    check(
        "a ",
        r##"error: text format line 1: expected whitespace and a value after the metric: "a ""##,
    );
}

#[test]
fn grouping_labels() {
    let input = "a{job=\"x\"} 1\nb 2\n";
    check_with(
        TextFormat::Prometheus,
        &[("job", "x"), ("instance", "i")],
        input,
        r##"
a{instance="i", job="x"} 1.0@1000
b{instance="i", job="x"} 2.0@1000
"##,
    );
    check_with(
        TextFormat::Prometheus,
        &[("job", "y")],
        input,
        r##"error: text format line 1: label job="x" conflicts with grouping label job="y""##,
    );
}

#[test]
fn malformed_lines_name_line_and_content() {
    check(
        "ok 1\nbad{a=\"1\" 2\n",
        r##"error: text format line 2: expected ',' or '}' at "2": "bad{a=\"1\" 2""##,
    );
    check(
        "x{a=\"1\",a=\"2\"} 1",
        r##"error: text format line 1: duplicate label name "a": "x{a=\"1\",a=\"2\"} 1""##,
    );
    check("x 1 2 3", r##"error: text format line 1: unexpected "3" after the sample: "x 1 2 3""##);
    check("x one", r##"error: text format line 1: invalid sample value "one": "x one""##);
    check(
        "x",
        r##"error: text format line 1: expected whitespace and a value after the metric: "x""##,
    );
    check("{a=\"b\"} 1", r##"error: text format line 1: expected a metric name: "{a=\"b\"} 1""##);
    check("x{a=\"b} 1", r##"error: text format line 1: unterminated quoted string: "x{a=\"b} 1""##);
    check(
        "x{1a=\"b\"} 1",
        r##"error: text format line 1: invalid label name at "1a=\"b\"} 1": "x{1a=\"b\"} 1""##,
    );
    check("x 1 1.5", r##"error: text format line 1: invalid timestamp "1.5": "x 1 1.5""##);
    check(
        "# TYPE x counter\n# TYPE x gauge",
        r##"error: text format line 2: second TYPE line for metric x: "# TYPE x gauge""##,
    );
    check(
        "# TYPE x foo",
        r##"error: text format line 1: unknown metric type "foo": "# TYPE x foo""##,
    );
    check(
        "# TYPE 1x counter",
        r##"error: text format line 1: invalid metric name "1x" in # TYPE: "# TYPE 1x counter""##,
    );
    check(
        "x{__name__=\"y\"} 1",
        r##"error: text format line 1: label __name__ given besides the metric name: "x{__name__=\"y\"} 1""##,
    );
}

#[test]
fn invalid_utf8_line() {
    let opts = TextOptions::new(TextFormat::Prometheus, 0);
    let got = parse_text(b"ok 1\nx{a=\"\xff\"} 1\n", &opts, &Interner::new());
    assert_eq!(
        got.unwrap_err().to_string(),
        "text format line 2: line is not valid UTF-8: \"x{a=\\\"\u{fffd}\\\"} 1\""
    );
}

#[test]
fn openmetrics() {
    check_om(
        r##"# TYPE acme_http_router_request_seconds summary
# UNIT acme_http_router_request_seconds seconds
# HELP acme_http_router_request_seconds Latency \"quoted\".
acme_http_router_request_seconds_sum{path="/api/v1",method="GET"} 9036.32
acme_http_router_request_seconds_count{path="/api/v1",method="GET"} 807283.0
acme_http_router_request_seconds_created{path="/api/v1",method="GET"} 1605281325.0
# TYPE foo counter
foo_total 17.0 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67
foo_created 1520430000.123
# TYPE hh histogram
hh_bucket{le="0.1"} 8 # {id="a"} 0.05 1520879607.5
# TYPE s stateset
s{s="a"} 1
# TYPE i info
i_info{v="1.0"} 1
# EOF
"##,
        r##"
acme_http_router_request_seconds_sum{method="GET", path="/api/v1"} 9036.32@1000
acme_http_router_request_seconds_count{method="GET", path="/api/v1"} 807283.0@1000
foo_total{} 17.0@1520879607789 ex{trace_id="KOO5S4vxi0o"}0.67@1520879607789
hh_bucket{le="0.1"} 8.0@1000 ex{id="a"}0.05@1520879607500
s{s="a"} 1.0@1000
i_info{v="1.0"} 1.0@1000
meta acme_http_router_request_seconds summary "Latency \"quoted\"." "seconds"
meta foo counter "" ""
meta hh histogram "" ""
meta s stateset "" ""
meta i info "" ""
"##,
    );
    check_om(
        "x 1\n",
        r##"error: text format line 2: OpenMetrics payload does not end with # EOF: """##,
    );
    check_om(
        "x 1\n# EOF\ny 2\n",
        r##"error: text format line 3: content after # EOF (line 2): "y 2""##,
    );
    check_om(
        "# random comment\n# EOF",
        r##"error: text format line 1: unknown descriptor # random: "# random comment""##,
    );
    check_om(
        "x 1 # {a=\"1\"}\n# EOF",
        r##"error: text format line 1: expected a value after the exemplar labels: "x 1 # {a=\"1\"}""##,
    );
    check_om(
        "x 1 # bad\n# EOF",
        r##"error: text format line 1: unexpected "# bad" after the sample: "x 1 # bad""##,
    );
    check_om(
        "# TYPE x untyped\n# EOF",
        r##"error: text format line 1: unknown metric type "untyped": "# TYPE x untyped""##,
    );
    check(
        "x 1 # {a=\"1\"} 1",
        r##"error: text format line 1: unexpected "# {a=\"1\"} 1" after the sample: "x 1 # {a=\"1\"} 1""##,
    );
}

#[test]
fn limits() {
    let limits = DecodeLimits {
        max_labels_per_series: 2,
        max_label_name_length: 8,
        max_label_value_length: 3,
        max_samples_per_request: 3,
        max_series_per_request: 2,
    };
    let check = |input: &str, expected: &str| {
        let opts =
            TextOptions { limits: limits.clone(), ..TextOptions::new(TextFormat::Prometheus, 0) };
        let got = match parse_text(input.as_bytes(), &opts, &Interner::new()) {
            Ok(b) => render(&b),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got.trim_end(), expected.trim());
    };
    check(
        "a{x=\"1\"} 1\na{x=\"1\"} 2\nb 3",
        r##"
a{x="1"} 1.0@0 2.0@0
b{} 3.0@0
"##,
    );
    check(
        "a{x=\"1\",y=\"2\"} 1",
        r##"error: text format line 1: series has 3 labels, more than limits.max_labels_per_series=2: "a{x=\"1\",y=\"2\"} 1""##,
    );
    check(
        "a{abcdefghi=\"1\"} 1",
        r##"error: text format line 1: label name "abcdefghi" is 9 bytes long, more than limits.max_label_name_length=8: "a{abcdefghi=\"1\"} 1""##,
    );
    check(
        "a{x=\"1234\"} 1",
        r##"error: text format line 1: value of label "x" is 4 bytes long, more than limits.max_label_value_length=3: "a{x=\"1234\"} 1""##,
    );
    check("a 1\na 2\na 3\na 4", "error: request exceeds limits.max_samples_per_request=3");
    check("a 1\nb 2\nc 3", "error: request exceeds limits.max_series_per_request=2");
}

#[test]
fn content_types() {
    let f = TextFormat::from_content_type;
    assert_eq!(f("text/plain; version=0.0.4; charset=utf-8"), Ok(TextFormat::Prometheus));
    assert_eq!(f(""), Ok(TextFormat::Prometheus));
    assert_eq!(f("application/openmetrics-text; version=1.0.0"), Ok(TextFormat::OpenMetrics));
    assert_eq!(
        f("application/json").unwrap_err().to_string(),
        "unsupported content type \"application/json\""
    );
}
