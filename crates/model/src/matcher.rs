//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus semantics and index fast paths.

use std::fmt;

use regex::Regex;

use crate::ModelError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

/// What a regex reduces to, so the index can answer it without running the regex.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fast {
    /// No shortcut: run the regex.
    None,
    /// Matches exactly these strings (a literal or an alternation of literals).
    Set(Vec<String>),
    /// Matches any string starting with this prefix (`foo.*`).
    Prefix(String),
    /// `.*`: matches everything, including the empty string.
    Any,
    /// `.+`: matches every non-empty string.
    NonEmpty,
}

/// A matcher on one label. Regexes are fully anchored and `.` matches newlines, as in
/// Prometheus (`^(?s:re)$`). A matcher that matches the empty string also selects series that
/// lack the label.
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
    fast: Fast,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Matcher, ModelError> {
        let (re, fast) = match op {
            MatchOp::Equal | MatchOp::NotEqual => (None, Fast::Set(vec![value.to_string()])),
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                let re = Regex::new(&format!("^(?s:{value})$")).map_err(|e| {
                    ModelError::InvalidRegex { pattern: value.to_string(), reason: e.to_string() }
                })?;
                (Some(re), analyse(value))
            }
        };
        Ok(Matcher { name: name.to_string(), op, value: value.to_string(), re, fast })
    }

    pub fn eq(name: &str, value: &str) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
            fast: Fast::Set(vec![value.into()]),
        }
    }

    /// True when the label value `v` (empty when the label is absent) satisfies the matcher.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::RegexMatch => self.regex_matches(v),
            MatchOp::RegexNoMatch => !self.regex_matches(v),
        }
    }

    fn regex_matches(&self, v: &str) -> bool {
        match &self.fast {
            Fast::Set(s) => s.iter().any(|x| x == v),
            Fast::Prefix(p) => v.starts_with(p.as_str()),
            Fast::Any => true,
            Fast::NonEmpty => !v.is_empty(),
            Fast::None => self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// True when the matcher selects series that do not have the label at all.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=` and for regexes that are literal alternations: the exact values that match.
    /// Used by the index to look postings up directly instead of scanning values.
    pub fn set_matches(&self) -> Option<&[String]> {
        match (&self.op, &self.fast) {
            (MatchOp::Equal | MatchOp::RegexMatch, Fast::Set(s)) => Some(s),
            _ => None,
        }
    }

    /// For a positive regex of the form `prefix.*`: the literal prefix.
    pub fn prefix(&self) -> Option<&str> {
        match (&self.op, &self.fast) {
            (MatchOp::RegexMatch, Fast::Prefix(p)) => Some(p),
            _ => None,
        }
    }

    /// Whether the matcher is positive (narrows the set of series) rather than exclusionary.
    pub fn is_positive(&self) -> bool {
        matches!(self.op, MatchOp::Equal | MatchOp::RegexMatch) && !self.matches_empty()
    }
}

fn is_literal(s: &str) -> bool {
    !s.chars().any(regex_syntax_meta)
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    ) || c.is_whitespace()
}

fn analyse(re: &str) -> Fast {
    match re {
        ".*" => return Fast::Any,
        ".+" => return Fast::NonEmpty,
        _ => {}
    }
    if is_literal(re) {
        return Fast::Set(vec![re.to_string()]);
    }
    if let Some(p) = re.strip_suffix(".*")
        && is_literal(p)
    {
        return Fast::Prefix(p.to_string());
    }
    let parts: Vec<&str> = re.split('|').collect();
    if parts.len() > 1 && parts.iter().all(|p| is_literal(p)) {
        return Fast::Set(parts.iter().map(|p| p.to_string()).collect());
    }
    Fast::None
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(op: MatchOp, pattern: &str, yes: &[&str], no: &[&str]) {
        let m = Matcher::new(op, "l", pattern).unwrap();
        for v in yes {
            assert!(m.matches(v), "{m} should match {v:?}");
        }
        for v in no {
            assert!(!m.matches(v), "{m} should not match {v:?}");
        }
    }

    #[test]
    fn prometheus_semantics() {
        check(MatchOp::Equal, "a", &["a"], &["", "ab"]);
        check(MatchOp::NotEqual, "a", &["", "b"], &["a"]);
        check(MatchOp::RegexMatch, "a|b", &["a", "b"], &["ab", ""]);
        check(MatchOp::RegexMatch, "fo.*", &["fo", "foo", "fo\nx"], &["f", "xfoo"]);
        check(MatchOp::RegexMatch, ".*", &["", "x"], &[]);
        check(MatchOp::RegexMatch, ".+", &["x"], &[""]);
        check(MatchOp::RegexMatch, "a.c", &["abc", "a\nc"], &["ac", "abcd"]);
        check(MatchOp::RegexMatch, "(a|b)c", &["ac", "bc"], &["c"]);
        check(MatchOp::RegexNoMatch, "a|", &["b"], &["a", ""]);
        assert!(Matcher::new(MatchOp::RegexMatch, "l", "(").is_err());
    }

    #[test]
    fn fast_paths() {
        let m = Matcher::new(MatchOp::RegexMatch, "l", "a|bb|c").unwrap();
        assert_eq!(m.set_matches(), Some(&["a".to_string(), "bb".into(), "c".into()][..]));
        let m = Matcher::new(MatchOp::RegexMatch, "l", "node_.*").unwrap();
        assert_eq!(m.prefix(), Some("node_"));
        let m = Matcher::new(MatchOp::RegexMatch, "l", "a-b").unwrap();
        assert_eq!(m.set_matches(), None);
    }

    proptest! {
        // The fast paths must agree with the anchored regex they stand in for.
        #[test]
        fn fast_paths_agree_with_regex(
            parts in proptest::collection::vec("[a-c]{0,3}", 1..4),
            suffix in proptest::bool::ANY,
            v in "[a-c]{0,5}",
        ) {
            let mut pattern = parts.join("|");
            if suffix && parts.len() == 1 { pattern.push_str(".*"); }
            let m = Matcher::new(MatchOp::RegexMatch, "l", &pattern).unwrap();
            let re = Regex::new(&format!("^(?s:{pattern})$")).unwrap();
            prop_assert_eq!(m.matches(&v), re.is_match(&v));
        }
    }
}
