//! Arguments: several templates merge into one run (Argo Rollouts' `FlattenTemplates`),
//! the Stage's `verification.args` override the templates' (`MergeArgs`: only arguments a
//! template declares), every argument must end with a value, and `{{args.NAME}}` is
//! replaced in every string of the metrics (`{{ args.NAME }}` too; other `{{...}}` stay).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::template::{ArgSource, Template, TemplateArg};

/// The arguments and metrics of several templates, merged.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flattened {
    /// Every template's arguments; the first non-empty value wins.
    pub args: Vec<TemplateArg>,
    /// Every metric with the index of its template.
    pub metrics: Vec<(usize, Json)>,
    /// Dry-run metric names (`*` for all).
    pub dry_run: Vec<String>,
}

/// Merges templates: two metrics with one name, or one argument with two different
/// values, are errors.
pub(crate) fn flatten(templates: &[Template]) -> Result<Flattened, String> {
    let mut out = Flattened::default();
    for (ti, t) in templates.iter().enumerate() {
        for arg in &t.args {
            match out.args.iter_mut().find(|a| a.name == arg.name) {
                Some(prev) => {
                    if let (Some(a), Some(b)) = (&prev.value, &arg.value)
                        && a != b
                    {
                        return Err(format!(
                            "argument {:?} is given different values by the templates: {a:?} and {b:?}",
                            arg.name
                        ));
                    }
                    if prev.value.is_none() {
                        *prev = arg.clone();
                    }
                }
                None => out.args.push(arg.clone()),
            }
        }
        for m in &t.metrics {
            let name = m.get("name").and_then(Json::as_str).unwrap_or_default();
            if let Some((other, _)) = out
                .metrics
                .iter()
                .find(|(_, x)| x.get("name").and_then(Json::as_str) == Some(name))
            {
                return Err(format!(
                    "two metrics are named {name:?} ({} and {})",
                    templates.get(*other).map_or("", |o| o.label.as_str()),
                    t.label
                ));
            }
            out.metrics.push((ti, m.clone()));
        }
        out.dry_run.extend(t.dry_run.iter().cloned());
    }
    Ok(out)
}

/// Why an argument has no value.
pub(crate) fn unresolved(name: &str) -> String {
    format!(
        "argument {name:?} has no value: give it in the Stage's verification.args or a default in the template (args.{name} was not resolved)"
    )
}

/// The final values: template defaults, overridden by `incoming` (names the templates do
/// not declare are ignored, as in Argo Rollouts), `valueFrom.secretKeyRef` read through
/// `secret(name, key)`.
pub(crate) fn resolve(
    args: &[TemplateArg],
    incoming: &[(String, String)],
    secret: &dyn Fn(&str, &str) -> Result<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for arg in args {
        let given = incoming
            .iter()
            .rev()
            .find(|(n, _)| *n == arg.name)
            .map(|(_, v)| v.clone());
        let value = match (given, &arg.value, &arg.value_from) {
            (Some(v), _, _) => v,
            (None, Some(v), _) => v.clone(),
            (None, None, Some(ArgSource::Secret { name, key })) => {
                secret(name, key).map_err(|e| format!("argument {:?}: {e}", arg.name))?
            }
            (None, None, Some(ArgSource::Field(path))) => {
                return Err(format!(
                    "argument {:?}: valueFrom.fieldRef ({path}) is not supported: Argo Rollouts \
                     reads it from a Rollout, and a Stage's verification has none; give the \
                     value in the Stage's verification.args",
                    arg.name
                ));
            }
            (None, None, None) => return Err(unresolved(&arg.name)),
        };
        out.insert(arg.name.clone(), value);
    }
    Ok(out)
}

/// Replaces `{{args.NAME}}` in one string.
pub(crate) fn substitute_str(s: &str, args: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open + 2..].find("}}") else {
            break;
        };
        let tag = &rest[open + 2..open + 2 + close];
        out.push_str(&rest[..open]);
        let trimmed = tag.trim();
        match trimmed.strip_prefix("args.") {
            Some(name) => match args.get(name) {
                Some(v) => out.push_str(v),
                None => return Err(format!("failed to resolve {{{{{trimmed}}}}}")),
            },
            None => {
                out.push_str("{{");
                out.push_str(tag);
                out.push_str("}}");
            }
        }
        rest = &rest[open + 2 + close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Replaces `{{args.NAME}}` in every string of `value` (keys stay).
pub(crate) fn substitute(value: &Json, args: &BTreeMap<String, String>) -> Result<Json, String> {
    Ok(match value {
        Json::String(s) => Json::String(substitute_str(s, args)?),
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|v| substitute(v, args))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => {
            let mut m = serde_json::Map::new();
            for (k, v) in map {
                m.insert(k.clone(), substitute(v, args)?);
            }
            Json::Object(m)
        }
        other => other.clone(),
    })
}

/// The `{{args.NAME}}` names used anywhere in `value`.
pub(crate) fn placeholders(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::String(s) => {
            let mut rest = s.as_str();
            while let Some(open) = rest.find("{{") {
                let Some(close) = rest[open + 2..].find("}}") else {
                    break;
                };
                if let Some(name) = rest[open + 2..open + 2 + close]
                    .trim()
                    .strip_prefix("args.")
                    && !out.iter().any(|n| n == name)
                {
                    out.push(name.to_owned());
                }
                rest = &rest[open + 2 + close + 2..];
            }
        }
        Json::Array(items) => items.iter().for_each(|v| placeholders(v, out)),
        Json::Object(map) => map.values().for_each(|v| placeholders(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn substitutes_args_only() {
        let args = BTreeMap::from([("svc".to_owned(), "web".to_owned())]);
        assert_eq!(
            substitute_str("http://{{ args.svc }}/x?{{args.svc}}&{{other}}", &args).unwrap(),
            "http://web/x?web&{{other}}"
        );
        assert_eq!(
            substitute_str("{{args.nope}}", &args).unwrap_err(),
            "failed to resolve {{args.nope}}"
        );
        assert_eq!(substitute_str("a {{ b", &args).unwrap(), "a {{ b");
    }

    #[test]
    fn resolve_prefers_incoming_and_requires_values() {
        let args = vec![
            TemplateArg {
                name: "a".into(),
                value: Some("1".into()),
                value_from: None,
            },
            TemplateArg {
                name: "b".into(),
                value: None,
                value_from: None,
            },
        ];
        let none = |_: &str, _: &str| Err::<String, String>("no".into());
        let err = resolve(&args, &[], &none).unwrap_err();
        assert!(err.contains("\"b\" has no value"), "{err}");
        let got = resolve(
            &args,
            &[("b".into(), "2".into()), ("zzz".into(), "3".into())],
            &none,
        )
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got["a"], "1");
        assert_eq!(got["b"], "2");
    }
}
