//! Chart archives: gzipped tars with one top-level directory holding `Chart.yaml`.

use std::io::Read;

/// Why an archive could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chart archive: {0}")]
pub struct ArchiveError(pub String);

/// The fields of a `Chart.yaml` that dependency handling needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartMetadata {
    /// `name`.
    pub name: String,
    /// `version`.
    pub version: String,
}

/// The largest `Chart.yaml` read from an archive.
const MAX_CHART_YAML: u64 = 1 << 20;

/// The most entries inspected while looking for `Chart.yaml`.
const MAX_ENTRIES: usize = 100_000;

/// Parses the `name` and `version` of a `Chart.yaml`.
pub fn parse_chart_yaml(text: &[u8]) -> Result<ChartMetadata, ArchiveError> {
    let value: yaml_serde::Value = yaml_serde::from_slice(text)
        .map_err(|e| ArchiveError(format!("Chart.yaml is not valid YAML: {e}")))?;
    let field = |k: &str| -> Option<String> {
        match value.get(k)? {
            yaml_serde::Value::String(s) => Some(s.clone()),
            yaml_serde::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let name = field("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ArchiveError("Chart.yaml has no name".to_owned()))?;
    let version = field("version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ArchiveError("Chart.yaml has no version".to_owned()))?;
    Ok(ChartMetadata { name, version })
}

/// Reads the metadata of a chart archive: the `Chart.yaml` directly below its top-level
/// directory.
pub fn read_metadata(tgz: &[u8]) -> Result<ChartMetadata, ArchiveError> {
    let gz = flate2::read::GzDecoder::new(tgz);
    let mut tar = tar::Archive::new(gz);
    let entries = tar
        .entries()
        .map_err(|e| ArchiveError(format!("not a gzipped tar: {e}")))?;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ENTRIES {
            break;
        }
        let entry = entry.map_err(|e| ArchiveError(format!("not a gzipped tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| ArchiveError(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        if parts.len() == 2 && parts[1] == "Chart.yaml" && entry.header().entry_type().is_file() {
            let mut buf = Vec::new();
            entry
                .take(MAX_CHART_YAML)
                .read_to_end(&mut buf)
                .map_err(|e| ArchiveError(e.to_string()))?;
            return parse_chart_yaml(&buf);
        }
    }
    Err(ArchiveError(
        "no <chart>/Chart.yaml in the archive".to_owned(),
    ))
}

/// A file to package: its path relative to the chart directory (`/`-separated), its
/// contents and its Unix mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageFile {
    /// The path inside the chart, e.g. `templates/cm.yaml`.
    pub path: String,
    /// The contents.
    pub contents: Vec<u8>,
    /// The Unix permission bits (e.g. `0o644`).
    pub mode: u32,
}

/// Packages chart files into a gzipped tar below the directory `chart_name/`, as
/// `helm package` lays archives out. The output is deterministic: files sorted by path,
/// zero timestamps and owners.
pub fn package(chart_name: &str, files: &[PackageFile]) -> Result<Vec<u8>, ArchiveError> {
    if chart_name.is_empty() || chart_name.contains('/') || chart_name == ".." {
        return Err(ArchiveError(format!("invalid chart name {chart_name:?}")));
    }
    let mut sorted: Vec<&PackageFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for f in sorted {
        if f.path
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(ArchiveError(format!("invalid file path {:?}", f.path)));
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(f.contents.len() as u64);
        header.set_mode(f.mode & 0o7777);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(
            &mut header,
            format!("{chart_name}/{}", f.path),
            f.contents.as_slice(),
        )
        .map_err(|e| ArchiveError(format!("cannot add {}: {e}", f.path)))?;
    }
    let gz = tar
        .into_inner()
        .map_err(|e| ArchiveError(format!("cannot finish the archive: {e}")))?;
    gz.finish()
        .map_err(|e| ArchiveError(format!("cannot finish the archive: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_and_read_back() {
        let files = vec![
            PackageFile {
                path: "templates/cm.yaml".into(),
                contents: b"kind: ConfigMap\n".to_vec(),
                mode: 0o644,
            },
            PackageFile {
                path: "Chart.yaml".into(),
                contents: b"apiVersion: v2\nname: demo\nversion: 1.2.3\n".to_vec(),
                mode: 0o644,
            },
        ];
        let a = package("demo", &files).unwrap();
        let b = package("demo", &files).unwrap();
        assert_eq!(a, b, "packaging is deterministic");
        assert_eq!(
            read_metadata(&a).unwrap(),
            ChartMetadata {
                name: "demo".into(),
                version: "1.2.3".into()
            }
        );
        assert!(read_metadata(b"not gzip").is_err());
        let no_chart = package("demo", &files[..1]).unwrap();
        assert!(
            read_metadata(&no_chart)
                .unwrap_err()
                .0
                .contains("no <chart>/Chart.yaml")
        );
        assert!(
            package(
                "demo",
                &[PackageFile {
                    path: "../x".into(),
                    contents: vec![],
                    mode: 0o644
                }]
            )
            .is_err()
        );
        assert!(package("a/b", &files).is_err());
    }

    #[test]
    fn chart_yaml_fields() {
        assert!(parse_chart_yaml(b"name: x\n").is_err());
        assert!(parse_chart_yaml(b"version: 1.0.0\n").is_err());
        assert_eq!(
            parse_chart_yaml(b"name: x\nversion: 1.0\n")
                .unwrap()
                .version,
            "1.0"
        );
    }
}
