//! A small positioned tree of the first YAML document, built from saphyr-parser's events:
//! just enough structure (keys, values, items, byte spans, columns and scalar styles) for
//! the `images:` editor to plan textual insertions and removals.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use super::edit::KustomizeEditError;

/// A node of the first document. Positions are byte offsets into the text.
#[derive(Debug, Clone)]
pub(crate) enum Node<'a> {
    Scalar {
        value: Cow<'a, str>,
        style: ScalarStyle,
        start: usize,
        end: usize,
        line: usize,
        col: usize,
    },
    Map {
        flow: bool,
        start: usize,
        /// For a flow mapping: after `}`; for a block mapping: the end of its last child.
        end: usize,
        line: usize,
        col: usize,
        pairs: Vec<(Node<'a>, Node<'a>)>,
    },
    Seq {
        flow: bool,
        start: usize,
        /// For a flow sequence: after `]`; for a block sequence: the end of its last child.
        end: usize,
        line: usize,
        col: usize,
        items: Vec<Node<'a>>,
    },
    Alias {
        start: usize,
        end: usize,
        line: usize,
    },
}

impl Node<'_> {
    pub(crate) fn start(&self) -> usize {
        match self {
            Node::Scalar { start, .. }
            | Node::Map { start, .. }
            | Node::Seq { start, .. }
            | Node::Alias { start, .. } => *start,
        }
    }

    pub(crate) fn end(&self) -> usize {
        match self {
            Node::Scalar { end, .. }
            | Node::Map { end, .. }
            | Node::Seq { end, .. }
            | Node::Alias { end, .. } => *end,
        }
    }

    pub(crate) fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. }
            | Node::Map { line, .. }
            | Node::Seq { line, .. }
            | Node::Alias { line, .. } => *line,
        }
    }

    /// The column (in characters) the node starts at.
    pub(crate) fn col(&self) -> usize {
        match self {
            Node::Scalar { col, .. } | Node::Map { col, .. } | Node::Seq { col, .. } => *col,
            Node::Alias { .. } => 0,
        }
    }

    /// The value of a scalar node.
    pub(crate) fn scalar(&self) -> Option<&str> {
        match self {
            Node::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }

    /// Whether this is a plain null scalar (`key:` with nothing, `~`, `null`).
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { value, style: ScalarStyle::Plain, .. }
            if matches!(value.as_ref(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "scalar",
            Node::Map { .. } => "mapping",
            Node::Seq { .. } => "sequence",
            Node::Alias { .. } => "alias",
        }
    }
}

enum Building<'a> {
    Map {
        flow: bool,
        start: usize,
        line: usize,
        col: usize,
        pairs: Vec<(Node<'a>, Node<'a>)>,
        key: Option<Node<'a>>,
    },
    Seq {
        flow: bool,
        start: usize,
        line: usize,
        col: usize,
        items: Vec<Node<'a>>,
    },
}

/// Converts saphyr's character indices to byte offsets.
struct Offsets<'a> {
    text: &'a str,
    /// Byte offset of every character (plus the end), only for non-ASCII text.
    table: Option<Vec<usize>>,
}

impl<'a> Offsets<'a> {
    fn new(text: &'a str) -> Self {
        let table = (!text.is_ascii()).then(|| {
            let mut t: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            t.push(text.len());
            t
        });
        Self { text, table }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.table {
            None => char_index.min(self.text.len()),
            Some(t) => t.get(char_index).copied().unwrap_or(self.text.len()),
        }
    }
}

