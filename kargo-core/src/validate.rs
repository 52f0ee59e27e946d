//! Checks a manifest set before anything runs: every template compiles, every `uses`
//! names a registered step, and every Stage's template inflates (its tasks exist and get
//! their required variables).
//!
//! ```
//! use kargo_core::expr::ExprEngine;
//! use kargo_core::loader::ManifestSet;
//! use kargo_core::validate::validate;
//!
//! let set = ManifestSet::from_yaml_str("stage.yaml", r#"
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Warehouse
//! metadata: {name: app, namespace: demo}
//! spec:
//!   subscriptions:
//!   - image: {repoURL: ghcr.io/acme/app}
//! ---
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: Stage
//! metadata: {name: dev, namespace: demo}
//! spec:
//!   requestedFreight:
//!   - origin: {kind: Warehouse, name: app}
//!     sources: {direct: true}
//!   promotionTemplate:
//!     spec:
//!       steps:
//!       - uses: compose-output
//!         config:
//!           tag: "${{ imageFrom('ghcr.io/acme/app').Tag }}"
//!           broken: "$<< vars. >>"
//! "#).unwrap();
//! let errors = validate(&set, &ExprEngine::new(), None).unwrap_err();
//! assert_eq!(errors.len(), 1);
//! assert!(errors.to_string().contains("spec.promotionTemplate.spec.steps[0].config.broken"));
//! ```

use serde_json::Value as Json;

use crate::expr::ExprEngine;
use crate::loader::{
    ManifestError, ManifestErrors, ManifestSet, NotificationResource, SourceLocation,
};
use crate::model::{
    ExpressionVariable, MessageChannelSpec, NotificationKind, PromotionStep, PromotionTaskKind,
    ResourceKind, SubscriptionSource,
};
use crate::runner::inflate_steps;
use crate::step::StepRegistry;

/// The resource being checked; errors are placed at the line of their field in it.
#[derive(Clone, Copy)]
struct Place<'a> {
    kind: ResourceKind,
    namespace: Option<&'a str>,
    name: &'a str,
}

struct Ctx<'a> {
    set: &'a ManifestSet,
    engine: &'a ExprEngine,
    registry: Option<&'a StepRegistry>,
    errors: Vec<ManifestError>,
}

impl Ctx<'_> {
    fn push(&mut self, loc: &Place<'_>, resource: &str, field: String, message: String) {
        let location = self
            .set
            .field_location(loc.kind, loc.namespace, loc.name, &field)
            .unwrap_or_else(|| SourceLocation {
                file: Default::default(),
                document: 0,
                line: None,
                column: None,
            });
        self.errors.push(ManifestError {
            location,
            resource: Some(resource.to_owned()),
            field,
            message,
        });
    }

    fn template(&mut self, loc: &Place<'_>, resource: &str, field: String, text: &str) {
        if let Err(e) = self.engine.compile(text) {
            self.push(loc, resource, field, e.to_string());
        }
    }

    fn vars(&mut self, loc: &Place<'_>, resource: &str, prefix: &str, vars: &[ExpressionVariable]) {
        for (i, v) in vars.iter().enumerate() {
            self.template(loc, resource, format!("{prefix}[{i}].value"), &v.value);
        }
    }

    fn steps(&mut self, loc: &Place<'_>, resource: &str, prefix: &str, steps: &[PromotionStep]) {
        for (i, s) in steps.iter().enumerate() {
            let p = format!("{prefix}[{i}]");
            if let Some(cond) = &s.if_expr {
                self.template(loc, resource, format!("{p}.if"), cond);
            }
            self.vars(loc, resource, &format!("{p}.vars"), &s.vars);
            if let Some(cfg) = &s.config {
                for e in self.engine.validate_json(&Json::Object(cfg.clone())) {
                    self.push(
                        loc,
                        resource,
                        format!("{p}.config.{}", e.path),
                        e.error.to_string(),
                    );
                }
            }
            if let (Some(uses), Some(reg)) = (&s.uses, self.registry)
                && reg.get(uses).is_none()
            {
                self.push(
                    loc,
                    resource,
                    format!("{p}.uses"),
                    reg.unknown_message(uses),
                );
            }
        }
    }

    fn plain(&mut self, loc: &Place<'_>, resource: &str, field: String, text: &str) {
        if text.trim().is_empty() {
            return;
        }
        if let Err(e) = self.engine.compile_kargo_expression(text) {
            self.push(loc, resource, field, e.to_string());
        }
    }
}

