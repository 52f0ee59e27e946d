//! A fake Argo CD API server following the documented application endpoints:
//! `GET /api/v1/applications[?selector=&appNamespace=]` (every namespace without
//! `appNamespace`),
//! `GET|PUT /api/v1/applications/{name}?appNamespace=…[&refresh=normal|hard]`,
//! `POST /api/v1/applications/{name}/sync`. A sync starts an operation (`Running`) that
//! completes on the next `GET` (`Succeeded`, or `Failed` when told to fail), syncing the
//! source's `targetRevision`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value as Json, json};

use super::fake_http::{Req, Resp};

#[derive(Default)]
pub struct FakeArgo {
    pub token: String,
    /// (namespace, name) → Application.
    pub apps: Mutex<BTreeMap<(String, String), Json>>,
    pub refreshes: Mutex<Vec<(String, String)>>,
    pub syncs: Mutex<Vec<Json>>,
    pub puts: AtomicUsize,
    pub fail_syncs: AtomicBool,
    /// GETs answered with health `Progressing` before `Healthy` after a sync.
    pub progressing_gets: AtomicUsize,
    /// GETs a foreign operation keeps running for.
    pub foreign_gets: AtomicUsize,
}

pub fn app(ns: &str, name: &str, annotation: Option<&str>, labels: Json, spec: Json) -> Json {
    let mut annotations = serde_json::Map::new();
    if let Some(a) = annotation {
        annotations.insert("kargo.akuity.io/authorized-stage".into(), json!(a));
    }
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": annotations, "resourceVersion": "1"},
        "spec": spec,
        "status": {"health": {"status": "Healthy"}, "sync": {"status": "Synced"}},
    })
}

impl FakeArgo {
    pub fn new(token: &str) -> Self {
        Self {
            token: token.into(),
            ..Self::default()
        }
    }

    pub fn add(&self, app: Json) {
        let ns = app["metadata"]["namespace"].as_str().unwrap().to_owned();
        let name = app["metadata"]["name"].as_str().unwrap().to_owned();
        self.apps.lock().unwrap().insert((ns, name), app);
    }

    pub fn get(&self, ns: &str, name: &str) -> Json {
        self.apps.lock().unwrap()[&(ns.to_owned(), name.to_owned())].clone()
    }

    /// Starts an operation not started by Kargo.
    pub fn start_foreign_operation(&self, ns: &str, name: &str) {
        let mut apps = self.apps.lock().unwrap();
        let a = apps.get_mut(&(ns.to_owned(), name.to_owned())).unwrap();
        a["status"]["operationState"] = json!({
            "phase": "Running",
            "operation": {"sync": {}, "initiatedBy": {"username": "admin"}},
        });
        self.foreign_gets.store(3, Ordering::SeqCst);
    }

