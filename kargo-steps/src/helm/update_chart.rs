//! `helm-update-chart`: updates the dependencies of an umbrella chart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use kargo_core::secret::{CredentialKind, Credentials};
use kargo_core::step::{Step, StepContext, StepError, StepErrorKind, StepOutcome};
use kargo_sources::chart::archive::{self, PackageFile};
use kargo_sources::chart::version::{Constraint, Version};
use kargo_sources::chart::{
    ChartClientOptions, ChartError, ChartErrorKind, HttpChartRepository, IndexCache,
    OciChartRepository, RepoIndex, ResolvedChart, redact_url, sha256_digest,
};
use serde::Deserialize;

use super::chart_yaml::{Dependency, parse_dependencies, set_dependency_version};
use super::lock::{
    ChartLock, LockedDependency, hash_req, now_rfc3339_nano, parse_lock, render_lock,
};
use super::write_atomic;

/// Kargo's `helm-update-chart` step.
///
/// For each entry of `charts`, the dependency of `<path>/Chart.yaml` with the same `name`
/// and `repository` gets `version` (only that value changes in the file; an entry that
/// matches nothing is an error). Then, as Helm's `dependency update` does, every
/// dependency is resolved (the highest version satisfying its version or constraint:
/// from the `index.yaml` of `http(s)://` repositories, from the tags of `oci://`
/// repositories, from the chart directory of `file://` dependencies), `Chart.lock` is
/// regenerated (with Helm's digest and a `generated` time) and `charts/` gets one
/// `<name>-<version>.tgz` per dependency, outdated chart archives being removed.
///
/// When no locked version changed, `Chart.lock` is left exactly as it was and nothing
/// under `charts/` is touched except missing archives, which are fetched. Output:
/// `commitMessage`, only when some locked version changed:
///
/// ```text
/// Updated chart dependencies for <path>
///
/// - <name>: <old> -> <new>
/// ```
///
/// (one line per changed dependency, sorted by name; `- <name>: <version>` for an added
/// dependency, `- <name>: removed` for a removed one).
///
/// Credentials ([`CredentialKind::Helm`]) are asked for with the repository URL for
/// `https://` repositories and with `oci://<repository>/<name>` for OCI ones; like Kargo,
/// none are sent to plain `http://` repositories.
#[derive(Debug, Clone)]
pub struct HelmUpdateChart {
    options: ChartClientOptions,
    cache: Arc<IndexCache>,
}

impl Default for HelmUpdateChart {
    fn default() -> Self {
        Self::new(
            ChartClientOptions::default(),
            Arc::new(IndexCache::default()),
        )
    }
}

impl HelmUpdateChart {
    /// The step with these client settings and index cache (shared by its runs, so an
    /// unchanged `index.yaml` is revalidated instead of downloaded again).
    pub fn new(options: ChartClientOptions, cache: Arc<IndexCache>) -> Self {
        Self { options, cache }
    }

    /// The index cache.
    pub fn index_cache(&self) -> &Arc<IndexCache> {
        &self.cache
    }
}

/// Configuration of [`HelmUpdateChart`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmUpdateChartConfig {
    /// The umbrella chart's directory, relative to the work directory.
    pub path: String,
    /// The dependencies to update (at least one when given).
    #[serde(default)]
    pub charts: Option<Vec<ChartUpdate>>,
}

/// One dependency to update.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartUpdate {
    /// The dependency's `repository`, exactly as in `Chart.yaml`.
    pub repository: String,
    /// The dependency's `name`.
    pub name: String,
    /// The new version (or constraint).
    pub version: String,
}

