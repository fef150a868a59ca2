//! The text exposition formats: Prometheus text 0.0.4 and OpenMetrics text 1.0, parsed into a
//! `WriteBatch` (as a Pushgateway-style push or a scrape would produce it).
//!
//! Every sample line becomes a float sample of the series named by the line (histograms and
//! summaries stay classic: one series per `_bucket`/quantile, `_sum`, `_count`). `# HELP`,
//! `# TYPE` and `# UNIT` become `MetricMetadata`. OpenMetrics exemplars are attached to their
//! series, and OpenMetrics `_created` samples of counters, histograms and summaries are skipped
//! (as Prometheus does by default). Any malformed line fails the whole payload with its line
//! number and content.

use std::borrow::Cow;
use std::collections::HashMap;

use model::{
    Exemplar, Interner, Labels, LabelsBuilder, METRIC_NAME, MetricMetadata, MetricType, Sample,
    SeriesWrite, Timestamp, WriteBatch,
};

use crate::{DecodeLimits, InvalidReason, WireError};

/// Which text format the payload is in (from the Content-Type the sender used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextFormat {
    /// `text/plain; version=0.0.4`: timestamps are integer milliseconds.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: timestamps are float seconds, the
    /// payload must end with `# EOF`, and samples may carry exemplars.
    OpenMetrics,
}

impl TextFormat {
    /// Reads a Content-Type header value: `application/openmetrics-text` is OpenMetrics;
    /// `text/plain` and a missing header are the Prometheus format.
    pub fn from_content_type(ct: &str) -> Result<TextFormat, WireError> {
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.is_empty() || media.eq_ignore_ascii_case("text/plain") {
            Ok(TextFormat::Prometheus)
        } else if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Ok(TextFormat::OpenMetrics)
        } else {
            Err(WireError::UnsupportedContentType(ct.chars().take(200).collect()))
        }
    }
}

/// How to turn a text payload into a batch.
#[derive(Clone, Debug)]
pub struct TextOptions {
    pub format: TextFormat,
    /// Labels added to every series (e.g. a Pushgateway grouping key). A sample that carries
    /// one of them with a different value is an error.
    pub extra_labels: Labels,
    /// Timestamp of samples that carry none, in milliseconds.
    pub default_timestamp: Timestamp,
    /// The same limits as remote write; here every violation fails the whole payload.
    pub limits: DecodeLimits,
}

impl TextOptions {
    /// Options with no grouping labels and default limits.
    pub fn new(format: TextFormat, default_timestamp: Timestamp) -> Self {
        TextOptions {
            format,
            extra_labels: Labels::empty(),
            default_timestamp,
            limits: DecodeLimits::default(),
        }
    }
}

/// Longest line content quoted in an error.
const MAX_QUOTED: usize = 200;

/// Parses a text exposition payload. Label strings are interned through `interner`.
pub fn parse_text(
    input: &[u8],
    opts: &TextOptions,
    interner: &Interner,
) -> Result<WriteBatch, WireError> {
    let mut p = Parser {
        opts,
        interner,
        batch: WriteBatch::default(),
        index: HashMap::new(),
        meta: Vec::new(),
        meta_index: HashMap::new(),
        family: None,
        samples: 0,
    };
    let mut eof_line = None;
    let mut line_no = 0;
    for raw in input.split(|&b| b == b'\n') {
        line_no += 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let err = |reason: &str| syntax(line_no, raw, reason);
        if let Some(eof) = eof_line {
            if raw.is_empty() {
                continue;
            }
            return Err(err(&format!("content after # EOF (line {eof})")));
        }
        let line = std::str::from_utf8(raw).map_err(|_| err("line is not valid UTF-8"))?;
        if line.trim().is_empty() {
            continue;
        }
        // The Prometheus format tolerates leading blanks; OpenMetrics does not.
        let line = match opts.format {
            TextFormat::Prometheus => line.trim_start_matches([' ', '\t']),
            TextFormat::OpenMetrics => line,
        };
        let res = if let Some(comment) = line.strip_prefix('#') {
            if opts.format == TextFormat::OpenMetrics && comment == " EOF" {
                eof_line = Some(line_no);
                Ok(())
            } else {
                p.comment(comment)
            }
        } else {
            p.sample_line(line)
        };
        match res {
            Ok(()) => {}
            Err(LineError::Syntax(reason)) => return Err(err(&reason)),
            Err(LineError::Limit(e)) => return Err(e),
            Err(LineError::Conflict { name, pushed, grouping }) => {
                return Err(WireError::GroupingLabelConflict {
                    line: line_no,
                    name,
                    pushed,
                    grouping,
                });
            }
        }
    }
    if opts.format == TextFormat::OpenMetrics && eof_line.is_none() {
        return Err(syntax(line_no, b"", "OpenMetrics payload does not end with # EOF"));
    }
    p.batch.metadata = p.meta;
    Ok(p.batch)
}

