//! What remote write 1.0 and 2.0 share: the decode context (interning cache, limits, output),
//! label validation, and the messages with the same layout in both (Sample, Histogram).

use std::collections::HashMap;

use model::{
    FloatHistogram, Interner, Label, LabelStr, Labels, METRIC_NAME, MetricType, Sample,
    SeriesCache, SeriesKey, SeriesRef, Span, Timestamp,
};

use super::{DecodeLimits, DecodedWrite, InvalidReason, InvalidSeries, MAX_INVALID_DETAILS};
use crate::WireError;
use crate::pb::{I64, LEN, Reader, VARINT, zigzag32, zigzag64};

/// A string as sent: borrowed bytes not yet checked for UTF-8, and for remote write 2.0 its
/// index in the symbols table (so interning it is an array lookup, not a hash).
#[derive(Clone, Copy, Debug)]
pub(super) struct Str<'a> {
    pub(super) b: &'a [u8],
    pub(super) sym: u32,
}

impl<'a> Str<'a> {
    pub(super) const NO_SYMBOL: u32 = u32::MAX;

    pub(super) fn bytes(b: &'a [u8]) -> Self {
        Str { b, sym: Self::NO_SYMBOL }
    }
}

/// Label pairs as sent: borrowed, not yet validated.
pub(super) type RawPairs<'a> = Vec<(Str<'a>, Str<'a>)>;

/// Longest `labels_text` kept for a rejection, so that hostile input cannot make the error
/// list larger than the request.
const MAX_LABELS_TEXT: usize = 1024;

/// What a rejection dropped.
pub(super) enum Dropped {
    Series { samples: usize, histograms: usize, exemplars: usize },
    Exemplar,
    Metadata,
}

/// State of one request's decode.
pub(super) struct Ctx<'a, 'i> {
    interner: &'i Interner,
    pub(super) limits: &'i DecodeLimits,
    /// Per-request cache in front of the shared interner: one hash lookup and no lock for a
    /// string seen before in this request, and its UTF-8 checked once.
    cache: HashMap<&'a [u8], LabelStr, foldhash::fast::RandomState>,
    /// Remote write 2.0: the interned copy of each symbol, filled on first use.
    symbols: Vec<Option<LabelStr>>,
    /// The previous series' label set and its raw (name, value) bytes, aligned: senders send
    /// series of one target one after another, so most strings equal the previous series'
    /// string at the same position, and a byte comparison finds them without hashing.
    prev: Labels,
    prev_raw: Vec<(&'a [u8], &'a [u8])>,
    /// The tenant's series cache, when the caller gave one (see [`model::SeriesCache`]).
    series_cache: Option<&'i SeriesCache>,
    pub(super) out: DecodedWrite,
}

impl<'a, 'i> Ctx<'a, 'i> {
    pub(super) fn new(
        interner: &'i Interner,
        limits: &'i DecodeLimits,
        series_cache: Option<&'i SeriesCache>,
    ) -> Self {
        Ctx {
            interner,
            limits,
            series_cache,
            cache: HashMap::with_hasher(Default::default()),
            symbols: Vec::new(),
            prev: Labels::empty(),
            prev_raw: Vec::new(),
            out: DecodedWrite::default(),
        }
    }

    /// Looks a series up by its raw label bytes: a hit is a live series cached under the same
    /// 128-bit identity of these bytes (so bytes with that identity passed validation when it
    /// was cached; see [`model::SeriesCache`] for why the identity is trusted without reading
    /// the labels). Returns the identity too, for [`Ctx::key_after_miss`]; `None` when there is
    /// no cache.
    pub(super) fn cached(&mut self, raw: &[u8]) -> Option<(u128, Option<SeriesRef>)> {
        let cache = self.series_cache?;
        let id = cache.identity(raw);
        let hit = cache.get(id);
        if hit.is_some() {
            self.out.cache_hits += 1;
        }
        Some((id, hit))
    }

