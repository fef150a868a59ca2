//! Executes parsed scripts: loads data, runs each `eval` as Prometheus' runner does (instant
//! evals also in range mode and with `@` pinned), and collects per-case outcomes.

use std::path::Path;

use model::{Sample as ModelSample, SeriesWrite, TenantId, WriteBatch, stale_nan};
use promql_parser::parser::{AtModifier, Expr};

use super::check::{check_annotations, check_failure, compare};
use super::parse::{Command, EvalCmd, EvalKind, SeqValue, parse_script};
use super::{Backend, BackendFactory, CaseReport, FileReport, Outcome, SkipList};
use crate::engine::{Engine, EngineOptions};
use crate::value::{Sample, Value};

/// The engine options Prometheus' own runner uses for its scripts: the experimental features
/// they exercise (duration expressions, type-and-unit labels, delayed name removal) are on.
pub fn upstream_options() -> EngineOptions {
    EngineOptions {
        enable_duration_expressions: true,
        enable_type_and_unit_labels: true,
        enable_delayed_name_removal: true,
        ..EngineOptions::default()
    }
}

/// Runs one `.test` file against fresh backends from `factory`, with `upstream_options()`.
pub fn run_file(path: &Path, factory: BackendFactory<'_>) -> FileReport {
    run_file_with(path, factory, &SkipList::default(), &upstream_options())
}

/// Runs one `.test` file with known failures from `skips` (matched by file name and eval
/// line) and the given engine options.
pub fn run_file_with(
    path: &Path,
    factory: BackendFactory<'_>,
    skips: &SkipList,
    opts: &EngineOptions,
) -> FileReport {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match std::fs::read_to_string(path) {
        Ok(text) => run_script(&name, &text, factory, skips, opts),
        Err(e) => FileReport {
            file: name,
            cases: Vec::new(),
            error: Some(format!("cannot read {}: {e}", path.display())),
        },
    }
}

/// Runs a script given as text; `name` is the file name the skip list refers to.
pub fn run_script(
    name: &str,
    text: &str,
    factory: BackendFactory<'_>,
    skips: &SkipList,
    opts: &EngineOptions,
) -> FileReport {
    let mut report = FileReport { file: name.to_string(), ..FileReport::default() };
    let cmds = match parse_script(text) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    let engine = Engine::new(opts.clone());
    let tenant = TenantId::default_tenant();
    let mut backend = factory();
    let mut raw: Vec<(usize, String, Result<(), String>)> = Vec::new();
    for cmd in cmds {
        match cmd {
            Command::Clear => {
                backend = factory();
            }
            Command::Load { line, interval, mut series, with_nhcb } => {
                if with_nhcb {
                    let native = super::nhcb::convert(&series);
                    series.extend(native);
                }
                let mut batch = WriteBatch::default();
                for s in series {
                    let samples = s
                        .values
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| {
                            let t = i as i64 * interval;
                            match v {
                                SeqValue::Omitted | SeqValue::Histogram(_) => None,
                                SeqValue::Value(v) => Some(ModelSample { t, v: *v }),
                                SeqValue::Stale => Some(ModelSample { t, v: stale_nan() }),
                            }
                        })
                        .collect();
                    let histograms = s
                        .values
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| match v {
                            SeqValue::Histogram(h) => Some((i as i64 * interval, (**h).clone())),
                            _ => None,
                        })
                        .collect();
                    batch.series.push(SeriesWrite {
                        labels: s.labels,
                        samples,
                        histograms,
                        ..Default::default()
                    });
                }
                merge_repeated_series(&mut batch);
                if let Err(e) = backend.append(&tenant, batch) {
                    report.error = Some(format!("line {line}: load failed: {e}"));
                    return report;
                }
            }
            Command::Eval(cmd) => {
                let result = run_eval(&engine, backend.as_ref(), &tenant, &cmd);
                raw.push((cmd.line, cmd.text.clone(), result));
            }
        }
    }
    // A skip entry names an eval line; the same line may occur more than once in a file, and
    // the entry is stale only when every occurrence passes.
    let failing: std::collections::HashSet<&str> =
        raw.iter().filter(|r| r.2.is_err()).map(|r| r.1.as_str()).collect();
    for (line, text, result) in &raw {
        let outcome = match (result, skips.reason(name, text)) {
            (Ok(()), None) => Outcome::Passed,
            (Ok(()), Some(_)) if failing.contains(text.as_str()) => Outcome::Passed,
            (Ok(()), Some(_)) => Outcome::Failed(
                "case in the skip list passes now: remove it from the skip list".into(),
            ),
            (Err(e), None) => Outcome::Failed(e.clone()),
            (Err(_), Some(reason)) => Outcome::Skipped(reason.to_string()),
        };
        report.cases.push(CaseReport { line: *line, text: text.clone(), outcome });
    }
    report
}

