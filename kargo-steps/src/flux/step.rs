//! `flux-update-images`: sets the fields marked with Flux `$imagepolicy` comments from
//! the Freight's images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use kargo_core::expr::OriginSubscriptions;
use kargo_core::freight::{FreightCollection, FreightOrigin};
use kargo_core::limits::{self, ReadLimitError};
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::edit::{PolicyImage, Resolution, update_markers};
use crate::yaml::write_atomically;

/// The token a file must contain to be read at all (Flux's screening).
const TOKEN: &[u8] = b"\"$imagepolicy\"";

/// The `flux-update-images` step: for every YAML file under `path` that contains
/// `"$imagepolicy"`, sets each field marked with a Flux image-automation setter comment
/// whose policy is configured, from the Freight's image of the repository the policy maps
/// to. Only the bytes of the changed values are rewritten; see the
/// [module documentation](super) for the marker forms and the rules.
///
/// Outputs:
///
/// * `changes`: `[{file, line, policy, old, new}]`, one per field whose value changed, in
///   file and line order (`policy` is the marker's setter name, suffix included);
/// * `unmatched`: `[{file, line, policy}]`, the markers naming a policy the configuration
///   does not list (left alone, as Flux leaves policies it does not select);
/// * `skippedFiles`: `[{file, reason}]`, files holding the token that are not valid
///   UTF-8 YAML (left alone, as Flux does), and files over
///   [`MAX_STEP_FILE_BYTES`](kargo_core::limits::MAX_STEP_FILE_BYTES), which are not read;
/// * `files`: the files written;
/// * `commitMessage`: `Updated <path> to use new image(s)`, an empty line, and one
///   `- <file>:<line> <policy>: <new>` line per change.
///
/// Errors (nothing is written): a configured policy named by a marker whose image the
/// Freight does not have, or cannot say which origin provides (`fromOrigin` decides); a
/// `:tag` / `:digest` marker (or a full marker with digests on) when the image has no
/// tag / digest; a marked field of a configured policy that is a block scalar, spans
/// several lines or is empty. Each names the step, the file, the line and the policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct FluxUpdateImages;

/// Configuration of [`FluxUpdateImages`].
///
/// ```yaml
/// uses: flux-update-images
/// config:
///   path: ./out/apps                        # a file or a directory (walked recursively)
///   digests: false                          # full markers get @digest (default false)
///   policies:
///   - policy: flux-system:podinfo           # NAMESPACE:NAME, as in the markers
///     repoURL: ghcr.io/stefanprodan/podinfo  # the Freight image that supplies the value
///   - policy: flux-system:worker
///     repoURL: ghcr.io/acme/worker
///     digest: true                          # this policy's full markers get @digest
///     fromOrigin: {kind: Warehouse, name: worker}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxUpdateImagesConfig {
    /// A file, or a directory walked recursively for `*.yaml`, `*.yml` and
    /// `Kustomization` files, relative to the work directory (`path: ./out/apps`).
    pub path: String,
    /// Whether `NAMESPACE:NAME` markers are set to `name:tag@digest` instead of
    /// `name:tag`, for the policies that do not say (`digests: true`; default `false`,
    /// like Flux's `digestReflectionPolicy: Never`).
    #[serde(default)]
    pub digests: bool,
    /// The policies to set; at least one
    /// (`policies: [{policy: flux-system:app, repoURL: ghcr.io/acme/app}]`).
    pub policies: Vec<FluxImagePolicy>,
}

/// One policy of a [`FluxUpdateImagesConfig`].
///
/// ```yaml
/// policy: flux-system:podinfo
/// repoURL: ghcr.io/stefanprodan/podinfo
/// digest: true                                 # optional, default: the step's digests
/// fromOrigin: {kind: Warehouse, name: podinfo}  # optional
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxImagePolicy {
    /// The ImagePolicy as the markers name it, `NAMESPACE:NAME`
    /// (`policy: flux-system:podinfo`).
    pub policy: String,
    /// The image repository whose Freight image supplies the values
    /// (`repoURL: ghcr.io/stefanprodan/podinfo`).
    #[serde(rename = "repoURL")]
    pub repo_url: String,
    /// Whether this policy's `NAMESPACE:NAME` markers get `@digest`; default: the step's
    /// `digests` (`digest: true`).
    #[serde(default)]
    pub digest: Option<bool>,
    /// The origin whose Freight supplies the image, when more than one could
    /// (`fromOrigin: {kind: Warehouse, name: podinfo}`).
    #[serde(default)]
    pub from_origin: Option<FreightOrigin>,
}

