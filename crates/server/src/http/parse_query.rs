//! `GET|POST /api/v1/parse_query`: the query's syntax tree as JSON, in the shape Prometheus 3's
//! `parse_query` answers (its `translateAST`): every node has a `type` (`aggregation`,
//! `binaryExpr`, `call`, `matrixSelector`, `subquery`, `numberLiteral`, `parenExpr`,
//! `stringLiteral`, `unaryExpr`, `vectorSelector`); durations and offsets in milliseconds; a
//! selector's metric name is also its last matcher. The fields newer Prometheus releases
//! added for experimental features (`anchored`, `smoothed`, `fillValues`, `alignEvalTime`)
//! are not produced.

use axum::response::{IntoResponse, Response};
use promql_parser::parser::{AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality};
use serde_json::{Value as Json, json};

use super::Params;
use super::query::format_value;
use crate::error::ApiError;

pub async fn parse_query(p: Params) -> Result<Response, ApiError> {
    let query = match p.get("query") {
        Some(q) if !q.trim().is_empty() => q,
        _ => return Err(ApiError::BadData("invalid parameter \"query\": query is empty".into())),
    };
    let ast = translate(query)?;
    Ok(axum::Json(json!({"status": "success", "data": ast})).into_response())
}

/// Parses `query` and translates its tree; a parse error is 400 bad_data.
pub fn translate(query: &str) -> Result<Json, ApiError> {
    let expr = promql_parser::parser::parse(query)
        .map_err(|e| ApiError::BadData(format!("invalid parameter \"query\": {e}")))?;
    node(&expr)
}

fn millis(d: &std::time::Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => millis(d),
        Some(Offset::Neg(d)) => -millis(d),
    }
}

/// (`timestamp`, `startOrEnd`) of an `@` modifier.
fn at(a: &Option<AtModifier>) -> (Json, Json) {
    match a {
        None => (Json::Null, Json::Null),
        Some(AtModifier::Start) => (Json::Null, json!("start")),
        Some(AtModifier::End) => (Json::Null, json!("end")),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            };
            (json!(ms), Json::Null)
        }
    }
}

fn matchers(vs: &promql_parser::parser::VectorSelector) -> Result<Json, ApiError> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(ApiError::BadData(
            "invalid parameter \"query\": 'or' inside a selector is not supported".into(),
        ));
    }
    let mut out: Vec<Json> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| json!({"name": m.name, "value": m.value, "type": m.op.to_string()}))
        .collect();
    if let Some(name) = &vs.name {
        out.push(json!({"name": "__name__", "value": name, "type": "="}));
    }
    Ok(Json::Array(out))
}

fn labels(l: &promql_parser::label::Labels) -> Json {
    json!(l.labels)
}