fn run_eval(
    engine: &Engine,
    backend: &dyn Backend,
    tenant: &TenantId,
    cmd: &EvalCmd,
) -> Result<(), String> {
    match cmd.kind {
        EvalKind::Range { start, end, step } => {
            let res = engine.range_query(backend, tenant, &cmd.query, start, end, step);
            check_result(cmd, res.map(|r| (r.value, r.annotations)))
        }
        EvalKind::Instant { at } => {
            let expr = match engine.parse(&cmd.query) {
                Ok(e) => e,
                Err(e) => return check_result(cmd, Err(e)),
            };
            let res = engine.instant_query_expr(backend, tenant, &expr, at);
            let is_ok = res.is_ok();
            let value = res.as_ref().ok().map(|r| r.value.clone());
            check_result(cmd, res.map(|r| (r.value, r.annotations)))?;
            let Some(value) = value else { return Ok(()) };
            if !is_ok || cmd.ordered || matches!(value, Value::Matrix(_) | Value::String { .. }) {
                return Ok(());
            }
            // Range mode must agree at the middle step.
            let r = engine
                .range_query(
                    backend,
                    tenant,
                    &cmd.query,
                    at.saturating_sub(60_000),
                    at.saturating_add(60_000),
                    60_000,
                )
                .map_err(|e| format!("error in range mode: {e}"))?;
            let mut vec = Vec::new();
            if let Value::Matrix(series) = r.value {
                for s in series {
                    if let Some(p) = s.points.iter().find(|p| p.t == at) {
                        vec.push(Sample { labels: s.labels.clone(), t: at, v: p.v, h: None });
                    } else if let Some(p) = s.histograms.iter().find(|p| p.t == at) {
                        vec.push(Sample { labels: s.labels, t: at, v: 0.0, h: Some(p.h.clone()) });
                    }
                }
            }
            let ranged = match value {
                Value::Scalar { .. } => match vec.first() {
                    Some(s) => Value::Scalar { t: at, v: s.v },
                    None => return Err("range mode returned no scalar".into()),
                },
                _ => Value::Vector(vec),
            };
            compare(cmd, &ranged).map_err(|e| format!("in range mode: {e}"))?;
            // And with `@ <eval time>` pinned on every selector, at other evaluation times.
            if let Some(pinned) = pin_at(&expr, at) {
                let times: Vec<i64> = if at == 0 {
                    vec![-1000, 0, 1000]
                } else {
                    vec![at.saturating_mul(-10), 0, at / 5, at, at.saturating_mul(10)]
                };
                for t in times {
                    let r = engine
                        .instant_query_expr(backend, tenant, &pinned, t)
                        .map_err(|e| format!("error with @ {at} at time {t}: {e}"))?;
                    compare(cmd, &r.value).map_err(|e| format!("with @ {at} at time {t}: {e}"))?;
                }
            }
            Ok(())
        }
    }
}

