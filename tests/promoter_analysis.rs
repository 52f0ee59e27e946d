//! `promoter validate` reports the problems of the AnalysisTemplates a Stage's
//! verification names, in the loader's error form (file:line, resource, field).

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::process::Command;

const KARGO: &str = "apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/acme/app}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: compose-output
        config: {a: b}
  verification:
    analysisTemplates:
    - name: load-test
    - name: smoke
      kind: ClusterAnalysisTemplate
";

const TEMPLATES: &str = "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: load-test, namespace: demo}
spec:
  metrics:
  - name: k6
    provider:
      job:
        spec: {template: {spec: {containers: []}}}
";

fn validate(dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(support::promoter_bin())
        .arg("--manifests")
        .arg(dir.join("kargo"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("validate")
        .env("NO_COLOR", "1")
        .env_remove("KARGO_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_unsupported_providers_and_missing_templates() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("kargo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pipeline.yaml"), KARGO).unwrap();
    std::fs::write(dir.join("analysis.yaml"), TEMPLATES).unwrap();
    let (code, _, stderr) = validate(root.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("2 manifest error(s)"), "{stderr}");
    assert!(
        stderr.contains("analysis.yaml:8:7: document 1: AnalysisTemplate demo/load-test: spec.metrics[0].provider.job: metric \"k6\" uses the job provider"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Stage demo/dev verifies with this template"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pipeline.yaml:27:7: document 3:")
            && stderr.contains("Stage demo/dev: spec.verification.analysisTemplates[1].name: ClusterAnalysisTemplate \"smoke\" is not in the manifests"),
        "{stderr}"
    );

    // Both fixed: valid.
    std::fs::write(
        dir.join("analysis.yaml"),
        "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: load-test, namespace: demo}
spec:
  metrics:
  - name: error-rate
    successCondition: result[0] < 0.01
    provider:
      prometheus:
        address: http://prometheus.monitoring:9090
        query: sum(rate(errors[5m]))
---
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: smoke}
spec:
  metrics:
  - name: smoke
    provider:
      web: {url: 'http://app.dev.svc/healthz'}
",
    )
    .unwrap();
    let (code, stdout, stderr) = validate(root.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
}