fn syntax(line: usize, raw: &[u8], reason: &str) -> WireError {
    let mut content = String::from_utf8_lossy(&raw[..raw.len().min(MAX_QUOTED)]).into_owned();
    if raw.len() > MAX_QUOTED {
        content.push_str("...");
    }
    WireError::TextSyntax { line, content, reason: reason.to_string() }
}

enum LineError {
    Syntax(String),
    Limit(WireError),
    Conflict { name: String, pushed: String, grouping: String },
}

impl From<String> for LineError {
    fn from(s: String) -> Self {
        LineError::Syntax(s)
    }
}

impl From<&str> for LineError {
    fn from(s: &str) -> Self {
        LineError::Syntax(s.to_string())
    }
}

struct Parser<'o> {
    opts: &'o TextOptions,
    interner: &'o Interner,
    batch: WriteBatch,
    /// Series already in the batch, so repeated lines of one series share a `SeriesWrite`.
    index: HashMap<Labels, usize>,
    meta: Vec<MetricMetadata>,
    /// Position in `meta` of each family, and whether its HELP, TYPE and UNIT were seen.
    meta_index: HashMap<String, (usize, [bool; 3])>,
    /// The family of the last `# TYPE` line and its type.
    family: Option<(String, MetricType)>,
    samples: usize,
}

