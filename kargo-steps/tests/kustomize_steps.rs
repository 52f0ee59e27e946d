//! Tests of `kustomize-set-image` (golden corpus, a seeded property test of the `images:`
//! editor, path safety), `kustomize-build` (through `kustomize` or `kubectl kustomize`) and
//! `helm-template` (the real `helm` when installed; a stand-in script otherwise).
//!
//! Golden cases live in `tests/fixtures/kustomize/<case>/`: `input.yaml` (written as
//! `kustomization.yaml`, or as the name in `filename.txt`), `config.yaml` (the step's
//! configuration without `path`, which is `.`), optionally `freight.yaml` (a list of
//! `{warehouse, images}`), and either `expected.yaml` + `message.txt` (compared byte for
//! byte) or `error.txt` (a substring of the expected error). `BLESS=1 cargo test -p
//! kargo-steps --test kustomize_steps` rewrites `expected.yaml` and `message.txt` from the
//! step's output (review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kargo_core::expr::OriginSubscriptions;
use kargo_core::freight::{Freight, FreightCollection, FreightOrigin, FreightReference, Image};
use kargo_core::step::{DynStep, StepContext, StepErrorKind};
use kargo_core::workdir::WorkDir;
use kargo_steps::KustomizeSetImage;
use kargo_steps::kustomize::{KustomizeImage, set_images};
use serde_json::{Value as Json, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kustomize")
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn run(
    step: &dyn DynStep,
    ctx: &StepContext,
    config: Json,
) -> Result<kargo_core::StepOutcome, kargo_core::StepError> {
    rt().block_on(step.run_json(ctx, config))
}

fn ctx_for(dir: &Path) -> StepContext {
    StepContext::new(WorkDir::new(dir).unwrap())
}

#[derive(serde::Deserialize)]
struct FreightFixture {
    warehouse: String,
    images: Vec<Image>,
}

fn freight_collection(items: Vec<(&str, Vec<Image>)>) -> FreightCollection {
    let mut c = FreightCollection::new();
    for (warehouse, images) in items {
        let f = Freight::new(
            FreightOrigin::warehouse(warehouse),
            vec![],
            images,
            vec![],
            vec![],
        );
        c.insert(FreightReference::from(f));
    }
    c
}

fn image(repo: &str, tag: &str, digest: &str) -> Image {
    Image {
        repo_url: repo.to_owned(),
        tag: tag.to_owned(),
        digest: digest.to_owned(),
        ..Image::default()
    }
}

struct Case {
    name: String,
    dir: PathBuf,
    input: String,
    config: Json,
    freight: FreightCollection,
    filename: String,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let config: Json = yaml_serde::from_str(&read("config.yaml").unwrap()).unwrap();
        let freight = match read("freight.yaml") {
            None => FreightCollection::new(),
            Some(text) => {
                let items: Vec<FreightFixture> = yaml_serde::from_str(&text).unwrap();
                freight_collection(
                    items
                        .iter()
                        .map(|f| (f.warehouse.as_str(), f.images.clone()))
                        .collect(),
                )
            }
        };
        out.push(Case {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            input: read("input.yaml").unwrap(),
            config,
            freight,
            filename: read("filename.txt").unwrap_or_else(|| "kustomization.yaml".to_owned()),
            dir,
        });
    }
    assert!(out.len() >= 25, "fixtures missing");
    out
}

/// The image-related key a changed line may hold.
fn is_image_line(line: &str) -> bool {
    let t = line.trim_start().trim_start_matches('-').trim_start();
    [
        "name:",
        "newName:",
        "newTag:",
        "digest:",
        "tagSuffix:",
        "images:",
        "{name:",
    ]
    .iter()
    .any(|k| t.starts_with(k))
}

/// Every document field except `images` is unchanged (an oracle independent of the
/// editor's own check).
fn others_unchanged(before: &str, after: &str) -> bool {
    let strip = |t: &str| -> Json {
        use serde::Deserialize;
        let v = match yaml_serde::Deserializer::from_str(t).next() {
            Some(d) => yaml_serde::Value::deserialize(d).unwrap(),
            None => yaml_serde::Value::Null,
        };
        let mut j: Json = serde_json::to_value(v).unwrap();
        if let Some(m) = j.as_object_mut() {
            m.remove("images");
        }
        if j.is_null() { json!({}) } else { j }
    };
    strip(before) == strip(after)
}

