use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::*;
use crate::freight::{Chart, FreightCollection, FreightOrigin, FreightReference, GitCommit, Image};

fn scope() -> Scope {
    let vars = json!({
        "vars": {
            "s": "hello",
            "n": 3,
            "f": 1.5,
            "b": true,
            "obj": {"a": 1, "b": [1, 2]},
            "list": ["x", "y"],
            "num_str": "42",
            "tag": "1.10",
            "empty": "",
            "nil": null,
            "multiline": "a\nb\n",
        },
        "ctx": {"stage": "prod", "project": "demo"},
        "outputs": {"update-image": {"commitMessage": "Updated x"}},
    });
    Scope::from_json(vars.as_object().unwrap())
}

fn render(t: &str) -> Json {
    ExprEngine::new()
        .render_str(t, &scope())
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}

#[test]
fn whole_value_coercion_table() {
    let cases: Vec<(&str, Json)> = vec![
        // No delimiter: untouched.
        ("42", json!("42")),
        ("true", json!("true")),
        ("{{ .Values.image.tag }}", json!("{{ .Values.image.tag }}")),
        ("{% if x %}y{% endif %}", json!("{% if x %}y{% endif %}")),
        ("plain text", json!("plain text")),
        // One expression keeps its type.
        ("$<< 1 >>", json!(1)),
        ("$<< vars.n + 1 >>", json!(4)),
        ("$<< vars.f >>", json!(1.5)),
        ("$<< vars.b >>", json!(true)),
        ("$<< not vars.b >>", json!(false)),
        ("$<< vars.obj >>", json!({"a": 1, "b": [1, 2]})),
        ("$<< vars.list >>", json!(["x", "y"])),
        ("$<< vars.nil >>", Json::Null),
        ("$<< none >>", Json::Null),
        ("$<< vars.s >>", json!("hello")),
        // Strings that look like other types are coerced, as Kargo does.
        ("$<< vars.num_str >>", json!(42)),
        ("$<< 'true' >>", json!(true)),
        ("$<< '[1, 2]' >>", json!([1, 2])),
        ("$<< vars.tag >>", json!(1.1)),
        // quote() keeps a string.
        ("$<< quote(vars.num_str) >>", json!("42")),
        ("$<< quote(vars.tag) >>", json!("1.10")),
        ("$<< quote(3) >>", json!("3")),
        ("$<< quote(true) >>", json!("true")),
        ("$<< quote('a\"b') >>", json!("a\\\"b")),
        ("$<< unsafeQuote('x') >>", json!("\"x\"")),
        // Mixed templates.
        ("v$<< 1 >>", json!("v1")),
        ("$<< 1 >>$<< 2 >>", json!(12)),
        ("$<< 1 >>.$<< 5 >>", json!(1.5)),
        ("$<< vars.s >>-$<< vars.n >>", json!("hello-3")),
        (
            "prefix $<< vars.obj >>",
            json!("prefix {\"a\":1,\"b\":[1,2]}"),
        ),
        ("$<< 'tr' >>$<< 'ue' >>", json!(true)),
        ("$<< vars.empty >>", json!("")),
        ("x$<< vars.empty >>", json!("x")),
        ("$<< vars.multiline >>", json!("a\nb\n")),
        ("$<< 'a>>b' >>", json!("a>>b")),
        ("$<< \"a>>b\" ~ 'c' >>", json!("a>>bc")),
        (
            "{{ .Values.x }}-$<< ctx.stage >>",
            json!("{{ .Values.x }}-prod"),
        ),
        (
            "$<< outputs['update-image'].commitMessage >>",
            json!("Updated x"),
        ),
        (
            "$<< 'main' if ctx.stage == 'prod' else 'dev' >>",
            json!("main"),
        ),
        (
            "$<< asJSON(vars.obj) >>",
            json!("{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ]\n}\n"),
        ),
        ("$<< asYAML({'a': 1}) >>", json!("a: 1\n")),
        ("$<< vars.list | join(',') >>", json!("x,y")),
    ];
    let engine = ExprEngine::new();
    let s = scope();
    for (t, want) in &cases {
        let got = engine
            .render_str(t, &s)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(&got, want, "template {t}");
    }
    assert!(cases.len() >= 30);
}

