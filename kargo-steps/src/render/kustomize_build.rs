//! `kustomize-build`: renders a Kustomization with the `kustomize` binary (else
//! `kubectl kustomize`).

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use kargo_core::step::{Step, StepContext, StepError, StepOutcome};
use serde::Deserialize;

use super::process::{
    RenderTools, check_file_name, create_dir, is_file_output, run_tool, split_documents, write_file,
};
use crate::files::fsutil::rel;
use crate::kustomize::KUSTOMIZATION_FILE_NAMES;

/// Kargo's `kustomize-build` step: renders the Kustomization in `path` and writes the
/// manifests to `outPath`.
///
/// The build runs `kustomize build <path>` when a `kustomize` binary is found, else
/// `kubectl kustomize <path>`, with Kargo's settings: exec/function plugins off (the
/// binaries' default), the builtin Helm chart inflator on (`--enable-helm`, using the
/// `helm` binary when one is found, with `plugin.helm`'s API versions and Kubernetes
/// version), and loading of files outside a Kustomization's own directory allowed
/// (`--load-restrictor LoadRestrictionsNone`). Kargo confines that to the work directory
/// with a chroot-like file system; a separate binary cannot be confined, so before the
/// build the step follows the local references of the Kustomization and of every local
/// Kustomization it includes (`resources`, `components`, `bases`, `crds`, patch, generator,
/// replacement, configuration and Helm values files...) and refuses any that leads outside
/// the work directory (after resolving symbolic links). Remote references (URLs) are left to
/// the tool.
///
/// Output: an `outPath` ending in `.yaml`/`.yml` receives the whole stream as the tool
/// printed it. Any other `outPath` is a directory (created if needed) receiving one file
/// per resource, named by `outputFormat`:
///
/// * `kargo` (default): `[namespace-]kind-name.yaml`, lower-cased;
/// * `kustomize`: `group_version_kind_name.yaml` (empty parts left out), lower-cased, with
///   a `namespace_` prefix when the resources span more than one namespace — the names
///   `kustomize build -o dir/` uses.
///
/// Each file holds the resource as kustomize printed it (Kargo re-serialises it with keys
/// sorted; the content is the same). A tool that is not installed, a failed build and a
/// refused reference are errors; nothing is written then.
#[derive(Debug, Clone, Default)]
pub struct KustomizeBuild {
    tools: RenderTools,
}

impl KustomizeBuild {
    /// The step with its tool settings.
    pub fn new(tools: RenderTools) -> Self {
        Self { tools }
    }
}

/// Configuration of [`KustomizeBuild`].
///
/// ```yaml
/// uses: kustomize-build
/// config:
///   path: ./src/env/prod           # directory holding the Kustomization
///   outPath: ./out/prod            # a directory, or a .yaml/.yml file
///   outputFormat: kargo            # kargo (default) | kustomize
///   plugin:
///     helm:
///       kubeVersion: "1.31.0"
///       apiVersions: [monitoring.coreos.com/v1]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeBuildConfig {
    /// The directory holding the Kustomization (`path: ./env/prod`).
    pub path: String,
    /// Where the manifests go: a `.yaml`/`.yml` file, else a directory
    /// (`outPath: ./out/prod.yaml`).
    pub out_path: String,
    /// File naming when `outPath` is a directory (`outputFormat: kustomize`).
    #[serde(default)]
    pub output_format: Option<KustomizeOutputFormat>,
    /// Settings of kustomize's builtin plugins (`plugin: {helm: {kubeVersion: "1.31"}}`).
    #[serde(default)]
    pub plugin: Option<KustomizePluginConfig>,
}

/// File naming of a directory output.
///
/// ```yaml
/// outputFormat: kustomize
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KustomizeOutputFormat {
    /// `[namespace-]kind-name.yaml` (`outputFormat: kargo`, the default).
    #[default]
    Kargo,
    /// `[namespace_]group_version_kind_name.yaml` (`outputFormat: kustomize`).
    Kustomize,
}

/// Settings of kustomize's builtin plugins.
///
/// ```yaml
/// plugin:
///   helm:
///     kubeVersion: "1.31.0"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizePluginConfig {
    /// The Helm chart inflator (`helm: {apiVersions: [...], kubeVersion: ...}`).
    #[serde(default)]
    pub helm: Option<KustomizeHelmPluginConfig>,
}

