//! Who may do what through the HTTP API and the UI: bearer tokens from a file, stored as
//! SHA-256 hashes, each with roles scoped by Project and Stage globs.
//!
//! Kargo's Project roles carry over: a **viewer** reads; a **promoter** also promotes,
//! approves, rolls back, aborts and re-verifies, and refreshes Warehouses; an **admin**
//! also holds and resumes auto-promotion. A role applies to the Projects its `projects`
//! globs match (default: all) and, for actions on a Stage, to the Stages its `stages` globs
//! match (default: all), so a promoter of `dev-*` cannot promote `prod`.
//!
//! ```yaml
//! tokens:
//! - name: alice                 # the actor recorded for her actions
//!   sha256: 6b3a55e0261b0304143f805a24924d0c1c44524821305f31d9277843b8a10f4e
//!   roles:
//!   - {role: promoter, projects: [shop], stages: ["dev-*", "qa"]}
//!   - {role: viewer}
//! ```
//!
//! A token is a secret: the file holds only its hash (`sha256sum` of the token without a
//! trailing newline, or [`hash_token`]), and tokens are compared in constant time.
//!
//! ```
//! use kargo::server::access::{AccessTable, Action, hash_token};
//!
//! let file = format!(
//!     "tokens:\n- name: alice\n  sha256: {}\n  roles:\n  - {{role: promoter, stages: ['dev-*']}}\n",
//!     hash_token("s3cret-token"),
//! );
//! let table = AccessTable::from_yaml_str("tokens.yaml", &file).unwrap();
//! let alice = table.authenticate("s3cret-token").unwrap();
//! assert_eq!(alice.name(), "alice");
//! assert!(alice.may(Action::Promote, "shop", Some("dev-eu")));
//! assert!(!alice.may(Action::Promote, "shop", Some("prod")));
//! assert!(table.authenticate("wrong").is_none());
//! ```

use std::fmt;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A role, as Kargo names its Project roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads, promotes, approves, rolls back, aborts, re-verifies, refreshes.
    Promoter,
    /// Everything, including holding and resuming auto-promotion.
    Admin,
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read pages and API resources.
    View,
    /// Promote Freight to a Stage (also re-promote).
    Promote,
    /// Approve Freight for a Stage.
    Approve,
    /// Roll a Stage back to earlier Freight.
    Rollback,
    /// Abort a running promotion.
    Abort,
    /// Verify a Stage's Freight again.
    Reverify,
    /// Refresh a Warehouse.
    Refresh,
    /// Hold or resume a Stage's auto-promotion.
    Hold,
}

impl Action {
    /// The least role that may take this action.
    pub fn least_role(self) -> Role {
        match self {
            Action::View => Role::Viewer,
            Action::Promote
            | Action::Approve
            | Action::Rollback
            | Action::Abort
            | Action::Reverify
            | Action::Refresh => Role::Promoter,
            Action::Hold => Role::Admin,
        }
    }
}

/// A token file that cannot be used: where and why (never a token or a hash).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct AccessTableError {
    /// The file.
    pub origin: String,
    /// What is wrong, with the entry's index and key path.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    tokens: Vec<FileToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToken {
    name: String,
    sha256: String,
    #[serde(default)]
    roles: Vec<FileRole>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRole {
    role: Role,
    #[serde(default)]
    projects: Vec<String>,
    #[serde(default)]
    stages: Vec<String>,
}

/// One role grant: the role and where it applies.
#[derive(Clone)]
struct Grant {
    role: Role,
    projects: Vec<GlobMatcher>,
    stages: Vec<GlobMatcher>,
}

fn any_matches(globs: &[GlobMatcher], name: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| g.is_match(name))
}

/// A caller the table knows: its name and its grants.
#[derive(Clone)]
pub struct Principal {
    name: String,
    grants: Vec<Grant>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("name", &self.name)
            .field("grants", &self.grants.len())
            .finish()
    }
}

impl Principal {
    /// The caller of an insecure server started without tokens: `anonymous`, admin of
    /// every Project and Stage. Only for a server on a loopback address.
    pub fn anonymous_admin() -> Self {
        Self {
            name: "anonymous".to_owned(),
            grants: vec![Grant {
                role: Role::Admin,
                projects: Vec::new(),
                stages: Vec::new(),
            }],
        }
    }

