//! Exemplars of one tenant: a bounded in-memory ring (oldest evicted first, like Prometheus'
//! circular exemplar storage), made durable by WAL records of kind 5 (`RecordKind::Exemplars`)
//! that carry the series' labels inline, so they replay even after the series left the head.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use model::{Exemplar, Labels, Matcher};
use parking_lot::Mutex;

use crate::error::Result;

/// Exemplars kept per tenant (Prometheus' `--storage.tsdb.max-exemplars` default is 100,000).
pub const DEFAULT_MAX_EXEMPLARS: usize = 100_000;

struct Stored {
    series: Labels,
    ex: Exemplar,
}

#[derive(Default)]
struct Ring {
    items: VecDeque<Stored>,
    /// Per series: newest exemplar timestamp and how many of its exemplars the ring holds.
    series: HashMap<Labels, (i64, usize)>,
}

/// The exemplars of one tenant.
pub struct ExemplarStore {
    capacity: usize,
    ring: Mutex<Ring>,
}

impl Default for ExemplarStore {
    fn default() -> Self {
        ExemplarStore::new(DEFAULT_MAX_EXEMPLARS)
    }
}

impl ExemplarStore {
    pub fn new(capacity: usize) -> ExemplarStore {
        ExemplarStore { capacity, ring: Mutex::new(Ring::default()) }
    }

    /// Adds the exemplars of one series; returns those accepted. As in Prometheus, an exemplar
    /// not newer than the series' newest one is dropped (a duplicate, e.g. from a retried
    /// write, or out of order); the write carrying it still succeeds.
    pub fn add(&self, series: &Labels, exemplars: &[Exemplar]) -> Vec<Exemplar> {
        let mut accepted = Vec::new();
        if self.capacity == 0 || exemplars.is_empty() {
            return accepted;
        }
        let mut r = self.ring.lock();
        let mut sorted: Vec<&Exemplar> = exemplars.iter().collect();
        sorted.sort_by_key(|e| e.t);
        for e in sorted {
            let last = r.series.get(series).map(|x| x.0);
            if last.is_some_and(|last| e.t <= last) {
                continue;
            }
            if r.items.len() >= self.capacity
                && let Some(old) = r.items.pop_front()
                && let Some(s) = r.series.get_mut(&old.series)
            {
                s.1 -= 1;
                if s.1 == 0 {
                    r.series.remove(&old.series);
                }
            }
            let s = r.series.entry(series.clone()).or_insert((e.t, 0));
            *s = (e.t, s.1 + 1);
            r.items.push_back(Stored { series: series.clone(), ex: e.clone() });
            accepted.push(e.clone());
        }
        accepted
    }

    /// The exemplars [`ExemplarStore::add`] would accept now, without adding them: what a
    /// write must log before adding.
    pub fn fresh(&self, series: &Labels, exemplars: &[Exemplar]) -> Vec<Exemplar> {
        if self.capacity == 0 || exemplars.is_empty() {
            return Vec::new();
        }
        let mut last = self.ring.lock().series.get(series).map(|x| x.0);
        let mut sorted: Vec<&Exemplar> = exemplars.iter().collect();
        sorted.sort_by_key(|e| e.t);
        let mut out = Vec::new();
        for e in sorted {
            if last.is_none_or(|l| e.t > l) {
                last = Some(e.t);
                out.push(e.clone());
            }
        }
        out
    }

    /// Exemplars of series matching any of the matcher sets, with `start <= t <= end`, grouped
    /// by series in label order, each series' exemplars in time order.
    pub fn select(
        &self,
        matcher_sets: &[Vec<Matcher>],
        start: i64,
        end: i64,
    ) -> Vec<(Labels, Vec<Exemplar>)> {
        let r = self.ring.lock();
        let mut out: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
        let mut verdict: HashMap<&Labels, bool> = HashMap::new();
        for s in &r.items {
            if s.ex.t < start || s.ex.t > end {
                continue;
            }
            let hit = *verdict.entry(&s.series).or_insert_with(|| {
                matcher_sets
                    .iter()
                    .any(|set| set.iter().all(|m| m.matches(s.series.get(&m.name).unwrap_or(""))))
            });
            if hit {
                out.entry(s.series.clone()).or_default().push(s.ex.clone());
            }
        }
        out.into_iter().collect()
    }

    /// Every exemplar in ring order (oldest first), for a checkpoint.
    pub fn snapshot(&self) -> Vec<(Labels, Exemplar)> {
        self.ring.lock().items.iter().map(|s| (s.series.clone(), s.ex.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.ring.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn list_field(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), false)
}

pub(crate) fn exemplars_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        list_field("series_names"),
        list_field("series_values"),
        Field::new("t", DataType::Int64, false),
        Field::new("v", DataType::Float64, false),
        list_field("names"),
        list_field("values"),
    ]))
}