/// Settings of kustomize's Helm chart inflator.
///
/// ```yaml
/// apiVersions: [monitoring.coreos.com/v1]
/// kubeVersion: "1.31.0"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeHelmPluginConfig {
    /// API versions Helm reports as available (`apiVersions: [batch/v1]`).
    #[serde(default)]
    pub api_versions: Vec<String>,
    /// The Kubernetes version Helm reports (`kubeVersion: "1.31.0"`).
    #[serde(default)]
    pub kube_version: Option<String>,
}

/// Kinds that are not namespaced (for `kustomize` naming, as kustomize's builtin schema).
const CLUSTER_SCOPED: [&str; 34] = [
    "APIService",
    "CSIDriver",
    "CSINode",
    "CertificateSigningRequest",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterTrustBundle",
    "ComponentStatus",
    "CustomResourceDefinition",
    "DeviceClass",
    "FlowSchema",
    "IPAddress",
    "IngressClass",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "MutatingWebhookConfiguration",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PodSecurityPolicy",
    "PriorityClass",
    "PriorityLevelConfiguration",
    "ResourceSlice",
    "RuntimeClass",
    "SelfSubjectAccessReview",
    "SelfSubjectReview",
    "SelfSubjectRulesReview",
    "ServiceCIDR",
    "StorageClass",
    "StorageVersion",
    "SubjectAccessReview",
    "TokenReview",
    "ValidatingAdmissionPolicy",
    "ValidatingWebhookConfiguration",
];

/// The identity of a rendered resource.
#[derive(Debug, Default)]
struct Meta {
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
}

fn meta_of(doc: &str) -> Option<Meta> {
    let v: yaml_serde::Value = yaml_serde::from_str(doc).ok()?;
    let s =
        |v: Option<&yaml_serde::Value>| v.and_then(|v| v.as_str()).unwrap_or_default().to_owned();
    let metadata = v.get("metadata");
    Some(Meta {
        api_version: s(v.get("apiVersion")),
        kind: s(v.get("kind")),
        name: s(metadata.and_then(|m| m.get("name"))),
        namespace: s(metadata.and_then(|m| m.get("namespace"))),
    })
}

fn name_kargo(m: &Meta) -> String {
    if m.namespace.is_empty() {
        format!("{}-{}.yaml", m.kind, m.name).to_lowercase()
    } else {
        format!("{}-{}-{}.yaml", m.namespace, m.kind, m.name).to_lowercase()
    }
}

fn name_kustomize(m: &Meta, multiple_namespaces: bool) -> String {
    let (group, version) = match m.api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", m.api_version.as_str()),
    };
    let gvk: Vec<&str> = [group, version, m.kind.as_str()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    let base = format!(
        "{}_{}.yaml",
        gvk.join("_").to_lowercase(),
        m.name.to_lowercase()
    );
    if multiple_namespaces && !m.namespace.is_empty() && !CLUSTER_SCOPED.contains(&m.kind.as_str())
    {
        format!("{}_{base}", m.namespace.to_lowercase())
    } else {
        base
    }
}

