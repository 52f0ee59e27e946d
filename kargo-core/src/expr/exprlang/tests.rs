//! Tests of the expr-lang translator: the dialect table, errors, nesting
//! limits and evaluation of the output in minijinja.

use super::*;
use minijinja::{Environment, Error, Value};

/// Translates, asserting the output compiles as a minijinja expression.
fn t(src: &str) -> String {
    let out = translate(src).unwrap_or_else(|e| panic!("{src:?} failed: {e}"));
    let env = Environment::new();
    if let Err(e) = env.compile_expression(&out) {
        panic!("output of {src:?} is not valid minijinja: {out:?}: {e}");
    }
    out
}

fn check(src: &str, expected: &str) {
    assert_eq!(t(src), expected, "translating {src:?}");
}

fn err(src: &str) -> TranslateError {
    match translate(src) {
        Ok(out) => panic!("{src:?} unexpectedly translated to {out:?}"),
        Err(e) => e,
    }
}

/// Asserts an error whose message contains `needle`, at `offset`.
fn check_err(src: &str, needle: &str, offset: usize) {
    let e = err(src);
    assert!(
        e.message.contains(needle),
        "{src:?}: message {:?} lacks {needle:?}",
        e.message
    );
    assert_eq!(e.offset, offset, "{src:?}: {}", e.message);
    assert_eq!(e.source_text, src);
}

/// An environment with test versions of the engine helpers.
fn env() -> Environment<'static> {
    fn nil(v: &Value) -> bool {
        v.is_none() || v.is_undefined()
    }
    let mut env = Environment::new();
    env.add_function("__add", |a: Value, b: Value| -> Result<Value, Error> {
        if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
            return Ok(Value::from(format!("{x}{y}")));
        }
        if let (Ok(x), Ok(y)) = (i64::try_from(a.clone()), i64::try_from(b.clone())) {
            return Ok(Value::from(x + y));
        }
        let x = f64::try_from(a)?;
        let y = f64::try_from(b)?;
        Ok(Value::from(x + y))
    });
    env.add_function(
        "__coalesce",
        |a: Value, b: Value| {
            if nil(&a) { b } else { a }
        },
    );
    env.add_function(
        "__optget",
        |obj: Value, key: Value| -> Result<Value, Error> {
            if nil(&obj) {
                return Ok(Value::from(()));
            }
            let v = obj.get_item(&key)?;
            Ok(if v.is_undefined() { Value::from(()) } else { v })
        },
    );
    env.add_function("__matches", |s: String, re: String| {
        regex::Regex::new(&re).is_ok_and(|r| r.is_match(&s))
    });
    env.add_function("__contains", |s: String, t: String| s.contains(&t));
    env.add_function("__startsWith", |s: String, p: String| s.starts_with(&p));
    env.add_function("__endsWith", |s: String, p: String| s.ends_with(&p));
    env.add_function("__trimPrefix", |s: String, p: String| {
        s.strip_prefix(p.as_str()).unwrap_or(&s).to_owned()
    });
    env.add_function("__trimSuffix", |s: String, p: String| {
        s.strip_suffix(p.as_str()).unwrap_or(&s).to_owned()
    });
    env
}

/// Translates and evaluates against a small Kargo-like context.
fn eval(src: &str) -> Value {
    let out = t(src);
    let env = env();
    let expr = env
        .compile_expression(&out)
        .unwrap_or_else(|e| panic!("{out}: {e}"));
    let ctx = minijinja::context! {
        ctx => minijinja::context! { stage => "dev", project => "kargo-demo" },
        vars => minijinja::context! { repo => "ghcr.io/acme/app", empty => () },
        list => vec![1, 2, 3],
    };
    expr.eval(ctx).unwrap_or_else(|e| panic!("{out}: {e}"))
}

fn eval_json(src: &str) -> String {
    serde_json::to_string(&eval(src)).unwrap_or_default()
}

/// One `#[test]` per translation of a realistic Kargo expression.
macro_rules! translates {
    ($($name:ident: $src:expr => $out:expr;)*) => {
        $(
            #[test]
            fn $name() {
                check($src, $out);
            }
        )*
    };
}

// --- realistic Kargo expressions (from Kargo's docs and examples) -------

