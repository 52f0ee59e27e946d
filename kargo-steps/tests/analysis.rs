//! AnalysisTemplates run for Stage verification (`kargo_steps::analysis`) against local
//! HTTP servers: a health endpoint (JSON) and a Prometheus-shaped `/api/v1/query`.
//! Waits go through a recording clock, so intervals and delays cost no real time.

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "support/fake_http.rs"]
mod fake_http;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use fake_http::{Req, Resp, serve};
use kargo_core::FreightCollection;
use kargo_core::freight::{Freight, FreightOrigin, FreightReference, Image};
use kargo_core::loader::ManifestSet;
use kargo_core::pipeline::{VerificationPhase, Verifier};
use kargo_steps::analysis::{AnalysisClock, AnalysisPhase, AnalysisVerifier, ClockSleep, validate};
use serde_json::json;

/// Virtual time: `sleep` records the wait and moves the time at once.
#[derive(Default)]
struct RecordingClock {
    offset: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl RecordingClock {
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

impl AnalysisClock for RecordingClock {
    fn now(&self) -> DateTime<Utc> {
        epoch() + *self.offset.lock().unwrap()
    }
    fn sleep(&self, d: Duration) -> ClockSleep<'_> {
        self.sleeps.lock().unwrap().push(d);
        *self.offset.lock().unwrap() += d;
        Box::pin(async {})
    }
}

const PROJECT: &str = "
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/acme/app}
";

/// A Stage `dev` with the given `verification` (YAML indented under `verification:`).
fn stage(verification: &str) -> String {
    format!(
        "---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {{name: dev, namespace: demo}}
spec:
  vars:
  - name: env
    value: development
  requestedFreight:
  - origin: {{kind: Warehouse, name: app}}
    sources: {{direct: true}}
  promotionTemplate:
    spec:
      steps:
      - uses: fail
  verification:
{verification}
"
    )
}

fn manifests(verification: &str, rest: &str) -> ManifestSet {
    let text = format!("{PROJECT}{}{rest}", stage(verification));
    ManifestSet::from_yaml_str("pipeline.yaml", &text).unwrap()
}

fn collection(tag: &str) -> FreightCollection {
    let f = Freight::new(
        FreightOrigin::warehouse("app"),
        vec![],
        vec![Image {
            repo_url: "ghcr.io/acme/app".into(),
            tag: tag.into(),
            digest: "sha256:1".into(),
            ..Image::default()
        }],
        vec![],
        vec![],
    );
    let mut c = FreightCollection::new();
    c.insert(FreightReference::from(&f));
    c
}

fn dev(set: &ManifestSet) -> kargo_core::model::Stage {
    set.stage("demo", "dev").unwrap().clone()
}

fn verifier(set: &ManifestSet, clock: &Arc<RecordingClock>) -> AnalysisVerifier {
    AnalysisVerifier::from_manifests(set, "demo")
        .unwrap()
        .with_clock(clock.clone())
}

/// A Prometheus `/api/v1/query` answering a vector with one sample per call, taking the
/// values in turn (the last one repeats); records the queries.
async fn prometheus(values: &[&'static str]) -> (fake_http::Server, Arc<AtomicUsize>) {
    let values: Vec<&'static str> = values.to_vec();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let srv = serve(Arc::new(move |r: &Req| {
        if r.path != "/api/v1/query" {
            return Resp::text(404, "not found");
        }
        let n = c.fetch_add(1, Ordering::SeqCst);
        let v = values[n.min(values.len() - 1)];
        Resp::json(
            200,
            json!({"status": "success", "data": {"resultType": "vector", "result": [
                {"metric": {"service": "app"}, "value": [1_767_225_600.0, v]}
            ]}}),
        )
    }))
    .await;
    (srv, calls)
}

