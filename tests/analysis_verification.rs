//! Stage verification with Argo Rollouts AnalysisTemplates through the controller: a
//! directory holding the templates its Stages name verifies without any extra wiring;
//! Freight verified in dev reaches prod, Freight that fails its analysis does not.

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../kargo-steps/tests/support/fake_http.rs"]
mod fake_http;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use kargo::controller::{Controller, ControllerError};
use kargo::core::freight::FreightCollection;
use kargo::core::loader::ManifestSet;
use kargo::core::model::Stage;
use kargo::core::pipeline::{MemoryStore, Pipeline, VerificationInfo, VerificationPhase, Verifier};
use kargo::core::{Runner, StepRegistry};
use kargo::sources::memory::{MemorySource, image};
use kargo_core::source::SourceRegistry;
use serde_json::json;

fn manifests(health_url: &str, provider: &str) -> String {
    manifests_with(health_url, provider, "")
}

/// `timing` goes into the metric (`interval`, `count`...), indented by four spaces.
fn manifests_with(health_url: &str, provider: &str, timing: &str) -> String {
    format!(
        r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {{name: demo}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ProjectConfig
metadata: {{name: demo, namespace: demo}}
spec:
  promotionPolicies:
  - stageSelector: {{name: dev}}
    autoPromotionEnabled: true
  - stageSelector: {{name: prod}}
    autoPromotionEnabled: true
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {{name: app, namespace: demo}}
spec:
  subscriptions:
  - image: {{repoURL: ghcr.io/acme/app}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: dev, namespace: demo}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: app}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - as: out
        uses: compose-output
        config:
          tag: ${{{{ imageFrom('ghcr.io/acme/app').Tag }}}}
  verification:
    analysisTemplates:
    - name: health
    args:
    - name: tag
      value: ${{{{ imageFrom('ghcr.io/acme/app').Tag }}}}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: prod, namespace: demo}}
spec:
  requestedFreight:
  - origin: {{kind: Warehouse, name: app}}
    sources: {{stages: [dev]}}
  promotionTemplate:
    spec:
      steps:
      - as: out
        uses: compose-output
        config: {{ok: true}}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: health, namespace: demo}}
spec:
  args:
  - name: tag
  metrics:
  - name: version
{timing}    successCondition: result.status == 'healthy' && result.version == '{{{{args.tag}}}}'
    provider:
      {provider}:
        url: {health_url}/health
"#
    )
}

/// A health endpoint reporting the version in `version`.
async fn health(version: &str) -> (fake_http::Server, Arc<Mutex<String>>) {
    let current = Arc::new(Mutex::new(version.to_owned()));
    let v = current.clone();
    let srv = fake_http::serve(Arc::new(move |_r: &fake_http::Req| {
        fake_http::Resp::json(
            200,
            json!({"status": "healthy", "version": v.lock().unwrap().clone()}),
        )
    }))
    .await;
    (srv, current)
}

