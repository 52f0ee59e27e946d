//! The lexer: cuts an expr-lang expression into tokens (names, numbers,
//! decoded string literals, operators and brackets), dropping comments.

use super::{Failure, Res};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokKind {
    Ident,
    Number,
    Str,
    Bytes,
    Op,
    Bracket,
    Eof,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub(super) kind: TokKind,
    /// Raw text, except for `Str` where it is the decoded value.
    pub(super) text: String,
    pub(super) start: usize,
}

impl Token {
    pub(super) fn is(&self, kind: TokKind, text: &str) -> bool {
        self.kind == kind && self.text == text
    }

    pub(super) fn describe(&self) -> String {
        match self.kind {
            TokKind::Eof => "the end of the expression".to_owned(),
            TokKind::Str => "a string literal".to_owned(),
            _ => format!("`{}`", self.text),
        }
    }
}

/// Letters, `_` and `$` start identifiers in expr-lang.
pub(super) fn is_alphabetic(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphabetic()
}

pub(super) fn is_alphanumeric(c: char) -> bool {
    is_alphabetic(c) || c.is_numeric()
}

pub(super) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    toks: Vec<Token>,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(src: &'a str) -> Self {
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

    pub(super) fn run(mut self) -> Res<Vec<Token>> {
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