#[test]
fn kargo_expr_lang_templates_are_translated() {
    let cases: Vec<(&str, Json)> = vec![
        ("${{ vars.n + 1 }}", json!(4)),
        (
            "${{ ctx.stage == \"prod\" ? \"main\" : \"stage/\" + ctx.stage }}",
            json!("main"),
        ),
        ("${{ vars.b && !false }}", json!(true)),
        ("${{ vars.missing ?? \"default\" }}", json!("default")),
        ("${{ vars.nil ?? 7 }}", json!(7)),
        ("${{ \"x\" in vars.list }}", json!(true)),
        ("${{ vars.tag matches \"^[0-9.]+$\" }}", json!(true)),
        ("v${{ vars.n }}", json!("v3")),
        (
            "${{ outputs['update-image'].commitMessage }}",
            json!("Updated x"),
        ),
        ("${{ quote(vars.tag) }}", json!("1.10")),
        ("${% vars.s %}", json!("hello")),
        ("${{ 4 / 2 }}", json!(2)),
        ("${{ vars.n / 2 }}", json!(1.5)),
        ("${{ vars.obj?.a }}", json!(1)),
        ("${{ vars.nil?.a }}", Json::Null),
        (
            "${{ semverParse('1.2.3')?.IncMajor().String() }}",
            json!("2.0.0"),
        ),
        (
            "${{ hasPrefix(vars.s, 'he') && 'll' in vars.s }}",
            json!(true),
        ),
        ("${{ len(vars.list) + 1 }}", json!(3)),
        ("${{ 'a' + vars.s }}", json!("ahello")),
        ("${{ upper(vars.s) }}", json!("HELLO")),
    ];
    let engine = ExprEngine::new();
    let s = scope();
    for (t, want) in &cases {
        let got = engine
            .render_str(t, &s)
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(&got, want, "template {t}");
    }
}

#[test]
fn undefined_is_an_error_naming_the_expression() {
    let engine = ExprEngine::new();
    for t in [
        "$<< vars.missing >>",
        "x $<< vars.missing >>",
        "$<< nothing >>",
        "$<< vars.obj.c.d >>",
        "$<< outputs['nope'].x >>",
        "$<< vars.missing ~ 'x' >>",
    ] {
        let e = engine.render_str(t, &scope()).unwrap_err();
        assert_eq!(e.kind, ExprErrorKind::Undefined, "{t}: {e}");
        assert!(e.to_string().contains("in expression `"), "{e}");
    }
    let e = engine
        .render_str("abc $<< vars.missing >>", &scope())
        .unwrap_err();
    assert_eq!(e.offset, 4);
    assert!(e.to_string().contains("vars.missing"), "{e}");
}

#[test]
fn syntax_errors_and_unclosed_delimiters() {
    let engine = ExprEngine::new();
    let e = engine.compile("a $<< vars.x ").unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Unclosed);
    assert_eq!(e.offset, 2);
    let e = engine.compile("$<< vars. >>").unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Syntax);
    let e = engine.compile("${{ all(list, {# > 1}) }}").unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Translation, "{e}");
}

#[test]
fn fuel_stops_hostile_expressions() {
    let engine = ExprEngine::new();
    for t in [
        "$<< range(100000) | map('string') | join | length >>",
        "$<< ('x' * 10000000) * 10 >>",
        "$<< range(100000) | map('string') | map('upper') | join >>",
        "$<< ((range(100000) | list) * 1000) | join >>",
    ] {
        let e = engine.render_str(t, &scope()).unwrap_err();
        assert!(
            matches!(e.kind, ExprErrorKind::OutOfFuel | ExprErrorKind::Evaluation),
            "{t}: {e:?}"
        );
    }
}