fn images_of(text: &str) -> Vec<Json> {
    let v: Json =
        serde_json::to_value(yaml_serde::from_str::<yaml_serde::Value>(text).unwrap()).unwrap();
    v.get("images")
        .and_then(|i| i.as_array())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn golden_corpus() {
    let bless = std::env::var_os("BLESS").is_some();
    for case in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join(&case.filename);
        std::fs::write(&file, &case.input).unwrap();
        let mut ctx = ctx_for(tmp.path());
        ctx.freight = case.freight.clone();
        let mut config = case.config.clone();
        config["path"] = json!(".");
        let result = run(&KustomizeSetImage, &ctx, config);
        let after = std::fs::read_to_string(&file).unwrap();
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            vec![case.filename.clone()],
            "{}: stray files",
            case.name
        );
        if let Ok(expected_error) = std::fs::read_to_string(case.dir.join("error.txt")) {
            let e = result.expect_err(&case.name);
            assert!(
                e.to_string().contains(expected_error.trim_end()),
                "{}: {e}",
                case.name
            );
            assert_eq!(
                after, case.input,
                "{}: the file changed on error",
                case.name
            );
            continue;
        }
        let outcome = result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let msg = outcome.outputs.get("commitMessage").and_then(Json::as_str);
        if bless {
            std::fs::write(case.dir.join("expected.yaml"), &after).unwrap();
            std::fs::write(case.dir.join("message.txt"), msg.unwrap_or_default()).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(case.dir.join("expected.yaml")).unwrap();
        assert_eq!(after, expected, "{}", case.name);
        let expected_msg = std::fs::read_to_string(case.dir.join("message.txt")).unwrap();
        assert_eq!(msg.unwrap_or_default(), expected_msg, "{}", case.name);
        // Only image lines changed, nothing else in the document did.
        let diff = similar::TextDiff::from_lines(&case.input, &after);
        for change in diff.iter_all_changes() {
            if change.tag() != similar::ChangeTag::Equal {
                assert!(
                    is_image_line(change.value()),
                    "{}: unexpected change {:?}",
                    case.name,
                    change.value()
                );
            }
        }
        assert!(others_unchanged(&case.input, &after), "{}", case.name);
        // Line breaks are the input's.
        if case.input.contains("\r\n") {
            assert_eq!(
                after.matches('\n').count(),
                after.matches("\r\n").count(),
                "{}: LF in a CRLF file",
                case.name
            );
        }
        // Applying the same configuration again changes nothing.
        let again = run(&KustomizeSetImage, &ctx, {
            let mut c = case.config.clone();
            c["path"] = json!(".");
            c
        });
        assert!(again.is_ok(), "{}", case.name);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            after,
            "{}: not idempotent",
            case.name
        );
    }
}

#[test]
fn commit_message_lists_kargos_merged_images() {
    // Kargo's message lists the configured image and every other entry of the file.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        "images:\n- name: b\n  newTag: \"1\"\n- name: a\n  newName: x/a\n  digest: sha256:1\n",
    )
    .unwrap();
    let out = run(
        &KustomizeSetImage,
        &ctx_for(tmp.path()),
        json!({"path": ".", "images": [{"image": "c", "tag": "2"}]}),
    )
    .unwrap();
    assert_eq!(
        out.outputs["commitMessage"],
        json!("Updated . to use new images\n\n- x/a@sha256:1\n- b:1\n- c:2")
    );
}

#[test]
fn automatic_mode_without_images_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let text = "kind: Kustomization\nresources:\n- a.yaml\n";
    std::fs::write(tmp.path().join("kustomization.yaml"), text).unwrap();
    let out = run(
        &KustomizeSetImage,
        &ctx_for(tmp.path()),
        json!({"path": "."}),
    )
    .unwrap();
    assert!(out.outputs.get("commitMessage").is_none());
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("kustomization.yaml")).unwrap(),
        text
    );
}

