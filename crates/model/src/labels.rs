//! Label sets: sorted by name, validated, interned, and cheap to clone (one reference count).

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub use arcstr::ArcStr as LabelStr;

use parking_lot::Mutex;

use crate::ModelError;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair. Strings are [`LabelStr`]s (reference-counted, like `Arc<str>`) so that an
/// [`Interner`] can share them between series; a `LabelStr` is a thin 8-byte pointer to its
/// count, length and bytes, so a pair is 16 bytes instead of `Arc<str>`'s 32 (every active
/// series holds one pair per label: docs/benchmarks/storage.md, RSS per series).
///
/// Ordered by name, then value, byte-wise. The comparison skips the bytes of a string both
/// sides share (the same interned string), which most names and many values are.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Label {
    pub name: LabelStr,
    pub value: LabelStr,
}

fn cmp_shared(x: &LabelStr, y: &LabelStr) -> std::cmp::Ordering {
    if LabelStr::ptr_eq(x, y) { std::cmp::Ordering::Equal } else { x.as_str().cmp(y.as_str()) }
}

impl Ord for Label {
    fn cmp(&self, other: &Label) -> std::cmp::Ordering {
        cmp_shared(&self.name, &other.name).then_with(|| cmp_shared(&self.value, &other.value))
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Label) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// An immutable, sorted set of labels with unique names and non-empty values.
///
/// Invariant: pairs are sorted by name, names are unique, no value is empty. Every constructor
/// enforces it, so comparing two `Labels` compares series identities.
/// Ordered pair by pair (lexicographically, a prefix first), as the derived order would.
///
/// The empty set holds no `Arc` at all (`None`; every constructor maps an empty slice to it),
/// so creating, cloning and dropping one touches no shared memory: std's `Arc<[T]>::default()`
/// shares one static allocation whose reference count every thread would increment (remote
/// write builds an empty `Labels` for every cache hit; see docs/benchmarks/ingest.md, s11).
#[derive(Clone, Default)]
pub struct Labels(Option<Arc<[Label]>>);

impl PartialEq for Labels {
    fn eq(&self, other: &Labels) -> bool {
        self.addr() == other.addr() || self.as_slice() == other.as_slice()
    }
}

impl Eq for Labels {}

impl Ord for Labels {
    fn cmp(&self, other: &Labels) -> std::cmp::Ordering {
        if self.addr() == other.addr() {
            return std::cmp::Ordering::Equal;
        }
        self.as_slice().iter().cmp(other.as_slice().iter())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for Labels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for l in self.as_slice() {
            state.write(l.name.as_bytes());
            state.write_u8(0xff);
            state.write(l.value.as_bytes());
            state.write_u8(0xfe);
        }
    }
}

impl Labels {
    pub fn empty() -> Labels {
        Labels::default()
    }

    /// The one constructor of the tuple: an empty slice becomes `None` (see the type's docs).
    fn from_arc(pairs: Arc<[Label]>) -> Labels {
        Labels(if pairs.is_empty() { None } else { Some(pairs) })
    }

    fn from_vec(pairs: Vec<Label>) -> Labels {
        if pairs.is_empty() { Labels(None) } else { Labels(Some(pairs.into())) }
    }

    /// Builds from pairs; sorts, drops empty values, rejects empty or duplicate names.
    /// Label names are not restricted to the legacy charset (Prometheus 3 allows UTF-8 names).
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Labels, ModelError> {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.push(n.as_ref(), v.as_ref());
        }
        b.build()
    }

