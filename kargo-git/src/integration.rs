//! How a branch push integrates remote changes when the remote branch moved since the
//! checkout started (Kargo's system-level *push integration policy*, its controller's
//! `GIT_PUSH_INTEGRATION_POLICY`).

use std::fmt;

/// Kargo's push integration policy (a setting of the operator, [`GitConfig`](crate::GitConfig),
/// not of the step). Integration only happens for branch pushes that are not forced.
///
/// "Rebase is safe" follows Kargo's signature-trust matrix: every commit to replay is
/// unsigned and no signing key is configured (kargo-rs does not sign commits yet, so a
/// commit carrying a signature makes the rebase unsafe: replaying it would strip the
/// signature).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PushIntegrationPolicy {
    /// Always rebase this checkout's commits onto the new remote tip (Kargo's current
    /// default).
    #[default]
    AlwaysRebase,
    /// Rebase when it is safe, otherwise make a merge commit (Kargo's default from 1.12).
    RebaseOrMerge,
    /// Rebase when it is safe, otherwise fail the push without pushing anything.
    RebaseOrFail,
    /// Always make a merge commit of the remote tip and this checkout's head.
    AlwaysMerge,
}

impl PushIntegrationPolicy {
    /// Every policy, in Kargo's order.
    pub const ALL: [Self; 4] = [
        Self::AlwaysRebase,
        Self::RebaseOrMerge,
        Self::RebaseOrFail,
        Self::AlwaysMerge,
    ];

    /// Kargo's name of the policy (`AlwaysRebase`, `RebaseOrMerge`, `RebaseOrFail`,
    /// `AlwaysMerge`).
    pub fn name(self) -> &'static str {
        match self {
            Self::AlwaysRebase => "AlwaysRebase",
            Self::RebaseOrMerge => "RebaseOrMerge",
            Self::RebaseOrFail => "RebaseOrFail",
            Self::AlwaysMerge => "AlwaysMerge",
        }
    }

    /// Parses Kargo's name (exact spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What to do when the remote moved, given whether a rebase is safe.
    pub fn decide(self, rebase_is_safe: bool) -> Integration {
        match (self, rebase_is_safe) {
            (Self::AlwaysRebase, _) | (Self::RebaseOrMerge | Self::RebaseOrFail, true) => {
                Integration::Rebase
            }
            (Self::RebaseOrMerge, false) | (Self::AlwaysMerge, _) => Integration::Merge,
            (Self::RebaseOrFail, false) => Integration::Fail,
        }
    }
}

impl fmt::Display for PushIntegrationPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a push does with remote changes ([`PushIntegrationPolicy::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integration {
    /// Replay this checkout's commits on the remote tip.
    Rebase,
    /// Make a merge commit with this checkout's head as first parent and the remote tip
    /// as second (as `git merge` on the checkout's branch would).
    Merge,
    /// Give up: the push fails and nothing is pushed.
    Fail,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_decisions() {
        for p in PushIntegrationPolicy::ALL {
            assert_eq!(PushIntegrationPolicy::from_name(p.name()), Some(p));
        }
        assert_eq!(PushIntegrationPolicy::from_name("rebase"), None);
        use Integration::*;
        use PushIntegrationPolicy::*;
        assert_eq!(AlwaysRebase.decide(false), Rebase);
        assert_eq!(RebaseOrMerge.decide(true), Rebase);
        assert_eq!(RebaseOrMerge.decide(false), Merge);
        assert_eq!(RebaseOrFail.decide(true), Rebase);
        assert_eq!(RebaseOrFail.decide(false), Fail);
        assert_eq!(AlwaysMerge.decide(true), Merge);
        assert_eq!(PushIntegrationPolicy::default(), AlwaysRebase);
    }
}
