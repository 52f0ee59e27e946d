//! Loading Kargo manifests: a valid project, a corpus of broken manifests, round trips.

use std::path::{Path, PathBuf};

use kargo_core::loader::{ManifestError, ManifestErrors, ManifestSet};
use kargo_core::model::{
    AutoPromotionSelectionPolicy, CommitSelectionStrategy, Duration, FreightAvailabilityStrategy,
    FreightCreationPolicy, ImageSelectionStrategy, PromotionStep, PromotionStepRetry,
    PromotionTaskKind, Resource, ResourceKind, SubscriptionSource,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests")
}

fn load_valid() -> ManifestSet {
    match ManifestSet::load_dir(fixtures().join("valid")) {
        Ok(set) => set,
        Err(e) => panic!("valid fixtures failed to load:\n{e}"),
    }
}

fn file_name(e: &ManifestError) -> String {
    e.location
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn valid_project_loads_with_kargo_defaults() {
    let set = load_valid();
    assert_eq!(set.len(), 8);
    assert_eq!(set.project_names(), ["kargo-demo"]);

    let project = set.project("kargo-demo").unwrap();
    assert_eq!(
        project.metadata.annotations["kargo.akuity.io/keep-namespace"],
        "true"
    );
    assert_eq!(set.projects().count(), 1);

    let config = set.project_config("kargo-demo").unwrap();
    let policies = &config.spec.promotion_policies;
    assert_eq!(policies.len(), 2);
    assert_eq!(policies[0].stage_selector.as_ref().unwrap().name, "dev");
    assert!(policies[0].auto_promotion_enabled);
    let glob = policies[1].stage_selector.as_ref().unwrap();
    assert_eq!(glob.name, "glob:stag*");
    assert_eq!(glob.match_labels["tier"], "pre-prod");
    assert_eq!(glob.match_expressions[0].values, ["platform"]);
    assert_eq!(config.spec.webhook_receivers[0].types(), ["github"]);
    assert!(config.spec.stage_links[0].url.contains("${{ ctx.stage }}"));

    // Warehouse: explicit interval, defaults everywhere else.
    let wh = set.warehouse("kargo-demo", "app").unwrap();
    assert_eq!(wh.spec.interval, Duration::from_secs(600));
    assert_eq!(wh.spec.interval.to_string(), "10m0s");
    assert_eq!(
        wh.spec.freight_creation_policy,
        FreightCreationPolicy::Automatic
    );
    assert_eq!(wh.spec.subscriptions.len(), 3);
    let SubscriptionSource::Image(image) = &wh.spec.subscriptions[0].source else {
        panic!("expected an image subscription");
    };
    assert_eq!(image.repo_url, "ghcr.io/example/guestbook");
    assert_eq!(
        image.image_selection_strategy,
        ImageSelectionStrategy::SemVer
    );
    assert!(image.strict_semvers);
    assert_eq!(image.discovery_limit, 20);
    assert_eq!(image.platform, "linux/amd64");
    let SubscriptionSource::Chart(chart) = &wh.spec.subscriptions[1].source else {
        panic!("expected a chart subscription");
    };
    assert_eq!(
        (chart.name.as_str(), chart.discovery_limit),
        ("guestbook", 5)
    );
    let git_sub = &wh.spec.subscriptions[2];
    assert_eq!(git_sub.name.as_deref(), Some("config"));
    let SubscriptionSource::Git(git) = &git_sub.source else {
        panic!("expected a git subscription");
    };
    assert_eq!(
        git.commit_selection_strategy,
        CommitSelectionStrategy::NewestFromBranch
    );
    assert!(git.strict_semvers);
    assert_eq!(git.discovery_limit, 20);
    assert_eq!(
        git.include_paths,
        ["glob:base/**/*.yaml", "regex:^overlays/"]
    );

    // A Warehouse without an interval gets Kargo's 5m0s.
    let minimal = ManifestSet::from_yaml_str(
        "w.yaml",
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: w, namespace: p}\n\
         spec:\n  subscriptions:\n  - chart: {repoURL: 'oci://ghcr.io/x/y'}\n",
    )
    .unwrap();
    let w = minimal.warehouse("p", "w").unwrap();
    assert_eq!(w.spec.interval.to_string(), "5m0s");

    // Stages, in load order, with their sources.
    let names: Vec<_> = set
        .stages("kargo-demo")
        .map(|s| s.metadata.name.as_str())
        .collect();
    assert_eq!(names, ["dev", "staging", "prod"]);
    let dev = set.stage("kargo-demo", "dev").unwrap();
    let dev_src = &dev.spec.requested_freight[0].sources;
    assert!(dev_src.direct);
    assert_eq!(
        dev_src.availability_strategy,
        FreightAvailabilityStrategy::OneOf
    );
    assert_eq!(
        dev.spec.requested_freight[0].origin.to_string(),
        "Warehouse/app"
    );
    let staging = set.stage("kargo-demo", "staging").unwrap();
    let staging_src = &staging.spec.requested_freight[0].sources;
    assert_eq!(staging_src.stages, ["dev"]);
    assert_eq!(
        staging_src.required_soak_time,
        Some(Duration::from_secs(3600))
    );
    let staging_steps = &staging.spec.promotion_template.as_ref().unwrap().spec.steps;
    assert_eq!(
        staging_steps[1].task.as_ref().unwrap().kind,
        PromotionTaskKind::ClusterPromotionTask
    );
    assert_eq!(
        staging_steps[0].task.as_ref().unwrap().kind,
        PromotionTaskKind::PromotionTask
    );
    let prod = set.stage("kargo-demo", "prod").unwrap();
    assert_eq!(prod.spec.shard, "east");
    assert_eq!(prod.upstream_stages(), ["staging"]);
    let prod_src = &prod.spec.requested_freight[0].sources;
    assert_eq!(prod_src.required_soak_time, Some(Duration::from_secs(5400)));
    assert_eq!(
        prod_src.availability_strategy,
        FreightAvailabilityStrategy::All
    );
    assert_eq!(
        prod_src
            .auto_promotion_options
            .as_ref()
            .unwrap()
            .selection_policy,
        AutoPromotionSelectionPolicy::MatchUpstream
    );
    let template = &prod.spec.promotion_template.as_ref().unwrap().spec;
    assert_eq!(
        template.vars[0].value, "true",
        "YAML booleans are stringified"
    );
    assert_eq!(
        template.steps[0].if_expr.as_deref(),
        Some("${{ vars.approved == 'true' }}")
    );
    assert!(!template.steps[0].continue_on_error);
    let verification = prod.spec.verification.as_ref().unwrap();
    assert_eq!(verification.analysis_templates[0].name, "smoke-test");
    assert_eq!(
        verification.args[0].value,
        "https://${{ ctx.stage }}.example.com"
    );

    // Tasks: var defaults, required vars, expressions kept verbatim.
    let task = set.promotion_task("kargo-demo", "update-env").unwrap();
    let vars: Vec<_> = task
        .spec
        .vars
        .iter()
        .map(|v| (v.name.as_str(), v.value.as_str()))
        .collect();
    assert_eq!(
        vars,
        [
            ("repoURL", "https://github.com/example/guestbook-config.git"),
            ("env", ""),
            ("replicas", "3"),
        ]
    );
    let commit = &task.spec.steps[2];
    assert_eq!(commit.alias.as_deref(), Some("commit"));
    assert_eq!(
        commit.config.as_ref().unwrap()["message"],
        "${{ outputs['set-image'].commitMessage }}"
    );
    assert_eq!(
        task.spec.steps[3].retry,
        Some(PromotionStepRetry {
            timeout: Some(Duration::from_secs(120)),
            error_threshold: Some(3),
        })
    );
    let expected_first = PromotionStep {
        uses: Some("git-clone".into()),
        config: Some(
            serde_json::json!({
                "repoURL": "${{ vars.repoURL }}",
                "checkout": [{"branch": "main", "path": "./src"}],
            })
            .as_object()
            .unwrap()
            .clone(),
        ),
        ..PromotionStep::default()
    };
    assert_eq!(task.spec.steps[0], expected_first);
    let notify = set.cluster_promotion_task("notify").unwrap();
    assert_eq!(notify.spec.vars[0].value, "#deployments");
    assert_eq!(set.promotion_tasks("kargo-demo").count(), 1);
    assert_eq!(set.cluster_promotion_tasks().count(), 1);
    assert_eq!(set.warehouses("kargo-demo").count(), 1);

    // Locations: file, 1-based document (comment-only documents still count), line.
    let loc = set
        .location(ResourceKind::Project, None, "kargo-demo")
        .unwrap();
    assert_eq!((loc.document, loc.line, loc.column), (1, Some(2), Some(1)));
    let loc = set
        .location(ResourceKind::Warehouse, Some("kargo-demo"), "app")
        .unwrap();
    assert!(loc.file.ends_with("valid/10-project.yaml"));
    assert_eq!((loc.document, loc.line), (4, Some(39)));
    let loc = set
        .location(ResourceKind::Stage, Some("kargo-demo"), "prod")
        .unwrap();
    assert!(loc.file.ends_with("valid/20-pipeline.yaml"));
    assert_eq!((loc.document, loc.line), (5, Some(103)));
    let loc = set
        .location(ResourceKind::ClusterPromotionTask, None, "notify")
        .unwrap();
    assert_eq!((loc.document, loc.line), (1, Some(1)));
    assert!(
        set.location(ResourceKind::Stage, Some("other"), "prod")
            .is_none()
    );

    for (resource, _) in set.resources() {
        assert!(resource.validate().is_empty(), "{resource:?}");
    }
}

