//! Generators shared by the YAML editor's tests: the property test's base documents and
//! random values (used by `tests/yaml_steps.rs` and by the fast path's differential test
//! inside the crate, which includes this file with `#[path]`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value as Json, json};

/// Pieces the garbage test strings together from.
pub const GARBAGE_PIECES: &[&str] = &[
    "a",
    ":",
    " ",
    "\n",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "|",
    ">",
    "#",
    "&x",
    "*x",
    "!t",
    "---",
    "...",
    "? ",
    "\t",
    "é",
    "\r\n",
    "  ",
    "1",
    "%YAML 1.2",
    "\\",
    "<<",
];

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub const BASE_LF: &str = r#"# values for the shop
image:
  repository: ghcr.io/example/app   # repo
  tag: "1.0.0"
  pullPolicy: 'IfNotPresent'
replicas: 2
enabled: true
empty:
nothing: ~
env:
  - name: LOG_LEVEL
    value: info # inline
  - name: EMPTY
    value: ""
flow: {a: 1, b: "two", c: 'three', d: [x, "y", 'z']}
text: |
  line1
  line2
folded: >-
  some folded
  text
keep: |+
  kept

dotted.key: plain
after: end
"#;

pub const BASE_MULTI: &str = "---\nключ: значение\nnested:\n  naïve: \"ü\"\n  list: [1, 2, 3]\n  deep:\n    - {k: v}\n    - - inner\n...\n---\nother: doc\n";

pub const BASE_NO_NL: &str = "a: first\nb: this is\n  a multi-line plain\nc: 'last'";

pub fn bases() -> Vec<String> {
    vec![
        BASE_LF.to_owned(),
        BASE_LF.replace('\n', "\r\n"),
        BASE_MULTI.to_owned(),
        BASE_NO_NL.to_owned(),
    ]
}

pub fn leaves(v: &Json, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Json::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                leaves(x, path, out);
                path.pop();
            }
        }
        Json::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                leaves(x, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

pub fn escape(path: &[String]) -> String {
    path.iter()
        .map(|s| s.replace('.', "\\.").replace(':', "\\:"))
        .collect::<Vec<_>>()
        .join(".")
}

pub fn random_value(rng: &mut Rng) -> Json {
    const SAMPLES: &[&str] = &[
        "1",
        "0",
        "-0",
        "1.10",
        "1.9.3",
        "0x1F",
        "0o17",
        "1e5",
        "1_000",
        ".5",
        "12:30",
        "+1",
        "-.inf",
        ".NaN",
        "inf",
        "true",
        "false",
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "t",
        "null",
        "Null",
        "~",
        "",
        "2024-01-01",
        "2001-12-14t21:59:43.10-05:00",
        "it's",
        "say \"hi\"",
        "'quoted'",
        "\"dq\"",
        "a:b",
        "a: b",
        "http://x.example/y?z=1#frag",
        "a#b",
        "a #b",
        "#x",
        "ünï",
        "日本語",
        "🚀 go",
        " lead",
        "trail ",
        " both ",
        "a\nb",
        "a\n",
        "a\n\n",
        "\nlead",
        "tab\there",
        "back\\slash",
        "-",
        "- x",
        "-x",
        "?",
        "? x",
        ":x",
        "*a",
        "&a",
        "!a",
        "|",
        ">",
        "%x",
        "@x",
        "`x",
        "---",
        "...",
        "[1, 2]",
        "{a: 1}",
        "{\"a\": 1}",
        "a,b",
        "x]",
        "ctrl\u{1}char",
        "nel\u{85}",
        "ls\u{2028}",
        "v1.2.3",
        "ghcr.io/example/app:1.2.3",
        "  ",
        "\t",
        "a  b",
        "=",
        "<<",
    ];
    match rng.below(10) {
        0 => json!(rng.below(100_000) as i64 - 50_000),
        1 => json!(rng.below(1000) as f64 / 8.0 - 20.0),
        2 => json!(rng.below(2) == 0),
        3 => Json::Null,
        4 | 5 => {
            // A random mix of characters.
            const CHARS: &[char] = &[
                'a', 'Z', '0', '9', ' ', ':', '#', '\'', '"', '\\', '-', '.', ',', '[', '{', '}',
                '!', '&', '*', '\n', '\t', 'é', '日', '🚀', '|', '>', '%', '@', '?', '~',
            ];
            let n = rng.below(12);
            json!((0..n).map(|_| *rng.pick(CHARS)).collect::<String>())
        }
        _ => json!(*rng.pick(SAMPLES)),
    }
}
