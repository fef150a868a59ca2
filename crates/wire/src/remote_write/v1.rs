//! Remote write 1.0: `prometheus.WriteRequest` bytes walked into a `WriteBatch`.

use model::{Exemplar, Interner, MetricMetadata, SeriesCache, SeriesKey, SeriesWrite};

use super::common::{Ctx, Dropped, RawPairs, Str, metric_type};
use super::{DecodeLimits, DecodedWrite, InvalidReason};
use crate::WireError;
use crate::pb::{I64, LEN, Reader, VARINT};

/// Decodes an uncompressed remote write 1.0 `WriteRequest`.
///
/// Label strings are interned through `interner`. Malformed protobuf and request-wide limits
/// are errors; invalid series are listed in [`DecodedWrite::invalid`] and left out of the batch.
pub fn decode_write_v1(
    bytes: &[u8],
    interner: &Interner,
    limits: &DecodeLimits,
) -> Result<DecodedWrite, WireError> {
    decode_write_v1_cached(bytes, interner, limits, None)
}

/// [`decode_write_v1`] through a series cache (see [`super::decode_write_cached`]). The raw
/// bytes of a series are its `labels` fields (key, length and `Label` message) in the order
/// sent; samples between them are left out.
pub fn decode_write_v1_cached(
    bytes: &[u8],
    interner: &Interner,
    limits: &DecodeLimits,
    cache: Option<&SeriesCache>,
) -> Result<DecodedWrite, WireError> {
    let mut ctx = Ctx::new(interner, limits, cache);
    let mut pairs = RawPairs::new();
    let mut ex_pairs = RawPairs::new();
    let mut fields = Vec::new();
    let mut pending = Vec::new();
    let mut r = Reader::new(bytes, 0, "WriteRequest");
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, LEN)?;
                let ts = r.message("TimeSeries")?;
                series(&mut ctx, ts, &mut pairs, &mut ex_pairs, &mut fields, &mut pending)?;
            }
            (3, wt) => {
                r.expect(3, wt, LEN)?;
                let m = r.message("MetricMetadata")?;
                metadata(&mut ctx, m)?;
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    if let Some(cache) = cache
        && !pending.is_empty()
    {
        resolve_pending(&mut ctx, cache, &pending, &mut pairs)?;
    }
    Ok(ctx.out)
}

/// A series whose cache lookup was put off until the whole request was walked (see
/// [`resolve_pending`]): where it is in the batch, its identity and its raw label bytes (one
/// slice of the request: its `labels` fields, contiguous) with their absolute offset.
struct Pending<'a> {
    index: usize,
    id: u128,
    raw: &'a [u8],
    offset: usize,
}

/// Resolves the series [`series`] put off: one [`SeriesCache::get_many`] for the request (so
/// the lookups' cache misses overlap instead of each waiting for the last), then a hit gets
/// its handle, and a miss has its labels parsed and validated as [`series`] would have done
/// in place (same errors, same rejections; a rejected series leaves the batch).
fn resolve_pending<'a>(
    ctx: &mut Ctx<'a, '_>,
    cache: &SeriesCache,
    pending: &[Pending<'a>],
    pairs: &mut RawPairs<'a>,
) -> Result<(), WireError> {
    let ids: Vec<u128> = pending.iter().map(|p| p.id).collect();
    let mut hits = Vec::new();
    cache.get_many(&ids, &mut hits);
    let mut rejected = Vec::new();
    for (p, hit) in pending.iter().zip(hits) {
        if let Some(hit) = hit {
            ctx.out.cache_hits += 1;
            ctx.out.batch.series[p.index].key = SeriesKey::Hit(hit);
            continue;
        }
        pairs.clear();
        let mut r = Reader::new(p.raw, p.offset, "TimeSeries");
        while !r.at_end() {
            // `raw` holds only `labels` fields, each checked when the series was walked.
            let (f, wt) = r.key()?;
            r.expect(f, wt, LEN)?;
            pairs.push(label(r.message("Label")?)?);
        }
        match ctx.series_labels(pairs) {
            Ok(labels) => {
                let w = &mut ctx.out.batch.series[p.index];
                w.key = Ctx::key_after_miss(p.raw, Some(p.id), &labels);
                w.labels = labels;
            }
            Err(reason) => {
                let w = &ctx.out.batch.series[p.index];
                let dropped = Dropped::Series {
                    samples: w.samples.len(),
                    histograms: w.histograms.len(),
                    exemplars: w.exemplars.len(),
                };
                ctx.reject(pairs, reason, dropped);
                rejected.push(p.index);
            }
        }
    }
    if !rejected.is_empty() {
        let mut i = 0;
        let mut next = rejected.iter().peekable();
        ctx.out.batch.series.retain(|_| {
            let keep = next.next_if_eq(&&i).is_none();
            i += 1;
            keep
        });
    }
    Ok(())
}