#[test]
fn precompiled_templates_render_many_times() {
    let engine = ExprEngine::new();
    let t = engine.compile("$<< vars.s >>-$<< vars.n >>").unwrap();
    for _ in 0..3 {
        assert_eq!(t.render(&scope()).unwrap(), json!("hello-3"));
    }
    assert!(engine.compile("no template").unwrap().is_literal());
}

#[test]
fn render_json_walks_nested_values_and_names_paths() {
    let engine = ExprEngine::new();
    let cfg = json!({
        "path": "$<< ctx.stage >>/values.yaml",
        "updates": [{"key": "image.tag", "value": "$<< vars.n >>"}, {"key": "x", "value": "$<< vars.nope >>"}],
        "n": 5,
    });
    let e = engine.render_json(&cfg, &scope()).unwrap_err();
    assert_eq!(e.path, "updates[1].value");
    assert!(
        e.to_string()
            .starts_with("updates[1].value: undefined value"),
        "{e}"
    );
    let cfg = json!({"path": "$<< ctx.stage >>/values.yaml", "updates": [{"key": "a", "value": "$<< vars.n >>"}], "n": 5});
    let out = engine.render_json(&cfg, &scope()).unwrap();
    assert_eq!(
        out,
        json!({"path": "prod/values.yaml", "updates": [{"key": "a", "value": 3}], "n": 5})
    );
    let errs = engine.validate_json(&json!({"a": "$<< x. >>", "b": ["ok", "$<< y"]}));
    assert_eq!(errs.len(), 2);
    assert_eq!(errs[0].path, "a");
    assert_eq!(errs[1].path, "b[1]");
}

fn freight_scope(status: Option<Vec<StepStatusEntry>>, alias: &str) -> Scope {
    let wh = FreightOrigin::warehouse("backend");
    let wh2 = FreightOrigin::warehouse("infra");
    let mut coll = FreightCollection::default();
    let mut r1 = FreightReference {
        name: "a".repeat(40).parse::<crate::freight::FreightId>().unwrap(),
        origin: wh.clone(),
        commits: vec![],
        images: vec![],
        charts: vec![],
        artifacts: vec![],
    };
    r1.images.push(Image {
        repo_url: "ghcr.io/acme/backend".into(),
        tag: "1.2.3".into(),
        digest: "sha256:abc".into(),
        annotations: BTreeMap::new(),
        subscription_name: None,
    });
    r1.commits.push(GitCommit {
        repo_url: "https://github.com/acme/app.git".into(),
        id: "deadbeef".into(),
        branch: "main".into(),
        tag: String::new(),
        message: "fix".into(),
        author: "A <a@x>".into(),
        committer: "A <a@x>".into(),
        creator_date: None,
        subscription_name: None,
    });
    let mut r2 = r1.clone();
    r2.name = "b".repeat(40).parse::<crate::freight::FreightId>().unwrap();
    r2.origin = wh2.clone();
    r2.images = vec![Image {
        repo_url: "ghcr.io/acme/shared".into(),
        tag: "2.0.0".into(),
        digest: "sha256:def".into(),
        annotations: BTreeMap::new(),
        subscription_name: None,
    }];
    r2.commits = vec![];
    r2.charts = vec![Chart {
        repo_url: "oci://ghcr.io/acme/charts/traefik".into(),
        name: String::new(),
        version: "30.1.0".into(),
        subscription_name: None,
    }];
    coll.insert(r1);
    coll.insert(r2);
    let data = EvalData {
        freight: coll,
        requested: vec![
            OriginSubscriptions {
                origin: wh,
                images: vec!["ghcr.io/acme/backend".into(), "ghcr.io/acme/shared".into()],
                git: vec!["https://github.com/acme/app".into()],
                ..Default::default()
            },
            OriginSubscriptions {
                origin: wh2,
                images: vec!["ghcr.io/acme/shared".into()],
                charts: vec![("oci://ghcr.io/acme/charts/traefik".into(), String::new())],
                ..Default::default()
            },
        ],
        steps: status,
        current_alias: alias.to_owned(),
        secrets: Some(Arc::new(BTreeMap::from([(
            "db".to_owned(),
            BTreeMap::from([("password".to_owned(), "s3cr3t".to_owned())]),
        )]))),
        freight_metadata: BTreeMap::from([(
            "a".repeat(40),
            json!({"approvedBy": "ops"}).as_object().unwrap().clone(),
        )]),
        stage_metadata: BTreeMap::new(),
        freight_status: BTreeMap::new(),
    };
    let mut top = BTreeMap::new();
    top.insert(
        "vars".to_owned(),
        from_json(&json!({"repo": "ghcr.io/acme/backend"})),
    );
    Scope::new(top, Arc::new(data))
}