#[test]
fn round_trip_preserves_every_value() {
    let set = load_valid();
    let yaml = set.to_yaml().unwrap();
    let again = match ManifestSet::from_yaml_str("round-trip.yaml", &yaml) {
        Ok(s) => s,
        Err(e) => panic!("re-load failed:\n{e}\n---\n{yaml}"),
    };
    let first: Vec<&Resource> = set.resources().map(|(r, _)| r).collect();
    let second: Vec<&Resource> = again.resources().map(|(r, _)| r).collect();
    assert_eq!(first, second);
    // Building a set from values runs the same checks and gives the same resources.
    let rebuilt =
        ManifestSet::from_resources("memory", first.iter().map(|r| (*r).clone())).unwrap();
    let third: Vec<&Resource> = rebuilt.resources().map(|(r, _)| r).collect();
    assert_eq!(first, third);
    let mut stages: Vec<Resource> = first.iter().map(|r| (*r).clone()).collect();
    stages.retain(|r| r.kind() == ResourceKind::Stage);
    let errors = ManifestSet::from_resources("memory", stages).unwrap_err();
    assert!(
        errors
            .iter()
            .all(|e| e.field.ends_with("origin.name") || e.field.ends_with("task.name"))
    );
    // Durations are written the way Kargo writes them.
    assert!(yaml.contains("interval: 10m0s"), "{yaml}");
    assert!(yaml.contains("requiredSoakTime: 1h30m0s"), "{yaml}");
    // And a second trip is byte-stable.
    assert_eq!(again.to_yaml().unwrap(), yaml);
}

