//! An in-memory `Queryable` + `Appendable` backend for tests and the promqltest runner.

use std::collections::{BTreeMap, HashMap};

use model::{
    AppendOutcome, Appendable, HistogramSample, Labels, Matcher, Queryable, Sample, SeamError,
    SelectHints, Series, SeriesIter, TenantId, WriteBatch,
};
use parking_lot::RwLock;

#[derive(Default)]
struct SeriesData {
    samples: Vec<Sample>,
    histograms: Vec<HistogramSample>,
}

type TenantData = BTreeMap<Labels, SeriesData>;

/// Series kept in memory per tenant, in label order; samples sorted by time, a later write at
/// the same timestamp (float or histogram) replacing the earlier one.
#[derive(Default)]
pub struct MemStorage {
    tenants: RwLock<HashMap<TenantId, TenantData>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    fn matching(data: &TenantData, matchers: &[Matcher]) -> Vec<Labels> {
        data.keys()
            .filter(|l| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .cloned()
            .collect()
    }
}

impl Appendable for MemStorage {
    fn append(&self, tenant: &TenantId, batch: WriteBatch) -> Result<AppendOutcome, SeamError> {
        let mut tenants = self.tenants.write();
        let data = tenants.entry(tenant.clone()).or_default();
        let mut out = AppendOutcome::default();
        for s in batch.series {
            let d = data.entry(s.labels).or_insert_with(|| {
                out.series_created += 1;
                SeriesData::default()
            });
            for smp in s.samples {
                d.histograms.retain(|h| h.t != smp.t);
                match d.samples.binary_search_by_key(&smp.t, |x| x.t) {
                    Ok(i) => d.samples[i] = smp,
                    Err(i) => d.samples.insert(i, smp),
                }
                out.samples_written += 1;
            }
            for (t, h) in s.histograms {
                d.samples.retain(|x| x.t != t);
                let hs = HistogramSample { t, h: Box::new(h) };
                match d.histograms.binary_search_by_key(&t, |x| x.t) {
                    Ok(i) => d.histograms[i] = hs,
                    Err(i) => d.histograms.insert(i, hs),
                }
                out.histograms_written += 1;
            }
        }
        Ok(out)
    }
}

impl Queryable for MemStorage {
    fn select<'a>(
        &'a self,
        tenant: &TenantId,
        hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<SeriesIter<'a>, SeamError> {
        let tenants = self.tenants.read();
        let Some(data) = tenants.get(tenant) else {
            return Ok(Box::new(std::iter::empty()));
        };
        let mut out = Vec::new();
        for labels in Self::matching(data, matchers) {
            let d = &data[&labels];
            let in_range = |t: i64| t >= hints.start && t <= hints.end;
            let samples: Vec<Sample> =
                d.samples.iter().filter(|s| in_range(s.t)).copied().collect();
            let histograms: Vec<HistogramSample> =
                d.histograms.iter().filter(|s| in_range(s.t)).cloned().collect();
            if !samples.is_empty() || !histograms.is_empty() {
                out.push(Ok(Series { labels, samples, histograms }));
            }
        }
        Ok(Box::new(out.into_iter()))
    }

    fn label_names(
        &self,
        tenant: &TenantId,
        _hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        let tenants = self.tenants.read();
        let Some(data) = tenants.get(tenant) else { return Ok(Vec::new()) };
        let mut names: Vec<String> = Self::matching(data, matchers)
            .iter()
            .flat_map(|l| l.iter().map(|x| x.name.to_string()).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        tenant: &TenantId,
        name: &str,
        _hints: SelectHints,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, SeamError> {
        let tenants = self.tenants.read();
        let Some(data) = tenants.get(tenant) else { return Ok(Vec::new()) };
        let mut values: Vec<String> = Self::matching(data, matchers)
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}