    /// The tenant's series cache, if the caller gave one.
    pub(super) fn series_cache(&self) -> Option<&'i SeriesCache> {
        self.series_cache
    }

    /// What storage is told about a series the cache missed: `Miss(id)` when its raw bytes
    /// are the canonical encoding of the labels just built (so it may be cached: one encoding,
    /// hence one entry, per series), else `None`.
    pub(super) fn key_after_miss(raw: &[u8], id: Option<u128>, labels: &Labels) -> SeriesKey {
        match id {
            Some(id) if is_canonical(raw, labels) => SeriesKey::Miss(id),
            _ => SeriesKey::None,
        }
    }

    /// Remote write 2.0: makes room to cache `n` symbols.
    pub(super) fn use_symbols(&mut self, n: usize) {
        self.symbols = vec![None; n];
    }

    pub(super) fn count_series(&mut self) -> Result<(), WireError> {
        self.out.received.series += 1;
        if self.out.received.series > self.limits.max_series_per_request {
            return Err(WireError::LimitExceeded {
                limit: "limits.max_series_per_request",
                max: self.limits.max_series_per_request,
            });
        }
        Ok(())
    }

    fn count_sample(&mut self, histogram: bool) -> Result<(), WireError> {
        let c = &mut self.out.received;
        if histogram {
            c.histograms += 1;
        } else {
            c.samples += 1;
        }
        if c.samples + c.histograms > self.limits.max_samples_per_request {
            return Err(WireError::LimitExceeded {
                limit: "limits.max_samples_per_request",
                max: self.limits.max_samples_per_request,
            });
        }
        Ok(())
    }

    /// Returns the shared copy of `b`, checking UTF-8 the first time it is seen.
    pub(super) fn intern(
        &mut self,
        s: Str<'a>,
        what: &'static str,
    ) -> Result<LabelStr, InvalidReason> {
        if let Some(Some(a)) = self.symbols.get(s.sym as usize) {
            return Ok(a.clone());
        }
        let a = match self.cache.get(s.b) {
            Some(a) => a.clone(),
            None => {
                let text =
                    std::str::from_utf8(s.b).map_err(|_| InvalidReason::InvalidUtf8 { what })?;
                let a = self.interner.intern(text);
                self.cache.insert(s.b, a.clone());
                a
            }
        };
        if let Some(slot) = self.symbols.get_mut(s.sym as usize) {
            *slot = Some(a.clone());
        }
        Ok(a)
    }

    /// Validates a series' labels (sorting `pairs` in place) and builds its label set.
    /// Rules, in the order checked: label count, name and value lengths, empty names,
    /// duplicate names, UTF-8, presence of `__name__`. Empty values are dropped.
    pub(super) fn series_labels(
        &mut self,
        pairs: &mut RawPairs<'a>,
    ) -> Result<Labels, InvalidReason> {
        let l = self.limits;
        if pairs.len() > l.max_labels_per_series {
            return Err(InvalidReason::TooManyLabels {
                count: pairs.len(),
                limit: l.max_labels_per_series,
            });
        }
        for (n, v) in pairs.iter() {
            let (n, v) = (n.b, v.b);
            if n.len() > l.max_label_name_length {
                return Err(InvalidReason::LabelNameTooLong {
                    name: lossy_prefix(n, 64),
                    length: n.len(),
                    limit: l.max_label_name_length,
                });
            }
            if v.len() > l.max_label_value_length {
                return Err(InvalidReason::LabelValueTooLong {
                    name: lossy_prefix(n, 64),
                    length: v.len(),
                    limit: l.max_label_value_length,
                });
            }
        }
        let labels = self.build(pairs, true)?;
        match labels.metric_name() {
            Some(_) => Ok(labels),
            None => Err(InvalidReason::MissingMetricName),
        }
    }

    /// Validates and builds a label set with no limits and no required name (exemplars).
    pub(super) fn labels(&mut self, pairs: &mut RawPairs<'a>) -> Result<Labels, InvalidReason> {
        self.build(pairs, false)
    }

    fn build(&mut self, pairs: &mut RawPairs<'a>, series: bool) -> Result<Labels, InvalidReason> {
        if !pairs.windows(2).all(|w| w[0].0.b <= w[1].0.b) {
            pairs.sort_unstable_by(|a, b| a.0.b.cmp(b.0.b));
        }
        for (i, (n, _)) in pairs.iter().enumerate() {
            if n.b.is_empty() {
                return Err(InvalidReason::EmptyLabelName);
            }
            if i > 0 && pairs[i - 1].0.b == n.b {
                return Err(InvalidReason::DuplicateLabelName { name: lossy_prefix(n.b, 64) });
            }
        }
        let mut out = Vec::with_capacity(pairs.len());
        let prev = self.prev.clone();
        for &(n, v) in pairs.iter() {
            let j = out.len();
            let same = self.prev_raw.get(j).copied().zip(prev.as_slice().get(j));
            let name = match same {
                Some((raw, l)) if raw.0 == n.b => l.name.clone(),
                _ => self.intern(n, "label name")?,
            };
            if v.b.is_empty() {
                continue;
            }
            let value = match same {
                Some((raw, l)) if raw.1 == v.b => l.value.clone(),
                _ => self.intern(v, "label value")?,
            };
            out.push(Label { name, value });
        }
        let labels = Labels::from_sorted_unchecked(out);
        if series {
            self.prev_raw.clear();
            self.prev_raw
                .extend(pairs.iter().filter(|(_, v)| !v.b.is_empty()).map(|(n, v)| (n.b, v.b)));
            self.prev = labels.clone();
        }
        Ok(labels)
    }

    /// Records a rejected series (or a rejected part of one): always in the counts, in
    /// detail while fewer than `MAX_INVALID_DETAILS` are listed.
    pub(super) fn reject(&mut self, pairs: &RawPairs<'a>, reason: InvalidReason, what: Dropped) {
        let r = &mut self.out.rejected;
        let (samples, histograms, exemplars) = match what {
            Dropped::Series { samples, histograms, exemplars } => {
                r.series += 1;
                (samples, histograms, exemplars)
            }
            Dropped::Exemplar => (0, 0, 1),
            Dropped::Metadata => {
                r.metadata += 1;
                (0, 0, 0)
            }
        };
        r.samples += samples;
        r.histograms += histograms;
        r.exemplars += exemplars;
        if self.out.invalid.len() < MAX_INVALID_DETAILS {
            self.out.invalid.push(InvalidSeries {
                labels_text: labels_text(pairs),
                reason,
                samples,
                histograms,
                exemplars,
            });
        }
    }

    /// Decodes a `Sample` (same layout in 1.0 and 2.0).
    pub(super) fn sample(&mut self, mut r: Reader<'a>) -> Result<Sample, WireError> {
        self.count_sample(false)?;
        let mut s = Sample { t: 0, v: 0.0 };
        while !r.at_end() {
            match r.key()? {
                (1, wt) => {
                    r.expect(1, wt, I64)?;
                    s.v = r.double()?;
                }
                (2, wt) => {
                    r.expect(2, wt, VARINT)?;
                    s.t = r.varint()? as i64;
                }
                (f, wt) => r.skip(f, wt)?,
            }
        }
        Ok(s)
    }

    /// Decodes a native `Histogram` (same layout in 1.0 and 2.0) into absolute float counts.
    /// A histogram whose spans do not match its buckets comes back with the reason beside it.
    pub(super) fn histogram(
        &mut self,
        mut r: Reader<'a>,
    ) -> Result<(Timestamp, FloatHistogram, Option<InvalidReason>), WireError> {
        self.count_sample(true)?;
        let mut h = FloatHistogram::default();
        let mut t = 0;
        let mut is_float = false;
        // Integer histograms send deltas (summed here into absolute counts), float ones counts.
        let (mut pos_abs, mut neg_abs) = (Vec::new(), Vec::new());
        let (mut pos_counts, mut neg_counts) = (Vec::new(), Vec::new());
        let (mut pos_run, mut neg_run) = (0i64, 0i64);
        while !r.at_end() {
            match r.key()? {
                (1, wt) => {
                    r.expect(1, wt, VARINT)?;
                    h.count = r.varint()? as f64;
                    is_float = false;
                }
                (2, wt) => {
                    r.expect(2, wt, I64)?;
                    h.count = r.double()?;
                    is_float = true;
                }
                (3, wt) => {
                    r.expect(3, wt, I64)?;
                    h.sum = r.double()?;
                }
                (4, wt) => {
                    r.expect(4, wt, VARINT)?;
                    h.schema = zigzag32(r.varint()?);
                }
                (5, wt) => {
                    r.expect(5, wt, I64)?;
                    h.zero_threshold = r.double()?;
                }
                (6, wt) => {
                    r.expect(6, wt, VARINT)?;
                    h.zero_count = r.varint()? as f64;
                }
                (7, wt) => {
                    r.expect(7, wt, I64)?;
                    h.zero_count = r.double()?;
                }
                (8, wt) => {
                    r.expect(8, wt, LEN)?;
                    h.negative_spans.push(span(r.message("BucketSpan")?)?);
                }
                (9, wt) => r.repeated(9, wt, VARINT, Reader::varint, |d| {
                    neg_run = neg_run.wrapping_add(zigzag64(d));
                    neg_abs.push(neg_run as f64);
                })?,
                (10, wt) => r.repeated(10, wt, I64, Reader::double, |c| neg_counts.push(c))?,
                (11, wt) => {
                    r.expect(11, wt, LEN)?;
                    h.positive_spans.push(span(r.message("BucketSpan")?)?);
                }
                (12, wt) => r.repeated(12, wt, VARINT, Reader::varint, |d| {
                    pos_run = pos_run.wrapping_add(zigzag64(d));
                    pos_abs.push(pos_run as f64);
                })?,
                (13, wt) => r.repeated(13, wt, I64, Reader::double, |c| pos_counts.push(c))?,
                (14, wt) => {
                    r.expect(14, wt, VARINT)?;
                    h.counter_reset_hint = match r.varint()? {
                        v @ 0..=3 => v as u8,
                        _ => 0,
                    };
                }
                (15, wt) => {
                    r.expect(15, wt, VARINT)?;
                    t = r.varint()? as i64;
                }
                (16, wt) => r.repeated(16, wt, I64, Reader::double, |c| h.custom_values.push(c))?,
                (f, wt) => r.skip(f, wt)?,
            }
        }
        if is_float {
            h.positive_buckets = pos_counts;
            h.negative_buckets = neg_counts;
        } else {
            h.positive_buckets = pos_abs;
            h.negative_buckets = neg_abs;
        }
        let invalid = spans_mismatch("positive", &h.positive_spans, h.positive_buckets.len())
            .or_else(|| spans_mismatch("negative", &h.negative_spans, h.negative_buckets.len()));
        Ok((t, h, invalid))
    }
}