translates! {
    kargo_image_tag: "imageFrom(vars.imageRepo).Tag" => "imageFrom(vars.imageRepo).Tag";
    kargo_image_digest: r#"imageFrom("ghcr.io/x/y").Digest"# => r#"imageFrom("ghcr.io/x/y").Digest"#;
    kargo_commit_id: "commitFrom(vars.repo).ID" => "commitFrom(vars.repo).ID";
    kargo_commit_with_origin:
        r#"commitFrom(vars.gitRepo, warehouse("my-warehouse")).ID"#
        => r#"commitFrom(vars.gitRepo, warehouse("my-warehouse")).ID"#;
    kargo_quoted_chart_version:
        r#"quote(chartFrom("oci://x/y").Version)"# => r#"quote(chartFrom("oci://x/y").Version)"#;
    kargo_chart_with_name:
        "chartFrom(vars.chartRepo, 'my-chart').Version"
        => r#"chartFrom(vars.chartRepo, "my-chart").Version"#;
    kargo_semver_methods:
        "semverParse(imageFrom(r).Tag).IncMinor().String()"
        => "semverParse(imageFrom(r).Tag).IncMinor().String()";
    kargo_semver_major:
        "semverParse(imageFrom(r).Tag).Major() >= 2"
        => "(semverParse(imageFrom(r).Tag).Major() >= 2)";
    kargo_freight_metadata:
        "freightMetadata(ctx.targetFreight.name)['release']"
        => r#"freightMetadata(ctx.targetFreight.name)["release"]"#;
    kargo_artifact: "artifactFrom('my-sub').Version" => r#"artifactFrom("my-sub").Version"#;
    kargo_step_output:
        "outputs['update-image'].commitMessage" => r#"outputs["update-image"].commitMessage"#;
    kargo_task_output:
        "task.outputs['open-pr'].prNumber" => r#"task.outputs["open-pr"].prNumber"#;
    kargo_output_dot: "outputs.commit.commit" => "outputs.commit.commit";
    kargo_target_freight_origin: "ctx.targetFreight.origin.name" => "ctx.targetFreight.origin.name";
    kargo_promotion_actor: "ctx.meta.promotion.actor" => "ctx.meta.promotion.actor";
    kargo_secret: "secret('creds').password" => r#"secret("creds").password"#;
    kargo_shared_config: "sharedConfigMap('cfg')['api-url']" => r#"sharedConfigMap("cfg")["api-url"]"#;
    kargo_unsafe_quote: "unsafeQuote(outputs.build.tags)" => "unsafeQuote(outputs.build.tags)";
    kargo_branch_by_stage:
        r#"ctx.stage == "prod" ? "main" : "stage/" + ctx.stage"#
        => r#"("main" if (ctx.stage == "prod") else __add("stage/", ctx.stage))"#;
    kargo_var_default: r#"vars.x ?? "default""# => r#"__coalesce(vars.x, "default")"#;
    kargo_config_default:
        "configMap('my-config').key ?? 'fallback'"
        => r#"__coalesce(configMap("my-config").key, "fallback")"#;
    kargo_optional_image:
        r#"imageFrom(vars.repo)?.Tag ?? "latest""#
        => r#"__coalesce(__optget(imageFrom(vars.repo), "Tag"), "latest")"#;
    kargo_url_concat:
        r#"vars.gitopsRepo + "/tree/" + ctx.stage"#
        => r#"__add(__add(vars.gitopsRepo, "/tree/"), ctx.stage)"#;
    kargo_string_concat: r#""v" + string(1)"# => r#"__add("v", (1 | string))"#;
    kargo_status_if:
        r#"status("step-1") == "Succeeded" && !failure()"#
        => r#"((status("step-1") == "Succeeded") and (not failure()))"#;
    kargo_always: "always()" => "always()";
    kargo_success_and_status:
        "success() && status('open-pr') != 'Errored'"
        => r#"(success() and (status("open-pr") != "Errored"))"#;
    kargo_semver_diff: r#"semverDiff(a, b) == "Major""# => r#"(semverDiff(a, b) == "Major")"#;
    kargo_len_output: "len(outputs.list) > 0" => "((outputs.list | length) > 0)";
    kargo_tag_matches: r#"tag matches "^v[0-9]+$""# => r#"__matches(tag, "^v[0-9]+$")"#;
    kargo_in_list: r#"x in ["a", "b"]"# => r#"(x in ["a", "b"])"#;
    kargo_commit_message_contains:
        r#"commitFrom(r).Message contains "[skip]""#
        => r#"__contains(commitFrom(r).Message, "[skip]")"#;
    kargo_tag_starts_with:
        "imageFrom(r).Tag startsWith 'v1.'" => r#"__startsWith(imageFrom(r).Tag, "v1.")"#;
    kargo_ends_with: "s endsWith '-rc'" => r#"__endsWith(s, "-rc")"#;
    kargo_not_matches: "s not matches 'x'" => r#"(not __matches(s, "x"))"#;
    kargo_not_contains: "s not contains t" => "(not __contains(s, t))";
    kargo_criteria_expression:
        "imageFrom('r').Tag == commitFrom('g').Tag && len(commitFrom('g').ID) == 40"
        => r#"((imageFrom("r").Tag == commitFrom("g").Tag) and ((commitFrom("g").ID | length) == 40))"#;
    kargo_http_success:
        "response.status == 200 && response.body.state in ['done', 'ok']"
        => r#"((response.status == 200) and (response.body.state in ["done", "ok"]))"#;
    kargo_target_params: "target.params.env ?? ctx.stage" => "__coalesce(target.params.env, ctx.stage)";
    kargo_webhook_header:
        "request.header('X-Event') == 'push'" => r#"(request.header("X-Event") == "push")"#;
}

