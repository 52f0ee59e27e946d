//! `helm-template`: renders a Helm chart with the `helm` binary.

use std::ffi::OsString;

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::process::{
    RenderTools, check_file_name, check_links_below, create_dir, helm_env, is_file_output,
    run_tool, split_documents, write_file,
};

/// Kargo's `helm-template` step: renders the chart in `path` as `helm template` does and
/// writes the manifests to `outPath`.
///
/// The step runs `helm template <releaseName> <path>` with the configured options:
/// `--namespace` (`namespace`, else the project, as Kargo), `--values` per existing values
/// file (a missing one is an error unless `ignoreMissingValueFiles`), `--set` /
/// `--set-literal` per `setValues` entry (merged after the files, as Kargo),
/// `--include-crds`, `--no-hooks` (`disableHooks`), `--skip-tests`, `--kube-version`,
/// `--api-versions`. With `buildDependencies`, `helm dependency build <path>` runs first
/// (no repository credentials are configured; public repositories only).
///
/// Output layout, as Kargo:
///
/// * `outPath` ending in `.yaml`/`.yml`: one file with the manifests, then the hooks
///   (unless `disableHooks`; test hooks left out with `skipTests`) — exactly what
///   `helm template` prints;
/// * `outLayout: helm` (default) and a directory: Helm's own `--output-dir` layout,
///   `<outPath>/<chart name>/templates/...` (`<release name>` instead of the chart name
///   with `useReleaseName`);
/// * `outLayout: flat` and a directory: one file per resource in `outPath`, named
///   `[group-]kind[-namespace]-name.yaml` (lower-cased, dots of the group as `_`), holding
///   the resource's document (with its `# Source:` comment) trimmed of surrounding white
///   space, as Kargo writes it. A resource without kind or name goes to `resource-<n>.yaml`
///   (Kargo numbers them all 0, so later ones overwrite earlier ones; here they are
///   numbered in order).
///
/// A missing `helm` binary is an error naming it. Helm runs with temporary, empty
/// configuration, cache and data directories.
#[derive(Debug, Clone, Default)]
pub struct HelmTemplate {
    tools: RenderTools,
}

impl HelmTemplate {
    /// The step with its tool settings.
    pub fn new(tools: RenderTools) -> Self {
        Self { tools }
    }
}

/// Configuration of [`HelmTemplate`].
///
/// ```yaml
/// uses: helm-template
/// config:
///   path: ./src/charts/app            # the chart directory
///   releaseName: app
///   outPath: ./out/app                # a directory, or a .yaml/.yml file
///   outLayout: flat                   # helm (default) | flat
///   useReleaseName: false             # helm layout: <outPath>/<release name>/...
///   namespace: prod                   # default: the project
///   valuesFiles: [./src/env/prod/values.yaml]
///   ignoreMissingValueFiles: true
///   setValues:
///   - key: image.tag
///     value: ${{ imageFrom("ghcr.io/acme/app").Tag }}
///   - key: podAnnotations.checksum
///     value: "0123"
///     literal: true                   # --set-literal
///   buildDependencies: false
///   includeCRDs: true
///   disableHooks: false
///   skipTests: true
///   kubeVersion: "1.31.0"
///   apiVersions: [monitoring.coreos.com/v1]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmTemplateConfig {
    /// The chart directory (`path: ./charts/app`).
    pub path: String,
    /// Where the manifests go: a `.yaml`/`.yml` file, else a directory
    /// (`outPath: ./out/app`).
    pub out_path: String,
    /// The release name (`releaseName: app`).
    pub release_name: String,
    /// The directory layout (`outLayout: flat`); default `helm`.
    #[serde(default)]
    pub out_layout: Option<HelmOutLayout>,
    /// Use the release name instead of the chart name in the `helm` layout
    /// (`useReleaseName: true`).
    #[serde(default)]
    pub use_release_name: bool,
    /// The release namespace; default: the project (`namespace: prod`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Values files, merged in order (`valuesFiles: [values-prod.yaml]`).
    #[serde(default)]
    pub values_files: Vec<String>,
    /// Skip values files that do not exist (`ignoreMissingValueFiles: true`).
    #[serde(default)]
    pub ignore_missing_value_files: bool,
    /// Inline values, as `--set` (`setValues: [{key: image.tag, value: "1.2"}]`).
    #[serde(default)]
    pub set_values: Vec<HelmSetValue>,
    /// Run `helm dependency build` first (`buildDependencies: true`).
    #[serde(default)]
    pub build_dependencies: bool,
    /// Render the chart's CRDs too (`includeCRDs: true`).
    #[serde(default, rename = "includeCRDs")]
    pub include_crds: bool,
    /// Leave hooks out (`disableHooks: true`).
    #[serde(default)]
    pub disable_hooks: bool,
    /// Leave test hooks out (`skipTests: true`).
    #[serde(default)]
    pub skip_tests: bool,
    /// The Kubernetes version Helm reports (`kubeVersion: "1.31.0"`).
    #[serde(default)]
    pub kube_version: Option<String>,
    /// API versions Helm reports as available (`apiVersions: [batch/v1]`).
    #[serde(default)]
    pub api_versions: Vec<String>,
}