    /// Builds from label pairs already sorted, unique and non-empty (for example read back from
    /// our own storage). Checked in debug builds only.
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Labels {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Labels::from_vec(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        let s = self.as_slice();
        s.binary_search_by(|l| (*l.name).cmp(name)).ok().map(|i| &*s[i].value)
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Label> + '_ {
        self.as_slice().iter()
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    #[inline]
    pub fn as_slice(&self) -> &[Label] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// A copy without the given label names (e.g. `__name__` after a function call).
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels::from_arc(self.iter().filter(|l| !names.contains(&&*l.name)).cloned().collect())
    }

    /// The address of the shared pair storage. Two `Labels` with the same address are clones
    /// of one another (hence equal); the address identifies a label set only while a clone
    /// of it is alive (afterwards the memory can be reused). Every empty set has address 0.
    pub fn addr(&self) -> usize {
        self.0.as_ref().map_or(0, |a| Arc::as_ptr(a).cast::<Label>() as usize)
    }

    /// A copy keeping only the given names.
    pub fn keep(&self, names: &[&str]) -> Labels {
        Labels::from_arc(self.iter().filter(|l| names.contains(&&*l.name)).cloned().collect())
    }

    /// A copy with `name` set to `value`; an empty value removes the label.
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut v: Vec<Label> = self.iter().filter(|l| &*l.name != name).cloned().collect();
        if !value.is_empty() {
            let pos = v.partition_point(|l| &*l.name < name);
            v.insert(pos, Label { name: name.into(), value: value.into() });
        }
        Labels::from_vec(v)
    }

    /// Approximate heap bytes held (not counting sharing through the interner): the slice's
    /// 16-byte header, 16 bytes per pair, and each string with its 16-byte count and length.
    pub fn heap_bytes(&self) -> usize {
        self.iter().map(|l| 16 + (l.name.len() + 16) + (l.value.len() + 16)).sum::<usize>() + 16
    }
}

impl fmt::Display for Labels {
    /// Prometheus' notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.iter().filter(|l| &*l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, &*l.value)?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Collects pairs, then validates and sorts them once.
#[derive(Default)]
pub struct LabelsBuilder {
    pairs: Vec<(LabelStr, LabelStr)>,
}

impl LabelsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: &str, value: &str) -> &mut Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    pub fn push_interned(&mut self, name: LabelStr, value: LabelStr) -> &mut Self {
        self.pairs.push((name, value));
        self
    }

    pub fn build(mut self) -> Result<Labels, ModelError> {
        self.pairs.retain(|(_, v)| !v.is_empty());
        if !self.pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            self.pairs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        for (i, (n, _)) in self.pairs.iter().enumerate() {
            if n.is_empty() {
                return Err(ModelError::EmptyLabelName);
            }
            if i > 0 && self.pairs[i - 1].0 == *n {
                return Err(ModelError::DuplicateLabelName(n.to_string()));
            }
        }
        Ok(Labels::from_arc(
            self.pairs.into_iter().map(|(name, value)| Label { name, value }).collect(),
        ))
    }
}

/// Shares equal strings between label sets. Bounded only by the strings it is given; storage
/// keeps one per tenant head and drops it with the head.
#[derive(Default)]
pub struct Interner {
    set: Mutex<HashSet<LabelStr, foldhash::fast::RandomState>>,
}

impl Interner {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn intern(&self, s: &str) -> LabelStr {
        let mut set = self.set.lock();
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        let a: LabelStr = s.into();
        set.insert(a.clone());
        a
    }