// --- literals ----------------------------------------------------------

#[test]
fn integer_literals() {
    check("42", "42");
    check("1_000", "1000");
    check("0x1F", "31");
    check("0X1f", "31");
    check("0o17", "15");
    check("0b101", "5");
    check("017", "17");
    check("9223372036854775807", "9223372036854775807");
}

#[test]
fn float_literals() {
    check("1.5", "1.5");
    check(".5", "0.5");
    check("1e3", "1000.0");
    check("2.5e-3", "0.0025");
    check("1_0.2_5", "10.25");
    check("1e300", "1e300");
}

#[test]
fn string_literals() {
    check(r#""a\"b""#, r#""a\"b""#);
    check(r"'it\'s'", r#""it's""#);
    check(r#"'say "hi"'"#, r#""say \"hi\"""#);
    check(r"`C:\dir\n`", r#""C:\\dir\\n""#);
    check("`a``b`", r#""a`b""#);
    check("`line1\nline2`", r#""line1\nline2""#);
    check(
        r#""\x41\101\u00e9\U0001F600\u{1F600}""#,
        "\"AA\u{e9}\u{1f600}\u{1f600}\"",
    );
    check(r#""tab\there\r""#, r#""tab\there\r""#);
    check(r#""\a\v\f\b""#, r#""\u0007\u000b\u000c\u0008""#);
    check(r#""\uD800""#, "\"\u{fffd}\"");
    check(r#""a>>b>>>c""#, r#""a\u003e>b\u003e\u003e>c""#);
    check(r#""$<< x >>""#, r#""$<< x \u003e>""#);
}

#[test]
fn constant_literals() {
    check("nil", "none");
    check("true", "true");
    check("false", "false");
    check("x == nil", "(x == none)");
}

#[test]
fn array_and_map_literals() {
    check("[1, 'a', nil]", r#"[1, "a", none]"#);
    check("[1, 2,]", "[1, 2]");
    check("[]", "[]");
    check("{}", "{}");
    check(
        r#"{a: 1, "b": 2, 3: x, (k): v}"#,
        r#"{"a": 1, "b": 2, "3": x, k: v}"#,
    );
    check("{a: [1], b: {c: nil},}", r#"{"a": [1], "b": {"c": none}}"#);
    check("{a: 1}.a", r#"{"a": 1}.a"#);
    check("[1, 2][0]", "[1, 2][0]");
}

// --- member access -------------------------------------------------------

#[test]
fn member_and_index_access() {
    check("a.b.c", "a.b.c");
    check("a['k'].b", r#"a["k"].b"#);
    check("a[i + 1]", "a[__add(i, 1)]");
    check("a[-1]", "a[(-1)]");
    check("a.é", r#"a["é"]"#);
    check("a.not", "a.not");
    check("a.if.true.none", "a.if.true.none");
    check("a.$b", r#"a["$b"]"#);
    check("1e-7 + 1e20", "(1e-7 + 1e20)");
    check("x.Foo(1, 'a').Bar", r#"x.Foo(1, "a").Bar"#);
    check("(a + b).c", "__add(a, b).c");
}

#[test]
fn optional_chaining() {
    check("a?.b", r#"__optget(a, "b")"#);
    check("a?.[x]", "__optget(a, x)");
    check("a?.b.c", r#"__optget(__optget(a, "b"), "c")"#);
    check("a?.b[0]", r#"__optget(a, "b")[0]"#);
    check("a?.[0].b", r#"__optget(__optget(a, 0), "b")"#);
    check("a?.M(1)", r#"(none if __isnil(a) else a.M(1))"#);
    check(
        "a?.b.M()",
        r#"(none if __isnil(__optget(a, "b")) else __optget(a, "b").M())"#,
    );
    check("(a?.b).c", r#"__optget(__optget(a, "b"), "c")"#);
    check("a.b?.c", r#"__optget(a.b, "c")"#);
    check(
        "!foo?.bar.baz",
        r#"(not __optget(__optget(foo, "bar"), "baz"))"#,
    );
}

// --- builtins ------------------------------------------------------------

#[test]
fn builtins_to_filters() {
    check("len(x)", "(x | length)");
    check("upper(s)", "(s | upper)");
    check("lower(s)", "(s | lower)");
    check("trim(s)", "(s | trim)");
    check("trim(s, '_')", r#"(s | trim("_"))"#);
    check("string(x)", "(x | string)");
    check("int(x)", "(x | int)");
    check("float(x)", "(x | float)");
    check("join(l)", "(l | join)");
    check("join(l, ',')", r#"(l | join(","))"#);
    check("split(s, ',')", r#"(s | split(","))"#);
    check("split(s, ',', 2)", r#"(s | split(",", 1))"#);
    check("split(s, ',', n)", r#"(s | split(",", (n - 1)))"#);
    check("replace(s, 'a', 'b')", r#"(s | replace("a", "b"))"#);
    check("toJSON(x)", "(x | tojson(indent=2))");
    check("keys(m)", "(m | list)");
    check("values(m)", "(m | items | map(attribute=1))");
    check("first(l)", "(l | first)");
    check("last(l)", "(l | last)");
    check("abs(-x)", "((-x) | abs)");
    check("sum(l)", "(l | sum)");
    check("min(l)", "(l | min)");
    check("max(1, 2, 3)", "([1, 2, 3] | max)");
    check("::len(x)", "(x | length)");
}

#[test]
fn builtins_to_helpers() {
    check("hasPrefix(s, 'v')", r#"__startsWith(s, "v")"#);
    check("hasSuffix(s, 'v')", r#"__endsWith(s, "v")"#);
    check("trimPrefix(s, 'v')", r#"__trimPrefix(s, "v")"#);
    check("trimSuffix(s, 'v')", r#"__trimSuffix(s, "v")"#);
    check("count(l)", "count(l)");
    check("now()", "now()");
}

#[test]
fn builtin_arity_errors() {
    check_err("len(a, b)", "`len()` takes 1 argument, got 2", 0);
    check_err("x + replace(s, 'a')", "`replace()` takes 3 arguments", 4);
    check_err("max()", "at least 1 argument", 0);
}

// --- operators and precedence ---------------------------------------------

#[test]
fn logical_operators() {
    check("a || b && c", "(a or (b and c))");
    check("a and b or c", "((a and b) or c)");
    check("not a", "(not a)");
    check("!!a", "(not (not a))");
    check("!a == b", "((not a) == b)");
    check("not a in b", "((not a) in b)");
    check("a not in b", "(a not in b)");
    check("-1 not in [1, 2]", "((-1) not in [1, 2])");
    check("!a && !b", "((not a) and (not b))");
    check("not a * b", "(not (a * b))");
}

#[test]
fn arithmetic_precedence() {
    check("1 + 2 * 3", "(1 + (2 * 3))");
    check("(1 + 2) * 3", "((1 + 2) * 3)");
    check("a - b - c", "((a - b) - c)");
    check("a / b % c", "((a / b) % c)");
    check("2 ** 3 ** 2", "(2 ** (3 ** 2))");
    check("2 ^ 3", "(2 ** 3)");
    check("-2 ** 2", "(-(2 ** 2))");
    check("-a * b", "((-a) * b)");
    check("2 ** -1", "(2 ** (-1))");
    check("+x", "(x)");
    check("1 + x", "__add(1, x)");
    check("-1 + 2.5", "((-1) + 2.5)");
    check("(1 + 2) + x", "__add((1 + 2), x)");
    check("a + b * c > d", "(__add(a, (b * c)) > d)");
}

#[test]
fn comparison_chains() {
    check("1 < 2 < 3", "(1 < 2 < 3)");
    check("a <= b > c", "(a <= b > c)");
    check("a < b == c", "((a < b) == c)");
    check("a == b == c", "((a == b) == c)");
    check("a == b in c", "((a == b) in c)");
}

#[test]
fn conditional_operators() {
    check("a ? b : c ? d : e", "(b if a else (d if c else e))");
    check("a ? b ? c : d : e", "((c if b else d) if a else e)");
    check("a || b ? c : d", "(c if (a or b) else d)");
    check("!a ? b : c", "(b if (not a) else c)");
    check("a ?: b", "(a or b)");
    check(
        "if a { 1 } else if b { 2 } else { 3 }",
        "(1 if a else (2 if b else 3))",
    );
    check("f(a ? 1 : 2)", "f((1 if a else 2))");
}

#[test]
fn coalesce_precedence() {
    check("a ?? b ?? c", "__coalesce(__coalesce(a, b), c)");
    check("a + b ?? c", "__add(a, __coalesce(b, c))");
    check("a || b ?? c", "(a or __coalesce(b, c))");
    check("a ?? (b || c)", "__coalesce(a, (b or c))");
    check("not a ?? b", "(not __coalesce(a, b))");
    check("a ?? b ? c : d", "(c if __coalesce(a, b) else d)");
    check_err("a ?? b || c", "`??` cannot be mixed with `||`", 7);
    check_err("a ?? b + c", "`??` cannot be mixed with `+`", 7);
}

#[test]
fn comments_and_semicolons() {
    check("a /* c */ + // x\n b", "__add(a, b)");
    check("a;", "a");
    check("  a  ", "a");
}

// --- unsupported constructs ------------------------------------------------

#[test]
fn unsupported_predicates() {
    check_err("filter(l, {# > 1})", "predicate closures", 10);
    check_err("map(l, .Name)", "predicate closures", 7);
    check_err("all(l)", "predicate closures", 0);
    check_err("count(l, # > 1)", "predicate closures", 9);
    check_err("f(l, {# > 1})", "predicate closures", 6);
    check_err("#", "pointer", 0);
    check_err(".Name", "pointer", 0);
}

#[test]
fn unsupported_operators() {
    check_err("a | upper()", "the pipe operator `|` is not supported", 2);
    check_err("let x = 1; x", "`let` bindings are not supported", 0);
    check_err("1..3", "the range operator `..` is not supported", 1);
    check_err("a[1:2]", "slices `a[1:2]` are not supported", 1);
    check_err("a[:2]", "slices", 1);
    check_err("a[1:]", "slices", 1);
    check_err(r#"b"abc""#, "bytes literals", 0);
    check_err("a; b", "sequence expressions", 1);
    check_err("(a; b)", "sequence expressions", 2);
    check_err(r#"$env["x"]"#, "`$env` is not supported", 0);
}

#[test]
fn unsupported_names() {
    check_err("None", "reserved word in minijinja", 0);
    check_err("is(x)", "reserved word in minijinja", 0);
    check_err("x + é", "cannot be written in minijinja", 4);
    check_err("a$b", "cannot be written in minijinja", 0);
}

#[test]
fn malformed_input() {
    check_err(r#""abc"#, "unterminated string literal", 0);
    check_err("'ab\ncd'", "unterminated string literal", 0);
    check_err("`abc", "unterminated raw string literal", 0);
    check_err(r"'a\qb'", "invalid escape sequence", 2);
    check_err(r#""\x4""#, "invalid escape sequence", 1);
    check_err(r#""\'""#, "invalid escape sequence", 1);
    check_err("1 +", "unexpected end of expression", 3);
    check_err("", "unexpected end of expression", 0);
    check_err("a b", "unexpected `b` after the end of the expression", 2);
    check_err(")", "unexpected `)`", 0);
    check_err("(a", "expected `)`", 2);
    check_err("f(a b)", "expected `,`", 4);
    check_err("1abc", "malformed number", 0);
    check_err("99999999999999999999", "invalid integer literal", 0);
    check_err("1e400", "invalid float literal", 0);
    check_err("0x", "invalid hexadecimal literal", 0);
    check_err("a @ b", "unrecognized character '@'", 2);
    check_err("/* abc", "unclosed comment", 0);
    check_err("a not b", "unexpected `b`", 6);
    check_err("a ? b", "expected `:`", 5);
    check_err("a.1", "unexpected `.1`", 1);
    check_err("a.(b)", "expected a property name", 2);
    check_err("{in: 1}", "a map key must be", 1);
    check_err("true.x", "unexpected `.`", 4);
}

// --- robustness ----------------------------------------------------------------

#[test]
fn nesting_depth_is_capped() {
    let ok = format!("{}x{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(translate(&ok).as_deref(), Ok("x"));
    let deep = format!("{}x{}", "(".repeat(300), ")".repeat(300));
    assert!(err(&deep).message.contains("nested too deeply"));
    let arrays = format!("{}1{}", "[".repeat(250), "]".repeat(250));
    assert!(translate(&arrays).is_ok());
    let arrays = format!("{}1{}", "[".repeat(300), "]".repeat(300));
    assert!(err(&arrays).message.contains("nested too deeply"));
    let nots = format!("{}x", "!".repeat(300));
    assert!(err(&nots).message.contains("nested too deeply"));
    let sum = vec!["1"; 300].join(" + ");
    assert!(err(&sum).message.contains("nested too deeply"));
    let chain = format!("a{}", ".b".repeat(100_000));
    assert!(err(&chain).message.contains("nested too deeply"));
    for (open, close) in [
        ("f(", ")"),
        ("x[", "]"),
        ("{a: ", "}"),
        ("a?.[", "]"),
        ("o.M(", ")"),
        ("(if a { ", " } else { 1 })"),
        ("1 ** ", ""),
        ("c ? 1 : ", ""),
    ] {
        let ok = format!("{}y{}", open.repeat(80), close.repeat(80));
        assert!(translate(&ok).is_ok(), "{open}");
        let deep = format!("{}y{}", open.repeat(400), close.repeat(400));
        assert!(err(&deep).message.contains("nested too deeply"), "{open}");
    }
    let unclosed = "f(".repeat(10_000);
    assert!(err(&unclosed).message.contains("nested too deeply"));
}

#[test]
fn inline_parsing_fits_small_stacks() {
    let worker = std::thread::Builder::new().stack_size(1 << 20).spawn(|| {
        for open in ["f(", "x[", "{a: ", "a?.[", "o.M(", "-", "!", "(", "1 ** "] {
            let per_level = Lexer::new(open)
                .run()
                .map_or(1, |toks| toks.iter().filter(|t| may_nest(t)).count());
            let n = INLINE_NESTING_TOKENS / per_level.max(1);
            // Unclosed on purpose: the parser still recurses `n` levels deep.
            let src = format!("{}y", open.repeat(n));
            let _ = translate(&src);
        }
        let deep = format!("{}y{}", "x[".repeat(250), "]".repeat(250));
        translate(&deep).is_ok()
    });
    let joined = worker.map(|w| w.join());
    assert!(matches!(joined, Ok(Ok(true))));
}

#[test]
fn garbage_never_panics() {
    const PIECES: [&str; 48] = [
        "a", "b1", "1", "0x", "1e", ".5", "_", "(", ")", "[", "]", "{", "}", ",", ":", "?", "??",
        "?.", ".", "..", "+", "-", "*", "**", "!", "not", "in", "and", "||", "==", "<", "\"s\"",
        "'", "\"", "`", "\\", "#", "|", ";", "let", "if", "else", "${{", "}}", "${%", "%}", "é",
        " ",
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    for round in 0..200 {
        let len = next() % 24;
        let mut s = String::new();
        for _ in 0..len {
            if round % 2 == 0 {
                s.push_str(PIECES[next() % PIECES.len()]);
            } else {
                // Any char from a mixed range, including multi-byte ones.
                let c = char::from_u32((next() % 0x3000) as u32).unwrap_or('?');
                s.push(c);
            }
        }
        if let Ok(out) = translate(&s) {
            assert!(!out.contains(">>"), "{s:?} -> {out:?}");
            let env = Environment::new();
            assert!(
                env.compile_expression(&out).is_ok(),
                "{s:?} -> {out:?} does not compile"
            );
        }
        let _ = translate_template(&s);
        let _ = translate_template(&format!("x ${{{{ {s} }}}} y"));
    }
}

/// A tiny generator of valid expr-lang expressions.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() % items.len()]
    }

    fn expr(&mut self, depth: usize) -> String {
        const ATOMS: [&str; 12] = [
            "a", "b.c", "nil", "true", "1", "2.5", "0x1F", "'s'", "\"q>>\"", "`r`", "x[0]", "f()",
        ];
        const BINOPS: [&str; 24] = [
            "+",
            "-",
            "*",
            "/",
            "%",
            "**",
            "^",
            "==",
            "!=",
            "<",
            ">",
            "<=",
            ">=",
            "&&",
            "||",
            "and",
            "or",
            "in",
            "not in",
            "matches",
            "contains",
            "startsWith",
            "endsWith",
            "not contains",
        ];
        if depth == 0 {
            return self.pick(&ATOMS).to_owned();
        }
        let d = depth - 1;
        match self.next() % 14 {
            0 => format!("({})", self.expr(d)),
            1 => format!("{} ? {} : {}", self.expr(d), self.expr(d), self.expr(d)),
            2 => format!("{} ?? {}", self.expr(0), self.expr(0)),
            3 => format!("{}{}", self.pick(&["!", "not ", "-", "+"]), self.expr(d)),
            4 => format!("[{}, {}]", self.expr(d), self.expr(d)),
            5 => format!("{{k: {}, 'q': {}, (a): 1}}", self.expr(d), self.expr(d)),
            6 => format!("a?.b{}", self.pick(&[".c", "?.[1]", ".M(1)", "[0]", ""])),
            7 => format!(
                "{}({})",
                self.pick(&["len", "upper", "string", "first", "max", "imageFrom"]),
                self.expr(d)
            ),
            8 => format!("({}).Tag.M({})", self.expr(d), self.expr(d)),
            9 => format!("{} < {} <= {}", self.expr(0), self.expr(0), self.expr(0)),
            10 => format!(
                "(if {} {{ {} }} else {{ {} }})",
                self.expr(d),
                self.expr(d),
                self.expr(d)
            ),
            _ => {
                let op = self.pick(&BINOPS);
                format!("{} {op} {}", self.expr(d), self.expr(d))
            }
        }
    }
}

#[test]
fn generated_expressions_compile_in_minijinja() {
    let mut g = Gen(7);
    let env = Environment::new();
    for _ in 0..200 {
        let depth = g.next() % 5;
        let src = g.expr(depth);
        match translate(&src) {
            Ok(out) => {
                assert!(!out.contains(">>"), "{src:?} -> {out:?}");
                if let Err(e) = env.compile_expression(&out) {
                    panic!("{src:?} -> {out:?} does not compile: {e}");
                }
            }
            // `??` mixed with other operators is an expr-lang error.
            Err(e) => assert!(e.message.contains("??"), "{src:?}: {e}"),
        }
    }
}

// --- templates --------------------------------------------------------------

#[test]
fn template_single_and_multiple() {
    assert_eq!(
        translate_template("image: ${{ imageFrom(vars.repo).Tag }}").as_deref(),
        Ok("image: $<< imageFrom(vars.repo).Tag >>"),
    );
    assert_eq!(
        translate_template("${{ a }}-${{b+1}}/${{ c }}").as_deref(),
        Ok("$<< a >>-$<< __add(b, 1) >>/$<< c >>"),
    );
    assert_eq!(
        translate_template("${{ 1 }}${{ 2 }}").as_deref(),
        Ok("$<< 1 >>$<< 2 >>"),
    );
}

#[test]
fn template_literal_text_is_kept() {
    let src = "héllo\n  ${{ x }}\t!} }{ %}";
    assert_eq!(
        translate_template(src).as_deref(),
        Ok("héllo\n  $<< x >>\t!} }{ %}"),
    );
    assert_eq!(translate_template("plain 42").as_deref(), Ok("plain 42"));
    assert_eq!(translate_template("").as_deref(), Ok(""));
    assert_eq!(
        translate_template("$${{ x }}}").as_deref(),
        Ok("$$<< x >>}"),
    );
    assert_eq!(
        translate_template("cost $<<5 ${{ x }} $<<").as_deref(),
        Ok(r#"cost $<< "$<<" >>5 $<< x >> $<< "$<<" >>"#),
    );
}

#[test]
fn template_percent_form_and_strings() {
    assert_eq!(
        translate_template(r#"${% "}}" %}"#).as_deref(),
        Ok(r#"$<< "}}" >>"#),
    );
    assert_eq!(
        translate_template(r#"a ${{ "}}" + '}}' + `}}` }} b"#).as_deref(),
        Ok(r#"a $<< __add(__add("}}", "}}"), "}}") >> b"#),
    );
    assert_eq!(
        translate_template(r#"${% a %} ${{ "%}" }} ${% {b: 1} %}"#).as_deref(),
        Ok(r#"$<< a >> $<< "%}" >> $<< {"b": 1} >>"#),
    );
    assert_eq!(
        translate_template("${{ x // it's }} y").as_deref(),
        Ok("$<< x >> y"),
    );
    assert_eq!(
        translate_template("${{ x /* }} */ }}").as_deref(),
        Ok("$<< x >>"),
    );
}

#[test]
fn template_earliest_delimiter_wins() {
    assert_eq!(
        translate_template("${{ '${%' }} ${% 1 %}").as_deref(),
        Ok(r#"$<< "${%" >> $<< 1 >>"#),
    );
    assert_eq!(
        translate_template("${% '${{' %}").as_deref(),
        Ok(r#"$<< "${{" >>"#),
    );
}

#[test]
fn template_errors() {
    let e = translate_template("abc ${{ x").err();
    assert_eq!(e.as_ref().map(|e| e.offset), Some(4));
    assert!(e.is_some_and(|e| e.message.contains("unclosed")));
    let e = translate_template("${% x }}").err();
    assert!(e.is_some_and(|e| e.message.contains("`%}`")));
    let e = translate_template(r#"${{ "}} "#).err();
    assert!(e.is_some_and(|e| e.message.contains("unclosed")));
    let src = "ab ${{ 1 + }}";
    let e = translate_template(src).err();
    assert_eq!(e.as_ref().map(|e| e.offset), Some(11));
    assert_eq!(e.map(|e| e.source_text), Some(src.to_owned()));
    let e = translate_template("x ${{ a | f() }}").err();
    assert_eq!(e.as_ref().map(|e| e.offset), Some(8));
    assert!(e.is_some_and(|e| e.message.contains("pipe")));
}

#[test]
fn error_display_names_place() {
    let e = err("a | b");
    assert_eq!(
        e.to_string(),
        "the pipe operator `|` is not supported (at byte 2 of `a | b`)"
    );
}

// --- evaluation through minijinja -------------------------------------------

#[test]
fn evaluates_in_minijinja() {
    assert_eq!(
        eval_json(r#"ctx.stage == "prod" ? "main" : "stage/" + ctx.stage"#),
        r#""stage/dev""#
    );
    assert_eq!(eval_json(r#"vars.missing ?? "default""#), r#""default""#);
    assert_eq!(eval_json(r#"vars.empty ?? "default""#), r#""default""#);
    assert_eq!(eval_json("vars.nothing?.deeper.still"), "null");
    assert_eq!(eval_json("vars?.repo"), r#""ghcr.io/acme/app""#);
    assert_eq!(eval_json("keys({a: 1, b: 2})"), r#"["a","b"]"#);
    assert_eq!(eval_json("values({a: 1, b: 2})"), "[1,2]");
    assert_eq!(eval_json("toJSON({a: 1})"), r#""{\n  \"a\": 1\n}""#);
    assert_eq!(eval_json(r#"split("a,b,c", ",", 2)"#), r#"["a","b,c"]"#);
    assert_eq!(eval_json(r#"split("1.2.3", ".")[-1]"#), r#""3""#);
    assert_eq!(eval_json("max(1, 5, 3)"), "5");
    assert_eq!(eval_json("min([4, 2])"), "2");
    assert_eq!(eval_json("len('abc') + len(list)"), "6");
    assert_eq!(eval_json("join(['a', 'b'], '-')"), r#""a-b""#);
    assert_eq!(eval_json("trim('__x__', '_')"), r#""x""#);
    assert_eq!(eval_json("upper(trimPrefix('v1.2', 'v'))"), r#""1.2""#);
    assert_eq!(eval_json("2 ** 3 ** 2"), "512");
    assert_eq!(eval_json("-2 ** 2"), "-4");
    assert_eq!(eval_json("7 / 2"), "3.5");
    assert_eq!(eval_json(r#""a>>b""#), r#""a>>b""#);
    assert_eq!(eval_json("1 < 2 < 3 && !(1 > 2)"), "true");
    assert_eq!(eval_json("2 not in list"), "false");
    assert_eq!(eval_json("'v1.2' matches '^v[0-9]'"), "true");
    assert_eq!(eval_json("list[-1] + 0x10"), "19");
    assert_eq!(eval_json("{a: [1, nil]}.a[1] == nil"), "true");
    assert_eq!(eval_json(r#"int("42") + float("0.5")"#), "42.5");
    assert_eq!(eval_json("string(12) + '!'"), r#""12!""#);
    assert_eq!(eval_json("first(list) + last(list)"), "4");
    assert_eq!(eval_json("abs(-3) + sum(list)"), "9");
    assert_eq!(eval_json("replace(lower('A-B-C'), '-', '_')"), r#""a_b_c""#);
    assert_eq!(eval_json("if false { 1 } else { 2 }"), "2");
}