    /// The name recorded as the actor of this caller's actions.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this caller may take `action` in `project` (on `stage`, for actions on a
    /// Stage; `None` for Project-wide reads and Warehouse refreshes).
    pub fn may(&self, action: Action, project: &str, stage: Option<&str>) -> bool {
        self.grants.iter().any(|g| {
            g.role >= action.least_role()
                && any_matches(&g.projects, project)
                && stage.is_none_or(|s| any_matches(&g.stages, s))
        })
    }

    /// The roles this caller holds on `stage` of `project` (`viewer`, `promoter`,
    /// `admin`), each once: what approval policies see as the caller's groups.
    pub fn roles_on(&self, project: &str, stage: &str) -> Vec<String> {
        let mut roles: Vec<String> = self
            .grants
            .iter()
            .filter(|g| any_matches(&g.projects, project) && any_matches(&g.stages, stage))
            .map(|g| {
                match g.role {
                    Role::Viewer => "viewer",
                    Role::Promoter => "promoter",
                    Role::Admin => "admin",
                }
                .to_owned()
            })
            .collect();
        roles.sort();
        roles.dedup();
        roles
    }
}

#[derive(Clone)]
struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

/// The tokens the server accepts (see the module documentation).
#[derive(Clone, Default)]
pub struct AccessTable {
    entries: Vec<Entry>,
}

impl fmt::Debug for AccessTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|e| e.principal.name()).collect();
        f.debug_struct("AccessTable")
            .field("tokens", &names)
            .finish()
    }
}

/// The SHA-256 of `token`, in lowercase hex: what the token file holds.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn globs(
    origin: &str,
    at: &str,
    patterns: &[String],
) -> Result<Vec<GlobMatcher>, AccessTableError> {
    patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| AccessTableError {
                    origin: origin.to_owned(),
                    message: format!("{at}[{i}]: {p:?} is not a glob: {e}"),
                })
        })
        .collect()
}

impl AccessTable {
    /// Reads a token file's text; `origin` names it in errors. Every entry needs a name, a
    /// 64-digit hex `sha256` and at least one role; names and hashes are unique.
    pub fn from_yaml_str(origin: &str, text: &str) -> Result<Self, AccessTableError> {
        let err = |message: String| AccessTableError {
            origin: origin.to_owned(),
            message,
        };
        let doc: FileDoc = yaml_serde::from_str(text).map_err(|e| {
            // The parser's message can quote a value: keep only where and what kind.
            let at = e
                .location()
                .map(|l| format!("line {}: ", l.line()))
                .unwrap_or_default();
            err(format!(
                "{at}not a token file (tokens: [{{name, sha256, roles: [{{role, projects, stages}}]}}], roles viewer|promoter|admin)"
            ))
        })?;
        let mut entries: Vec<Entry> = Vec::new();
        for (i, t) in doc.tokens.iter().enumerate() {
            let at = format!("tokens[{i}]");
            if t.name.trim().is_empty() {
                return Err(err(format!("{at}.name: must not be empty")));
            }
            let hash = parse_hex(&t.sha256).ok_or_else(|| {
                err(format!(
                    "{at}.sha256: expected the token's SHA-256 as 64 hex digits (the file holds hashes, never tokens)"
                ))
            })?;
            if t.roles.is_empty() {
                return Err(err(format!("{at}.roles: at least one role is required")));
            }
            if let Some(other) = entries.iter().find(|e| e.principal.name == t.name) {
                return Err(err(format!(
                    "{at}.name: {:?} is already the name of another token",
                    other.principal.name
                )));
            }
            if entries.iter().any(|e| e.hash == hash) {
                return Err(err(format!("{at}.sha256: the same token is listed twice")));
            }
            let mut grants = Vec::new();
            for (j, r) in t.roles.iter().enumerate() {
                grants.push(Grant {
                    role: r.role,
                    projects: globs(origin, &format!("{at}.roles[{j}].projects"), &r.projects)?,
                    stages: globs(origin, &format!("{at}.roles[{j}].stages"), &r.stages)?,
                });
            }
            entries.push(Entry {
                hash,
                principal: Principal {
                    name: t.name.clone(),
                    grants,
                },
            });
        }
        Ok(Self { entries })
    }

