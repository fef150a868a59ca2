//! Remote write 2.0: `io.prometheus.write.v2.Request` bytes walked into a `WriteBatch`,
//! resolving label references through the request's symbols table.

use std::collections::HashSet;

use model::{Exemplar, Interner, MetricMetadata, SeriesCache, SeriesKey, SeriesWrite};

use super::common::{Ctx, Dropped, RawPairs, Str, metric_type, push_canonical};
use super::{DecodeLimits, DecodedWrite, InvalidReason};
use crate::WireError;
use crate::pb::{I64, LEN, Reader, VARINT};

/// Decodes an uncompressed remote write 2.0 `Request`.
///
/// Same contract as [`super::decode_write_v1`]. Per-series metadata becomes one
/// `MetricMetadata` per metric name (the first seen wins). `created_timestamp` is read past:
/// the model has no place for it yet.
pub fn decode_write_v2(
    bytes: &[u8],
    interner: &Interner,
    limits: &DecodeLimits,
) -> Result<DecodedWrite, WireError> {
    decode_write_v2_cached(bytes, interner, limits, None)
}

/// [`decode_write_v2`] through a series cache (see [`super::decode_write_cached`]). The raw
/// bytes of a series are its symbol-resolved label pairs in the order sent, written as remote
/// write 1.0 would send them, so both protocols share the cache's entries.
pub fn decode_write_v2_cached(
    bytes: &[u8],
    interner: &Interner,
    limits: &DecodeLimits,
    cache: Option<&SeriesCache>,
) -> Result<DecodedWrite, WireError> {
    // Fields may come in any order, so collect the symbols before resolving any series.
    let mut symbols: Vec<&[u8]> = Vec::new();
    let mut series_msgs = Vec::new();
    let mut r = Reader::new(bytes, 0, "Request");
    while !r.at_end() {
        match r.key()? {
            (f @ 1..=3, _) => return Err(WireError::WrongProtocolVersion { field: f }),
            (4, wt) => {
                r.expect(4, wt, LEN)?;
                symbols.push(r.bytes()?.0);
            }
            (5, wt) => {
                r.expect(5, wt, LEN)?;
                series_msgs.push(r.message("TimeSeries")?);
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    let mut ctx = Ctx::new(interner, limits, cache);
    ctx.use_symbols(symbols.len());
    let mut d = Decoder {
        ctx,
        keybuf: Vec::new(),
        symbols,
        refs: Vec::new(),
        pairs: RawPairs::new(),
        ex_pairs: RawPairs::new(),
        seen_metadata: HashSet::new(),
    };
    for m in series_msgs {
        d.series(m)?;
    }
    Ok(d.ctx.out)
}

struct Decoder<'a, 'i> {
    ctx: Ctx<'a, 'i>,
    /// The raw label bytes of the current series, for the series cache.
    keybuf: Vec<u8>,
    symbols: Vec<&'a [u8]>,
    refs: Vec<u32>,
    pairs: RawPairs<'a>,
    ex_pairs: RawPairs<'a>,
    seen_metadata: HashSet<model::LabelStr>,
}

/// Per-series metadata as sent: (type, help_ref, unit_ref).
type RawMetadata = (u64, u32, u32);

impl<'a> Decoder<'a, '_> {
    fn series(&mut self, mut r: Reader<'a>) -> Result<(), WireError> {
        self.ctx.count_series()?;
        self.refs.clear();
        let mut w = SeriesWrite::default();
        let mut bad_exemplars = Vec::new();
        let mut bad = None;
        let mut meta: Option<RawMetadata> = None;
        while !r.at_end() {
            match r.key()? {
                (1, wt) => {
                    let refs = &mut self.refs;
                    r.repeated(1, wt, VARINT, Reader::varint, |v| refs.push(v as u32))?;
                }
                (2, wt) => {
                    r.expect(2, wt, LEN)?;
                    let s = self.ctx.sample(r.message("Sample")?)?;
                    w.samples.push(s);
                }
                (3, wt) => {
                    r.expect(3, wt, LEN)?;
                    let (t, h, invalid) = self.ctx.histogram(r.message("Histogram")?)?;
                    bad = bad.or(invalid);
                    w.histograms.push((t, h));
                }
                (4, wt) => {
                    r.expect(4, wt, LEN)?;
                    self.ctx.out.received.exemplars += 1;
                    match self.exemplar(r.message("Exemplar")?)? {
                        Ok(e) => w.exemplars.push(e),
                        Err(reason) => bad_exemplars.push(reason),
                    }
                }
                (5, wt) => {
                    r.expect(5, wt, LEN)?;
                    meta = Some(metadata(r.message("Metadata")?)?);
                }
                (f, wt) => r.skip(f, wt)?,
            }
        }
        self.pairs.clear();
        let resolved = resolve(&self.symbols, &self.refs, &mut self.pairs);
        let mut cached = None;
        if resolved.is_ok() && bad.is_none() {
            self.keybuf.clear();
            for (n, v) in &self.pairs {
                push_canonical(&mut self.keybuf, n.b, v.b);
            }
            cached = self.ctx.cached(&self.keybuf);
        }
        let labels = match bad.map_or(resolved, Err) {
            Ok(()) => match &cached {
                Some((_, Some(hit))) => Ok(hit.labels().clone()),
                _ => self.ctx.series_labels(&mut self.pairs),
            },
            Err(reason) => Err(reason),
        };
        let labels = match labels {
            Ok(labels) => labels,
            Err(reason) => {
                let dropped = Dropped::Series {
                    samples: w.samples.len(),
                    histograms: w.histograms.len(),
                    exemplars: w.exemplars.len() + bad_exemplars.len(),
                };
                self.ctx.reject(&self.pairs, reason, dropped);
                return Ok(());
            }
        };
        for reason in bad_exemplars {
            let reason = InvalidReason::InvalidExemplar(Box::new(reason));
            self.ctx.reject(&self.pairs, reason, Dropped::Exemplar);
        }
        if let Some(m) = meta {
            self.metadata(&labels, m);
        }
        w.key = match cached {
            Some((_, Some(hit))) => SeriesKey::Hit(hit),
            Some((hash, None)) => Ctx::key_after_miss(&self.keybuf, Some(hash), &labels),
            None => SeriesKey::None,
        };
        w.labels = labels;
        self.ctx.out.batch.series.push(w);
        Ok(())
    }

    fn exemplar(
        &mut self,
        mut r: Reader<'a>,
    ) -> Result<Result<Exemplar, InvalidReason>, WireError> {
        let mut refs = Vec::new();
        let (mut t, mut v) = (0, 0.0);
        while !r.at_end() {
            match r.key()? {
                (1, wt) => r.repeated(1, wt, VARINT, Reader::varint, |x| refs.push(x as u32))?,
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
        self.ex_pairs.clear();
        if let Err(reason) = resolve(&self.symbols, &refs, &mut self.ex_pairs) {
            return Ok(Err(reason));
        }
        Ok(self.ctx.labels(&mut self.ex_pairs).map(|labels| Exemplar { labels, t, v }))
    }

    /// Records the metadata of a valid series, once per metric name.
    fn metadata(&mut self, labels: &model::Labels, (kind, help_ref, unit_ref): RawMetadata) {
        if kind == 0 && help_ref == 0 && unit_ref == 0 {
            return;
        }
        let Some(name) = labels.iter().find(|l| &*l.name == model::METRIC_NAME) else { return };
        if !self.seen_metadata.insert(name.value.clone()) {
            return;
        }
        let name = &*name.value;
        self.ctx.out.received.metadata += 1;
        let text = |r: u32, what: &'static str| -> Result<String, InvalidReason> {
            let b = self.symbols.get(r as usize).ok_or(InvalidReason::SymbolRefOutOfRange {
                reference: r,
                symbols: self.symbols.len(),
            })?;
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| InvalidReason::InvalidUtf8 { what })
        };
        let m = text(help_ref, "metadata help").and_then(|help| {
            Ok(MetricMetadata {
                metric_family: name.to_owned(),
                kind: metric_type(kind),
                help,
                unit: text(unit_ref, "metadata unit")?,
            })
        });
        match m {
            Ok(m) => self.ctx.out.batch.metadata.push(m),
            Err(reason) => self.ctx.reject(&self.pairs, reason, Dropped::Metadata),
        }
    }
}

/// Turns (name_ref, value_ref) pairs into borrowed strings.
fn resolve<'a>(
    symbols: &[&'a [u8]],
    refs: &[u32],
    pairs: &mut RawPairs<'a>,
) -> Result<(), InvalidReason> {
    if !refs.len().is_multiple_of(2) {
        return Err(InvalidReason::OddLabelRefs { length: refs.len() });
    }
    for p in refs.chunks_exact(2) {
        let get = |r: u32| {
            symbols
                .get(r as usize)
                .map(|&b| Str { b, sym: r })
                .ok_or(InvalidReason::SymbolRefOutOfRange { reference: r, symbols: symbols.len() })
        };
        pairs.push((get(p[0])?, get(p[1])?));
    }
    Ok(())
}

fn metadata(mut r: Reader<'_>) -> Result<RawMetadata, WireError> {
    let mut m = (0, 0, 0);
    while !r.at_end() {
        match r.key()? {
            (1, wt) => {
                r.expect(1, wt, VARINT)?;
                m.0 = r.varint()?;
            }
            (3, wt) => {
                r.expect(3, wt, VARINT)?;
                m.1 = r.varint()? as u32;
            }
            (4, wt) => {
                r.expect(4, wt, VARINT)?;
                m.2 = r.varint()? as u32;
            }
            (f, wt) => r.skip(f, wt)?,
        }
    }
    Ok(m)
}