#[test]
fn exported_resources_with_status_load() {
    let text = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata:
  name: dev
  namespace: demo
  uid: 3c0f1d2e-0000-4000-8000-000000000000
  resourceVersion: "12345"
  generation: 4
  creationTimestamp: "2025-01-01T00:00:00Z"
  finalizers: [kargo.akuity.io/finalizer]
  ownerReferences:
  - apiVersion: kargo.akuity.io/v1alpha1
    kind: Project
    name: demo
    uid: 1
  managedFields:
  - manager: kubectl
    operation: Apply
  labels:
    kargo.akuity.io/shard: east
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources: {direct: true, availabilityStrategy: ""}
status:
  freightSummary: 1/1 Fulfilled
  health: {status: Healthy}
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo, generation: 1}
spec:
  subscriptions:
  - image: {repoURL: nginx}
status:
  lastFreightID: abc
"#;
    let set = ManifestSet::from_yaml_str("export.yaml", text).unwrap();
    let stage = set.stage("demo", "dev").unwrap();
    assert_eq!(stage.metadata.generation, Some(serde_json::json!(4)));
    assert_eq!(
        stage.status.as_ref().unwrap()["freightSummary"],
        "1/1 Fulfilled"
    );
    assert_eq!(
        stage.spec.requested_freight[0]
            .sources
            .availability_strategy,
        FreightAvailabilityStrategy::OneOf
    );
}

/// One broken-manifest case: what the (single) error must say.
struct Case {
    /// Fixture file or directory under `broken/`.
    fixture: &'static str,
    /// The file the error must name.
    file: &'static str,
    document: usize,
    field: &'static str,
    line: Option<usize>,
    message: &'static str,
}

