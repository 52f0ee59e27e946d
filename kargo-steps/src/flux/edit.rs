//! Rewrites the marked fields of one YAML text, changing only the bytes of their values.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser};

use super::markers::{Marked, MarkerError, find_markers};
use crate::yaml::YamlEditError;

/// The part of an image a setter writes, from the setter name's suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagePart {
    /// `NAMESPACE:NAME`: `name:tag`, with `@digest` when digests are on.
    Full,
    /// `NAMESPACE:NAME:tag`: the tag.
    Tag,
    /// `NAMESPACE:NAME:name`: the image name (repository).
    Name,
    /// `NAMESPACE:NAME:digest`: the digest (`sha256:...`).
    Digest,
}

/// Splits a setter name into its policy (`NAMESPACE:NAME`) and the part it sets; `None`
/// for a name that is none of Flux's four forms.
pub fn split_setter(setter: &str) -> Option<(&str, ImagePart)> {
    let parts: Vec<&str> = setter.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match parts.as_slice() {
        [_, _] => Some((setter, ImagePart::Full)),
        [ns, name, suffix] => {
            let part = match *suffix {
                "tag" => ImagePart::Tag,
                "name" => ImagePart::Name,
                "digest" => ImagePart::Digest,
                _ => return None,
            };
            Some((&setter[..ns.len() + 1 + name.len()], part))
        }
        _ => None,
    }
}

/// The image a policy stands for, as the Freight has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyImage {
    /// The repository (`ghcr.io/acme/app`).
    pub name: String,
    /// The tag (`1.4.0`).
    pub tag: String,
    /// The digest (`sha256:...`), possibly empty.
    pub digest: String,
    /// Whether `NAMESPACE:NAME` markers get `@digest`.
    pub with_digest: bool,
}

impl PolicyImage {
    /// The value a setter of `part` writes, or why there is none.
    pub fn value(&self, part: ImagePart) -> Result<String, &'static str> {
        let need_tag = || {
            if self.tag.is_empty() {
                Err("the Freight's image has no tag")
            } else {
                Ok(self.tag.clone())
            }
        };
        let need_digest = || {
            if self.digest.is_empty() {
                Err("the Freight's image has no digest")
            } else {
                Ok(self.digest.clone())
            }
        };
        match part {
            ImagePart::Name => Ok(self.name.clone()),
            ImagePart::Tag => need_tag(),
            ImagePart::Digest => need_digest(),
            ImagePart::Full => {
                let mut v = format!("{}:{}", self.name, need_tag()?);
                if self.with_digest {
                    v.push('@');
                    v.push_str(&need_digest()?);
                }
                Ok(v)
            }
        }
    }
}

/// How a configured policy resolved: its image, or why the Freight does not supply one.
pub type Resolution = Result<PolicyImage, String>;

/// One field set (or already holding its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// 1-based line of the field.
    pub line: usize,
    /// The marker's setter name (`flux-system:app:tag`).
    pub setter: String,
    /// The value before.
    pub old: String,
    /// The value after.
    pub new: String,
}

/// A marker left alone because no configured policy matches its setter name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// 1-based line of the field.
    pub line: usize,
    /// The marker's setter name.
    pub setter: String,
}

/// The result of [`update_markers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerUpdate {
    /// The new text (equal to the old one when nothing changed).
    pub text: String,
    /// Fields whose value changed, in file order.
    pub changes: Vec<FieldChange>,
    /// Markers naming a policy that is not configured.
    pub unmatched: Vec<Unmatched>,
}

/// Why [`update_markers`] refused a text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerUpdateError {
    /// The text is not valid YAML, or a marked field cannot be rewritten.
    #[error(transparent)]
    Markers(#[from] MarkerError),
    /// A configured policy has no value for a marker.
    #[error("line {line}: policy {setter:?}: {reason}")]
    NoValue {
        /// 1-based line.
        line: usize,
        /// The marker's setter name.
        setter: String,
        /// Why.
        reason: String,
    },
    /// A marked field of a configured policy that cannot be rewritten in place.
    #[error("line {line}: the field marked with {setter:?} {reason}")]
    Unsupported {
        /// 1-based line.
        line: usize,
        /// The marker's setter name.
        setter: String,
        /// Why.
        reason: &'static str,
    },
    /// The new value cannot be written in the field's style.
    #[error("line {line}: policy {setter:?}: cannot write {value:?}: {source}")]
    Encode {
        /// 1-based line.
        line: usize,
        /// The marker's setter name.
        setter: String,
        /// The value.
        value: String,
        /// What the YAML editor said.
        source: YamlEditError,
    },
    /// The edited text did not read back as intended (a bug; nothing is written).
    #[error("the edited YAML does not read back as intended: {0}")]
    Verify(String),
}