#[test]
fn freight_functions_follow_kargo() {
    let engine = ExprEngine::new();
    let s = freight_scope(None, "step-1");
    let r = |t: &str| engine.render_str(t, &s);
    assert_eq!(
        r("$<< imageFrom(vars.repo).Tag >>").unwrap(),
        json!("1.2.3")
    );
    assert_eq!(
        r("$<< imageFrom(vars.repo).tag >>").unwrap(),
        json!("1.2.3")
    );
    assert_eq!(
        r("$<< imageFrom(vars.repo).Digest >>").unwrap(),
        json!("sha256:abc")
    );
    assert_eq!(
        r("$<< imageFrom(vars.repo) >>").unwrap(),
        json!({"repoURL": "ghcr.io/acme/backend", "tag": "1.2.3", "digest": "sha256:abc", "annotations": {}})
    );
    // Two origins subscribe to the shared image: ambiguity error, resolved by an origin.
    let e = r("$<< imageFrom('ghcr.io/acme/shared').Tag >>").unwrap_err();
    assert!(e.to_string().contains("disambiguate"), "{e}");
    assert_eq!(
        r("$<< imageFrom('ghcr.io/acme/shared', warehouse('infra')).Tag >>").unwrap(),
        json!("2.0.0")
    );
    // Nobody subscribes: nil.
    assert_eq!(r("$<< imageFrom('docker.io/nope') >>").unwrap(), Json::Null);
    // Commits compare normalised URLs.
    assert_eq!(
        r("$<< commitFrom('https://github.com/ACME/app/').ID >>").unwrap(),
        json!("deadbeef")
    );
    assert_eq!(
        r("$<< chartFrom('oci://ghcr.io/acme/charts/traefik').Version >>").unwrap(),
        json!("30.1.0")
    );
    assert!(r("$<< chartFrom('https://charts.example.com', 'x') >>").is_err());
    assert_eq!(
        r("$<< warehouse('infra') >>").unwrap(),
        json!({"kind": "Warehouse", "name": "infra"})
    );
    assert_eq!(r("$<< secret('db').password >>").unwrap(), json!("s3cr3t"));
    assert_eq!(r("$<< secret('none') >>").unwrap(), json!({}));
    assert_eq!(
        r(&format!(
            "$<< freightMetadata('{}').approvedBy >>",
            "a".repeat(40)
        ))
        .unwrap(),
        json!("ops")
    );
    assert_eq!(r("$<< stageMetadata('dev') >>").unwrap(), Json::Null);
}