fn prom_template(name: &str, address: &str, metric: &str) -> String {
    format!(
        "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: {name}, namespace: demo}}
spec:
  args:
  - name: service
    value: app
  metrics:
{metric}    provider:
      prometheus:
        address: {address}
        query: sum(rate(http_requests_total{{service=\"{{{{args.service}}}}\",code!~\"5..\"}}[5m]))
"
    )
}

#[tokio::test]
async fn web_metric_with_args_from_freight_succeeds() {
    // The deployed application reports version 1.2.3.
    let srv = serve(Arc::new(|_r: &Req| {
        Resp::json(
            200,
            json!({"data": {"status": "healthy", "version": "1.2.3"}}),
        )
    }))
    .await;
    let set = manifests(
        "    analysisTemplates:
    - name: health
    args:
    - name: tag
      value: ${{ imageFrom(\"ghcr.io/acme/app\").Tag }}
    - name: env
      value: ${{ vars.env }}-${{ ctx.stage }}",
        &format!(
            "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: health, namespace: demo}}
spec:
  args:
  - name: tag
  - name: env
  metrics:
  - name: health
    successCondition: result.status == 'healthy' && result.version == '{{{{args.tag}}}}'
    provider:
      web:
        url: {}/health?version={{{{ args.tag }}}}&env={{{{args.env}}}}
        headers:
        - key: X-Env
          value: '{{{{args.env}}}}'
        jsonPath: '{{$.data}}'
",
            srv.url
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let v = verifier(&set, &clock);
    let report = v.run(&dev(&set), &collection("1.2.3")).await;
    assert_eq!(
        report.phase,
        AnalysisPhase::Successful,
        "{}",
        report.summary()
    );
    let m = report.metric("health").unwrap();
    assert_eq!((m.count, m.successful), (1, 1));
    assert!(
        m.measurements[0]
            .value
            .as_deref()
            .unwrap()
            .contains("healthy")
    );
    let reqs = srv.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].query("version"), Some("1.2.3"));
    assert_eq!(reqs[0].query("env"), Some("development-dev"));
    assert_eq!(reqs[0].header("x-env"), Some("development-dev"));
    // No interval: one measurement, no wait.
    assert!(clock.sleeps().is_empty());
    // The same through the Verifier trait; another tag is a failed verification.
    let info = v.verify(&dev(&set), &collection("1.2.3")).await;
    assert_eq!(
        info.phase,
        VerificationPhase::Successful,
        "{}",
        info.message
    );
    assert!(
        info.message.contains("metric \"health\" (web): Successful"),
        "{}",
        info.message
    );
    let other = v.verify(&dev(&set), &collection("2.0.0")).await;
    assert_eq!(other.phase, VerificationPhase::Failed, "{}", other.message);
    assert_eq!(srv.requests()[2].query("version"), Some("2.0.0"));
}

#[tokio::test]
async fn web_metric_fails_when_the_condition_does_not_hold() {
    let srv = serve(Arc::new(|_r: &Req| {
        Resp::json(200, json!({"status": "degraded"}))
    }))
    .await;
    let set = manifests(
        "    analysisTemplates:
    - name: health",
        &format!(
            "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: health, namespace: demo}}
spec:
  metrics:
  - name: health
    successCondition: result == 'healthy'
    provider:
      web:
        url: {}/health
        jsonPath: '{{$.status}}'
",
            srv.url
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let info = verifier(&set, &clock)
        .verify(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(info.phase, VerificationPhase::Failed, "{}", info.message);
    assert!(
        info.message
            .contains("Metric \"health\" assessed Failed due to failed (1) > failureLimit (0)"),
        "{}",
        info.message
    );
    assert!(
        info.message.contains("last value \"degraded\""),
        "{}",
        info.message
    );
}

#[tokio::test]
async fn prometheus_count_and_interval_are_waited_on_the_clock() {
    let (srv, calls) = prometheus(&["0.99"]).await;
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &prom_template(
            "success-rate",
            &srv.url,
            "  - name: success-rate
    initialDelay: 30s
    interval: 1m
    count: 3
    successCondition: len(result) > 0 && result[0] >= 0.95
",
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(
        report.phase,
        AnalysisPhase::Successful,
        "{}",
        report.summary()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        clock.sleeps(),
        vec![
            Duration::from_secs(30),
            Duration::from_secs(60),
            Duration::from_secs(60)
        ]
    );
    let m = report.metric("success-rate").unwrap();
    assert_eq!((m.count, m.successful, m.measurements.len()), (3, 3, 3));
    assert_eq!(m.measurements[2].value.as_deref(), Some("[0.99]"));
    // The query went out with the argument filled in.
    let q = srv.requests()[0].query("query").unwrap().to_owned();
    assert_eq!(
        q,
        "sum(rate(http_requests_total{service=\"app\",code!~\"5..\"}[5m]))"
    );
    assert_eq!(
        report.finished_at - report.started_at,
        chrono::Duration::seconds(150)
    );
}

#[tokio::test]
async fn failures_within_the_limit_pass_and_beyond_it_fail_early() {
    // One failure with failureLimit 1: still Successful after the count.
    let (srv, calls) = prometheus(&["0.5", "0.99", "0.99"]).await;
    let metric = "  - name: success-rate
    interval: 10s
    count: 3
    failureLimit: 1
    successCondition: result[0] >= 0.95
";
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &prom_template("success-rate", &srv.url, metric),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(
        report.phase,
        AnalysisPhase::Successful,
        "{}",
        report.summary()
    );
    let m = report.metric("success-rate").unwrap();
    assert_eq!((m.count, m.failed, m.successful), (3, 1, 2));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Two failures exceed it: Failed at once, the remaining measurement is not taken.
    let (srv, calls) = prometheus(&["0.5", "0.4", "0.99"]).await;
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &prom_template("success-rate", &srv.url, metric),
    );
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(report.phase, AnalysisPhase::Failed, "{}", report.summary());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        report.message,
        "Metric \"success-rate\" assessed Failed due to failed (2) > failureLimit (1)"
    );
}

#[tokio::test]
async fn neither_condition_holding_is_inconclusive() {
    let (srv, _) = prometheus(&["0.9"]).await;
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &prom_template(
            "success-rate",
            &srv.url,
            "  - name: success-rate
    successCondition: result[0] >= 0.95
    failureCondition: result[0] < 0.5
",
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let info = verifier(&set, &clock)
        .verify(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(
        info.phase,
        VerificationPhase::Inconclusive,
        "{}",
        info.message
    );
    assert!(
        info.message
            .contains("inconclusive (1) > inconclusiveLimit (0)"),
        "{}",
        info.message
    );
}

#[tokio::test]
async fn errors_retry_until_the_consecutive_error_limit() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &prom_template(
            "success-rate",
            &format!("http://127.0.0.1:{port}"),
            "  - name: success-rate
    consecutiveErrorLimit: 2
    successCondition: result[0] >= 0.95
",
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(report.phase, AnalysisPhase::Error, "{}", report.summary());
    let m = report.metric("success-rate").unwrap();
    assert_eq!((m.error, m.consecutive_error, m.count), (3, 3, 0));
    assert!(
        m.measurements[0]
            .message
            .as_deref()
            .unwrap()
            .contains("/api/v1/query")
    );
    // Retried 10 s apart (Argo Rollouts' error retry interval).
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(10); 2]);
    assert_eq!(
        report.message,
        "Metric \"success-rate\" assessed Error due to consecutiveErrors (3) > consecutiveErrorLimit (2)"
    );
    let info = report.verification_info();
    assert_eq!(info.phase, VerificationPhase::Error);
}

#[tokio::test]
async fn a_recovered_error_resets_the_consecutive_count_and_bad_answers_are_errors() {
    // Errors (500, a JSONPath missing from the body) then a good answer.
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let srv = serve(Arc::new(move |_r: &Req| {
        match c.fetch_add(1, Ordering::SeqCst) {
            0 => Resp::text(500, "boom"),
            1 => Resp::json(200, json!({"other": 1})),
            _ => Resp::json(200, json!({"status": "healthy"})),
        }
    }))
    .await;
    let set = manifests(
        "    analysisTemplates:
    - name: health",
        &format!(
            "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: health, namespace: demo}}
spec:
  metrics:
  - name: health
    consecutiveErrorLimit: 2
    successCondition: result == 'healthy'
    provider:
      web:
        url: {}/health
        jsonPath: '{{$.status}}'
",
            srv.url
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(
        report.phase,
        AnalysisPhase::Successful,
        "{}",
        report.summary()
    );
    let m = report.metric("health").unwrap();
    assert_eq!((m.error, m.consecutive_error, m.count), (2, 0, 1));
    let msgs: Vec<_> = m
        .measurements
        .iter()
        .filter_map(|x| x.message.clone())
        .collect();
    assert!(
        msgs[0].contains("received non 2xx response code: 500"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("could not find JSONPath {$.status} in body"),
        "{msgs:?}"
    );
}

#[tokio::test]
async fn cluster_templates_and_several_templates_merge_into_one_run() {
    let (prom, _) = prometheus(&["0.99"]).await;
    let web = serve(Arc::new(|_r: &Req| Resp::json(200, json!({"ok": false})))).await;
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate
    - name: smoke
      kind: ClusterAnalysisTemplate",
        &format!(
            "{}---
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {{name: smoke}}
spec:
  args:
  - name: service
    value: app
  metrics:
  - name: smoke
    successCondition: result.ok == true
    provider:
      web:
        url: {}/smoke/{{{{args.service}}}}
",
            prom_template(
                "success-rate",
                &prom.url,
                "  - name: success-rate
    successCondition: result[0] >= 0.95
"
            ),
            web.url
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(report.phase, AnalysisPhase::Failed, "{}", report.summary());
    assert_eq!(report.metrics.len(), 2);
    assert_eq!(report.metrics[0].phase, AnalysisPhase::Successful);
    assert_eq!(
        report.metrics[0].template,
        "AnalysisTemplate demo/success-rate"
    );
    assert_eq!(report.metrics[1].phase, AnalysisPhase::Failed);
    assert_eq!(report.metrics[1].template, "ClusterAnalysisTemplate smoke");
    assert_eq!(web.requests()[0].path, "/smoke/app");
}

#[tokio::test]
async fn a_dry_run_metric_does_not_decide() {
    let (srv, _) = prometheus(&["0.1"]).await;
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &format!(
            "{}  dryRun:
  - metricName: success-rate
",
            prom_template(
                "success-rate",
                &srv.url,
                "  - name: success-rate
    successCondition: result[0] >= 0.95
"
            )
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(
        report.phase,
        AnalysisPhase::Successful,
        "{}",
        report.summary()
    );
    let m = report.metric("success-rate").unwrap();
    assert!(m.dry_run);
    assert_eq!(m.phase, AnalysisPhase::Failed);
}

#[tokio::test]
async fn secret_arguments_come_from_the_directory_and_never_show() {
    let srv = serve(Arc::new(|r: &Req| {
        if r.header("authorization") == Some("Bearer s3cr3t-t0ken")
            && r.header("x-user") == Some("robot")
        {
            Resp::json(200, json!({"status": "healthy", "echo": "s3cr3t-t0ken"}))
        } else {
            Resp::text(401, "no")
        }
    }))
    .await;
    let set = manifests(
        "    analysisTemplates:
    - name: health
    args:
    - name: user
      value: ${{ secret('api').user }}
    - name: other
      value: unused",
        &format!(
            "---
apiVersion: v1
kind: Secret
metadata: {{name: api, namespace: demo}}
stringData:
  token: s3cr3t-t0ken
data:
  user: cm9ib3Q=
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: health, namespace: demo}}
spec:
  args:
  - name: token
    valueFrom:
      secretKeyRef: {{name: api, key: token}}
  - name: user
  - name: other
  metrics:
  - name: health
    successCondition: result.status == 'healthy'
    provider:
      web:
        url: {}/health
        headers:
        - key: Authorization
          value: Bearer {{{{args.token}}}}
        - key: X-User
          value: '{{{{args.user}}}}'
",
            srv.url
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let info = verifier(&set, &clock)
        .verify(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(
        info.phase,
        VerificationPhase::Successful,
        "{}",
        info.message
    );
    assert!(!info.message.contains("s3cr3t"), "{}", info.message);
    assert!(info.message.contains("*****"), "{}", info.message);
}

#[test]
fn unsupported_providers_are_validation_errors_naming_stage_template_and_place() {
    let set = manifests(
        "    analysisTemplates:
    - name: load-test",
        "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: load-test, namespace: demo}
spec:
  metrics:
  - name: error-rate
    provider:
      datadog:
        query: avg:errors
",
    );
    let errs = validate(&set, "demo").unwrap_err();
    assert_eq!(errs.len(), 1, "{errs}");
    let e = &errs.0[0];
    assert_eq!(
        e.resource.as_deref(),
        Some("AnalysisTemplate demo/load-test")
    );
    assert_eq!(e.field, "spec.metrics[0].provider.datadog");
    assert!(e.location.line.is_some());
    let text = e.to_string();
    assert!(text.starts_with("pipeline.yaml:"), "{text}");
    assert!(text.contains("uses the datadog provider"), "{text}");
    assert!(
        text.contains("Stage demo/dev verifies with this template"),
        "{text}"
    );
}

#[test]
fn missing_templates_and_arguments_are_validation_errors() {
    let set = manifests(
        "    analysisTemplates:
    - name: nowhere
    - name: nowhere-either
      kind: ClusterAnalysisTemplate",
        "",
    );
    let errs = validate(&set, "demo").unwrap_err();
    assert_eq!(errs.len(), 2, "{errs}");
    assert_eq!(errs.0[0].resource.as_deref(), Some("Stage demo/dev"));
    assert_eq!(
        errs.0[0].field,
        "spec.verification.analysisTemplates[0].name"
    );
    assert!(
        errs.0[0]
            .message
            .contains("AnalysisTemplate \"nowhere\" in namespace \"demo\" is not in the manifests"),
        "{errs}"
    );
    assert!(
        errs.0[1]
            .message
            .contains("ClusterAnalysisTemplate \"nowhere-either\""),
        "{errs}"
    );

    // A required argument nobody gives, a placeholder nobody declares, a duplicate metric.
    let set = manifests(
        "    analysisTemplates:
    - name: a
    - name: b",
        "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: a, namespace: demo}
spec:
  args:
  - name: service
  metrics:
  - name: m
    provider:
      web: {url: 'http://x/{{args.service}}/{{args.undeclared}}'}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: b, namespace: demo}
spec:
  metrics:
  - name: m
    interval: soon
    provider:
      web: {url: 'http://x/'}
",
    );
    let errs = validate(&set, "demo").unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("spec.metrics[0].interval"), "{text}");

    let set = manifests(
        "    analysisTemplates:
    - name: a
    - name: b",
        "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: a, namespace: demo}
spec:
  args:
  - name: service
  metrics:
  - name: m
    provider:
      web: {url: 'http://x/{{args.service}}/{{args.undeclared}}'}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: b, namespace: demo}
spec:
  metrics:
  - name: m
    provider:
      web: {url: 'http://x/'}
",
    );
    let text = validate(&set, "demo").unwrap_err().to_string();
    assert!(text.contains("two metrics are named \"m\""), "{text}");

    let set = manifests(
        "    analysisTemplates:
    - name: a",
        "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: a, namespace: demo}
spec:
  args:
  - name: service
  metrics:
  - name: m
    provider:
      web: {url: 'http://x/{{args.service}}/{{args.undeclared}}'}
  - name: n
    successCondition: 'result ==='
    provider:
      web: {url: 'http://x/'}
",
    );
    let text = validate(&set, "demo").unwrap_err().to_string();
    assert!(
        text.contains("needs argument \"service\", which has no default"),
        "{text}"
    );
    assert!(text.contains("{{args.undeclared}} is used"), "{text}");
    assert!(text.contains("spec.metrics[1].successCondition"), "{text}");

    // Given by the Stage: valid.
    let set = manifests(
        "    analysisTemplates:
    - name: a
    args:
    - name: service
      value: web",
        "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: a, namespace: demo}
spec:
  args:
  - name: service
  metrics:
  - name: m
    provider:
      web: {url: 'http://x/{{args.service}}'}
",
    );
    validate(&set, "demo").unwrap();
}

#[test]
fn templates_no_stage_uses_are_not_checked() {
    let set = manifests(
        "    analysisTemplates:
    - name: a",
        "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: a, namespace: demo}
spec:
  metrics:
  - name: m
    provider:
      web: {url: 'http://x/'}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: rollouts-own, namespace: demo}
spec:
  metrics:
  - name: load
    provider:
      job: {spec: {}}
",
    );
    validate(&set, "demo").unwrap();
}

#[tokio::test]
async fn a_metric_without_count_runs_until_the_time_limit() {
    let (srv, calls) = prometheus(&["0.99"]).await;
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &prom_template(
            "success-rate",
            &srv.url,
            "  - name: success-rate
    interval: 5m
    successCondition: result[0] >= 0.95
",
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .with_options(
            kargo_steps::analysis::AnalysisOptions::default()
                .with_max_duration(Some(Duration::from_secs(1200))),
        )
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    // Measured at 0, 5, 10, 15 and 20 minutes; the next one would be past the limit.
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(
        report.phase,
        AnalysisPhase::Successful,
        "{}",
        report.summary()
    );
    assert!(
        report.message.contains("time limit of 1200s"),
        "{}",
        report.message
    );
    assert_eq!(report.metric("success-rate").unwrap().count, 5);
}

#[tokio::test]
async fn web_posts_json_bodies_and_takes_non_json_answers_as_they_are() {
    let srv = serve(Arc::new(|r: &Req| {
        if r.method == "POST"
            && r.header("content-type") == Some("application/json")
            && r.json()["tag"] == "1.0.0"
        {
            Resp::text(200, "all good")
        } else {
            Resp::text(400, "bad request")
        }
    }))
    .await;
    let set = manifests(
        "    analysisTemplates:
    - name: smoke
    args:
    - name: tag
      value: ${{ imageFrom(\"ghcr.io/acme/app\").Tag }}",
        &format!(
            "---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: smoke, namespace: demo}}
spec:
  args:
  - name: tag
  metrics:
  - name: smoke
    successCondition: result == 'never compared'
    provider:
      web:
        method: POST
        url: {}/smoke
        jsonBody:
          tag: '{{{{args.tag}}}}'
",
            srv.url
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    // Argo Rollouts: a body that is not JSON is a successful measurement, as it is.
    assert_eq!(
        report.phase,
        AnalysisPhase::Successful,
        "{}",
        report.summary()
    );
    let m = report.metric("smoke").unwrap();
    assert_eq!(m.measurements[0].value.as_deref(), Some("all good"));
}

#[tokio::test]
async fn a_failed_prometheus_query_is_an_error_measurement() {
    let srv = serve(Arc::new(|_r: &Req| {
        Resp::json(
            400,
            json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}),
        )
    }))
    .await;
    let set = manifests(
        "    analysisTemplates:
    - name: success-rate",
        &prom_template(
            "success-rate",
            &srv.url,
            "  - name: success-rate
    consecutiveErrorLimit: 0
    successCondition: result[0] >= 0.95
",
        ),
    );
    let clock = Arc::new(RecordingClock::default());
    let report = verifier(&set, &clock)
        .run(&dev(&set), &collection("1.0.0"))
        .await;
    assert_eq!(report.phase, AnalysisPhase::Error, "{}", report.summary());
    let msg = report.metric("success-rate").unwrap().measurements[0]
        .message
        .clone()
        .unwrap();
    assert!(msg.contains("bad_data: parse error at char 5"), "{msg}");
}
