//! Inverted index (postings): label name → value → series ids. Answers matchers for the head
//! and for blocks, with direct lookups for `=` and literal alternations and range scans for
//! prefixes, so only genuinely complex regexes run against every value of a label.

use std::collections::BTreeMap;
use std::ops::Bound;

use model::{LabelStr, Labels, Matcher};
use roaring::RoaringBitmap;

#[derive(Default, Clone)]
pub struct Postings {
    map: BTreeMap<LabelStr, BTreeMap<LabelStr, RoaringBitmap>>,
    all: RoaringBitmap,
}

impl Postings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, id: u32, labels: &Labels) {
        for l in labels.iter() {
            self.map
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default()
                .insert(id);
        }
        self.all.insert(id);
    }

    /// Adds one posting list wholesale (used when loading a block's index).
    pub fn add_list(&mut self, name: LabelStr, value: LabelStr, ids: RoaringBitmap) {
        self.all |= &ids;
        self.map.entry(name).or_default().insert(value, ids);
    }

    pub fn remove(&mut self, id: u32, labels: &Labels) {
        for l in labels.iter() {
            if let Some(values) = self.map.get_mut(&*l.name) {
                if let Some(p) = values.get_mut(&*l.value) {
                    p.remove(id);
                    if p.is_empty() {
                        values.remove(&*l.value);
                    }
                }
                if values.is_empty() {
                    self.map.remove(&*l.name);
                }
            }
        }
        self.all.remove(id);
    }

    pub fn all(&self) -> &RoaringBitmap {
        &self.all
    }

    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|k| &**k)
    }

    pub fn label_values(&self, name: &str) -> impl Iterator<Item = (&str, &RoaringBitmap)> {
        self.map.get(name).into_iter().flat_map(|m| m.iter().map(|(k, v)| (&**k, v)))
    }

    /// Iterates every (name, value, ids) triple in order (for writing a block index).
    pub fn iter(&self) -> impl Iterator<Item = (&LabelStr, &LabelStr, &RoaringBitmap)> {
        self.map.iter().flat_map(|(n, vs)| vs.iter().map(move |(v, ids)| (n, v, ids)))
    }

    /// Union of the postings of every value of `m.name` that `m` matches (ignoring absence).
    fn matching(&self, m: &Matcher, positive: bool) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        let Some(values) = self.map.get(m.name.as_str()) else { return out };
        // positive: values the matcher accepts; otherwise values it rejects.
        if positive {
            if let Some(set) = m.set_matches() {
                for v in set {
                    if let Some(p) = values.get(v.as_str()) {
                        out |= p;
                    }
                }
                return out;
            }
            if let Some(prefix) = m.prefix() {
                let range = values.range::<str, _>((Bound::Included(prefix), Bound::Unbounded));
                for (_, p) in range.take_while(|(v, _)| v.starts_with(prefix)) {
                    out |= p;
                }
                return out;
            }
        }
        for (v, p) in values {
            if m.matches(v) == positive {
                out |= p;
            }
        }
        out
    }

    /// Series ids selected by all matchers, with Prometheus semantics: a matcher that matches
    /// the empty string also selects series without the label.
    pub fn select(&self, matchers: &[Matcher]) -> RoaringBitmap {
        // Narrow with the selective matchers first, then subtract.
        let mut result: Option<RoaringBitmap> = None;
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let p = self.matching(m, true);
            result = Some(match result {
                None => p,
                Some(r) => r & p,
            });
            if result.as_ref().is_some_and(|r| r.is_empty()) {
                return RoaringBitmap::new();
            }
        }
        let mut result = result.unwrap_or_else(|| self.all.clone());
        for m in matchers.iter().filter(|m| m.matches_empty()) {
            result -= self.matching(m, false);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::MatchOp;
    use proptest::prelude::*;

    fn arb_labels() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[abc]", "[xyz]{0,2}"), 0..4)
    }

    fn arb_matcher() -> impl Strategy<Value = (u8, String, String)> {
        (
            0u8..4,
            "[abcd]",
            prop_oneof![
                "[xyz]{0,2}",
                Just("x.*".to_string()),
                Just("x|yy".to_string()),
                Just(".+".to_string()),
                Just("[xz]y?".to_string())
            ],
        )
    }

    proptest! {
        // The index must agree with matching every series' labels one by one.
        #[test]
        fn select_agrees_with_naive_model(
            series in proptest::collection::vec(arb_labels(), 0..30),
            ms in proptest::collection::vec(arb_matcher(), 1..4),
        ) {
            let mut p = Postings::new();
            let mut all = Vec::new();
            for (i, pairs) in series.iter().enumerate() {
                let Ok(l) = Labels::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()))) else { continue };
                p.add(i as u32, &l);
                all.push((i as u32, l));
            }
            let matchers: Vec<Matcher> = ms.iter().filter_map(|(op, n, v)| {
                let op = [MatchOp::Equal, MatchOp::NotEqual, MatchOp::RegexMatch, MatchOp::RegexNoMatch][*op as usize];
                Matcher::new(op, n, v).ok()
            }).collect();
            let got: Vec<u32> = p.select(&matchers).iter().collect();
            let want: Vec<u32> = all.iter()
                .filter(|(_, l)| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
                .map(|(i, _)| *i).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn remove_cleans_up() {
        let mut p = Postings::new();
        let l = Labels::from_pairs([("a", "1")]).unwrap();
        p.add(3, &l);
        p.remove(3, &l);
        assert_eq!(p.label_names().count(), 0);
        assert!(p.all().is_empty());
    }
}