#[test]
fn automatic_mode_uses_requested_subscriptions_when_available() {
    // Kargo's rule: two requested Warehouses subscribing to one repository are ambiguous,
    // even when only one Freight carries it.
    let tmp = tempfile::tempdir().unwrap();
    let text = "kind: Kustomization\n";
    std::fs::write(tmp.path().join("kustomization.yaml"), text).unwrap();
    let mut ctx = ctx_for(tmp.path());
    ctx.freight = freight_collection(vec![("a", vec![image("nginx", "1.27.0", "")])]);
    let subs = |w: &str, repos: &[&str]| OriginSubscriptions {
        origin: FreightOrigin::warehouse(w),
        images: repos.iter().map(|r| (*r).to_owned()).collect(),
        ..OriginSubscriptions::default()
    };
    ctx.extensions()
        .get_or_insert_with(|| vec![subs("a", &["nginx"]), subs("b", &["redis", "nginx"])]);
    let e = run(&KustomizeSetImage, &ctx, json!({"path": "."})).unwrap_err();
    assert_eq!(
        e.to_string(),
        "manual configuration required due to ambiguous result: multiple requested Freight could potentially provide a container image from repository nginx"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("kustomization.yaml")).unwrap(),
        text
    );

    // Without the conflict the Freight images are written.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("kustomization.yaml"), text).unwrap();
    let mut ctx = ctx_for(tmp.path());
    ctx.freight = freight_collection(vec![("a", vec![image("nginx", "1.27.0", "sha256:1")])]);
    ctx.extensions()
        .get_or_insert_with(|| vec![subs("a", &["nginx"]), subs("b", &["redis"])]);
    let out = run(&KustomizeSetImage, &ctx, json!({"path": "."})).unwrap();
    assert_eq!(
        out.outputs["commitMessage"],
        json!("Updated . to use new image\n\n- nginx:1.27.0@sha256:1")
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("kustomization.yaml")).unwrap(),
        "kind: Kustomization\nimages:\n- name: nginx\n  newTag: 1.27.0\n  digest: sha256:1\n"
    );
}

#[test]
fn config_errors_are_invalid_config() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        "kind: Kustomization\n",
    )
    .unwrap();
    let ctx = ctx_for(tmp.path());
    for (config, needle) in [
        (json!({"path": ""}), "config.path"),
        (
            json!({"path": ".", "images": [{"image": ""}]}),
            "images[0].image",
        ),
        (
            json!({"path": ".", "images": [{"image": "a"}]}),
            "exactly one of",
        ),
        (
            json!({"path": ".", "images": [{"image": "a", "tag": "1", "bogus": 1}]}),
            "unknown field",
        ),
    ] {
        let e = run(&KustomizeSetImage, &ctx, config).unwrap_err();
        assert_eq!(e.kind, StepErrorKind::InvalidConfig, "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }
}

#[test]
fn several_kustomization_files_are_ambiguous() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        "kind: Kustomization\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("Kustomization"), "kind: Kustomization\n").unwrap();
    let e = run(
        &KustomizeSetImage,
        &ctx_for(tmp.path()),
        json!({"path": ".", "images": [{"image": "a", "tag": "1"}]}),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("ambiguous result: found multiple Kustomization files in \".\": kustomization.yaml, Kustomization"),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn path_safety() {
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("kustomization.yaml");
    let text = "kind: Kustomization\n";
    std::fs::write(&outside_file, text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("env")).unwrap();
    std::os::unix::fs::symlink(outside.path(), tmp.path().join("link")).unwrap();
    // A Kustomization that is a symbolic link (even to a file outside) is not considered.
    std::os::unix::fs::symlink(&outside_file, tmp.path().join("env/kustomization.yaml")).unwrap();
    let ctx = ctx_for(tmp.path());
    let images = json!([{"image": "nginx", "tag": "1.27.0"}]);
    let abs = outside.path().to_string_lossy().into_owned();
    for (path, needle) in [
        ("../x", "leads outside the work directory"),
        ("env/../../x", "leads outside the work directory"),
        (abs.as_str(), "absolute paths are not allowed"),
        (
            "link",
            "symbolic link \"link\" leads outside the work directory",
        ),
        ("env", "could not find any Kustomization files in \"env\""),
    ] {
        let e = run(
            &KustomizeSetImage,
            &ctx,
            json!({"path": path, "images": images}),
        )
        .unwrap_err();
        assert!(e.to_string().contains(needle), "{path}: {e}");
        assert!(
            !e.to_string().contains(&*tmp.path().to_string_lossy()),
            "{path}: the error shows the work directory: {e}"
        );
    }
    assert_eq!(std::fs::read_to_string(&outside_file).unwrap(), text);
    let listing: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert_eq!(listing.len(), 1);
}

#[test]
fn keeps_file_permissions() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("kustomization.yaml");
        std::fs::write(&file, "kind: Kustomization\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        run(
            &KustomizeSetImage,
            &ctx_for(tmp.path()),
            json!({"path": ".", "images": [{"image": "a", "tag": "1"}]}),
        )
        .unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }
}

