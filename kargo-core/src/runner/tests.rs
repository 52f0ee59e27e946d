use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::model::{ExpressionVariable, PromotionStep, PromotionTaskSpec};
use crate::step::{Step, StepContext, StepDefaults, StepError, StepOutcome, StepRegistry};

/// Outputs its config as outputs.
struct Echo;
#[async_trait]
impl Step for Echo {
    const KIND: &'static str = "echo";
    type Config = serde_json::Map<String, Json>;
    async fn run(&self, _: &StepContext, c: Self::Config) -> Result<StepOutcome, StepError> {
        let mut o = StepOutcome::succeeded();
        for (k, v) in c {
            o = o.with_output(k, v);
        }
        Ok(o)
    }
}

/// Outputs its vars.
struct Vars;
#[async_trait]
impl Step for Vars {
    const KIND: &'static str = "vars";
    type Config = serde_json::Map<String, Json>;
    async fn run(&self, ctx: &StepContext, _: Self::Config) -> Result<StepOutcome, StepError> {
        let mut o = StepOutcome::succeeded();
        for (k, v) in &ctx.vars {
            o = o.with_output(k.clone(), v.clone());
        }
        Ok(o)
    }
}

/// Like Kargo's compose-output: outputs propagate to the task alias.
struct Compose;
#[async_trait]
impl Step for Compose {
    const KIND: &'static str = "compose-output";
    type Config = serde_json::Map<String, Json>;
    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            task_output_propagation: true,
            ..StepDefaults::default()
        }
    }
    async fn run(&self, _: &StepContext, c: Self::Config) -> Result<StepOutcome, StepError> {
        let mut o = StepOutcome::succeeded();
        for (k, v) in c {
            o = o.with_output(k, v);
        }
        Ok(o)
    }
}

#[derive(serde::Deserialize)]
struct FailCfg {
    #[serde(default)]
    message: String,
    #[serde(default)]
    terminal: bool,
}
struct Fail;
#[async_trait]
impl Step for Fail {
    const KIND: &'static str = "fail";
    type Config = FailCfg;
    async fn run(&self, _: &StepContext, c: FailCfg) -> Result<StepOutcome, StepError> {
        if c.terminal {
            Err(StepError::terminal(c.message))
        } else {
            Err(StepError::failed(c.message))
        }
    }
}

/// Fails with a retryable error `fail_times` times, then succeeds.
struct Flaky {
    calls: Arc<AtomicU32>,
    fail_times: u32,
}
#[async_trait]
impl Step for Flaky {
    const KIND: &'static str = "flaky";
    type Config = Json;
    async fn run(&self, ctx: &StepContext, _: Json) -> Result<StepOutcome, StepError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(ctx.attempt, n, "attempt counter");
        if n < self.fail_times {
            Err(StepError::retryable(format!("transient #{n}")))
        } else {
            Ok(StepOutcome::succeeded().with_output("calls", n + 1))
        }
    }
}

/// Running `times` times (retry after 1s), then Succeeded.
struct Poll {
    calls: Arc<AtomicU32>,
    times: u32,
}
#[async_trait]
impl Step for Poll {
    const KIND: &'static str = "poll";
    type Config = Json;
    async fn run(&self, _: &StepContext, _: Json) -> Result<StepOutcome, StepError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.times {
            Ok(StepOutcome::running(Duration::from_secs(1)))
        } else {
            Ok(StepOutcome::succeeded())
        }
    }
}

/// Never finishes on its own.
struct Hang;
#[async_trait]
impl Step for Hang {
    const KIND: &'static str = "hang";
    type Config = Json;
    async fn run(&self, ctx: &StepContext, _: Json) -> Result<StepOutcome, StepError> {
        ctx.cancellation().cancelled().await;
        Err(StepError::new(
            crate::step::StepErrorKind::Cancelled,
            "cancelled",
        ))
    }
}

struct Fixture {
    runner: Runner,
    flaky_calls: Arc<AtomicU32>,
    poll_calls: Arc<AtomicU32>,
    _dir: tempfile::TempDir,
    work: crate::workdir::WorkDir,
}