    fn complete(&self, a: &mut Json) {
        if a["status"]["operationState"]["phase"] != json!("Running") {
            if a["status"]["health"]["status"] == json!("Progressing") {
                if self.progressing_gets.load(Ordering::SeqCst) == 0 {
                    a["status"]["health"]["status"] = json!("Healthy");
                } else {
                    self.progressing_gets.fetch_sub(1, Ordering::SeqCst);
                }
            }
            return;
        }
        let foreign =
            a["status"]["operationState"]["operation"]["initiatedBy"]["username"] != json!("kargo");
        if foreign && self.foreign_gets.load(Ordering::SeqCst) > 0 {
            self.foreign_gets.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let revs: Vec<Json> = match a["spec"]["sources"].as_array() {
            Some(list) => list.iter().map(|s| s["targetRevision"].clone()).collect(),
            None => vec![a["spec"]["source"]["targetRevision"].clone()],
        };
        if self.fail_syncs.load(Ordering::SeqCst) {
            a["status"]["operationState"]["phase"] = json!("Failed");
            a["status"]["operationState"]["message"] = json!("one or more objects failed to apply");
            a["status"]["sync"]["status"] = json!("OutOfSync");
            a["status"]["health"]["status"] = json!("Degraded");
            return;
        }
        a["status"]["operationState"]["phase"] = json!("Succeeded");
        if a["spec"]["sources"].is_array() {
            a["status"]["operationState"]["syncResult"] = json!({"revisions": revs});
            a["status"]["sync"] = json!({"status": "Synced", "revisions": revs});
        } else {
            a["status"]["operationState"]["syncResult"] = json!({"revision": revs[0]});
            a["status"]["sync"] = json!({"status": "Synced", "revision": revs[0]});
        }
        a["status"]["health"]["status"] =
            json!(if self.progressing_gets.load(Ordering::SeqCst) > 0 {
                "Progressing"
            } else {
                "Healthy"
            });
    }

    pub fn handle(&self, r: &Req) -> Resp {
        if r.header("authorization") != Some(&format!("Bearer {}", self.token)) {
            return Resp::json(
                401,
                json!({"error": "invalid session", "code": 16, "message": "invalid session: token is invalid"}),
            );
        }
        let segs: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
        let ns = r
            .query("appNamespace")
            .map(str::to_owned)
            .or_else(|| r.json()["appNamespace"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "argocd".into());
        let mut apps = self.apps.lock().unwrap();
        match (r.method.as_str(), segs.as_slice()) {
            ("GET", ["api", "v1", "applications"]) => {
                let sel: Vec<(String, String)> = r
                    .query("selector")
                    .unwrap_or_default()
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                for a in apps.values_mut() {
                    self.complete(a);
                }
                let items: Vec<Json> = apps
                    .iter()
                    .filter(|((n, _), a)| {
                        // Without appNamespace: every namespace (as Argo CD lists).
                        (r.query("appNamespace").is_none() || *n == ns)
                            && sel
                                .iter()
                                .all(|(k, v)| a["metadata"]["labels"][k].as_str() == Some(v))
                    })
                    .map(|(_, a)| a.clone())
                    .collect();
                Resp::json(200, json!({"items": items}))
            }
            ("GET", ["api", "v1", "applications", name]) => {
                let Some(a) = apps.get_mut(&(ns.clone(), (*name).to_owned())) else {
                    return Resp::json(
                        404,
                        json!({"message": format!("applications.argoproj.io \"{name}\" not found")}),
                    );
                };
                if let Some(kind) = r.query("refresh") {
                    self.refreshes
                        .lock()
                        .unwrap()
                        .push(((*name).to_owned(), kind.to_owned()));
                }
                self.complete(a);
                Resp::json(200, a.clone())
            }
            ("PUT", ["api", "v1", "applications", name]) => {
                let Some(a) = apps.get_mut(&(ns.clone(), (*name).to_owned())) else {
                    return Resp::json(404, json!({"message": "not found"}));
                };
                let body = r.json();
                if body["metadata"]["name"] != json!(name) {
                    return Resp::json(400, json!({"message": "name mismatch"}));
                }
                a["spec"] = body["spec"].clone();
                let rv: u64 = a["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                a["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
                a["status"]["sync"]["status"] = json!("OutOfSync");
                self.puts.fetch_add(1, Ordering::SeqCst);
                Resp::json(200, a.clone())
            }
            ("POST", ["api", "v1", "applications", name, "sync"]) => {
                let Some(a) = apps.get_mut(&(ns.clone(), (*name).to_owned())) else {
                    return Resp::json(404, json!({"message": "not found"}));
                };
                let body = r.json();
                a["status"]["operationState"] = json!({
                    "phase": "Running",
                    "operation": {"sync": {"revision": body["revision"]}, "info": body["infos"],
                                  "initiatedBy": {"username": "kargo"}},
                });
                self.syncs.lock().unwrap().push(body);
                Resp::json(200, a.clone())
            }
            _ => Resp::json(404, json!({"message": "Not Found"})),
        }
    }
}