#[test]
fn semver_functions() {
    let engine = ExprEngine::new();
    let s = scope();
    let r = |t: &str| {
        engine
            .render_str(t, &s)
            .unwrap_or_else(|e| panic!("{t}: {e}"))
    };
    assert_eq!(r("$<< semverParse('v1.2.3').Major() >>"), json!(1));
    assert_eq!(
        r("$<< semverParse('1.2.3').IncMinor().String() >>"),
        json!("1.3.0")
    );
    assert_eq!(
        r("$<< semverParse('1.2.3-rc.1').IncPatch().String() >>"),
        json!("1.2.3")
    );
    assert_eq!(
        r("$<< semverParse('1.2').IncMajor().String() >>"),
        json!("2.0.0")
    );
    assert_eq!(
        r("$<< quote(semverParse('1.2.3+build.5').String()) >>"),
        json!("1.2.3+build.5")
    );
    assert_eq!(
        r("$<< semverParse('2.0.0-beta').Prerelease() >>"),
        json!("beta")
    );
    assert_eq!(r("$<< semverDiff('1.2.3', '2.0.0') >>"), json!("Major"));
    assert_eq!(r("$<< semverDiff('1.2.3', '1.3.0') >>"), json!("Minor"));
    assert_eq!(r("$<< semverDiff('1.2.3', '1.2.4') >>"), json!("Patch"));
    assert_eq!(
        r("$<< semverDiff('1.2.3+a', '1.2.3+b') >>"),
        json!("Metadata")
    );
    assert_eq!(r("$<< semverDiff('1.2.3', 'v1.2.3') >>"), json!("None"));
    assert_eq!(r("$<< semverDiff('x', '1.0.0') >>"), json!("Incomparable"));
    assert!(engine.render_str("$<< semverParse('nope') >>", &s).is_err());
}

#[test]
fn status_functions_see_only_their_namespace() {
    let engine = ExprEngine::new();
    let statuses = vec![
        StepStatusEntry {
            alias: "step-1".into(),
            status: "Succeeded".into(),
            continue_on_error: false,
        },
        StepStatusEntry {
            alias: "t::clone".into(),
            status: "Errored".into(),
            continue_on_error: true,
        },
        StepStatusEntry {
            alias: "t::commit".into(),
            status: "Skipped".into(),
            continue_on_error: false,
        },
    ];
    let inside = freight_scope(Some(statuses.clone()), "t::push");
    assert_eq!(
        engine
            .render_str("$<< status('clone') >>", &inside)
            .unwrap(),
        json!("Errored")
    );
    assert_eq!(
        engine
            .render_str("$<< status('step-1') >>", &inside)
            .unwrap(),
        json!("")
    );
    // continueOnError failures do not count.
    assert_eq!(
        engine.render_str("$<< failure() >>", &inside).unwrap(),
        json!(false)
    );
    assert_eq!(
        engine
            .render_str("$<< success() and always() >>", &inside)
            .unwrap(),
        json!(true)
    );
    let outside = freight_scope(Some(statuses), "step-9");
    assert_eq!(
        engine
            .render_str("$<< status('step-1') >>", &outside)
            .unwrap(),
        json!("Succeeded")
    );
    assert_eq!(
        engine
            .render_str("$<< status('clone') >>", &outside)
            .unwrap(),
        json!("")
    );
    // Not available without step statuses (vars).
    let vars_scope = freight_scope(None, "step-1");
    let e = engine
        .render_str("$<< always() >>", &vars_scope)
        .unwrap_err();
    assert!(e.to_string().contains("only available"), "{e}");
}

#[test]
fn the_function_data_is_not_readable() {
    let engine = ExprEngine::new();
    let s = freight_scope(None, "x");
    assert!(engine.render_str("$<< __kargo.secrets >>", &s).is_err());
}

#[test]
fn single_expression_render_helper() {
    assert_eq!(render("$<< [1, 2] | length >>"), json!(2));
}

// ---------------------------------------------------------------------------------------
// The sandbox: one test per limit, and no way out to files, the environment or the network.

#[test]
fn sandbox_fuel_runs_out_with_a_clear_error() {
    let engine = ExprEngine::new();
    let e = engine
        .render_str("$<< range(100000) | map('string') | join >>", &scope())
        .unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::OutOfFuel, "{e}");
    assert!(
        e.to_string()
            .starts_with("evaluation ran out of fuel in expression `range(100000)"),
        "{e}"
    );
    // The same expression passes with fuel to spare, so it is the budget that stopped it.
    let mut generous = ExprEngine::new();
    generous.set_fuel(Some(DEFAULT_FUEL * 100));
    assert!(
        generous
            .render_str(
                "$<< range(100000) | map('string') | join | length >>",
                &scope()
            )
            .is_ok()
    );
}

