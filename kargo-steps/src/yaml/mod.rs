//! YAML steps (`yaml-update`, `yaml-parse`, `yaml-merge`) and the format-preserving
//! editor behind `yaml-update`.
//!
//! # The editor
//!
//! [`set_values`] changes scalar values in YAML text without re-serialising it: it walks
//! saphyr-parser's events (which carry source positions), tracks the mapping keys and
//! sequence indices of the first document, and splices new bytes over the old value's
//! bytes only. Everything else — comments (also one on the edited line), blank lines,
//! indentation, key order, anchors and aliases, other documents, `---` and `...`, CRLF
//! line breaks, a missing final newline — is kept byte for byte.
//!
//! A fast path comes first: a byte-level scanner for the common subset of YAML (block
//! mappings and sequences, single-line plain and quoted scalars, comments, block scalars
//! skipped by indentation, `---`/`...`, CRLF; see `fast.rs` for the exact subset). It
//! validates the whole stream and answers only when all of it is inside the subset and
//! every key path reaches a plain or quoted scalar (or an empty mapping value) of the first
//! document; otherwise — anchors, aliases, tags, non-empty flow collections, multi-line
//! scalars, block-scalar targets, any error — the saphyr path runs, unchanged and still
//! the reference. Both paths share the edit planner, and tests check they produce the same
//! bytes wherever the fast path answers.
//!
//! How a new value is written:
//!
//! | new value | old value | written as |
//! |---|---|---|
//! | string | plain `v1` | plain, unless a YAML 1.1/1.2 reader or Kargo would read it as something else (`1.10`, `true`, `on`, `~`, `2024-01-01`, `[1]`...) or it cannot be plain (`a: b`, `x #y`, leading `*`, surrounding spaces, line breaks...): then double-quoted, as Kargo does |
//! | string | `'single'` | single-quoted (`'it''s'`) unless it holds a line break or a non-printable character: then double-quoted |
//! | string | `"double"` | double-quoted, with YAML escapes |
//! | string | `\|` literal / `>` folded block | the same block style and indentation; the chomping indicator follows the new value's trailing newlines (`\|-`, `\|`, `\|+`); an explicit indentation indicator is kept. Values a block cannot hold exactly (e.g. a first line starting with a space) are double-quoted |
//! | number, boolean, `null` | any | plain (`42`, `1.5`, `true`, `null`) |
//! | object, array | any | refused |
//!
//! Every non-double-quoted encoding is checked by parsing it back before it is used.
//!
//! Differences from Kargo's `SetValuesInBytes`, all deliberate: Kargo rewrites the rest of
//! the edited line (dropping an inline comment and the old quoting, e.g. `'debug'` becomes
//! `debug`), normalises CRLF to LF and adds a final newline, keeps only the last of two
//! edits on one line (flow mappings), writes strings that are not number/bool/JSON-like
//! unquoted even when that breaks the YAML (`a: b`), and writes `null` as `<nil>` and
//! objects as Go's `map[...]`. Kargo panics on an out-of-range sequence index; here that
//! is a "not found" error.
//!
//! # Key paths
//!
//! See [`KeyPath`]: `image.tag`, `env.0.value`, `annotations.kargo\.akuity\.io/x`.

mod edit;
mod encode;
mod fast;
mod merge;
mod parse;
mod path;
mod reencode;
mod update;

pub(crate) use edit::closing_quote;
pub use edit::{YamlEditError, set_values, set_values_saphyr};
pub use merge::{YamlMerge, YamlMergeConfig};
pub use parse::{YamlParse, YamlParseConfig, YamlParseOutput};
pub use path::{KeyPath, KeyPathError};
pub(crate) use reencode::encode_like;
pub use update::{YamlUpdate, YamlUpdateConfig, YamlUpdateEntry};

use std::io::Write;
use std::path::Path;

/// Writes `contents` to `path` through a temporary file in the same directory and a
/// rename, so readers see the old file or the new one, never a part. An existing file's
/// permissions are kept; a new file gets 0600 on Unix. The directory is opened without
/// following symbolic links (see [`crate::files::fsutil::atomic_write`]).
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mode = crate::files::fsutil::mode_of(path);
    crate::files::fsutil::atomic_write(path, mode, false, |f, _| f.write_all(contents))
}

/// Reads a step's YAML file as UTF-8 text, refusing files over
/// [`MAX_STEP_FILE_BYTES`](kargo_core::limits::MAX_STEP_FILE_BYTES) and flow nesting deeper
/// than [`MAX_FLOW_DEPTH`](kargo_core::limits::MAX_FLOW_DEPTH).
pub(crate) fn read_text(path: &Path, shown: &str) -> Result<String, kargo_core::StepError> {
    use kargo_core::limits::{self, ReadLimitError};
    let text = limits::read_limited(path, limits::MAX_STEP_FILE_BYTES)
        .map_err(|e| match e {
            ReadLimitError::Io(e) => {
                kargo_core::StepError::retryable(format!("cannot read {shown}: {e}")).with_source(e)
            }
            e @ ReadLimitError::TooLarge { .. } => {
                kargo_core::StepError::terminal(format!("cannot read {shown}: {e}"))
            }
        })
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|e| {
                kargo_core::StepError::terminal(format!("{shown} is not UTF-8 text: {e}"))
            })
        })?;
    limits::check_yaml_flow_depth(&text, limits::MAX_FLOW_DEPTH).map_err(|e| {
        kargo_core::StepError::terminal(format!("cannot parse the YAML of {shown}: {e}"))
    })?;
    Ok(text)
}

/// Converts a parsed YAML value to JSON the way Kargo's `sigs.k8s.io/yaml` does: mapping
/// keys become strings (`1` → `"1"`, `true` → `"true"`, `null` → `"null"`), tags are
/// dropped, and non-finite floats and collection keys are errors.
pub(crate) fn yaml_to_json(v: yaml_serde::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    use yaml_serde::Value as Y;
    Ok(match v {
        Y::Null => J::Null,
        Y::Bool(b) => J::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                J::from(i)
            } else if let Some(u) = n.as_u64() {
                J::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                J::Number(
                    serde_json::Number::from_f64(f)
                        .ok_or_else(|| format!("the number {f} cannot be represented in JSON"))?,
                )
            }
        }
        Y::String(s) => J::String(s),
        Y::Sequence(items) => J::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Null => "null".to_owned(),
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Tagged(t) => match t.value {
                        Y::String(s) => s,
                        other => return Err(format!("unsupported mapping key {other:?}")),
                    },
                    other => return Err(format!("unsupported mapping key {other:?}")),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            J::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

/// The first document of `text`, parsed; `None` for a stream without documents.
pub(crate) fn first_document(text: &str) -> Result<Option<yaml_serde::Value>, String> {
    use serde::Deserialize;
    match yaml_serde::Deserializer::from_str(text).next() {
        None => Ok(None),
        Some(doc) => yaml_serde::Value::deserialize(doc)
            .map(Some)
            .map_err(|e| with_line(text, e.to_string())),
    }
}

/// Rewrites a reader error's ` at position <byte offset>` (invalid characters such as NUL)
/// as ` at line L column C`, like the parser's other errors.
fn with_line(text: &str, message: String) -> String {
    let Some((head, tail)) = message.rsplit_once(" at position ") else {
        return message;
    };
    let Ok(offset) = tail.trim().parse::<usize>() else {
        return message;
    };
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    format!("{head} at line {line} column {}", offset - line_start + 1)
}
