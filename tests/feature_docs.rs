//! Every feature page under `docs/features/` carries a complete manifest set: its fenced
//! ```` ```yaml ```` blocks, written together into one directory, must be accepted by
//! `promoter validate`. A page without a yaml block fails too: each page shows a manifest.
//!
//! A block whose first line is `# not a manifest` (a fragment shown for explanation) is
//! left out.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fenced ```` ```yaml ```` blocks of a Markdown page, with the line each starts on.
fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut current {
            None if trimmed.starts_with("```yaml") || trimmed.starts_with("```yml") => {
                current = Some((i + 1, String::new()));
            }
            None => {}
            Some(_) if trimmed.starts_with("```") => {
                if let Some(block) = current.take() {
                    blocks.push(block);
                }
            }
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    blocks
        .into_iter()
        .filter(|(_, b)| !b.trim_start().starts_with("# not a manifest"))
        .collect()
}

fn pages() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/features");
    let mut pages: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect(),
        Err(_) => Vec::new(),
    };
    pages.sort();
    pages
}

#[test]
fn the_block_reader_finds_blocks_and_skips_fragments() {
    let page = "text\n```yaml\na: 1\n```\n\n```bash\nls\n```\n```yaml\n# not a manifest\nb: 2\n```\n  ```yml\nc: 3\n  ```\n";
    let blocks = yaml_blocks(page);
    assert_eq!(
        blocks,
        vec![(2, "a: 1\n".to_owned()), (13, "c: 3\n".to_owned())]
    );
}

#[test]
fn every_feature_page_manifest_validates() {
    let pages = pages();
    let mut failures = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let blocks = yaml_blocks(&text);
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if blocks.is_empty() {
            failures.push(format!("{name}: no ```yaml manifest block"));
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("kargo");
        std::fs::create_dir_all(&manifests).unwrap();
        for (i, (line, body)) in blocks.iter().enumerate() {
            std::fs::write(
                manifests.join(format!("{i:02}-line-{line}.yaml")),
                body.as_bytes(),
            )
            .unwrap();
        }
        let out = Command::new(support::promoter_bin())
            .arg("--manifests")
            .arg(&manifests)
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("validate")
            .env("NO_COLOR", "1")
            .env_remove("KARGO_LOG")
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{name}: promoter validate exited {:?}:\n{}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{} feature pages validated", pages.len());
}