fn check_result(
    cmd: &EvalCmd,
    res: Result<(Value, crate::value::Annotations), crate::Error>,
) -> Result<(), String> {
    match res {
        Err(e) => check_failure(cmd, &e.to_string()),
        Ok(_) if cmd.fail.is_some() => Err("expected an error, got a result".into()),
        Ok((value, annos)) => {
            check_annotations(cmd, &annos)?;
            compare(cmd, &value)
        }
    }
}

/// Functions whose result depends on the evaluation time even with pinned arguments.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// A copy of `expr` with `@ at` on every selector and outermost subquery lacking one, or
/// `None` when the expression uses a time-dependent function.
fn pin_at(expr: &Expr, at: i64) -> Option<Expr> {
    let mut e = expr.clone();
    let when = if at >= 0 {
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(at.unsigned_abs()))?
    } else {
        std::time::UNIX_EPOCH.checked_sub(std::time::Duration::from_millis(at.unsigned_abs()))?
    };
    fn walk(e: &mut Expr, when: std::time::SystemTime) -> bool {
        match e {
            Expr::VectorSelector(vs) => {
                vs.at.get_or_insert(AtModifier::At(when));
                true
            }
            Expr::MatrixSelector(ms) => {
                ms.vs.at.get_or_insert(AtModifier::At(when));
                true
            }
            Expr::Subquery(sq) => {
                sq.at.get_or_insert(AtModifier::At(when));
                true
            }
            Expr::Call(c) => {
                if AT_UNSAFE.contains(&c.func.name) {
                    return false;
                }
                c.args.args.iter_mut().all(|a| walk(a, when))
            }
            Expr::Aggregate(a) => {
                a.param.as_mut().is_none_or(|p| walk(p, when)) && walk(&mut a.expr, when)
            }
            Expr::Unary(u) => walk(&mut u.expr, when),
            Expr::Binary(b) => walk(&mut b.lhs, when) && walk(&mut b.rhs, when),
            Expr::Paren(p) => walk(&mut p.expr, when),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => true,
        }
    }
    if walk(&mut e, when) { Some(e) } else { None }
}

