//! Translation of Kargo's expr-lang expressions into minijinja expressions.
//!
//! Kargo manifests embed [expr-lang](https://expr-lang.org) expressions in
//! strings as `${{ expr }}` (or `${% expr %}` when the expression itself
//! contains `}}`). kargo-rs evaluates `$<< expr >>` with minijinja instead, so
//! existing manifests are translated once, before evaluation:
//!
//! * [`translate`] turns one expr-lang expression (the text between the
//!   delimiters, or a plain expression such as a `freightCreationCriteria`)
//!   into minijinja expression text;
//! * [`translate_template`] rewrites a whole Kargo template string, turning
//!   every `${{ … }}` / `${% … %}` into `$<< … >>` and keeping literal text
//!   byte for byte.
//!
//! The translator has a real lexer and a precedence-climbing parser that follow
//! expr-lang's own grammar (operator precedence, associativity, literal
//! syntax). The result is emitted fully parenthesised, so minijinja's
//! different precedence rules never change the meaning. Input that uses a
//! construct outside the supported dialect is rejected with a
//! [`TranslateError`] naming the construct and its byte offset; the
//! translator never panics and rejects nesting deeper than 256 levels. An
//! expression with more than 48 brackets and operators is parsed on a
//! short-lived helper thread with a 64 MiB stack, so deep nesting cannot
//! overflow the caller's stack; translate once and cache the result.
//!
//! # Supported dialect
//!
//! | expr-lang | minijinja output | notes |
//! |---|---|---|
//! | `42`, `1_000`, `0x1F`, `0o17`, `0b101` | `42`, `1000`, `31`, `15`, `5` | integers are written in decimal; values must fit in 64 bits |
//! | `1.5`, `.5`, `1e3` | `1.5`, `0.5`, `1000.0` | floats always keep a fraction or exponent |
//! | `"a\tb"`, `'it'`, `` `C:\raw` `` | `"a\tb"`, `"it"`, `"C:\\raw"` | Go escapes (`\n`, `\x41`, `\101`, `\u00e9`, `\u{1F600}`, `\U0001F600`…) are decoded, then re-escaped for minijinja; a `>` followed by `>` is written `\u003e` so no output ever contains `>>` |
//! | `true`, `false`, `nil` | `true`, `false`, `none` | |
//! | `[a, b]` | `[a, b]` | trailing commas are accepted |
//! | `{a: 1, "b": 2, 3: x, (k): v}` | `{"a": 1, "b": 2, "3": x, k: v}` | bare and numeric keys are strings; a parenthesised key is an expression |
//! | `a.b`, `a["k"]`, `a[i]`, `a[-1]` | `a.b`, `a["k"]`, `a[i]`, `a[(-1)]` | a name minijinja cannot spell is written `a["name"]` |
//! | `a?.b`, `a?.[x]`, `a?.M(x)` | `__optget(a, "b")`, `__optget(a, x)`, `(none if __isnil(a) else a.M(x))` | the links after `?.` in the same chain are nil-safe too (see below) |
//! | `f(x, y)` | `f(x, y)` | any function not listed below keeps its name (`imageFrom`, `quote`, `status`, `semverParse`, …) |
//! | `x.Foo(y)` | `x.Foo(y)` | a method call on the object the engine provides |
//! | `len(x)` | `(x \| length)` | |
//! | `upper(s)`, `lower(s)` | `(s \| upper)`, `(s \| lower)` | |
//! | `trim(s)`, `trim(s, cs)` | `(s \| trim)`, `(s \| trim(cs))` | |
//! | `string(x)`, `int(x)`, `float(x)` | `(x \| string)`, `(x \| int)`, `(x \| float)` | |
//! | `join(l)`, `join(l, sep)` | `(l \| join)`, `(l \| join(sep))` | |
//! | `split(s, sep)`, `split(s, sep, n)` | `(s \| split(sep))`, `(s \| split(sep, n - 1))` | expr-lang counts pieces, minijinja counts splits |
//! | `replace(s, a, b)` | `(s \| replace(a, b))` | replaces every occurrence, like expr-lang |
//! | `toJSON(x)` | `(x \| tojson(indent=2))` | expr-lang's `toJSON` indents with two spaces |
//! | `keys(m)`, `values(m)` | `(m \| list)`, `(m \| items \| map(attribute=1))` | |
//! | `first(l)`, `last(l)`, `abs(x)`, `sum(l)` | `(l \| first)`, `(l \| last)`, `(x \| abs)`, `(l \| sum)` | |
//! | `min(l)`, `max(l)`, `max(a, b, c)` | `(l \| min)`, `(l \| max)`, `([a, b, c] \| max)` | |
//! | `hasPrefix(s, p)`, `hasSuffix(s, p)` | `__startsWith(s, p)`, `__endsWith(s, p)` | |
//! | `trimPrefix(s, p)`, `trimSuffix(s, p)` | `__trimPrefix(s, p)`, `__trimSuffix(s, p)` | |
//! | `!x`, `not x` | `(not x)` | binds tighter than comparisons: `!a == b` is `((not a) == b)` |
//! | `-x`, `+x` | `(-x)`, `(x)` | |
//! | `a && b`, `a and b`, `a \|\| b`, `a or b` | `(a and b)`, `(a or b)` | |
//! | `a == b`, `!=`, `<`, `>`, `<=`, `>=` | `(a == b)`, … | `a < b < c` is a chain: `(a < b < c)` |
//! | `a + b` | `__add(a, b)` | strings concatenate; `(a + b)` when both sides are number literals or arithmetic on them |
//! | `a - b`, `a * b`, `a / b`, `a % b` | `(a - b)`, … | `/` is float division in both languages |
//! | `a ** b`, `a ^ b` | `(a ** b)` | right-associative |
//! | `c ? a : b`, `c ?: b` | `(a if c else b)`, `(c or b)` | right-associative |
//! | `if c { a } else { b }` | `(a if c else b)` | `else if` chains too |
//! | `a ?? b` | `__coalesce(a, b)` | cannot be mixed with other binary operators without parentheses (an expr-lang rule) |
//! | `x in c`, `x not in c` | `(x in c)`, `(x not in c)` | |
//! | `s matches re` | `__matches(s, re)` | `not matches` gives `(not __matches(s, re))`; the same for the three below |
//! | `s contains t` | `__contains(s, t)` | |
//! | `s startsWith t`, `s endsWith t` | `__startsWith(s, t)`, `__endsWith(s, t)` | |
//! | `// …`, `/* … */` | (dropped) | comments |
//!
//! Not supported, each rejected with a [`TranslateError`] that names the
//! construct: predicate closures (`filter(l, { # > 1 })`, `map`, `all`, `any`,
//! `none`, `one`, `find…`, `groupBy`, `sortBy`, `reduce`, and `count`/`sum`
//! with a predicate), the `#` / `.field` pointer, the pipe operator `|`,
//! `let` bindings, sequences `a; b`, the range operator `..`, slices
//! `a[1:2]`, bytes literals `b"…"`, `$env`, and identifiers minijinja cannot
//! spell (non-ASCII names, `$` in names, minijinja keywords such as `is` or
//! `None` used as variable names).
//!
//! # Engine helpers
//!
//! The output calls these functions, which the evaluating engine must
//! register (none and undefined are both "nil"):
//!
//! | helper | semantics |
//! |---|---|
//! | `__optget(obj, key)` | none when `obj` is none or undefined; otherwise `obj[key]` (attribute or item lookup, negative list indices counting from the end), none when that is missing |
//! | `__isnil(x)` | true when `x` is none or undefined |
//! | `__coalesce(a, b)` | `b` when `a` is none or undefined, otherwise `a` |
//! | `__add(a, b)` | concatenation when both are strings, numeric addition when both are numbers, an error otherwise |
//! | `__matches(s, re)` | whether regular expression `re` (RE2 syntax) matches anywhere in string `s` |
//! | `__contains(s, t)` | whether string `s` contains string `t` |
//! | `__startsWith(s, p)`, `__endsWith(s, p)` | whether string `s` starts / ends with `p` |
//! | `__trimPrefix(s, p)`, `__trimSuffix(s, p)` | `s` without the leading / trailing `p` (unchanged when absent) |
//!
//! # Known differences
//!
//! * `??` evaluates both sides (expr-lang skips the right side when the left
//!   is not nil); it only matters when the right side fails.
//! * After a `?.`, every later `.name`, `.M()` and `?.[x]` link of the same
//!   chain is nil-safe, as in expr-lang; a nil met *inside* the chain gives
//!   none where expr-lang reports an error.
//! * `%` follows minijinja (the result has the sign of the divisor) where Go
//!   truncates, so the two differ for negative operands.
//! * `len` counts characters of a string (expr-lang counts bytes).
//! * minijinja's own parser allows about 70 levels of nesting, so a very
//!   deeply nested expression can be translated but then fail to compile.
//!
//! # Templates
//!
//! [`translate_template`] splits like Kargo: the earliest `${{` or `${%`
//! wins, the expression runs to the next `}}` / `%}`, and an unclosed
//! delimiter is an error. Unlike Kargo, a closing delimiter inside a string
//! literal (or a `/* */` comment) of the expression does not close it; for
//! every template Kargo accepts the two split identically.
//!
//! Literal text is copied unchanged, except that each `$<<` in it, which our
//! engine would read as the start of an expression, is written as the
//! expression `$<< "$<<" >>`, which renders the same three characters. A
//! template with no Kargo delimiter keeps Kargo's "returned untouched"
//! behaviour unless it contains `$<<`.