    /// How many tokens the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller holding `token`, if the table knows it. Every entry is compared (in
    /// constant time), so the answer's timing says nothing about which one matched.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        let digest = Sha256::digest(token.as_bytes());
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(digest.as_slice())) {
                found = Some(&e.principal);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> AccessTable {
        let text = format!(
            "tokens:\n\
             - name: vera\n  sha256: {}\n  roles: [{{role: viewer}}]\n\
             - name: pete\n  sha256: {}\n  roles:\n  - {{role: promoter, projects: [shop], stages: ['dev-*', qa]}}\n  - {{role: viewer}}\n\
             - name: ada\n  sha256: {}\n  roles: [{{role: admin, projects: ['sh*']}}]\n",
            hash_token("v-token"),
            hash_token("p-token"),
            hash_token("a-token"),
        );
        AccessTable::from_yaml_str("tokens.yaml", &text).unwrap()
    }

    #[test]
    fn roles_and_globs_decide() {
        let t = table();
        let vera = t.authenticate("v-token").unwrap();
        assert!(vera.may(Action::View, "shop", None));
        assert!(vera.may(Action::View, "other", Some("prod")));
        assert!(!vera.may(Action::Promote, "shop", Some("dev-eu")));
        let pete = t.authenticate("p-token").unwrap();
        assert!(pete.may(Action::Promote, "shop", Some("dev-eu")));
        assert!(pete.may(Action::Approve, "shop", Some("qa")));
        assert!(pete.may(Action::Refresh, "shop", None));
        assert!(
            !pete.may(Action::Promote, "shop", Some("prod")),
            "dev-* does not match prod"
        );
        assert!(
            !pete.may(Action::Promote, "other", Some("dev-eu")),
            "another project"
        );
        assert!(
            !pete.may(Action::Hold, "shop", Some("dev-eu")),
            "holds are for admins"
        );
        assert!(
            pete.may(Action::View, "other", None),
            "his viewer role is everywhere"
        );
        let ada = t.authenticate("a-token").unwrap();
        assert!(ada.may(Action::Hold, "shop", Some("prod")));
        assert!(!ada.may(Action::View, "other", None));
        assert!(t.authenticate("").is_none());
        assert!(t.authenticate("p-token ").is_none());
    }

    #[test]
    fn bad_files_say_where_and_never_echo_secrets() {
        let cases = [
            (
                "tokens: [{name: x, sha256: nothex, roles: [{role: viewer}]}]",
                "tokens[0].sha256",
            ),
            (
                "tokens: [{name: '', sha256: nothex, roles: []}]",
                "tokens[0].name",
            ),
            (
                &*format!(
                    "tokens: [{{name: x, sha256: {}, roles: []}}]",
                    hash_token("t")
                ),
                "tokens[0].roles",
            ),
            (
                &*format!(
                    "tokens: [{{name: x, sha256: {}, roles: [{{role: viewer, stages: ['a[']}}]}}]",
                    hash_token("t")
                ),
                "tokens[0].roles[0].stages[0]",
            ),
            (
                "tokens: [{name: x, sha256: 5up3r-s3cret, roles: [{role: king}]}]",
                "line 1",
            ),
        ];
        for (text, wanted) in cases {
            let e = AccessTable::from_yaml_str("tokens.yaml", text)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("tokens.yaml: "), "{e}");
            assert!(e.contains(wanted), "{wanted}: {e}");
            assert!(!e.contains("5up3r"), "{e}");
        }
        let twice = format!(
            "tokens:\n- {{name: a, sha256: {h}, roles: [{{role: viewer}}]}}\n- {{name: b, sha256: {h}, roles: [{{role: viewer}}]}}\n",
            h = hash_token("t")
        );
        let e = AccessTable::from_yaml_str("t.yaml", &twice)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tokens[1].sha256: the same token is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn debug_output_holds_names_only() {
        let t = table();
        let shown = format!("{t:?} {:?}", t.authenticate("a-token"));
        assert!(shown.contains("ada"), "{shown}");
        assert!(!shown.contains(&hash_token("a-token")), "{shown}");
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
