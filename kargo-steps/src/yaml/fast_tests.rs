//! Differential tests of the fast path against the saphyr path: wherever the fast path
//! answers, its output must be byte-identical to the saphyr path's (which must succeed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use serde_json::{Value as Json, json};

use super::super::edit::{set_values_fast, set_values_saphyr};
use super::super::path::KeyPath;
use super::locate;

#[path = "../../tests/support/yaml_gen.rs"]
mod yaml_gen;
use yaml_gen::{GARBAGE_PIECES, Rng, bases, escape, leaves, random_value};

/// Runs both paths; panics if the fast path answers differently from the saphyr path.
/// Returns whether the fast path answered.
fn diff(text: &str, updates: &[(KeyPath, Json)], what: &str) -> bool {
    let fast = set_values_fast(text, updates);
    let Some(fast) = fast else { return false };
    match set_values_saphyr(text, updates) {
        Ok(reference) => assert!(
            fast == reference,
            "{what}: the fast path differs from saphyr\ninput:\n{text:?}\nupdates: {updates:?}\nfast:\n{fast:?}\nsaphyr:\n{reference:?}"
        ),
        Err(e) => panic!(
            "{what}: the fast path answered but saphyr fails: {e}\ninput:\n{text:?}\nupdates: {updates:?}\nfast:\n{fast:?}"
        ),
    }
    true
}

fn key(k: &str) -> KeyPath {
    KeyPath::parse(k).unwrap()
}

fn first_doc_json(text: &str) -> Option<Json> {
    let v = super::super::first_document(text).ok()??;
    super::super::yaml_to_json(v).ok()
}

/// The benchmark's values file (`benches/yaml_update.rs`).
fn values_file(lines: usize) -> String {
    let mut out = String::with_capacity(lines * 24);
    let mut n = 0;
    let mut i = 0;
    while n < lines {
        out.push_str(&format!(
            "service{i}:\n  image:\n    repository: ghcr.io/example/service-{i}  # the image\n    tag: \"1.{i}.0\"\n  replicas: {}\n  env:\n    - name: LOG_LEVEL\n      value: 'info'\n  # comment line {i}\n  enabled: true\n",
            i % 5
        ));
        n += 10;
        i += 1;
    }
    out
}

#[test]
fn answers_on_the_benchmark_file() {
    let text = values_file(10_000);
    for (k, v) in [
        ("service999.image.tag", json!("1.10")),
        ("service999.image.repository", json!("x")),
        ("service0.replicas", json!(7)),
        ("service500.env.0.value", json!("debug")),
        ("service3.enabled", json!(false)),
    ] {
        assert!(
            diff(&text, &[(key(k), v)], k),
            "the fast path does not answer for {k}"
        );
    }
    let crlf = values_file(200).replace('\n', "\r\n");
    assert!(diff(&crlf, &[(key("service19.image.tag"), json!("2"))], "crlf"));
}

/// Fixture cases the fast path must answer (the others may fall back).
const FAST_FIXTURES: &[&str] = &[
    "byte-order-mark",
    "chart-yaml-versions",
    "comments-on-every-line",
    "deep-sequences",
    "dotted-keys-escaped",
    "kustomization-images",
    "multi-document-manifests",
    "no-final-newline",
    "same-key-twice-last-wins",
    "strings-that-need-quotes",
    "tag-that-looks-like-a-float",
    "top-level-sequence",
    "typed-values",
    "unicode-keys-and-values",
];

#[test]
fn golden_corpus_is_identical() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/yaml");
    let mut answered = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    for case in names {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(case.join("input.yaml")).unwrap();
        let config = first_doc_json(&std::fs::read_to_string(case.join("config.yaml")).unwrap())
            .unwrap();
        let Ok(updates) = config["updates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| KeyPath::parse(u["key"].as_str().unwrap()).map(|k| (k, u["value"].clone())))
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        if diff(&input, &updates, &name) {
            answered.push(name.clone());
        }
        // Each update alone, too.
        for u in &updates {
            diff(&input, std::slice::from_ref(u), &name);
        }
    }
    for want in FAST_FIXTURES {
        assert!(
            answered.iter().any(|a| a == want),
            "the fast path does not answer for fixture {want}; it answers for {answered:?}"
        );
    }
    assert!(
        answered.iter().all(|a| !a.starts_with("error-")),
        "{answered:?}"
    );
}