fn parse_error(e: &ScanError) -> KustomizeEditError {
    KustomizeEditError::Parse {
        message: e.info().to_owned(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
    }
}

/// Parses the whole stream (so a syntax error anywhere is reported) and returns the root
/// node of the first document, `None` when there is no document or it is empty.
pub(crate) fn parse_first_document(text: &str) -> Result<Option<Node<'_>>, KustomizeEditError> {
    let offsets = Offsets::new(text);
    let mut stack: Vec<Building<'_>> = Vec::new();
    let mut root: Option<Node<'_>> = None;
    let mut docs = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| parse_error(&e))?;
        if docs > 1 {
            // Later documents are only checked for syntax.
            if matches!(event, Event::StreamEnd) {
                break;
            }
            if matches!(event, Event::DocumentStart(_)) {
                docs += 1;
            }
            continue;
        }
        let start = offsets.byte(span.start.index());
        let end = offsets.byte(span.end.index());
        let line = span.start.line();
        let col = span.start.col();
        let complete: Option<Node<'_>> = match event {
            Event::DocumentStart(_) => {
                docs += 1;
                None
            }
            Event::StreamEnd => break,
            Event::Scalar(value, style, _, _) => Some(Node::Scalar {
                value,
                style,
                start,
                // saphyr's end of a quoted scalar lies after the white space and comment
                // that follow it; the closing quote is the end.
                end: match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        quoted_end(text, start, style).unwrap_or(end)
                    }
                    _ => end,
                },
                line,
                col,
            }),
            Event::Alias(_) => Some(Node::Alias { start, end, line }),
            Event::MappingStart(..) => {
                let flow = stack.last().is_some_and(is_flow) || !span.is_empty();
                stack.push(Building::Map {
                    flow,
                    start,
                    line,
                    col,
                    pairs: Vec::new(),
                    key: None,
                });
                None
            }
            Event::SequenceStart(..) => {
                let flow = stack.last().is_some_and(is_flow) || !span.is_empty();
                stack.push(Building::Seq {
                    flow,
                    start,
                    line,
                    col,
                    items: Vec::new(),
                });
                None
            }
            Event::MappingEnd | Event::SequenceEnd => match stack.pop() {
                Some(Building::Map {
                    flow,
                    start,
                    line,
                    col,
                    pairs,
                    ..
                }) => {
                    let last = pairs.last().map_or(start, |(_, v)| v.end());
                    Some(Node::Map {
                        flow,
                        start,
                        end: if flow { end.max(last) } else { last },
                        line,
                        col,
                        pairs,
                    })
                }
                Some(Building::Seq {
                    flow,
                    start,
                    line,
                    col,
                    items,
                }) => {
                    let last = items.last().map_or(start, Node::end);
                    Some(Node::Seq {
                        flow,
                        start,
                        end: if flow { end.max(last) } else { last },
                        line,
                        col,
                        items,
                    })
                }
                None => None,
            },
            Event::DocumentEnd | Event::StreamStart | Event::Nothing => None,
        };
        if let Some(node) = complete {
            match stack.last_mut() {
                Some(Building::Map { pairs, key, .. }) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => pairs.push((k, node)),
                },
                Some(Building::Seq { items, .. }) => items.push(node),
                None => {
                    if root.is_none() {
                        root = Some(node);
                    }
                }
            }
        }
    }
    Ok(root.filter(|r| !r.is_null()))
}

/// The offset after the closing quote of the quoted scalar starting at `start` (its
/// properties, if any, come first).
fn quoted_end(text: &str, start: usize, style: ScalarStyle) -> Option<usize> {
    let quote = if style == ScalarStyle::SingleQuoted {
        b'\''
    } else {
        b'"'
    };
    let bytes = text.as_bytes();
    let open = start + text.get(start..)?.bytes().position(|b| b == quote)?;
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b if b == quote => {
                if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn is_flow(b: &Building<'_>) -> bool {
    match b {
        Building::Map { flow, .. } | Building::Seq { flow, .. } => *flow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalars(text: &str) -> Vec<(String, usize, usize)> {
        fn walk(n: &Node<'_>, out: &mut Vec<(String, usize, usize)>) {
            match n {
                Node::Scalar {
                    value, start, end, ..
                } => out.push((value.to_string(), *start, *end)),
                Node::Map { pairs, .. } => {
                    for (k, v) in pairs {
                        walk(k, out);
                        walk(v, out);
                    }
                }
                Node::Seq { items, .. } => items.iter().for_each(|i| walk(i, out)),
                Node::Alias { .. } => {}
            }
        }
        let mut out = Vec::new();
        if let Some(root) = parse_first_document(text).unwrap() {
            walk(&root, &mut out);
        }
        out
    }

    #[test]
    fn quoted_scalars_end_at_their_closing_quote() {
        let text = "k: 'it''s' # c\nj: \"a\\\"b\"   # d\nl: 9 # e\nn: [ 'a' , \"b\" ]\n";
        let spans: Vec<&str> = scalars(text)
            .iter()
            .map(|(_, s, e)| &text[*s..*e])
            .collect();
        assert_eq!(
            spans,
            vec![
                "k",
                "'it''s'",
                "j",
                "\"a\\\"b\"",
                "l",
                "9",
                "n",
                "'a'",
                "\"b\""
            ]
        );
    }
}
