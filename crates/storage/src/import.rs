//! Backfill: historical samples written straight into new level-1 blocks, one per block range,
//! bypassing the head (whose out-of-order window refuses old data); compaction then merges the
//! new blocks with any they overlap. Metadata in the import is logged like a write's.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use model::{HistogramSample, Labels, Sample, WriteBatch};

use crate::block::{Block, BlockMeta, write_block};
use crate::error::Result;
use crate::metadata::encode_metadata;
use crate::tenant::TenantDb;
use crate::wal::RecordKind;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportOutcome {
    pub series: usize,
    /// Samples and histogram samples written (duplicates within the import counted once).
    pub samples: usize,
    pub blocks: Vec<BlockMeta>,
    /// Compactions run afterwards (merging overlapping blocks).
    pub compactions: usize,
}

type Range = (Vec<Sample>, Vec<HistogramSample>);

impl TenantDb {
    /// Writes `batch` into blocks (one per block range it touches), then compacts. Durable when
    /// it returns: blocks are written and registered. Exemplars are ignored. Within the import,
    /// a repeated timestamp of a series keeps the first value.
    pub fn import(&self, batch: WriteBatch) -> Result<ImportOutcome> {
        let mut out = ImportOutcome::default();
        if !batch.metadata.is_empty() {
            let changed = self.metadata.apply(&batch.metadata);
            if !changed.is_empty() {
                let rec = encode_metadata(&changed)?;
                let seq = self.wal().log(&[(RecordKind::Metadata, &rec)])?;
                self.wal().sync(seq)?;
            }
        }
        let bd = self.opts.block_duration;
        let mut ranges: BTreeMap<i64, BTreeMap<Labels, Range>> = BTreeMap::new();
        let mut series: std::collections::HashSet<Labels> = Default::default();
        for sw in batch.series {
            if sw.samples.is_empty() && sw.histograms.is_empty() {
                continue;
            }
            series.insert(sw.labels.clone());
            // Sorted first, so each block range takes one contiguous run of the series.
            let mut samples = sw.samples;
            samples.sort_by_key(|x| x.t);
            let mut it = samples.into_iter().peekable();
            while let Some(first) = it.next() {
                let r = first.t.div_euclid(bd);
                let mut run = vec![first];
                while let Some(x) = it.next_if(|x| x.t.div_euclid(bd) == r) {
                    run.push(x);
                }
                let slot = ranges.entry(r).or_default();
                slot.entry(sw.labels.clone()).or_default().0.extend(run);
            }
            for (t, h) in sw.histograms {
                let r = ranges.entry(t.div_euclid(bd)).or_default();
                r.entry(sw.labels.clone())
                    .or_default()
                    .1
                    .push(HistogramSample { t, h: Box::new(h) });
            }
        }
        out.series = series.len();
        let total = ranges.len();
        {
            let _m = self.maintenance.lock();
            for (i, (range, by_series)) in ranges.into_iter().enumerate() {
                let mut samples = 0;
                let prepared = by_series.into_iter().map(|(labels, (mut s, mut h))| {
                    s.sort_by_key(|x| x.t);
                    s.dedup_by_key(|x| x.t);
                    h.sort_by_key(|x| x.t);
                    h.dedup_by_key(|x| x.t);
                    samples += s.len() + h.len();
                    (labels, s, h)
                });
                let prepared: Vec<_> = prepared.collect();
                out.samples += samples;
                let Some(meta) =
                    write_block(&self.store, &self.tenant, 1, vec![], prepared.into_iter())?
                else {
                    continue;
                };
                let block = Block::open(&self.store, &self.tenant, &meta.ulid)?;
                self.add_block(block);
                // Visible now: results caches holding this range must recompute it.
                self.changes.record(meta.min_time);
                self.stats.blocks_written.fetch_add(1, Ordering::Relaxed);
                tracing::info!(tenant = %self.tenant, block = %meta.ulid, range_start = range * bd,
                    series = meta.num_series, samples = meta.num_samples, done = i + 1, total,
                    "import: block written");
                out.blocks.push(meta);
            }
        }
        out.compactions = self.compact()?;
        tracing::info!(tenant = %self.tenant, series = out.series, samples = out.samples,
            blocks = out.blocks.len(), compactions = out.compactions, "import done");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use model::{Matcher, SelectHints, SeriesWrite};

    use super::*;
    use crate::HOUR_MS;

    #[test]
    fn old_samples_land_in_blocks_per_range_and_merge_with_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::Db::open(crate::Options::new(dir.path())).unwrap();
        let t = db.tenant(&model::TenantId::default_tenant()).unwrap();
        let l = Labels::from_pairs([("__name__", "old"), ("job", "j")]).unwrap();
        let sw = |ts: &[i64], v: f64| SeriesWrite {
            labels: l.clone(),
            samples: ts.iter().map(|&t| Sample { t, v }).collect(),
            ..Default::default()
        };
        // Two block ranges (2h each), out of order, with a repeated timestamp.
        let batch = WriteBatch {
            series: vec![sw(&[3 * HOUR_MS, HOUR_MS, HOUR_MS], 1.0)],
            metadata: vec![model::MetricMetadata {
                metric_family: "old".into(),
                kind: model::MetricType::Gauge,
                help: "Old.".into(),
                unit: String::new(),
            }],
        };
        let o = t.import(batch).unwrap();
        assert_eq!((o.series, o.samples, o.blocks.len()), (1, 2, 2));
        assert_eq!(t.metadata.list(Some("old"), None, None).len(), 1);
        assert_eq!(o.compactions, 1, "the head is empty: both ranges merge into one 6h block");
        assert_eq!(t.blocks().len(), 1);
        // A second import into the first range overlaps: compaction merges it.
        let o = t
            .import(WriteBatch { series: vec![sw(&[HOUR_MS + 1], 2.0)], ..Default::default() })
            .unwrap();
        assert_eq!(o.compactions, 1);
        let metas = t.blocks();
        assert_eq!(metas.len(), 1, "{metas:?}");
        assert_eq!((metas[0].level, metas[0].sources.len(), metas[0].num_samples), (3, 3, 3));
        let got: Vec<(i64, f64)> = t
            .select(SelectHints::all(), &[Matcher::eq("__name__", "old")])
            .flat_map(|s| s.unwrap().samples)
            .map(|s| (s.t, s.v))
            .collect();
        assert_eq!(got, vec![(HOUR_MS, 1.0), (HOUR_MS + 1, 2.0), (3 * HOUR_MS, 1.0)]);
        // Metadata logged by the import survives a reopen.
        drop(t);
        drop(db);
        let db = crate::Db::open(crate::Options::new(dir.path())).unwrap();
        let t = db.tenant(&model::TenantId::default_tenant()).unwrap();
        assert_eq!(t.metadata.list(Some("old"), None, None)[0].1[0].help, "Old.");
        assert_eq!(t.blocks().len(), 1);
    }
}
