//! Experimental duration expressions (`foo[5m+30s]`, `offset (2 * 1m)`), which promql-parser
//! does not parse: they are folded into plain durations in the query text before parsing.
//! Off by default, as behind Prometheus' `promql-duration-expr` feature flag.

/// Rewrites the arithmetic inside range brackets and after `offset` into plain millisecond
/// durations. Text it does not understand is left alone for the parser to report.
pub(crate) fn fold(query: &str) -> String {
    let b = query.as_bytes();
    let mut out = String::with_capacity(query.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            let end = skip_string(b, i);
            out.push_str(&query[i..end]);
            i = end;
            continue;
        }
        if c == b'['
            && let Some(close) = query[i..].find(']').map(|j| i + j)
        {
            let inner = &query[i + 1..close];
            let folded: Option<Vec<String>> = split_top_colon(inner)
                .iter()
                .map(|p| if p.trim().is_empty() { Some(String::new()) } else { fold_part(p) })
                .collect();
            if let Some(f) = folded {
                out.push('[');
                out.push_str(&f.join(":"));
                out.push(']');
                i = close + 1;
                continue;
            }
        }
        if query[i..].starts_with("offset") && (i == 0 || !is_ident(b[i - 1])) {
            let rest = &query[i + 6..];
            let trimmed = rest.trim_start();
            let (neg, body) = match trimmed.strip_prefix('-') {
                Some(r) if r.trim_start().starts_with('(') => (true, r.trim_start()),
                _ => (false, trimmed),
            };
            if body.starts_with('(')
                && let Some(end) = matching_paren(body)
                && let Some(secs) = eval(&body[..=end])
            {
                let ms = (secs * 1000.0).round() as i64 * if neg { -1 } else { 1 };
                out.push_str("offset ");
                out.push_str(&format!("{ms}ms"));
                i += 6 + (rest.len() - body.len()) + end + 1;
                continue;
            }
        }
        let ch = query[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

fn skip_string(b: &[u8], start: usize) -> usize {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && q != b'`' {
            i += 2;
            continue;
        }
        if b[i] == q {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn split_top_colon(s: &str) -> Vec<&str> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => return vec![&s[..i], &s[i + 1..]],
            _ => {}
        }
    }
    vec![s]
}

fn matching_paren(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// One side of a range bracket: left alone when it is a plain duration or number.
fn fold_part(p: &str) -> Option<String> {
    let t = p.trim();
    if !t.contains(['+', '-', '*', '/', '%', '^', '(']) {
        return Some(t.to_string());
    }
    let secs = eval(t)?;
    if secs < 0.0 {
        return None;
    }
    Some(format!("{}ms", (secs * 1000.0).round() as i64))
}

/// Evaluates a duration expression to seconds.
fn eval(s: &str) -> Option<f64> {
    let toks = tokenize(s)?;
    let mut p = Parser { toks, pos: 0 };
    let v = p.expr(0)?;
    if p.pos == p.toks.len() { Some(v) } else { None }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Op(char),
    Open,
    Close,
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => {
                out.push(Tok::Op(c as char));
                i += 1;
            }
            b'0'..=b'9' | b'.' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                let word = &s[start..i];
                let v = match word.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => parse_duration(word)? as f64 / 1000.0,
                };
                out.push(Tok::Num(v));
            }
            _ => return None,
        }
    }
    Some(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn prec(op: char) -> u8 {
        match op {
            '+' | '-' => 1,
            '*' | '/' | '%' => 2,
            _ => 3,
        }
    }

    fn expr(&mut self, min: u8) -> Option<f64> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Op(op)) = self.toks.get(self.pos).cloned() {
            let p = Self::prec(op);
            if p < min.max(1) {
                break;
            }
            self.pos += 1;
            // `^` is right-associative; the others left-associative.
            let rhs = if op == '^' { self.expr(p)? } else { self.expr(p + 1)? };
            lhs = match op {
                '+' => lhs + rhs,
                '-' => lhs - rhs,
                '*' => lhs * rhs,
                '/' => lhs / rhs,
                '%' => lhs % rhs,
                _ => lhs.powf(rhs),
            };
        }
        Some(lhs)
    }

    fn unary(&mut self) -> Option<f64> {
        match self.toks.get(self.pos).cloned()? {
            Tok::Op('-') => {
                self.pos += 1;
                // Unary minus binds looser than `^`: -2^2 is -(2^2).
                let v = self.pow_operand()?;
                Some(-v)
            }
            Tok::Op('+') => {
                self.pos += 1;
                self.pow_operand()
            }
            _ => self.pow_operand(),
        }
    }

    fn pow_operand(&mut self) -> Option<f64> {
        let base = self.primary()?;
        if let Some(Tok::Op('^')) = self.toks.get(self.pos) {
            self.pos += 1;
            let exp = self.unary()?;
            return Some(base.powf(exp));
        }
        Some(base)
    }

    fn primary(&mut self) -> Option<f64> {
        match self.toks.get(self.pos).cloned()? {
            Tok::Num(v) => {
                self.pos += 1;
                Some(v)
            }
            Tok::Open => {
                self.pos += 1;
                let v = self.expr(0)?;
                if self.toks.get(self.pos) != Some(&Tok::Close) {
                    return None;
                }
                self.pos += 1;
                Some(v)
            }
            _ => None,
        }
    }
}

/// Parses a Prometheus duration (`1h5m`, `10s53ms`, `0`) into milliseconds; a leading `-`
/// negates it.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('-') {
        return parse_duration(rest).map(|d| -d);
    }
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let units: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: i64 = s[start..i].parse().ok()?;
        let rest = &s[i..];
        let (u, mult) = units.iter().find(|(u, _)| rest.starts_with(u))?;
        i += u.len();
        total = total.checked_add(n.checked_mul(*mult)?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(q: &str, expected: &str) {
        assert_eq!(fold(q), expected, "{q}");
    }

    #[test]
    fn folds_duration_arithmetic() {
        check("changes(x[26m+4m])", "changes(x[1800000ms])");
        check("changes(x[5m])", "changes(x[5m])");
        check("x[29s+1s:5s+5s]", "x[30000ms:10000ms]");
        check("x[1h30m % 1h]", "x[1800000ms]");
        check("x offset (2 * 2)", "x offset 4000ms");
        check("x offset -(1 + 1)", "x offset -2000ms");
        check("x offset (-2 ^ 2)", "x offset -4000ms");
        check("x offset 5m", "x offset 5m");
        check(r#"x{a=~"[0-9]+"}[1m:]"#, r#"x{a=~"[0-9]+"}[1m:]"#);
    }
}
