//! Go's byte semantics for string literals, where they differ from promql-parser's.
//!
//! Prometheus unquotes a literal with Go's `strconv.Unquote`: `\xHH` and `\OOO` escapes are
//! raw bytes, so `"a\xc5z"` is three bytes that are not valid UTF-8, and `count_values` then
//! fails with `invalid label name "a\xc5z"`. promql-parser decodes the same escape to the
//! character U+00C5 (a valid label name in UTF-8 mode), so the query would succeed. This module
//! rescans the query text for such literals and reproduces Prometheus' error.

use std::collections::HashMap;

use promql_parser::parser::Expr;
use promql_parser::parser::token::T_COUNT_VALUES;

use crate::error::{Error, Result};

/// Fails like Prometheus when a `count_values` label is a literal whose Go bytes are not
/// valid UTF-8. Every other query passes untouched.
pub(crate) fn check(query: &str, expr: &Expr) -> Result<()> {
    if !query.contains('\\') {
        return Ok(());
    }
    let invalid = invalid_literals(query);
    if invalid.is_empty() {
        return Ok(());
    }
    walk(expr, &invalid)
}

fn walk(expr: &Expr, invalid: &HashMap<String, Vec<u8>>) -> Result<()> {
    match expr {
        Expr::Aggregate(a) => {
            if a.op.id() == T_COUNT_VALUES
                && let Some(p) = &a.param
                && let Expr::StringLiteral(s) = unparen(p)
                && let Some(bytes) = invalid.get(&s.val)
            {
                return Err(Error::Execution(format!("invalid label name {}", go_quote(bytes))));
            }
            if let Some(p) = &a.param {
                walk(p, invalid)?;
            }
            walk(&a.expr, invalid)
        }
        Expr::Unary(u) => walk(&u.expr, invalid),
        Expr::Binary(b) => {
            walk(&b.lhs, invalid)?;
            walk(&b.rhs, invalid)
        }
        Expr::Paren(p) => walk(&p.expr, invalid),
        Expr::Subquery(s) => walk(&s.expr, invalid),
        Expr::Call(c) => c.args.args.iter().try_for_each(|a| walk(a, invalid)),
        _ => Ok(()),
    }
}

fn unparen(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unparen(&p.expr),
        e => e,
    }
}

/// Literals of `query` whose Go bytes are not valid UTF-8: promql-parser's decoding → Go's.
fn invalid_literals(query: &str) -> HashMap<String, Vec<u8>> {
    let b = query.as_bytes();
    let mut out = HashMap::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            q @ (b'"' | b'\'') => {
                let start = i + 1;
                i = start;
                while i < b.len() && b[i] != q && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                let end = i.min(b.len());
                if let Some(inner) = query.get(start..end)
                    && let Some((parsed, go)) = decode(inner)
                    && std::str::from_utf8(&go).is_err()
                {
                    out.insert(parsed, go);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Decodes the inside of a quoted literal both ways: as promql-parser does (a byte escape is
/// the character of that code point) and as Go does (a byte escape is that byte). `None` on
/// a malformed escape (the parser has already rejected the query then).
fn decode(inner: &str) -> Option<(String, Vec<u8>)> {
    let mut parsed = String::with_capacity(inner.len());
    let mut go = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    let push = |c: char, parsed: &mut String, go: &mut Vec<u8>| {
        parsed.push(c);
        go.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            push(c, &mut parsed, &mut go);
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'f' => Some('\x0c'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\x0b'),
            '\\' | '\'' | '"' => Some(e),
            _ => None,
        };
        if let Some(s) = simple {
            push(s, &mut parsed, &mut go);
            continue;
        }
        let (digits, radix) = match e {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (2, 8),
            _ => return None,
        };
        let mut v = if radix == 8 { e.to_digit(8)? } else { 0 };
        for _ in 0..digits {
            v = v.checked_mul(radix)?.checked_add(chars.next()?.to_digit(radix)?)?;
        }
        if matches!(e, 'u' | 'U') {
            push(char::from_u32(v)?, &mut parsed, &mut go);
        } else {
            let byte = u8::try_from(v).ok()?;
            parsed.push(char::from(byte));
            go.push(byte);
        }
    }
    Some((parsed, go))
}

/// Go's `%q` of a byte string: printable characters as they are, invalid bytes as `\xHH`.
fn go_quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_query(q: &str) -> std::result::Result<(), String> {
        let expr = promql_parser::parser::parse(q).unwrap();
        check(q, &expr).map_err(|e| e.to_string())
    }

    #[test]
    fn count_values_with_invalid_utf8_label_fails_like_prometheus() {
        let err = check_query(r#"count_values("a\xc5z", version)"#).unwrap_err();
        assert!(err.contains(r#"invalid label name "a\xc5z""#), "{err}");
        let err = check_query(r#"sum(count_values(('a\305z'), version))"#).unwrap_err();
        assert!(err.contains(r#"invalid label name "a\xc5z""#), "{err}");
    }

    #[test]
    fn valid_byte_escapes_and_other_literals_pass() {
        // \xc3\x85 is the UTF-8 encoding of Å: valid in Go too.
        check_query(r#"count_values("a\xc3\x85z", version)"#).unwrap();
        check_query(r#"count_values("version", version)"#).unwrap();
        check_query(r#"count_values("v", x{a="\xc5"})"#).unwrap();
        check_query(r#"count_values(`a\xc5z`, version)"#).unwrap();
    }

    #[test]
    fn decode_matches_promql_parser_for_every_escape() {
        for lit in [r#""a\xc5\u00e9\U0001F600\101\n\t\\\"""#, r#"'\'\x41'"#] {
            let inner = &lit[1..lit.len() - 1];
            let Expr::StringLiteral(s) = promql_parser::parser::parse(lit).unwrap() else {
                panic!("{lit} is not a string literal");
            };
            assert_eq!(decode(inner).unwrap().0, s.val, "{lit}");
        }
    }
}