/// A `load` may list a series twice with a sample at the same time in both: upstream's test
/// storage keeps the later one (aggregators.test loads `data{test="inf3",point="d"}` as `Inf`
/// and then `-Inf`). Merge repeated series so that every backend sees one series whose later
/// samples replace earlier ones at equal timestamps, rather than relying on how a backend
/// treats a duplicate timestamp (real storage rejects the second value).
fn merge_repeated_series(batch: &mut WriteBatch) {
    use std::collections::{BTreeMap, HashMap};
    let mut first: HashMap<model::Labels, usize> = HashMap::new();
    let mut merged: Vec<SeriesWrite> = Vec::with_capacity(batch.series.len());
    for s in std::mem::take(&mut batch.series) {
        match first.get(&s.labels) {
            None => {
                first.insert(s.labels.clone(), merged.len());
                merged.push(s);
            }
            Some(&i) => {
                let into = &mut merged[i];
                let mut samples: BTreeMap<i64, ModelSample> =
                    into.samples.drain(..).map(|x| (x.t, x)).collect();
                samples.extend(s.samples.into_iter().map(|x| (x.t, x)));
                let mut histograms: BTreeMap<i64, _> = into.histograms.drain(..).collect();
                histograms.extend(s.histograms);
                for t in histograms.keys() {
                    samples.remove(t);
                }
                into.samples = samples.into_values().collect();
                into.histograms = histograms.into_iter().collect();
            }
        }
    }
    batch.series = merged;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemStorage;

    const DATA: &str = "load 1m\n  foo{a=\"1\"} 1+1x5\n  foo{a=\"2\"} 10 _ stale 13\n\n";

    /// Runs `DATA` + `script` and returns each case's outcome, tersely.
    fn outcomes(script: &str, skips: &str) -> Vec<String> {
        let factory = || Box::new(MemStorage::new()) as Box<dyn Backend>;
        let skips = SkipList::parse(skips).unwrap();
        let text = format!("{DATA}{script}");
        let report = run_script("t.test", &text, &factory, &skips, &upstream_options());
        assert_eq!(report.error, None);
        report
            .cases
            .iter()
            .map(|c| match &c.outcome {
                Outcome::Passed => "pass".to_string(),
                Outcome::Failed(m) => format!("fail: {m}"),
                Outcome::Skipped(r) => format!("skip: {r}"),
            })
            .collect()
    }

    fn check(script: &str, expected: &[&str]) {
        let got = outcomes(script, "");
        assert_eq!(got.len(), expected.len(), "{got:?}");
        for (g, e) in got.iter().zip(expected) {
            assert!(g.starts_with(e), "got {g:?}, expected {e:?}");
        }
    }

    #[test]
    fn values_and_series_are_checked() {
        // foo{a="2"} is stale at 2m.
        check(
            "eval instant at 2m foo\n  foo{a=\"1\"} 3\n  foo{a=\"2\"} 10\n",
            &["fail: expected metric foo{a=\"2\"} not found"],
        );
        check("eval instant at 3m foo\n  foo{a=\"1\"} 4\n  foo{a=\"2\"} 13\n", &["pass"]);
        check("eval instant at 3m foo\n  foo{a=\"1\"} 4\n", &["fail: unexpected metric"]);
        check("eval instant at 1m foo\n  foo{a=\"1\"} 2.0000001\n  foo{a=\"2\"} 10\n", &["pass"]);
        check(
            "eval instant at 1m foo\n  foo{a=\"1\"} 2.1\n  foo{a=\"2\"} 10\n",
            &["fail: expected 2.1"],
        );
        check(
            "eval range from 0 to 3m step 1m foo{a=\"2\"}\n  foo{a=\"2\"} 10 10 _ 13\n",
            &["pass"],
        );
        check("eval instant at 0 1 + 1\n  2\n", &["pass"]);
    }

    #[test]
    fn expectations_are_checked() {
        check("eval_fail instant at 0 foo +\n", &["pass"]);
        check("eval instant at 0 foo\n  expect fail\n", &["fail: expected an error"]);
        check(
            "eval instant at 0 label_replace(foo, \"a\", \"\", \"\", \"\")\n  expect fail msg: vector cannot contain metrics with the same labelset\n",
            &["pass"],
        );
        check("eval instant at 0 foo\n  expect fail regex: nope\n", &["fail: expected an error"]);
        check("eval_info instant at 5m rate(foo[5m])\n  {a=\"1\"} 0.0166666666\n", &["pass"]);
        check(
            "eval instant at 5m rate(foo[5m])\n  expect no_info\n  {a=\"1\"} 0.0166666666\n",
            &["fail: expected no info"],
        );
        check(
            "eval_warn instant at 5m rate(foo[5m])\n  {a=\"1\"} 0.0166666666\n",
            &["fail: expected warn"],
        );
        check(
            "eval_ordered instant at 3m sort_desc(foo)\n  foo{a=\"2\"} 13\n  foo{a=\"1\"} 4\n",
            &["pass"],
        );
        check(
            "eval_ordered instant at 3m sort(foo)\n  foo{a=\"2\"} 13\n  foo{a=\"1\"} 4\n",
            &["fail: expected metric"],
        );
    }

    #[test]
    fn skip_list_only_shrinks() {
        let script = "eval instant at 3m foo{a=\"1\"}\n  foo{a=\"1\"} 5\n\neval instant at 3m foo{a=\"2\"}\n  foo{a=\"2\"} 13\n";
        let skips = "t.test: eval instant at 3m foo{a=\"1\"} ## known\nt.test: eval instant at 3m foo{a=\"2\"} ## stale entry\n";
        let got = outcomes(script, skips);
        assert_eq!(got[0], "skip: known");
        assert!(got[1].starts_with("fail: case in the skip list passes now"), "{got:?}");
    }
}