fn span(mut r: Reader<'_>) -> Result<Span, WireError> {
    let mut s = Span { offset: 0, length: 0 };
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, VARINT)?;
                s.offset = zigzag32(r.varint()?);
            }
            (2, wt) => {
                r.expect(2, wt, VARINT)?;
                s.length = r.varint()? as u32;
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    Ok(s)
}

fn spans_mismatch(side: &'static str, spans: &[Span], buckets: usize) -> Option<InvalidReason> {
    let span_buckets: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    (span_buckets != buckets as u64).then_some(InvalidReason::HistogramSpansMismatch {
        side,
        span_buckets,
        buckets,
    })
}

pub(super) fn metric_type(v: u64) -> MetricType {
    match v {
        1 => MetricType::Counter,
        2 => MetricType::Gauge,
        3 => MetricType::Histogram,
        4 => MetricType::GaugeHistogram,
        5 => MetricType::Summary,
        6 => MetricType::Info,
        7 => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

fn lossy_prefix(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(max)]);
    if b.len() > max { format!("{s}...") } else { s.into_owned() }
}

/// Prometheus notation of raw pairs (`name{a="b", c="d"}`), bounded in length.
pub(super) fn labels_text(pairs: &RawPairs<'_>) -> String {
    let mut s = String::new();
    let is_name = |n: &Str<'_>| n.b == METRIC_NAME.as_bytes();
    if let Some((_, v)) = pairs.iter().find(|(n, _)| is_name(n)) {
        s.push_str(&lossy_prefix(v.b, MAX_LABELS_TEXT));
    }
    s.push('{');
    let mut first = true;
    for (n, v) in pairs.iter().filter(|(n, _)| !is_name(n)) {
        let (n, v) = (n.b, v.b);
        if s.len() > MAX_LABELS_TEXT {
            s.push_str(", ...");
            break;
        }
        if !first {
            s.push_str(", ");
        }
        first = false;
        s.push_str(&lossy_prefix(n, 128));
        s.push('=');
        s.push_str(&format!("{:?}", lossy_prefix(v, 256)));
    }
    s.push('}');
    s
}