fn fixture(flaky_fail: u32, poll_times: u32) -> Fixture {
    let flaky_calls = Arc::new(AtomicU32::new(0));
    let poll_calls = Arc::new(AtomicU32::new(0));
    let mut reg = StepRegistry::new();
    reg.register(Echo).unwrap();
    reg.register(Vars).unwrap();
    reg.register(Compose).unwrap();
    reg.register(Fail).unwrap();
    reg.register(Hang).unwrap();
    reg.register(Flaky {
        calls: flaky_calls.clone(),
        fail_times: flaky_fail,
    })
    .unwrap();
    reg.register(Poll {
        calls: poll_calls.clone(),
        times: poll_times,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let work = crate::workdir::WorkDir::new(dir.path()).unwrap();
    let runner = Runner::new(reg).with_options(RunnerOptions {
        min_retry_after: Duration::from_secs(10),
        error_backoff: Duration::from_secs(1),
        ..RunnerOptions::default()
    });
    Fixture {
        runner,
        flaky_calls,
        poll_calls,
        _dir: dir,
        work,
    }
}

fn steps(yaml: &str) -> Vec<PromotionStep> {
    yaml_serde::from_str(yaml).unwrap_or_else(|e| panic!("bad test yaml: {e}\n{yaml}"))
}

fn vars(pairs: &[(&str, &str)]) -> Vec<ExpressionVariable> {
    pairs
        .iter()
        .map(|(n, v)| ExpressionVariable {
            name: (*n).to_owned(),
            value: (*v).to_owned(),
        })
        .collect()
}

fn task(yaml: &str) -> PromotionTaskSpec {
    yaml_serde::from_str(yaml).unwrap_or_else(|e| panic!("bad task yaml: {e}\n{yaml}"))
}

async fn run(f: &Fixture, yaml: &str, promo_vars: &[(&str, &str)]) -> PromotionResult {
    let promo_vars = vars(promo_vars);
    let planned = inflate_steps(&steps(yaml), &promo_vars, |_| None).unwrap();
    let mut p = Promotion::new(f.work.clone(), planned);
    p.project = "demo".into();
    p.stage = "dev".into();
    p.name = "dev.01abc.deadbee".into();
    p.vars = promo_vars;
    f.runner.run(&p).await
}

fn statuses(r: &PromotionResult) -> Vec<(&str, StepExecutionStatus)> {
    r.steps
        .iter()
        .map(|s| (s.alias.as_str(), s.status))
        .collect()
}

#[tokio::test]
async fn default_aliases_and_outputs_between_steps() {
    let f = fixture(0, 0);
    let r = run(
        &f,
        r#"
- uses: echo
  config: {msg: "hello"}
- uses: echo
  as: second
  config: {again: "${{ outputs['step-1'].msg }} world", stage: "$<< ctx.stage >>", alias: "$<< ctx.meta.step.alias >>"}
- uses: echo
  config: {n: "$<< outputs.second.again | length >>"}
"#,
        &[],
    )
    .await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    assert_eq!(
        statuses(&r),
        vec![
            ("step-1", StepExecutionStatus::Succeeded),
            ("second", StepExecutionStatus::Succeeded),
            ("step-3", StepExecutionStatus::Succeeded)
        ]
    );
    assert_eq!(
        r.state["second"],
        json!({"again": "hello world", "stage": "dev", "alias": "second"})
    );
    assert_eq!(r.state["step-3"], json!({"n": 11}));
}

#[tokio::test]
async fn vars_precedence_and_visibility() {
    let f = fixture(0, 0);
    let t = task(
        r#"
vars:
- name: overlay
  value: default-overlay
- name: image
- name: fromPromo
  value: task-default
steps:
- uses: vars
  as: show
  vars:
  - name: own
    value: "$<< vars.overlay >>-own"
"#,
    );
    // Stage var, then template var referencing it.
    let promo_vars = vars(&[
        ("stageVar", "s"),
        ("templateVar", "$<< vars.stageVar >>-t"),
        ("fromPromo", "promo-wins"),
    ]);
    let planned = inflate_steps(
        &steps(
            r#"
- task: {name: t}
  vars:
  - name: image
    value: app
- uses: vars
  vars:
  - name: templateVar
    value: step-override
  - name: seesOutputs
    value: "$<< outputs['task-1::show'].own >>"
"#,
        ),
        &promo_vars,
        |r| (r.name == "t").then_some(&t),
    )
    .unwrap();
    assert_eq!(planned[0].alias, "task-1::show");
    let mut p = Promotion::new(f.work.clone(), planned);
    p.vars = promo_vars;
    let r = f.runner.run(&p).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    assert_eq!(
        r.state["task-1::show"],
        json!({
            "stageVar": "s",
            "templateVar": "s-t",
            "fromPromo": "promo-wins",
            "overlay": "default-overlay",
            "image": "app",
            "own": "default-overlay-own",
        })
    );
    assert_eq!(r.state["step-2"]["templateVar"], json!("step-override"));
    assert_eq!(
        r.state["step-2"]["seesOutputs"],
        json!("default-overlay-own")
    );
}

#[test]
fn task_inflation_rules() {
    let t = task(
        r#"
vars:
- name: required
steps:
- uses: echo
- uses: echo
  as: named
"#,
    );
    // Missing required variable.
    let e = inflate_steps(&steps("- task: {name: t}\n"), &[], |_| Some(&t)).unwrap_err();
    assert_eq!(
        e,
        InflateError::MissingVariable {
            alias: "task-1".into(),
            task: "t".into(),
            var: "required".into()
        }
    );
    // A promotion var with a value satisfies it.
    let ok = inflate_steps(
        &steps("- task: {name: t}\n  as: up\n"),
        &vars(&[("required", "x")]),
        |_| Some(&t),
    )
    .unwrap();
    let aliases: Vec<&str> = ok.iter().map(|s| s.alias.as_str()).collect();
    assert_eq!(aliases, vec!["up::step-1", "up::named"]);
    // Unknown task; cluster task lookup goes by kind.
    let e = inflate_steps(
        &steps("- task: {name: nope, kind: ClusterPromotionTask}\n"),
        &[],
        |_| None,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("ClusterPromotionTask \"nope\" not found"),
        "{e}"
    );
    // Duplicate aliases.
    let e = inflate_steps(
        &steps("- uses: echo\n  as: a\n- uses: echo\n  as: a\n"),
        &[],
        |_| None,
    )
    .unwrap_err();
    assert_eq!(e, InflateError::DuplicateAlias("a".into()));
    // Nested task references are refused.
    let nested = task("steps:\n- task: {name: t}\n");
    let e = inflate_steps(&steps("- task: {name: n}\n"), &[], |_| Some(&nested)).unwrap_err();
    assert!(matches!(e, InflateError::InvalidStep { .. }), "{e}");
}

#[tokio::test]
async fn task_outputs_and_compose_output_propagation() {
    let f = fixture(0, 0);
    let t = task(
        r#"
steps:
- uses: echo
  as: first
  config: {tag: "1.2.3"}
- uses: echo
  as: second
  config: {seen: "$<< task.outputs.first.tag >>"}
- uses: compose-output
  as: out
  config: {result: "$<< task.outputs.second.seen >>"}
"#,
    );
    let planned = inflate_steps(
        &steps("- task: {name: t}\n  as: upd\n- uses: echo\n  config: {fromTask: \"$<< outputs.upd.result >>\"}\n"),
        &[],
        |_| Some(&t),
    )
    .unwrap();
    let r = f.runner.run(&Promotion::new(f.work.clone(), planned)).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    assert_eq!(r.state["upd::second"], json!({"seen": "1.2.3"}));
    assert_eq!(r.state["upd"], json!({"result": "1.2.3"}));
    assert_eq!(r.state["step-2"], json!({"fromTask": "1.2.3"}));
}

#[tokio::test]
async fn if_and_status_functions() {
    let f = fixture(0, 0);
    let r = run(
        &f,
        r#"
- uses: echo
  if: "$<< ctx.stage == 'prod' >>"
- uses: echo
  as: runs
  if: "${{ ctx.stage == 'dev' }}"
- uses: fail
  as: boom
  config: {message: "deliberate"}
- uses: echo
  as: skipped-after-failure
- uses: echo
  as: always
  if: "$<< always() >>"
  config: {boom: "$<< status('boom') >>", failed: "$<< failure() >>"}
- uses: echo
  as: not-bool
  if: "$<< 'maybe' >>"
- uses: echo
  as: on-success
  if: "$<< success() >>"
"#,
        &[],
    )
    .await;
    assert_eq!(
        statuses(&r),
        vec![
            ("step-1", StepExecutionStatus::Skipped),
            ("runs", StepExecutionStatus::Succeeded),
            ("boom", StepExecutionStatus::Failed),
            ("skipped-after-failure", StepExecutionStatus::Skipped),
            ("always", StepExecutionStatus::Succeeded),
            ("not-bool", StepExecutionStatus::Errored),
            ("on-success", StepExecutionStatus::Skipped),
        ]
    );
    assert_eq!(r.state["always"], json!({"boom": "Failed", "failed": true}));
    // The worst counted status is Errored (the non-boolean `if`).
    assert_eq!(r.phase, PromotionPhase::Errored);
    assert!(
        r.step("not-bool")
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("boolean")
    );
}

#[tokio::test]
async fn continue_on_error_does_not_count() {
    let f = fixture(0, 0);
    let r = run(
        &f,
        r#"
- uses: fail
  continueOnError: true
  config: {message: "ignored", terminal: true}
- uses: echo
  config: {failed: "$<< failure() >>"}
"#,
        &[],
    )
    .await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    assert_eq!(r.steps[0].status, StepExecutionStatus::Errored);
    assert_eq!(r.state["step-2"], json!({"failed": false}));
}

#[tokio::test]
async fn final_phase_is_the_worst_status() {
    let f = fixture(0, 0);
    let r = run(&f, "- uses: fail\n  config: {message: m}\n", &[]).await;
    assert_eq!(r.phase, PromotionPhase::Failed);
    assert!(
        r.message
            .as_deref()
            .unwrap()
            .contains("step \"step-1\" failed: m")
    );
    let r = run(
        &f,
        "- uses: fail\n  config: {message: m, terminal: true}\n",
        &[],
    )
    .await;
    assert_eq!(r.phase, PromotionPhase::Errored);
    let r = run(&f, "- uses: echo\n  if: \"$<< false >>\"\n", &[]).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded);
}

#[tokio::test]
async fn unknown_step_kind_errors_and_execution_continues() {
    let f = fixture(0, 0);
    let r = run(
        &f,
        "- uses: yaml-updaet\n- uses: echo\n  if: \"$<< always() >>\"\n",
        &[],
    )
    .await;
    assert_eq!(r.steps[0].status, StepExecutionStatus::Errored);
    let msg = r.steps[0].message.clone().unwrap();
    assert!(msg.starts_with("unknown step \"yaml-updaet\""), "{msg}");
    assert!(msg.contains("compose-output, echo, fail"), "{msg}");
    assert_eq!(r.steps[1].status, StepExecutionStatus::Succeeded);
    assert_eq!(r.phase, PromotionPhase::Errored);
}

#[tokio::test]
async fn bad_config_is_reported_with_its_path() {
    let f = fixture(0, 0);
    let r = run(
        &f,
        "- uses: fail\n  config: {message: m, mesage: x}\n- uses: echo\n  config: {a: [1, \"$<< vars.nope >>\"]}\n  if: \"$<< always() >>\"\n",
        &[],
    )
    .await;
    let m0 = r.steps[0].message.clone().unwrap();
    assert!(m0.contains("unknown field `mesage`"), "{m0}");
    let m1 = r.steps[1].message.clone().unwrap();
    assert!(m1.starts_with("config.a[1]: undefined value"), "{m1}");
}

#[tokio::test(start_paused = true)]
async fn retries_until_the_error_threshold() {
    // Two transient errors, threshold 3: succeeds on the third attempt.
    let f = fixture(2, 0);
    let r = run(&f, "- uses: flaky\n  retry: {errorThreshold: 3}\n", &[]).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    assert_eq!(r.steps[0].attempts, 3);
    assert_eq!(r.steps[0].error_count, 2);
    assert_eq!(r.state["step-1"], json!({"calls": 3}));

    // Default threshold 1: the first error ends the step.
    let f = fixture(2, 0);
    let r = run(&f, "- uses: flaky\n", &[]).await;
    assert_eq!(r.phase, PromotionPhase::Errored);
    assert_eq!(f.flaky_calls.load(Ordering::SeqCst), 1);
    assert!(
        r.steps[0]
            .message
            .as_deref()
            .unwrap()
            .contains("met error threshold of 1")
    );

    // Terminal errors are not retried whatever the threshold.
    let f = fixture(0, 0);
    let r = run(
        &f,
        "- uses: fail\n  retry: {errorThreshold: 5}\n  config: {message: x, terminal: true}\n",
        &[],
    )
    .await;
    assert_eq!(r.steps[0].attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn running_steps_are_polled_after_retry_after() {
    let f = fixture(0, 3);
    let start = tokio::time::Instant::now();
    let r = run(&f, "- uses: poll\n", &[]).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded);
    assert_eq!(f.poll_calls.load(Ordering::SeqCst), 4);
    // retry_after 1 s is clamped to the 10 s floor: three waits.
    assert_eq!(start.elapsed().as_secs(), 30);
}

#[tokio::test(start_paused = true)]
async fn timeouts_are_checked_after_each_attempt() {
    let f = fixture(0, 1000);
    let r = run(&f, "- uses: poll\n  retry: {timeout: 35s}\n", &[]).await;
    assert_eq!(r.phase, PromotionPhase::Errored);
    let msg = r.steps[0].message.clone().unwrap();
    assert!(msg.contains("timed out after 35s"), "{msg}");
    // Attempts at 0, 10, 20, 30 and one at the deadline (35 s).
    assert_eq!(f.poll_calls.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn cancellation_aborts_the_promotion() {
    let f = fixture(0, 0);
    let planned = inflate_steps(
        &steps("- uses: echo\n- uses: hang\n- uses: echo\n  if: \"$<< always() >>\"\n"),
        &[],
        |_| None,
    )
    .unwrap();
    let p = Promotion::new(f.work.clone(), planned);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        c2.cancel();
    });
    let r = f.runner.run_with_cancel(&p, cancel).await;
    assert_eq!(r.phase, PromotionPhase::Aborted);
    assert_eq!(
        statuses(&r),
        vec![
            ("step-1", StepExecutionStatus::Succeeded),
            ("step-2", StepExecutionStatus::Aborted),
            ("step-3", StepExecutionStatus::Skipped),
        ]
    );
}

#[tokio::test]
async fn promotion_var_errors_fail_the_promotion() {
    let f = fixture(0, 0);
    let r = run(&f, "- uses: echo\n", &[("a", "$<< nope >>")]).await;
    assert_eq!(r.phase, PromotionPhase::Errored);
    assert!(r.message.as_deref().unwrap().contains("variable \"a\""));
}

#[tokio::test]
async fn results_serialise_for_display() {
    let f = fixture(0, 0);
    let r = run(&f, "- uses: echo\n  config: {a: 1}\n", &[]).await;
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["steps"][0]["status"], json!("Succeeded"));
    assert_eq!(j["steps"][0]["outputs"], json!({"a": 1}));
    let back: PromotionResult = serde_json::from_value(j).unwrap();
    assert_eq!(back, r);
}

const MANIFESTS: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: backend, namespace: demo}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/acme/backend}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: PromotionTask
metadata: {name: update-image, namespace: demo}
spec:
  vars:
  - name: overlay
  - name: image
    value: ghcr.io/acme/backend
  steps:
  - uses: echo
    as: set
    config:
      path: "./src/${{ vars.overlay }}/patches.yaml"
      tag: "${{ imageFrom(vars.image).Tag }}"
  - uses: compose-output
    as: out
    config:
      commitMessage: "Updated ${{ vars.overlay }} to ${{ task.outputs.set.tag }}"
