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
        let mut deleted: Vec<&str> = Vec::new();
        let mut inserted: Vec<&str> = Vec::new();
        for change in diff.iter_all_changes() {
            let line = change.value().trim_end_matches(['\r', '\n']);
            match change.tag() {
                similar::ChangeTag::Delete => deleted.push(line),
                similar::ChangeTag::Insert => inserted.push(line),
                similar::ChangeTag::Equal => {}
            }
        }
        // A line that only gained a line break (end of a file without one) is unchanged.
        deleted.retain(|d| match inserted.iter().position(|i| i == d) {
            Some(p) => {
                inserted.remove(p);
                false
            }
            None => true,
        });
        for line in deleted.iter().chain(&inserted) {
            // An image key, or the continuation of a multi-line value; never a comment or
            // another key.
            let t = line.trim();
            let continuation = !t.starts_with('#') && !t.contains(": ") && !t.ends_with(':');
            assert!(
                is_image_line(line) || continuation,
                "{}: unexpected change {line:?}",
                case.name
            );
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
        // Distance from the dash to the keys: `- name` or `-   name`.
        let gap = if rng.chance(20) { "   " } else { " " };
        let pad = " ".repeat(gap.len() + 1);
        let key_below_dash = rng.chance(5);
        for name in chosen {
            if rng.chance(10) {
                block.push(String::new());
            }
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
                if key_below_dash {
                    block.push(format!("{seq_indent}-"));
                }
                for (i, (k, v)) in kv.iter().enumerate() {
                    let lead = if i == 0 && !key_below_dash {
                        format!("{seq_indent}-{gap}")
                    } else {
                        format!("{seq_indent}{pad}")
                    };
                    block.push(format!("{lead}{k}: {v}{}", comment(rng, k)));
                    if rng.chance(10) {
                        block.push(format!("{seq_indent}{pad}# between keys"));
                    }
                }
            }
            model.insert(name.to_owned(), entry);
        }
        if block.len() == 1 && rng.chance(50) {
            block[0] = "images: []".into();
        } else if rng.chance(10) {
            block.push(format!("{seq_indent}# end of images"));
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
    // `KUSTOMIZE_PROPTEST=<iterations>:<seed>` runs a longer or different sequence.
    let (iterations, seed) = std::env::var("KUSTOMIZE_PROPTEST")
        .ok()
        .and_then(|v| {
            let (n, s) = v.split_once(':')?;
            Some((n.parse().ok()?, s.parse().ok()?))
        })
        .unwrap_or((2000usize, 0x5eed_cafe_u64));
    let mut rng = Lcg(seed);
    let mut value_only_cases = 0;
    for iteration in 0..iterations {
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
        if rng.chance(40) && !model.is_empty() {
            // Only new values for the keys existing entries have.
            targets.clear();
            let names: Vec<String> = model.keys().cloned().collect();
            for _ in 0..(1 + rng.pick(3)) {
                let name = &names[rng.pick(names.len())];
                let old = &model[name];
                let mut t = KustomizeImage::new(name.clone());
                if old.contains_key("newName") {
                    t.new_name = if rng.chance(30) {
                        "*".into()
                    } else {
                        "n.io/x".into()
                    };
                }
                if old.contains_key("newTag") {
                    t.new_tag = TAGS[rng.pick(TAGS.len())].into();
                }
                if old.contains_key("digest") {
                    t.digest = if rng.chance(20) {
                        "*".into()
                    } else {
                        "sha256:new".into()
                    };
                }
                if t.new_tag.is_empty() && t.digest.is_empty() {
                    continue;
                }
                targets.insert(name.clone(), t);
            }
        }
        let out = match set_images(&text, &targets) {
            Ok(o) => o,
            Err(e) => panic!("iteration {iteration}: {e}\n{text}\n{targets:?}"),
        };
        let old_model = model.clone();
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
        // When only values of existing keys change, the result is exactly the value
        // editor's.
        let value_only = targets.keys().all(|n| {
            old_model
                .get(n)
                .is_some_and(|o| o.keys().eq(model[n].keys()))
        });
        if value_only {
            let order: Vec<String> = images_of(&text)
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect();
            let mut updates = Vec::new();
            for name in targets.keys() {
                let i = order.iter().position(|n| n == name).unwrap();
                for (k, v) in &model[name] {
                    if old_model[name].get(k) != Some(v) {
                        updates.push((
                            kargo_steps::yaml::KeyPath::parse(&format!("images.{i}.{k}")).unwrap(),
                            json!(v),
                        ));
                    }
                }
            }
            let expected = kargo_steps::yaml::set_values(&text, &updates).unwrap();
            assert_eq!(out.text, expected, "iteration {iteration}: value-only edit");
            value_only_cases += 1;
        }
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
    assert!(value_only_cases * 10 > iterations, "{value_only_cases}");
}

// ---------------------------------------------------------------------------------------
// kustomize-build and helm-template.

use kargo_steps::render::RenderTools;
use kargo_steps::{HelmTemplate, KustomizeBuild};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes an executable shell script `name` into `dir`.
#[cfg(unix)]
fn script(dir: &Path, name: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn tools_in(dir: &Path) -> RenderTools {
    {
        let mut o = RenderTools::default();
        o.search_path = Some(dir.as_os_str().to_owned());
        o
    }
}

/// The kustomize the build step would use, if any.
fn kustomize_available() -> Option<PathBuf> {
    let t = RenderTools::default();
    t.find("kustomize").or_else(|| t.find("kubectl"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A base with a Deployment and a Service, and an overlay `env/prod` in namespace prod.
fn overlay_tree(root: &Path) {
    write(
        &root.join("base/kustomization.yaml"),
        "resources:\n- deploy.yaml\n- service.yaml\n",
    );
    write(
        &root.join("base/deploy.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.0\n",
    );
    write(
        &root.join("base/service.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
    );
    write(
        &root.join("env/prod/kustomization.yaml"),
        "# prod\r\nresources:\r\n  - ../../base\r\nnamespace: prod\r\n",
    );
}

#[test]
fn kustomize_build_through_the_binary() {
    let Some(bin) = kustomize_available() else {
        eprintln!(
            "SKIPPED kustomize_build_through_the_binary: neither `kustomize` nor `kubectl` is on PATH"
        );
        return;
    };
    eprintln!("kustomize-build uses {}", bin.display());
    let tmp = tempfile::tempdir().unwrap();
    overlay_tree(tmp.path());
    let mut ctx = ctx_for(tmp.path());
    ctx.freight = freight_collection(vec![(
        "web",
        vec![image(
            "nginx",
            "1.27.0",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        )],
    )]);
    // kustomize-set-image (automatic mode) then kustomize-build.
    let out = run(&KustomizeSetImage, &ctx, json!({"path": "env/prod"})).unwrap();
    assert_eq!(
        out.outputs["commitMessage"],
        json!(
            "Updated env/prod to use new image\n\n- nginx:1.27.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        )
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("env/prod/kustomization.yaml")).unwrap(),
        "# prod\r\nresources:\r\n  - ../../base\r\nnamespace: prod\r\nimages:\r\n  - name: nginx\r\n    newTag: 1.27.0\r\n    digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n"
    );
    let step = KustomizeBuild::default();

    // One file.
    run(
        &step,
        &ctx,
        json!({"path": "env/prod", "outPath": "out/prod.yaml"}),
    )
    .unwrap();
    let all = std::fs::read_to_string(tmp.path().join("out/prod.yaml")).unwrap();
    assert!(
        all.contains("image: nginx:1.27.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"),
        "{all}"
    );
    assert_eq!(all.matches("\n---\n").count(), 1, "{all}");
    assert!(all.contains("namespace: prod"));

    // One file per resource, Kargo's names.
    run(
        &step,
        &ctx,
        json!({"path": "env/prod", "outPath": "out/kargo"}),
    )
    .unwrap();
    assert_eq!(
        files_in(&tmp.path().join("out/kargo")),
        vec!["prod-deployment-web.yaml", "prod-service-web.yaml"]
    );
    let deploy =
        std::fs::read_to_string(tmp.path().join("out/kargo/prod-deployment-web.yaml")).unwrap();
    assert!(
        deploy.starts_with("apiVersion: apps/v1\n") && deploy.contains("nginx:1.27.0@sha256"),
        "{deploy}"
    );
    assert!(!deploy.contains("---"));

    // kustomize's names.
    run(
        &step,
        &ctx,
        json!({"path": "env/prod", "outPath": "out/kust", "outputFormat": "kustomize"}),
    )
    .unwrap();
    assert_eq!(
        files_in(&tmp.path().join("out/kust")),
        vec!["apps_v1_deployment_web.yaml", "v1_service_web.yaml"]
    );

    // Several namespaces and a cluster-scoped resource.
    write(
        &tmp.path().join("multi/kustomization.yaml"),
        "resources:\n- r.yaml\n",
    );
    write(
        &tmp.path().join("multi/r.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: a\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: b\n",
    );
    run(
        &step,
        &ctx,
        json!({"path": "multi", "outPath": "out/multi", "outputFormat": "kustomize"}),
    )
    .unwrap();
    assert_eq!(
        files_in(&tmp.path().join("out/multi")),
        vec![
            "a_v1_configmap_x.yaml",
            "b_v1_configmap_x.yaml",
            "v1_namespace_a.yaml"
        ]
    );
    run(
        &step,
        &ctx,
        json!({"path": "multi", "outPath": "out/multi-kargo"}),
    )
    .unwrap();
    assert_eq!(
        files_in(&tmp.path().join("out/multi-kargo")),
        vec![
            "a-configmap-x.yaml",
            "b-configmap-x.yaml",
            "namespace-a.yaml"
        ]
    );

    // A failing build: the tool's message, without the work directory's location.
    write(
        &tmp.path().join("broken/kustomization.yaml"),
        "resources:\n- missing.yaml\n",
    );
    let e = run(
        &step,
        &ctx,
        json!({"path": "broken", "outPath": "out/broken.yaml"}),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("failed (exit code"), "{msg}");
    assert!(msg.contains("missing.yaml"), "{msg}");
    assert!(
        !msg.contains(&*tmp.path().canonicalize().unwrap().to_string_lossy()),
        "{msg}"
    );
    assert!(!tmp.path().join("out/broken.yaml").exists());
}

#[cfg(unix)]
#[test]
fn kustomize_build_refuses_references_outside_the_work_dir() {
    let outside = tempfile::tempdir().unwrap();
    write(
        &outside.path().join("secret/kustomization.yaml"),
        "resources:\n- s.yaml\n",
    );
    write(
        &outside.path().join("secret/s.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    // The tool is never reached: a stand-in that fails loudly.
    let bin = tmp.path().join("bin");
    script(&bin, "kustomize", "echo should not run >&2\nexit 9\n");
    let step = KustomizeBuild::new(tools_in(&bin));
    let rel_outside = format!(
        "../../{}",
        outside.path().file_name().unwrap().to_string_lossy()
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a",
            "resources:\n- ../../x\n".into(),
            "refers to \"../../x\"",
        ),
        (
            "b",
            format!("resources:\n- {}/secret\n", outside.path().display()),
            "leads outside the work directory",
        ),
        ("c", "resources:\n- link\n".into(), "refers to \"link\""),
        (
            "d",
            "patches:\n- path: ../../../etc/passwd\n".into(),
            "leads outside",
        ),
        (
            "e",
            "resources:\n- ../nested\n".into(),
            "refers to \"../secret-link\"",
        ),
        (
            "f",
            format!(
                "configMapGenerator:\n- name: x\n  files:\n  - k={rel_outside}/secret/s.yaml\n"
            ),
            "leads outside",
        ),
    ];
    std::fs::create_dir_all(tmp.path().join("c")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), tmp.path().join("c/link")).unwrap();
    write(
        &tmp.path().join("nested/kustomization.yaml"),
        "resources:\n- ../secret-link\n",
    );
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        tmp.path().join("secret-link"),
    )
    .unwrap();
    let ctx = ctx_for(tmp.path());
    for (dir, kustomization, needle) in &cases {
        write(
            &tmp.path().join(dir).join("kustomization.yaml"),
            kustomization,
        );
        let e = run(&step, &ctx, json!({"path": dir, "outPath": "out.yaml"})).unwrap_err();
        assert!(e.to_string().contains(needle), "{dir}: {e}");
        assert!(!e.to_string().contains("should not run"), "{dir}: {e}");
    }
    assert!(!tmp.path().join("out.yaml").exists());
    // Configured paths go through the sandbox.
    for (config, needle) in [
        (
            json!({"path": "../x", "outPath": "o.yaml"}),
            "leads outside",
        ),
        (
            json!({"path": "a", "outPath": "../o.yaml"}),
            "leads outside",
        ),
        (
            json!({"path": "/etc", "outPath": "o.yaml"}),
            "absolute paths are not allowed",
        ),
        (
            json!({"path": "nothing-here", "outPath": "o.yaml"}),
            "could not find any Kustomization files",
        ),
    ] {
        let e = run(&step, &ctx, config.clone()).unwrap_err();
        assert!(e.to_string().contains(needle), "{config}: {e}");
    }
}

#[test]
fn kustomize_build_without_a_binary() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("app/kustomization.yaml"),
        "resources: []\n",
    );
    let empty = tmp.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let e = run(
        &KustomizeBuild::new(tools_in(&empty)),
        &ctx_for(tmp.path()),
        json!({"path": "app", "outPath": "out.yaml"}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains(
            "kustomize-build needs the `kustomize` or the `kubectl` binary; neither was found in"
        ),
        "{e}"
    );
}

#[cfg(unix)]
#[test]
fn rendering_is_cancelled_and_timed_out() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        &tmp.path().join("app/kustomization.yaml"),
        "resources: []\n",
    );
    let bin = tmp.path().join("bin");
    script(&bin, "kustomize", "exec sleep 30\n");
    // Timeout.
    let step = KustomizeBuild::new({
        let mut o = tools_in(&bin);
        o.timeout = std::time::Duration::from_millis(300);
        o
    });
    let started = std::time::Instant::now();
    let e = run(
        &step,
        &ctx_for(tmp.path()),
        json!({"path": "app", "outPath": "o.yaml"}),
    )
    .unwrap_err();
    assert!(e.to_string().contains("did not finish within"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Cancellation.
    let ctx = ctx_for(tmp.path());
    let token = ctx.cancellation().clone();
    let step = KustomizeBuild::new(tools_in(&bin));
    let started = std::time::Instant::now();
    let e = rt().block_on(async {
        let cancel = async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            token.cancel();
        };
        let (r, ()) = tokio::join!(
            step.run_json(&ctx, json!({"path": "app", "outPath": "o.yaml"})),
            cancel
        );
        r.unwrap_err()
    });
    assert_eq!(e.kind, StepErrorKind::Cancelled, "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(!tmp.path().join("o.yaml").exists());
}

/// A chart with a ConfigMap (namespaced by the release), a Deployment and a test hook.
fn tiny_chart(root: &Path) {
    write(
        &root.join("chart/Chart.yaml"),
        "apiVersion: v2\nname: mychart\nversion: 0.1.0\n",
    );
    write(&root.join("chart/values.yaml"), "tag: \"1.0\"\n");
    write(
        &root.join("chart/templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n  namespace: {{ .Release.Namespace }}\ndata:\n  tag: {{ .Values.tag | quote }}\n",
    );
    write(
        &root.join("chart/templates/tests/t.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-test\n  annotations:\n    \"helm.sh/hook\": test\nspec:\n  containers: []\n",
    );
    write(&root.join("env/prod.yaml"), "tag: \"2.0\"\n");
}

#[test]
fn helm_template_with_the_real_helm() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_chart(tmp.path());
    let mut ctx = ctx_for(tmp.path());
    ctx.project = "demo".into();
    if RenderTools::default().find("helm").is_none() {
        eprintln!(
            "SKIPPED helm_template_with_the_real_helm: `helm` is not on PATH (not packaged in Debian); checking the missing-binary error instead"
        );
        let e = run(
            &HelmTemplate::default(),
            &ctx,
            json!({"path": "chart", "outPath": "out.yaml", "releaseName": "app"}),
        )
        .unwrap_err();
        assert_eq!(e.kind, StepErrorKind::Terminal);
        assert_eq!(
            e.to_string(),
            "helm-template needs the `helm` binary, which was not found on PATH"
        );
        assert!(!tmp.path().join("out.yaml").exists());
        return;
    }
    let step = HelmTemplate::default();
    run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/all.yaml", "releaseName": "app",
               "valuesFiles": ["env/prod.yaml", "env/missing.yaml"], "ignoreMissingValueFiles": true,
               "setValues": [{"key": "extra", "value": "x"}]}),
    )
    .unwrap();
    let all = std::fs::read_to_string(tmp.path().join("out/all.yaml")).unwrap();
    assert!(
        all.contains("name: app-cm")
            && all.contains("namespace: demo")
            && all.contains("tag: \"2.0\""),
        "{all}"
    );
    assert!(all.contains("app-test"), "{all}");
    run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/flat", "releaseName": "app", "outLayout": "flat", "skipTests": true}),
    )
    .unwrap();
    assert_eq!(
        files_in(&tmp.path().join("out/flat")),
        vec!["configmap-demo-app-cm.yaml"]
    );
    run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/helm", "releaseName": "app"}),
    )
    .unwrap();
    assert!(
        tmp.path()
            .join("out/helm/mychart/templates/cm.yaml")
            .is_file()
    );
}

#[cfg(unix)]
#[test]
fn helm_template_arguments_and_layouts_with_a_stand_in() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_chart(tmp.path());
    let bin = tmp.path().join("bin");
    let log = tmp.path().join("helm-args.log");
    script(
        &bin,
        "helm",
        &format!(
            r#"printf '%s\n' "$@" >> '{log}'
echo "== $HELM_CONFIG_HOME $HELM_CACHE_HOME" >> '{log}'
out=""; prev=""
for a in "$@"; do
  if [ "$prev" = "--output-dir" ]; then out="$a"; fi
  prev="$a"
done
if [ "$1" = template ] && [ -n "$out" ]; then
  mkdir -p "$out/mychart/templates"
  printf -- '---\n# Source: mychart/templates/cm.yaml\nkind: ConfigMap\n' > "$out/mychart/templates/cm.yaml"
  exit 0
fi
if [ "$1" = template ]; then
  printf -- '---\n# Source: mychart/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: prod\n---\n# Source: mychart/templates/deploy.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: Web\n---\n# Source: mychart/templates/notes.yaml\nfoo: bar\n---\n# Source: mychart/templates/more.yaml\nbaz: 1\n---\n# Source: mychart/templates/evil.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x/../../../escape\n'
fi
"#,
            log = log.display()
        ),
    );
    let step = HelmTemplate::new(tools_in(&bin));
    let mut ctx = ctx_for(tmp.path());
    ctx.project = "demo".into();
    let root = tmp.path().canonicalize().unwrap();
    let take_log = || {
        let s = std::fs::read_to_string(&log).unwrap_or_default();
        std::fs::remove_file(&log).ok();
        s
    };

    // Every option maps to helm's flag; paths are absolute and resolved.
    let e = run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/all.yaml", "releaseName": "app", "namespace": "prod",
               "valuesFiles": ["env/prod.yaml", "env/missing.yaml"], "ignoreMissingValueFiles": true,
               "setValues": [{"key": "image.tag", "value": "1.2"}, {"key": "a", "value": "b,c", "literal": true}],
               "buildDependencies": true, "includeCRDs": true, "disableHooks": true, "skipTests": true,
               "kubeVersion": "1.31.0", "apiVersions": ["batch/v1", "x/v1"]}),
    );
    // The stand-in prints the unsafe resource too; a file output takes the stream as is.
    e.unwrap();
    let args = take_log();
    let chart = root.join("chart").display().to_string();
    let values = root.join("env/prod.yaml").display().to_string();
    let expected = format!(
        "dependency\nbuild\n{chart}\n== HELM_CONFIG_HOME_MARK\ntemplate\napp\n{chart}\n--namespace\nprod\n--values\n{values}\n--set\nimage.tag=1.2\n--set-literal\na=b,c\n--include-crds\n--no-hooks\n--skip-tests\n--kube-version\n1.31.0\n--api-versions\nbatch/v1\n--api-versions\nx/v1\n== HELM_CONFIG_HOME_MARK\n"
    );
    let normalized: String = args
        .lines()
        .map(|l| {
            if l.starts_with("== ") {
                assert!(
                    l.contains("/config ")
                        && l.ends_with("/cache")
                        && !l.contains(&*root.to_string_lossy()),
                    "{l}"
                );
                "== HELM_CONFIG_HOME_MARK".to_owned()
            } else {
                l.to_owned()
            }
        })
        .map(|l| l + "\n")
        .collect();
    assert_eq!(normalized, expected);
    let all = std::fs::read_to_string(tmp.path().join("out/all.yaml")).unwrap();
    assert!(
        all.starts_with("---\n# Source: mychart/templates/cm.yaml\n"),
        "{all}"
    );

    // The project is the default namespace; a missing values file is an error otherwise.
    let e = run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "o.yaml", "releaseName": "app", "valuesFiles": ["env/missing.yaml"]}),
    );
    let args = take_log();
    // helm itself reports the missing file; the stand-in does not, so only check the flags.
    assert!(e.is_ok());
    assert!(args.contains("--namespace\ndemo\n--values\n"), "{args}");

    // Flat layout: Kargo's names, documents trimmed; an unsafe name is refused.
    let e = run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/flat", "releaseName": "app", "outLayout": "flat"}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("unsafe generated resource filename"),
        "{e}"
    );
    assert!(
        !tmp.path().join("out/flat").exists(),
        "nothing is written on error"
    );
    take_log();
    script(
        &bin,
        "helm",
        "printf -- '---\\n# Source: c/templates/cm.yaml\\napiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: cm\\n  namespace: prod\\n---\\n# Source: c/templates/deploy.yaml\\napiVersion: apps/v1\\nkind: Deployment\\nmetadata:\\n  name: Web\\n---\\n# Source: c/templates/notes.yaml\\nfoo: bar\\n---\\n# Source: c/templates/more.yaml\\nbaz: 1\\n'\n",
    );
    run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/flat", "releaseName": "app", "outLayout": "flat"}),
    )
    .unwrap();
    assert_eq!(
        files_in(&tmp.path().join("out/flat")),
        vec![
            "apps-deployment-web.yaml",
            "configmap-prod-cm.yaml",
            "resource-0.yaml",
            "resource-1.yaml"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("out/flat/configmap-prod-cm.yaml")).unwrap(),
        "# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: prod"
    );

    // Helm layout: helm writes below outPath itself.
    script(
        &bin,
        "helm",
        &format!(
            r#"printf '%s\n' "$@" >> '{log}'
prev=""; for a in "$@"; do if [ "$prev" = "--output-dir" ]; then mkdir -p "$a/app/templates"; echo x > "$a/app/templates/cm.yaml"; fi; prev="$a"; done
"#,
            log = log.display()
        ),
    );
    run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/helm", "releaseName": "app", "useReleaseName": true}),
    )
    .unwrap();
    let args = take_log();
    assert!(
        args.ends_with(&format!(
            "--output-dir\n{}\n--release-name\n",
            root.join("out/helm").display()
        )),
        "{args}"
    );
    assert!(tmp.path().join("out/helm/app/templates/cm.yaml").is_file());

    // A symbolic link below the output directory leading outside is refused.
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), tmp.path().join("out/helm/mychart")).unwrap();
    let e = run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "out/helm", "releaseName": "app"}),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("leads outside the work directory"),
        "{e}"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);

    // Helm's failure, with the work directory's location hidden.
    script(
        &bin,
        "helm",
        &format!(
            "echo \"Error: chart {}/chart is broken\" >&2\nexit 1\n",
            root.display()
        ),
    );
    let e = run(
        &step,
        &ctx,
        json!({"path": "chart", "outPath": "x.yaml", "releaseName": "app"}),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "failed to render chart: helm failed (exit code 1): Error: chart chart is broken"
    );

    // Configuration errors.
    for (config, needle) in [
        (
            json!({"path": "chart", "outPath": "x.yaml", "releaseName": ""}),
            "config.releaseName",
        ),
        (
            json!({"path": "chart", "outPath": "x.yaml", "releaseName": "a", "outLayout": "tree"}),
            "unknown variant",
        ),
        (
            json!({"path": "../chart", "outPath": "x.yaml", "releaseName": "a"}),
            "leads outside",
        ),
        (
            json!({"path": "chart", "outPath": "x.yaml", "releaseName": "a", "valuesFiles": ["/etc/passwd"]}),
            "absolute paths",
        ),
    ] {
        let e = run(&step, &ctx, config.clone()).unwrap_err();
        assert!(e.to_string().contains(needle), "{config}: {e}");
    }
}

#[test]
fn builtins_include_the_new_steps() {
    let mut registry = kargo_core::StepRegistry::new();
    kargo_steps::register_builtins(
        &mut registry,
        std::env::temp_dir().join("kargo-rs-test-git-cache"),
    )
    .unwrap();
    for kind in ["kustomize-set-image", "kustomize-build", "helm-template"] {
        assert!(registry.get(kind).is_some(), "{kind}");
    }
}