/// Appends `v` as a protobuf varint.
fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the canonical encoding of one label: a remote write 1.0 `TimeSeries.labels` field
/// (`0x0a len { 0x0a len name 0x12 len value }`), as Prometheus sends it.
pub(super) fn push_canonical(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let inner = 1
        + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len();
    out.push(0x0a);
    push_varint(out, inner as u64);
    out.push(0x0a);
    push_varint(out, name.len() as u64);
    out.extend_from_slice(name);
    out.push(0x12);
    push_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// True when `raw` is exactly the canonical encoding of `labels` (each label in order through
/// [`push_canonical`], nothing else). The encoding is injective: two label sets never share it.
/// This runs for every series the cache misses, so it walks `raw` in place: no allocation,
/// no header built, and short strings compared inline rather than through `memcmp` calls.
pub(super) fn is_canonical(raw: &[u8], labels: &Labels) -> bool {
    let mut p = 0;
    for l in labels.iter() {
        let (n, v) = (l.name.as_bytes(), l.value.as_bytes());
        let inner =
            1 + varint_len(n.len() as u64) + n.len() + 1 + varint_len(v.len() as u64) + v.len();
        let label = byte_is(raw, &mut p, 0x0a)
            && varint_is(raw, &mut p, inner as u64)
            && byte_is(raw, &mut p, 0x0a)
            && varint_is(raw, &mut p, n.len() as u64)
            && bytes_are(raw, &mut p, n)
            && byte_is(raw, &mut p, 0x12)
            && varint_is(raw, &mut p, v.len() as u64)
            && bytes_are(raw, &mut p, v);
        if !label {
            return false;
        }
    }
    p == raw.len()
}

/// Consumes `want` from `raw` at `*p`, if it is there.
#[inline]
fn byte_is(raw: &[u8], p: &mut usize, want: u8) -> bool {
    let ok = raw.get(*p) == Some(&want);
    *p += usize::from(ok);
    ok
}

/// Consumes the varint encoding of `want` from `raw` at `*p`, if it is there (byte by byte,
/// without decoding: only the one minimal encoding matches).
#[inline]
fn varint_is(raw: &[u8], p: &mut usize, mut want: u64) -> bool {
    loop {
        let Some(&b) = raw.get(*p) else { return false };
        *p += 1;
        if want < 0x80 {
            return b == want as u8;
        }
        if b != (want as u8) | 0x80 {
            return false;
        }
        want >>= 7;
    }
}

/// Consumes `want` from `raw` at `*p`, if it is there; eight bytes at a time.
#[inline]
fn bytes_are(raw: &[u8], p: &mut usize, want: &[u8]) -> bool {
    let Some(got) = raw.get(*p..*p + want.len()) else { return false };
    let (g8, w8) = (got.chunks_exact(8), want.chunks_exact(8));
    let tails = g8.remainder().iter().zip(w8.remainder()).all(|(a, b)| a == b);
    let words = g8.zip(w8).all(|(a, b)| {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or_default());
        word(a) == word(b)
    });
    *p += want.len();
    tails && words
}