---
apiVersion: kargo.akuity.io/v1alpha1
kind: ClusterPromotionTask
metadata: {name: announce}
spec:
  vars:
  - name: channel
    value: general
  steps:
  - uses: echo
    config: {channel: "${{ vars.channel }}", stage: "${{ ctx.stage }}"}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: demo}
spec:
  vars:
  - name: env
    value: dev
  requestedFreight:
  - origin: {kind: Warehouse, name: backend}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - task: {name: update-image}
        as: update
        vars:
        - name: overlay
          value: "applications/overlays/${{ vars.env }}"
      - task: {name: announce, kind: ClusterPromotionTask}
      - uses: echo
        as: summary
        config: {message: "${{ outputs.update.commitMessage }}"}
"#;

fn backend_freight() -> (
    crate::freight::FreightCollection,
    crate::freight::FreightReference,
) {
    use crate::freight::{Freight, FreightOrigin, Image};
    let f = Freight::new(
        FreightOrigin::warehouse("backend"),
        vec![],
        vec![Image {
            repo_url: "ghcr.io/acme/backend".into(),
            tag: "3f9a2c1d".into(),
            digest: "sha256:0123".into(),
            ..Image::default()
        }],
        vec![],
        vec![],
    );
    let r = crate::freight::FreightReference::from(&f);
    let mut c = crate::freight::FreightCollection::default();
    c.insert(r.clone());
    (c, r)
}