/// Validates every template of `set`; with a `registry`, also that every `uses` is
/// registered; and that its Secrets and ConfigMaps read
/// ([`ManifestSecrets`](crate::secret::ManifestSecrets): credential Secrets with a
/// `repoURL` and credentials, valid base64 and regular expressions). Returns all problems
/// at once.
pub fn validate(
    set: &ManifestSet,
    engine: &ExprEngine,
    registry: Option<&StepRegistry>,
) -> Result<(), ManifestErrors> {
    let mut cx = Ctx {
        set,
        engine,
        registry,
        errors: Vec::new(),
    };
    for name in set.project_names() {
        for stage in set.stages(name) {
            let sname = stage.metadata.name.as_str();
            let res = format!("Stage {name}/{sname}");
            let loc = Place {
                kind: ResourceKind::Stage,
                namespace: Some(name),
                name: sname,
            };
            cx.vars(&loc, &res, "spec.vars", &stage.spec.vars);
            if let Some(t) = &stage.spec.promotion_template {
                cx.vars(&loc, &res, "spec.promotionTemplate.spec.vars", &t.spec.vars);
                cx.steps(
                    &loc,
                    &res,
                    "spec.promotionTemplate.spec.steps",
                    &t.spec.steps,
                );
                let mut promo_vars = stage.spec.vars.clone();
                promo_vars.extend(t.spec.vars.iter().cloned());
                if let Err(e) = inflate_steps(&t.spec.steps, &promo_vars, |r| match r.kind {
                    PromotionTaskKind::ClusterPromotionTask => {
                        set.cluster_promotion_task(&r.name).map(|t| &t.spec)
                    }
                    _ => set.promotion_task(name, &r.name).map(|t| &t.spec),
                }) {
                    cx.push(
                        &loc,
                        &res,
                        "spec.promotionTemplate.spec.steps".into(),
                        e.to_string(),
                    );
                }
            }
            if let Some(v) = &stage.spec.verification {
                for (i, a) in v.args.iter().enumerate() {
                    cx.template(
                        &loc,
                        &res,
                        format!("spec.verification.args[{i}].value"),
                        &a.value,
                    );
                }
            }
        }
        for task in set.promotion_tasks(name) {
            let tname = task.metadata.name.as_str();
            let res = format!("PromotionTask {name}/{tname}");
            let loc = Place {
                kind: ResourceKind::PromotionTask,
                namespace: Some(name),
                name: tname,
            };
            cx.vars(&loc, &res, "spec.vars", &task.spec.vars);
            cx.steps(&loc, &res, "spec.steps", &task.spec.steps);
        }
        for wh in set.warehouses(name) {
            let wname = wh.metadata.name.as_str();
            let res = format!("Warehouse {name}/{wname}");
            let loc = Place {
                kind: ResourceKind::Warehouse,
                namespace: Some(name),
                name: wname,
            };
            if let Some(c) = &wh.spec.freight_creation_criteria {
                cx.plain(
                    &loc,
                    &res,
                    "spec.freightCreationCriteria.expression".into(),
                    &c.expression,
                );
            }
            for (i, sub) in wh.spec.subscriptions.iter().enumerate() {
                if let SubscriptionSource::Git(g) = &sub.source {
                    cx.plain(
                        &loc,
                        &res,
                        format!("spec.subscriptions[{i}].git.expressionFilter"),
                        &g.expression_filter,
                    );
                }
            }
        }
    }
    for task in set.cluster_promotion_tasks() {
        let tname = task.metadata.name.as_str();
        let res = format!("ClusterPromotionTask {tname}");
        let loc = Place {
            kind: ResourceKind::ClusterPromotionTask,
            namespace: None,
            name: tname,
        };
        cx.vars(&loc, &res, "spec.vars", &task.spec.vars);
        cx.steps(&loc, &res, "spec.steps", &task.spec.steps);
    }
    notifications(&mut cx);
    // The Secrets and ConfigMaps beside the resources: credentials and `secret()` data.
    if let Err(e) = crate::secret::ManifestSecrets::from_manifests(set) {
        cx.errors.extend(e.0);
    }
    if cx.errors.is_empty() {
        Ok(())
    } else {
        Err(ManifestErrors(cx.errors))
    }
}

