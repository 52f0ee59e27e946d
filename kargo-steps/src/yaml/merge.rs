//! `yaml-merge`: deep-merges YAML files into one.

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;
use yaml_serde::Value as Y;

use super::{first_document, read_text, write_atomically};

/// Kargo's `yaml-merge` step: merges the first document of each input file, in order,
/// into `outFile` (created with its parent directories, or replaced atomically).
///
/// Merge rules (those of kustomize's `merge2`, which Kargo uses, without a schema):
///
/// * a later file's scalar replaces the earlier value;
/// * mappings merge key by key, recursively; keys of the first file keep their order and
///   new keys are appended (in sorted order, as kyaml does);
/// * sequences are replaced whole, never merged item by item;
/// * `null` removes the key — once two files are merged, every `null` mapping value is
///   dropped, as kyaml does;
/// * a mapping, a sequence and a scalar at the same key (both non-null) is an error;
/// * empty files are skipped; missing files are errors unless `ignoreMissingFiles`.
///
/// Differences from Kargo: the output is re-serialised by `yaml_serde`, so comments,
/// anchors (aliases are expanded), quoting and flow style of the inputs are not kept; and
/// Kubernetes manifests are merged without kyaml's built-in OpenAPI schemas (Kargo would
/// merge e.g. a Deployment's `containers` by `name`; here the later list wins).
///
/// Output `commitMessage` (none when no input file was used): with one file
/// `Wrote <in> to <out>`; with several
///
/// ```text
/// Merged 2 YAML files to out/values.yaml
/// - base/values.yaml
/// - stages/prod/values.yaml
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct YamlMerge;

/// Configuration of [`YamlMerge`].
///
/// ```yaml
/// uses: yaml-merge
/// config:
///   inFiles:                    # merged in this order, later files win
///   - ./src/base/values.yaml
///   - ./src/stages/${{ ctx.stage }}/values.yaml
///   outFile: ./out/values.yaml
///   ignoreMissingFiles: true    # default false
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct YamlMergeConfig {
    /// The input files, relative to the work directory, in merge order; at least one
    /// (`inFiles: [base.yaml, prod.yaml]`).
    pub in_files: Vec<String>,
    /// The output file, relative to the work directory (`outFile: out/values.yaml`).
    pub out_file: String,
    /// Skip input files that do not exist instead of failing
    /// (`ignoreMissingFiles: true`; default false).
    #[serde(default)]
    pub ignore_missing_files: bool,
}

fn kind(v: &Y) -> u8 {
    match v {
        Y::Mapping(_) => 1,
        Y::Sequence(_) => 2,
        Y::Tagged(t) => kind(&t.value),
        Y::Null => 0,
        _ => 3,
    }
}

fn kind_name(k: u8) -> &'static str {
    match k {
        1 => "a mapping",
        2 => "a sequence",
        _ => "a scalar",
    }
}

fn is_null(v: &Option<Y>) -> bool {
    matches!(v, None | Some(Y::Null))
}

fn as_map(v: Y) -> Option<yaml_serde::Mapping> {
    match v {
        Y::Mapping(m) => Some(m),
        Y::Tagged(t) => as_map(t.value),
        _ => None,
    }
}

/// Merges `patch` over `dest` (kyaml's walker): `None` means absent; a `None` or null
/// result removes the key.
fn merge(dest: Option<Y>, patch: Option<Y>, at: &str) -> Result<Option<Y>, String> {
    let k = [&dest, &patch]
        .into_iter()
        .flatten()
        .map(kind)
        .find(|k| *k != 0)
        .unwrap_or(0);
    for v in [&dest, &patch].into_iter().flatten() {
        let vk = kind(v);
        if vk != 0 && vk != k {
            return Err(format!(
                "cannot merge {} with {} at {}",
                kind_name(vk),
                kind_name(k),
                if at.is_empty() {
                    "the document root"
                } else {
                    at
                }
            ));
        }
    }
    match k {
        1 => {
            if matches!(patch, Some(Y::Null)) && !is_null(&dest) {
                return Ok(None);
            }
            let (base, over) = if is_null(&dest) {
                (patch.clone(), patch)
            } else {
                (dest, patch)
            };
            let mut base = base.and_then(as_map).unwrap_or_default();
            let over = over.and_then(as_map).unwrap_or_default();
            let mut names: Vec<Y> = base.keys().chain(over.keys()).cloned().collect();
            names.sort_by_key(key_text);
            names.dedup();
            for name in names {
                let child_at = if at.is_empty() {
                    key_text(&name)
                } else {
                    format!("{at}.{}", key_text(&name))
                };
                let merged = merge(
                    base.get(&name).cloned(),
                    over.get(&name).cloned(),
                    &child_at,
                )?;
                match merged {
                    None | Some(Y::Null) => {
                        base.shift_remove(&name);
                    }
                    Some(v) => {
                        base.insert(name, v);
                    }
                }
            }
            Ok(Some(Y::Mapping(base)))
        }
        _ => Ok(if patch.is_some() { patch } else { dest }),
    }
}

