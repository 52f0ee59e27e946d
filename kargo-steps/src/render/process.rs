//! Finding and running the rendering tools, and the output helpers both steps share.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kargo_core::step::{StepContext, StepError, StepErrorKind};
use tokio::io::AsyncReadExt;

/// How the rendering steps find and run their tools.
///
/// ```
/// use std::time::Duration;
/// use kargo_steps::render::{KustomizeBuild, RenderTools};
/// let mut tools = RenderTools::default();
/// tools.search_path = Some("/opt/tools/bin".into());
/// tools.timeout = Duration::from_secs(120);
/// let step = KustomizeBuild::new(tools);
/// # let _ = step;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderTools {
    /// Directories searched for `kustomize`, `kubectl` and `helm`, in `PATH` syntax;
    /// `None` uses the process's `PATH`.
    pub search_path: Option<OsString>,
    /// The longest a tool may run before it is killed (default 10 minutes).
    pub timeout: Duration,
    /// The most a tool may print on standard output (default 100 MiB, Kargo's cap on
    /// downloaded artifacts); more is an error.
    pub max_output: usize,
}

impl Default for RenderTools {
    fn default() -> Self {
        Self {
            search_path: None,
            timeout: Duration::from_secs(600),
            max_output: 100 << 20,
        }
    }
}

impl RenderTools {
    /// The executable `name` in the search path, if there is one.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        let path = match &self.search_path {
            Some(p) => p.clone(),
            None => std::env::var_os("PATH")?,
        };
        std::env::split_paths(&path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    }

    /// Where the tools were looked for, for error messages.
    pub(crate) fn searched(&self) -> String {
        match &self.search_path {
            Some(p) => format!("in {:?}", p.to_string_lossy()),
            None => "on PATH".to_owned(),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// What a finished tool printed.
pub(crate) struct ToolOutput {
    pub(crate) stdout: Vec<u8>,
}

/// Replaces the work directory's absolute location in tool messages.
pub(crate) fn sanitize(ctx: &StepContext, message: &str) -> String {
    let root = ctx.work_dir().root().to_string_lossy().into_owned();
    if root.is_empty() {
        return message.to_owned();
    }
    message.replace(&format!("{root}/"), "").replace(&root, ".")
}

/// Runs `program` with `args` in `cwd`, without a shell, with `env` added to the
/// environment; kills it on cancellation or timeout. A non-zero exit is an error carrying
/// the end of its standard error.
pub(crate) async fn run_tool(
    ctx: &StepContext,
    tools: &RenderTools,
    program: &Path,
    args: &[OsString],
    cwd: &Path,
    env: &[(&str, &OsStr)],
) -> Result<ToolOutput, StepError> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tracing::debug!(tool = %name, args = ?args, "running");
    let mut attempt = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(child) => break child,
            // ETXTBSY: another thread's fork briefly holds the (just written) executable
            // open; try again shortly.
            Err(e) if e.raw_os_error() == Some(26) && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(StepError::terminal(format!("cannot start {name}: {e}")).with_source(e));
            }
        }
    };
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let cap = tools.max_output;
    let work = async {
        let read_out = drain(stdout.as_mut(), cap.saturating_add(1));
        let read_err = drain(stderr.as_mut(), 1 << 20);
        let (out, err) = tokio::join!(read_out, read_err);
        let (out, err) = (out?, err?);
        let status = child.wait().await?;
        Ok::<_, std::io::Error>(((out.len() <= cap).then_some(status), out, err))
    };
    let result = tokio::select! {
        r = work => r,
        () = ctx.cancellation().cancelled() => {
            return Err(StepError::new(StepErrorKind::Cancelled, format!("{name} was cancelled")));
        }
        () = tokio::time::sleep(tools.timeout) => {
            return Err(StepError::retryable(format!(
                "{name} did not finish within {}s and was killed",
                tools.timeout.as_secs()
            )));
        }
    };
    let (status, stdout, stderr) = result
        .map_err(|e| StepError::retryable(format!("cannot run {name}: {e}")).with_source(e))?;
    let Some(status) = status else {
        return Err(StepError::terminal(format!(
            "{name} printed more than {} bytes",
            tools.max_output
        )));
    };
    if !status.success() {
        let text = String::from_utf8_lossy(&stderr);
        let text = text.trim();
        let tail: String = if text.len() > 4000 {
            let start = text.len() - 4000;
            let start = (start..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            format!("...{}", &text[start..])
        } else {
            text.to_owned()
        };
        let code = status
            .code()
            .map_or_else(|| "a signal".to_owned(), |c| format!("exit code {c}"));
        return Err(StepError::retryable(format!(
            "{name} failed ({code}): {}",
            sanitize(ctx, &tail)
        )));
    }
    Ok(ToolOutput { stdout })
}