/// The property test's bases plus variants inside the fast path's subset.
fn all_bases() -> Vec<String> {
    let mut out = bases();
    let lf = yaml_gen::BASE_LF
        .lines()
        .filter(|l| !l.starts_with("flow:"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    out.push(lf.replace('\n', "\r\n"));
    out.push(lf.trim_end().to_owned());
    out.push(
        "---\nключ: значение\nnested:\n  naïve: \"ü\"\n  list:\n  - 1\n  - '2'\n  deep:\n    - k: v\n    - - inner\n      - \"x\"  # c\n...\n---\nother: doc\n"
            .to_owned(),
    );
    out.push(lf);
    out
}

#[test]
fn property_generator_is_identical() {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    let bases = all_bases();
    let mut all_leaves = Vec::new();
    for b in &bases {
        let doc = first_doc_json(b).unwrap();
        let mut out = Vec::new();
        leaves(&doc, &mut Vec::new(), &mut out);
        all_leaves.push(out);
    }
    let mut answered = 0;
    let iterations = 3000;
    for iter in 0..iterations {
        let b = rng.below(bases.len());
        let n = 1 + rng.below(3);
        let mut updates = Vec::new();
        for _ in 0..n {
            let path = rng.pick(&all_leaves[b]).clone();
            updates.push((key(&escape(&path)), random_value(&mut rng)));
        }
        if diff(&bases[b], &updates, &format!("iteration {iter}, base {b}")) {
            answered += 1;
        }
    }
    assert!(
        answered > iterations / 3,
        "the fast path answered {answered} of {iterations}"
    );
}

#[test]
fn tricky_inputs_are_identical() {
    let cases: &[(&str, &str, Json, bool)] = &[
        // (input, key, value, the fast path must answer)
        ("a: 'x: #y' # c: d\nb: 1\n", "a", json!("v"), true),
        ("a: \"x # y\" # c\n", "a", json!("it's"), true),
        ("a: x#y # c\n", "a", json!("v w"), true),
        ("k\\.x: 1\nk: {}\n", "k\\.x", json!(2), false),
        ("k.x: 1\nk: []\n", "k\\.x", json!(2), true),
        ("key:value\n", "key", json!(1), false),
        ("a: key:value\n", "a", json!("k:v"), true),
        ("a: b: c\n", "a", json!(1), false),
        ("- - nested\n  - two\n- x\n", "0.1", json!("z"), true),
        ("- - nested\n  - two\n- x\n", "1", json!("z"), true),
        ("a:\n- 1\n- 2\nb: 3\n", "a.1", json!(5), true),
        ("a:\n- 1\n- 2\nb: 3\n", "b", json!(5), true),
        ("a:\n  - x: 1\n    y: 2\n  - x: 3\n", "a.1.x", json!("q"), true),
        ("- a:\n  - 1\n  b: 2\n", "0.b", json!(3), true),
        ("s: |2-\n    a\n  b\nk: v\n", "k", json!("w"), false),
        ("s: |-\n    a\n\n    b\nk: v\n", "k", json!("w"), true),
        ("s: >+\n  a\n\n\nk: v\n", "k", json!("w"), true),
        ("s: |\n  a\n # trailing\nk: v\n", "k", json!("w"), false),
        ("a: 1   \nb: 'x'   \nc: \"y\"  \n", "a", json!(2), true),
        ("a: 1   \nb: 'x'   \nc: \"y\"  \n", "b", json!("z"), true),
        ("a: 1   \nb: 'x'   \nc: \"y\"  \n", "c", json!("z"), true),
        ("a: 1\nb: end", "b", json!("fin"), true),
        ("a: 1\nb: 'end'", "b", json!("fin"), true),
        ("a: 1\nb:", "b", json!("fin"), true),
        ("a: 1\r\nb: end\r\n", "b", json!("fin"), true),
        ("a: 1\r\nb:\r\n", "b", json!("fin"), true),
        ("a:   # c\nb: 2\n", "a", json!("x"), true),
        ("a :  1\n", "a", json!(2), true),
        ("'a''b': 1\n", "a'b", json!(2), true),
        ("\"a\": 1\n", "a", json!(2), true),
        ("\"a\\tb\": 1\n", "a", json!(2), false),
        ("a: \"\\q\"\nb: 1\n", "b", json!(2), false),
        ("a: \"\\x4\"\nb: 1\n", "b", json!(2), false),
        ("a: \"\\u00e9\\n\"\nb: 1\n", "b", json!(2), true),
        ("a: 1\na: 2\n", "a", json!(3), false),
        ("a: &x 1\nb: *x\n", "a", json!(3), false),
        ("a: !t 1\n", "a", json!(3), false),
        ("<<: {}\na: 1\n", "a", json!(3), false),
        ("? a\n: 1\n", "a", json!(3), false),
        ("a:\tb\n", "a", json!(3), false),
        ("%YAML 1.2\n---\na: 1\n", "a", json!(3), false),
        ("a: 1\n---\na: 2\n", "a", json!(3), true),
        ("a: 1\n...\n---\na: 2\n...\n", "a", json!(3), true),
        ("---\n---\na: 2\n", "a", json!(3), false),
        ("a: 1\n--- x\n", "a", json!(3), false),
        ("a: 1\n---\nplain scalar\n", "a", json!(3), false),
        ("a: 1\n---\n  b: 1\n", "a", json!(3), false),
        ("a: x\n  y\n", "a", json!(3), false),
        ("a: 'x\n  y'\n", "a", json!(3), false),
        ("a:\n  x\n", "a", json!(3), false),
        ("a: [1, 2]\n", "a.0", json!(3), false),
        ("a: {b: 1}\nc: 2\n", "c", json!(3), false),
        ("a: 1\n b: 2\n", "a", json!(3), false),
        ("a:\n  b: 1\n c: 2\n", "a.b", json!(3), false),
        ("- a\n -b\n", "0", json!(3), false),
        ("a: -x\n", "a", json!("-y"), true),
        ("a: - x\n", "a", json!(3), false),
        ("a: :x\n", "a", json!(3), false),
        ("a: ---\n", "a", json!("..."), true),
        ("a: 1\n---x: 2\n", "a", json!(3), false),
        ("\u{feff}a: 1\n", "a", json!(2), true),
        ("a: é\u{85}\n", "a", json!(2), false),
        ("a: 1\rb: 2\n", "a", json!(2), false),
        ("-\n- x\n", "0", json!(2), false),
        ("- \n- x\n", "1", json!(2), true),
        ("-   # c\n- x\n", "1", json!(2), true),
        ("a: |\n\n  x\nb: 1\n", "b", json!(2), true),
        ("a: |\n    \n  x\nb: 1\n", "b", json!(2), false),
        ("a: |\n  x\n   y\n  z\nb: 1\n", "b", json!(2), true),
        ("a: |\n   x\n  y\nb: 1\n", "b", json!(2), false),
        ("a: |\nb: 1\n", "b", json!(2), true),
        ("a: >-\n  x\n...\n", "a", json!(2), false),
        ("a: b # c\n#d\n  # e\nf: g\n", "f", json!(2), true),
        ("a: 1\n\n\n", "a", json!(2), true),
        ("a: x\n", "a.b", json!(2), false),
        ("a: {}\n", "a", json!(2), false),
        ("a:\n  b: 1\n", "a", json!(2), false),
        ("a: 1\n", "b", json!(2), false),
        ("a: 1 #c\nb: [x, y]\n", "a", json!(2), false),
    ];
    for (i, (text, k, v, must)) in cases.iter().enumerate() {
        let what = format!("case {i}: {text:?} {k}");
        let answered = diff(text, &[(key(k), v.clone())], &what);
        if *must {
            assert!(answered, "{what}: the fast path does not answer");
        }
        if !*must {
            assert!(!answered, "{what}: the fast path answers");
        }
    }
}

/// Random documents assembled from lines inside and around the subset: wherever the fast
/// path answers, saphyr must agree byte for byte.
#[test]
fn structured_fuzz_is_identical() {
    const KEYS: &[&str] = &["a", "b", "'a'", "\"b\"", "a b", "k.x", "a :", "-x", "1"];
    const VALUES: &[&str] = &[
        "",
        "v",
        "1.2",
        "'q'",
        "'it''s'",
        "\"d\"",
        "\"e\\\"x\"",
        "x # c",
        "x#y",
        "a:b",
        "a: b",
        "|",
        "|-",
        ">+",
        "|2",
        "{}",
        "[]",
        "[1]",
        "&a x",
        "*a",
        "!t x",
        "-x",
        "- x",
        "'open",
        "\"open",
        "# only",
        "x   ",
        "http://h:1/p?q#f",
        "ü",
    ];
    const TAILS: &[&str] = &["", "", "", " ", "  # c", " #", "\r"];
    let mut rng = Rng(0xA076_1D64_78BD_642F);
    let mut answered = 0;
    let iterations = 20_000;
    for iter in 0..iterations {
        let n = 1 + rng.below(8);
        let mut text = String::new();
        for _ in 0..n {
            let indent = " ".repeat(*rng.pick(&[0, 0, 0, 1, 2, 2, 4]));
            let line = match rng.below(12) {
                0 => String::new(),
                1 => "# comment: 'x".to_owned(),
                2 => format!("- {}", rng.pick(VALUES)),
                3 => format!("- {}: {}", rng.pick(KEYS), rng.pick(VALUES)),
                4 => "---".to_owned(),
                5 => "...".to_owned(),
                6 => format!("  {}", rng.pick(VALUES)),
                7 => "-".to_owned(),
                _ => format!("{}: {}", rng.pick(KEYS), rng.pick(VALUES)),
            };
            text.push_str(&indent);
            text.push_str(&line);
            text.push_str(*rng.pick(TAILS));
            text.push('\n');
        }
        if rng.below(4) == 0 {
            text.pop();
        }
        let k = *rng.pick(&["a", "b", "0", "0.a", "a.0", "0.b", "a.b", "k\\.x", "1", "0.0"]);
        let v = random_value(&mut rng);
        if diff(&text, &[(key(k), v)], &format!("iteration {iter}")) {
            answered += 1;
        }
    }
    assert!(answered > 200, "the fast path answered {answered} times");
}

#[test]
fn garbage_is_identical() {
    let mut rng = Rng(7);
    for _ in 0..5000 {
        let n = rng.below(30);
        let text: String = (0..n).map(|_| *rng.pick(GARBAGE_PIECES)).collect();
        for k in ["a", "a.0.b"] {
            for v in [json!("x"), json!(1), json!("a\nb\n")] {
                diff(&text, &[(key(k), v)], "garbage");
            }
        }
    }
}

#[test]
fn deep_nesting_does_not_recurse() {
    let deep: String = (0..5_000).map(|i| format!("{}k:\n", " ".repeat(i))).collect();
    let trie = super::super::edit::Trie::new(std::iter::empty());
    assert!(locate(&deep, &trie, 0).is_some());
    let dashes = format!("{}x\n", "- ".repeat(100_000));
    assert!(locate(&dashes, &trie, 0).is_some());
}