/// A problem of a notification resource: kind, namespace, name, field, message.
type NotificationProblem = (NotificationKind, Option<String>, String, String, String);

/// The expressions of the notification kinds: a router's `when` (a bare expression),
/// `output`s and `groupingKey` (`${{ }}` templates), an HTTP channel's success and failure
/// expressions.
fn notifications(cx: &mut Ctx<'_>) {
    let engine = cx.engine;
    let template = |text: &str| engine.compile(text).err().map(|e| e.to_string());
    let expression = |text: &str| {
        if text.trim().is_empty() {
            None
        } else {
            engine
                .compile_kargo_expression(text)
                .err()
                .map(|e| e.to_string())
        }
    };
    let mut problems: Vec<NotificationProblem> = Vec::new();
    let mut channel =
        |kind: NotificationKind, ns: Option<&str>, name: &str, spec: &MessageChannelSpec| {
            if let Some(h) = &spec.http {
                for (field, text) in [
                    ("spec.http.successExpression", &h.success_expression),
                    ("spec.http.failureExpression", &h.failure_expression),
                ] {
                    if let Some(m) = expression(text) {
                        problems.push((
                            kind,
                            ns.map(str::to_owned),
                            name.to_owned(),
                            field.to_owned(),
                            m,
                        ));
                    }
                }
            }
        };
    let mut routers = Vec::new();
    for (resource, _) in cx.set.notification_resources() {
        match resource {
            NotificationResource::MessageChannel(c) => channel(
                NotificationKind::MessageChannel,
                c.metadata.namespace.as_deref(),
                &c.metadata.name,
                &c.spec,
            ),
            NotificationResource::ClusterMessageChannel(c) => channel(
                NotificationKind::ClusterMessageChannel,
                None,
                &c.metadata.name,
                &c.spec,
            ),
            NotificationResource::EventRouter(r) => routers.push(r),
        }
    }
    for r in routers {
        let mut fields = vec![
            ("spec.when".to_owned(), expression(&r.spec.when)),
            ("spec.output".to_owned(), template(&r.spec.output)),
            (
                "spec.groupingKey".to_owned(),
                template(&r.spec.grouping_key),
            ),
        ];
        for (i, c) in r.spec.channels.iter().enumerate() {
            fields.push((
                format!("spec.channels[{i}].output"),
                c.output.as_deref().and_then(template),
            ));
        }
        for (field, message) in fields {
            if let Some(m) = message {
                problems.push((
                    NotificationKind::EventRouter,
                    r.metadata.namespace.clone(),
                    r.metadata.name.clone(),
                    field,
                    m,
                ));
            }
        }
    }
    for (kind, ns, name, field, message) in problems {
        let label = match &ns {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        let location = cx
            .set
            .notification_field_location(kind, ns.as_deref(), &name, &field)
            .unwrap_or_else(|| SourceLocation {
                file: Default::default(),
                document: 0,
                line: None,
                column: None,
            });
        cx.errors.push(ManifestError {
            location,
            resource: Some(label),
            field,
            message,
        });
    }
}