fn controller(text: &str, tag: &str) -> Result<Controller, ControllerError> {
    let set = ManifestSet::from_yaml_str("pipeline.yaml", text).unwrap();
    let mem = MemorySource::new();
    mem.set_images("ghcr.io/acme/app", vec![image(tag, "sha256:a")]);
    let mut sources = SourceRegistry::new();
    mem.register_into(&mut sources).unwrap();
    let mut steps = StepRegistry::new();
    kargo::steps::register_builtins(
        &mut steps,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    Controller::new(
        set,
        "demo",
        sources,
        Runner::new(steps),
        Arc::new(MemoryStore::new()),
    )
}

#[tokio::test]
async fn verified_freight_reaches_prod() {
    let (srv, _) = health("1.0.0").await;
    let c = controller(&manifests(&srv.url, "web"), "1.0.0").unwrap();
    let r = c.reconcile(false).await.unwrap();
    let stages: Vec<_> = r
        .promotions
        .iter()
        .map(|p| p.request.stage.as_str())
        .collect();
    assert_eq!(stages, vec!["dev", "prod"], "{:?}", r.promotions);
    assert!(r.promotions.iter().all(|p| p.succeeded()));
    let state = c.state().await.unwrap();
    let dev = &state.stages["dev"].freight_history[0];
    let info = &dev.verification_history[0];
    assert_eq!(
        info.phase,
        VerificationPhase::Successful,
        "{}",
        info.message
    );
    assert!(
        info.message
            .contains("metric \"version\" (web): Successful"),
        "{}",
        info.message
    );
    assert!(
        state
            .freight
            .values()
            .all(|f| f.status.verified_in.contains_key("dev"))
    );
    assert_eq!(srv.requests().len(), 1, "one measurement");
}

#[tokio::test]
async fn freight_failing_its_analysis_stays_out_of_prod() {
    // The deployment still reports the previous version.
    let (srv, _) = health("0.9.0").await;
    let c = controller(&manifests(&srv.url, "web"), "1.0.0").unwrap();
    let r = c.reconcile(false).await.unwrap();
    let stages: Vec<_> = r
        .promotions
        .iter()
        .map(|p| p.request.stage.as_str())
        .collect();
    assert_eq!(stages, vec!["dev"]);
    let state = c.state().await.unwrap();
    let info = &state.stages["dev"].freight_history[0].verification_history[0];
    assert_eq!(info.phase, VerificationPhase::Failed, "{}", info.message);
    assert!(
        info.message
            .contains("Metric \"version\" assessed Failed due to failed (1) > failureLimit (0)"),
        "{}",
        info.message
    );
    assert!(info.message.contains("\"0.9.0\""), "{}", info.message);
    let prod = c.pipeline().stage("prod").unwrap();
    assert!(Pipeline::available_to(prod, &state, Utc::now()).is_empty());
    assert!(!state.stages.contains_key("prod") || state.stages["prod"].freight_history.is_empty());
}

#[tokio::test]
async fn invalid_templates_stop_the_controller_and_an_explicit_verifier_wins() {
    let err = controller(&manifests("http://127.0.0.1:9", "datadog"), "1.0.0").unwrap_err();
    let ControllerError::Analysis(errors) = &err else {
        panic!("{err}");
    };
    assert_eq!(errors.len(), 1);
    let text = err.to_string();
    assert!(text.contains("pipeline.yaml:"), "{text}");
    assert!(text.contains("AnalysisTemplate demo/health"), "{text}");
    assert!(text.contains("uses the datadog provider"), "{text}");
    assert!(text.contains("Stage demo/dev"), "{text}");

    // An embedder's verifier replaces the one made from the templates.
    struct Always;
    #[async_trait]
    impl Verifier for Always {
        async fn verify(&self, _s: &Stage, _c: &FreightCollection) -> VerificationInfo {
            VerificationInfo {
                phase: VerificationPhase::Successful,
                message: "embedder".into(),
                finished_at: Utc::now(),
            }
        }
    }
    let (srv, _) = health("0.0.1").await;
    let c = controller(&manifests(&srv.url, "web"), "1.0.0")
        .unwrap()
        .with_verifier(Arc::new(Always));
    let r = c.reconcile(false).await.unwrap();
    assert_eq!(r.promotions.len(), 2);
    assert!(srv.requests().is_empty());
}

#[tokio::test]
async fn measurement_intervals_wait_on_the_controller_clock() {
    let (srv, _) = health("1.0.0").await;
    let text = manifests_with(&srv.url, "web", "    interval: 1m\n    count: 2\n");
    let clock = kargo::clock::ManualClock::new(Utc::now());
    let c = controller(&text, "1.0.0")
        .unwrap()
        .with_clock(clock.clone());
    let task = tokio::spawn({
        let c = c.clone();
        async move { c.reconcile(false).await }
    });
    // The first measurement is taken at once; the second waits for a minute of the
    // controller's clock, however long the test takes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while srv.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no measurement");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(
        srv.requests().len(),
        1,
        "the second measurement waits for the clock"
    );
    assert!(!task.is_finished());
    clock.advance(chrono::Duration::seconds(60));
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(srv.requests().len(), 2);
    let stages: Vec<_> = r
        .promotions
        .iter()
        .map(|p| p.request.stage.as_str())
        .collect();
    assert_eq!(stages, vec!["dev", "prod"]);
    let state = c.state().await.unwrap();
    let info = &state.stages["dev"].freight_history[0].verification_history[0];
    assert_eq!(
        info.phase,
        VerificationPhase::Successful,
        "{}",
        info.message
    );
    assert!(
        info.message.contains("count 2: 2 successful"),
        "{}",
        info.message
    );
}
