//! Parses promqltest scripts: `load`, `clear`, `eval` commands, series descriptions and the
//! `1+2x3` value expansion.

use std::sync::LazyLock;

use model::{FloatHistogram, Labels, Span};
use regex::Regex;

pub use crate::duration_expr::parse_duration;
use crate::error::{Error, Result};
use crate::float::parse_go_float;
use crate::histogram;

/// One point of an expanded value sequence.
#[derive(Clone, Debug, PartialEq)]
pub enum SeqValue {
    Omitted,
    Value(f64),
    Stale,
    Histogram(Box<FloatHistogram>),
}

/// A series description: labels and its values.
#[derive(Clone, Debug)]
pub struct SeriesDef {
    pub labels: Labels,
    pub values: Vec<SeqValue>,
}

/// How an annotation or error message must match.
#[derive(Clone, Debug)]
pub enum MsgMatch {
    Any,
    Exact(String),
    Regex(String),
}

#[derive(Clone, Debug)]
pub enum EvalKind {
    Instant { at: i64 },
    Range { start: i64, end: i64, step: i64 },
}

/// One `eval` command with everything it expects.
#[derive(Clone, Debug)]
pub struct EvalCmd {
    pub line: usize,
    pub text: String,
    pub query: String,
    pub kind: EvalKind,
    pub fail: Option<MsgMatch>,
    pub ordered: bool,
    pub warn: Vec<MsgMatch>,
    pub info: Vec<MsgMatch>,
    pub no_warn: bool,
    pub no_info: bool,
    pub expected: Vec<SeriesDef>,
    pub expected_scalar: Option<f64>,
    pub expected_string: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Command {
    Load { line: usize, interval: i64, series: Vec<SeriesDef>, with_nhcb: bool },
    Clear,
    Eval(Box<EvalCmd>),
}

static PAT_LOAD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").unwrap_or_else(|e| panic!("static regex: {e}"))
});
static PAT_INSTANT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static PAT_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .unwrap_or_else(|e| panic!("static regex: {e}"))
});
static PAT_EXPECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect\s+(fail|warn|info|no_warn|no_info|ordered)(?:\s+(regex|msg):(.*))?$")
        .unwrap_or_else(|e| panic!("static regex: {e}"))
});

fn err<T>(line: usize, msg: impl Into<String>) -> Result<T> {
    Err(Error::TestScript { line, msg: msg.into() })
}

/// A number as the test language writes it: Go ints (incl. hex) and floats, `Inf`, `NaN`.
pub fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    if body.starts_with(['+', '-']) {
        return None;
    }
    let v = parse_go_float(body)?;
    Some(if neg { -v } else { v })
}

/// Expands one item of a value sequence (`1`, `_`, `stale`, `1+2x3`, `_x3`, `3x2`).
fn expand_item(item: &str) -> Option<Vec<SeqValue>> {
    if item == "_" {
        return Some(vec![SeqValue::Omitted]);
    }
    if item == "stale" {
        return Some(vec![SeqValue::Stale]);
    }
    if let Some(n) = item.strip_prefix("_x") {
        let n: usize = n.parse().ok()?;
        return Some(vec![SeqValue::Omitted; n]);
    }
    let x = match item.rfind('x') {
        Some(x) if x > 0 && item[x + 1..].bytes().all(|b| b.is_ascii_digit()) => x,
        _ => return parse_number(item).map(|v| vec![SeqValue::Value(v)]),
    };
    let times: u64 = item[x + 1..].parse().ok()?;
    let body = &item[..x];
    if body == "stale" {
        return Some(vec![SeqValue::Stale; usize::try_from(times).ok()?.checked_add(1)?]);
    }
    // Split `a+b` / `a-b` at a sign that is not the first char nor part of an exponent.
    let bytes = body.as_bytes();
    let mut split = None;
    for i in (1..bytes.len()).rev() {
        if (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E') {
            split = Some(i);
            break;
        }
    }
    let (start, delta) = match split {
        Some(i) => (parse_number(&body[..i])?, parse_number(&body[i..])?),
        None => (parse_number(body)?, 0.0),
    };
    if times > 1_000_000 {
        return None;
    }
    let mut out = Vec::with_capacity(times as usize + 1);
    let mut v = start;
    for _ in 0..=times {
        out.push(SeqValue::Value(v));
        v += delta;
    }
    Some(out)
}