#[test]
fn sandbox_recursion_depth_is_limited() {
    let engine = ExprEngine::new();
    // Nesting in the expression text: minijinja's parser stops at 150 levels.
    let deep = format!("$<< {}1{} >>", "[".repeat(1000), "]".repeat(1000));
    let e = engine.compile(&deep).unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Syntax, "{e}");
    assert!(e.message.contains("recursion"), "{e}");
    let ok = format!("$<< {}1{} >>", "[".repeat(50), "]".repeat(50));
    assert!(engine.compile(&ok).is_ok());
    // Kargo's `${{ }}`: the translator stops at its own depth limit.
    let deep = format!("${{{{ {}1{} }}}}", "(".repeat(1000), ")".repeat(1000));
    let e = engine.compile(&deep).unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::Translation, "{e}");
    assert!(e.message.contains("deep"), "{e}");
    // The runtime limit (macros and includes, which expressions cannot define anyway).
    assert_eq!(engine.env.recursion_limit(), 64);
}

#[test]
fn sandbox_output_size_is_limited() {
    let engine = ExprEngine::new();
    // One expression: 6 MB of text (within the fuel budget, over MAX_RENDERED_LEN).
    let e = engine
        .render_str("$<< 'ab' * 3000000 >>", &scope())
        .unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::TooLarge, "{e}");
    assert!(e.to_string().contains("the limit is 4194304"), "{e}");
    // Several expressions, each under the limit, joined over it.
    let e = engine
        .render_str("x$<< 'a' * 3000000 >>$<< 'b' * 3000000 >>", &scope())
        .unwrap_err();
    assert_eq!(e.kind, ExprErrorKind::TooLarge, "{e}");
    assert_eq!(e.offset, 21, "{e}");
    // Just under the limit is fine.
    let ok = engine.render_str("$<< 'a' * 4000000 >>", &scope()).unwrap();
    assert_eq!(ok.as_str().map(str::len), Some(4_000_000));
    // Building a huge string inside the expression runs out of fuel first (minijinja
    // charges allocations), or hits minijinja's own repetition cap.
    let e = engine
        .render_str("$<< ('x' * 99999999) | length >>", &scope())
        .unwrap_err();
    assert!(
        matches!(e.kind, ExprErrorKind::OutOfFuel | ExprErrorKind::Evaluation),
        "{e}"
    );
}

#[test]
fn sandbox_has_no_file_env_or_network_access() {
    let engine = ExprEngine::new();
    // The whole function table: anything added here must not reach outside the scope.
    let mut globals: Vec<&str> = engine.env.globals().map(|(name, _)| name).collect();
    globals.sort_unstable();
    assert_eq!(
        globals,
        [
            "__add",
            "__coalesce",
            "__contains",
            "__endsWith",
            "__isnil",
            "__matches",
            "__optget",
            "__startsWith",
            "__trimPrefix",
            "__trimSuffix",
            "always",
            "artifactFrom",
            "asJSON",
            "asYAML",
            "chartFrom",
            "commitFrom",
            "configMap",
            "date",
            "debug",
            "dict",
            "failure",
            "freightMetadata",
            "freightStatus",
            "imageFrom",
            "namespace",
            "quote",
            "range",
            "secret",
            "semverDiff",
            "semverParse",
            "sharedConfigMap",
            "sharedSecret",
            "stageMetadata",
            "status",
            "success",
            "unsafeQuote",
            "warehouse",
        ]
    );
    // Attempts at files, the environment and the network are undefined functions.
    for t in [
        "$<< include('/etc/passwd') >>",
        "$<< import('/etc/passwd') >>",
        "$<< env('HOME') >>",
        "$<< getenv('HOME') >>",
        "$<< os.environ.HOME >>",
        "$<< readFile('/etc/passwd') >>",
        "$<< file('/etc/passwd') >>",
        "$<< http('http://127.0.0.1/') >>",
        "$<< fetch('http://127.0.0.1/') >>",
        "$<< load_template('x') >>",
        "${{ env('HOME') }}",
    ] {
        let e = engine.render_str(t, &scope()).unwrap_err();
        assert!(
            matches!(
                e.kind,
                ExprErrorKind::Undefined | ExprErrorKind::Evaluation | ExprErrorKind::Translation
            ),
            "{t}: {e:?}"
        );
    }
    // Block tags are not expressions: `$<% include %>` is literal text, and the engine
    // has no template loader even for whole templates.
    assert_eq!(
        engine
            .render_str("$<% include '/etc/passwd' %>", &scope())
            .unwrap(),
        json!("$<% include '/etc/passwd' %>")
    );
    assert!(engine.env.get_template("/etc/passwd").is_err());
}

