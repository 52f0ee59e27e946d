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

use std::fmt::Write as _;

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
    let mut parser = Parser {
        toks: tokens,
        i: 0,
        depth: 0,
    };
    let node = parser.parse_root()?;
    let mut out = String::new();
    emit(&node, &mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokKind {
    Ident,
    Number,
    Str,
    Bytes,
    Op,
    Bracket,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokKind,
    /// Raw text, except for `Str` where it is the decoded value.
    text: String,
    start: usize,
}

impl Token {
    fn is(&self, kind: TokKind, text: &str) -> bool {
        self.kind == kind && self.text == text
    }

    fn describe(&self) -> String {
        match self.kind {
            TokKind::Eof => "the end of the expression".to_owned(),
            TokKind::Str => "a string literal".to_owned(),
            _ => format!("`{}`", self.text),
        }
    }
}

/// Letters, `_` and `$` start identifiers in expr-lang.
fn is_alphabetic(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

fn is_alphanumeric(c: char) -> bool {
    is_alphabetic(c) || c.is_numeric()
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    toks: Vec<Token>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            toks: Vec::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn accept(&mut self, set: &str) -> bool {
        match self.peek() {
            Some(c) if set.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, set: &str) {
        while self.accept(set) {}
    }

    fn push(&mut self, kind: TokKind, start: usize) {
        let text = self.src[start..self.pos].to_owned();
        self.toks.push(Token { kind, text, start });
    }

    fn run(mut self) -> Res<Vec<Token>> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '"' | '\'' => {
                    self.bump();
                    let text = self.quoted(c, start)?;
                    self.toks.push(Token {
                        kind: TokKind::Str,
                        text,
                        start,
                    });
                }
                '`' => {
                    self.bump();
                    let text = self.raw(start)?;
                    self.toks.push(Token {
                        kind: TokKind::Str,
                        text,
                        start,
                    });
                }
                'b' | 'B' if matches!(self.peek2(), Some('"' | '\'')) => {
                    self.bump();
                    let quote = self.bump().unwrap_or('"');
                    self.quoted(quote, start)?;
                    self.push(TokKind::Bytes, start);
                }
                '0'..='9' => self.number(start)?,
                '.' => {
                    self.bump();
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.number(start)?;
                    } else {
                        self.accept(".");
                        self.push(TokKind::Op, start);
                    }
                }
                '?' => {
                    self.bump();
                    self.accept(".?");
                    self.push(TokKind::Op, start);
                }
                '/' => {
                    self.bump();
                    if self.accept("/") {
                        while self.peek().is_some_and(|c| c != '\n') {
                            self.bump();
                        }
                    } else if self.accept("*") {
                        loop {
                            match self.bump() {
                                None => return Err(Failure::new("unclosed comment", start)),
                                Some('*') if self.accept("/") => break,
                                Some(_) => {}
                            }
                        }
                    } else {
                        self.push(TokKind::Op, start);
                    }
                }
                '#' | '|' | ':' => {
                    self.bump();
                    self.accept(&c.to_string());
                    self.push(TokKind::Op, start);
                }
                '(' | '[' | '{' | ')' | ']' | '}' => {
                    self.bump();
                    self.push(TokKind::Bracket, start);
                }
                ',' | ';' | '%' | '+' | '-' | '^' => {
                    self.bump();
                    self.push(TokKind::Op, start);
                }
                '&' | '!' | '=' | '*' | '<' | '>' => {
                    self.bump();
                    self.accept("&=*");
                    self.push(TokKind::Op, start);
                }
                c if is_alphanumeric(c) => {
                    while self.peek().is_some_and(is_alphanumeric) {
                        self.bump();
                    }
                    let kind = match &self.src[start..self.pos] {
                        "not" | "in" | "or" | "and" | "matches" | "contains" | "startsWith"
                        | "endsWith" | "let" | "if" | "else" => TokKind::Op,
                        _ => TokKind::Ident,
                    };
                    self.push(kind, start);
                }
                c => {
                    return Err(Failure::new(format!("unrecognized character {c:?}"), start));
                }
            }
        }
        self.toks.push(Token {
            kind: TokKind::Eof,
            text: String::new(),
            start: self.src.len(),
        });
        Ok(self.toks)
    }

    /// Scans a number the way expr-lang's lexer does; the value is parsed later.
    fn number(&mut self, start: usize) -> Res<()> {
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.peek() == Some('.') && self.peek2() != Some('.') {
            self.bump();
            self.accept_run(digits);
        }
        if self.accept("eE") {
            self.accept("+-");
            self.accept_run(digits);
        }
        if self.peek().is_some_and(is_alphanumeric) {
            self.bump();
            return Err(Failure::new(
                format!("malformed number `{}`", &self.src[start..self.pos]),
                start,
            ));
        }
        self.push(TokKind::Number, start);
        Ok(())
    }

    /// Scans a `'…'` or `"…"` string (opening quote already consumed) and
    /// decodes its Go escapes.
    fn quoted(&mut self, quote: char, start: usize) -> Res<String> {
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None | Some('\n') => {
                    return Err(Failure::new("unterminated string literal", start));
                }
                Some(c) if c == quote => return Ok(out),
                Some('\r') => out.push('\n'),
                Some('\\') => out.push(self.escape(quote, at, start)?),
                Some(c) => out.push(c),
            }
        }
    }

    fn hex_digits(&mut self, n: usize, at: usize) -> Res<u32> {
        let mut v: u32 = 0;
        for _ in 0..n {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| Failure::new("invalid escape sequence in string literal", at))?;
            self.bump();
            v = v * 16 + d;
        }
        Ok(v)
    }

    fn escape(&mut self, quote: char, at: usize, start: usize) -> Res<char> {
        let bad = || Failure::new("invalid escape sequence in string literal", at);
        let Some(d) = self.bump() else {
            return Err(Failure::new("unterminated string literal", start));
        };
        let code = match d {
            'a' => 0x07,
            'b' => 0x08,
            'f' => 0x0c,
            'n' => 0x0a,
            'r' => 0x0d,
            't' => 0x09,
            'v' => 0x0b,
            '\\' => 0x5c,
            c if c == quote => c as u32,
            '0'..='3' => {
                let mut v = d as u32 - '0' as u32;
                for _ in 0..2 {
                    let x = self.peek().and_then(|c| c.to_digit(8)).ok_or_else(bad)?;
                    self.bump();
                    v = v * 8 + x;
                }
                v
            }
            'x' => self.hex_digits(2, at)?,
            'u' if self.peek() == Some('{') => {
                self.bump();
                let mut v: u32 = 0;
                let mut n = 0;
                while let Some(x) = self.peek().and_then(|c| c.to_digit(16)) {
                    if n == 6 {
                        return Err(bad());
                    }
                    self.bump();
                    v = v * 16 + x;
                    n += 1;
                }
                if n == 0 || !self.accept("}") {
                    return Err(bad());
                }
                v
            }
            'u' => self.hex_digits(4, at)?,
            'U' => self.hex_digits(8, at)?,
            _ => return Err(bad()),
        };
        if code > 0x10ffff {
            return Err(bad());
        }
        // Go encodes a lone surrogate as U+FFFD.
        Ok(char::from_u32(code).unwrap_or('\u{fffd}'))
    }

    /// Scans a backtick raw string (opening backtick already consumed); a
    /// doubled backtick stands for one backtick.
    fn raw(&mut self, start: usize) -> Res<String> {
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(Failure::new("unterminated raw string literal", start)),
                Some('`') if self.peek() == Some('`') => {
                    self.bump();
                    out.push('`');
                }
                Some('`') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnOp {
    Not,
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    In,
    Matches,
    Contains,
    StartsWith,
    EndsWith,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Coalesce,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Matches => "__matches",
            BinOp::Contains => "__contains",
            BinOp::StartsWith => "__startsWith",
            BinOp::EndsWith => "__endsWith",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::Coalesce => "__coalesce",
        }
    }
}