// ---------------------------------------------------------------------------------------
// A seeded property test of the editor: random layouts and targets, checked against an
// independent model of Kargo's merge.

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMES: [&str; 8] = [
    "nginx",
    "redis",
    "ghcr.io/acme/api",
    "alpine",
    "postgres",
    "registry.local:5000/team/app",
    "busybox",
    "quay.io/x/y",
];
const TAGS: [&str; 6] = ["1.27.0", "1.10", "7", "latest", "v2.0.0-rc.1", "true"];

fn quote(rng: &mut Lcg, s: &str) -> String {
    match rng.pick(3) {
        0 => format!("\"{s}\""),
        1 => format!("'{s}'"),
        _ => {
            // Plain only where it reads back as the same string.
            if s.parse::<f64>().is_ok() || s == "true" {
                format!("\"{s}\"")
            } else {
                s.to_owned()
            }
        }
    }
}

/// A random Kustomization and the entries its `images:` holds (name → fields).
fn random_kustomization(rng: &mut Lcg) -> (String, BTreeMap<String, BTreeMap<String, String>>) {
    let eol = if rng.chance(30) { "\r\n" } else { "\n" };
    let seq_indent = if rng.chance(50) { "  " } else { "" };
    let comment = |rng: &mut Lcg, text: &str| {
        if rng.chance(30) {
            format!(" # {text}")
        } else {
            String::new()
        }
    };
    let mut lines: Vec<String> = vec!["apiVersion: kustomize.config.k8s.io/v1beta1".into()];
    if rng.chance(40) {
        lines.push("# leading comment".into());
    }
    lines.push(format!("kind: Kustomization{}", comment(rng, "kind")));
    let mut fields: Vec<Vec<String>> = vec![vec![
        "resources:".into(),
        format!("{seq_indent}- deployment.yaml"),
    ]];
    let mut model = BTreeMap::new();
    if rng.chance(80) {
        let mut block = vec![format!("images:{}", comment(rng, "images"))];
        let mut names: Vec<&str> = NAMES.to_vec();
        let n = rng.pick(5);
        let mut chosen = Vec::new();
        for _ in 0..n {
            let i = rng.pick(names.len());
            chosen.push(names.remove(i));
        }
        if rng.chance(50) {
            chosen.sort_unstable();
        }
        let flow = rng.chance(15);
        for name in chosen {
            let mut entry = BTreeMap::new();
            entry.insert("name".to_owned(), name.to_owned());
            let mut kv = vec![("name", quote(rng, name))];
            if rng.chance(30) {
                let v = format!("mirror.local/{}", name.rsplit('/').next().unwrap());
                entry.insert("newName".into(), v.clone());
                kv.push(("newName", quote(rng, &v)));
            }
            if rng.chance(70) {
                let t = TAGS[rng.pick(TAGS.len())];
                entry.insert("newTag".into(), t.to_owned());
                kv.push(("newTag", quote(rng, t)));
            }
            if rng.chance(30) {
                entry.insert("digest".into(), "sha256:0ld".into());
                kv.push(("digest", quote(rng, "sha256:0ld")));
            }
            if rng.chance(15) {
                let j = rng.pick(kv.len());
                let moved = kv.remove(j);
                kv.push(moved);
            }
            if flow {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                block.push(format!(
                    "{seq_indent}- {{{}}}{}",
                    body.join(", "),
                    comment(rng, "e")
                ));
            } else {
                for (i, (k, v)) in kv.iter().enumerate() {
                    let lead = if i == 0 {
                        format!("{seq_indent}- ")
                    } else {
                        format!("{seq_indent}  ")
                    };
                    block.push(format!("{lead}{k}: {v}{}", comment(rng, k)));
                    if rng.chance(10) {
                        block.push(format!("{seq_indent}  # between keys"));
                    }
                }
            }
            model.insert(name.to_owned(), entry);
        }
        if block.len() == 1 && rng.chance(50) {
            block[0] = "images: []".into();
        }
        fields.push(block);
    }
    fields.push(vec!["namePrefix: demo-".into()]);
    let k = rng.pick(fields.len());
    let f = fields.remove(k);
    fields.push(f);
    for f in fields {
        lines.extend(f);
    }
    let mut text = lines.join(eol);
    if rng.chance(85) {
        text.push_str(eol);
    }
    (text, model)
}