    /// Re-points every string of `labels` at the shared copy.
    pub fn intern_labels(&self, labels: &Labels) -> Labels {
        let mut set = self.set.lock();
        let mut get = |s: &LabelStr| -> LabelStr {
            if let Some(a) = set.get(s) {
                return a.clone();
            }
            set.insert(s.clone());
            s.clone()
        };
        Labels::from_arc(
            labels.iter().map(|l| Label { name: get(&l.name), value: get(&l.value) }).collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.set.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order skips shared strings but is exactly the byte-wise order of the pairs, for
    /// shared (same `Arc`) and separately built (equal bytes, different `Arc`) strings alike.
    #[test]
    fn order_is_bytewise_over_the_pairs() {
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs.iter().copied()).unwrap();
        let a = l(&[("__name__", "up"), ("job", "node")]);
        let sets = [
            a.clone(),
            l(&[("__name__", "up"), ("job", "node")]),
            l(&[("__name__", "up"), ("job", "node"), ("zone", "a")]),
            l(&[("__name__", "up"), ("job", "nodf")]),
            l(&[("__name__", "up"), ("jo", "node")]),
            l(&[("__name__", "u"), ("job", "node")]),
            l(&[("__name__", "up")]),
            Labels::empty(),
            a.with("instance", "h1"),
            a.with("instance", "h2"),
        ];
        let bytes = |x: &Labels| -> Vec<(String, String)> {
            x.iter().map(|p| (p.name.to_string(), p.value.to_string())).collect()
        };
        for x in &sets {
            for y in &sets {
                assert_eq!(x.cmp(y), bytes(x).cmp(&bytes(y)), "{x} vs {y}");
                assert_eq!(x.cmp(y).is_eq(), x == y, "{x} vs {y}");
            }
        }
    }

    fn check(pairs: &[(&str, &str)], expected: Result<&str, ModelError>) {
        let got = Labels::from_pairs(pairs.iter().copied()).map(|l| l.to_string());
        assert_eq!(got, expected.map(str::to_string));
    }

    #[test]
    fn builds_sorted_and_validated() {
        check(&[("b", "2"), ("__name__", "up"), ("a", "1")], Ok(r#"up{a="1", b="2"}"#));
        check(&[("a", ""), ("__name__", "up")], Ok("up{}"));
        check(&[("a", "1"), ("a", "2")], Err(ModelError::DuplicateLabelName("a".into())));
        check(&[("", "1")], Err(ModelError::EmptyLabelName));
    }

    #[test]
    fn get_with_without() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x"), ("i", "1")]).unwrap();
        assert_eq!(l.get("job"), Some("x"));
        assert_eq!(l.get("nope"), None);
        assert_eq!(l.without(&[METRIC_NAME]).to_string(), r#"{i="1", job="x"}"#);
        assert_eq!(l.with("a", "z").to_string(), r#"up{a="z", i="1", job="x"}"#);
        assert_eq!(l.with("job", "").to_string(), r#"up{i="1"}"#);
        assert_eq!(l.keep(&["job"]).to_string(), r#"{job="x"}"#);
    }

    /// Every active series holds one pair per label: two 8-byte string handles, not 32 bytes.
    #[test]
    fn a_label_pair_is_two_thin_pointers() {
        assert_eq!(std::mem::size_of::<Label>(), 16);
        assert_eq!(std::mem::size_of::<Option<LabelStr>>(), 8);
        let l = Labels::from_pairs([("job", "x"), ("instance", "h:1")]).unwrap();
        assert_eq!(l.heap_bytes(), 16 + (16 + 3 + 16 + 1 + 16) + (16 + 8 + 16 + 3 + 16));
    }

    /// Every way to an empty set gives the one `None` representation: no shared `Arc` whose
    /// count threads would contend on, and all empties equal, hashed and addressed alike.
    #[test]
    fn the_empty_set_holds_no_arc() {
        use std::hash::BuildHasher;
        let a = Labels::from_pairs([("job", "x")]).unwrap();
        let empties = [
            Labels::empty(),
            Labels::default(),
            Labels::from_pairs([("job", "")]).unwrap(),
            Labels::from_sorted_unchecked(Vec::new()),
            a.without(&["job"]),
            a.keep(&["nope"]),
            a.with("job", ""),
            Interner::new().intern_labels(&Labels::empty()),
        ];
        let hash = |l: &Labels| foldhash::quality::FixedState::with_seed(1).hash_one(l);
        for e in &empties {
            assert!(e.0.is_none(), "{e}");
            assert!(e.is_empty() && e.iter().len() == 0 && e.addr() == 0);
            assert_eq!(e, &Labels::empty());
            assert_eq!(hash(e), hash(&Labels::empty()));
            assert_ne!(e, &a);
            assert!(e < &a);
        }
        assert_eq!(std::mem::size_of::<Labels>(), 16, "no bigger than the Arc alone");
        assert_ne!(a.addr(), 0);
    }

    #[test]
    fn interner_shares_strings() {
        let i = Interner::new();
        let a = i.intern_labels(&Labels::from_pairs([("job", "x")]).unwrap());
        let b = i.intern_labels(&Labels::from_pairs([("job", "x")]).unwrap());
        assert!(LabelStr::ptr_eq(&a.as_slice()[0].value, &b.as_slice()[0].value));
        assert_eq!(i.len(), 2);
    }
}
