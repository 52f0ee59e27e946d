//! `Chart.lock`: Helm's lock file, its digest and its exact YAML layout.
//!
//! The digest is Helm's `resolver.HashReq`: `sha256:` and the hex SHA-256 of Go's
//! `json.Marshal([2][]*chart.Dependency{chartYamlDependencies, lockedDependencies})`. Go's
//! encoder writes struct fields in declaration order (`name`, `version`, `repository`,
//! `condition`, `tags`, `enabled`, `import-values`, `alias`, empty ones omitted except
//! `name` and `repository`), escapes `<`, `>`, `&`, U+2028 and U+2029, and sorts map keys;
//! [`hash_req`] reproduces that byte for byte.
//!
//! The file is written like Helm's `sigs.k8s.io/yaml` output: keys sorted, lists not
//! indented, strings quoted only when they would not read back as strings.

use serde_json::Value as Json;

use super::chart_yaml::Dependency;

/// One locked dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedDependency {
    /// The chart name.
    pub name: String,
    /// The repository, as in `Chart.yaml`.
    pub repository: String,
    /// The exact version chosen.
    pub version: String,
}

/// A `Chart.lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartLock {
    /// The locked dependencies, in `Chart.yaml` order.
    pub dependencies: Vec<LockedDependency>,
    /// [`hash_req`] of the `Chart.yaml` dependencies and these.
    pub digest: String,
    /// When the lock was generated (RFC 3339 with nanoseconds, as Go writes it).
    pub generated: String,
}

/// Reads the `dependencies` (name, repository, version) of an existing `Chart.lock`, and
/// its `digest`.
pub fn parse_lock(text: &str) -> Result<(Vec<LockedDependency>, Option<String>), String> {
    let doc: yaml_serde::Value =
        yaml_serde::from_str(text).map_err(|e| format!("Chart.lock is not valid YAML: {e}"))?;
    let s = |v: Option<&yaml_serde::Value>| -> String {
        match v {
            Some(yaml_serde::Value::String(s)) => s.clone(),
            Some(yaml_serde::Value::Number(n)) => n.to_string(),
            Some(yaml_serde::Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        }
    };
    let deps = match doc.get("dependencies") {
        Some(yaml_serde::Value::Sequence(seq)) => seq
            .iter()
            .filter(|d| d.is_mapping())
            .map(|d| LockedDependency {
                name: s(d.get("name")),
                repository: s(d.get("repository")),
                version: s(d.get("version")),
            })
            .collect(),
        None | Some(yaml_serde::Value::Null) => Vec::new(),
        Some(_) => return Err("Chart.lock: dependencies must be a list".to_owned()),
    };
    let digest = match doc.get("digest") {
        Some(yaml_serde::Value::String(d)) => Some(d.clone()),
        _ => None,
    };
    Ok((deps, digest))
}

/// Helm's `HashReq(req, lock)`.
pub fn hash_req(req: &[Dependency], lock: &[LockedDependency]) -> String {
    let mut json = String::from("[[");
    for (i, d) in req.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        write_dependency(&mut json, d);
    }
    json.push_str("],[");
    for (i, d) in lock.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str("{\"name\":");
        go_string(&mut json, &d.name);
        if !d.version.is_empty() {
            json.push_str(",\"version\":");
            go_string(&mut json, &d.version);
        }
        json.push_str(",\"repository\":");
        go_string(&mut json, &d.repository);
        json.push('}');
    }
    json.push_str("]]");
    kargo_sources::chart::sha256_digest(json.as_bytes())
}

