//! Metric metadata of one tenant: metric family → the distinct {type, help, unit} entries seen
//! (remote write 1.0 metadata, 2.0 per-series metadata, HELP/TYPE/UNIT of text pushes), bounded
//! per family and per tenant, made durable by WAL records of kind 4 (`RecordKind::Metadata`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use model::{MetricMetadata, MetricType};
use parking_lot::Mutex;

use crate::error::Result;

/// Distinct entries kept per metric family; a new one beyond this evicts the oldest.
pub const MAX_ENTRIES_PER_FAMILY: usize = 10;
/// Metric families kept per tenant; entries of further families are dropped (and counted).
pub const MAX_FAMILIES: usize = 100_000;
/// Longest help text stored, in bytes (longer ones are cut at a character boundary).
pub const MAX_HELP_BYTES: usize = 4096;

/// One entry: what a metric family was declared as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataEntry {
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// The metadata of one tenant. Entries of a family are kept oldest first.
pub struct MetadataStore {
    max_per_family: usize,
    max_families: usize,
    families: Mutex<BTreeMap<String, Vec<MetadataEntry>>>,
    /// Entries dropped because the tenant reached [`MAX_FAMILIES`].
    pub dropped: std::sync::atomic::AtomicU64,
}

impl Default for MetadataStore {
    fn default() -> Self {
        MetadataStore::with_limits(MAX_ENTRIES_PER_FAMILY, MAX_FAMILIES)
    }
}

impl MetadataStore {
    pub fn with_limits(max_per_family: usize, max_families: usize) -> MetadataStore {
        MetadataStore {
            max_per_family: max_per_family.max(1),
            max_families,
            families: Mutex::default(),
            dropped: Default::default(),
        }
    }

    /// The entries of `items` the store does not hold yet (each once), without recording them:
    /// what a write must log before [`MetadataStore::apply`] makes them visible.
    pub fn fresh(&self, items: &[MetricMetadata]) -> Vec<MetricMetadata> {
        let f = self.families.lock();
        let mut out: Vec<MetricMetadata> = Vec::new();
        for m in items {
            let known = f.get(&m.metric_family).is_some_and(|list| {
                list.iter().any(|e| {
                    e.kind == m.kind
                        && e.help == truncate(&m.help, MAX_HELP_BYTES)
                        && e.unit == m.unit
                })
            });
            if !f.contains_key(&m.metric_family) && f.len() >= self.max_families {
                self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            if !known && !m.metric_family.is_empty() && !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }

    /// Records `items`; returns the ones that were new (to be logged to the WAL). An entry
    /// already known for its family is not new; a known entry is not moved.
    pub fn apply(&self, items: &[MetricMetadata]) -> Vec<MetricMetadata> {
        let mut changed = Vec::new();
        if items.is_empty() {
            return changed;
        }
        let mut f = self.families.lock();
        for m in items {
            if m.metric_family.is_empty() {
                continue;
            }
            let entry = MetadataEntry {
                kind: m.kind,
                help: truncate(&m.help, MAX_HELP_BYTES).to_string(),
                unit: m.unit.clone(),
            };
            if !f.contains_key(&m.metric_family) && f.len() >= self.max_families {
                continue;
            }
            let list = f.entry(m.metric_family.clone()).or_default();
            if list.contains(&entry) {
                continue;
            }
            if list.len() >= self.max_per_family {
                list.remove(0);
            }
            changed.push(MetricMetadata {
                metric_family: m.metric_family.clone(),
                kind: entry.kind,
                help: entry.help.clone(),
                unit: entry.unit.clone(),
            });
            list.push(entry);
        }
        changed
    }

    /// Families (in name order) and their entries, newest first, as the API lists them:
    /// `metric` keeps only that family, `limit` caps families, `limit_per_metric` entries.
    pub fn list(
        &self,
        metric: Option<&str>,
        limit: Option<usize>,
        limit_per_metric: Option<usize>,
    ) -> Vec<(String, Vec<MetadataEntry>)> {
        let f = self.families.lock();
        let pick = |(name, list): (&String, &Vec<MetadataEntry>)| {
            let n = limit_per_metric.unwrap_or(usize::MAX);
            (name.clone(), list.iter().rev().take(n).cloned().collect())
        };
        match metric {
            Some(m) => f.get_key_value(m).map(pick).into_iter().collect(),
            None => f.iter().take(limit.unwrap_or(usize::MAX)).map(pick).collect(),
        }
    }

    /// Every entry, oldest first per family, for a checkpoint.
    pub fn snapshot(&self) -> Vec<MetricMetadata> {
        let f = self.families.lock();
        f.iter()
            .flat_map(|(name, list)| {
                list.iter().map(move |e| MetricMetadata {
                    metric_family: name.clone(),
                    kind: e.kind,
                    help: e.help.clone(),
                    unit: e.unit.clone(),
                })
            })
            .collect()
    }

    pub fn num_families(&self) -> usize {
        self.families.lock().len()
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The metric type named as Prometheus' API names it; unknown names are `Unknown`.
pub fn parse_metric_type(s: &str) -> MetricType {
    match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "gaugehistogram" => MetricType::GaugeHistogram,
        "summary" => MetricType::Summary,
        "info" => MetricType::Info,
        "stateset" => MetricType::StateSet,
        _ => MetricType::Unknown,
    }
}

pub(crate) fn metadata_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("family", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("help", DataType::Utf8, false),
        Field::new("unit", DataType::Utf8, false),
    ]))
}