/// expr-lang's binary operators: precedence and right-associativity.
fn binary_info(op: &str) -> Option<(u16, bool)> {
    Some(match op {
        "|" => (0, false),
        "or" | "||" => (10, false),
        "and" | "&&" => (15, false),
        "==" | "!=" | "<" | ">" | ">=" | "<=" | "in" | "matches" | "contains" | "startsWith"
        | "endsWith" => (20, false),
        ".." => (25, false),
        "+" | "-" => (30, false),
        "*" | "/" | "%" => (60, false),
        "**" | "^" => (100, true),
        "??" => (500, false),
        _ => return None,
    })
}

fn binop_of(op: &str) -> Option<BinOp> {
    Some(match op {
        "or" | "||" => BinOp::Or,
        "and" | "&&" => BinOp::And,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        ">" => BinOp::Gt,
        "<=" => BinOp::Le,
        ">=" => BinOp::Ge,
        "in" => BinOp::In,
        "matches" => BinOp::Matches,
        "contains" => BinOp::Contains,
        "startsWith" => BinOp::StartsWith,
        "endsWith" => BinOp::EndsWith,
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "**" | "^" => BinOp::Pow,
        "??" => BinOp::Coalesce,
        _ => return None,
    })
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "<" | ">" | "<=" | ">=")
}

#[derive(Debug)]
enum MapKey {
    Str(String),
    Expr(Node),
}

#[derive(Debug)]
enum Kind {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Node>),
    Map(Vec<(MapKey, Node)>),
    Ident(String),
    /// `obj.name`; `nil_safe` for `?.name` and links after it in a chain.
    Member {
        obj: Node,
        name: String,
        nil_safe: bool,
    },
    /// `obj[index]`; `nil_safe` for `?.[index]`.
    Index {
        obj: Node,
        index: Node,
        nil_safe: bool,
    },
    /// `obj.name(args)`.
    Method {
        obj: Node,
        name: String,
        args: Vec<Node>,
        nil_safe: bool,
    },
    /// `name(args)`.
    Call {
        name: String,
        args: Vec<Node>,
    },
    Unary {
        op: UnOp,
        expr: Node,
    },
    Binary {
        op: BinOp,
        lhs: Node,
        rhs: Node,
    },
    /// A chain of `<`, `>`, `<=`, `>=` comparisons: `a < b <= c`.
    Chain {
        first: Node,
        rest: Vec<(BinOp, Node)>,
    },
    Cond {
        cond: Node,
        then: Node,
        otherwise: Node,
    },
}

