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
    assert!(diff(
        &crlf,
        &[(key("service19.image.tag"), json!("2"))],
        "crlf"
    ));
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
        let config =
            first_doc_json(&std::fs::read_to_string(case.join("config.yaml")).unwrap()).unwrap();
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
        (
            "a:\n  - x: 1\n    y: 2\n  - x: 3\n",
            "a.1.x",
            json!("q"),
            true,
        ),
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

/// A random block-style document of the subset (and its edges).
fn random_doc(rng: &mut Rng) -> String {
    const KEYS: &[&str] = &[
        "a", "b", "c", "'a'", "\"b\"", "a b", "k.x", "c :", "1", "'it''s'", "é",
    ];
    const SCALARS: &[&str] = &[
        "v",
        "1.2",
        "'q'",
        "'it''s'",
        "\"d\"",
        "\"e\\\"x\\u00e9\"",
        "x # c",
        "x#y",
        "a:b",
        "{}",
        "[]",
        "-x",
        "x   ",
        "http://h:1/p?q#f",
        "ü",
        "~",
        "''",
        "\"\"",
        "'a # b'",
        "true",
    ];
    fn node(rng: &mut Rng, depth: usize, indent: usize, out: &mut String, inline: bool) {
        let kind = if depth > 3 { 2 } else { rng.below(3) };
        let pad = |n: usize| " ".repeat(n);
        match kind {
            0 => {
                // mapping
                let mut used = Vec::new();
                for i in 0..1 + rng.below(3) {
                    let k = *rng.pick(KEYS);
                    if used.contains(&k) && rng.below(10) > 0 {
                        continue;
                    }
                    used.push(k);
                    if i > 0 || !inline {
                        out.push_str(&pad(indent));
                    }
                    out.push_str(k);
                    out.push(':');
                    value(rng, depth, indent, out, true);
                    extras(rng, indent, out);
                }
            }
            1 => {
                // sequence
                for i in 0..1 + rng.below(3) {
                    if i > 0 || !inline {
                        out.push_str(&pad(indent));
                    }
                    out.push('-');
                    match rng.below(4) {
                        0 => {
                            out.push(' ');
                            node(rng, depth + 1, indent + 2, out, true);
                        }
                        _ => value(rng, depth, indent, out, false),
                    }
                    extras(rng, indent, out);
                }
            }
            _ => {
                out.push_str(rng.pick::<&str>(SCALARS));
                out.push('\n');
            }
        }
    }
    fn value(rng: &mut Rng, depth: usize, indent: usize, out: &mut String, in_map: bool) {
        match rng.below(8) {
            0 | 1 => {
                out.push('\n');
                let deeper = if in_map && rng.below(3) == 0 {
                    indent
                } else {
                    indent + 1 + rng.below(3)
                };
                if deeper == indent {
                    // A sequence at the mapping's column.
                    out.push_str(&" ".repeat(indent));
                    out.push_str("- ");
                    out.push_str(rng.pick::<&str>(SCALARS));
                    out.push('\n');
                } else {
                    node(rng, depth + 1, deeper, out, false);
                }
            }
            2 => {
                out.push_str(rng.pick::<&str>(&[" |", " |-", " >", " >+", " |2", " | # c"]));
                out.push('\n');
                for _ in 0..rng.below(3) {
                    let extra = rng.below(2);
                    out.push_str(&" ".repeat(indent + 2 + extra));
                    out.push_str(rng.pick::<&str>(&["text", "# not a comment", "a: b", ""]));
                    out.push('\n');
                    if rng.below(3) == 0 {
                        out.push('\n');
                    }
                }
            }
            3 => out.push_str(rng.pick::<&str>(&["\n", " # empty\n"])),
            _ => {
                out.push(' ');
                out.push_str(rng.pick::<&str>(SCALARS));
                out.push_str(rng.pick::<&str>(&["", "", " # c", "  ", "#c"]));
                out.push('\n');
            }
        }
    }
    fn extras(rng: &mut Rng, indent: usize, out: &mut String) {
        match rng.below(10) {
            0 => out.push('\n'),
            1 => {
                out.push_str(&" ".repeat(rng.below(indent + 3)));
                out.push_str("# comment: 'x\n");
            }
            _ => {}
        }
    }
    let mut out = String::new();
    for d in 0..1 + rng.below(2) {
        if d > 0 || rng.below(4) == 0 {
            out.push_str(rng.pick::<&str>(&["---\n", "--- # doc\n", "...\n---\n"]));
        }
        node(rng, 0, 0, &mut out, false);
    }
    if rng.below(4) == 0 {
        out.push_str("...\n");
    }
    if rng.below(5) == 0 {
        out = out.replace('\n', "\r\n");
    }
    if rng.below(5) == 0 {
        out.pop();
    }
    // Mutations: one inserted or deleted character.
    if rng.below(3) == 0 && !out.is_empty() {
        let mut at = rng.below(out.len());
        while !out.is_char_boundary(at) {
            at -= 1;
        }
        if rng.below(2) == 0 {
            let c = *rng.pick(&[
                ' ', '\n', ':', '#', '-', '\'', '"', '\t', 'x', '[', '&', '\r',
            ]);
            out.insert(at, c);
        } else {
            out.remove(at);
        }
    }
    out
}

/// Random documents of the subset, some mutated: wherever the fast path answers, saphyr
/// must agree byte for byte.
#[test]
fn structured_fuzz_is_identical() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut rng = Rng(env("YAML_FAST_SEED").unwrap_or(0xA076_1D64_78BD_642F) | 1);
    let mut answered = 0;
    let iterations = env("YAML_FAST_ITERATIONS").unwrap_or(20_000);
    for iter in 0..iterations {
        let text = random_doc(&mut rng);
        let mut paths = Vec::new();
        if let Some(doc) = first_doc_json(&text) {
            leaves(&doc, &mut Vec::new(), &mut paths);
        }
        let mut updates = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let k = if paths.is_empty() || rng.below(8) == 0 {
                (*rng.pick(&["a", "b", "0", "0.a", "a.0", "a.b", "k\\.x", "1", "0.0"])).to_owned()
            } else {
                escape(rng.pick::<Vec<String>>(&paths))
            };
            if let Ok(k) = KeyPath::parse(&k) {
                updates.push((k, random_value(&mut rng)));
            }
        }
        if diff(&text, &updates, &format!("iteration {iter}")) {
            answered += 1;
        }
    }
    assert!(
        answered > iterations / 10,
        "the fast path answered {answered} of {iterations} times"
    );
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
    let deep: String = (0..5_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let trie = super::super::edit::Trie::new(std::iter::empty());
    assert!(locate(&deep, &trie, 0).is_some());
    let dashes = format!("{}x\n", "- ".repeat(100_000));
    assert!(locate(&dashes, &trie, 0).is_some());
}