/// The directory layout of [`HelmTemplateConfig::out_layout`].
///
/// ```yaml
/// outLayout: flat
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HelmOutLayout {
    /// Helm's `--output-dir` layout (`outLayout: helm`, the default).
    #[default]
    Helm,
    /// One file per resource in `outPath` (`outLayout: flat`).
    Flat,
}

/// One `setValues` entry.
///
/// ```yaml
/// key: image.tag
/// value: "1.2.3"
/// literal: false   # true: --set-literal (no type inference, no escapes)
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmSetValue {
    /// The dotted key (`key: image.tag`).
    pub key: String,
    /// The value (`value: "1.2.3"`).
    pub value: String,
    /// Pass it with `--set-literal` instead of `--set` (`literal: true`).
    #[serde(default)]
    pub literal: bool,
}

/// Kargo's flat-layout file name: `[group-]kind[-namespace]-name.yaml`.
fn flat_name(doc: &str) -> Option<String> {
    let v: yaml_serde::Value = yaml_serde::from_str(doc).ok()?;
    fn s(v: Option<&yaml_serde::Value>) -> &str {
        v.and_then(|v| v.as_str()).unwrap_or_default()
    }
    let api_version = s(v.get("apiVersion"));
    let kind = s(v.get("kind"));
    let metadata = v.get("metadata");
    let name = s(metadata.and_then(|m| m.get("name")));
    let namespace = s(metadata.and_then(|m| m.get("namespace")));
    if kind.is_empty() || name.is_empty() {
        return None;
    }
    let mut file = kind.to_owned();
    if let Some((group, _)) = api_version.rsplit_once('/') {
        file = format!("{}-{file}", group.replace('.', "_"));
    }
    if !namespace.is_empty() {
        file = format!("{file}-{namespace}");
    }
    Some(format!("{file}-{name}.yaml").to_lowercase())
}