impl Kind {
    fn child_depth(&self) -> usize {
        let d = match self {
            Kind::Nil
            | Kind::Bool(_)
            | Kind::Int(_)
            | Kind::Float(_)
            | Kind::Str(_)
            | Kind::Ident(_) => None,
            Kind::Array(items) => max_depth(items.iter()),
            Kind::Map(pairs) => max_depth(pairs.iter().flat_map(|(k, v)| {
                let key = match k {
                    MapKey::Expr(n) => Some(n),
                    MapKey::Str(_) => None,
                };
                key.into_iter().chain(std::iter::once(v))
            })),
            Kind::Member { obj, .. } => Some(obj.depth),
            Kind::Index { obj, index, .. } => max_depth([obj, index].into_iter()),
            Kind::Method { obj, args, .. } => max_depth(std::iter::once(obj).chain(args)),
            Kind::Call { args, .. } => max_depth(args.iter()),
            Kind::Unary { expr, .. } => Some(expr.depth),
            Kind::Binary { lhs, rhs, .. } => max_depth([lhs, rhs].into_iter()),
            Kind::Chain { first, rest } => {
                max_depth(std::iter::once(first).chain(rest.iter().map(|(_, n)| n)))
            }
            Kind::Cond {
                cond,
                then,
                otherwise,
            } => max_depth([cond, then, otherwise].into_iter()),
        };
        d.unwrap_or(0)
    }
}

fn max_depth<'a>(nodes: impl Iterator<Item = &'a Node>) -> Option<usize> {
    nodes.map(|n| n.depth).max()
}

#[derive(Debug)]
struct Node {
    kind: Box<Kind>,
    at: usize,
    depth: usize,
}

impl Node {
    /// Whether this node is part of an optional chain, so that a following
    /// `.name` link is nil-safe as well.
    fn in_chain(&self) -> bool {
        matches!(
            *self.kind,
            Kind::Member { nil_safe: true, .. }
                | Kind::Index { nil_safe: true, .. }
                | Kind::Method { nil_safe: true, .. }
        )
    }

    /// Whether the value is statically a number (literals and arithmetic on
    /// them), so `+` can be emitted directly.
    fn is_numeric(&self) -> bool {
        match &*self.kind {
            Kind::Int(_) | Kind::Float(_) => true,
            Kind::Unary {
                op: UnOp::Neg | UnOp::Plus,
                expr,
            } => expr.is_numeric(),
            Kind::Binary {
                op: BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod | BinOp::Pow,
                lhs,
                rhs,
            } => lhs.is_numeric() && rhs.is_numeric(),
            _ => false,
        }
    }
}

fn too_deep(at: usize) -> Failure {
    Failure::new(
        format!("the expression is nested too deeply (more than {MAX_DEPTH} levels)"),
        at,
    )
}

fn mk(kind: Kind, at: usize) -> Res<Node> {
    let depth = kind.child_depth() + 1;
    if depth > MAX_DEPTH {
        return Err(too_deep(at));
    }
    Ok(Node {
        kind: Box::new(kind),
        at,
        depth,
    })
}

// ---------------------------------------------------------------------------
// Parser (mirrors expr-lang's parser/parser.go)
// ---------------------------------------------------------------------------

/// expr-lang builtins whose second argument is a predicate closure.
const PREDICATE_BUILTINS: [&str; 15] = [
    "all",
    "none",
    "any",
    "one",
    "filter",
    "map",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "groupBy",
    "sortBy",
    "reduce",
    "count",
    "sum",
];