impl Parser<'_> {
    fn comment(&mut self, c: &str) -> Result<(), LineError> {
        let om = self.opts.format == TextFormat::OpenMetrics;
        let Some(rest) = c.strip_prefix(' ') else {
            return if om {
                Err("comment must be # HELP, # TYPE, # UNIT or # EOF".into())
            } else {
                Ok(())
            };
        };
        let (keyword, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        match keyword {
            "HELP" | "TYPE" | "UNIT" => {}
            _ if om => return Err(format!("unknown descriptor # {keyword}").into()),
            _ => return Ok(()), // an ordinary comment
        }
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        if !is_metric_name(name) {
            return Err(format!("invalid metric name {name:?} in # {keyword}").into());
        }
        let next = self.meta.len();
        let (i, seen) = self.meta_index.entry(name.to_string()).or_insert((next, [false; 3]));
        if *i == next {
            self.meta
                .push(MetricMetadata { metric_family: name.to_string(), ..Default::default() });
        }
        let k = match keyword {
            "HELP" => 0,
            "TYPE" => 1,
            _ => 2,
        };
        if std::mem::replace(&mut seen[k], true) {
            return Err(format!("second {keyword} line for metric {name}").into());
        }
        let m = &mut self.meta[*i];
        match keyword {
            "HELP" => m.help = unescape(text, om).into_owned(),
            "TYPE" => {
                m.kind = metric_type(text.trim(), om)
                    .ok_or_else(|| format!("unknown metric type {:?}", text.trim()))?;
                self.family = Some((name.to_string(), m.kind));
            }
            _ => m.unit = text.to_string(),
        }
        Ok(())
    }

    fn sample_line(&mut self, line: &str) -> Result<(), LineError> {
        let om = self.opts.format == TextFormat::OpenMetrics;
        let mut c = Cursor { s: line, pos: 0 };
        let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        let mut name = c.metric_name();
        // The Prometheus format allows blanks between the name and the label set.
        let mut blank = if om { false } else { c.skip_ws() };
        if c.peek() == Some(b'{') {
            c.pos += 1;
            c.label_set(&mut pairs, name.is_none().then_some(&mut name))?;
            blank = c.skip_ws() || !om;
        } else if !blank {
            blank = c.skip_ws();
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err("expected a metric name".into());
        };
        if !blank || c.at_end() {
            return Err("expected whitespace and a value after the metric".into());
        }
        let value = parse_value(c.token())?;
        let mut t = self.opts.default_timestamp;
        c.skip_ws();
        if !c.at_end() && c.peek() != Some(b'#') {
            t = parse_timestamp(c.token(), om)?;
            c.skip_ws();
        }
        let mut exemplar = None;
        if !c.at_end() {
            if !om || !c.rest().starts_with("# {") {
                return Err(format!("unexpected {:?} after the sample", c.rest()).into());
            }
            c.pos += 3;
            let mut ex_pairs = Vec::new();
            c.label_set(&mut ex_pairs, None)?;
            if !c.skip_ws() {
                return Err("expected a value after the exemplar labels".into());
            }
            let v = parse_value(c.token())?;
            c.skip_ws();
            let et = if c.at_end() { t } else { parse_timestamp(c.token(), true)? };
            c.skip_ws();
            if !c.at_end() {
                return Err(format!("unexpected {:?} after the exemplar", c.rest()).into());
            }
            exemplar = Some(Exemplar { labels: self.labels(&ex_pairs, None)?, t: et, v });
        }
        if om && self.is_created(&name) {
            return Ok(());
        }
        let labels = self.labels(&pairs, Some(&name))?;
        if let Some(reason) = over_limits(&labels, &self.opts.limits) {
            return Err(reason.to_string().into());
        }
        let limits = &self.opts.limits;
        if self.samples >= limits.max_samples_per_request {
            return Err(LineError::Limit(WireError::LimitExceeded {
                limit: "limits.max_samples_per_request",
                max: limits.max_samples_per_request,
            }));
        }
        let i = match self.index.get(&labels) {
            Some(&i) => i,
            None if self.batch.series.len() >= limits.max_series_per_request => {
                return Err(LineError::Limit(WireError::LimitExceeded {
                    limit: "limits.max_series_per_request",
                    max: limits.max_series_per_request,
                }));
            }
            None => {
                self.batch
                    .series
                    .push(SeriesWrite { labels: labels.clone(), ..Default::default() });
                self.index.insert(labels, self.batch.series.len() - 1);
                self.batch.series.len() - 1
            }
        };
        let w = &mut self.batch.series[i];
        w.samples.push(Sample { t, v: value });
        self.samples += 1;
        w.exemplars.extend(exemplar);
        Ok(())
    }

    /// OpenMetrics `<family>_created` samples of counters, histograms and summaries.
    fn is_created(&self, name: &str) -> bool {
        let Some((family, kind)) = &self.family else { return false };
        matches!(
            kind,
            MetricType::Counter
                | MetricType::Histogram
                | MetricType::Summary
                | MetricType::GaugeHistogram
        ) && name.strip_prefix(family.as_str()) == Some("_created")
    }

    /// Builds a label set, adding the grouping labels when `name` is given (a series).
    fn labels(
        &self,
        pairs: &[(Cow<'_, str>, Cow<'_, str>)],
        name: Option<&str>,
    ) -> Result<Labels, LineError> {
        let mut b = LabelsBuilder::new();
        let i = self.interner;
        if let Some(n) = name {
            if pairs.iter().any(|(k, _)| k == METRIC_NAME) {
                return Err("label __name__ given besides the metric name".into());
            }
            b.push_interned(i.intern(METRIC_NAME), i.intern(n));
        }
        for (k, v) in pairs {
            if name.is_some()
                && let Some(g) = self.opts.extra_labels.get(k)
            {
                if g != v && !v.is_empty() {
                    return Err(LineError::Conflict {
                        name: k.to_string(),
                        pushed: v.to_string(),
                        grouping: g.to_string(),
                    });
                }
                continue;
            }
            b.push_interned(i.intern(k), i.intern(v));
        }
        if name.is_some() {
            for l in self.opts.extra_labels.iter() {
                b.push_interned(i.intern(&l.name), i.intern(&l.value));
            }
        }
        b.build().map_err(|e| LineError::Syntax(e.to_string()))
    }
}

