//! The `dependencies` of a `Chart.yaml`: reading them as Helm does, and changing one
//! entry's `version` in place.
//!
//! [`set_dependency_version`] is a minimal line-based edit (only the value of the matched
//! entry's `version:` line changes; quotes, comments and every other byte are kept). It is
//! the one place to swap for a general format-preserving YAML editor.

use serde_json::Value as Json;

/// Why a `Chart.yaml` could not be read or edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChartYamlError(pub String);

/// One entry of a chart's `dependencies`, with the fields Helm hashes into `Chart.lock`'s
/// digest. Strings are sanitised like Helm's `Dependency.Validate` (whitespace becomes a
/// space, control characters are dropped); absent fields are empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    /// `name`.
    pub name: String,
    /// `version` (a version or a constraint).
    pub version: String,
    /// `repository` (`https://…`, `oci://…`, `file://…` or empty).
    pub repository: String,
    /// `condition`.
    pub condition: String,
    /// `tags`.
    pub tags: Vec<String>,
    /// `enabled`.
    pub enabled: bool,
    /// `import-values`, as JSON.
    pub import_values: Vec<Json>,
    /// `alias`.
    pub alias: String,
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some(' ')
            } else if c.is_control() {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// A scalar as the string Helm's YAML decoder makes of it for a string field.
fn scalar(v: &yaml_serde::Value, field: &str, index: usize) -> Result<String, ChartYamlError> {
    match v {
        yaml_serde::Value::Null => Ok(String::new()),
        yaml_serde::Value::String(s) => Ok(sanitize(s)),
        yaml_serde::Value::Number(n) => Ok(n.to_string()),
        yaml_serde::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ChartYamlError(format!(
            "dependencies[{index}].{field} must be a string"
        ))),
    }
}

/// Reads the `dependencies` of a `Chart.yaml` (none when the key is absent or null).
pub fn parse_dependencies(text: &str) -> Result<Vec<Dependency>, ChartYamlError> {
    let doc: yaml_serde::Value = yaml_serde::from_str(text)
        .map_err(|e| ChartYamlError(format!("Chart.yaml is not valid YAML: {e}")))?;
    let deps = match doc.get("dependencies") {
        None | Some(yaml_serde::Value::Null) => return Ok(Vec::new()),
        Some(yaml_serde::Value::Sequence(s)) => s,
        Some(_) => {
            return Err(ChartYamlError(
                "Chart.yaml: dependencies must be a list".to_owned(),
            ));
        }
    };
    let mut out = Vec::with_capacity(deps.len());
    for (i, d) in deps.iter().enumerate() {
        let yaml_serde::Value::Mapping(_) = d else {
            return Err(ChartYamlError(format!(
                "Chart.yaml: dependencies[{i}] must be a mapping (dependencies must not contain empty or null nodes)"
            )));
        };
        let field = |k: &str| -> Result<String, ChartYamlError> {
            d.get(k).map_or(Ok(String::new()), |v| scalar(v, k, i))
        };
        let tags = match d.get("tags") {
            None | Some(yaml_serde::Value::Null) => Vec::new(),
            Some(yaml_serde::Value::Sequence(s)) => s
                .iter()
                .map(|t| scalar(t, "tags", i))
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ChartYamlError(format!(
                    "Chart.yaml: dependencies[{i}].tags must be a list"
                )));
            }
        };
        let enabled = match d.get("enabled") {
            None | Some(yaml_serde::Value::Null) => false,
            Some(yaml_serde::Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ChartYamlError(format!(
                    "Chart.yaml: dependencies[{i}].enabled must be a boolean"
                )));
            }
        };
        let import_values = match d.get("import-values") {
            None | Some(yaml_serde::Value::Null) => Vec::new(),
            Some(yaml_serde::Value::Sequence(s)) => s
                .iter()
                .map(|v| {
                    serde_json::to_value(v).map_err(|e| {
                        ChartYamlError(format!("Chart.yaml: dependencies[{i}].import-values: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(ChartYamlError(format!(
                    "Chart.yaml: dependencies[{i}].import-values must be a list"
                )));
            }
        };
        out.push(Dependency {
            name: field("name")?,
            version: field("version")?,
            repository: field("repository")?,
            condition: field("condition")?,
            tags,
            enabled,
            import_values,
            alias: field("alias")?,
        });
    }
    Ok(out)
}