/// Splits a value list into items, keeping `{{...}}` histogram literals (and their
/// `{{..}}+{{..}}x3` expansions) whole.
fn split_items(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            if b[i..].starts_with(b"{{") {
                match s[i..].find("}}") {
                    Some(e) => i += e + 2,
                    None => i = b.len(),
                }
            } else {
                i += 1;
            }
        }
        out.push(&s[start..i]);
    }
    out
}

/// Parses a histogram literal's body (`schema:0 sum:5 count:4 buckets:[1 2 1] ...`).
fn parse_histogram(body: &str) -> Option<FloatHistogram> {
    let mut h = FloatHistogram::default();
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let (mut pos, mut neg): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':')?;
        let key = key.trim();
        let after = after.trim_start();
        let (val, next) = if let Some(list) = after.strip_prefix('[') {
            let (inner, next) = list.split_once(']')?;
            (inner, next)
        } else {
            match after.find(char::is_whitespace) {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        let nums = || -> Option<Vec<f64>> { val.split_whitespace().map(parse_number).collect() };
        match key {
            "schema" => h.schema = val.parse().ok()?,
            "sum" => h.sum = parse_number(val)?,
            "count" => h.count = parse_number(val)?,
            "z_bucket" => h.zero_count = parse_number(val)?,
            "z_bucket_w" => h.zero_threshold = parse_number(val)?,
            "buckets" => pos = nums()?,
            "n_buckets" => neg = nums()?,
            "offset" => offset = val.parse().ok()?,
            "n_offset" => n_offset = val.parse().ok()?,
            "custom_values" => h.custom_values = nums()?,
            "counter_reset_hint" => {
                h.counter_reset_hint = match val {
                    "unknown" => histogram::HINT_UNKNOWN,
                    "reset" => histogram::HINT_RESET,
                    "not_reset" => histogram::HINT_NOT_RESET,
                    "gauge" => histogram::HINT_GAUGE,
                    _ => return None,
                }
            }
            _ => return None,
        }
        rest = next.trim_start();
    }
    if !pos.is_empty() {
        h.positive_spans = vec![Span { offset, length: u32::try_from(pos.len()).ok()? }];
        h.positive_buckets = pos;
    }
    if !neg.is_empty() {
        h.negative_spans = vec![Span { offset: n_offset, length: u32::try_from(neg.len()).ok()? }];
        h.negative_buckets = neg;
    }
    Some(h)
}

/// Expands `{{a}}`, `{{a}}xN`, `{{a}}+{{b}}xN` and `{{a}}-{{b}}xN`.
fn expand_histogram_item(item: &str) -> Option<Vec<SeqValue>> {
    let first_end = item.find("}}")?;
    let a = parse_histogram(item.get(2..first_end)?)?;
    let rest = &item[first_end + 2..];
    if rest.is_empty() {
        return Some(vec![SeqValue::Histogram(Box::new(a))]);
    }
    if let Some(n) = rest.strip_prefix('x') {
        let n: usize = n.parse().ok()?;
        return Some(vec![SeqValue::Histogram(Box::new(a)); n.min(1_000_000) + 1]);
    }
    let sign = if rest.starts_with('+') {
        1.0
    } else if rest.starts_with('-') {
        -1.0
    } else {
        return None;
    };
    let rest = &rest[1..];
    let b_end = rest.find("}}")?;
    let b = parse_histogram(rest.get(2..b_end)?)?;
    let n: usize = rest[b_end + 2..].strip_prefix('x')?.parse().ok()?;
    let mut out = Vec::new();
    let mut cur = a;
    for _ in 0..=n.min(1_000_000) {
        out.push(SeqValue::Histogram(Box::new(cur.clone())));
        let hint = cur.counter_reset_hint;
        cur = histogram::add(&cur, &b, sign).ok()?;
        cur.counter_reset_hint = hint;
    }
    Some(out)
}

fn parse_values(s: &str, line: usize) -> Result<Vec<SeqValue>> {
    let mut out = Vec::new();
    for item in split_items(s) {
        let v =
            if item.starts_with("{{") { expand_histogram_item(item) } else { expand_item(item) };
        match v {
            Some(v) => out.extend(v),
            None => return err(line, format!("invalid value {item:?}")),
        }
    }
    Ok(out)
}