const CASES: &[Case] = &[
    Case {
        fixture: "yaml-syntax.yaml",
        file: "yaml-syntax.yaml",
        document: 2,
        field: "",
        line: Some(10),
        message: "invalid YAML: mapping values are not allowed",
    },
    Case {
        fixture: "unknown-anchor.yaml",
        file: "unknown-anchor.yaml",
        document: 1,
        field: "",
        line: Some(7),
        message: "unknown anchor",
    },
    Case {
        fixture: "not-a-mapping.yaml",
        file: "not-a-mapping.yaml",
        document: 1,
        field: "",
        line: Some(2),
        message: "must be a mapping",
    },
    Case {
        fixture: "unknown-kind.yaml",
        file: "unknown-kind.yaml",
        document: 1,
        field: "kind",
        line: Some(2),
        message: "unsupported kind \"Stag\"",
    },
    Case {
        fixture: "wrong-api-version.yaml",
        file: "wrong-api-version.yaml",
        document: 2,
        field: "apiVersion",
        line: Some(6),
        message: "unsupported apiVersion \"kargo.akuity.io/v1beta1\"",
    },
    Case {
        fixture: "unknown-field.yaml",
        file: "unknown-field.yaml",
        document: 2,
        field: "spec.requestedFreight[0].sources.dirct",
        line: Some(23),
        message: "unknown field `dirct`, expected one of `direct`",
    },
    Case {
        fixture: "wrong-type.yaml",
        file: "wrong-type.yaml",
        document: 1,
        field: "spec.subscriptions[0].image.discoveryLimit",
        line: Some(10),
        message: "invalid type: string \"lots\"",
    },
    Case {
        fixture: "bad-duration.yaml",
        file: "bad-duration.yaml",
        document: 1,
        field: "spec.interval",
        line: Some(7),
        message: "expected a Go duration string",
    },
    Case {
        fixture: "bad-enum.yaml",
        file: "bad-enum.yaml",
        document: 1,
        field: "spec.subscriptions[0].git.commitSelectionStrategy",
        line: Some(10),
        message: "unknown variant `Newest`",
    },
    Case {
        fixture: "subscription-two-types.yaml",
        file: "subscription-two-types.yaml",
        document: 1,
        field: "spec.subscriptions[1]",
        line: Some(10),
        message: "subscription must have exactly one of image, chart, git or a generic type key; found: image, git",
    },
    Case {
        fixture: "generic-without-name.yaml",
        file: "generic-without-name.yaml",
        document: 1,
        field: "spec.subscriptions[0].name",
        line: Some(8),
        message: "a name is required for subscriptions of generic type \"s3-bucket\"",
    },
    Case {
        fixture: "discovery-limit.yaml",
        file: "discovery-limit.yaml",
        document: 1,
        field: "spec.subscriptions[0].git.discoveryLimit",
        line: Some(10),
        message: "between 1 and 100, got 500",
    },
    Case {
        fixture: "chart-http-no-name.yaml",
        file: "chart-http-no-name.yaml",
        document: 1,
        field: "spec.subscriptions[0].chart.name",
        line: Some(8),
        message: "is required when repoURL starts with http",
    },
    Case {
        fixture: "chart-oci-with-name.yaml",
        file: "chart-oci-with-name.yaml",
        document: 1,
        field: "spec.subscriptions[0].chart.name",
        line: Some(10),
        message: "must be empty when repoURL starts with oci://",
    },
    Case {
        fixture: "deprecated-allow-tags.yaml",
        file: "deprecated-allow-tags.yaml",
        document: 1,
        field: "spec.subscriptions[0].image.allowTags",
        line: Some(10),
        message: "keep only allowTagsRegexes",
    },
    Case {
        fixture: "deprecated-semver-constraint.yaml",
        file: "deprecated-semver-constraint.yaml",
        document: 1,
        field: "spec.subscriptions[0].image.semverConstraint",
        line: Some(10),
        message: "use constraint instead",
    },
    Case {
        fixture: "bad-regex.yaml",
        file: "bad-regex.yaml",
        document: 1,
        field: "spec.subscriptions[0].image.allowTagsRegexes[0]",
        line: Some(11),
        message: "invalid regular expression",
    },
    Case {
        fixture: "bad-branch.yaml",
        file: "bad-branch.yaml",
        document: 1,
        field: "spec.subscriptions[0].git.branch",
        line: Some(10),
        message: "invalid branch name \"feature/\"",
    },
    Case {
        fixture: "duplicate-repo.yaml",
        file: "duplicate-repo.yaml",
        document: 1,
        field: "spec.subscriptions[1].image.repoURL",
        line: Some(11),
        message: "spec.subscriptions[0] already subscribes to this image repository",
    },
    Case {
        fixture: "duplicate-subscription-name.yaml",
        file: "duplicate-subscription-name.yaml",
        document: 1,
        field: "spec.subscriptions[1].name",
        line: Some(11),
        message: "subscription name \"main\" already used",
    },
    Case {
        fixture: "step-uses-and-task.yaml",
        file: "step-uses-and-task.yaml",
        document: 2,
        field: "spec.promotionTemplate.spec.steps[1]",
        line: Some(24),
        message: "exactly one of uses or task",
    },
    Case {
        fixture: "task-step-continue-on-error.yaml",
        file: "task-step-continue-on-error.yaml",
        document: 2,
        field: "spec.promotionTemplate.spec.steps[0].continueOnError",
        line: Some(26),
        message: "a step referencing a task cannot set continueOnError",
    },
    Case {
        fixture: "duplicate-alias.yaml",
        file: "duplicate-alias.yaml",
        document: 2,
        field: "spec.promotionTemplate.spec.steps[2].as",
        line: Some(28),
        message: "duplicates that of spec.promotionTemplate.spec.steps[0]",
    },
    Case {
        fixture: "reserved-alias.yaml",
        file: "reserved-alias.yaml",
        document: 1,
        field: "spec.steps[0].as",
        line: Some(9),
        message: "step alias \"step-1\" is reserved",
    },
    Case {
        fixture: "nested-task.yaml",
        file: "nested-task.yaml",
        document: 1,
        field: "spec.steps[1].task",
        line: Some(9),
        message: "must not reference another task",
    },
    Case {
        fixture: "bad-var-name.yaml",
        file: "bad-var-name.yaml",
        document: 2,
        field: "spec.vars[1].name",
        line: Some(20),
        message: "invalid variable name \"2nd-env\"",
    },
    Case {
        fixture: "no-sources.yaml",
        file: "no-sources.yaml",
        document: 2,
        field: "spec.requestedFreight[0].sources",
        line: Some(21),
        message: "at least one source is required",
    },
    Case {
        fixture: "match-upstream-two-stages.yaml",
        file: "match-upstream-two-stages.yaml",
        document: 3,
        field: "spec.requestedFreight[0].sources.autoPromotionOptions.selectionPolicy",
        line: Some(32),
        message: "MatchUpstream requires exactly one upstream Stage, found 2",
    },
    Case {
        fixture: "project-config-name.yaml",
        file: "project-config-name.yaml",
        document: 1,
        field: "metadata.name",
        line: Some(4),
        message: "must be named like its Project",
    },
    Case {
        fixture: "project-legacy-spec.yaml",
        file: "project-legacy-spec.yaml",
        document: 1,
        field: "spec",
        line: Some(5),
        message: "Project.spec was removed in Kargo v1.7",
    },
    Case {
        fixture: "policy-stage-and-selector.yaml",
        file: "policy-stage-and-selector.yaml",
        document: 1,
        field: "spec.promotionPolicies[1]",
        line: Some(10),
        message: "exactly one of stage (deprecated) or stageSelector",
    },
    Case {
        fixture: "bad-selector-pattern.yaml",
        file: "bad-selector-pattern.yaml",
        document: 1,
        field: "spec.promotionPolicies[0].stageSelector.name",
        line: Some(9),
        message: "invalid regular expression \"^(dev|qa\"",
    },
    Case {
        fixture: "missing-namespace.yaml",
        file: "missing-namespace.yaml",
        document: 1,
        field: "metadata.namespace",
        line: Some(3),
        message: "metadata.namespace is required",
    },
    Case {
        fixture: "missing-project.yaml",
        file: "missing-project.yaml",
        document: 2,
        field: "metadata.namespace",
        line: Some(10),
        message: "Project \"other\" is not defined in this manifest set",
    },
    Case {
        fixture: "missing-warehouse.yaml",
        file: "missing-warehouse.yaml",
        document: 1,
        field: "spec.requestedFreight[0].origin.name",
        line: Some(10),
        message: "Warehouse \"ap\" not found in Project \"demo\" (known Warehouses: app)",
    },
    Case {
        fixture: "missing-upstream.yaml",
        file: "missing-upstream.yaml",
        document: 2,
        field: "spec.requestedFreight[0].sources.stages[0]",
        line: Some(21),
        message: "upstream Stage \"test\" not found",
    },
    Case {
        fixture: "missing-task.yaml",
        file: "missing-task.yaml",
        document: 2,
        field: "spec.promotionTemplate.spec.steps[1].task.name",
        line: Some(25),
        message: "PromotionTask \"deploy\" not found in Project \"demo\"",
    },
    Case {
        fixture: "missing-cluster-task.yaml",
        file: "missing-cluster-task.yaml",
        document: 2,
        field: "spec.promotionTemplate.spec.steps[0].task.name",
        line: Some(23),
        message: "ClusterPromotionTask \"deploy\" not found",
    },
    Case {
        fixture: "cycle.yaml",
        file: "cycle.yaml",
        document: 2,
        field: "spec.requestedFreight[0].sources.stages[0]",
        line: Some(21),
        message: "cycle through sources.stages: a -> c -> b -> a",
    },
    Case {
        fixture: "duplicate-stage",
        file: "b.yaml",
        document: 1,
        field: "metadata.name",
        line: Some(5),
        message: "duplicate Stage demo/dev: first defined at",
    },
];