/// Encodes an exemplars record payload (WAL kind 5).
pub fn encode_exemplars<'a>(
    items: impl IntoIterator<Item = (&'a Labels, &'a Exemplar)>,
) -> Result<Vec<u8>> {
    let mut sn = ListBuilder::new(StringBuilder::new());
    let mut sv = ListBuilder::new(StringBuilder::new());
    let mut en = ListBuilder::new(StringBuilder::new());
    let mut ev = ListBuilder::new(StringBuilder::new());
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    let push =
        |n: &mut ListBuilder<StringBuilder>, v: &mut ListBuilder<StringBuilder>, l: &Labels| {
            for x in l.iter() {
                n.values().append_value(&*x.name);
                v.values().append_value(&*x.value);
            }
            n.append(true);
            v.append(true);
        };
    for (series, e) in items {
        push(&mut sn, &mut sv, series);
        push(&mut en, &mut ev, &e.labels);
        ts.push(e.t);
        vs.push(e.v);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(sn.finish()),
        Arc::new(sv.finish()),
        Arc::new(Int64Array::from(ts)),
        Arc::new(Float64Array::from(vs)),
        Arc::new(en.finish()),
        Arc::new(ev.finish()),
    ];
    crate::wal::ipc_bytes(&RecordBatch::try_new(exemplars_schema(), cols)?)
}

fn pairs(
    names: &ListArray,
    values: &ListArray,
    i: usize,
) -> std::result::Result<Vec<(String, String)>, String> {
    let n = names.value(i);
    let v = values.value(i);
    let n = n.as_any().downcast_ref::<StringArray>().ok_or("names item type")?;
    let v = v.as_any().downcast_ref::<StringArray>().ok_or("values item type")?;
    if n.len() != v.len() {
        return Err("names and values differ in length".into());
    }
    Ok((0..n.len()).map(|j| (n.value(j).to_string(), v.value(j).to_string())).collect())
}

/// Decodes the rows of one record batch of an exemplars record. Rows whose labels are not a
/// valid label set are skipped (they cannot have been written by this code).
pub(crate) fn decode_exemplars(
    batch: &RecordBatch,
    out: &mut Vec<(Labels, Exemplar)>,
) -> std::result::Result<(), String> {
    let col = |i: usize| batch.columns().get(i).cloned().ok_or("missing column");
    let list = |a: &ArrayRef| -> std::result::Result<ListArray, String> {
        a.as_any().downcast_ref::<ListArray>().cloned().ok_or_else(|| "list column type".into())
    };
    let (sn, sv, en, ev) = (list(&col(0)?)?, list(&col(1)?)?, list(&col(4)?)?, list(&col(5)?)?);
    let t = col(2)?;
    let t = t.as_any().downcast_ref::<Int64Array>().ok_or("t column type")?;
    let v = col(3)?;
    let v = v.as_any().downcast_ref::<Float64Array>().ok_or("v column type")?;
    for i in 0..batch.num_rows() {
        let (Ok(series), Ok(labels)) =
            (Labels::from_pairs(pairs(&sn, &sv, i)?), Labels::from_pairs(pairs(&en, &ev, i)?))
        else {
            continue;
        };
        out.push((series, Exemplar { labels, t: t.value(i), v: v.value(i) }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied()).unwrap()
    }

    fn ex(t: i64, v: f64) -> Exemplar {
        Exemplar { labels: l(&[("trace_id", &format!("t{t}"))]), t, v }
    }

    #[test]
    fn ring_is_bounded_and_drops_duplicates_and_out_of_order() {
        let s = ExemplarStore::new(3);
        let a = l(&[("__name__", "a")]);
        let b = l(&[("__name__", "b")]);
        assert_eq!(s.add(&a, &[ex(2, 1.0), ex(1, 1.0)]).len(), 2, "sorted before adding");
        assert!(s.add(&a, &[ex(2, 1.0)]).is_empty(), "a retried exemplar is a no-op");
        assert!(s.add(&a, &[ex(1, 5.0)]).is_empty(), "out of order");
        assert_eq!(s.add(&b, &[ex(3, 1.0), ex(4, 2.0)]).len(), 2);
        assert_eq!(s.len(), 3, "the oldest (a@1) was evicted");
        let all = vec![vec![Matcher::new(model::MatchOp::RegexMatch, "__name__", ".+").unwrap()]];
        let got: Vec<(String, Vec<i64>)> = s
            .select(&all, i64::MIN, i64::MAX)
            .into_iter()
            .map(|(l, e)| (l.to_string(), e.iter().map(|e| e.t).collect()))
            .collect();
        assert_eq!(got, vec![("a{}".to_string(), vec![2]), ("b{}".to_string(), vec![3, 4])]);
        assert_eq!(s.select(&all, 4, 10).len(), 1, "time range applies");
        let only_a = vec![vec![Matcher::eq("__name__", "a")]];
        assert_eq!(s.select(&only_a, i64::MIN, i64::MAX).len(), 1);
        // Evicting every exemplar of a series forgets it: an older one is accepted again.
        s.add(&b, &[ex(5, 1.0)]);
        assert!(s.select(&only_a, i64::MIN, i64::MAX).is_empty());
        assert_eq!(s.add(&a, &[ex(1, 1.0)]).len(), 1);
    }

    #[test]
    fn record_roundtrips() {
        let series = l(&[("__name__", "h_bucket"), ("le", "0.5")]);
        let items =
            [(series.clone(), ex(10, 0.25)), (series, Exemplar { labels: l(&[]), t: -5, v: -0.0 })];
        let bytes = encode_exemplars(items.iter().map(|(s, e)| (s, e))).unwrap();
        let r =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let mut out = Vec::new();
        for b in r {
            decode_exemplars(&b.unwrap(), &mut out).unwrap();
        }
        assert_eq!(out, items);
        assert!(out[1].1.v.is_sign_negative());
    }
}
