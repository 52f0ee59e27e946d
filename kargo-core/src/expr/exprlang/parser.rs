//! The precedence-climbing parser, which mirrors expr-lang's
//! `parser/parser.go` and rejects unsupported constructs by name.

use super::ast::{
    BinOp, Kind, MapKey, Node, UnOp, binary_info, binop_of, is_comparison, mk, too_deep,
};
use super::lexer::{TokKind, Token, is_alphabetic, is_alphanumeric};
use super::{Failure, MAX_DEPTH, Res};

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

/// A recursive-descent parser over the lexer's tokens.
pub(super) struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Parser {
    /// A parser at the first of `toks`, which must end with an `Eof` token.
    pub(super) fn new(toks: Vec<Token>) -> Self {
        Self {
            toks,
            i: 0,
            depth: 0,
        }
    }

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

    pub(super) fn parse_root(&mut self) -> Res<Node> {
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