#[tokio::test]
async fn a_stage_loaded_from_manifests_runs_end_to_end() {
    let f = fixture(0, 0);
    let set = crate::loader::ManifestSet::from_yaml_str("demo.yaml", MANIFESTS).unwrap();
    crate::validate::validate(&set, f.runner.engine(), Some(f.runner.registry())).unwrap();
    let plan = plan_stage(&set, "demo", "dev").unwrap();
    let aliases: Vec<&str> = plan.steps.iter().map(|s| s.alias.as_str()).collect();
    assert_eq!(
        aliases,
        vec!["update::set", "update::out", "task-2::step-1", "summary"]
    );
    let (coll, target) = backend_freight();
    let p = Promotion::from_plan(&plan, f.work.clone(), coll, Some(target.clone()));
    assert!(p.name.starts_with("dev."), "{}", p.name);
    assert!(
        p.name.ends_with(&format!(".{}", target.name.short())),
        "{}",
        p.name
    );
    let r = f.runner.run(&p).await;
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    assert_eq!(
        r.state["update::set"],
        json!({"path": "./src/applications/overlays/dev/patches.yaml", "tag": "3f9a2c1d"})
    );
    assert_eq!(
        r.state["summary"]["message"],
        json!("Updated applications/overlays/dev to 3f9a2c1d")
    );
    assert_eq!(
        r.state["task-2::step-1"],
        json!({"channel": "general", "stage": "dev"})
    );
}