/// Checks the configuration; errors name the key path.
fn check_config(config: &FluxUpdateImagesConfig) -> Result<(), StepError> {
    if config.path.is_empty() {
        return Err(StepError::invalid_config("path", "must not be empty"));
    }
    if config.policies.is_empty() {
        return Err(StepError::invalid_config(
            "policies",
            "at least one policy is required",
        ));
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in config.policies.iter().enumerate() {
        let parts: Vec<&str> = p.policy.split(':').collect();
        let valid = parts.len() == 2
            && parts.iter().all(|part| {
                !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c == '/')
            });
        if !valid {
            return Err(StepError::invalid_config(
                format!("policies[{i}].policy"),
                format!(
                    "{:?} is not NAMESPACE:NAME (the policy as the markers name it, e.g. flux-system:podinfo)",
                    p.policy
                ),
            ));
        }
        if let Some(first) = seen.insert(p.policy.as_str(), i) {
            return Err(StepError::invalid_config(
                format!("policies[{i}].policy"),
                format!("{:?} is already configured by policies[{first}]", p.policy),
            ));
        }
        if p.repo_url.trim().is_empty() {
            return Err(StepError::invalid_config(
                format!("policies[{i}].repoURL"),
                "must not be empty",
            ));
        }
        if p.from_origin.as_ref().is_some_and(|o| o.name.is_empty()) {
            return Err(StepError::invalid_config(
                format!("policies[{i}].fromOrigin.name"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

/// The image a policy maps to, from the Freight collection: from `fromOrigin` when given;
/// otherwise from the one requested origin whose Warehouse subscribes to the repository
/// (when the promotion knows them), else from the one Freight that has it.
fn resolve(
    policy: &FluxImagePolicy,
    digests: bool,
    freight: &FreightCollection,
    requested: Option<&[OriginSubscriptions]>,
) -> Resolution {
    let repo = policy.repo_url.as_str();
    let image_of = |origin: &FreightOrigin| -> Resolution {
        let reference = freight
            .get(origin)
            .ok_or_else(|| format!("no Freight from {origin} is being promoted"))?;
        reference
            .images
            .iter()
            .find(|i| i.repo_url == repo)
            .map(|i| PolicyImage {
                name: i.repo_url.clone(),
                tag: i.tag.clone(),
                digest: i.digest.clone(),
                with_digest: policy.digest.unwrap_or(digests),
            })
            .ok_or_else(|| format!("the Freight from {origin} has no image from repository {repo}"))
    };
    if let Some(origin) = &policy.from_origin {
        return image_of(origin);
    }
    if let Some(requested) = requested {
        let origins: Vec<&FreightOrigin> = requested
            .iter()
            .filter(|r| r.images.iter().any(|u| u == repo))
            .map(|r| &r.origin)
            .collect();
        match origins.as_slice() {
            [one] => return image_of(one),
            [] => {}
            several => {
                return Err(ambiguous(repo, several.iter().copied()));
            }
        }
    }
    let origins: Vec<&FreightOrigin> = freight
        .images()
        .filter(|(_, i)| i.repo_url == repo)
        .map(|(o, _)| o)
        .collect();
    match origins.as_slice() {
        [] => Err(format!(
            "no image from repository {repo} is in the Freight being promoted"
        )),
        [one] => image_of(one),
        several => Err(ambiguous(repo, several.iter().copied())),
    }
}

fn ambiguous<'a>(repo: &str, origins: impl Iterator<Item = &'a FreightOrigin>) -> String {
    let names: Vec<String> = origins.map(ToString::to_string).collect();
    format!(
        "more than one requested Freight could provide an image from repository {repo} ({}): set fromOrigin",
        names.join(", ")
    )
}

/// The files to look at: `root` itself when it is a file; else every regular file below
/// it named `*.yaml`, `*.yml` or `Kustomization`, sorted, without following symbolic
/// links or entering `.git`. Paths come with their display form (`shown` joined with the
/// relative path, `/`-separated).
fn candidate_files(root: &Path, shown: &str) -> Result<Vec<(PathBuf, String)>, StepError> {
    let meta = std::fs::symlink_metadata(root)
        .map_err(|e| StepError::terminal(format!("cannot read {shown}: {e}")).with_source(e))?;
    if meta.is_file() {
        return Ok(vec![(root.to_path_buf(), shown.to_owned())]);
    }
    if !meta.is_dir() {
        return Err(StepError::terminal(format!(
            "{shown} is neither a regular file nor a directory"
        )));
    }
    let mut out = Vec::new();
    let mut todo = vec![(root.to_path_buf(), shown.trim_end_matches('/').to_owned())];
    while let Some((dir, dir_shown)) = todo.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            StepError::retryable(format!("cannot list {dir_shown}: {e}")).with_source(e)
        })?;
        let mut names: Vec<(String, std::fs::FileType)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| {
                StepError::retryable(format!("cannot list {dir_shown}: {e}")).with_source(e)
            })?;
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            names.push((entry.file_name().to_string_lossy().into_owned(), file_type));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let mut subdirs = Vec::new();
        for (name, file_type) in names {
            let child_shown = if dir_shown.is_empty() || dir_shown == "." {
                name.clone()
            } else {
                format!("{dir_shown}/{name}")
            };
            if file_type.is_dir() {
                if name != ".git" {
                    subdirs.push((dir.join(&name), child_shown));
                }
            } else if file_type.is_file()
                && (name.ends_with(".yaml") || name.ends_with(".yml") || name == "Kustomization")
            {
                out.push((dir.join(&name), child_shown));
            }
        }
        // Depth first, in name order: push the subdirectories reversed.
        todo.extend(subdirs.into_iter().rev());
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// A path as shown in outputs and messages: without a leading `./`.
fn display_path(path: &str) -> String {
    let mut p = path;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    if p.is_empty() {
        ".".to_owned()
    } else {
        p.to_owned()
    }
}

/// The commit message for `changes` (`(file, line, policy, new)`).
fn commit_message(path: &str, changes: &[(String, usize, String, String)]) -> String {
    let mut msg = format!("Updated {path} to use new image");
    if changes.len() != 1 {
        msg.push('s');
    }
    msg.push('\n');
    for (file, line, policy, new) in changes {
        msg.push_str(&format!("\n- {file}:{line} {policy}: {new}"));
    }
    msg
}

#[async_trait]
impl Step for FluxUpdateImages {
    const KIND: &'static str = "flux-update-images";
    type Config = FluxUpdateImagesConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: FluxUpdateImagesConfig,
    ) -> Result<StepOutcome, StepError> {
        check_config(&config)?;
        let requested = ctx.extensions().get::<Vec<OriginSubscriptions>>();
        let policies: BTreeMap<String, Resolution> = config
            .policies
            .iter()
            .map(|p| {
                let resolution = resolve(
                    p,
                    config.digests,
                    &ctx.freight,
                    requested.as_deref().map(Vec::as_slice),
                )
                .map_err(|e| format!("maps to repository {}: {e}", p.repo_url));
                (p.policy.clone(), resolution)
            })
            .collect();
        let shown = display_path(&config.path);
        let root = ctx.path(&config.path)?;
        let files = candidate_files(&root, &shown)?;
        let step = &ctx.alias;

        let mut writes: Vec<(PathBuf, String, String)> = Vec::new();
        let mut changes = Vec::new();
        let mut unmatched = Vec::new();
        let mut skipped = Vec::new();
        let mut message_lines = Vec::new();
        for (path, file) in files {
            let bytes = match limits::read_limited(&path, limits::MAX_STEP_FILE_BYTES) {
                Ok(b) => b,
                Err(ReadLimitError::Io(e)) => {
                    return Err(StepError::retryable(format!(
                        "step {step}: cannot read {file}: {e}"
                    ))
                    .with_source(e));
                }
                Err(e @ ReadLimitError::TooLarge { .. }) => {
                    skipped.push(json!({"file": file, "reason": e.to_string()}));
                    continue;
                }
            };
            if memchr::memmem::find(&bytes, TOKEN).is_none() {
                continue;
            }
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    skipped.push(json!({"file": file, "reason": format!("not UTF-8 text: {e}")}));
                    continue;
                }
            };
            if let Err(e) = limits::check_yaml_flow_depth(&text, limits::MAX_FLOW_DEPTH) {
                skipped.push(json!({"file": file, "reason": e.to_string()}));
                continue;
            }
            let update = match update_markers(&text, &policies) {
                Ok(u) => u,
                Err(super::edit::MarkerUpdateError::Markers(e)) => {
                    // Flux reads such files as "problem files" and goes on.
                    tracing::warn!(file = %file, error = %e, "flux-update-images: skipping a file that does not parse");
                    skipped.push(json!({"file": file, "reason": e.to_string()}));
                    continue;
                }
                Err(e) => {
                    return Err(
                        StepError::terminal(format!("step {step}: {file}: {e}")).with_source(e)
                    );
                }
            };
            for u in &update.unmatched {
                unmatched.push(json!({"file": file, "line": u.line, "policy": u.setter}));
            }
            for c in &update.changes {
                changes.push(json!({
                    "file": file,
                    "line": c.line,
                    "policy": c.setter,
                    "old": c.old,
                    "new": c.new,
                }));
                message_lines.push((file.clone(), c.line, c.setter.clone(), c.new.clone()));
            }
            if update.text != text {
                writes.push((path, file, update.text));
            }
        }
        // Every file is checked before any is written: on an error nothing changes.
        let mut written = Vec::new();
        for (path, file, text) in writes {
            write_atomically(&path, text.as_bytes()).map_err(|e| {
                StepError::retryable(format!("step {step}: cannot write {file}: {e}"))
                    .with_source(e)
            })?;
            written.push(Json::String(file));
        }
        tracing::debug!(
            path = %shown,
            changes = changes.len(),
            files = written.len(),
            unmatched = unmatched.len(),
            "flux-update-images"
        );
        Ok(StepOutcome::succeeded()
            .with_output("commitMessage", commit_message(&shown, &message_lines))
            .with_output("changes", Json::Array(changes))
            .with_output("unmatched", Json::Array(unmatched))
            .with_output("skippedFiles", Json::Array(skipped))
            .with_output("files", Json::Array(written)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kargo_core::freight::{Freight, FreightReference, Image};

    fn policy(p: &str, repo: &str) -> FluxImagePolicy {
        FluxImagePolicy {
            policy: p.to_owned(),
            repo_url: repo.to_owned(),
            digest: None,
            from_origin: None,
        }
    }

    fn config(policies: Vec<FluxImagePolicy>) -> FluxUpdateImagesConfig {
        FluxUpdateImagesConfig {
            path: "./src".to_owned(),
            digests: false,
            policies,
        }
    }

    fn config_error(c: &FluxUpdateImagesConfig) -> String {
        let e = check_config(c).unwrap_err();
        assert_eq!(e.kind, kargo_core::step::StepErrorKind::InvalidConfig);
        e.to_string()
    }

    #[test]
    fn bad_configurations_name_the_key_path() {
        assert!(check_config(&config(vec![policy("flux-system:app", "ghcr.io/a")])).is_ok());
        let mut c = config(vec![policy("flux-system:app", "ghcr.io/a")]);
        c.path = String::new();
        assert_eq!(config_error(&c), "config.path: must not be empty");
        assert_eq!(
            config_error(&config(vec![])),
            "config.policies: at least one policy is required"
        );
        for bad in ["app", "ns:app:tag", ":app", "ns:", "ns/app", "ns: app"] {
            let e = config_error(&config(vec![policy("ns:ok", "r"), policy(bad, "r")]));
            assert!(e.starts_with("config.policies[1].policy: "), "{e}");
            assert!(e.contains("NAMESPACE:NAME"), "{e}");
        }
        let e = config_error(&config(vec![policy("ns:a", "r"), policy("ns:a", "s")]));
        assert_eq!(
            e,
            "config.policies[1].policy: \"ns:a\" is already configured by policies[0]"
        );
        let e = config_error(&config(vec![policy("ns:a", " ")]));
        assert_eq!(e, "config.policies[0].repoURL: must not be empty");
        let mut p = policy("ns:a", "r");
        p.from_origin = Some(FreightOrigin::warehouse(""));
        let e = config_error(&config(vec![p]));
        assert_eq!(e, "config.policies[0].fromOrigin.name: must not be empty");
    }

    #[test]
    fn unknown_and_mistyped_fields_are_refused_with_their_path() {
        let e = kargo_core::step::decode_config::<FluxUpdateImagesConfig>(json!({
            "path": "x",
            "policies": [{"policy": "ns:a", "repoUrl": "r"}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("policies[0]"), "{e}");
        let e = kargo_core::step::decode_config::<FluxUpdateImagesConfig>(json!({
            "path": "x",
            "policies": [{"policy": "ns:a", "repoURL": "r", "digest": "yes"}]
        }))
        .unwrap_err();
        assert!(
            e.to_string().starts_with("config.policies[0].digest"),
            "{e}"
        );
        let e = kargo_core::step::decode_config::<FluxUpdateImagesConfig>(json!({
            "path": "x",
            "policies": [{"policy": "ns:a", "repoURL": "r"}],
            "digest": true
        }))
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `digest`"), "{e}");
    }

    fn freight(entries: &[(&str, &str, &str, &str)]) -> FreightCollection {
        let mut by_origin: BTreeMap<&str, Vec<Image>> = BTreeMap::new();
        for (origin, repo, tag, digest) in entries {
            by_origin.entry(origin).or_default().push(Image {
                repo_url: (*repo).to_owned(),
                tag: (*tag).to_owned(),
                digest: (*digest).to_owned(),
                ..Image::default()
            });
        }
        let mut c = FreightCollection::new();
        for (origin, images) in by_origin {
            c.insert(FreightReference::from(Freight::new(
                FreightOrigin::warehouse(origin),
                vec![],
                images,
                vec![],
                vec![],
            )));
        }
        c
    }

    #[test]
    fn images_resolve_by_origin() {
        let f = freight(&[
            ("a", "ghcr.io/x", "1.0.0", "sha256:aa"),
            ("b", "ghcr.io/x", "2.0.0", ""),
            ("b", "ghcr.io/y", "3.0.0", "sha256:cc"),
        ]);
        let y = resolve(&policy("ns:y", "ghcr.io/y"), true, &f, None).unwrap();
        assert_eq!(
            y,
            PolicyImage {
                name: "ghcr.io/y".into(),
                tag: "3.0.0".into(),
                digest: "sha256:cc".into(),
                with_digest: true
            }
        );
        let e = resolve(&policy("ns:x", "ghcr.io/x"), false, &f, None).unwrap_err();
        assert!(
            e.contains("Warehouse/a, Warehouse/b") && e.contains("fromOrigin"),
            "{e}"
        );
        let mut p = policy("ns:x", "ghcr.io/x");
        p.from_origin = Some(FreightOrigin::warehouse("b"));
        p.digest = Some(true);
        let x = resolve(&p, false, &f, None).unwrap();
        assert_eq!((x.tag.as_str(), x.with_digest), ("2.0.0", true));
        p.from_origin = Some(FreightOrigin::warehouse("c"));
        let e = resolve(&p, false, &f, None).unwrap_err();
        assert_eq!(e, "no Freight from Warehouse/c is being promoted");
        let e = resolve(&policy("ns:z", "ghcr.io/z"), false, &f, None).unwrap_err();
        assert_eq!(
            e,
            "no image from repository ghcr.io/z is in the Freight being promoted"
        );
        // The requested origins decide when the promotion knows them.
        let requested = vec![OriginSubscriptions {
            origin: FreightOrigin::warehouse("b"),
            images: vec!["ghcr.io/x".into()],
            ..OriginSubscriptions::default()
        }];
        let x = resolve(&policy("ns:x", "ghcr.io/x"), false, &f, Some(&requested)).unwrap();
        assert_eq!(x.tag, "2.0.0");
    }

    #[test]
    fn commit_message_lists_changes() {
        assert_eq!(
            commit_message("apps", &[]),
            "Updated apps to use new images\n"
        );
        assert_eq!(
            commit_message(
                "apps",
                &[("apps/d.yaml".into(), 3, "ns:a".into(), "r:1".into())]
            ),
            "Updated apps to use new image\n\n- apps/d.yaml:3 ns:a: r:1"
        );
        assert_eq!(display_path("./././a/b"), "a/b");
        assert_eq!(display_path("./"), ".");
    }
}
