//! `freightStatus(freightName)`: a Freight's whole status as Kargo's API shows it
//! (`currentlyIn`, `verifiedIn`, `approvedFor`, `metadata`), or `nil` for Freight the
//! project does not have.
//!
//! The data comes from [`EvalData::freight_status`](super::EvalData::freight_status), which
//! the embedder fills from its state with [`freight_status_json`] (the runner copies
//! [`Promotion::freight_status`](crate::runner::Promotion::freight_status) there).

use chrono::SecondsFormat;
use minijinja::value::Value;
use minijinja::{Error, ErrorKind, State};
use serde_json::{Map, Value as Json};

use crate::model::Duration;
use crate::pipeline::FreightStatus;

/// `status` in Kargo's JSON shape: `currentlyIn.<stage>.since`,
/// `verifiedIn.<stage>.verifiedAt` (and `longestSoak`, a Go duration, once the Freight has
/// left the Stage), `approvedFor.<stage>.approvedAt`, `metadata`; times in RFC 3339 with
/// seconds; empty maps left out (Kargo's `omitempty`).
pub fn freight_status_json(status: &FreightStatus) -> Json {
    let time = |t: &chrono::DateTime<chrono::Utc>| {
        Json::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
    };
    let mut out = Map::new();
    if !status.currently_in.is_empty() {
        let m: Map<String, Json> = status
            .currently_in
            .iter()
            .map(|(stage, c)| {
                let mut e = Map::new();
                e.insert("since".into(), time(&c.since));
                (stage.clone(), Json::Object(e))
            })
            .collect();
        out.insert("currentlyIn".into(), Json::Object(m));
    }
    if !status.verified_in.is_empty() {
        let m: Map<String, Json> = status
            .verified_in
            .iter()
            .map(|(stage, v)| {
                let mut e = Map::new();
                e.insert("verifiedAt".into(), time(&v.verified_at));
                if v.longest_soak_seconds > 0 {
                    let soak = Duration(std::time::Duration::from_secs(v.longest_soak_seconds));
                    e.insert("longestSoak".into(), Json::String(soak.to_string()));
                }
                (stage.clone(), Json::Object(e))
            })
            .collect();
        out.insert("verifiedIn".into(), Json::Object(m));
    }
    if !status.approved_for.is_empty() {
        let m: Map<String, Json> = status
            .approved_for
            .iter()
            .map(|(stage, a)| {
                let mut e = Map::new();
                e.insert("approvedAt".into(), time(&a.approved_at));
                (stage.clone(), Json::Object(e))
            })
            .collect();
        out.insert("approvedFor".into(), Json::Object(m));
    }
    if !status.metadata.is_empty() {
        let m: Map<String, Json> = status
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.insert("metadata".into(), Json::Object(m));
    }
    Json::Object(out)
}

/// The `freightStatus` function: one string argument, the Freight's name (its ID).
pub(crate) fn freight_status(state: &State<'_, '_>, name: Value) -> Result<Value, Error> {
    let Some(n) = name.as_str() else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "freightStatus(): the first argument must be a string, got {}",
                name.kind()
            ),
        ));
    };
    if n.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "freightStatus(): the Freight name must not be empty",
        ));
    }
    Ok(super::functions::data(state)
        .freight_status
        .get(n)
        .map(super::from_json)
        .unwrap_or(Value::from(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{ApprovedStage, CurrentStage, VerifiedStage};
    use chrono::TimeZone;

    #[test]
    fn kargo_shape() {
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut s = FreightStatus::default();
        assert_eq!(freight_status_json(&s), serde_json::json!({}));
        s.currently_in
            .insert("prod".into(), CurrentStage { since: t });
        s.verified_in.insert(
            "qa".into(),
            VerifiedStage {
                verified_at: t,
                longest_soak_seconds: 5400,
            },
        );
        s.verified_in.insert(
            "prod".into(),
            VerifiedStage {
                verified_at: t,
                longest_soak_seconds: 0,
            },
        );
        s.approved_for.insert(
            "prod".into(),
            ApprovedStage {
                approved_at: t,
                actor: Some("alice".into()),
            },
        );
        s.metadata.insert("k".into(), serde_json::json!({"a": 1}));
        assert_eq!(
            freight_status_json(&s),
            serde_json::json!({
                "currentlyIn": {"prod": {"since": "2026-01-02T03:04:05Z"}},
                "verifiedIn": {
                    "prod": {"verifiedAt": "2026-01-02T03:04:05Z"},
                    "qa": {"verifiedAt": "2026-01-02T03:04:05Z", "longestSoak": "1h30m0s"},
                },
                "approvedFor": {"prod": {"approvedAt": "2026-01-02T03:04:05Z"}},
                "metadata": {"k": {"a": 1}},
            })
        );
    }

    #[test]
    fn the_function_reads_the_status_with_kargo_syntax() {
        use crate::expr::{EvalData, ExprEngine, Scope};
        use std::collections::BTreeMap;
        use std::sync::Arc;
        let t = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let mut s = FreightStatus::default();
        s.approved_for.insert(
            "prod".into(),
            ApprovedStage {
                approved_at: t,
                actor: None,
            },
        );
        s.currently_in
            .insert("qa".into(), CurrentStage { since: t });
        let data = EvalData {
            freight_status: BTreeMap::from([
                ("f1".to_owned(), freight_status_json(&s)),
                (
                    "f2".to_owned(),
                    freight_status_json(&FreightStatus::default()),
                ),
            ]),
            ..EvalData::default()
        };
        let scope = Scope::new(BTreeMap::new(), Arc::new(data));
        let engine = ExprEngine::new();
        let r = |t: &str| engine.render_str(t, &scope);
        assert_eq!(
            r("${{ freightStatus('f1').approvedFor?.prod?.approvedAt != nil }}").unwrap(),
            serde_json::json!(true)
        );
        assert_eq!(
            r("${{ freightStatus('f2').approvedFor?.prod?.approvedAt != nil }}").unwrap(),
            serde_json::json!(false)
        );
        assert_eq!(
            r("${{ freightStatus('f1').currentlyIn.qa.since }}").unwrap(),
            serde_json::json!("2026-01-02T03:04:05Z")
        );
        assert_eq!(r("${{ freightStatus('nope') }}").unwrap(), Json::Null);
        let e = r("${{ freightStatus('') }}").unwrap_err();
        assert!(e.to_string().contains("must not be empty"), "{e}");
        let e = r("${{ freightStatus(1) }}").unwrap_err();
        assert!(e.to_string().contains("must be a string"), "{e}");
    }
}