/// One planned replacement.
struct Splice<'a> {
    marker: &'a Marked,
    /// The new bytes of the scalar.
    bytes: String,
    /// The value they read as.
    value: String,
}

/// Sets every marked field of `text` whose policy is in `policies` (keyed by
/// `NAMESPACE:NAME`) to the part of the policy's image its marker names. Only the bytes of
/// changed values are replaced, each encoded in its old style by the YAML editor
/// ([`set_values`](crate::yaml::set_values)): plain stays plain unless the new value would read as something else
/// (then it is double-quoted), quoted values keep their quotes. Markers of other policies
/// are listed in [`MarkerUpdate::unmatched`] and left alone.
pub fn update_markers(
    text: &str,
    policies: &BTreeMap<String, Resolution>,
) -> Result<MarkerUpdate, MarkerUpdateError> {
    let markers = find_markers(text)?;
    let mut changes = Vec::new();
    let mut unmatched = Vec::new();
    let mut splices: Vec<Splice<'_>> = Vec::new();
    for m in &markers {
        let resolved = split_setter(&m.setter).and_then(|(p, part)| Some((policies.get(p)?, part)));
        let Some((resolution, part)) = resolved else {
            unmatched.push(Unmatched {
                line: m.line,
                setter: m.setter.clone(),
            });
            continue;
        };
        let no_value = |reason: String| MarkerUpdateError::NoValue {
            line: m.line,
            setter: m.setter.clone(),
            reason,
        };
        if let Some(reason) = m.problem {
            return Err(MarkerUpdateError::Unsupported {
                line: m.line,
                setter: m.setter.clone(),
                reason,
            });
        }
        let image = resolution.as_ref().map_err(|e| no_value(e.clone()))?;
        let value = image.value(part).map_err(|e| no_value(e.to_owned()))?;
        if value == m.value {
            continue;
        }
        let src = &text[m.start..m.end];
        let bytes = crate::yaml::encode_like(src, m.flow, &value).map_err(|source| {
            MarkerUpdateError::Encode {
                line: m.line,
                setter: m.setter.clone(),
                value: value.clone(),
                source,
            }
        })?;
        changes.push(FieldChange {
            line: m.line,
            setter: m.setter.clone(),
            old: m.value.clone(),
            new: value.clone(),
        });
        splices.push(Splice {
            marker: m,
            bytes,
            value,
        });
    }
    if splices.is_empty() {
        return Ok(MarkerUpdate {
            text: text.to_owned(),
            changes,
            unmatched,
        });
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for s in &splices {
        out.push_str(&text[at..s.marker.start]);
        out.push_str(&s.bytes);
        at = s.marker.end;
    }
    out.push_str(&text[at..]);
    verify(text, &out, &splices)?;
    Ok(MarkerUpdate {
        text: out,
        changes,
        unmatched,
    })
}

/// Every event of the stream in a comparable form (scalars with their values).
fn events(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for item in Parser::new_from_str(text) {
        let (event, _) = item.map_err(|e| e.to_string())?;
        out.push(match event {
            Event::Scalar(v, _, anchor, tag) => format!("={anchor}:{tag:?}:{v}"),
            other => format!("{other:?}"),
        });
    }
    Ok(out)
}

/// Checks that `new` reads as `old` with exactly the spliced fields changed to their new
/// values: the same events with no other scalar changed, the markers still in place.
fn verify(old: &str, new: &str, splices: &[Splice<'_>]) -> Result<(), MarkerUpdateError> {
    let fail = MarkerUpdateError::Verify;
    let before = events(old).map_err(fail)?;
    let after = events(new).map_err(fail)?;
    if before.len() != after.len() {
        return Err(fail(format!(
            "{} events instead of {}",
            after.len(),
            before.len()
        )));
    }
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    if changed != splices.len() {
        return Err(fail(format!(
            "{changed} values changed, {} intended",
            splices.len()
        )));
    }
    let old_markers = find_markers(old)?;
    let new_markers = find_markers(new)?;
    if old_markers.len() != new_markers.len() {
        return Err(fail("the number of markers changed".to_owned()));
    }
    for (o, n) in old_markers.iter().zip(&new_markers) {
        if o.setter != n.setter || o.line != n.line {
            return Err(fail(format!("the marker of line {} moved", o.line)));
        }
        let want = splices
            .iter()
            .find(|s| s.marker.start == o.start)
            .map_or(o.value.as_str(), |s| s.value.as_str());
        if n.value != want {
            return Err(fail(format!(
                "line {} reads {:?}, expected {want:?}",
                o.line, n.value
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, tag: &str, digest: &str, with_digest: bool) -> Resolution {
        Ok(PolicyImage {
            name: name.to_owned(),
            tag: tag.to_owned(),
            digest: digest.to_owned(),
            with_digest,
        })
    }

    fn policies(entries: Vec<(&str, Resolution)>) -> BTreeMap<String, Resolution> {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn setter_names_split_into_policy_and_part() {
        assert_eq!(split_setter("ns:app"), Some(("ns:app", ImagePart::Full)));
        assert_eq!(split_setter("ns:app:tag"), Some(("ns:app", ImagePart::Tag)));
        assert_eq!(
            split_setter("ns:app:name"),
            Some(("ns:app", ImagePart::Name))
        );
        assert_eq!(
            split_setter("ns:app:digest"),
            Some(("ns:app", ImagePart::Digest))
        );
        assert_eq!(split_setter("ns:tag"), Some(("ns:tag", ImagePart::Full)));
        for bad in ["app", "ns:app:version", "a:b:c:d", "ns::tag", ":app", ""] {
            assert_eq!(split_setter(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_form_and_suffix_is_set_and_nothing_else_moves() {
        let text = concat!(
            "# A deployment\n",
            "apiVersion: apps/v1\n",
            "kind: Deployment\n",
            "metadata: {name: app, namespace: prod}   # flow mapping, untouched\n",
            "spec:\n",
            "  template:\n",
            "    spec:\n",
            "      containers:\n",
            "      - name: app\n",
            "        image: ghcr.io/acme/app:1.0.0 # {\"$imagepolicy\": \"flux-system:app\"}\n",
            "      - name: quoted\n",
            "        image: \"ghcr.io/acme/app:1.0.0\"   #{\"$imagepolicy\":\"flux-system:app\"}\n",
            "      - name: single\n",
            "        image: 'ghcr.io/acme/app:1.0.0'\t##  {\"$imagepolicy\": \"flux-system:app\"}\n",
            "      - name: other\n",
            "        image: ghcr.io/acme/other:9 # {\"$imagepolicy\": \"flux-system:other\"}\n",
            "        args: [--tag, 1.0.0, # {\"$imagepolicy\": \"flux-system:app:tag\"}\n",
            "          --x]\n",
            "        env:\n",
            "        # {\"$imagepolicy\": \"flux-system:app:name\"}\n",
            "        - old/name\n",
            "---\n",
            "images:\n",
            "  - name: app\n",
            "    newName: old/name # {\"$imagepolicy\": \"flux-system:app:name\"}\n",
            "    newTag: \"1.0.0\" # {\"$imagepolicy\": \"flux-system:app:tag\"}\n",
            "    digest: sha256:00 # {\"$imagepolicy\": \"flux-system:app:digest\"}\n",
            "    keep: 1.0.0 # {\"$imagepolicy\": \"flux-system:app:tag\"} not a marker\n",
        );
        let update = update_markers(
            text,
            &policies(vec![(
                "flux-system:app",
                image("ghcr.io/acme/app", "1.2.3", D1, false),
            )]),
        )
        .unwrap();
        let expected = concat!(
            "# A deployment\n",
            "apiVersion: apps/v1\n",
            "kind: Deployment\n",
            "metadata: {name: app, namespace: prod}   # flow mapping, untouched\n",
            "spec:\n",
            "  template:\n",
            "    spec:\n",
            "      containers:\n",
            "      - name: app\n",
            "        image: ghcr.io/acme/app:1.2.3 # {\"$imagepolicy\": \"flux-system:app\"}\n",
            "      - name: quoted\n",
            "        image: \"ghcr.io/acme/app:1.2.3\"   #{\"$imagepolicy\":\"flux-system:app\"}\n",
            "      - name: single\n",
            "        image: 'ghcr.io/acme/app:1.2.3'\t##  {\"$imagepolicy\": \"flux-system:app\"}\n",
            "      - name: other\n",
            "        image: ghcr.io/acme/other:9 # {\"$imagepolicy\": \"flux-system:other\"}\n",
            "        args: [--tag, 1.2.3, # {\"$imagepolicy\": \"flux-system:app:tag\"}\n",
            "          --x]\n",
            "        env:\n",
            "        # {\"$imagepolicy\": \"flux-system:app:name\"}\n",
            "        - ghcr.io/acme/app\n",
            "---\n",
            "images:\n",
            "  - name: app\n",
            "    newName: ghcr.io/acme/app # {\"$imagepolicy\": \"flux-system:app:name\"}\n",
            "    newTag: \"1.2.3\" # {\"$imagepolicy\": \"flux-system:app:tag\"}\n",
            "    digest: sha256:1111111111111111111111111111111111111111111111111111111111111111",
            " # {\"$imagepolicy\": \"flux-system:app:digest\"}\n",
            "    keep: 1.0.0 # {\"$imagepolicy\": \"flux-system:app:tag\"} not a marker\n",
        );
        assert_eq!(update.text, expected);
        let lines: Vec<(usize, &str, &str)> = update
            .changes
            .iter()
            .map(|c| (c.line, c.setter.as_str(), c.new.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (10, "flux-system:app", "ghcr.io/acme/app:1.2.3"),
                (12, "flux-system:app", "ghcr.io/acme/app:1.2.3"),
                (14, "flux-system:app", "ghcr.io/acme/app:1.2.3"),
                (17, "flux-system:app:tag", "1.2.3"),
                (21, "flux-system:app:name", "ghcr.io/acme/app"),
                (25, "flux-system:app:name", "ghcr.io/acme/app"),
                (26, "flux-system:app:tag", "1.2.3"),
                (27, "flux-system:app:digest", D1),
            ]
        );
        assert_eq!(update.changes[0].old, "ghcr.io/acme/app:1.0.0");
        assert_eq!(
            update.unmatched,
            vec![Unmatched {
                line: 16,
                setter: "flux-system:other".to_owned()
            }]
        );
        // Running again changes nothing.
        let again = update_markers(
            &update.text,
            &policies(vec![(
                "flux-system:app",
                image("ghcr.io/acme/app", "1.2.3", D1, false),
            )]),
        )
        .unwrap();
        assert_eq!(again.text, update.text);
        assert!(again.changes.is_empty());
    }

    #[test]
    fn digests_follow_the_switch() {
        let text = "image: app:1 # {\"$imagepolicy\": \"ns:app\"}\n";
        let on = update_markers(
            text,
            &policies(vec![("ns:app", image("r/app", "2", D1, true))]),
        )
        .unwrap();
        assert_eq!(
            on.text,
            format!("image: r/app:2@{D1} # {{\"$imagepolicy\": \"ns:app\"}}\n")
        );
        let off = update_markers(
            text,
            &policies(vec![("ns:app", image("r/app", "2", D1, false))]),
        )
        .unwrap();
        assert_eq!(
            off.text,
            "image: r/app:2 # {\"$imagepolicy\": \"ns:app\"}\n"
        );
        // On without a digest, and a :digest marker without one, are errors.
        let e = update_markers(
            text,
            &policies(vec![("ns:app", image("r/app", "2", "", true))]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 1: policy \"ns:app\": the Freight's image has no digest"
        );
        let e = update_markers(
            "d: x # {\"$imagepolicy\": \"ns:app:digest\"}\n",
            &policies(vec![("ns:app", image("r/app", "2", "", false))]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no digest"), "{e}");
    }

    #[test]
    fn values_that_would_read_as_numbers_are_quoted_and_crlf_stays() {
        let text = "a:\r\n  tag: 1.0.0 # {\"$imagepolicy\": \"ns:app:tag\"}\r\n  n: 'x' # {\"$imagepolicy\": \"ns:app:tag\"}\r\nb: é # {\"$imagepolicy\": \"ns:app:name\"}";
        let update = update_markers(
            text,
            &policies(vec![("ns:app", image("ré/app", "1.10", "", false))]),
        )
        .unwrap();
        assert_eq!(
            update.text,
            "a:\r\n  tag: \"1.10\" # {\"$imagepolicy\": \"ns:app:tag\"}\r\n  n: '1.10' # {\"$imagepolicy\": \"ns:app:tag\"}\r\nb: ré/app # {\"$imagepolicy\": \"ns:app:name\"}"
        );
    }

    #[test]
    fn anchored_values_keep_their_anchor() {
        let text = "a: &img app:1 # {\"$imagepolicy\": \"ns:app\"}\nb: *img\nc: !!str app:1 # {\"$imagepolicy\": \"ns:app\"}\n";
        let update = update_markers(
            text,
            &policies(vec![("ns:app", image("app", "2", "", false))]),
        )
        .unwrap();
        assert_eq!(
            update.text,
            "a: &img app:2 # {\"$imagepolicy\": \"ns:app\"}\nb: *img\nc: !!str app:2 # {\"$imagepolicy\": \"ns:app\"}\n"
        );
    }

    #[test]
    fn errors_name_the_line_and_policy() {
        let text = "a: 1\nb: x # {\"$imagepolicy\": \"ns:app\"}\n";
        let e = update_markers(
            text,
            &policies(vec![(
                "ns:app",
                Err("maps to repository r: not in the Freight".to_owned()),
            )]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: policy \"ns:app\": maps to repository r: not in the Freight"
        );
        // An unconfigured policy without an image is no error.
        let u = update_markers(text, &policies(vec![("ns:other", Err("x".to_owned()))])).unwrap();
        assert_eq!(u.text, text);
        assert_eq!(u.unmatched.len(), 1);
        // A configured block scalar is an error; an unconfigured one is left alone.
        let block = "a: | # {\"$imagepolicy\": \"ns:app:tag\"}\n  1.0\n";
        let e = update_markers(
            block,
            &policies(vec![("ns:app", image("r", "2", "", false))]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("line 1: the field marked with \"ns:app:tag\" is a block scalar"),
            "{e}"
        );
        let u = update_markers(
            block,
            &policies(vec![("ns:other", image("r", "2", "", false))]),
        )
        .unwrap();
        assert_eq!(u.text, block);
        assert!(matches!(
            update_markers("a: [\n", &BTreeMap::new()),
            Err(MarkerUpdateError::Markers(MarkerError::Parse { .. }))
        ));
    }

    /// A marker appended to any line of awkward YAML never panics: the result is an
    /// update whose marked values read back as set, or a clean error.
    #[test]
    fn a_marker_on_any_line_of_awkward_yaml_is_handled() {
        let docs = [
            "a: 1\nb: 'x'\nc: \"y\"\nd: [1, 2,\n  3]\ne: {f: g,\n  h: i}\nj: |\n  text\nk: >-\n  folded\nl: &x v\nm: *x\nn: !!str 5\n",
            "- a\n- - b\n  - c\n-\n  d\n- e: f\n  g: h\n---\n? complex\n: value\n",
            "---\nfirst: 1\n...\n---\n- second\n---\nthird\n",
            "k: plain\n  continued\nq: 'multi\n  line'\nu: \u{e9}t\u{e9} # note\r\nw: \"\\u00e9\"\n",
            "x:   \ny: ~\nz: null\nempty: ''\nt: [a, b] # c\n",
        ];
        let policies = policies(vec![(
            "ns:app",
            image("ghcr.io/acme/app", "1.10", D1, true),
        )]);
        let (mut set, mut refused) = (0usize, Vec::new());
        for doc in docs {
            let lines: Vec<&str> = doc.split_inclusive('\n').collect();
            for i in 0..lines.len() {
                for suffix in ["", ":tag", ":digest"] {
                    let mut text = String::new();
                    for (j, line) in lines.iter().enumerate() {
                        if j == i {
                            let body = line.trim_end_matches(['\n', '\r']);
                            text.push_str(body);
                            text.push_str(&format!(" # {{\"$imagepolicy\": \"ns:app{suffix}\"}}"));
                            text.push_str(&line[body.len()..]);
                        } else {
                            text.push_str(line);
                        }
                    }
                    match update_markers(&text, &policies) {
                        Ok(u) => {
                            set += u.changes.len();
                            for c in &u.changes {
                                let after = find_markers(&u.text).unwrap();
                                assert!(
                                    after.iter().any(|m| m.line == c.line && m.value == c.new),
                                    "{text:?} -> {:?}",
                                    u.text
                                );
                            }
                            if u.changes.is_empty() {
                                assert_eq!(u.text, text);
                            }
                        }
                        Err(e) => refused.push(e.to_string()),
                    }
                }
            }
        }
        assert!(set >= 40, "{set}");
        // Refusals name the line; a comment inside a multi-line plain scalar is invalid YAML.
        assert!(
            refused.iter().all(|e| e.starts_with("line ")
                || e.starts_with("cannot parse the YAML: comment intercepting")),
            "{refused:#?}"
        );
    }
}