/// Where a `labels` field lies in its `TimeSeries` message: the field from its key, and the
/// `Label` message inside it (with its absolute offset, for errors).
#[derive(Clone, Copy)]
struct LabelField {
    field_start: usize,
    msg_start: usize,
    end: usize,
}

fn series<'a>(
    ctx: &mut Ctx<'a, '_>,
    mut r: Reader<'a>,
    pairs: &mut RawPairs<'a>,
    ex_pairs: &mut RawPairs<'a>,
    fields: &mut Vec<LabelField>,
    pending: &mut Vec<Pending<'a>>,
) -> Result<(), WireError> {
    ctx.count_series()?;
    pairs.clear();
    fields.clear();
    let (buf, base) = (r.buf(), r.base());
    let mut w = SeriesWrite::default();
    let mut bad_exemplars = Vec::new();
    let mut bad_histogram = None;
    while !r.at_end() {
        let field_start = r.pos();
        // The usual label field (key 0x0a, length under 128) without the general path.
        if let Some(msg_start) = r.short_field(0x0a) {
            fields.push(LabelField { field_start, msg_start, end: r.pos() });
            continue;
        }
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, LEN)?;
                // Walked only if the series cache does not resolve the series.
                let (_, abs) = r.bytes()?;
                fields.push(LabelField { field_start, msg_start: abs - base, end: r.pos() });
            }
            (2, wt) => {
                r.expect(2, wt, LEN)?;
                let s = ctx.sample(r.message("Sample")?)?;
                w.samples.push(s);
            }
            (3, wt) => {
                r.expect(3, wt, LEN)?;
                ctx.out.received.exemplars += 1;
                match exemplar(ctx, r.message("Exemplar")?, ex_pairs)? {
                    Ok(e) => w.exemplars.push(e),
                    Err(reason) => bad_exemplars.push(reason),
                }
            }
            (4, wt) => {
                r.expect(4, wt, LEN)?;
                let (t, h, invalid) = ctx.histogram(r.message("Histogram")?)?;
                bad_histogram = bad_histogram.or(invalid);
                w.histograms.push((t, h));
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    // The raw label bytes: one slice of the input when the fields are contiguous (as every
    // sender writes them), else their concatenation.
    let contiguous = fields.windows(2).all(|p| p[0].end == p[1].field_start);
    let scattered: Vec<u8>;
    let raw: &[u8] = match (fields.first(), fields.last()) {
        (Some(a), Some(b)) if contiguous => &buf[a.field_start..b.end],
        (None, _) | (_, None) => &[],
        _ => {
            scattered = fields.iter().flat_map(|f| &buf[f.field_start..f.end]).copied().collect();
            &scattered
        }
    };
    // The common case with a cache (contiguous labels, nothing to reject): the lookup is
    // put off to one batch for the whole request (see `resolve_pending`).
    if let Some(cache) = ctx.series_cache()
        && contiguous
        && bad_histogram.is_none()
        && bad_exemplars.is_empty()
        && let (Some(first), Some(last)) = (fields.first(), fields.last())
    {
        let index = ctx.out.batch.series.len();
        let raw = &buf[first.field_start..last.end];
        let offset = base + first.field_start;
        pending.push(Pending { index, id: cache.identity(raw), raw, offset });
        ctx.out.batch.series.push(w);
        return Ok(());
    }
    let cached = match bad_histogram {
        None => ctx.cached(raw),
        Some(_) => None,
    };
    // A hit moves the handle into the key and leaves `labels` empty: storage appends through
    // the handle and takes the series' labels from it when it needs them, so a hit touches
    // neither the labels nor their reference count.
    let cached = match (cached, bad_exemplars.is_empty()) {
        (Some((_, Some(hit))), true) => {
            w.key = SeriesKey::Hit(hit);
            ctx.out.batch.series.push(w);
            return Ok(());
        }
        (cached, _) => cached,
    };
    for f in fields.iter() {
        let m = Reader::new(&buf[f.msg_start..f.end], base + f.msg_start, "Label");
        pairs.push(label(m)?);
    }
    let labels = match bad_histogram {
        Some(reason) => Err(reason),
        None => match &cached {
            Some((_, Some(hit))) => Ok(hit.labels().clone()),
            _ => ctx.series_labels(pairs),
        },
    };
    match labels {
        Ok(labels) => {
            for reason in bad_exemplars {
                ctx.reject(
                    pairs,
                    InvalidReason::InvalidExemplar(Box::new(reason)),
                    Dropped::Exemplar,
                );
            }
            w.key = match cached {
                Some((_, Some(hit))) => SeriesKey::Hit(hit),
                Some((hash, None)) => Ctx::key_after_miss(raw, Some(hash), &labels),
                None => SeriesKey::None,
            };
            w.labels = labels;
            ctx.out.batch.series.push(w);
        }
        Err(reason) => {
            let dropped = Dropped::Series {
                samples: w.samples.len(),
                histograms: w.histograms.len(),
                exemplars: w.exemplars.len() + bad_exemplars.len(),
            };
            ctx.reject(pairs, reason, dropped);
        }
    }
    Ok(())
}