/// Sets `dependencies[index].version` to `version` in the text of a `Chart.yaml`, changing
/// only that value: its quoting style, any trailing comment and every other byte are kept
/// (a plain value that would no longer read as a string is double-quoted). Inserts a
/// `version:` line when the entry has none. Block-style `dependencies` only; the result is
/// parsed again and checked to differ from the input in that one value.
pub fn set_dependency_version(
    text: &str,
    index: usize,
    version: &str,
) -> Result<String, ChartYamlError> {
    let before = parse_dependencies(text)?;
    if index >= before.len() {
        return Err(ChartYamlError(format!(
            "Chart.yaml has no dependencies[{index}]"
        )));
    }
    if version.contains(['\n', '\r']) {
        return Err(ChartYamlError("a version cannot span lines".to_owned()));
    }
    // The format-preserving YAML editor changes only the value's bytes (quotes, comments,
    // CRLF kept).
    let key = crate::yaml::KeyPath::parse(&format!("dependencies.{index}.version"))
        .map_err(|e| ChartYamlError(e.to_string()))?;
    let edited = match crate::yaml::set_values(
        text,
        &[(key, serde_json::Value::String(version.to_owned()))],
    ) {
        Ok(t) => t,
        // The entry has no `version:` yet (or a layout the editor refuses): insert or
        // replace the line textually.
        Err(_) => edit_lines(text, index, version)?,
    };
    let after = parse_dependencies(&edited)?;
    let mut expected = before;
    expected[index].version = sanitize(version);
    if after != expected {
        return Err(ChartYamlError(format!(
            "cannot update dependencies[{index}].version in place (unsupported layout)"
        )));
    }
    Ok(edited)
}

/// A line of the text: its bytes without the line ending, and where it starts.
struct Line<'a> {
    start: usize,
    body: &'a str,
    /// `\n` or `\r\n` (empty on a last line without one).
    ending: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in text.split_inclusive('\n') {
        let (body, ending) = if let Some(b) = piece.strip_suffix("\r\n") {
            (b, "\r\n")
        } else if let Some(b) = piece.strip_suffix('\n') {
            (b, "\n")
        } else {
            (piece, "")
        };
        out.push(Line {
            start,
            body,
            ending,
        });
        start += piece.len();
    }
    out
}

fn indent(s: &str) -> usize {
    s.len() - s.trim_start_matches(' ').len()
}