fn load_case(case: &Case) -> ManifestErrors {
    let path = fixtures().join("broken").join(case.fixture);
    let result = if path.is_dir() {
        ManifestSet::load_dir(&path)
    } else {
        let text = std::fs::read_to_string(&path).expect("fixture is readable");
        ManifestSet::from_files([(path, text)])
    };
    match result {
        Ok(_) => panic!("{}: loaded without errors", case.fixture),
        Err(e) => e,
    }
}

#[test]
fn broken_corpus_reports_file_document_field_and_line() {
    assert!(CASES.len() >= 20);
    let on_disk = std::fs::read_dir(fixtures().join("broken"))
        .unwrap()
        .count();
    assert_eq!(on_disk, CASES.len(), "every broken fixture has a case");
    let mut failures = Vec::new();
    for case in CASES {
        let errors = load_case(case);
        let ok = errors.len() == 1 && {
            let e = &errors.0[0];
            file_name(e) == case.file
                && e.location.document == case.document
                && e.field == case.field
                && e.location.line == case.line
                && e.location.column.is_some() == case.line.is_some()
                && e.message.contains(case.message)
        };
        if !ok {
            failures.push(format!("{}:\n{errors}", case.fixture));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn duplicate_names_both_locations() {
    let case = CASES
        .iter()
        .find(|c| c.fixture == "duplicate-stage")
        .unwrap();
    let errors = load_case(case);
    let msg = &errors.0[0].message;
    assert!(msg.contains("a.yaml:11:1 (document 2)"), "{msg}");
    assert!(msg.contains("b.yaml:2:1 (document 1)"), "{msg}");
}

#[test]
fn display_is_one_line_per_error() {
    let case = CASES
        .iter()
        .find(|c| c.fixture == "unknown-field.yaml")
        .unwrap();
    let errors = load_case(case);
    let shown = errors.to_string();
    assert!(
        shown.ends_with(
            "unknown-field.yaml:23:7: document 2: Stage demo/dev: \
             spec.requestedFreight[0].sources.dirct: unknown field `dirct`, expected one of \
             `direct`, `stages`, `requiredSoakTime`, `availabilityStrategy`, \
             `autoPromotionOptions`"
        ),
        "{shown}"
    );
}

#[test]
fn three_independent_problems_in_two_files_are_all_reported() {
    let a = r#"apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: demo}
spec:
  interval: 1x
  subscriptions:
  - image: {repoURL: ghcr.io/example/app}
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
      - uses: git-clone
        as: step-2
"#;
    let b = r#"apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: prod, namespace: demo}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app}
    sources:
      stages: [uat]
"#;
    let errors = ManifestSet::from_files([
        (PathBuf::from("a.yaml"), a.to_owned()),
        (PathBuf::from("b.yaml"), b.to_owned()),
    ])
    .unwrap_err();
    let got: Vec<_> = errors
        .iter()
        .map(|e| {
            (
                file_name(e),
                e.location.document,
                e.field.as_str(),
                e.location.line,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a.yaml".to_owned(), 1, "spec.interval", Some(5)),
            (
                "a.yaml".to_owned(),
                2,
                "spec.promotionTemplate.spec.steps[0].as",
                Some(20)
            ),
            (
                "b.yaml".to_owned(),
                1,
                "spec.requestedFreight[0].sources.stages[0]",
                Some(8)
            ),
        ],
        "{errors}"
    );
    // The Warehouse failed to parse, but it was declared: the Stages' references to it are
    // not reported as missing.
    assert_eq!(errors.to_string().lines().count(), 3);
}

#[test]
fn empty_and_comment_only_documents_are_skipped() {
    let set =
        ManifestSet::from_yaml_str("empty.yaml", "# nothing\n---\n---\n# still nothing\n").unwrap();
    assert!(set.is_empty());
    let set = ManifestSet::from_yaml_str("empty.yaml", "").unwrap();
    assert!(set.is_empty());
}

#[test]
fn load_dir_errors() {
    let missing = ManifestSet::load_dir(fixtures().join("does-not-exist")).unwrap_err();
    assert!(
        missing.0[0]
            .message
            .contains("cannot read manifest directory")
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
    let empty = ManifestSet::load_dir(dir.path()).unwrap_err();
    assert!(empty.0[0].message.contains("no *.yaml or *.yml files"));
    std::fs::create_dir(dir.path().join(".git")).unwrap();
    std::fs::write(dir.path().join(".git/junk.yaml"), "kind: Junk").unwrap();
    std::fs::create_dir(dir.path().join("nested")).unwrap();
    std::fs::write(
        dir.path().join("nested/p.yml"),
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: p}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.yaml"), [0xff, 0xfe]).unwrap();
    let errors = ManifestSet::load_dir(dir.path()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    assert!(errors.0[0].message.contains("not valid UTF-8"));
    std::fs::remove_file(dir.path().join("bad.yaml")).unwrap();
    let set = ManifestSet::load_dir(dir.path()).unwrap();
    assert!(set.project("p").is_some());
}

#[test]
fn never_panics_on_odd_input() {
    let deep_seq = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_map = "{a: ".repeat(5000);
    let inputs = [
        "---",
        "- a",
        ": :",
        "[",
        "*a",
        "&a [*a]",
        "a: &x [1, *x]",
        "!!binary foo",
        "kind: Stage\n",
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: []\nspec: 1\n",
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Stage\nmetadata: {name: x, namespace: y}\nspec: {requestedFreight: [{origin: {kind: Warehouse, name: w}, sources: {stages: [x, x, '']}}]}\n",
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: x, namespace: y}\nspec: {interval: 99999999999999999999h, subscriptions: [{}, {name: 1}, {x: {config: []}}]}\n",
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {name: x}\n---\n\t- bad",
        "key: [unclosed\n---\nkind: Project\n",
        "? [complex, key]\n: value\n",
        "{1: a, true: b, ~: c}",
        &deep_seq,
        &deep_map,
    ];
    for input in inputs {
        let result = std::panic::catch_unwind(|| ManifestSet::from_yaml_str("odd.yaml", input));
        assert!(
            result.is_ok(),
            "panicked on {:?}",
            &input[..input.len().min(60)]
        );
    }
}

#[test]
fn deprecated_tag_fields_are_accepted_alone() {
    let w: kargo_core::model::Warehouse = yaml_serde::from_str(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Warehouse\nmetadata: {name: app, namespace: demo}\nspec:\n  subscriptions:\n  - image:\n      repoURL: ghcr.io/example/app\n      allowTags: ^v1\\.\n      ignoreTags: [v1.0.0]\n  - git:\n      repoURL: https://git.example/app.git\n      commitSelectionStrategy: SemVer\n      allowTags: '('\n",
    )
    .unwrap();
    let errs = w.validate();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].path, "spec.subscriptions[1].git.allowTags");
    assert!(
        errs[0].message.contains("invalid regular expression"),
        "{errs:?}"
    );
}

/// A directory as `kubectl apply -f` takes it: Kargo's resources beside a Secret, a
/// ConfigMap, an Argo CD Application and an Argo Rollouts AnalysisTemplate. Secrets,
/// ConfigMaps and AnalysisTemplates are kept (the project uses them); the others are
/// skipped, each named with its kind, name and place; a Kargo-group document of an
/// unknown kind is still an error.
#[test]
fn other_apis_documents_are_skipped_with_a_notice() {
    let yaml = "\
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: v1
kind: Secret
metadata:
  name: repo-creds
  namespace: demo
  labels: {kargo.akuity.io/cred-type: git}
stringData: {repoURL: 'https://git.example/x.git', password: hunter2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo}
---
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: demo-dev, namespace: argocd}
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: smoke, namespace: demo}
---
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata: {name: shared, namespace: ignored}
";
    let set = ManifestSet::from_yaml_str("dir/all.yaml", yaml).unwrap();
    assert_eq!(set.len(), 1, "only the Project is a Kargo resource");
    let skipped: Vec<(String, Option<String>, Option<usize>, usize)> = set
        .skipped()
        .iter()
        .map(|s| {
            (
                s.kind.clone(),
                s.name.clone(),
                s.location.line,
                s.location.document,
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [(
            "Application".to_owned(),
            Some("demo-dev".to_owned()),
            Some(17),
            4
        )]
    );
    let notice = set.skipped()[0].to_string();
    assert_eq!(
        notice,
        "skipped Application demo-dev (argoproj.io/v1alpha1) at dir/all.yaml:17:1 (document 4): \
         not a Kargo resource"
    );
    let kept: Vec<String> = set.foreign_documents().iter().map(|d| d.label()).collect();
    assert_eq!(
        kept,
        [
            "Secret demo/repo-creds",
            "ConfigMap demo/settings",
            "AnalysisTemplate demo/smoke",
            "ClusterAnalysisTemplate shared"
        ]
    );
    let secret = set.foreign("Secret", Some("demo"), "repo-creds").unwrap();
    assert_eq!(secret.location.line, Some(5));
    assert_eq!(secret.label_value("kargo.akuity.io/cred-type"), Some("git"));
    assert_eq!(secret.value["stringData"]["password"], "hunter2");
    assert!(
        set.foreign("ClusterAnalysisTemplate", None, "shared")
            .is_some()
    );

    let twice = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: demo}\n---\n\
                 apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: demo}\n";
    let errors = ManifestSet::from_yaml_str("twice.yaml", twice).unwrap_err();
    assert!(
        errors.to_string().contains("duplicate ConfigMap demo/a"),
        "{errors}"
    );

    let typo =
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Stag\nmetadata: {name: x, namespace: demo}\n";
    let errors = ManifestSet::from_yaml_str("typo.yaml", typo).unwrap_err();
    assert!(
        errors.to_string().contains("unsupported kind \"Stag\""),
        "{errors}"
    );
}

/// A mapping that repeats a key loads with the last value, as `kubectl apply` takes it,
/// and a warning names the file, the line of the last occurrence, the resource and the
/// key path; a repeat inside a flow mapping and in a Stage's step config too.
#[test]
fn repeated_keys_take_the_last_value_with_a_warning() {
    let yaml = "\
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata:
  name: demo
  name: other
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Stage
metadata: {name: dev, namespace: other}
spec:
  requestedFreight:
  - origin: {kind: Warehouse, name: app, kind: Warehouse}
    sources: {direct: true}
  promotionTemplate:
    spec:
      steps:
      - uses: git-clone
        config:
          repoURL: https://git.example/a.git
          repoURL: https://git.example/b.git
---
apiVersion: kargo.akuity.io/v1alpha1
kind: Warehouse
metadata: {name: app, namespace: other}
spec:
  subscriptions:
  - image: {repoURL: ghcr.io/example/app}
";
    let set = ManifestSet::from_yaml_str("dir/repeat.yaml", yaml).unwrap();
    assert!(set.project("other").is_some(), "the last name wins");
    assert!(set.project("demo").is_none());
    let stage = set.stage("other", "dev").unwrap();
    let config = stage.spec.promotion_template.as_ref().unwrap().spec.steps[0]
        .config
        .as_ref()
        .unwrap();
    assert_eq!(config["repoURL"], "https://git.example/b.git");
    let warnings: Vec<String> = set.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "dir/repeat.yaml:5:3: document 1: Project other: metadata.name: the key \"name\" \
             appears 2 times in this mapping: the last value is used, as kubectl apply does",
            "dir/repeat.yaml:12:42: document 2: Stage other/dev: \
             spec.requestedFreight[0].origin.kind: the key \"kind\" appears 2 times in this \
             mapping: the last value is used, as kubectl apply does",
            "dir/repeat.yaml:20:11: document 2: Stage other/dev: \
             spec.promotionTemplate.spec.steps[0].config.repoURL: the key \"repoURL\" appears 2 \
             times in this mapping: the last value is used, as kubectl apply does",
        ]
    );
}