const PREDICATE_MSG: &str = "predicate closures `{ # > 1 }` are not supported";
const POINTER_MSG: &str = "the predicate pointer `#` / `.field` is not supported";

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Parser {
    fn cur(&self) -> &Token {
        self.peek(0)
    }

    fn peek(&self, n: usize) -> &Token {
        let idx = (self.i + n).min(self.toks.len().saturating_sub(1));
        &self.toks[idx]
    }

    fn advance(&mut self) {
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
    }

    fn is_op(&self, text: &str) -> bool {
        self.cur().is(TokKind::Op, text)
    }

    fn is_bracket(&self, text: &str) -> bool {
        self.cur().is(TokKind::Bracket, text)
    }

    fn unexpected(&self) -> Failure {
        let t = self.cur();
        let message = match (t.kind, t.text.as_str()) {
            (TokKind::Eof, _) => "unexpected end of expression".to_owned(),
            (TokKind::Op, "|") => "the pipe operator `|` is not supported".to_owned(),
            (TokKind::Op, "let") => "`let` bindings are not supported".to_owned(),
            (TokKind::Op, "#") => POINTER_MSG.to_owned(),
            (TokKind::Op, "..") => "the range operator `..` is not supported".to_owned(),
            (TokKind::Op, ";") => "sequence expressions `a; b` are not supported".to_owned(),
            (TokKind::Bytes, _) => "bytes literals `b\"...\"` are not supported".to_owned(),
            _ => format!("unexpected {}", t.describe()),
        };
        Failure::new(message, t.start)
    }

    fn expect(&mut self, kind: TokKind, text: &str) -> Res<()> {
        if self.cur().is(kind, text) {
            self.advance();
            Ok(())
        } else {
            let mut f = self.unexpected();
            if self.cur().kind != TokKind::Eof && !f.message.contains("not supported") {
                f.message = format!("{}; expected `{text}`", f.message);
            } else if self.cur().kind == TokKind::Eof {
                f.message = format!("unexpected end of expression; expected `{text}`");
            }
            Err(f)
        }
    }

    fn parse_root(&mut self) -> Res<Node> {
        let node = self.parse_sequence(true)?;
        if self.cur().kind != TokKind::Eof {
            let mut f = self.unexpected();
            if !f.message.contains("not supported") {
                f.message = format!("{} after the end of the expression", f.message);
            }
            return Err(f);
        }
        Ok(node)
    }

    /// `a; b` sequences are unsupported; a trailing `;` at the top level is
    /// accepted, as in expr-lang.
    fn parse_sequence(&mut self, top: bool) -> Res<Node> {
        let node = self.parse_expression(0)?;
        if self.is_op(";") {
            let at = self.cur().start;
            self.advance();
            if !(top && self.cur().kind == TokKind::Eof) {
                return Err(Failure::new(
                    "sequence expressions `a; b` are not supported",
                    at,
                ));
            }
        }
        Ok(node)
    }

    fn parse_expression(&mut self, prec: u16) -> Res<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(too_deep(self.cur().start));
        }
        let r = self.parse_expression_inner(prec);
        self.depth -= 1;
        r
    }

    fn parse_expression_inner(&mut self, prec: u16) -> Res<Node> {
        if prec == 0 && self.is_op("let") {
            return Err(self.unexpected());
        }
        if prec == 0 && self.is_op("if") {
            return self.parse_if();
        }
        let mut left = self.parse_primary()?;
        let mut prev: Option<String> = None;
        loop {
            let tok = self.cur().clone();
            if tok.kind != TokKind::Op {
                break;
            }
            let (op, negate) = if tok.text == "not" {
                let next = self.peek(1);
                let allowed = next.kind == TokKind::Op
                    && matches!(
                        next.text.as_str(),
                        "in" | "matches" | "contains" | "startsWith" | "endsWith"
                    );
                if !allowed {
                    self.advance();
                    return Err(self.unexpected());
                }
                (next.clone(), true)
            } else {
                (tok.clone(), false)
            };
            let Some((p, right_assoc)) = binary_info(&op.text) else {
                break;
            };
            if p < prec {
                break;
            }
            if negate {
                self.advance();
            }
            self.advance();
            match op.text.as_str() {
                "|" => {
                    return Err(Failure::new(
                        "the pipe operator `|` is not supported",
                        op.start,
                    ));
                }
                ".." => {
                    return Err(Failure::new(
                        "the range operator `..` is not supported",
                        op.start,
                    ));
                }
                _ => {}
            }
            if prev.as_deref() == Some("??") && op.text != "??" {
                return Err(Failure::new(
                    format!(
                        "`??` cannot be mixed with `{}` without parentheses",
                        op.text
                    ),
                    op.start,
                ));
            }
            let Some(bin) = binop_of(&op.text) else {
                return Err(Failure::new(format!("unexpected `{}`", op.text), op.start));
            };
            left = if is_comparison(&op.text) {
                self.parse_comparison(left, bin, p, op.start)?
            } else {
                let rhs = self.parse_expression(if right_assoc { p } else { p + 1 })?;
                mk(
                    Kind::Binary {
                        op: bin,
                        lhs: left,
                        rhs,
                    },
                    op.start,
                )?
            };
            if negate {
                left = mk(
                    Kind::Unary {
                        op: UnOp::Not,
                        expr: left,
                    },
                    tok.start,
                )?;
            }
            prev = Some(op.text);
        }
        if prec == 0 {
            left = self.parse_conditional(left)?;
        }
        Ok(left)
    }

    /// `a < b <= c`: expr-lang chains `<`, `>`, `<=`, `>=`.
    fn parse_comparison(&mut self, first: Node, op: BinOp, prec: u16, at: usize) -> Res<Node> {
        let mut rest = Vec::new();
        let mut op = op;
        loop {
            let rhs = self.parse_expression(prec + 1)?;
            rest.push((op, rhs));
            let t = self.cur();
            if t.kind == TokKind::Op && is_comparison(&t.text) {
                op = binop_of(&t.text).unwrap_or(BinOp::Lt);
                self.advance();
            } else {
                break;
            }
        }
        match <[(BinOp, Node); 1]>::try_from(rest) {
            Ok([(op, rhs)]) => mk(
                Kind::Binary {
                    op,
                    lhs: first,
                    rhs,
                },
                at,
            ),
            Err(rest) => mk(Kind::Chain { first, rest }, at),
        }
    }

    fn parse_conditional(&mut self, mut node: Node) -> Res<Node> {
        while self.is_op("?") {
            let at = self.cur().start;
            self.advance();
            if self.is_op(":") {
                // Elvis `a ?: b` is `a ? a : b`.
                self.advance();
                let rhs = self.parse_expression(0)?;
                node = mk(
                    Kind::Binary {
                        op: BinOp::Or,
                        lhs: node,
                        rhs,
                    },
                    at,
                )?;
            } else {
                let then = self.parse_expression(0)?;
                self.expect(TokKind::Op, ":")?;
                let otherwise = self.parse_expression(0)?;
                node = mk(
                    Kind::Cond {
                        cond: node,
                        then,
                        otherwise,
                    },
                    at,
                )?;
            }
        }
        Ok(node)
    }

    /// `if cond { a } else { b }` and `else if` chains.
    fn parse_if(&mut self) -> Res<Node> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(too_deep(self.cur().start));
        }
        let r = self.parse_if_inner();
        self.depth -= 1;
        r
    }

    fn parse_if_inner(&mut self) -> Res<Node> {
        let at = self.cur().start;
        self.advance();
        let cond = self.parse_expression(0)?;
        self.expect(TokKind::Bracket, "{")?;
        let then = self.parse_sequence(false)?;
        self.expect(TokKind::Bracket, "}")?;
        self.expect(TokKind::Op, "else")?;
        let otherwise = if self.is_op("if") {
            self.parse_if()?
        } else {
            self.expect(TokKind::Bracket, "{")?;
            let e = self.parse_sequence(false)?;
            self.expect(TokKind::Bracket, "}")?;
            e
        };
        mk(
            Kind::Cond {
                cond,
                then,
                otherwise,
            },
            at,
        )
    }

    fn parse_primary(&mut self) -> Res<Node> {
        let tok = self.cur().clone();
        if tok.kind == TokKind::Op {
            let unary = match tok.text.as_str() {
                "not" | "!" => Some((UnOp::Not, 50)),
                "-" => Some((UnOp::Neg, 90)),
                "+" => Some((UnOp::Plus, 90)),
                _ => None,
            };
            if let Some((op, p)) = unary {
                self.advance();
                let expr = self.parse_expression(p)?;
                let node = mk(Kind::Unary { op, expr }, tok.start)?;
                return self.parse_postfix(node);
            }
            match tok.text.as_str() {
                "#" | "." => return Err(Failure::new(POINTER_MSG, tok.start)),
                "::" => {
                    self.advance();
                    let name = self.cur().clone();
                    if name.kind != TokKind::Ident {
                        return Err(self.unexpected());
                    }
                    self.advance();
                    let node = self.parse_call(&name)?;
                    return self.parse_postfix(node);
                }
                _ => {}
            }
        }
        if tok.is(TokKind::Bracket, "(") {
            self.advance();
            let expr = self.parse_sequence(false)?;
            self.expect(TokKind::Bracket, ")")?;
            return self.parse_postfix(expr);
        }
        self.parse_secondary()
    }

    fn parse_secondary(&mut self) -> Res<Node> {
        let tok = self.cur().clone();
        let node = match tok.kind {
            TokKind::Ident => {
                self.advance();
                match tok.text.as_str() {
                    // Literals take no postfix operators in expr-lang.
                    "true" => return mk(Kind::Bool(true), tok.start),
                    "false" => return mk(Kind::Bool(false), tok.start),
                    "nil" => return mk(Kind::Nil, tok.start),
                    _ if self.is_bracket("(") => self.parse_call(&tok)?,
                    _ => mk(Kind::Ident(tok.text.clone()), tok.start)?,
                }
            }
            TokKind::Number => {
                self.advance();
                return mk(parse_number(&tok.text, tok.start)?, tok.start);
            }
            TokKind::Str => {
                self.advance();
                mk(Kind::Str(tok.text.clone()), tok.start)?
            }
            TokKind::Bracket if tok.text == "[" => self.parse_array()?,
            TokKind::Bracket if tok.text == "{" => self.parse_map()?,
            _ => return Err(self.unexpected()),
        };
        self.parse_postfix(node)
    }

    fn parse_call(&mut self, name: &Token) -> Res<Node> {
        let predicate = PREDICATE_BUILTINS.contains(&name.text.as_str());
        self.expect(TokKind::Bracket, "(")?;
        let mut args = Vec::new();
        while !self.is_bracket(")") {
            if !args.is_empty() {
                self.expect(TokKind::Op, ",")?;
                if self.is_bracket(")") {
                    break;
                }
            }
            if predicate && args.len() == 1 {
                return Err(Failure::new(
                    format!("{PREDICATE_MSG} (second argument of `{}`)", name.text),
                    self.cur().start,
                ));
            }
            args.push(self.parse_expression(0)?);
        }
        self.expect(TokKind::Bracket, ")")?;
        if predicate && !(args.len() == 1 && matches!(name.text.as_str(), "count" | "sum")) {
            return Err(Failure::new(
                format!("`{}` needs a predicate closure; {PREDICATE_MSG}", name.text),
                name.start,
            ));
        }
        mk(
            Kind::Call {
                name: name.text.clone(),
                args,
            },
            name.start,
        )
    }

    fn parse_args(&mut self) -> Res<Vec<Node>> {
        self.expect(TokKind::Bracket, "(")?;
        let mut args = Vec::new();
        while !self.is_bracket(")") {
            if !args.is_empty() {
                self.expect(TokKind::Op, ",")?;
                if self.is_bracket(")") {
                    break;
                }
            }
            args.push(self.parse_expression(0)?);
        }
        self.expect(TokKind::Bracket, ")")?;
        Ok(args)
    }

    fn parse_array(&mut self) -> Res<Node> {
        let at = self.cur().start;
        self.advance();
        let mut items = Vec::new();
        while !self.is_bracket("]") {
            if !items.is_empty() {
                self.expect(TokKind::Op, ",")?;
                if self.is_bracket("]") {
                    break;
                }
            }
            items.push(self.parse_expression(0)?);
        }
        self.expect(TokKind::Bracket, "]")?;
        mk(Kind::Array(items), at)
    }

    fn parse_map(&mut self) -> Res<Node> {
        let at = self.cur().start;
        self.advance();
        let mut pairs = Vec::new();
        while !self.is_bracket("}") {
            if !pairs.is_empty() {
                self.expect(TokKind::Op, ",")?;
                if self.is_bracket("}") {
                    break;
                }
            }
            let t = self.cur().clone();
            let key = match t.kind {
                TokKind::Number | TokKind::Str | TokKind::Ident => {
                    self.advance();
                    MapKey::Str(t.text)
                }
                TokKind::Bracket if t.text == "(" => MapKey::Expr(self.parse_expression(0)?),
                TokKind::Op if t.text == "#" || t.text == "." => {
                    return Err(Failure::new(PREDICATE_MSG, t.start));
                }
                _ => {
                    let mut f = self.unexpected();
                    if !f.message.contains("not supported") {
                        f.message = format!(
                            "{}; a map key must be a name, a string, a number or a parenthesised expression",
                            f.message
                        );
                    }
                    return Err(f);
                }
            };
            self.expect(TokKind::Op, ":")?;
            let value = self.parse_expression(0)?;
            pairs.push((key, value));
        }
        self.expect(TokKind::Bracket, "}")?;
        mk(Kind::Map(pairs), at)
    }

    fn parse_postfix(&mut self, mut node: Node) -> Res<Node> {
        loop {
            let tok = self.cur().clone();
            let optional = tok.is(TokKind::Op, "?.");
            if optional && self.peek(1).is(TokKind::Bracket, "[") {
                self.advance();
                node = self.parse_index(node, true)?;
            } else if optional || tok.is(TokKind::Op, ".") {
                self.advance();
                let prop = self.cur().clone();
                let valid = prop.kind == TokKind::Ident
                    || (prop.kind == TokKind::Op && is_valid_identifier(&prop.text));
                if !valid {
                    let mut f = self.unexpected();
                    f.message = format!("{}; expected a property name after `.`", f.message);
                    return Err(f);
                }
                self.advance();
                let nil_safe = optional || node.in_chain();
                node = if self.is_bracket("(") {
                    let args = self.parse_args()?;
                    mk(
                        Kind::Method {
                            obj: node,
                            name: prop.text,
                            args,
                            nil_safe,
                        },
                        prop.start,
                    )?
                } else {
                    mk(
                        Kind::Member {
                            obj: node,
                            name: prop.text,
                            nil_safe,
                        },
                        prop.start,
                    )?
                };
            } else if tok.is(TokKind::Bracket, "[") {
                node = self.parse_index(node, false)?;
            } else {
                return Ok(node);
            }
        }
    }

    /// Parses `[index]` (the current token is `[`).
    fn parse_index(&mut self, obj: Node, nil_safe: bool) -> Res<Node> {
        let at = self.cur().start;
        self.advance();
        let slice = || Failure::new("slices `a[1:2]` are not supported", at);
        if self.is_op(":") {
            return Err(slice());
        }
        let index = self.parse_expression(0)?;
        if self.is_op(":") {
            return Err(slice());
        }
        self.expect(TokKind::Bracket, "]")?;
        mk(
            Kind::Index {
                obj,
                index,
                nil_safe,
            },
            at,
        )
    }
}