fn write_dependency(out: &mut String, d: &Dependency) {
    out.push_str("{\"name\":");
    go_string(out, &d.name);
    if !d.version.is_empty() {
        out.push_str(",\"version\":");
        go_string(out, &d.version);
    }
    out.push_str(",\"repository\":");
    go_string(out, &d.repository);
    if !d.condition.is_empty() {
        out.push_str(",\"condition\":");
        go_string(out, &d.condition);
    }
    if !d.tags.is_empty() {
        out.push_str(",\"tags\":[");
        for (i, t) in d.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            go_string(out, t);
        }
        out.push(']');
    }
    if d.enabled {
        out.push_str(",\"enabled\":true");
    }
    if !d.import_values.is_empty() {
        out.push_str(",\"import-values\":[");
        for (i, v) in d.import_values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            go_value(out, v);
        }
        out.push(']');
    }
    if !d.alias.is_empty() {
        out.push_str(",\"alias\":");
        go_string(out, &d.alias);
    }
    out.push('}');
}

/// A JSON value as Go's `encoding/json` writes an `interface{}` (map keys sorted).
fn go_value(out: &mut String, v: &Json) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&n.to_string()),
        Json::String(s) => go_string(out, s),
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_value(out, x);
            }
            out.push(']');
        }
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(out, k);
                out.push(':');
                if let Some(x) = m.get(k) {
                    go_value(out, x);
                }
            }
            out.push('}');
        }
    }
}

/// A string as Go's `encoding/json` writes it (with HTML escaping).
fn go_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let n = u32::from(c);
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(char::from(HEX[((n >> shift) & 0xf) as usize]));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The current time as Go's `time.Time` marshals it (RFC 3339, nanoseconds without
/// trailing zeros), in UTC.
pub fn now_rfc3339_nano() -> String {
    rfc3339_nano(chrono::Utc::now())
}

fn rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        format!("{base}Z")
    } else {
        let frac = format!("{nanos:09}");
        format!("{base}.{}Z", frac.trim_end_matches('0'))
    }
}

/// Renders a lock as Helm writes `Chart.lock`.
pub fn render_lock(lock: &ChartLock) -> String {
    let mut out = String::new();
    if lock.dependencies.is_empty() {
        out.push_str("dependencies: []\n");
    } else {
        out.push_str("dependencies:\n");
        for d in &lock.dependencies {
            out.push_str("- name: ");
            out.push_str(&yaml_scalar(&d.name));
            out.push_str("\n  repository: ");
            out.push_str(&yaml_scalar(&d.repository));
            out.push('\n');
            if !d.version.is_empty() {
                out.push_str("  version: ");
                out.push_str(&yaml_scalar(&d.version));
                out.push('\n');
            }
        }
    }
    out.push_str("digest: ");
    out.push_str(&yaml_scalar(&lock.digest));
    out.push_str("\ngenerated: ");
    out.push_str(&yaml_scalar(&lock.generated));
    out.push('\n');
    out
}

/// Whether `s`, written as a plain YAML 1.1 scalar, reads back as the string `s` (not a
/// number, boolean, null or timestamp) and is safe unquoted. Errs on the side of quoting.
pub(crate) fn plain_is_string(s: &str) -> bool {
    if s.is_empty() || s != s.trim() {
        return false;
    }
    const SPECIAL: [&str; 27] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL", "=",
    ];
    if SPECIAL.contains(&s) {
        return false;
    }
    let unsigned = s.trim_start_matches(['+', '-']).replace('_', "");
    let looks_numeric = unsigned.parse::<f64>().is_ok()
        || unsigned.parse::<u64>().is_ok()
        || ["0x", "0o", "0b"].iter().any(|p| {
            unsigned
                .strip_prefix(p)
                .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        || unsigned.starts_with('.') && unsigned.len() > 1;
    if looks_numeric {
        return false;
    }
    // Timestamps (`2006-01-02...`).
    let b = s.as_bytes();
    if b.len() >= 8 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' {
        return false;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return false;
    }
    !s.chars().any(|c| c.is_control() || c == '\u{feff}')
}