#[test]
fn editor_property_test() {
    let mut rng = Lcg(0x5eed_cafe);
    for iteration in 0..2000 {
        let (text, mut model) = random_kustomization(&mut rng);
        let mut targets = BTreeMap::new();
        for _ in 0..(1 + rng.pick(3)) {
            let name = NAMES[rng.pick(NAMES.len())];
            let mut t = KustomizeImage::new(name);
            match rng.pick(4) {
                0 => t.digest = "sha256:new".into(),
                1 => t.new_tag = "*".into(),
                _ => t.new_tag = TAGS[rng.pick(TAGS.len())].into(),
            }
            if rng.chance(30) {
                t.new_name = if rng.chance(50) {
                    "*".into()
                } else {
                    "n.io/x".into()
                };
            }
            if rng.chance(20) && t.digest.is_empty() {
                t.digest = "sha256:both".into();
            }
            targets.insert(name.to_owned(), t);
        }
        let out = match set_images(&text, &targets) {
            Ok(o) => o,
            Err(e) => panic!("iteration {iteration}: {e}\n{text}"),
        };
        // The model of Kargo's merge.
        for (name, t) in &targets {
            let old = model.get(name).cloned().unwrap_or_default();
            let keep = |v: &str, k: &str| -> Option<String> {
                if v == "*" {
                    old.get(k).cloned()
                } else if v.is_empty() {
                    None
                } else {
                    Some(v.to_owned())
                }
            };
            let mut e = BTreeMap::new();
            e.insert("name".to_owned(), name.clone());
            for (k, v) in [
                ("newName", &t.new_name),
                ("newTag", &t.new_tag),
                ("digest", &t.digest),
            ] {
                if let Some(v) = keep(v, k) {
                    e.insert(k.to_owned(), v);
                }
            }
            model.insert(name.clone(), e);
        }
        let got: BTreeMap<String, BTreeMap<String, String>> = images_of(&out.text)
            .into_iter()
            .map(|e| {
                let m: BTreeMap<String, String> = e
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect();
                (m["name"].clone(), m)
            })
            .collect();
        assert_eq!(
            got, model,
            "iteration {iteration}:\n{text}\n---\n{}",
            out.text
        );
        assert!(others_unchanged(&text, &out.text), "iteration {iteration}");
        if text.contains("\r\n") {
            assert_eq!(
                out.text.matches('\n').count(),
                out.text.matches("\r\n").count(),
                "iteration {iteration}:\n{}",
                out.text
            );
        }
        assert_eq!(
            text.ends_with('\n'),
            out.text.ends_with('\n'),
            "iteration {iteration}:\n{text:?}\n---\n{:?}",
            out.text
        );
        let again = set_images(&out.text, &targets).unwrap();
        assert_eq!(
            again.text, out.text,
            "iteration {iteration}: not idempotent"
        );
    }
}