fn is_valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_alphabetic) && chars.all(is_alphanumeric)
}

fn parse_number(text: &str, at: usize) -> Res<Kind> {
    let value: String = text.chars().filter(|&c| c != '_').collect();
    let lower = value.to_ascii_lowercase();
    let int = |digits: &str, radix: u32, what: &str| {
        i64::from_str_radix(digits, radix)
            .map(Kind::Int)
            .map_err(|_| Failure::new(format!("invalid {what} literal `{text}`"), at))
    };
    if let Some(hex) = lower.strip_prefix("0x") {
        int(hex, 16, "hexadecimal")
    } else if lower.contains('.') || lower.contains('e') {
        match lower.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Kind::Float(f)),
            _ => Err(Failure::new(format!("invalid float literal `{text}`"), at)),
        }
    } else if let Some(bin) = lower.strip_prefix("0b") {
        int(bin, 2, "binary")
    } else if let Some(oct) = lower.strip_prefix("0o") {
        int(oct, 8, "octal")
    } else {
        int(&lower, 10, "integer")
    }
}

// ---------------------------------------------------------------------------
// Emitter
// ---------------------------------------------------------------------------

/// Names that minijinja reads as keywords or constants, so they cannot be
/// used as variable or function names.
const MJ_RESERVED: [&str; 13] = [
    "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else",
];