mod ast;
mod emit;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use emit::emit;
use lexer::{Lexer, TokKind, Token};
use parser::Parser;

/// The deepest nesting the translator accepts, counting both the parser's
/// recursion and the depth of the resulting syntax tree.
const MAX_DEPTH: usize = 256;

/// Why an expression or template could not be translated.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("{message} (at byte {offset} of `{source_text}`)")]
pub struct TranslateError {
    /// What is unsupported or malformed, in plain words.
    pub message: String,
    /// Byte offset of the offending construct in `source_text`.
    pub offset: usize,
    /// The text that was being translated: the expression given to
    /// [`translate`], or the whole template given to [`translate_template`].
    pub source_text: String,
}

/// Translates one expr-lang expression (the text between `${{` and `}}`) into
/// minijinja expression syntax.
///
/// The result is fully parenthesised and may call the engine helpers listed
/// in the [module documentation](self).
///
/// ```
/// use kargo_core::expr::exprlang::translate;
///
/// assert_eq!(
///     translate(r#"ctx.stage == "prod" ? "main" : "stage/" + ctx.stage"#).unwrap(),
///     r#"("main" if (ctx.stage == "prod") else __add("stage/", ctx.stage))"#,
/// );
/// ```
///
/// # Errors
///
/// Returns a [`TranslateError`] when the expression is malformed, uses a
/// construct outside the supported dialect, or nests deeper than 256 levels.
pub fn translate(src: &str) -> Result<String, TranslateError> {
    translate_inner(src).map_err(|f| TranslateError {
        message: f.message,
        offset: f.offset,
        source_text: src.to_owned(),
    })
}

