//! Measurement conditions: a metric's `successCondition` / `failureCondition` are
//! expr-lang expressions over `result`, evaluated with the codebase's expression engine
//! (Kargo's expr-lang dialect, see [`kargo_core::expr::exprlang`]) plus the helpers Argo
//! Rollouts puts beside `result`: `asInt`, `asFloat`, `isNaN`, `isInf`, `isNil` and
//! `default`.
//!
//! How a measurement is assessed (Argo Rollouts' `EvaluateResult`):
//! - neither condition: `Successful`;
//! - only `successCondition`: `Successful` when true, else `Failed`;
//! - only `failureCondition`: `Failed` when true, else `Successful`;
//! - both: `Failed` when the failure condition holds, `Successful` when only the success
//!   condition holds, `Inconclusive` when neither does;
//! - a condition that does not evaluate to a boolean: `Error`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kargo_core::expr::{EvalData, ExprEngine, Scope};
use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

use super::report::AnalysisPhase;

fn fail(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

fn is_nil(v: &Value) -> bool {
    v.is_none() || v.is_undefined()
}

fn as_int(v: Value) -> Result<i64, Error> {
    if let Some(s) = v.as_str() {
        return s
            .trim()
            .parse::<i64>()
            .map_err(|e| fail(format!("asInt(): cannot read {s:?} as an integer: {e}")));
    }
    if v.kind() == ValueKind::Number {
        if let Ok(i) = i64::try_from(v.clone()) {
            return Ok(i);
        }
        if let Ok(f) = f64::try_from(v.clone()) {
            #[allow(clippy::cast_possible_truncation)]
            return Ok(f as i64);
        }
    }
    Err(fail(format!("asInt() not supported on {v:?}")))
}

fn as_float(v: Value) -> Result<f64, Error> {
    if let Some(s) = v.as_str() {
        return parse_float(s)
            .ok_or_else(|| fail(format!("asFloat(): cannot read {s:?} as a number")));
    }
    if v.kind() == ValueKind::Number
        && let Ok(f) = f64::try_from(v.clone())
    {
        return Ok(f);
    }
    Err(fail(format!("asFloat() not supported on {v:?}")))
}

/// Reads a number as Go's `strconv.ParseFloat` and Prometheus write them (`NaN`, `+Inf`).
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => t.parse::<f64>().ok().filter(|f| f.is_finite()),
    }
}

fn number(v: &Value, fname: &str) -> Result<f64, Error> {
    if v.kind() == ValueKind::Number
        && let Ok(f) = f64::try_from(v.clone())
    {
        return Ok(f);
    }
    Err(fail(format!("{fname}() expects a number, got {v:?}")))
}

/// The expression engine with Argo Rollouts' condition helpers.
pub(crate) fn condition_engine() -> ExprEngine {
    let mut engine = ExprEngine::new();
    engine.add_function("asInt", as_int);
    engine.add_function("asFloat", as_float);
    engine.add_function("isNaN", |v: Value| -> Result<bool, Error> {
        Ok(number(&v, "isNaN")?.is_nan())
    });
    engine.add_function("isInf", |v: Value| -> Result<bool, Error> {
        Ok(number(&v, "isInf")?.is_infinite())
    });
    engine.add_function("isNil", |v: Value| -> bool { is_nil(&v) });
    engine.add_function("default", |v: Value, d: Value| -> Value {
        if is_nil(&v) { d } else { v }
    });
    engine
}

/// Validates a condition's syntax (at load time).
pub(crate) fn check_condition(engine: &ExprEngine, text: &str) -> Result<(), String> {
    engine
        .compile_kargo_expression(text)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn eval_condition(engine: &ExprEngine, text: &str, result: &Value) -> Result<bool, String> {
    let compiled = engine
        .compile_kargo_expression(text)
        .map_err(|e| e.to_string())?;
    let mut vars = BTreeMap::new();
    vars.insert("result".to_owned(), result.clone());
    let scope = Scope::new(vars, Arc::new(EvalData::default()));
    let v = compiled.eval_value(&scope).map_err(|e| e.to_string())?;
    if v.kind() == ValueKind::Bool {
        Ok(v.is_true())
    } else {
        Err(format!(
            "condition {text:?}: expected a boolean, but got {}",
            v.kind()
        ))
    }
}

/// Assesses one measured value (see the module documentation); `Err` is the message of
/// an `Error` measurement.
pub(crate) fn evaluate_result(
    engine: &ExprEngine,
    success: &str,
    failure: &str,
    result: &Value,
) -> Result<AnalysisPhase, String> {
    let mut success_holds = false;
    let mut failure_holds = false;
    if !success.is_empty() {
        success_holds = eval_condition(engine, success, result)?;
    }
    if !failure.is_empty() {
        failure_holds = eval_condition(engine, failure, result)?;
    }
    match (success.is_empty(), failure.is_empty()) {
        (true, true) => return Ok(AnalysisPhase::Successful),
        (false, true) => failure_holds = !success_holds,
        (true, false) => success_holds = !failure_holds,
        (false, false) => {}
    }
    Ok(if failure_holds {
        AnalysisPhase::Failed
    } else if !success_holds {
        AnalysisPhase::Inconclusive
    } else {
        AnalysisPhase::Successful
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kargo_core::expr::from_json;
    use serde_json::json;

    fn eval(s: &str, f: &str, r: Value) -> Result<AnalysisPhase, String> {
        evaluate_result(&condition_engine(), s, f, &r)
    }

    #[test]
    fn rollouts_conditions() {
        let v = Value::from(vec![0.97_f64, 0.5]);
        assert_eq!(
            eval("result[0] >= 0.95", "", v.clone()),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(
            eval("result[1] >= 0.95", "", v.clone()),
            Ok(AnalysisPhase::Failed)
        );
        assert_eq!(
            eval("len(result) > 0 && result[0] > 0.9", "", v.clone()),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(
            eval("result[0] > 0.99", "result[0] < 0.5", v),
            Ok(AnalysisPhase::Inconclusive)
        );
        let web = from_json(&json!({"status": "healthy", "count": "42"}));
        assert_eq!(
            eval("result.status == \"healthy\"", "", web.clone()),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(
            eval("asInt(result.count) > 40", "", web.clone()),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(
            eval("", "asFloat(result.count) > 40.5", web.clone()),
            Ok(AnalysisPhase::Failed)
        );
        assert_eq!(
            eval("result == 'ok'", "", Value::from("ok")),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(
            eval("isNaN(result[0])", "", Value::from(vec![f64::NAN])),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(
            eval("default(result, 5) == 5", "", Value::from(())),
            Ok(AnalysisPhase::Successful)
        );
        assert_eq!(eval("", "", Value::from(1)), Ok(AnalysisPhase::Successful));
        let e = eval("result.status", "", web).unwrap_err();
        assert!(e.contains("expected a boolean"), "{e}");
        assert!(eval("asInt(result)", "", Value::from("x")).is_err());
    }
}