/// Reads a quoted string (", ' or `) starting at `s[0]`; returns the value and the rest.
fn read_quoted(s: &str) -> Option<(String, &str)> {
    let q = s.chars().next()?;
    if !matches!(q, '"' | '\'' | '`') {
        return None;
    }
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Some((out, &s[1 + i + 1..]));
        }
        if c == '\\' && q != '`' {
            let (_, e) = chars.next()?;
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'a' => out.push('\u{7}'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                'x' => {
                    let h: String = (0..2).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    out.push(char::from(u8::from_str_radix(&h, 16).ok()?));
                }
                'u' | 'U' => {
                    let n = if e == 'u' { 4 } else { 8 };
                    let h: String = (0..n).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    out.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
        }
    }
    None
}

fn is_ident_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// Parses `metric{a="b", ...} <values>` into labels and the unparsed rest.
pub fn parse_series_desc(s: &str, line: usize) -> Result<(Labels, &str)> {
    let s = s.trim_start();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let name_len = s
        .char_indices()
        .take_while(|&(i, c)| is_ident_char(c, i == 0))
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    if name_len > 0 {
        pairs.push(("__name__".into(), s[..name_len].to_string()));
    }
    let mut rest = &s[name_len..];
    if let Some(r) = rest.strip_prefix('{') {
        rest = r.trim_start();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let (name, r) = if let Some((q, r)) = read_quoted(rest) {
                (q, r)
            } else {
                let n = rest
                    .char_indices()
                    .take_while(|&(i, c)| is_ident_char(c, i == 0) && c != ':')
                    .map(|(i, c)| i + c.len_utf8())
                    .last()
                    .unwrap_or(0);
                if n == 0 {
                    return err(line, format!("bad series description {s:?}"));
                }
                (rest[..n].to_string(), &rest[n..])
            };
            let r = r.trim_start();
            if let Some(r) = r.strip_prefix('=') {
                let Some((value, r)) = read_quoted(r.trim_start()) else {
                    return err(line, format!("bad label value in {s:?}"));
                };
                pairs.push((name, value));
                rest = r.trim_start();
            } else {
                pairs.push(("__name__".into(), name));
                rest = r;
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
            }
        }
    }
    if name_len == 0 && !s.starts_with('{') {
        return err(line, format!("bad series description {s:?}"));
    }
    let labels =
        Labels::from_pairs(pairs).map_err(|e| Error::TestScript { line, msg: e.to_string() })?;
    Ok((labels, rest))
}

fn parse_series_line(s: &str, line: usize) -> Result<SeriesDef> {
    let (labels, rest) = parse_series_desc(s, line)?;
    let values = parse_values(rest, line)?;
    Ok(SeriesDef { labels, values })
}

fn parse_msg(kind: Option<&str>, text: Option<&str>) -> MsgMatch {
    match (kind, text) {
        (Some("msg"), Some(t)) => MsgMatch::Exact(t.trim().to_string()),
        (Some("regex"), Some(t)) => MsgMatch::Regex(t.trim().to_string()),
        _ => MsgMatch::Any,
    }
}