/// A string as a YAML scalar: plain when safe, else double-quoted.
fn yaml_scalar(s: &str) -> String {
    if plain_is_string(s) {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::chart_yaml::parse_dependencies;
    use super::*;

    /// Helm's own test data (pkg/chart/v2/util/testdata/import-values-from-enabled-subchart):
    /// the digest real Helm wrote for this Chart.yaml and lock.
    #[test]
    fn digest_matches_helm() {
        let chart = r#"apiVersion: v2
name: parent-chart
version: v0.1.0
appVersion: v0.1.0
dependencies:
  - name: dev
    repository: "file://envs/dev"
    version: ">= 0.0.1"
    condition: dev.enabled,global.dev.enabled
    tags:
      - dev
    import-values:
      - data

  - name: prod
    repository: "file://envs/prod"
    version: ">= 0.0.1"
    condition: prod.enabled,global.prod.enabled
    tags:
      - prod
    import-values:
      - data
"#;
        let req = parse_dependencies(chart).unwrap();
        let lock = [
            LockedDependency {
                name: "dev".into(),
                repository: "file://envs/dev".into(),
                version: "v0.1.0".into(),
            },
            LockedDependency {
                name: "prod".into(),
                repository: "file://envs/prod".into(),
                version: "v0.1.0".into(),
            },
        ];
        assert_eq!(
            hash_req(&req, &lock),
            "sha256:9403fc24f6cf9d6055820126cf7633b4bd1fed3c77e4880c674059f536346182"
        );
    }

    #[test]
    fn go_json_details() {
        let mut s = String::new();
        go_string(&mut s, "a<b>&\"\\\n\u{1}\u{2028}é");
        assert_eq!(s, r#""a\u003cb\u003e\u0026\"\\\n\u0001\u2028é""#);
        let mut s = String::new();
        go_value(
            &mut s,
            &serde_json::json!([{"parent": "p", "child": "c"}, 1, 1.5, null, true]),
        );
        assert_eq!(s, r#"[{"child":"c","parent":"p"},1,1.5,null,true]"#);
    }

    #[test]
    fn lock_layout_matches_helm() {
        let lock = ChartLock {
            dependencies: vec![
                LockedDependency {
                    name: "subchart".into(),
                    repository: "https://charts.example.com".into(),
                    version: "0.0.1".into(),
                },
                LockedDependency {
                    name: "local".into(),
                    repository: String::new(),
                    version: "1.2".into(),
                },
            ],
            digest: "sha256:8ca4".into(),
            generated: "2021-05-02T15:07:22.1099921Z".into(),
        };
        assert_eq!(
            render_lock(&lock),
            "dependencies:\n- name: subchart\n  repository: https://charts.example.com\n  version: 0.0.1\n- name: local\n  repository: \"\"\n  version: \"1.2\"\ndigest: sha256:8ca4\ngenerated: \"2021-05-02T15:07:22.1099921Z\"\n"
        );
        let (deps, digest) = parse_lock(&render_lock(&lock)).unwrap();
        assert_eq!(deps, lock.dependencies);
        assert_eq!(digest.as_deref(), Some("sha256:8ca4"));
    }

    #[test]
    fn plain_scalars() {
        for ok in [
            "1.2.3",
            "v1.2.3",
            "https://x/y",
            "oci://r/c",
            "file://../a",
            "sha256:ab",
            "name-1",
        ] {
            assert!(plain_is_string(ok), "{ok}");
        }
        for quoted in [
            "",
            "1",
            "1.2",
            "true",
            "no",
            "~",
            "0x1F",
            "1e3",
            ".5",
            "2021-05-02T15:07:22Z",
            ">=1.0",
            "a: b",
            "a #b",
            "*x",
            " a",
        ] {
            assert!(!plain_is_string(quoted), "{quoted}");
        }
    }

    #[test]
    fn go_time_format() {
        use chrono::TimeZone as _;
        let t = chrono::Utc.with_ymd_and_hms(2021, 5, 2, 15, 7, 22).unwrap();
        assert_eq!(rfc3339_nano(t), "2021-05-02T15:07:22Z");
        let t = t + chrono::Duration::nanoseconds(109_992_100);
        assert_eq!(rfc3339_nano(t), "2021-05-02T15:07:22.1099921Z");
    }
}
