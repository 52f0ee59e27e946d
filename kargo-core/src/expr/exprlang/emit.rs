//! The emitter: writes a syntax tree as fully parenthesised minijinja
//! expression text.

use std::fmt::Write as _;

use super::ast::{BinOp, Kind, MapKey, Node, UnOp};
use super::{Failure, Res};

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

pub(super) fn emit(node: &Node, out: &mut String) -> Res<()> {
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