/// Reads `stream` to its end, keeping at most `keep` bytes (the rest is read and dropped,
/// so the tool never blocks on a full pipe).
async fn drain<R: tokio::io::AsyncRead + Unpin>(
    stream: Option<&mut R>,
    keep: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let Some(stream) = stream else {
        return Ok(buf);
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buf);
        }
        let room = keep.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..n.min(room)]);
    }
}

/// Splits a multi-document YAML stream the way Kubernetes' YAML reader does: a line that
/// starts with `---` followed by nothing or a comment ends a document.
pub(crate) fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut pos = 0usize;
    while pos < text.len() {
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        let line = &text[pos..line_end];
        if let Some(rest) = line.strip_prefix("---") {
            let rest = rest.trim();
            if rest.is_empty() || rest.starts_with('#') {
                docs.push(&text[start..pos]);
                start = line_end;
            }
        }
        pos = line_end;
    }
    docs.push(&text[start..]);
    docs
}

/// Kargo's check of a generated resource file name: a plain name, not `.`/`..`, no path
/// separators.
pub(crate) fn check_file_name(name: &str) -> Result<(), StepError> {
    if name.is_empty() {
        return Err(StepError::terminal("generated resource filename is empty"));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', '\\', '\0'])
        || Path::new(name).is_absolute()
    {
        return Err(StepError::terminal(format!(
            "unsafe generated resource filename {name:?}"
        )));
    }
    Ok(())
}

/// Creates `dir` (and parents) with 0700 as Kargo does.
pub(crate) fn create_dir(dir: &Path, shown: &str) -> Result<(), StepError> {
    crate::files::fsutil::create_dirs(dir, 0o700).map_err(|e| {
        StepError::terminal(format!("cannot create directory {shown:?}: {e}")).with_source(e)
    })
}

/// Writes `bytes` to `path` (temporary file + rename, so a symbolic link at `path` is
/// replaced, never followed).
pub(crate) fn write_file(path: &Path, bytes: &[u8], shown: &str) -> Result<(), StepError> {
    crate::yaml::write_atomically(path, bytes)
        .map_err(|e| StepError::terminal(format!("cannot write {shown:?}: {e}")).with_source(e))
}

/// Whether `out_path` names a single output file (`.yaml` / `.yml`).
pub(crate) fn is_file_output(out_path: &str) -> bool {
    matches!(
        Path::new(out_path).extension().and_then(OsStr::to_str),
        Some("yaml" | "yml")
    )
}

/// Refuses a directory that holds a symbolic link leading outside the work directory (a
/// tool writing below it could follow the link).
pub(crate) fn check_links_below(
    ctx: &StepContext,
    dir: &Path,
    shown: &str,
) -> Result<(), StepError> {
    let root = ctx.work_dir().root();
    let mut stack = vec![dir.to_path_buf()];
    let mut visited = 0usize;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            visited += 1;
            if visited > 100_000 {
                return Ok(());
            }
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_symlink() {
                let inside = path.canonicalize().map_or(true, |p| p.starts_with(root));
                if !inside {
                    return Err(StepError::terminal(format!(
                        "{shown:?} holds the symbolic link {:?}, which leads outside the work directory",
                        crate::files::fsutil::rel(ctx, &path)
                    )));
                }
            } else if ft.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Environment variables giving Helm empty, temporary homes under `home` (`helm-template`,
/// and `kustomize-build`'s Helm chart inflation).
pub(crate) fn helm_env(home: &Path) -> Vec<(&'static str, OsString)> {
    vec![
        ("HELM_CONFIG_HOME", home.join("config").into_os_string()),
        ("HELM_CACHE_HOME", home.join("cache").into_os_string()),
        ("HELM_DATA_HOME", home.join("data").into_os_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kubernetes_reader() {
        assert_eq!(
            split_documents("a: 1\n---\nb: 2\n--- # c\nc: 3\n---x: 1\n"),
            vec!["a: 1\n", "b: 2\n", "c: 3\n---x: 1\n"]
        );
        assert_eq!(split_documents("---\na: 1\n"), vec!["", "a: 1\n"]);
    }

    #[test]
    fn file_names() {
        assert!(check_file_name("deployment-a.yaml").is_ok());
        for bad in ["", ".", "..", "a/b.yaml", "a\\b", "/x"] {
            assert!(check_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn output_kinds() {
        assert!(is_file_output("out/all.yaml"));
        assert!(is_file_output("all.yml"));
        assert!(!is_file_output("out"));
        assert!(!is_file_output("out.yaml.d"));
    }
}
