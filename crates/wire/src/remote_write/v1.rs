//! Remote write 1.0: `prometheus.WriteRequest` bytes walked into a `WriteBatch`.

use model::{Exemplar, Interner, MetricMetadata, SeriesWrite};

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
    let mut ctx = Ctx::new(interner, limits);
    let mut pairs = RawPairs::new();
    let mut ex_pairs = RawPairs::new();
    let mut r = Reader::new(bytes, 0, "WriteRequest");
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, LEN)?;
                let ts = r.message("TimeSeries")?;
                series(&mut ctx, ts, &mut pairs, &mut ex_pairs)?;
            }
            (3, wt) => {
                r.expect(3, wt, LEN)?;
                let m = r.message("MetricMetadata")?;
                metadata(&mut ctx, m)?;
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    Ok(ctx.out)
}

fn series<'a>(
    ctx: &mut Ctx<'a, '_>,
    mut r: Reader<'a>,
    pairs: &mut RawPairs<'a>,
    ex_pairs: &mut RawPairs<'a>,
) -> Result<(), WireError> {
    ctx.count_series()?;
    pairs.clear();
    let mut w = SeriesWrite::default();
    let mut bad_exemplars = Vec::new();
    let mut bad_histogram = None;
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, LEN)?;
                pairs.push(label(r.message("Label")?)?);
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
    let labels = match bad_histogram {
        Some(reason) => Err(reason),
        None => ctx.series_labels(pairs),
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