#[test]
fn validate_reports_every_bad_template_and_unknown_step() {
    let f = fixture(0, 0);
    let bad = MANIFESTS
        .replace(
            "${{ imageFrom(vars.image).Tag }}",
            "${{ imageFrom(vars.image).Tag",
        )
        .replace("uses: compose-output", "uses: compose-outptu")
        .replace("\"${{ vars.channel }}\"", "\"${{ all(xs, {# > 1}) }}\"");
    let set = crate::loader::ManifestSet::from_yaml_str("demo.yaml", &bad).unwrap();
    let errs =
        crate::validate::validate(&set, f.runner.engine(), Some(f.runner.registry())).unwrap_err();
    let text = errs.to_string();
    assert_eq!(errs.len(), 3, "{text}");
    assert!(
        text.contains(
            "PromotionTask demo/update-image: spec.steps[0].config.tag: unclosed expression"
        ),
        "{text}"
    );
    // The unknown step is placed at its own `uses:` line, with the nearest name.
    let uses_line = bad
        .lines()
        .position(|l| l.contains("uses: compose-outptu"))
        .unwrap()
        + 1;
    assert!(
        text.lines().any(|l| l.starts_with(&format!("demo.yaml:{uses_line}:"))
            && l.contains(
                "spec.steps[1].uses: unknown step \"compose-outptu\": did you mean \"compose-output\"?"
            )),
        "{text}"
    );
    assert!(text.contains("ClusterPromotionTask announce: spec.steps[0].config.channel: unsupported Kargo expression"), "{text}");
}

#[test]
fn plan_reports_missing_task_variables() {
    let bad = MANIFESTS.replace(
        "        vars:\n        - name: overlay\n          value: \"applications/overlays/${{ vars.env }}\"\n",
        "",
    );
    let set = crate::loader::ManifestSet::from_yaml_str("demo.yaml", &bad).unwrap();
    let e = plan_stage(&set, "demo", "dev").unwrap_err();
    assert!(
        e.to_string()
            .contains("missing value for variable \"overlay\""),
        "{e}"
    );
    assert!(matches!(
        plan_stage(&set, "demo", "nope"),
        Err(PlanError::StageNotFound { .. })
    ));
}