/// Whether minijinja (without its `unicode` feature) lexes `s` as one name.
fn is_mj_ident(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0] == b'_' || b[0].is_ascii_alphabetic())
        && b.iter().all(|&c| c == b'_' || c.is_ascii_alphanumeric())
}

fn check_name(name: &str, at: usize, what: &str) -> Res<()> {
    if name == "$env" {
        return Err(Failure::new("`$env` is not supported", at));
    }
    if !is_mj_ident(name) {
        return Err(Failure::new(
            format!(
                "the {what} name `{name}` cannot be written in minijinja (only ASCII letters, digits and `_`)"
            ),
            at,
        ));
    }
    if MJ_RESERVED.contains(&name) {
        return Err(Failure::new(
            format!("the {what} name `{name}` is a reserved word in minijinja"),
            at,
        ));
    }
    Ok(())
}

fn push_string_literal(out: &mut String, s: &str) {
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '>' if chars.peek() == Some(&'>') => out.push_str("\\u003e"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn emit_list(nodes: &[Node], out: &mut String) -> Res<()> {
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        emit(n, out)?;
    }
    Ok(())
}

/// Emits `name(a, b)`.
fn emit_fn(name: &str, args: &[&Node], out: &mut String) -> Res<()> {
    out.push_str(name);
    out.push('(');
    for (i, n) in args.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        emit(n, out)?;
    }
    out.push(')');
    Ok(())
}

