//! The syntax tree the parser builds, with expr-lang's operator table and
//! the depth limit every node is checked against.

use super::{Failure, MAX_DEPTH, Res};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnOp {
    Not,
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BinOp {
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
    pub(super) fn symbol(self) -> &'static str {
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
pub(super) fn binary_info(op: &str) -> Option<(u16, bool)> {
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

pub(super) fn binop_of(op: &str) -> Option<BinOp> {
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

pub(super) fn is_comparison(op: &str) -> bool {
    matches!(op, "<" | ">" | "<=" | ">=")
}

#[derive(Debug)]
pub(super) enum MapKey {
    Str(String),
    Expr(Node),
}

#[derive(Debug)]
pub(super) enum Kind {
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
pub(super) struct Node {
    pub(super) kind: Box<Kind>,
    pub(super) at: usize,
    depth: usize,
}

impl Node {
    /// Whether this node is part of an optional chain, so that a following
    /// `.name` link is nil-safe as well.
    pub(super) fn in_chain(&self) -> bool {
        matches!(
            *self.kind,
            Kind::Member { nil_safe: true, .. }
                | Kind::Index { nil_safe: true, .. }
                | Kind::Method { nil_safe: true, .. }
        )
    }

    /// Whether the value is statically a number (literals and arithmetic on
    /// them), so `+` can be emitted directly.
    pub(super) fn is_numeric(&self) -> bool {
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

pub(super) fn too_deep(at: usize) -> Failure {
    Failure::new(
        format!("the expression is nested too deeply (more than {MAX_DEPTH} levels)"),
        at,
    )
}

pub(super) fn mk(kind: Kind, at: usize) -> Res<Node> {
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