#[test]
fn promotion_names_sort_by_creation() {
    let a = promotion_name("Dev", "0123456789abcdef");
    std::thread::sleep(Duration::from_millis(2));
    let b = promotion_name("Dev", "0123456789abcdef");
    assert!(a < b, "{a} {b}");
    let parts: Vec<&str> = a.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "dev");
    assert_eq!(parts[1].len(), 26);
    assert_eq!(parts[2], "0123456");
}

/// Records a push when the promotion is a dry run, "pushes" otherwise.
struct Publish;
#[async_trait]
impl Step for Publish {
    const KIND: &'static str = "publish";
    type Config = Json;
    async fn run(&self, ctx: &StepContext, _: Json) -> Result<StepOutcome, StepError> {
        match ctx.dry_run() {
            Some(d) => {
                d.note(&ctx.alias, "would publish");
                Ok(StepOutcome::skipped()
                    .with_message("dry run")
                    .with_output("published", false))
            }
            None => Ok(StepOutcome::succeeded().with_output("published", true)),
        }
    }
}

#[tokio::test]
async fn dry_run_exposes_a_recorder_and_returns_what_it_recorded() {
    let mut reg = StepRegistry::new();
    reg.register(Publish).unwrap();
    reg.register(Echo).unwrap();
    let runner = Runner::new(reg);
    let dir = tempfile::tempdir().unwrap();
    let work = crate::workdir::WorkDir::new(dir.path()).unwrap();
    let yaml = r#"
- uses: publish
  as: pub
- uses: echo
  as: after
  config: {dry: "${{ ctx.meta.promotion.dryRun }}", published: "${{ outputs.pub.published }}"}
"#;
    let planned = inflate_steps(&steps(yaml), &[], |_| None).unwrap();
    let mut p = Promotion::new(work, planned);
    let real = runner.run(&p).await;
    assert_eq!(real.phase, PromotionPhase::Succeeded, "{real:#?}");
    assert_eq!(real.dry_run, None);
    assert_eq!(
        real.state["after"],
        json!({"dry": false, "published": true})
    );

    p.dry_run = true;
    let dry = runner.run(&p).await;
    assert_eq!(dry.phase, PromotionPhase::Succeeded, "{dry:#?}");
    assert_eq!(
        dry.step("pub").unwrap().status,
        StepExecutionStatus::Skipped
    );
    assert_eq!(dry.state["after"], json!({"dry": true, "published": false}));
    let log = dry.dry_run.unwrap();
    assert_eq!(log.notes.len(), 1);
    assert_eq!(log.notes[0].step, "pub");
    assert_eq!(log.notes[0].message, "would publish");
}

// ---------------------------------------------------------------------------------------
// Resuming a promotion from its recorded progress.

/// What the resume test steps did: (step kind, alias, execution id).
type CallLog = Arc<std::sync::Mutex<Vec<(&'static str, String, String)>>>;

fn log_call(log: &CallLog, kind: &'static str, ctx: &StepContext) {
    log.lock()
        .unwrap()
        .push((kind, ctx.alias.clone(), ctx.execution_id.clone()));
}

#[derive(serde::Deserialize)]
struct WriteCfg {
    path: String,
    content: String,
}

/// Local: writes a file of the work directory.
struct WriteFile(CallLog);
#[async_trait]
impl Step for WriteFile {
    const KIND: &'static str = "write";
    type Config = WriteCfg;
    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            effect: crate::step::StepEffect::Local,
            ..StepDefaults::default()
        }
    }
    async fn run(&self, ctx: &StepContext, c: WriteCfg) -> Result<StepOutcome, StepError> {
        log_call(&self.0, "write", ctx);
        std::fs::write(ctx.path(&c.path)?, &c.content)
            .map_err(|e| StepError::terminal(e.to_string()))?;
        Ok(StepOutcome::succeeded().with_output("content", c.content))
    }
}

#[derive(serde::Deserialize)]
struct SendCfg {
    read: String,
}

/// External: "sends" a file of the work directory (which must exist: a resumed run must
/// have rebuilt it).
struct SendFile(CallLog);
#[async_trait]
impl Step for SendFile {
    const KIND: &'static str = "send";
    type Config = SendCfg;
    async fn run(&self, ctx: &StepContext, c: SendCfg) -> Result<StepOutcome, StepError> {
        let content = std::fs::read_to_string(ctx.path(&c.read)?)
            .map_err(|e| StepError::terminal(format!("{}: {e}", c.read)))?;
        log_call(&self.0, "send", ctx);
        Ok(StepOutcome::succeeded().with_output("sent", content))
    }
}

/// Idempotent: marks something outside.
struct Mark(CallLog);
#[async_trait]
impl Step for Mark {
    const KIND: &'static str = "mark";
    type Config = Json;
    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            effect: crate::step::StepEffect::Idempotent,
            ..StepDefaults::default()
        }
    }
    async fn run(&self, ctx: &StepContext, _: Json) -> Result<StepOutcome, StepError> {
        log_call(&self.0, "mark", ctx);
        Ok(StepOutcome::succeeded().with_output("marked", true))
    }
}

