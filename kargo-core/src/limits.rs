//! Size and shape limits on outside input, shared by the manifest loader and the steps
//! that read files (`yaml-*`, `json-*`, `toml-*`, `kustomize-set-image`).
//!
//! | limit | default | what happens |
//! |---|---|---|
//! | [`MAX_MANIFEST_FILE_BYTES`] | 8 MiB | a larger manifest file is an error, not read |
//! | [`MAX_STEP_FILE_BYTES`] | 32 MiB | a step refuses to read a larger file |
//! | [`MAX_FLOW_DEPTH`] | 128 | deeper `[`/`{` nesting in YAML is an error, found before parsing |
//! | [`MAX_TEMPLATE_STEPS`] | 1000 | a longer `steps` list (before and after task inflation) is an error |
//!
//! YAML aliases (billion laughs) and block nesting are bounded by the YAML parser itself
//! (`repetition limit exceeded`, `recursion limit exceeded`); JSON and TOML parsers have
//! their own nesting limits. The flow-depth pre-check exists because the YAML scanner's
//! work per token grows with the flow depth (quadratic time on `[[[[...`), long before the
//! parser's own recursion limit applies.

use std::io::Read;
use std::path::Path;

/// The largest manifest file [`crate::loader::ManifestSet`] reads: 8 MiB. A Kubernetes
/// resource is at most about 1.5 MiB (etcd's request limit), so this leaves room for a few
/// large resources per file.
pub const MAX_MANIFEST_FILE_BYTES: u64 = 8 << 20;

/// The largest file a step reads to parse or edit: 32 MiB.
pub const MAX_STEP_FILE_BYTES: u64 = 32 << 20;

/// The deepest nesting of YAML flow collections (`[...]`, `{...}`) accepted: 128, the
/// YAML parser's own recursion limit.
pub const MAX_FLOW_DEPTH: usize = 128;

/// The most steps in one `steps` list (a Stage's promotion template, a PromotionTask or a
/// ClusterPromotionTask), and in a Stage's template once its tasks are inflated: 1000.
pub const MAX_TEMPLATE_STEPS: usize = 1000;

/// Why [`read_limited`] did not return a file's bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadLimitError {
    /// The file could not be opened or read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is larger than the limit.
    #[error("the file has {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The file's size (at least `limit + 1`).
        size: u64,
        /// The limit.
        limit: u64,
    },
}

/// Reads a file of at most `limit` bytes. Larger files are refused without reading them
/// whole (the size is checked before and while reading).
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadLimitError> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(ReadLimitError::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Err(ReadLimitError::TooLarge { size: read, limit });
    }
    Ok(bytes)
}

/// YAML flow nesting deeper than [`MAX_FLOW_DEPTH`], found by [`check_yaml_flow_depth`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "flow collections (`[`, `{{`) nested deeper than {limit} levels at line {line}, column {column}"
)]
pub struct NestingError {
    /// The 1-based line of the bracket that went over the limit.
    pub line: usize,
    /// The 1-based column (in characters).
    pub column: usize,
    /// The limit.
    pub limit: usize,
}

/// Checks, without parsing, that `text` does not nest YAML flow collections deeper than
/// `limit`. JSON is YAML, so this applies to JSON documents too.
///
/// The scan is a cheap approximation of YAML's rules: quoted scalars and comments are
/// skipped, and outside flow collections a bracket only counts where a value may start
/// (line start, after `:`, `-` or `?`). Block scalars (`|`, `>`) are not recognised, so one
/// holding more than `limit` unclosed brackets at such places is refused too; nesting
/// behind anchors or tags (`&a [`) is not counted (the parser's own recursion limit still
/// applies there).
pub fn check_yaml_flow_depth(text: &str, limit: usize) -> Result<(), NestingError> {
    let mut depth = 0usize;
    let mut line = 1usize;
    let mut column = 0usize;
    // The previous character that was not a space or tab on this line (None: line start).
    let mut prev: Option<char> = None;
    // Whether the character just before was a space or tab (or the line start).
    let mut after_space = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match c {
            '\n' => {
                line += 1;
                column = 0;
                prev = None;
                after_space = true;
                continue;
            }
            ' ' | '\t' | '\r' => {
                after_space = true;
                continue;
            }
            '#' if after_space => {
                // A comment runs to the end of the line.
                for n in chars.by_ref() {
                    if n == '\n' {
                        line += 1;
                        column = 0;
                        prev = None;
                        after_space = true;
                        break;
                    }
                }
                continue;
            }
            '"' | '\'' if starts_token(prev, depth) => {
                // A quoted scalar; `\` escapes in double quotes, `''` in single quotes.
                let mut escaped = false;
                while let Some(n) = chars.next() {
                    column += 1;
                    if n == '\n' {
                        line += 1;
                        column = 0;
                    }
                    if c == '"' {
                        if escaped {
                            escaped = false;
                        } else if n == '\\' {
                            escaped = true;
                        } else if n == '"' {
                            break;
                        }
                    } else if n == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                            column += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            '[' | '{' if depth > 0 || starts_token(prev, depth) => {
                depth += 1;
                if depth > limit {
                    return Err(NestingError {
                        line,
                        column,
                        limit,
                    });
                }
            }
            ']' | '}' if depth > 0 => depth -= 1,
            _ => {}
        }
        prev = Some(c);
        after_space = false;
    }
    Ok(())
}

/// Whether a node may start after `prev` (the last non-space character on the line, `None`
/// at the line start): a quote or bracket elsewhere is inside a plain scalar.
/// Inside a flow collection, a node also starts after `[`, `{` and `,`.
fn starts_token(prev: Option<char>, depth: usize) -> bool {
    match prev {
        None | Some(':' | '-' | '?') => true,
        Some('[' | '{' | ',') => depth > 0,
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_depth_counts_real_nesting_only() {
        let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        let e = check_yaml_flow_depth(&deep, 128).unwrap_err();
        assert_eq!((e.line, e.column), (1, 4 + 128));
        let ok = format!("a: {}{}\n", "[".repeat(128), "]".repeat(128));
        assert!(check_yaml_flow_depth(&ok, 128).is_ok());
        // Brackets in plain scalars, quoted scalars and comments do not count.
        let text = format!(
            "a: x{}\nb: '{}'\nc: \"{}\\\"\"\n# {}\nd: [\"]]]\", '[[['''] # {}\n",
            "[".repeat(300),
            "[".repeat(300),
            "{".repeat(300),
            "[".repeat(300),
            "{".repeat(300)
        );
        assert!(check_yaml_flow_depth(&text, 128).is_ok(), "{text}");
        // JSON is YAML.
        let json = format!("{{\"a\": {}1{}}}", "[".repeat(129), "]".repeat(129));
        assert_eq!(check_yaml_flow_depth(&json, 128).unwrap_err().line, 1);
    }
}