/// Splits a Kargo template string on `${{ ... }}` and `${% ... %}` delimiters
/// and returns the same string with every expression translated and
/// re-wrapped as `$<< ... >>`; literal text is kept byte for byte.
///
/// The earliest opening delimiter wins, an unclosed delimiter is an error, and
/// a closing delimiter inside a string literal of the expression does not
/// close it. Each `$<<` in literal text is written as `$<< "$<<" >>` so the
/// engine renders it literally.
///
/// ```
/// use kargo_core::expr::exprlang::translate_template;
///
/// assert_eq!(
///     translate_template("image: ${{ imageFrom(vars.repo).Tag }}!").unwrap(),
///     "image: $<< imageFrom(vars.repo).Tag >>!",
/// );
/// ```
///
/// # Errors
///
/// Returns a [`TranslateError`] (with offsets into the whole template) when a
/// delimiter is unclosed or an expression cannot be translated.
pub fn translate_template(src: &str) -> Result<String, TranslateError> {
    let err = |f: Failure| TranslateError {
        message: f.message,
        offset: f.offset,
        source_text: src.to_owned(),
    };
    let mut out = String::with_capacity(src.len() + 16);
    let mut pos = 0;
    loop {
        let rest = &src[pos..];
        let open = [("${{", "}}"), ("${%", "%}")]
            .into_iter()
            .filter_map(|(start, end)| rest.find(start).map(|i| (i, end)))
            .min_by_key(|&(i, _)| i);
        let Some((idx, close)) = open else {
            push_literal(&mut out, rest);
            return Ok(out);
        };
        push_literal(&mut out, &rest[..idx]);
        let open_at = pos + idx;
        let expr_start = open_at + 3;
        let Some(expr_end) = find_close(src, expr_start, close) else {
            return Err(err(Failure::new(
                format!("unclosed expression: expected `{close}` before the end of the template"),
                open_at,
            )));
        };
        let translated = translate_inner(&src[expr_start..expr_end]).map_err(|mut f| {
            f.offset += expr_start;
            err(f)
        })?;
        out.push_str("$<< ");
        out.push_str(&translated);
        out.push_str(" >>");
        pos = expr_end + close.len();
    }
}