/// Local compose-output: outputs its config, propagated to the task alias.
struct LocalCompose;
#[async_trait]
impl Step for LocalCompose {
    const KIND: &'static str = "local-compose";
    type Config = serde_json::Map<String, Json>;
    fn defaults(&self) -> StepDefaults {
        StepDefaults {
            task_output_propagation: true,
            effect: crate::step::StepEffect::Local,
            ..StepDefaults::default()
        }
    }
    async fn run(&self, _: &StepContext, c: Self::Config) -> Result<StepOutcome, StepError> {
        Ok(c.into_iter()
            .fold(StepOutcome::succeeded(), |o, (k, v)| o.with_output(k, v)))
    }
}

/// Whether a test sink refuses a record, given how many it accepted before.
type StopRule = Box<dyn Fn(&PromotionProgress, usize) -> bool + Send + Sync>;

/// Keeps what it accepts; refuses (stops the run) as `stop` says, keeping the refused
/// record or not (`keep_refused`).
struct TestSink {
    accepted: std::sync::Mutex<Vec<PromotionProgress>>,
    stop: StopRule,
    keep_refused: bool,
}

impl TestSink {
    fn new(
        keep_refused: bool,
        stop: impl Fn(&PromotionProgress, usize) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            accepted: std::sync::Mutex::new(Vec::new()),
            stop: Box::new(stop),
            keep_refused,
        }
    }
    fn last(&self) -> Option<PromotionProgress> {
        self.accepted.lock().unwrap().last().cloned()
    }
}

#[async_trait]
impl ProgressSink for TestSink {
    async fn record(&self, progress: &PromotionProgress) -> Result<(), ProgressError> {
        let mut accepted = self.accepted.lock().unwrap();
        let stop = (self.stop)(progress, accepted.len());
        if !stop || self.keep_refused {
            accepted.push(progress.clone());
        }
        if stop {
            Err(ProgressError::new("stopped by the test"))
        } else {
            Ok(())
        }
    }
}

struct ResumeFixture {
    runner: Runner,
    log: CallLog,
    planned: Vec<PlannedStep>,
}

impl ResumeFixture {
    fn new() -> Self {
        let log = CallLog::default();
        let mut reg = StepRegistry::new();
        reg.register(WriteFile(log.clone())).unwrap();
        reg.register(SendFile(log.clone())).unwrap();
        reg.register(Mark(log.clone())).unwrap();
        reg.register(LocalCompose).unwrap();
        let t = task(
            r#"
steps:
- uses: write
  as: w2
  config: {path: b.txt, content: "${{ outputs.s1.sent }}-two"}
- uses: local-compose
  as: out
  config: {result: "${{ task.outputs.w2.content }}"}
"#,
        );
        let planned = inflate_steps(
            &steps(
                r#"
- uses: write
  as: w1
  config: {path: a.txt, content: one}
- uses: send
  as: s1
  config: {read: a.txt}
- task: {name: t}
  as: upd
- uses: mark
  as: m
- uses: send
  as: s2
  config: {read: b.txt}
- uses: write
  as: final
  config: {path: c.txt, content: "${{ outputs.s1.sent }}|${{ outputs.upd.result }}|${{ outputs.s2.sent }}"}
"#,
            ),
            &[],
            |_| Some(&t),
        )
        .unwrap();
        Self {
            runner: Runner::new(reg),
            log,
            planned,
        }
    }

    /// The promotion in a new (empty) work directory: each run stands for a new process.
    fn promotion(&self) -> (tempfile::TempDir, Promotion) {
        let dir = tempfile::tempdir().unwrap();
        let work = crate::workdir::WorkDir::new(dir.path()).unwrap();
        let mut p = Promotion::new(work, self.planned.clone());
        p.name = "dev.01abc.deadbee".into();
        (dir, p)
    }

    fn calls(&self, kind: &str, alias: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, a, _)| *k == kind && a == alias)
            .map(|(_, _, id)| id.clone())
            .collect()
    }
}

const LOCAL_STEPS: [&str; 4] = ["w1", "upd::w2", "upd::out", "final"];