#[async_trait]
impl Step for HelmTemplate {
    const KIND: &'static str = "helm-template";
    type Config = HelmTemplateConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: HelmTemplateConfig,
    ) -> Result<StepOutcome, StepError> {
        for (field, value) in [
            ("path", &config.path),
            ("outPath", &config.out_path),
            ("releaseName", &config.release_name),
        ] {
            if value.is_empty() {
                return Err(StepError::invalid_config(field, "must not be empty"));
            }
        }
        for (i, s) in config.set_values.iter().enumerate() {
            if s.key.is_empty() {
                return Err(StepError::invalid_config(
                    format!("setValues[{i}].key"),
                    "must not be empty",
                ));
            }
        }
        let chart = ctx.path(&config.path)?;
        let out = ctx.path(&config.out_path)?;
        let mut values = Vec::with_capacity(config.values_files.len());
        for (i, v) in config.values_files.iter().enumerate() {
            if v.is_empty() {
                return Err(StepError::invalid_config(
                    format!("valuesFiles[{i}]"),
                    "must not be empty",
                ));
            }
            let p = ctx.path(v)?;
            if config.ignore_missing_value_files && !p.exists() {
                tracing::debug!(values = %v, "missing values file skipped");
                continue;
            }
            values.push(p);
        }
        let helm = self.tools.find("helm").ok_or_else(|| {
            StepError::terminal(format!(
                "helm-template needs the `helm` binary, which was not found {}",
                self.tools.searched()
            ))
        })?;
        let home = tempfile::tempdir().map_err(|e| {
            StepError::terminal(format!("cannot create a temporary Helm home: {e}"))
        })?;
        let env_owned = helm_env(home.path());
        let env: Vec<(&str, &std::ffi::OsStr)> =
            env_owned.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let root = ctx.work_dir().root();

        if config.build_dependencies {
            let args: Vec<OsString> = vec![
                "dependency".into(),
                "build".into(),
                chart.clone().into_os_string(),
            ];
            run_tool(ctx, &self.tools, &helm, &args, root, &env)
                .await
                .map_err(|e| e.context("failed to build chart dependencies"))?;
        }

        let file_output = is_file_output(&config.out_path);
        let layout = config.out_layout.unwrap_or_default();
        let mut args: Vec<OsString> = vec![
            "template".into(),
            config.release_name.clone().into(),
            chart.clone().into_os_string(),
        ];
        let namespace = config
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| ctx.project.clone());
        if !namespace.is_empty() {
            args.push("--namespace".into());
            args.push(namespace.into());
        }
        for v in &values {
            args.push("--values".into());
            args.push(v.clone().into_os_string());
        }
        for s in &config.set_values {
            args.push(if s.literal { "--set-literal" } else { "--set" }.into());
            args.push(format!("{}={}", s.key, s.value).into());
        }
        if config.include_crds {
            args.push("--include-crds".into());
        }
        if config.disable_hooks {
            args.push("--no-hooks".into());
        }
        if config.skip_tests {
            args.push("--skip-tests".into());
        }
        if let Some(v) = config.kube_version.as_deref().filter(|v| !v.is_empty()) {
            args.push("--kube-version".into());
            args.push(v.into());
        }
        for v in &config.api_versions {
            args.push("--api-versions".into());
            args.push(v.into());
        }
        let helm_layout = !file_output && layout == HelmOutLayout::Helm;
        if helm_layout {
            create_dir(&out, &config.out_path)?;
            check_links_below(ctx, &out, &config.out_path)?;
            args.push("--output-dir".into());
            args.push(out.clone().into_os_string());
            if config.use_release_name {
                args.push("--release-name".into());
            }
        }
        let output = run_tool(ctx, &self.tools, &helm, &args, root, &env)
            .await
            .map_err(|e| e.context("failed to render chart"))?;
        if helm_layout {
            tracing::debug!(out = %config.out_path, "helm-template (helm layout)");
            return Ok(StepOutcome::succeeded());
        }
        if file_output {
            if let Some(parent) = out.parent() {
                create_dir(parent, &config.out_path)?;
            }
            write_file(&out, &output.stdout, &config.out_path)?;
            tracing::debug!(out = %config.out_path, bytes = output.stdout.len(), "helm-template");
            return Ok(StepOutcome::succeeded());
        }
        let text = String::from_utf8(output.stdout).map_err(|e| {
            StepError::terminal(format!("the rendered manifests are not UTF-8: {e}"))
        })?;
        let mut files: Vec<(String, &str)> = Vec::new();
        let mut unnamed = 0usize;
        for doc in split_documents(&text) {
            let doc = doc.trim();
            if doc.is_empty() {
                continue;
            }
            let name = flat_name(doc).unwrap_or_else(|| {
                let n = format!("resource-{unnamed}.yaml");
                unnamed += 1;
                n
            });
            check_file_name(&name)?;
            files.push((name, doc));
        }
        if !files.is_empty() {
            create_dir(&out, &config.out_path)?;
            check_links_below(ctx, &out, &config.out_path)?;
        }
        for (name, doc) in &files {
            write_file(&out.join(name), doc.as_bytes(), name)?;
        }
        tracing::debug!(out = %config.out_path, files = files.len(), "helm-template (flat)");
        Ok(StepOutcome::succeeded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_match_kargo() {
        assert_eq!(
            flat_name(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: Web\n  namespace: prod\n"
            )
            .as_deref(),
            Some("apps-deployment-prod-web.yaml")
        );
        assert_eq!(
            flat_name("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n").as_deref(),
            Some("service-web.yaml")
        );
        assert_eq!(
            flat_name("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: a\n")
                .as_deref(),
            Some("networking_k8s_io-ingress-a.yaml")
        );
        assert_eq!(flat_name("# Source: x\nfoo: bar\n"), None);
    }
}