/// Kargo's ClusterConfig: one, named `cluster`, cluster-scoped; its receivers, git client
/// and promotion windows (with `projectSelector`) load; its admission rules are enforced.
#[test]
fn cluster_config_loads_and_is_checked() {
    let good = "\
apiVersion: kargo.akuity.io/v1alpha1
kind: ClusterConfig
metadata: {name: cluster}
spec:
  gitClient: {name: Kargo Bot, email: bot@example.com}
  webhookReceivers:
  - name: org-github
    github: {secretRef: {name: org-gh}}
  stageLinks:
  - {title: Logs, url: 'https://logs.example.com/${{ ctx.stage }}'}
  promotionWindows:
  - name: freeze
    kind: Deny
    rrule: FREQ=WEEKLY;BYDAY=FR
    dtstart: 20260101T170000Z
    dtend: 20260101T235959Z
    projectSelector: {matchLabels: {tier: prod}}
";
    let set = ManifestSet::from_yaml_str("cluster.yaml", good).unwrap();
    let cluster = set.cluster_config().unwrap();
    assert_eq!(cluster.spec.webhook_receivers[0].name, "org-github");
    assert_eq!(
        cluster.spec.git_client.as_ref().unwrap().email,
        "bot@example.com"
    );
    assert!(set.project_names().is_empty(), "cluster-scoped");

    let bad = good
        .replace("{name: cluster}", "{name: other, namespace: demo}")
        .replace("bot@example.com}", "bot}\n  # signing\n")
        .replace(
            "gitClient: {name: Kargo Bot, email: bot}",
            "gitClient: {name: Kargo Bot, email: bot, signingKeySecret: {name: gpg}}",
        );
    let errors = ManifestSet::from_yaml_str("cluster.yaml", &bad)
        .unwrap_err()
        .to_string();
    for wanted in [
        "ClusterConfig other: metadata.name: a ClusterConfig must be named \"cluster\"",
        "spec.gitClient.email: \"bot\" is not an email address",
        "spec.gitClient.signingKeySecret: commit signing is not supported yet",
    ] {
        assert!(errors.contains(wanted), "{wanted}\n{errors}");
    }
}
