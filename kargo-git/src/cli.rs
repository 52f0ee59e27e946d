//! Running the git binary (for push) without exposing credentials.
//!
//! HTTP credentials reach git through a credential helper script given with `-c` that only
//! names environment variables; the values live in the child's environment. SSH keys are
//! written to a private temporary directory and named in `GIT_SSH_COMMAND`. Everything the
//! child prints is scrubbed of the secret before it is used in an error or a log line.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::Git;
use crate::auth::GitAuth;
use crate::error::{GitError, GitErrorKind, Result};
use crate::mirror::Mirror;

/// A private key and known_hosts written for one operation; removed on drop.
pub(crate) struct SshSetup {
    dir: tempfile::TempDir,
    strict: bool,
}

impl SshSetup {
    pub(crate) fn new(auth: Option<&GitAuth>) -> Result<Option<Self>> {
        let Some(GitAuth::SshKey {
            private_key,
            known_hosts,
        }) = auth
        else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("kargo-ssh-")
            .tempdir()
            .map_err(|e| GitError::io("prepare ssh key", &e))?;
        let key_path = dir.path().join("id");
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(&key_path)
                .map_err(|e| GitError::io("write ssh key", &e))?;
            let mut key = private_key.expose().to_owned();
            if !key.ends_with('\n') {
                key.push('\n');
            }
            f.write_all(key.as_bytes())
                .map_err(|e| GitError::io("write ssh key", &e))?;
        }
        let strict = known_hosts.is_some();
        std::fs::write(
            dir.path().join("known_hosts"),
            known_hosts.clone().unwrap_or_default(),
        )
        .map_err(|e| GitError::io("write known_hosts", &e))?;
        if !strict {
            tracing::warn!("no known_hosts given for an SSH remote: the host key is not checked");
        }
        Ok(Some(Self { dir, strict }))
    }

    /// The `ssh` command line (paths only, no secrets).
    pub(crate) fn command(&self) -> String {
        format!(
            "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking={} -o LogLevel=ERROR",
            self.dir.path().join("id").display(),
            self.dir.path().join("known_hosts").display(),
            if self.strict { "yes" } else { "no" }
        )
    }
}

/// The git binary in `dir` with credentials for `auth` wired through env and helpers.
pub(crate) fn command(
    git: &Git,
    dir: &std::path::Path,
    auth: Option<&GitAuth>,
    ssh: Option<&SshSetup>,
) -> Command {
    let mut cmd = Command::new(&git.config.git_binary);
    cmd.current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("SSH_ASKPASS", "/bin/false")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null());
    // Reset inherited helpers, then ours (which reads the environment, never argv).
    cmd.args(["-c", "credential.helper="]);
    if let Some(GitAuth::Basic { username, password }) = auth {
        cmd.args([
            "-c",
            "credential.helper=!f() { test \"$1\" = get || exit 0; echo \"username=$KARGO_GIT_USERNAME\"; echo \"password=$KARGO_GIT_PASSWORD\"; }; f",
        ]);
        // Send the credentials with the first request instead of after a 401 (git ≥ 2.46;
        // older versions ignore the setting).
        cmd.args(["-c", "http.proactiveAuth=basic"]);
        cmd.env("KARGO_GIT_USERNAME", username)
            .env("KARGO_GIT_PASSWORD", password.expose());
    }
    if let Some(ssh) = ssh {
        cmd.env("GIT_SSH_COMMAND", ssh.command());
    }
    if git.insecure_skip_tls_verify {
        // insecureSkipTLSVerify (Git::with_insecure_skip_tls_verify).
        cmd.args(["-c", "http.sslVerify=false"]);
    }
    cmd
}

/// The result of one push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PushResult {
    /// Every ref was updated (or already up to date).
    Ok,
    /// The remote moved: fetch, re-apply, retry.
    Rejected(String),
}

/// `git push --porcelain <url> <refspecs>` from the mirror; done in-process instead
/// (`crate::local_push`) when the URL names a repository on this file system for which
/// receive-pack would do nothing but store objects and move references.
pub(crate) fn push(
    git: &Git,
    mirror: &Mirror,
    refspecs: &[String],
    force: bool,
) -> Result<PushResult> {
    if let Some(result) = crate::local_push::push(mirror, refspecs, force)? {
        return Ok(result);
    }
    let auth = mirror.auth();
    let ssh = SshSetup::new(auth.as_ref())?;
    let op = format!("push {}", mirror.display_url());
    let mut cmd = command(git, mirror.path(), auth.as_ref(), ssh.as_ref());
    cmd.arg("push").arg("--porcelain");
    if force {
        cmd.arg("--force");
    }
    cmd.arg(mirror.url()).args(refspecs);
    let out = cmd
        .output()
        .map_err(|e| GitError::new(GitErrorKind::Io, &op, format!("cannot run git: {e}")))?;
    let stdout = mirror.scrub(&String::from_utf8_lossy(&out.stdout));
    let stderr = mirror.scrub(&String::from_utf8_lossy(&out.stderr));
    tracing::debug!(status = ?out.status.code(), stdout = %stdout.trim(), stderr = %stderr.trim(), "git push");
    if out.status.success() {
        return Ok(PushResult::Ok);
    }
    // `already exists`: a tag pushed without force that the remote has with another target
    // (reported on stdout with `--porcelain`, so it needs its own match).
    let rejected = stdout.lines().chain(stderr.lines()).any(|l| {
        l.contains("[rejected]")
            && (l.contains("fetch first")
                || l.contains("non-fast-forward")
                || l.contains("already exists"))
    }) || stderr.contains("[rejected]")
        || stderr.contains("failed to update ref")
        || stderr.contains("cannot lock ref");
    if rejected {
        return Ok(PushResult::Rejected(first_meaningful(&stdout, &stderr)));
    }
    Err(GitError::classify(op, first_meaningful(&stdout, &stderr)))
}

fn first_meaningful(stdout: &str, stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Done" && !l.starts_with("To "))
        .collect();
    if lines.is_empty() {
        "git push failed".to_owned()
    } else {
        lines.join("; ")
    }
}
