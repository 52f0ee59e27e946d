//! Deprecated fields a resource still uses: they work, and the loader warns about each
//! with its place so the user can move to the field that replaces it.

use super::{FieldError, PromotionStep, Resource, SubscriptionSource};

/// Deprecated step config fields: `git-commit`'s `author` (set it on `git-clone`).
fn step_deprecations(steps: &[PromotionStep], prefix: &str, found: &mut Vec<FieldError>) {
    for (i, step) in steps.iter().enumerate() {
        let author = step
            .config
            .as_ref()
            .is_some_and(|c| c.contains_key("author"));
        if step.uses.as_deref() == Some("git-commit") && author {
            found.push(FieldError {
                path: format!("{prefix}[{i}].config.author"),
                message: "git-commit's author is deprecated: set author on git-clone".to_owned(),
            });
        }
    }
}

impl Resource {
    /// Each deprecated field this resource sets, with what replaces it.
    pub fn deprecations(&self) -> Vec<FieldError> {
        let mut found = Vec::new();
        let mut push = |path: String, message: &str| {
            found.push(FieldError {
                path,
                message: message.to_owned(),
            })
        };
        match self {
            Resource::Warehouse(w) => {
                for (i, sub) in w.spec.subscriptions.iter().enumerate() {
                    let (allow, ignore) = match &sub.source {
                        SubscriptionSource::Image(s) => {
                            (s.allow_tags.is_some(), s.ignore_tags.is_some())
                        }
                        SubscriptionSource::Git(s) => {
                            (s.allow_tags.is_some(), s.ignore_tags.is_some())
                        }
                        _ => (false, false),
                    };
                    let p = format!("spec.subscriptions[{i}].{}", sub.source.type_key());
                    if allow {
                        push(
                            format!("{p}.allowTags"),
                            "allowTags is deprecated: use allowTagsRegexes (a list of regular \
                             expressions)",
                        );
                    }
                    if ignore {
                        push(
                            format!("{p}.ignoreTags"),
                            "ignoreTags is deprecated: use ignoreTagsRegexes (escape literal \
                             tags, e.g. ^1\\.0\\.0$)",
                        );
                    }
                }
            }
            Resource::ProjectConfig(c) => {
                for (i, policy) in c.spec.promotion_policies.iter().enumerate() {
                    if policy.stage.is_some() {
                        push(
                            format!("spec.promotionPolicies[{i}].stage"),
                            "stage is deprecated: use stageSelector: {name: <stage>}",
                        );
                    }
                }
            }
            Resource::Stage(st) => {
                if let Some(t) = &st.spec.promotion_template {
                    step_deprecations(
                        &t.spec.steps,
                        "spec.promotionTemplate.spec.steps",
                        &mut found,
                    );
                }
            }
            Resource::PromotionTask(t) => {
                step_deprecations(&t.spec.steps, "spec.steps", &mut found)
            }
            Resource::ClusterPromotionTask(t) => {
                step_deprecations(&t.spec.steps, "spec.steps", &mut found)
            }
            _ => {}
        }
        found
    }
}