/// The Kustomization file of `dir`, following symbolic links.
fn kustomization_in(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The local paths a Kustomization refers to.
fn references(k: &yaml_serde::Value) -> Vec<String> {
    use yaml_serde::Value as Y;
    let mut out = Vec::new();
    let strings = |v: Option<&Y>, out: &mut Vec<String>| {
        if let Some(Y::Sequence(items)) = v {
            for i in items {
                if let Some(s) = i.as_str() {
                    out.push(s.to_owned());
                }
            }
        }
    };
    let string = |v: Option<&Y>, out: &mut Vec<String>| {
        if let Some(s) = v.and_then(Y::as_str) {
            out.push(s.to_owned());
        }
    };
    for key in [
        "resources",
        "components",
        "bases",
        "crds",
        "configurations",
        "transformers",
        "generators",
        "validators",
        "patchesStrategicMerge",
    ] {
        strings(k.get(key), &mut out);
    }
    for key in ["patches", "patchesJson6902", "replacements"] {
        if let Some(Y::Sequence(items)) = k.get(key) {
            for i in items {
                string(i.get("path"), &mut out);
            }
        }
    }
    string(k.get("openapi").and_then(|o| o.get("path")), &mut out);
    string(
        k.get("helmGlobals").and_then(|h| h.get("chartHome")),
        &mut out,
    );
    if let Some(Y::Sequence(charts)) = k.get("helmCharts") {
        for c in charts {
            string(c.get("valuesFile"), &mut out);
            strings(c.get("additionalValuesFiles"), &mut out);
        }
    }
    for key in ["configMapGenerator", "secretGenerator"] {
        if let Some(Y::Sequence(gens)) = k.get(key) {
            for g in gens {
                let mut files = Vec::new();
                strings(g.get("files"), &mut files);
                out.extend(files.into_iter().map(|f| match f.split_once('=') {
                    Some((_, path)) => path.to_owned(),
                    None => f,
                }));
                strings(g.get("envs"), &mut out);
                string(g.get("env"), &mut out);
            }
        }
    }
    // Inline patches and transformer configurations are not paths.
    out.retain(|s| !s.contains('\n') && !s.trim().is_empty());
    out
}

fn is_remote(reference: &str) -> bool {
    reference.contains("://")
        || reference.starts_with("git@")
        || reference.starts_with("github.com/")
        || reference.starts_with("gitlab.com/")
        || reference.starts_with("bitbucket.org/")
        || reference.contains("?ref=")
}

/// `base` joined with `reference` and folded lexically; `None` if it climbs above `/`.
fn lexical_join(base: &Path, reference: &str) -> Option<PathBuf> {
    let joined = base.join(reference);
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// Follows the local references of the Kustomization in `dir` (and of the Kustomizations
/// it includes), refusing any that leads outside the work directory.
fn check_references(ctx: &StepContext, dir: &Path) -> Result<(), StepError> {
    let root = ctx.work_dir().root();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut queue = vec![dir.to_path_buf()];
    while let Some(dir) = queue.pop() {
        if !seen.insert(dir.clone()) || seen.len() > 10_000 {
            continue;
        }
        let Some(file) = kustomization_in(&dir) else {
            continue;
        };
        let shown = rel(ctx, &file);
        let inside = |p: &Path| p.canonicalize().map(|c| c.starts_with(root));
        if !inside(&file).unwrap_or(false) {
            return Err(StepError::terminal(format!(
                "the Kustomization {shown:?} leads outside the work directory"
            )));
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(Some(k)) = crate::yaml::first_document(&text) else {
            continue;
        };
        for reference in references(&k) {
            if is_remote(&reference) {
                continue;
            }
            let refused = || {
                StepError::terminal(format!(
                    "{shown} refers to {reference:?}, which leads outside the work directory"
                ))
            };
            let Some(target) = lexical_join(&dir, &reference) else {
                return Err(refused());
            };
            match inside(&target) {
                Ok(true) => {
                    if let Ok(canonical) = target.canonicalize()
                        && canonical.is_dir()
                    {
                        queue.push(canonical);
                    }
                }
                Ok(false) => return Err(refused()),
                // Missing: kustomize reports it; only a lexical escape is refused here.
                Err(_) if !target.starts_with(root) => return Err(refused()),
                Err(_) => {}
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Step for KustomizeBuild {
    const KIND: &'static str = "kustomize-build";
    type Config = KustomizeBuildConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        config: KustomizeBuildConfig,
    ) -> Result<StepOutcome, StepError> {
        if config.path.is_empty() {
            return Err(StepError::invalid_config("path", "must not be empty"));
        }
        if config.out_path.is_empty() {
            return Err(StepError::invalid_config("outPath", "must not be empty"));
        }
        let dir = ctx.path(&config.path)?;
        let out = ctx.path(&config.out_path)?;
        if kustomization_in(&dir).is_none() {
            return Err(StepError::terminal(format!(
                "could not find any Kustomization files in {:?}",
                config.path
            )));
        }
        check_references(ctx, &dir)?;

        let helm = self.tools.find("helm");
        let mut args: Vec<OsString> = Vec::new();
        let program = if let Some(k) = self.tools.find("kustomize") {
            args.push("build".into());
            k
        } else if let Some(k) = self.tools.find("kubectl") {
            args.push("kustomize".into());
            k
        } else {
            return Err(StepError::terminal(format!(
                "kustomize-build needs the `kustomize` or the `kubectl` binary; neither was found {}",
                self.tools.searched()
            )));
        };
        args.push(dir.clone().into_os_string());
        args.push("--load-restrictor=LoadRestrictionsNone".into());
        args.push("--enable-helm".into());
        if let Some(h) = &helm {
            let mut flag = OsString::from("--helm-command=");
            flag.push(h);
            args.push(flag);
        }
        if let Some(h) = config.plugin.as_ref().and_then(|p| p.helm.as_ref()) {
            for v in &h.api_versions {
                args.push(format!("--helm-api-versions={v}").into());
            }
            if let Some(v) = h.kube_version.as_deref().filter(|v| !v.is_empty()) {
                args.push(format!("--helm-kube-version={v}").into());
            }
        }
        let helm_home = tempfile::tempdir().map_err(|e| {
            StepError::terminal(format!("cannot create a temporary Helm home: {e}"))
        })?;
        let env = super::process::helm_env(helm_home.path());
        let env: Vec<(&str, &std::ffi::OsStr)> =
            env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let output = run_tool(
            ctx,
            &self.tools,
            &program,
            &args,
            ctx.work_dir().root(),
            &env,
        )
        .await
        .map_err(|e| e.context(format!("kustomize-build {:?}", config.path)))?;
        let text = String::from_utf8(output.stdout).map_err(|e| {
            StepError::terminal(format!("the rendered manifests are not UTF-8: {e}"))
        })?;

        if is_file_output(&config.out_path) {
            if let Some(parent) = out.parent() {
                create_dir(parent, &config.out_path)?;
            }
            write_file(&out, text.as_bytes(), &config.out_path)?;
            tracing::debug!(out = %config.out_path, bytes = text.len(), "kustomize-build");
            return Ok(StepOutcome::succeeded());
        }

        let format = config.output_format.unwrap_or_default();
        let docs: Vec<(&str, Meta)> = split_documents(&text)
            .into_iter()
            .filter(|d| !d.trim().is_empty())
            .map(|d| (d, meta_of(d).unwrap_or_default()))
            .collect();
        let namespaces: BTreeSet<&str> = docs
            .iter()
            .filter(|(_, m)| !CLUSTER_SCOPED.contains(&m.kind.as_str()))
            .map(|(_, m)| {
                if m.namespace.is_empty() {
                    "default"
                } else {
                    m.namespace.as_str()
                }
            })
            .collect();
        let multiple = namespaces.len() > 1;
        let mut files = Vec::with_capacity(docs.len());
        for (doc, meta) in &docs {
            let name = match format {
                KustomizeOutputFormat::Kargo => name_kargo(meta),
                KustomizeOutputFormat::Kustomize => name_kustomize(meta, multiple),
            };
            check_file_name(&name)?;
            files.push((name, *doc));
        }
        create_dir(&out, &config.out_path)?;
        super::process::check_links_below(ctx, &out, &config.out_path)?;
        for (name, doc) in &files {
            write_file(&out.join(name), doc.as_bytes(), name)?;
        }
        tracing::debug!(out = %config.out_path, files = files.len(), "kustomize-build");
        Ok(StepOutcome::succeeded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(api: &str, kind: &str, name: &str, ns: &str) -> Meta {
        Meta {
            api_version: api.into(),
            kind: kind.into(),
            name: name.into(),
            namespace: ns.into(),
        }
    }

    #[test]
    fn file_names_match_kargo() {
        assert_eq!(
            name_kargo(&meta("apps/v1", "Deployment", "MyApp", "")),
            "deployment-myapp.yaml"
        );
        assert_eq!(
            name_kargo(&meta("v1", "Service", "web", "Prod")),
            "prod-service-web.yaml"
        );
        assert_eq!(
            name_kustomize(&meta("apps/v1", "Deployment", "myapp", "prod"), false),
            "apps_v1_deployment_myapp.yaml"
        );
        assert_eq!(
            name_kustomize(&meta("v1", "Service", "web", "prod"), true),
            "prod_v1_service_web.yaml"
        );
        assert_eq!(
            name_kustomize(
                &meta("rbac.authorization.k8s.io/v1", "ClusterRole", "r", ""),
                true
            ),
            "rbac.authorization.k8s.io_v1_clusterrole_r.yaml"
        );
    }

    #[test]
    fn references_of_a_kustomization() {
        let k: yaml_serde::Value = yaml_serde::from_str(
            "resources: [../base, https://github.com/x/y]\npatches:\n- path: p.yaml\n- patch: |\n    a: 1\nconfigMapGenerator:\n- files: [k=conf.txt, other.txt]\n  envs: [e.env]\nhelmCharts:\n- valuesFile: v.yaml\n",
        )
        .unwrap();
        assert_eq!(
            references(&k),
            vec![
                "../base",
                "https://github.com/x/y",
                "p.yaml",
                "v.yaml",
                "conf.txt",
                "other.txt",
                "e.env"
            ]
        );
        assert!(is_remote("https://github.com/x/y"));
        assert!(!is_remote("../base"));
    }
}