fn key_text(k: &Y) -> String {
    match k {
        Y::String(s) => s.clone(),
        other => yaml_serde::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

/// Merges parsed documents in order.
pub(crate) fn merge_documents(docs: Vec<Y>) -> Result<Option<Y>, String> {
    let mut it = docs.into_iter();
    let Some(mut acc) = it.next() else {
        return Ok(None);
    };
    for d in it {
        acc = merge(Some(acc), Some(d), "")?.unwrap_or(Y::Null);
    }
    Ok(Some(acc))
}

/// Kargo's commit message for `inputs` merged into `out`.
fn commit_message(inputs: &[&str], out: &str) -> Option<String> {
    match inputs {
        [] => None,
        [one] => Some(format!("Wrote {one} to {out}")),
        many => {
            let mut msg = format!("Merged {} YAML files to {out}", many.len());
            for p in many {
                msg.push_str(&format!("\n- {p}"));
            }
            Some(msg)
        }
    }
}

#[async_trait]
impl Step for YamlMerge {
    const KIND: &'static str = "yaml-merge";
    type Config = YamlMergeConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: YamlMergeConfig,
    ) -> Result<StepOutcome, StepError> {
        if config.in_files.is_empty() {
            return Err(StepError::invalid_config(
                "inFiles",
                "at least one input file is required",
            ));
        }
        if config.out_file.is_empty() {
            return Err(StepError::invalid_config("outFile", "must not be empty"));
        }
        let mut used: Vec<&str> = Vec::new();
        let mut docs = Vec::new();
        for rel in &config.in_files {
            let abs = ctx.path(rel)?;
            match std::fs::metadata(&abs) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if config.ignore_missing_files {
                        continue;
                    }
                    return Err(
                        StepError::retryable(format!("input file {rel:?} not found"))
                            .with_source(e),
                    );
                }
                Err(e) => {
                    return Err(StepError::retryable(format!(
                        "unexpected error with file {rel:?}: {e}"
                    ))
                    .with_source(e));
                }
            }
            used.push(rel.as_str());
            let text = read_text(&abs, rel)?;
            let doc = first_document(&text).map_err(|m| {
                StepError::retryable(format!("error reading input file {rel}: {m}"))
            })?;
            if let Some(doc) = doc {
                docs.push(doc);
            }
        }
        let out = ctx.path(&config.out_file)?;
        let merged = merge_documents(docs)
            .map_err(|m| StepError::retryable(format!("error merging YAML files: {m}")))?;
        let text = match merged {
            None => String::new(),
            Some(v) => yaml_serde::to_string(&v).map_err(|e| {
                StepError::retryable(format!(
                    "error writing merged YAML to {}: {e}",
                    config.out_file
                ))
            })?,
        };
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                StepError::retryable(format!(
                    "error writing merged YAML to {}: {e}",
                    config.out_file
                ))
            })?;
            // The directories just created must still be inside the work directory.
            ctx.path(&config.out_file)?;
        }
        write_atomically(&out, text.as_bytes()).map_err(|e| {
            StepError::retryable(format!(
                "error writing merged YAML to {}: {e}",
                config.out_file
            ))
            .with_source(e)
        })?;
        tracing::debug!(out = %config.out_file, inputs = used.len(), "yaml-merge");
        let mut outcome = StepOutcome::succeeded();
        if let Some(msg) = commit_message(&used, &config.out_file) {
            outcome = outcome.with_output("commitMessage", msg);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn y(s: &str) -> Y {
        yaml_serde::from_str(s).unwrap()
    }

    #[test]
    fn merges_like_kargo() {
        let base = y(
            "character:\n  name: Vader\n  ability: Force\n  affiliation: Empire\n  saberColor: red\nvehicles:\n- Star Destroyer\n",
        );
        let overlay = y(
            "character:\n  name: Luke\n  affiliation: Rebel Alliance\n  saberColor: blue\n  siblings:\n  - Leia\nvehicles:\n- Millennium Falcon\n",
        );
        let out = merge_documents(vec![base, overlay]).unwrap().unwrap();
        assert_eq!(
            yaml_serde::to_string(&out).unwrap(),
            "character:\n  name: Luke\n  ability: Force\n  affiliation: Rebel Alliance\n  saberColor: blue\n  siblings:\n  - Leia\nvehicles:\n- Millennium Falcon\n"
        );
    }

    #[test]
    fn null_removes_and_new_keys_are_sorted() {
        let out = merge_documents(vec![
            y("z: 1\na: {keep: 1, drop: 2, nil: null}\n"),
            y("a: {drop: null, y: 1, b: 2}\nm: 3\n"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            yaml_serde::to_string(&out).unwrap(),
            "z: 1\na:\n  keep: 1\n  b: 2\n  y: 1\nm: 3\n"
        );
    }

    #[test]
    fn kind_mismatch_is_an_error() {
        let e = merge_documents(vec![y("a: {b: 1}\n"), y("a: [1]\n")]).unwrap_err();
        assert!(
            e.contains("cannot merge a sequence with a mapping at a"),
            "{e}"
        );
        let e = merge_documents(vec![y("a: {b: 1}\n"), y("a: {b: {c: 1}}\n")]).unwrap_err();
        assert!(e.contains("at a.b"), "{e}");
        assert!(merge_documents(vec![y("a: 1\n"), y("a: null\n")]).is_ok());
    }

    #[test]
    fn commit_messages() {
        assert_eq!(commit_message(&[], "o"), None);
        assert_eq!(commit_message(&["a"], "o").unwrap(), "Wrote a to o");
        assert_eq!(
            commit_message(&["a", "b"], "o").unwrap(),
            "Merged 2 YAML files to o\n- a\n- b"
        );
    }
}
