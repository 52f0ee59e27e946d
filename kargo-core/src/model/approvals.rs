//! Approval policies: how many people must approve a promotion into a Stage before it runs,
//! and who may (`ProjectConfig.spec.promotionPolicies[].approvals`; Kargo's open-source
//! edition has no such field, its commercial `wait-for-approval` step names the same
//! ideas `minApprovals` and `approvers`).
//!
//! ```yaml
//! promotionPolicies:
//! - stageSelector: {name: prod}
//!   approvals:
//!     minApprovals: 2
//!     approvers: [{user: alice}, {group: sre}]
//!     expiry: 24h
//! ```

use serde::{Deserialize, Serialize};

use super::{Duration, FieldErrors};

/// A Stage's approval policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalPolicy {
    /// How many distinct people must approve (default 1).
    #[serde(default = "one")]
    pub min_approvals: u32,
    /// Who may approve: a person (`user`) or a member of a group (`group`); empty: anyone.
    /// The person who requested the promotion never counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<Approver>,
    /// How long an approval counts (e.g. `24h`); unset: until the promotion runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<Duration>,
}

fn one() -> u32 {
    1
}

/// One rule of who may approve: exactly one of `user` and `group`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approver {
    /// A person, by the name the front end authenticates (the actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A group the person belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Approver {
    /// Whether `name`, a member of `groups`, is allowed by this rule.
    pub fn allows(&self, name: &str, groups: &[String]) -> bool {
        match (&self.user, &self.group) {
            (Some(u), None) => u == name,
            (None, Some(g)) => groups.iter().any(|x| x == g),
            _ => false,
        }
    }
}

impl ApprovalPolicy {
    /// Whether `name`, a member of `groups`, may approve under this policy.
    pub fn allows(&self, name: &str, groups: &[String]) -> bool {
        self.approvers.is_empty() || self.approvers.iter().any(|a| a.allows(name, groups))
    }

    pub(crate) fn validate(&self, errs: &mut FieldErrors, path: &str) {
        if self.min_approvals == 0 {
            errs.push(
                format!("{path}.minApprovals"),
                "must be at least 1 (leave `approvals` out for no approval)",
            );
        }
        for (i, a) in self.approvers.iter().enumerate() {
            let p = format!("{path}.approvers[{i}]");
            match (&a.user, &a.group) {
                (Some(u), None) if !u.trim().is_empty() => {}
                (None, Some(g)) if !g.trim().is_empty() => {}
                (Some(_), Some(_)) => {
                    errs.push(p, "set exactly one of `user` and `group`, not both")
                }
                _ => errs.push(
                    p,
                    "set exactly one of `user` and `group` (a non-empty name)",
                ),
            }
        }
        if let Some(e) = &self.expiry
            && e.0.is_zero()
        {
            errs.push(format!("{path}.expiry"), "must be longer than zero");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rules_and_validation() {
        let p: ApprovalPolicy = yaml_serde::from_str(
            "{minApprovals: 2, approvers: [{user: alice}, {group: sre}], expiry: 24h}",
        )
        .unwrap();
        assert!(p.allows("alice", &[]));
        assert!(p.allows("bob", &["sre".into()]));
        assert!(!p.allows("bob", &["dev".into()]));
        let mut errs = FieldErrors::default();
        p.validate(&mut errs, "spec");
        assert!(errs.0.is_empty());
        let bad: ApprovalPolicy = yaml_serde::from_str(
            "{minApprovals: 0, approvers: [{user: a, group: b}, {}], expiry: 0s}",
        )
        .unwrap();
        let mut errs = FieldErrors::default();
        bad.validate(&mut errs, "spec.promotionPolicies[0].approvals");
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.promotionPolicies[0].approvals.minApprovals",
                "spec.promotionPolicies[0].approvals.approvers[0]",
                "spec.promotionPolicies[0].approvals.approvers[1]",
                "spec.promotionPolicies[0].approvals.expiry"
            ]
        );
        let anyone: ApprovalPolicy = yaml_serde::from_str("{}").unwrap();
        assert_eq!(anyone.min_approvals, 1);
        assert!(anyone.allows("anyone", &[]));
        assert!(yaml_serde::from_str::<ApprovalPolicy>("{minApproval: 2}").is_err());
    }
}