fn label<'a>(mut r: Reader<'a>) -> Result<(Str<'a>, Str<'a>), WireError> {
    let (mut name, mut value): (&[u8], &[u8]) = (&[], &[]);
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, LEN)?;
                name = r.bytes()?.0;
            }
            (2, wt) => {
                r.expect(2, wt, LEN)?;
                value = r.bytes()?.0;
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    Ok((Str::bytes(name), Str::bytes(value)))
}

fn exemplar<'a>(
    ctx: &mut Ctx<'a, '_>,
    mut r: Reader<'a>,
    pairs: &mut RawPairs<'a>,
) -> Result<Result<Exemplar, InvalidReason>, WireError> {
    pairs.clear();
    let (mut t, mut v) = (0, 0.0);
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, LEN)?;
                pairs.push(label(r.message("Label")?)?);
            }
            (2, wt) => {
                r.expect(2, wt, I64)?;
                v = r.double()?;
            }
            (3, wt) => {
                r.expect(3, wt, VARINT)?;
                t = r.varint()? as i64;
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    Ok(ctx.labels(pairs).map(|labels| Exemplar { labels, t, v }))
}

fn metadata<'a>(ctx: &mut Ctx<'a, '_>, mut r: Reader<'a>) -> Result<(), WireError> {
    ctx.out.received.metadata += 1;
    let mut kind = 0;
    let (mut family, mut help, mut unit): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, VARINT)?;
                kind = r.varint()?;
            }
            (2, wt) => {
                r.expect(2, wt, LEN)?;
                family = r.bytes()?.0;
            }
            (4, wt) => {
                r.expect(4, wt, LEN)?;
                help = r.bytes()?.0;
            }
            (5, wt) => {
                r.expect(5, wt, LEN)?;
                unit = r.bytes()?.0;
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    let text = |b: &[u8], what: &'static str| {
        std::str::from_utf8(b).map(str::to_owned).map_err(|_| InvalidReason::InvalidUtf8 { what })
    };
    let m = (|| {
        Ok(MetricMetadata {
            metric_family: text(family, "metadata metric family name")?,
            kind: metric_type(kind),
            help: text(help, "metadata help")?,
            unit: text(unit, "metadata unit")?,
        })
    })();
    match m {
        Ok(m) => ctx.out.batch.metadata.push(m),
        Err(reason) => {
            let pairs = vec![(Str::bytes(model::METRIC_NAME.as_bytes()), Str::bytes(family))];
            ctx.reject(&pairs, reason, Dropped::Metadata);
        }
    }
    Ok(())
}