/// Emits `(subject | filter)` or `(subject | filter(args))`.
fn emit_filter(subject: &Node, filter: &str, args: &[Node], out: &mut String) -> Res<()> {
    out.push('(');
    emit(subject, out)?;
    out.push_str(" | ");
    out.push_str(filter);
    if !args.is_empty() {
        out.push('(');
        emit_list(args, out)?;
        out.push(')');
    }
    out.push(')');
    Ok(())
}

fn emit(node: &Node, out: &mut String) -> Res<()> {
    match &*node.kind {
        Kind::Nil => out.push_str("none"),
        Kind::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Kind::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Kind::Float(f) => {
            let _ = write!(out, "{f:?}");
        }
        Kind::Str(s) => push_string_literal(out, s),
        Kind::Array(items) => {
            out.push('[');
            emit_list(items, out)?;
            out.push(']');
        }
        Kind::Map(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match k {
                    MapKey::Str(s) => push_string_literal(out, s),
                    MapKey::Expr(e) => emit(e, out)?,
                }
                out.push_str(": ");
                emit(v, out)?;
            }
            out.push('}');
        }
        Kind::Ident(name) => {
            check_name(name, node.at, "variable")?;
            out.push_str(name);
        }
        Kind::Member {
            obj,
            name,
            nil_safe,
        } => {
            if *nil_safe {
                out.push_str("__optget(");
                emit(obj, out)?;
                out.push_str(", ");
                push_string_literal(out, name);
                out.push(')');
            } else {
                emit(obj, out)?;
                if is_mj_ident(name) {
                    out.push('.');
                    out.push_str(name);
                } else {
                    out.push('[');
                    push_string_literal(out, name);
                    out.push(']');
                }
            }
        }
        Kind::Index {
            obj,
            index,
            nil_safe,
        } => {
            if *nil_safe {
                emit_fn("__optget", &[obj, index], out)?;
            } else {
                emit(obj, out)?;
                out.push('[');
                emit(index, out)?;
                out.push(']');
            }
        }
        Kind::Method {
            obj,
            name,
            args,
            nil_safe,
        } => {
            if !is_mj_ident(name) {
                return Err(Failure::new(
                    format!("the method name `{name}` cannot be written in minijinja"),
                    node.at,
                ));
            }
            if *nil_safe {
                // minijinja functions cannot call methods, so the nil check is inline:
                // `(none if __isnil(obj) else obj.M(args))`.
                out.push_str("(none if __isnil(");
                emit(obj, out)?;
                out.push_str(") else ");
                emit(obj, out)?;
                out.push('.');
                out.push_str(name);
                out.push('(');
                emit_list(args, out)?;
                out.push_str("))");
            } else {
                emit(obj, out)?;
                out.push('.');
                out.push_str(name);
                out.push('(');
                emit_list(args, out)?;
                out.push(')');
            }
        }
        Kind::Call { name, args } => emit_call(name, args, node.at, out)?,
        Kind::Unary { op, expr } => match op {
            UnOp::Not => {
                if let Kind::Binary {
                    op: BinOp::In,
                    lhs,
                    rhs,
                } = &*expr.kind
                {
                    out.push('(');
                    emit(lhs, out)?;
                    out.push_str(" not in ");
                    emit(rhs, out)?;
                    out.push(')');
                } else {
                    out.push_str("(not ");
                    emit(expr, out)?;
                    out.push(')');
                }
            }
            UnOp::Neg => {
                out.push_str("(-");
                emit(expr, out)?;
                out.push(')');
            }
            UnOp::Plus => {
                out.push('(');
                emit(expr, out)?;
                out.push(')');
            }
        },
        Kind::Binary { op, lhs, rhs } => match op {
            BinOp::Matches
            | BinOp::Contains
            | BinOp::StartsWith
            | BinOp::EndsWith
            | BinOp::Coalesce => emit_fn(op.symbol(), &[lhs, rhs], out)?,
            BinOp::Add if !(lhs.is_numeric() && rhs.is_numeric()) => {
                emit_fn("__add", &[lhs, rhs], out)?;
            }
            _ => {
                out.push('(');
                emit(lhs, out)?;
                out.push(' ');
                out.push_str(op.symbol());
                out.push(' ');
                emit(rhs, out)?;
                out.push(')');
            }
        },
        Kind::Chain { first, rest } => {
            out.push('(');
            emit(first, out)?;
            for (op, n) in rest {
                out.push(' ');
                out.push_str(op.symbol());
                out.push(' ');
                emit(n, out)?;
            }
            out.push(')');
        }
        Kind::Cond {
            cond,
            then,
            otherwise,
        } => {
            out.push('(');
            emit(then, out)?;
            out.push_str(" if ");
            emit(cond, out)?;
            out.push_str(" else ");
            emit(otherwise, out)?;
            out.push(')');
        }
    }
    Ok(())
}