/// Encodes a metadata record payload (WAL kind 4).
pub fn encode_metadata(items: &[MetricMetadata]) -> Result<Vec<u8>> {
    let col = |f: &dyn Fn(&MetricMetadata) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(items.iter().map(f)))
    };
    let cols = vec![
        col(&|m| &m.metric_family),
        col(&|m| m.kind.as_str()),
        col(&|m| &m.help),
        col(&|m| &m.unit),
    ];
    crate::wal::ipc_bytes(&RecordBatch::try_new(metadata_schema(), cols)?)
}

/// Decodes the rows of one record batch of a metadata record.
pub(crate) fn decode_metadata(
    batch: &RecordBatch,
    out: &mut Vec<MetricMetadata>,
) -> std::result::Result<(), String> {
    let mut cols = Vec::with_capacity(4);
    for i in 0..4 {
        let c = batch.columns().get(i).ok_or("missing column")?;
        let s = c.as_any().downcast_ref::<StringArray>().ok_or("metadata column type")?;
        if s.null_count() > 0 {
            return Err("null in metadata column".into());
        }
        cols.push(s);
    }
    for i in 0..batch.num_rows() {
        out.push(MetricMetadata {
            metric_family: cols[0].value(i).to_string(),
            kind: parse_metric_type(cols[1].value(i)),
            help: cols[2].value(i).to_string(),
            unit: cols[3].value(i).to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(family: &str, kind: MetricType, help: &str) -> MetricMetadata {
        MetricMetadata {
            metric_family: family.into(),
            kind,
            help: help.into(),
            unit: String::new(),
        }
    }

    #[test]
    fn dedups_bounds_per_family_and_lists_newest_first() {
        let s = MetadataStore::default();
        let a = m("a_total", MetricType::Counter, "A.");
        assert_eq!(s.apply(&[a.clone(), a.clone()]), vec![a.clone()], "a repeat is not new");
        assert!(s.apply(std::slice::from_ref(&a)).is_empty());
        for i in 0..12 {
            s.apply(&[m("b", MetricType::Gauge, &format!("help {i}"))]);
        }
        let listed = s.list(Some("b"), None, None);
        assert_eq!(listed[0].1.len(), MAX_ENTRIES_PER_FAMILY);
        assert_eq!(listed[0].1[0].help, "help 11", "newest first");
        assert_eq!(listed[0].1[9].help, "help 2", "the two oldest were evicted");
        assert_eq!(
            s.list(None, Some(1), Some(1)),
            vec![(
                "a_total".to_string(),
                vec![MetadataEntry {
                    kind: MetricType::Counter,
                    help: "A.".into(),
                    unit: "".into()
                }]
            )]
        );
        assert!(s.list(Some("missing"), None, None).is_empty());
    }

    #[test]
    fn family_cap_drops_new_families_and_fresh_logs_nothing_for_them() {
        let s = MetadataStore::with_limits(2, 2);
        for f in ["a", "b", "c"] {
            let items = [m(f, MetricType::Gauge, "h")];
            let fresh = s.fresh(&items);
            s.apply(&fresh);
        }
        let names: Vec<String> = s.list(None, None, None).into_iter().map(|x| x.0).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(s.fresh(&[m("c", MetricType::Gauge, "h")]).is_empty(), "nothing to log");
        // Known families still take new entries; a repeat within one batch is fresh once.
        let x = m("a", MetricType::Counter, "h2");
        assert_eq!(s.fresh(&[x.clone(), x.clone()]), vec![x]);
    }

    #[test]
    fn record_roundtrips() {
        let items = vec![
            m("x", MetricType::Summary, "with \"quotes\"\nand newline"),
            MetricMetadata { unit: "seconds".into(), ..m("y", MetricType::StateSet, "") },
        ];
        let bytes = encode_metadata(&items).unwrap();
        let r =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let mut out = Vec::new();
        for b in r {
            decode_metadata(&b.unwrap(), &mut out).unwrap();
        }
        assert_eq!(out, items);
    }
}