fn is_blank_or_comment(s: &str) -> bool {
    let t = s.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// `key:` at the start of `s` (after `indent` spaces): the byte offset of the value part.
fn key_value_offset(s: &str, key: &str) -> Option<usize> {
    for (k, quoted) in [
        (key.to_owned(), false),
        (format!("\"{key}\""), true),
        (format!("'{key}'"), true),
    ] {
        if let Some(rest) = s.strip_prefix(&k)
            && let Some(after) = rest.trim_start_matches([' ', '\t']).strip_prefix(':')
            && (quoted || after.is_empty() || after.starts_with([' ', '\t']))
        {
            return Some(s.len() - after.len());
        }
    }
    None
}

fn edit_lines(text: &str, index: usize, version: &str) -> Result<String, ChartYamlError> {
    let unsupported = |why: &str| {
        ChartYamlError(format!(
            "cannot update dependencies[{index}].version in place: {why}"
        ))
    };
    let ls = lines(text);
    // The top-level `dependencies:` key.
    let dep_line = ls
        .iter()
        .position(|l| indent(l.body) == 0 && key_value_offset(l.body, "dependencies").is_some())
        .ok_or_else(|| unsupported("no top-level `dependencies:` key"))?;
    let after_key = {
        let l = &ls[dep_line];
        let off = key_value_offset(l.body, "dependencies").unwrap_or(l.body.len());
        l.body[off..].trim()
    };
    if !(after_key.is_empty() || after_key.starts_with('#')) {
        return Err(unsupported("`dependencies` is not a block list"));
    }
    // The items: lines starting with `-` at the list's indentation.
    let mut dash_indent: Option<usize> = None;
    let mut items: Vec<(usize, usize)> = Vec::new(); // (first line, end line exclusive)
    let mut i = dep_line + 1;
    while i < ls.len() {
        let body = ls[i].body;
        if is_blank_or_comment(body) {
            i += 1;
            continue;
        }
        let ind = indent(body);
        let rest = &body[ind..];
        let is_dash = rest == "-" || rest.starts_with("- ") || rest.starts_with("-\t");
        match dash_indent {
            None => {
                if !is_dash {
                    break;
                }
                dash_indent = Some(ind);
                items.push((i, i + 1));
            }
            Some(d) => {
                if ind == d && is_dash {
                    items.push((i, i + 1));
                } else if ind > d {
                    if let Some(last) = items.last_mut() {
                        last.1 = i + 1;
                    }
                } else {
                    break;
                }
            }
        }
        i += 1;
    }
    let Some(d) = dash_indent else {
        return Err(unsupported("`dependencies` is empty or not a block list"));
    };
    let &(first, end) = items
        .get(index)
        .ok_or_else(|| unsupported("the list has fewer entries than the parsed file"))?;
    // The entry's keys start at the column after `- `.
    let first_body = ls[first].body;
    let after_dash = &first_body[d + 1..];
    let pad = after_dash.len() - after_dash.trim_start_matches([' ', '\t']).len();
    let inline_key = !after_dash.trim().is_empty() && !after_dash.trim_start().starts_with('#');
    let key_col = if inline_key {
        d + 1 + pad
    } else {
        (first + 1..end)
            .find(|&j| !is_blank_or_comment(ls[j].body))
            .map(|j| indent(ls[j].body))
            .ok_or_else(|| unsupported("the entry is empty"))?
    };
    if inline_key
        && (after_dash.trim_start().starts_with('{') || after_dash.trim_start().starts_with('['))
    {
        return Err(unsupported("the entry is a flow mapping"));
    }
    // Find `version:` at the key column.
    let mut target: Option<(usize, usize)> = None; // (line, value offset within body)
    for (j, line) in ls.iter().enumerate().take(end).skip(first) {
        let body = line.body;
        if j == first && !inline_key {
            continue;
        }
        if j != first && (is_blank_or_comment(body) || indent(body) != key_col) {
            continue;
        }
        let key_part = &body[key_col.min(body.len())..];
        if let Some(off) = key_value_offset(key_part, "version") {
            target = Some((j, key_col + off));
            break;
        }
    }
    let mut out = String::with_capacity(text.len() + version.len() + 16);
    match target {
        Some((j, value_at)) => {
            let body = ls[j].body;
            let value_part = &body[value_at..];
            let lead = value_part.len() - value_part.trim_start_matches([' ', '\t']).len();
            let value_start = value_at + lead;
            let rest = &body[value_start..];
            let (value_len, mut replacement) =
                replace_scalar(rest, version).map_err(unsupported)?;
            if rest.starts_with('#') {
                // `version: # comment` had no value: keep the comment a comment.
                replacement.push(' ');
            }
            let prefix = if lead == 0 && !replacement.is_empty() {
                " "
            } else {
                ""
            };
            out.push_str(&text[..ls[j].start + value_start]);
            out.push_str(prefix);
            out.push_str(&replacement);
            out.push_str(&text[ls[j].start + value_start + value_len..]);
        }
        None => {
            // Insert `version:` right after the entry's first line.
            let line = &ls[first];
            let insert_at = line.start + line.body.len() + line.ending.len();
            let ending = if line.ending.is_empty() {
                "\n"
            } else {
                line.ending
            };
            out.push_str(&text[..line.start + line.body.len()]);
            out.push_str(ending);
            out.push_str(&" ".repeat(key_col));
            out.push_str("version: ");
            out.push_str(&quote_plain_if_needed(version));
            out.push_str(line.ending);
            out.push_str(&text[insert_at..]);
        }
    }
    Ok(out)
}

/// For the value text `rest` (from the first character of the value to the end of the
/// line): the length of the scalar and its replacement in the same style.
fn replace_scalar(rest: &str, version: &str) -> Result<(usize, String), &'static str> {
    let first = rest.chars().next();
    match first {
        Some('"') => {
            let b = rest.as_bytes();
            let mut i = 1;
            while i < b.len() {
                match b[i] {
                    b'\\' => i += 2,
                    b'"' => return Ok((i + 1, double_quoted(version))),
                    _ => i += 1,
                }
            }
            Err("a double-quoted value spans lines")
        }
        Some('\'') => {
            let b = rest.as_bytes();
            let mut i = 1;
            while i < b.len() {
                if b[i] == b'\'' {
                    if b.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    return Ok((i + 1, format!("'{}'", version.replace('\'', "''"))));
                }
                i += 1;
            }
            Err("a single-quoted value spans lines")
        }
        Some('|' | '>') => Err("the value is a block scalar"),
        Some('&' | '*' | '!') => Err("the value has an anchor, alias or tag"),
        Some('{' | '[') => Err("the value is a flow collection"),
        None | Some('#') => Ok((0, quote_plain_if_needed(version))),
        Some(_) => {
            // A plain scalar ends at ` #` or the end of the line; trailing blanks are kept.
            let end = rest
                .match_indices(" #")
                .chain(rest.match_indices("\t#"))
                .map(|(i, _)| i)
                .min()
                .unwrap_or(rest.len());
            let value_len = rest[..end].trim_end_matches([' ', '\t']).len();
            Ok((value_len, quote_plain_if_needed(version)))
        }
    }
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` as a plain scalar when it reads back as that string, else double-quoted.
pub(crate) fn quote_plain_if_needed(s: &str) -> String {
    if crate::helm::lock::plain_is_string(s) {
        s.to_owned()
    } else {
        double_quoted(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHART: &str = "\
apiVersion: v2
name: umbrella # the umbrella
version: 0.1.0
dependencies:
  # first
  - name: app
    version: 1.0.0 # pinned
    repository: https://charts.example.com
  - name: db
    repository: oci://registry.example/charts
    version: \"2.0.0\"
    condition: db.enabled
    tags: [backend]
  - version: '>=3.0'
    name: cache
    repository: file://../cache
  - name: bare
    repository: ''
other:
  version: 9.9.9
";

    #[test]
    fn parses_dependencies_like_helm() {
        let deps = parse_dependencies(CHART).unwrap();
        assert_eq!(deps.len(), 4);
        assert_eq!(deps[0].name, "app");
        assert_eq!(deps[0].version, "1.0.0");
        assert_eq!(deps[1].condition, "db.enabled");
        assert_eq!(deps[1].tags, ["backend"]);
        assert_eq!(deps[2].version, ">=3.0");
        assert_eq!(deps[3].version, "");
        assert!(parse_dependencies("name: x\n").unwrap().is_empty());
        assert!(parse_dependencies("dependencies:\n- ~\n").is_err());
        assert!(parse_dependencies("dependencies: 3\n").is_err());
    }

    #[test]
    fn plain_values_keep_their_comment() {
        let out = set_dependency_version(CHART, 0, "1.1.0").unwrap();
        assert_eq!(
            out,
            CHART.replace("version: 1.0.0 # pinned", "version: 1.1.0 # pinned")
        );
    }

    #[test]
    fn quoted_values_keep_their_quotes() {
        let out = set_dependency_version(CHART, 1, "2.1.0").unwrap();
        assert_eq!(
            out,
            CHART.replace("version: \"2.0.0\"", "version: \"2.1.0\"")
        );
        let out = set_dependency_version(CHART, 2, "3.1.0").unwrap();
        assert_eq!(
            out,
            CHART.replace("- version: '>=3.0'", "- version: '3.1.0'")
        );
    }

    #[test]
    fn missing_version_is_inserted() {
        let out = set_dependency_version(CHART, 3, "0.0.1").unwrap();
        assert_eq!(
            out,
            CHART.replace("  - name: bare\n", "  - name: bare\n    version: 0.0.1\n")
        );
    }

    #[test]
    fn values_that_would_not_read_as_strings_are_quoted() {
        let out = set_dependency_version(CHART, 0, "1.2").unwrap();
        assert!(out.contains("version: \"1.2\" # pinned"), "{out}");
        let out = set_dependency_version(CHART, 0, ">= 1.0 #x").unwrap();
        assert!(out.contains("version: \">= 1.0 #x\" # pinned"), "{out}");
    }

    #[test]
    fn crlf_and_unindented_lists() {
        let text = "dependencies:\r\n- name: a\r\n  version: 1.0.0\r\n- name: b\r\n  version: 2.0.0\r\nname: x\r\n";
        let out = set_dependency_version(text, 1, "2.0.1").unwrap();
        assert_eq!(out, text.replace("2.0.0", "2.0.1"));
        let out = set_dependency_version(text, 0, "1.0.1").unwrap();
        assert_eq!(out, text.replace("1.0.0", "1.0.1"));
    }

    #[test]
    fn key_on_its_own_line_after_the_dash() {
        let text = "dependencies:\n  -\n    name: a\n    version: 1.0.0\n";
        let out = set_dependency_version(text, 0, "1.0.1").unwrap();
        assert_eq!(out, text.replace("1.0.0", "1.0.1"));
    }

    #[test]
    fn flow_and_block_layouts_use_the_yaml_editor() {
        let flow = "dependencies: [{name: a, version: 1.0.0}] # deps\n";
        assert_eq!(
            set_dependency_version(flow, 0, "2.0.0").unwrap(),
            "dependencies: [{name: a, version: 2.0.0}] # deps\n"
        );
        let block = "dependencies:\n- name: a\n  version: >-\n    1.0.0\n";
        assert_eq!(
            set_dependency_version(block, 0, "2.0.0").unwrap(),
            "dependencies:\n- name: a\n  version: >-\n    2.0.0\n"
        );
    }

    #[test]
    fn unsupported_layouts_are_errors() {
        assert!(set_dependency_version(CHART, 9, "2.0.0").is_err());
        assert!(set_dependency_version(CHART, 0, "1\n2").is_err());
    }

    #[test]
    fn empty_values_are_filled() {
        let text = "dependencies:\n- name: a\n  version:\n- name: b\n  version: # none\n";
        let out = set_dependency_version(text, 0, "1.0.1").unwrap();
        assert_eq!(out, text.replacen("version:\n", "version: 1.0.1\n", 1));
        let out = set_dependency_version(text, 1, "2.0.0").unwrap();
        assert_eq!(
            out,
            text.replace("version: # none", "version: 2.0.0 # none")
        );
    }

    #[test]
    fn nested_version_keys_are_not_touched() {
        let text =
            "dependencies:\n- name: a\n  import-values:\n  - version: keep\n  version: 1.0.0\n";
        let out = set_dependency_version(text, 0, "1.0.1").unwrap();
        assert_eq!(out, text.replace("version: 1.0.0", "version: 1.0.1"));
    }
}