fn validate(cfg: &HelmUpdateChartConfig) -> Result<(), StepError> {
    if cfg.path.is_empty() {
        return Err(StepError::invalid_config("path", "the path is empty"));
    }
    if let Some(charts) = &cfg.charts {
        if charts.is_empty() {
            return Err(StepError::invalid_config(
                "charts",
                "at least one chart is required",
            ));
        }
        for (i, c) in charts.iter().enumerate() {
            for (field, value) in [
                ("repository", &c.repository),
                ("name", &c.name),
                ("version", &c.version),
            ] {
                if value.is_empty() {
                    return Err(StepError::invalid_config(
                        format!("charts[{i}].{field}"),
                        format!("{field} is empty"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Step for HelmUpdateChart {
    const KIND: &'static str = "helm-update-chart";
    type Config = HelmUpdateChartConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: HelmUpdateChartConfig,
    ) -> Result<StepOutcome, StepError> {
        validate(&cfg)?;
        let cancel = ctx.cancellation().clone();
        tokio::select! {
            r = self.update(ctx, &cfg) => r,
            () = cancel.cancelled() => Err(StepError::new(
                StepErrorKind::Cancelled,
                "helm-update-chart was cancelled",
            )),
        }
    }
}

fn join(base: &str, rest: &str) -> String {
    format!("{}/{rest}", base.trim_end_matches('/'))
}

fn terminal(message: impl Into<String>) -> StepError {
    StepError::terminal(message)
}

fn io_error(what: &str, e: &std::io::Error) -> StepError {
    terminal(format!("{what}: {e}"))
}

fn chart_error(e: &ChartError) -> StepError {
    let kind = match e.kind() {
        ChartErrorKind::Unauthorized => StepErrorKind::Unauthorized,
        ChartErrorKind::Transient => StepErrorKind::Retryable,
        _ => StepErrorKind::Terminal,
    };
    StepError::new(kind, e.to_string())
}

/// How a dependency's archive is obtained.
enum Plan {
    /// `repository: ""`: an unpacked chart in `charts/<name>`, left alone.
    Subdir {
        name: String,
        constraint: Constraint,
    },
    /// `file://`: the chart directory `rel` is packaged.
    Local {
        rel: String,
        name: String,
        version: String,
    },
    /// `http(s)://`.
    Http {
        repository: String,
        chart: ResolvedChart,
    },
    /// `oci://`.
    Oci {
        repository: String,
        name: String,
        version: String,
    },
}

impl Plan {
    fn file_name(&self) -> Option<String> {
        match self {
            Self::Subdir { .. } => None,
            Self::Local { name, version, .. } => Some(format!("{name}-{version}.tgz")),
            Self::Http { chart, .. } => Some(format!("{}-{}.tgz", chart.name, chart.version)),
            Self::Oci { name, version, .. } => Some(format!("{name}-{version}.tgz")),
        }
    }
}

/// The repositories of one run, with their credentials, opened once each.
struct Repos<'a> {
    step: &'a HelmUpdateChart,
    ctx: &'a StepContext,
    http: HashMap<String, (HttpChartRepository, Arc<RepoIndex>)>,
    oci: HashMap<String, Arc<OciChartRepository>>,
}

impl<'a> Repos<'a> {
    fn new(step: &'a HelmUpdateChart, ctx: &'a StepContext) -> Self {
        Self {
            step,
            ctx,
            http: HashMap::new(),
            oci: HashMap::new(),
        }
    }

    async fn credentials(&self, key: &str) -> Result<Option<Credentials>, StepError> {
        self.ctx
            .credentials()
            .credentials(CredentialKind::Helm, key)
            .await
            .map_err(|e| {
                StepError::new(StepErrorKind::Unauthorized, e.to_string())
                    .context(format!("credentials for {}", redact_url(key)))
            })
    }

    async fn http(
        &mut self,
        repository: &str,
    ) -> Result<(HttpChartRepository, Arc<RepoIndex>), StepError> {
        if let Some((c, i)) = self.http.get(repository) {
            return Ok((c.clone(), i.clone()));
        }
        // Like Kargo: credentials for https:// repositories only.
        let credentials = if repository.starts_with("https://") {
            self.credentials(repository).await?
        } else {
            None
        };
        let client = HttpChartRepository::new(
            repository,
            credentials,
            &self.step.options,
            self.step.cache.clone(),
        )
        .map_err(|e| chart_error(&e))?;
        let index = client.index().await.map_err(|e| chart_error(&e))?;
        self.http
            .insert(repository.to_owned(), (client.clone(), index.clone()));
        Ok((client, index))
    }

    async fn oci(
        &mut self,
        repository: &str,
        name: &str,
    ) -> Result<Arc<OciChartRepository>, StepError> {
        let url = oci_chart_url(repository, name);
        if let Some(r) = self.oci.get(&url) {
            return Ok(r.clone());
        }
        let stripped = repository.strip_prefix("oci://").unwrap_or(repository);
        let key = format!(
            "oci://{}/{name}",
            stripped.trim_end_matches('/').to_lowercase()
        );
        let credentials = self.credentials(&key).await?;
        let repo = Arc::new(
            OciChartRepository::new(&url, credentials, &self.step.options)
                .map_err(|e| chart_error(&e))?,
        );
        self.oci.insert(url, repo.clone());
        Ok(repo)
    }
}

fn oci_chart_url(repository: &str, name: &str) -> String {
    format!("{}/{name}", repository.trim_end_matches('/'))
}

fn describe(d: &Dependency) -> String {
    format!(
        "{:?} (repository {:?}, version {:?})",
        d.name,
        redact_url(&d.repository),
        d.version
    )
}

/// Kargo's `compareChartVersions`, by name: `old -> new`, the version of an added
/// dependency, or an empty string for a removed one.
fn compare_versions(
    before: &[LockedDependency],
    after: &[LockedDependency],
) -> BTreeMap<String, String> {
    let mut old: HashMap<&str, &str> = HashMap::new();
    for d in before {
        old.insert(&d.name, &d.version);
    }
    let mut changes = BTreeMap::new();
    for d in after {
        match old.remove(d.name.as_str()) {
            Some(v) if v != d.version => {
                changes.insert(d.name.clone(), format!("{v} -> {}", d.version));
            }
            Some(_) => {}
            None => {
                changes.insert(d.name.clone(), d.version.clone());
            }
        }
    }
    for name in old.into_keys() {
        changes.insert(name.to_owned(), String::new());
    }
    changes
}

/// Kargo's commit message for the changes.
fn commit_message(path: &str, changes: &BTreeMap<String, String>) -> String {
    let mut msg = format!("Updated chart dependencies for {path}\n");
    for (name, change) in changes {
        let change = if change.is_empty() { "removed" } else { change };
        msg.push_str(&format!("\n- {name}: {change}"));
    }
    msg
}

impl HelmUpdateChart {
    async fn update(
        &self,
        ctx: &StepContext,
        cfg: &HelmUpdateChartConfig,
    ) -> Result<StepOutcome, StepError> {
        let path = cfg.path.as_str();
        let chart_dir = ctx.path(path)?;
        if !chart_dir.is_dir() {
            return Err(
                terminal(format!("chart directory {path:?} does not exist")).context("config.path")
            );
        }
        let chart_yaml_rel = join(path, "Chart.yaml");
        let chart_yaml_path = ctx.path(&chart_yaml_rel)?;
        let text = std::fs::read_to_string(&chart_yaml_path)
            .map_err(|e| io_error(&format!("cannot read {chart_yaml_rel}"), &e))?;
        let mut deps = parse_dependencies(&text)
            .map_err(|e| terminal(e.to_string()).context(chart_yaml_rel.clone()))?;
        validate_local_dependencies(ctx, path, &deps)?;

        // 1. Chart.yaml: the configured versions.
        let mut new_text = text.clone();
        let mut chart_yaml_changed = false;
        for (i, u) in cfg.charts.iter().flatten().enumerate() {
            let Some(idx) = deps
                .iter()
                .position(|d| d.name == u.name && d.repository == u.repository)
            else {
                return Err(terminal(format!(
                    "no dependency in Chart.yaml matches update with repository {:?} and name {:?}",
                    redact_url(&u.repository),
                    u.name
                ))
                .context(format!("config.charts[{i}]")));
            };
            if deps[idx].version != u.version {
                new_text = set_dependency_version(&new_text, idx, &u.version)
                    .map_err(|e| terminal(e.to_string()).context(chart_yaml_rel.clone()))?;
                deps[idx].version = u.version.clone();
                chart_yaml_changed = true;
            }
        }
        if deps.is_empty() {
            // Helm: a chart without dependencies needs no update.
            return Ok(StepOutcome::succeeded());
        }

        // 2. The current lock.
        let lock_rel = join(path, "Chart.lock");
        if std::fs::symlink_metadata(chart_dir.join("Chart.lock"))
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(terminal(format!("{lock_rel} is a symbolic link")));
        }
        let lock_path = ctx.path(&lock_rel)?;
        let old_lock = match std::fs::read_to_string(&lock_path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_error(&format!("cannot read {lock_rel}"), &e)),
        };
        let (old_locked, old_digest) = match &old_lock {
            Some(t) => parse_lock(t).map_err(|e| terminal(e).context(lock_rel.clone()))?,
            None => (Vec::new(), None),
        };

        // 3. Resolution, like Helm's resolver.
        let mut repos = Repos::new(self, ctx);
        let mut locked = Vec::with_capacity(deps.len());
        let mut plans = Vec::with_capacity(deps.len());
        let mut missing = Vec::new();
        for d in &deps {
            let constraint = Constraint::parse(&d.version).map_err(|e| {
                terminal(format!(
                    "dependency {:?} has an invalid version/constraint format: {e}",
                    d.name
                ))
            })?;
            let lock = |version: String| LockedDependency {
                name: d.name.clone(),
                repository: d.repository.clone(),
                version,
            };
            if d.repository.is_empty() {
                let rel = join(&join(path, "charts"), &d.name);
                if !ctx.path(&rel)?.is_dir() {
                    return Err(terminal(format!("directory {rel} not found")));
                }
                locked.push(lock(d.version.clone()));
                plans.push(Plan::Subdir {
                    name: d.name.clone(),
                    constraint,
                });
            } else if let Some(local) = d.repository.strip_prefix("file://") {
                let rel = join(path, local);
                let meta = read_local_chart(ctx, &rel)?;
                let v = Version::parse_lenient(&meta.version).map_err(|e| {
                    terminal(format!("dependency {:?}: {e}", d.name)).context(rel.clone())
                })?;
                if !constraint.matches(&v) {
                    missing.push(describe(d));
                    continue;
                }
                locked.push(lock(meta.version.clone()));
                plans.push(Plan::Local {
                    rel,
                    name: meta.name,
                    version: meta.version,
                });
            } else if d.repository.starts_with("oci://") {
                let version = if Version::parse_lenient(&d.version).is_ok() {
                    Some(d.version.clone())
                } else {
                    let repo = repos.oci(&d.repository, &d.name).await?;
                    let versions = repo.versions().await.map_err(|e| chart_error(&e))?;
                    versions
                        .into_iter()
                        .find(|v| Version::parse_lenient(v).is_ok_and(|v| constraint.matches(&v)))
                };
                let Some(version) = version else {
                    missing.push(describe(d));
                    continue;
                };
                locked.push(lock(version.clone()));
                plans.push(Plan::Oci {
                    repository: d.repository.clone(),
                    name: d.name.clone(),
                    version,
                });
            } else if d.repository.starts_with("https://") || d.repository.starts_with("http://") {
                let (client, index) = repos.http(&d.repository).await?;
                if index.chart(&d.name).is_none() {
                    return Err(terminal(format!(
                        "{} chart not found in repo {}",
                        d.name,
                        client.url()
                    )));
                }
                let Some(entry) = index.find(&d.name, &constraint) else {
                    missing.push(describe(d));
                    continue;
                };
                locked.push(lock(entry.version.clone()));
                plans.push(Plan::Http {
                    repository: d.repository.clone(),
                    chart: client
                        .resolved(&d.name, entry)
                        .map_err(|e| chart_error(&e))?,
                });
            } else {
                return Err(terminal(format!(
                    "dependency {:?}: repository {:?} is not supported (expected https://, http://, oci://, file:// or empty)",
                    d.name,
                    redact_url(&d.repository)
                )));
            }
        }
        if !missing.is_empty() {
            return Err(terminal(format!(
                "can't get a valid version for {} subchart(s): {}. Make sure a matching chart version exists in the repo, or change the version constraint in Chart.yaml",
                missing.len(),
                missing.join(", ")
            )));
        }
        let digest = hash_req(&deps, &locked);
        let changes = compare_versions(&old_locked, &locked);
        let write_lock = !changes.is_empty()
            || old_lock.is_none()
            || (chart_yaml_changed && old_digest.as_deref() != Some(digest.as_str()));

        // 4. Archives: fetched into memory first, written only when all succeeded.
        let charts_rel = join(path, "charts");
        let charts_dir = ctx.path(&charts_rel)?;
        let update_all = !changes.is_empty();
        let mut keep: HashSet<String> = HashSet::new();
        let mut writes: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        for plan in &plans {
            if let Plan::Subdir { name, constraint } = plan {
                check_subdir_chart(ctx, &charts_rel, name, constraint)?;
                continue;
            }
            let Some(file) = plan.file_name() else {
                continue;
            };
            if !keep.insert(file.clone()) {
                continue;
            }
            let target = ctx.path(&join(&charts_rel, &file))?;
            let existing = if target.is_file() {
                Some(
                    std::fs::read(&target)
                        .map_err(|e| io_error(&format!("cannot read {charts_rel}/{file}"), &e))?,
                )
            } else {
                None
            };
            if existing.is_some() && !update_all {
                continue;
            }
            let bytes = match plan {
                Plan::Http { repository, chart } => {
                    if let (Some(old), Some(expected)) = (&existing, &chart.digest) {
                        let expected = expected.strip_prefix("sha256:").unwrap_or(expected);
                        if sha256_digest(old)[7..].eq_ignore_ascii_case(expected) {
                            continue;
                        }
                    }
                    let (client, _) = repos.http(repository).await?;
                    client
                        .download(chart)
                        .await
                        .map_err(|e| chart_error(&e))?
                        .bytes
                }
                Plan::Oci {
                    repository,
                    name,
                    version,
                } => {
                    let repo = repos.oci(repository, name).await?;
                    if let Some(old) = &existing {
                        let layer = repo
                            .chart_layer(version)
                            .await
                            .map_err(|e| chart_error(&e))?;
                        if sha256_digest(old) == layer.digest {
                            continue;
                        }
                    }
                    repo.pull(version).await.map_err(|e| chart_error(&e))?.bytes
                }
                Plan::Local { rel, name, .. } => package_local(ctx, rel, name)?,
                Plan::Subdir { .. } => continue,
            };
            archive::read_metadata(&bytes).map_err(|e| {
                terminal(format!(
                    "the archive fetched for {charts_rel}/{file} is not a chart: {e}"
                ))
            })?;
            if existing.as_deref() == Some(bytes.as_slice()) {
                continue;
            }
            writes.push((target, bytes));
        }
        let mut deletions = Vec::new();
        if update_all {
            let local_names: HashSet<&str> = deps
                .iter()
                .filter(|d| d.repository.is_empty())
                .map(|d| d.name.as_str())
                .collect();
            deletions = outdated_archives(&charts_dir, &keep, &local_names)?;
        }

        // 5. Writes (no await from here on: a cancellation cannot split them).
        if !writes.is_empty() {
            std::fs::create_dir_all(&charts_dir)
                .map_err(|e| io_error(&format!("cannot create {charts_rel}"), &e))?;
        }
        for (target, bytes) in &writes {
            write_atomic(target, bytes)
                .map_err(|e| io_error(&format!("cannot write {}", target.display()), &e))?;
        }
        for file in &deletions {
            std::fs::remove_file(charts_dir.join(file))
                .map_err(|e| io_error(&format!("cannot remove {charts_rel}/{file}"), &e))?;
        }
        if chart_yaml_changed {
            write_atomic(&chart_yaml_path, new_text.as_bytes())
                .map_err(|e| io_error(&format!("cannot write {chart_yaml_rel}"), &e))?;
        }
        if write_lock {
            let lock = ChartLock {
                dependencies: locked,
                digest,
                generated: now_rfc3339_nano(),
            };
            write_atomic(&lock_path, render_lock(&lock).as_bytes())
                .map_err(|e| io_error(&format!("cannot write {lock_rel}"), &e))?;
        }
        tracing::info!(
            path,
            changes = changes.len(),
            archives_written = writes.len(),
            archives_removed = deletions.len(),
            chart_yaml_changed,
            lock_written = write_lock,
            "helm-update-chart"
        );
        let mut outcome = StepOutcome::succeeded();
        if !changes.is_empty() {
            outcome = outcome.with_output("commitMessage", commit_message(path, &changes));
        }
        Ok(outcome)
    }
}

/// Kargo's check of `file://` dependencies: relative paths that stay inside the work
/// directory (symbolic links included).
fn validate_local_dependencies(
    ctx: &StepContext,
    path: &str,
    deps: &[Dependency],
) -> Result<(), StepError> {
    for d in deps {
        let Some(local) = d.repository.strip_prefix("file://") else {
            continue;
        };
        let invalid =
            |why: String| terminal(format!("invalid dependency {:?}: {why}", d.repository));
        if local.starts_with('/') || std::path::Path::new(local).is_absolute() {
            return Err(invalid(format!(
                "dependency path {local:?} must be relative"
            )));
        }
        let rel = join(path, local);
        let resolved = ctx.path(&rel).map_err(|e| invalid(e.message))?;
        if !resolved.is_dir() {
            return Err(invalid(format!("directory {rel} not found")));
        }
    }
    Ok(())
}

fn read_local_chart(ctx: &StepContext, rel: &str) -> Result<archive::ChartMetadata, StepError> {
    let chart_yaml = join(rel, "Chart.yaml");
    let bytes = std::fs::read(ctx.path(&chart_yaml)?)
        .map_err(|e| io_error(&format!("cannot read {chart_yaml}"), &e))?;
    archive::parse_chart_yaml(&bytes).map_err(|e| terminal(e.to_string()).context(chart_yaml))
}

/// Helm checks that an unpacked `charts/<name>` satisfies the dependency's constraint.
fn check_subdir_chart(
    ctx: &StepContext,
    charts_rel: &str,
    name: &str,
    constraint: &Constraint,
) -> Result<(), StepError> {
    let meta = read_local_chart(ctx, &join(charts_rel, name))?;
    let ok = Version::parse_lenient(&meta.version).is_ok_and(|v| constraint.matches(&v));
    if !ok {
        return Err(terminal(format!(
            "dependency {name} at version {} does not satisfy the constraint {}",
            meta.version, constraint
        )));
    }
    Ok(())
}

/// Chart archives in `charts/` that are not wanted any more: regular files (not symbolic
/// links) that read as charts, except unpacked-dependency charts (`repository: ""`).
fn outdated_archives(
    charts_dir: &std::path::Path,
    keep: &HashSet<String>,
    local_names: &HashSet<&str>,
) -> Result<Vec<String>, StepError> {
    let entries = match std::fs::read_dir(charts_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("cannot list charts/", &e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error("cannot list charts/", &e))?;
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !file_type.is_file() || keep.contains(&name) {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else {
            continue;
        };
        match archive::read_metadata(&bytes) {
            Ok(meta) if !local_names.contains(meta.name.as_str()) => out.push(name),
            _ => {}
        }
    }
    out.sort();
    Ok(out)
}

/// The most files, bytes and directory levels packaged from a `file://` dependency.
const MAX_LOCAL_FILES: usize = 10_000;
const MAX_LOCAL_BYTES: usize = 100 << 20;
const MAX_LOCAL_DEPTH: usize = 64;

/// Packages the chart directory `rel` (every path through the work directory's sandbox,
/// honouring simple `.helmignore` patterns) as `<name>/...`.
fn package_local(ctx: &StepContext, rel: &str, name: &str) -> Result<Vec<u8>, StepError> {
    let ignore = match std::fs::read_to_string(ctx.path(&join(rel, ".helmignore"))?) {
        Ok(t) => HelmIgnore::parse(&t),
        Err(_) => HelmIgnore::default(),
    };
    let mut files = Vec::new();
    let mut total = 0usize;
    let mut dirs: Vec<(String, usize)> = vec![(String::new(), 0)];
    while let Some((sub, depth)) = dirs.pop() {
        let dir_rel = if sub.is_empty() {
            rel.to_owned()
        } else {
            join(rel, &sub)
        };
        let dir = ctx.path(&dir_rel)?;
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| io_error(&format!("cannot list {dir_rel}"), &e))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        for n in names {
            let sub_path = if sub.is_empty() {
                n.clone()
            } else {
                format!("{sub}/{n}")
            };
            let full_rel = join(rel, &sub_path);
            // Resolving through the sandbox refuses symbolic links that leave it.
            let resolved = ctx.path(&full_rel)?;
            let meta = std::fs::metadata(&resolved)
                .map_err(|e| io_error(&format!("cannot inspect {full_rel}"), &e))?;
            if ignore.ignored(&sub_path, meta.is_dir()) {
                continue;
            }
            if meta.is_dir() {
                if depth + 1 > MAX_LOCAL_DEPTH {
                    return Err(terminal(format!("{rel}: directories nest too deeply")));
                }
                dirs.push((sub_path, depth + 1));
            } else if meta.is_file() {
                let contents = std::fs::read(&resolved)
                    .map_err(|e| io_error(&format!("cannot read {full_rel}"), &e))?;
                total += contents.len();
                if files.len() >= MAX_LOCAL_FILES || total > MAX_LOCAL_BYTES {
                    return Err(terminal(format!(
                        "{rel}: the chart is too large to package"
                    )));
                }
                files.push(PackageFile {
                    path: sub_path,
                    contents,
                    mode: file_mode(&meta),
                });
            }
        }
    }
    archive::package(name, &files).map_err(|e| terminal(e.to_string()).context(rel.to_owned()))
}

#[cfg(unix)]
fn file_mode(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    meta.permissions().mode() & 0o777
}

#[cfg(not(unix))]
fn file_mode(_meta: &std::fs::Metadata) -> u32 {
    0o644
}

/// A subset of `.helmignore`: one pattern per line, `#` comments, `!` negation, a trailing
/// `/` for directories only; a pattern without `/` matches the base name, one with `/` the
/// whole relative path; `*` and `?` do not cross `/`. The last matching pattern wins.
#[derive(Debug, Default)]
struct HelmIgnore {
    rules: Vec<(String, bool, bool)>,
}

impl HelmIgnore {
    fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pat) = match line.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, line),
            };
            let (dir_only, pat) = match pat.strip_suffix('/') {
                Some(p) => (true, p),
                None => (false, pat),
            };
            let pat = pat.trim_start_matches('/');
            if !pat.is_empty() {
                rules.push((pat.to_owned(), dir_only, negate));
            }
        }
        Self { rules }
    }

    fn ignored(&self, path: &str, is_dir: bool) -> bool {
        let base = path.rsplit('/').next().unwrap_or(path);
        let mut ignored = false;
        for (pat, dir_only, negate) in &self.rules {
            if *dir_only && !is_dir {
                continue;
            }
            let subject = if pat.contains('/') { path } else { base };
            if glob_match(pat.as_bytes(), subject.as_bytes()) {
                ignored = !negate;
            }
        }
        ignored
    }
}

fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob_match(&p[1..], &s[i..])),
        Some(b'?') => s.first().is_some_and(|&c| c != b'/') && glob_match(&p[1..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob_match(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, version: &str) -> LockedDependency {
        LockedDependency {
            name: name.into(),
            repository: "r".into(),
            version: version.into(),
        }
    }

    #[test]
    fn changes_and_commit_message_like_kargo() {
        let before = [
            l("chart1", "1.0.0"),
            l("chart2", "2.0.0"),
            l("chart4", "4.0.0"),
        ];
        let after = [
            l("chart1", "1.1.0"),
            l("chart3", "3.0.0"),
            l("chart4", "4.1.0"),
        ];
        let changes = compare_versions(&before, &after);
        assert_eq!(
            commit_message("charts/mychart", &changes),
            "Updated chart dependencies for charts/mychart\n\n- chart1: 1.0.0 -> 1.1.0\n- chart2: removed\n- chart3: 3.0.0\n- chart4: 4.0.0 -> 4.1.0"
        );
        assert!(compare_versions(&after, &after).is_empty());
    }

    #[test]
    fn helmignore_subset() {
        let ig = HelmIgnore::parse("# c\n.git/\n*.tmp\n/docs/*.md\n!keep.tmp\n");
        assert!(ig.ignored(".git", true));
        assert!(!ig.ignored(".git", false));
        assert!(ig.ignored("a/b.tmp", false));
        assert!(!ig.ignored("keep.tmp", false));
        assert!(ig.ignored("docs/x.md", false));
        assert!(!ig.ignored("docs/sub/x.md", false));
        assert!(!ig.ignored("Chart.yaml", false));
    }

    #[test]
    fn config_validation() {
        let cfg = |v: serde_json::Value| -> HelmUpdateChartConfig {
            kargo_core::step::decode_config(v).unwrap()
        };
        assert!(validate(&cfg(serde_json::json!({"path": "c"}))).is_ok());
        let e = validate(&cfg(serde_json::json!({"path": ""}))).unwrap_err();
        assert_eq!(e.kind, StepErrorKind::InvalidConfig);
        let e = validate(&cfg(serde_json::json!({"path": "c", "charts": []}))).unwrap_err();
        assert!(e.to_string().contains("config.charts"), "{e}");
        let e = validate(&cfg(serde_json::json!({
            "path": "c", "charts": [{"repository": "r", "name": "n", "version": ""}]
        })))
        .unwrap_err();
        assert!(e.to_string().starts_with("config.charts[0].version"), "{e}");
        let e = kargo_core::step::decode_config::<HelmUpdateChartConfig>(serde_json::json!({
            "path": "c", "charts": [{"repository": "r", "name": "n"}]
        }))
        .unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
    }
}