/// Parses a whole script into commands.
pub fn parse_script(input: &str) -> Result<Vec<Command>> {
    let lines: Vec<&str> = input
        .lines()
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { "" } else { l }
        })
        .collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        let lineno = i + 1;
        i += 1;
        if l.is_empty() {
            continue;
        }
        let word = l.split_whitespace().next().unwrap_or("");
        if word == "clear" {
            cmds.push(Command::Clear);
        } else if word.starts_with("load") {
            let Some(c) = PAT_LOAD.captures(l) else { return err(lineno, "bad load command") };
            let with_nhcb = c.get(1).is_some();
            let Some(interval) = c.get(2).and_then(|m| parse_duration(m.as_str())) else {
                return err(lineno, "bad load interval");
            };
            let mut series = Vec::new();
            while i < lines.len() && !lines[i].is_empty() {
                series.push(parse_series_line(lines[i], i + 1)?);
                i += 1;
            }
            cmds.push(Command::Load { line: lineno, interval, series, with_nhcb });
        } else if word.starts_with("eval") {
            let (modifier, kind, query) = if let Some(c) = PAT_INSTANT.captures(l) {
                let at = c.get(2).map(|m| m.as_str()).unwrap_or("0");
                let Some(at) = parse_duration(at) else { return err(lineno, "bad eval time") };
                (c.get(1).map(|m| m.as_str()), EvalKind::Instant { at }, c[3].to_string())
            } else if let Some(c) = PAT_RANGE.captures(l) {
                let (Some(start), Some(end), Some(step)) =
                    (parse_duration(&c[2]), parse_duration(&c[3]), parse_duration(&c[4]))
                else {
                    return err(lineno, "bad range eval times");
                };
                (
                    c.get(1).map(|m| m.as_str()),
                    EvalKind::Range { start, end, step },
                    c[5].to_string(),
                )
            } else {
                return err(lineno, format!("bad eval command {l:?}"));
            };
            let mut cmd = EvalCmd {
                line: lineno,
                text: l.to_string(),
                query,
                kind,
                fail: None,
                ordered: false,
                warn: Vec::new(),
                info: Vec::new(),
                no_warn: false,
                no_info: false,
                expected: Vec::new(),
                expected_scalar: None,
                expected_string: None,
            };
            match modifier {
                Some("fail") => cmd.fail = Some(MsgMatch::Any),
                Some("warn") => cmd.warn.push(MsgMatch::Any),
                Some("info") => cmd.info.push(MsgMatch::Any),
                Some("ordered") => cmd.ordered = true,
                _ => {}
            }
            while i < lines.len() && !lines[i].is_empty() {
                let d = lines[i];
                let dl = i + 1;
                i += 1;
                if let Some(m) = d.strip_prefix("expected_fail_message") {
                    cmd.fail = Some(MsgMatch::Exact(m.trim().to_string()));
                    continue;
                }
                if let Some(m) = d.strip_prefix("expected_fail_regexp") {
                    cmd.fail = Some(MsgMatch::Regex(m.trim().to_string()));
                    continue;
                }
                if d.starts_with("expect ") {
                    let Some(c) = PAT_EXPECT.captures(d) else {
                        return err(dl, format!("bad expect line {d:?}"));
                    };
                    let msg = parse_msg(c.get(2).map(|m| m.as_str()), c.get(3).map(|m| m.as_str()));
                    match &c[1] {
                        "fail" => cmd.fail = Some(msg),
                        "warn" => cmd.warn.push(msg),
                        "info" => cmd.info.push(msg),
                        "no_warn" => cmd.no_warn = true,
                        "no_info" => cmd.no_info = true,
                        _ => cmd.ordered = true,
                    }
                    continue;
                }
                if let Some(v) = parse_number(d) {
                    cmd.expected_scalar = Some(v);
                    continue;
                }
                if let Some((s, rest)) = read_quoted(d)
                    && rest.trim().is_empty()
                {
                    cmd.expected_string = Some(s);
                    continue;
                }
                cmd.expected.push(parse_series_line(d, dl)?);
            }
            cmds.push(Command::Eval(Box::new(cmd)));
        } else {
            return err(lineno, format!("unknown command {l:?}"));
        }
    }
    Ok(cmds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_expand(item: &str, expected: &[SeqValue]) {
        assert_eq!(expand_item(item).as_deref(), Some(expected), "{item}");
        assert!(expand_histogram_item("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}x2").is_some());
    }

    #[test]
    fn expands_values() {
        use SeqValue::*;
        check_expand("1+2x3", &[Value(1.0), Value(3.0), Value(5.0), Value(7.0)]);
        check_expand("-1-1x2", &[Value(-1.0), Value(-2.0), Value(-3.0)]);
        check_expand("5x2", &[Value(5.0), Value(5.0), Value(5.0)]);
        check_expand("_x2", &[Omitted, Omitted]);
        check_expand("1.5E+2", &[Value(150.0)]);
        check_expand("1e2+1e1x1", &[Value(100.0), Value(110.0)]);
        check_expand("stale", &[Stale]);
    }

    #[test]
    fn parses_durations_and_series() {
        assert_eq!(parse_duration("1h5m"), Some(3_900_000));
        assert_eq!(parse_duration("10s53ms"), Some(10_053));
        assert_eq!(parse_duration("0"), Some(0));
        let (l, rest) = parse_series_desc(r#"foo{a="b", "c.d"="e\n"} 1 2"#, 1).unwrap();
        assert_eq!(l.to_string(), "foo{a=\"b\", c.d=\"e\\n\"}");
        assert_eq!(rest.trim(), "1 2");
        let (l, _) = parse_series_desc(r#"{"some.metric", a="b"} 1"#, 1).unwrap();
        assert_eq!(l.metric_name(), Some("some.metric"));
    }
}