/// Found by fuzzing (fuzz target `expr_template`): the search for `>>` sliced the template
/// in the middle of a multi-byte character outside a string literal and panicked.
#[test]
fn non_ascii_text_inside_an_expression_is_an_error_not_a_panic() {
    let engine = ExprEngine::new();
    let e = engine.compile("$<< é >>").expect_err("not an expression");
    assert_eq!(e.kind, ExprErrorKind::Syntax);
    assert_eq!(e.expression, " é ");
    let e = engine
        .compile("$<< \u{65a}' >b>>>")
        .expect_err("unclosed string");
    assert_eq!(e.kind, ExprErrorKind::Unclosed);
    assert_eq!(
        engine.render_str("$<< 'ü' ~ \"ß\" >>", &scope()).unwrap(),
        json!("üß")
    );
}

/// Kargo's `quote()` of nil (a literal `null`, a missing map key, a null variable) gives
/// the string `null`, as its JSON template tests pin down.
#[test]
fn quote_of_a_missing_value_is_the_string_null() {
    for t in [
        "${{ quote(null) }}",
        "${{ quote(vars.nil) }}",
        "${{ quote(vars.missing) }}",
        "${{ quote(vars.obj.nope) }}",
        "${{ quote(outputs['no-such-step']) }}",
    ] {
        assert_eq!(render(t), json!("null"), "{t}");
    }
    assert_eq!(
        render("${{ quote({'foo': 'bar'}) }}"),
        json!("{\"foo\":\"bar\"}")
    );
    assert_eq!(render("${{ quote(42) }}"), json!("42"));
}

/// A git subscription's filter as Kargo's selector tests pin it down: dates answer time
/// methods and compare with `date()`, 1 and 0 read as booleans, other values fail.
#[test]
fn filter_results_and_commit_dates_as_kargo() {
    let engine = ExprEngine::new();
    let env = json!({
        "id": "abc", "author": "test-author", "subject": "fix: a bug",
        "commitDate": "2024-03-09T17:04:05Z",
    });
    let scope = Scope::from_json(env.as_object().unwrap());
    let eval = |text: &str| {
        engine
            .compile_kargo_expression(text)
            .unwrap()
            .eval_bool(&scope)
    };
    for (text, wanted) in [
        ("true", true),
        ("false", false),
        ("id == 'abc' && author == 'test-author'", true),
        ("1", true),
        ("0", false),
        ("1.0", true),
        ("commitDate.Year() >= 2023", true),
        ("commitDate.Year() >= 2025", false),
        ("commitDate.Month() == 3 && commitDate.Weekday() == 6", true),
        ("commitDate > date('2024-01-01')", true),
        ("commitDate.After(date('2024-06-01'))", false),
        ("commitDate.Format('2006-01') == '2024-03'", true),
        ("subject contains 'fix:'", true),
    ] {
        assert_eq!(
            eval(text).unwrap_or_else(|e| panic!("{text}: {e}")),
            wanted,
            "{text}"
        );
    }
    for bad in ["'invalid'", "2", "0.5", "id.Year()"] {
        assert!(eval(bad).is_err(), "{bad} must fail");
    }
}