/// Emits a call, mapping expr-lang builtins to minijinja filters or engine
/// helpers.
fn emit_call(name: &str, args: &[Node], at: usize, out: &mut String) -> Res<()> {
    let arity = |ok: bool, expected: &str| {
        if ok {
            Ok(())
        } else {
            Err(Failure::new(
                format!(
                    "`{name}()` takes {expected}, got {} argument{}",
                    args.len(),
                    if args.len() == 1 { "" } else { "s" }
                ),
                at,
            ))
        }
    };
    let n = args.len();
    match name {
        "len" | "upper" | "lower" | "string" | "int" | "float" | "first" | "last" | "abs"
        | "sum" | "keys" | "values" | "toJSON" => {
            arity(n == 1, "1 argument")?;
            let subject = &args[0];
            match name {
                "len" => emit_filter(subject, "length", &[], out),
                "keys" => emit_filter(subject, "list", &[], out),
                "values" => emit_filter(subject, "items | map(attribute=1)", &[], out),
                "toJSON" => emit_filter(subject, "tojson(indent=2)", &[], out),
                _ => emit_filter(subject, name, &[], out),
            }
        }
        "trim" | "join" => {
            arity(n == 1 || n == 2, "1 or 2 arguments")?;
            emit_filter(&args[0], name, &args[1..], out)
        }
        "split" => {
            arity(n == 2 || n == 3, "2 or 3 arguments")?;
            if n == 2 {
                return emit_filter(&args[0], "split", &args[1..], out);
            }
            out.push('(');
            emit(&args[0], out)?;
            out.push_str(" | split(");
            emit(&args[1], out)?;
            out.push_str(", ");
            match &*args[2].kind {
                Kind::Int(count) => {
                    let _ = write!(out, "{}", count.saturating_sub(1));
                }
                _ => {
                    out.push('(');
                    emit(&args[2], out)?;
                    out.push_str(" - 1)");
                }
            }
            out.push_str("))");
            Ok(())
        }
        "replace" => {
            arity(n == 3, "3 arguments")?;
            emit_filter(&args[0], "replace", &args[1..], out)
        }
        "min" | "max" => {
            arity(n >= 1, "at least 1 argument")?;
            if n == 1 {
                emit_filter(&args[0], name, &[], out)
            } else {
                out.push_str("([");
                emit_list(args, out)?;
                out.push_str("] | ");
                out.push_str(name);
                out.push(')');
                Ok(())
            }
        }
        "hasPrefix" | "hasSuffix" | "trimPrefix" | "trimSuffix" => {
            arity(n == 2, "2 arguments")?;
            let helper = match name {
                "hasPrefix" => "__startsWith",
                "hasSuffix" => "__endsWith",
                "trimPrefix" => "__trimPrefix",
                _ => "__trimSuffix",
            };
            emit_fn(helper, &[&args[0], &args[1]], out)
        }
        _ => {
            check_name(name, at, "function")?;
            out.push_str(name);
            out.push('(');
            emit_list(args, out)?;
            out.push(')');
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
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
            "a", "b1", "1", "0x", "1e", ".5", "_", "(", ")", "[", "]", "{", "}", ",", ":", "?",
            "??", "?.", ".", "..", "+", "-", "*", "**", "!", "not", "in", "and", "||", "==", "<",
            "\"s\"", "'", "\"", "`", "\\", "#", "|", ";", "let", "if", "else", "${{", "}}", "${%",
            "%}", "é", " ",
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
                "a", "b.c", "nil", "true", "1", "2.5", "0x1F", "'s'", "\"q>>\"", "`r`", "x[0]",
                "f()",
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
}