/// The per-series limits remote write applies, on a built label set.
fn over_limits(labels: &Labels, l: &DecodeLimits) -> Option<InvalidReason> {
    if labels.len() > l.max_labels_per_series {
        return Some(InvalidReason::TooManyLabels {
            count: labels.len(),
            limit: l.max_labels_per_series,
        });
    }
    labels.iter().find_map(|x| {
        if x.name.len() > l.max_label_name_length {
            Some(InvalidReason::LabelNameTooLong {
                name: x.name.chars().take(64).collect(),
                length: x.name.len(),
                limit: l.max_label_name_length,
            })
        } else if x.value.len() > l.max_label_value_length {
            Some(InvalidReason::LabelValueTooLong {
                name: x.name.chars().take(64).collect(),
                length: x.value.len(),
                limit: l.max_label_value_length,
            })
        } else {
            None
        }
    })
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    /// Skips blanks; true if there were any.
    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    /// Everything up to the next blank.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while !matches!(self.peek(), None | Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn ident(&mut self, colon: bool) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            let ok = b.is_ascii_alphabetic()
                || b == b'_'
                || (colon && b == b':')
                || (self.pos > start && b.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn metric_name(&mut self) -> Option<Cow<'a, str>> {
        let n = self.ident(true);
        (!n.is_empty()).then_some(Cow::Borrowed(n))
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes (others kept as written).
    fn quoted(&mut self) -> Result<Cow<'a, str>, LineError> {
        if self.peek() != Some(b'"') {
            return Err("expected '\"'".into());
        }
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".into()),
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 1;
                    if self.at_end() {
                        return Err("unterminated quoted string".into());
                    }
                    // Step over the escaped character (which may be multi-byte).
                    let ch = self.rest().chars().next().map_or(1, char::len_utf8);
                    self.pos += ch;
                }
                Some(b'"') => break,
                Some(_) => {
                    let ch = self.rest().chars().next().map_or(1, char::len_utf8);
                    self.pos += ch;
                }
            }
        }
        let raw = &self.s[start..self.pos];
        self.pos += 1;
        Ok(if escaped { Cow::Owned(unescape_value(raw)) } else { Cow::Borrowed(raw) })
    }

    /// The inside of `{...}` after the brace. When `name` is given, a lone quoted string is
    /// the metric name (the UTF-8 syntax `{"my.metric", a="b"}`).
    fn label_set(
        &mut self,
        pairs: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
        mut name: Option<&mut Option<Cow<'a, str>>>,
    ) -> Result<(), LineError> {
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let key = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                let k = self.ident(false);
                if k.is_empty() {
                    return Err(format!("invalid label name at {:?}", self.rest()).into());
                }
                Cow::Borrowed(k)
            };
            self.skip_ws();
            if self.peek() == Some(b'=') {
                self.pos += 1;
                self.skip_ws();
                let v = self.quoted()?;
                if pairs.iter().any(|(k, _)| *k == key) {
                    return Err(format!("duplicate label name {key:?}").into());
                }
                pairs.push((key, v));
            } else if let Some(n) = name.as_deref_mut().filter(|n| n.is_none()) {
                *n = Some(key);
            } else {
                return Err(format!("expected '=' after label name {key:?}").into());
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected ',' or '}}' at {:?}", self.rest()).into()),
            }
        }
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut c = Cursor { s, pos: 0 };
    !s.is_empty() && c.ident(true).len() == s.len()
}

fn unescape_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars();
    while let Some(ch) = it.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// HELP text: `\\` and `\n` escapes (and `\"` in OpenMetrics).
fn unescape(text: &str, om: bool) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    if om {
        return Cow::Owned(unescape_value(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut it = text.chars().peekable();
    while let Some(ch) = it.next() {
        match (ch, it.peek()) {
            ('\\', Some('n')) => {
                out.push('\n');
                it.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                it.next();
            }
            _ => out.push(ch),
        }
    }
    Cow::Owned(out)
}

fn metric_type(s: &str, om: bool) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" if !om => MetricType::Unknown,
        "unknown" if om => MetricType::Unknown,
        "gaugehistogram" if om => MetricType::GaugeHistogram,
        "stateset" if om => MetricType::StateSet,
        "info" if om => MetricType::Info,
        _ => return None,
    })
}

fn parse_value(tok: &str) -> Result<f64, LineError> {
    // Rust accepts what Go's ParseFloat does for Prometheus' purposes (NaN, +Inf, -Inf, Inf,
    // exponents), but also "infinity"/"nan" in any case, which is harmless.
    let v = tok.parse::<f64>().map_err(|_| format!("invalid sample value {tok:?}"))?;
    Ok(v)
}

fn parse_timestamp(tok: &str, om: bool) -> Result<Timestamp, LineError> {
    if om {
        let secs: f64 = tok.parse().map_err(|_| format!("invalid timestamp {tok:?}"))?;
        let ms = (secs * 1000.0).round();
        if !ms.is_finite() || ms.abs() >= 9.2e18 {
            return Err(format!("timestamp {tok:?} out of range").into());
        }
        Ok(ms as i64)
    } else {
        tok.parse::<i64>().map_err(|_| format!("invalid timestamp {tok:?}").into())
    }
}

#[cfg(test)]
mod tests;