#[tokio::test]
async fn an_uninterrupted_resumable_run_reports_every_step_and_external_starts() {
    let f = ResumeFixture::new();
    let (dir, p) = f.promotion();
    let sink = TestSink::new(false, |_, _| false);
    let r = f
        .runner
        .run_resumable(&p, None, &sink, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    let reports = sink.accepted.lock().unwrap().clone();
    // 7 step ends, and 2 External starts (s1, s2) recorded in flight.
    assert_eq!(reports.len(), 9);
    let in_flight: Vec<&str> = reports
        .iter()
        .filter_map(|p| p.in_flight().map(|r| r.alias.as_str()))
        .collect();
    assert_eq!(in_flight, ["s1", "s2"]);
    assert_eq!(reports[8].finished(), 7);
    assert!(reports[8].resume_point().is_none());
    assert_eq!(f.calls("send", "s1"), ["dev.01abc.deadbee/s1"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("c.txt")).unwrap(),
        "one|one-two|one-two"
    );
    // The same promotion through `run` behaves the same, without a sink.
    let (_dir2, p2) = f.promotion();
    assert_eq!(f.runner.run(&p2).await.state, r.state);
}

/// Stopped after its k-th step ended (for every k), then resumed by a "new process" (a
/// new, empty work directory) from the last record: every External step ran exactly once
/// overall, the Idempotent one once, the finished Local steps were replayed, and outputs
/// (task output propagation included) are there after the resume.
#[tokio::test]
async fn a_promotion_stopped_after_any_step_resumes_without_repeating_outside_effects() {
    for k in 1..=7usize {
        let f = ResumeFixture::new();
        let (_dir1, p1) = f.promotion();
        let sink = TestSink::new(true, move |progress, _| {
            progress.in_flight().is_none() && progress.finished() == k
        });
        let first = f
            .runner
            .run_resumable(&p1, None, &sink, CancellationToken::new())
            .await;
        assert!(first.is_err(), "k={k}: the sink did not stop the run");
        let progress = sink.last().unwrap();
        assert_eq!(progress.finished(), k);
        let finished: Vec<String> = progress
            .steps
            .iter()
            .filter(|r| PromotionProgress::is_finished(r))
            .map(|r| r.alias.clone())
            .collect();
        // Through serde, as a state store keeps it.
        let progress: PromotionProgress =
            serde_json::from_value(serde_json::to_value(&progress).unwrap()).unwrap();

        let (dir2, p2) = f.promotion();
        let sink2 = TestSink::new(false, |_, _| false);
        let r = f
            .runner
            .run_resumable(&p2, Some(progress), &sink2, CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(r.phase, PromotionPhase::Succeeded, "k={k}: {r:#?}");
        assert!(
            r.steps
                .iter()
                .all(|s| s.status == StepExecutionStatus::Succeeded),
            "k={k}: {r:#?}"
        );
        for alias in ["s1", "s2"] {
            assert_eq!(
                f.calls("send", alias),
                [format!("dev.01abc.deadbee/{alias}")],
                "k={k}: {alias} must run exactly once"
            );
        }
        assert_eq!(f.calls("mark", "m").len(), 1, "k={k}");
        for alias in ["w1", "upd::w2", "final"] {
            // Replayed when finished, unless nothing was left to run (k = 7).
            let expected = if k < 7 && finished.iter().any(|a| a == alias) {
                2
            } else {
                1
            };
            assert_eq!(f.calls("write", alias).len(), expected, "k={k}: {alias}");
        }
        assert!(LOCAL_STEPS.iter().all(|a| r.step(a).is_some()));
        assert_eq!(r.state["upd"], json!({"result": "one-two"}), "k={k}");
        assert_eq!(r.state["s2"], json!({"sent": "one-two"}), "k={k}");
        if k < 7 {
            assert_eq!(
                std::fs::read_to_string(dir2.path().join("c.txt")).unwrap(),
                "one|one-two|one-two",
                "k={k}"
            );
            assert_eq!(
                sink2.last().unwrap().finished(),
                7,
                "k={k}: the resumed run reports its progress too"
            );
        } else {
            assert!(sink2.last().is_none(), "nothing was left to run");
        }
    }
}

/// A runner that dies while an External step runs leaves it recorded in flight: the
/// resumed run runs it again (it may or may not have taken effect), with the same
/// execution ID, and does not replay the finished External one.
#[tokio::test]
async fn an_external_step_in_flight_is_run_again_with_the_same_execution_id() {
    assert_eq!(
        StepDefaults::default().effect,
        crate::step::StepEffect::External,
        "steps that do not say are External"
    );
    let f = ResumeFixture::new();
    let (_dir1, p1) = f.promotion();
    // The end of s2 is never recorded: the process "died" after s2 ran.
    let sink = TestSink::new(false, |progress, _| {
        progress.in_flight().is_none()
            && progress
                .step("s2")
                .is_some_and(|r| r.status == StepExecutionStatus::Succeeded)
    });
    assert!(
        f.runner
            .run_resumable(&p1, None, &sink, CancellationToken::new())
            .await
            .is_err()
    );
    let progress = sink.last().unwrap();
    assert_eq!(progress.in_flight().map(|r| r.alias.as_str()), Some("s2"));
    assert_eq!(
        progress.resume_point().map(|r| r.alias.as_str()),
        Some("s2")
    );

    let (_dir2, p2) = f.promotion();
    let r = f
        .runner
        .run_resumable(
            &p2,
            Some(progress),
            &TestSink::new(false, |_, _| false),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.phase, PromotionPhase::Succeeded, "{r:#?}");
    assert_eq!(
        f.calls("send", "s2"),
        ["dev.01abc.deadbee/s2", "dev.01abc.deadbee/s2"]
    );
    assert_eq!(f.calls("send", "s1").len(), 1);
    assert_eq!(f.calls("mark", "m").len(), 1);
}
