//! What to tell a user whose `uses:` names no registered step: the nearest registered
//! name when there is a likely typo, and whether the name is a step only Kargo's
//! commercial edition (Akuity Platform / Kargo Enterprise) ships.

/// Steps Kargo documents for its commercial edition only.
const COMMERCIAL_STEPS: &[&str] = &[
    "send-message",
    "wait-for-approval",
    "get-user-input",
    "record-audit-event",
    "jira",
    "jfrog-evidence",
    "hcl-update",
];

/// Name prefixes of commercial-only step families (GitHub issues and Actions,
/// ServiceNow, OpenTofu).
const COMMERCIAL_PREFIXES: &[&str] = &["gh-", "gha-", "snow-", "tf-"];

/// Whether `kind` is a step of Kargo's commercial edition.
pub fn is_commercial_step(kind: &str) -> bool {
    COMMERCIAL_STEPS.contains(&kind) || COMMERCIAL_PREFIXES.iter().any(|p| kind.starts_with(p))
}

/// The message for an unknown step `kind`, given the registered names (sorted).
pub(crate) fn unknown_step_message<'a>(
    kind: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> String {
    let known: Vec<&str> = known.into_iter().collect();
    if known.is_empty() {
        return format!("step kind {kind:?} is not registered (the registry is empty)");
    }
    let mut message = format!("unknown step {kind:?}");
    if is_commercial_step(kind) {
        message.push_str(
            ": it is a step of Kargo's commercial edition (Akuity Platform), not of open-source \
             Kargo; register an implementation of it with the step registry to use it here",
        );
    } else if let Some(near) = nearest(kind, &known) {
        message.push_str(&format!(": did you mean {near:?}?"));
    }
    message.push_str(&format!("; registered steps: {}", known.join(", ")));
    message
}

/// The registered name closest to `kind` by edit distance, if close enough to be a typo:
/// at most a third of the longer name's length, and at most 3 edits.
fn nearest<'a>(kind: &str, known: &[&'a str]) -> Option<&'a str> {
    let wanted = kind.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&wanted, &k.to_ascii_lowercase()), *k))
        .filter(|(d, k)| *d <= 3 && *d * 3 <= k.len().max(kind.len()))
        .min_by_key(|(d, k)| (*d, *k))
        .map(|(_, k)| k)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["git-clone", "git-commit", "git-push", "http", "yaml-update"];

    #[test]
    fn a_typo_gets_the_nearest_name() {
        let m = unknown_step_message("git-comit", KNOWN.iter().copied());
        assert!(
            m.starts_with("unknown step \"git-comit\": did you mean \"git-commit\"?"),
            "{m}"
        );
        let m = unknown_step_message("yaml-updates", KNOWN.iter().copied());
        assert!(m.contains("did you mean \"yaml-update\"?"), "{m}");
        let m = unknown_step_message("Git-Push", KNOWN.iter().copied());
        assert!(m.contains("did you mean \"git-push\"?"), "{m}");
    }

    #[test]
    fn a_far_name_gets_no_suggestion() {
        let m = unknown_step_message("deploy-everything", KNOWN.iter().copied());
        assert!(!m.contains("did you mean"), "{m}");
        assert!(m.contains("registered steps: git-clone, git-commit"), "{m}");
        let m = unknown_step_message("htp2", KNOWN.iter().copied());
        assert!(
            !m.contains("did you mean"),
            "short names need a closer match: {m}"
        );
    }

    #[test]
    fn commercial_steps_are_named_as_such() {
        for kind in [
            "send-message",
            "gha-dispatch-workflow",
            "tf-plan",
            "snow-create-change",
        ] {
            assert!(is_commercial_step(kind), "{kind}");
            let m = unknown_step_message(kind, KNOWN.iter().copied());
            assert!(m.contains("commercial edition"), "{m}");
        }
        assert!(!is_commercial_step("git-push"));
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