/// Copies literal template text, neutralising our own opening delimiter.
fn push_literal(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find("$<<") {
        out.push_str(&rest[..i]);
        out.push_str("$<< \"$<<\" >>");
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
}

/// Finds the byte index of the closing delimiter `close`, starting at `from`,
/// skipping string literals and block comments of the expression. A line
/// comment ends at a newline or at the closing delimiter (as in Kargo).
fn find_close(src: &str, from: usize, close: &str) -> Option<usize> {
    let b = src.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\\' => i += 2,
                        b'\n' => break,
                        c if c == q => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                i += 2;
                while i < b.len() && b[i] != b'\n' {
                    if b[i..].starts_with(close.as_bytes()) {
                        return Some(i);
                    }
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !b[i..].starts_with(b"*/") {
                    i += 1;
                }
                i += 2;
            }
            _ => {
                if b[i..].starts_with(close.as_bytes()) {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// An error before the source text is attached.
#[derive(Debug)]
struct Failure {
    message: String,
    offset: usize,
}

impl Failure {
    fn new(message: impl Into<String>, offset: usize) -> Self {
        Self {
            message: message.into(),
            offset,
        }
    }
}

type Res<T> = Result<T, Failure>;

/// Inputs with more tokens that can open a nesting level than this are
/// parsed on a helper thread with a large stack: in debug builds one nesting
/// level of the recursive-descent parser can take about 9 KiB of stack, so 256
/// levels would not fit on a 2 MiB thread. Everyday expressions stay inline.
const INLINE_NESTING_TOKENS: usize = 48;

/// Stack size of the helper thread (virtual memory, committed on use).
const HELPER_STACK_BYTES: usize = 64 << 20;

/// Whether a token can make the parser recurse one level deeper.
fn may_nest(t: &Token) -> bool {
    match t.kind {
        TokKind::Op => t.text != "." && t.text != "?.",
        TokKind::Bracket => matches!(t.text.as_str(), "(" | "[" | "{"),
        _ => false,
    }
}

fn translate_inner(src: &str) -> Res<String> {
    let tokens = Lexer::new(src).run()?;
    if tokens.iter().filter(|t| may_nest(t)).count() <= INLINE_NESTING_TOKENS {
        return parse_and_emit(tokens);
    }
    let worker = std::thread::Builder::new()
        .name("exprlang-translate".to_owned())
        .stack_size(HELPER_STACK_BYTES)
        .spawn(move || parse_and_emit(tokens))
        .map_err(|e| {
            Failure::new(
                format!("the expression is too large to translate here: {e}"),
                0,
            )
        })?;
    worker
        .join()
        .unwrap_or_else(|_| Err(Failure::new("internal error while translating", 0)))
}

fn parse_and_emit(tokens: Vec<Token>) -> Res<String> {
    let mut parser = Parser::new(tokens);
    let node = parser.parse_root()?;
    let mut out = String::new();
    emit(&node, &mut out)?;
    Ok(out)
}