fn node(e: &Expr) -> Result<Json, ApiError> {
    Ok(match e {
        Expr::Aggregate(a) => {
            let (grouping, without) = match &a.modifier {
                None => (json!([]), false),
                Some(LabelModifier::Include(l)) => (labels(l), false),
                Some(LabelModifier::Exclude(l)) => (labels(l), true),
            };
            json!({
                "type": "aggregation",
                "op": a.op.to_string(),
                "expr": node(&a.expr)?,
                "param": a.param.as_deref().map(node).transpose()?,
                "grouping": grouping,
                "without": without,
            })
        }
        Expr::Binary(b) => {
            let vectors = b.lhs.value_type() == promql_parser::parser::value::ValueType::Vector
                && b.rhs.value_type() == promql_parser::parser::value::ValueType::Vector;
            let matching = if vectors {
                let m = b.modifier.as_ref();
                let card = m.map(|m| &m.card);
                let set_op = matches!(b.op.to_string().as_str(), "and" | "or" | "unless");
                let card_name = match card {
                    Some(VectorMatchCardinality::ManyToOne(_)) => "many-to-one",
                    Some(VectorMatchCardinality::OneToMany(_)) => "one-to-many",
                    Some(VectorMatchCardinality::ManyToMany) => "many-to-many",
                    _ if set_op => "many-to-many",
                    _ => "one-to-one",
                };
                let (labels_json, on) = match m.and_then(|m| m.matching.as_ref()) {
                    Some(LabelModifier::Include(l)) => (labels(l), true),
                    Some(LabelModifier::Exclude(l)) => (labels(l), false),
                    None => (json!([]), false),
                };
                let include = card.and_then(|c| c.labels()).map_or(json!([]), labels);
                json!({"card": card_name, "labels": labels_json, "on": on, "include": include})
            } else {
                Json::Null
            };
            json!({
                "type": "binaryExpr",
                "op": b.op.to_string(),
                "lhs": node(&b.lhs)?,
                "rhs": node(&b.rhs)?,
                "matching": matching,
                "bool": b.modifier.as_ref().is_some_and(|m| m.return_bool),
            })
        }
        Expr::Call(c) => {
            let args = c.args.args.iter().map(|a| node(a)).collect::<Result<Vec<_>, _>>()?;
            json!({
                "type": "call",
                "func": {
                    "name": c.func.name,
                    "argTypes": c.func.arg_types.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
                    "variadic": c.func.variadic,
                    "returnType": c.func.return_type.to_string(),
                },
                "args": args,
            })
        }
        Expr::MatrixSelector(m) => {
            let (timestamp, start_or_end) = at(&m.vs.at);
            json!({
                "type": "matrixSelector",
                "name": m.vs.name.clone().unwrap_or_default(),
                "range": millis(&m.range),
                "offset": offset_ms(&m.vs.offset),
                "matchers": matchers(&m.vs)?,
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::Subquery(s) => {
            let (timestamp, start_or_end) = at(&s.at);
            json!({
                "type": "subquery",
                "expr": node(&s.expr)?,
                "range": millis(&s.range),
                "offset": offset_ms(&s.offset),
                "step": s.step.as_ref().map_or(0, millis),
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::NumberLiteral(n) => json!({"type": "numberLiteral", "val": format_value(n.val)}),
        Expr::Paren(p) => json!({"type": "parenExpr", "expr": node(&p.expr)?}),
        Expr::StringLiteral(s) => json!({"type": "stringLiteral", "val": s.val}),
        Expr::Unary(u) => json!({"type": "unaryExpr", "op": "-", "expr": node(&u.expr)?}),
        Expr::VectorSelector(vs) => {
            let (timestamp, start_or_end) = at(&vs.at);
            json!({
                "type": "vectorSelector",
                "name": vs.name.clone().unwrap_or_default(),
                "offset": offset_ms(&vs.offset),
                "matchers": matchers(vs)?,
                "timestamp": timestamp,
                "startOrEnd": start_or_end,
            })
        }
        Expr::Extension(_) => {
            return Err(ApiError::BadData(
                "invalid parameter \"query\": extension expressions are not supported".into(),
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `query` translates to `expected` (JSON text, compared as values).
    fn check(query: &str, expected: &str) {
        let got = translate(query).unwrap();
        let want: Json = serde_json::from_str(expected).unwrap();
        assert_eq!(got, want, "{query}: {}", serde_json::to_string(&got).unwrap());
    }

    #[test]
    fn common_nodes_translate_like_prometheus() {
        check(
            r#"foo{job="a"} offset 5m"#,
            r#"{"type":"vectorSelector","name":"foo","offset":300000,"timestamp":null,"startOrEnd":null,
                "matchers":[{"name":"job","value":"a","type":"="},{"name":"__name__","value":"foo","type":"="}]}"#,
        );
        check(
            r#"sum by (job) (rate(http_requests_total{code=~"5.."}[5m] @ 100))"#,
            r#"{"type":"aggregation","op":"sum","grouping":["job"],"without":false,"param":null,
                "expr":{"type":"call","func":{"name":"rate","argTypes":["matrix"],"variadic":0,"returnType":"vector"},
                  "args":[{"type":"matrixSelector","name":"http_requests_total","range":300000,"offset":0,
                    "timestamp":100000,"startOrEnd":null,
                    "matchers":[{"name":"code","value":"5..","type":"=~"},{"name":"__name__","value":"http_requests_total","type":"="}]}]}}"#,
        );
        check(
            r#"topk(3, a) / on (x) group_left (y) b"#,
            r#"{"type":"binaryExpr","op":"/","bool":false,
                "matching":{"card":"many-to-one","labels":["x"],"on":true,"include":["y"]},
                "lhs":{"type":"aggregation","op":"topk","grouping":[],"without":false,
                  "param":{"type":"numberLiteral","val":"3"},
                  "expr":{"type":"vectorSelector","name":"a","offset":0,"timestamp":null,"startOrEnd":null,"matchers":[{"name":"__name__","value":"a","type":"="}]}},
                "rhs":{"type":"vectorSelector","name":"b","offset":0,"timestamp":null,"startOrEnd":null,"matchers":[{"name":"__name__","value":"b","type":"="}]}}"#,
        );
        check(
            r#"1 > bool 2"#,
            r#"{"type":"binaryExpr","op":">","bool":true,"matching":null,
                "lhs":{"type":"numberLiteral","val":"1"},"rhs":{"type":"numberLiteral","val":"2"}}"#,
        );
        check(
            r#"a and b"#,
            r#"{"type":"binaryExpr","op":"and","bool":false,
                "matching":{"card":"many-to-many","labels":[],"on":false,"include":[]},
                "lhs":{"type":"vectorSelector","name":"a","offset":0,"timestamp":null,"startOrEnd":null,"matchers":[{"name":"__name__","value":"a","type":"="}]},
                "rhs":{"type":"vectorSelector","name":"b","offset":0,"timestamp":null,"startOrEnd":null,"matchers":[{"name":"__name__","value":"b","type":"="}]}}"#,
        );
        check(
            r#"-(max_over_time(x[1h:5m] @ start()))"#,
            r#"{"type":"unaryExpr","op":"-","expr":{"type":"parenExpr","expr":{"type":"call",
                "func":{"name":"max_over_time","argTypes":["matrix"],"variadic":0,"returnType":"vector"},
                "args":[{"type":"subquery","range":3600000,"offset":0,"step":300000,"timestamp":null,"startOrEnd":"start",
                  "expr":{"type":"vectorSelector","name":"x","offset":0,"timestamp":null,"startOrEnd":null,"matchers":[{"name":"__name__","value":"x","type":"="}]}}]}}}"#,
        );
        check(
            r#"label_replace(up, "a", "$1", "b", "(.*)")"#,
            r#"{"type":"call","func":{"name":"label_replace","argTypes":["vector","string","string","string","string"],"variadic":0,"returnType":"vector"},
                "args":[{"type":"vectorSelector","name":"up","offset":0,"timestamp":null,"startOrEnd":null,"matchers":[{"name":"__name__","value":"up","type":"="}]},
                  {"type":"stringLiteral","val":"a"},{"type":"stringLiteral","val":"$1"},{"type":"stringLiteral","val":"b"},{"type":"stringLiteral","val":"(.*)"}]}"#,
        );
    }

    #[test]
    fn bad_queries_are_bad_data() {
        for q in ["sum(", "foo{", "1 +"] {
            let e = translate(q).unwrap_err();
            assert_eq!(e.error_type(), "bad_data", "{q}");
        }
    }
}
