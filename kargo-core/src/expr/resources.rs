//! The expression functions that read a Project's other resources through its
//! [`SecretStore`](crate::secret::SecretStore): `sharedSecret(name)`, `configMap(name)`
//! and `sharedConfigMap(name)` (`secret(name)` is in the main function table). Each
//! returns a string map; a missing one is an empty map, as in Kargo.

use std::collections::BTreeMap;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, State};

use super::functions::{DATA_KEY, DataHandle};
use crate::secret::SecretStore;

/// The name argument of `fname`, which must be a string.
fn name_arg<'a>(v: &'a Value, fname: &str) -> Result<&'a str, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            format!("{fname}(): the first argument is undefined"),
        ));
    }
    v.as_str().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "{fname}(): the first argument must be a string, got {}",
                v.kind()
            ),
        )
    })
}

/// Calls `get` on the evaluation's store; an empty map without a store or a match.
fn read(
    state: &State<'_, '_>,
    get: impl FnOnce(&dyn SecretStore) -> Option<BTreeMap<String, String>>,
) -> Value {
    let map = state
        .lookup(DATA_KEY)
        .and_then(|v| v.downcast_object::<DataHandle>())
        .and_then(|h| h.0.secrets.clone())
        .and_then(|store| get(store.as_ref()))
        .unwrap_or_default();
    Value::from(map)
}

/// Registers `sharedSecret`, `configMap` and `sharedConfigMap` in `env`.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.add_function(
        "sharedSecret",
        |state: &State<'_, '_>, name: Value| -> Result<Value, Error> {
            let n = name_arg(&name, "sharedSecret")?;
            Ok(read(state, |s| {
                s.shared_secret(n).map(|m| {
                    m.into_iter()
                        .map(|(k, v)| (k, v.expose().clone()))
                        .collect()
                })
            }))
        },
    );
    env.add_function(
        "configMap",
        |state: &State<'_, '_>, name: Value| -> Result<Value, Error> {
            let n = name_arg(&name, "configMap")?;
            Ok(read(state, |s| s.config_map(n)))
        },
    );
    env.add_function(
        "sharedConfigMap",
        |state: &State<'_, '_>, name: Value| -> Result<Value, Error> {
            let n = name_arg(&name, "sharedConfigMap")?;
            Ok(read(state, |s| s.shared_config_map(n)))
        },
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::expr::{EvalData, ExprEngine, Scope};
    use crate::loader::ManifestSet;
    use crate::secret::ManifestSecrets;

    fn scope(with_store: bool) -> Scope {
        let set = ManifestSet::from_yaml_str(
            "k.yaml",
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo}
data: {env: dev}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: global, namespace: kargo-shared-resources}
data: {region: eu}
---
apiVersion: v1
kind: Secret
metadata:
  name: slack
  namespace: kargo-shared-resources
  labels: {kargo.akuity.io/cred-type: generic}
stringData: {token: xoxb}
---
apiVersion: v1
kind: Secret
metadata: {name: hidden, namespace: kargo-shared-resources}
stringData: {token: nope}
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: demo}
stringData: {password: pw}
"#,
        )
        .unwrap();
        let store = ManifestSecrets::from_manifests(&set)
            .unwrap()
            .project("demo");
        let data = EvalData {
            secrets: with_store.then(|| Arc::new(store) as _),
            ..EvalData::default()
        };
        Scope::new(Default::default(), Arc::new(data))
    }

    #[test]
    fn the_functions_read_the_store_and_default_to_empty_maps() {
        let engine = ExprEngine::new();
        let s = scope(true);
        let r = |t: &str| engine.render_str(t, &s).unwrap();
        let dev = serde_json::json!("dev");
        let zero = serde_json::json!(0);
        assert_eq!(r("$<< configMap('settings').env >>"), dev);
        assert_eq!(r("$<< sharedConfigMap('global').region >>"), "eu");
        assert_eq!(r("$<< sharedSecret('slack').token >>"), "xoxb");
        assert_eq!(r("$<< secret('db').password >>"), "pw");
        // Missing ones, and shared Secrets that are not `generic`, are empty maps.
        assert_eq!(r("$<< configMap('global') | length >>"), zero);
        assert_eq!(r("$<< sharedSecret('hidden') | length >>"), zero);
        assert_eq!(r("$<< sharedConfigMap('nope') | length >>"), zero);
        assert_eq!(
            r("${{ configMap('settings').env }}-${{ sharedConfigMap('global').region }}"),
            "dev-eu"
        );
        let none = scope(false);
        assert_eq!(
            engine
                .render_str("$<< configMap('settings') | length >>", &none)
                .unwrap(),
            zero
        );
        let e = engine.render_str("$<< configMap(1) >>", &s).unwrap_err();
        assert!(
            e.to_string()
                .contains("configMap(): the first argument must be a string"),
            "{e}"
        );
    }
}
