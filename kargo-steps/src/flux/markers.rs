//! Finds the fields of a YAML stream that carry a Flux `$imagepolicy` setter comment.
//!
//! Which comment marks which scalar follows Flux's image-automation-controller, which
//! reads kyaml field metadata from the comments go-yaml v3 attaches to a scalar node:
//!
//! * the scalar's *line comment*: a `#` comment on the line where the scalar ends, right
//!   after it (in a flow collection also after the `,` that follows it);
//! * only when there is no line comment, the *head comment* of a sequence item: one
//!   comment line directly above its `-` line (or between the `-` and the scalar), or,
//!   in a flow sequence, directly above the item when it starts its line. A head comment
//!   of several lines never reads as a marker; a change of indentation starts a new
//!   comment block. A document that is a single scalar takes the comment line above it
//!   too. (go-yaml also hands the comment of an empty `- # ...` item, of a `--- # ...`
//!   line or of an explicit `? key` to the next node, drops a comment less indented than
//!   an item that follows a nested mapping, and with CRLF line breaks makes a comment line
//!   above an item a foot comment of the previous one, so Flux ignores it; those forms
//!   are not followed: the last one is marked here.)
//!
//! Scalars that are mapping keys are never fields. A comment after a mapping key whose
//! value is on the next line, or after a flow collection's closing bracket, belongs to
//! the key or the collection, not to a scalar, and marks nothing.
//!
//! A comment is a marker when, after stripping its leading `#` characters, it is one JSON
//! object whose values are all strings (or `null`) and whose `"$imagepolicy"` member is a
//! non-empty string: `# {"$imagepolicy": "flux-system:app"}`, `#{"$imagepolicy":"a:b"}`,
//! `##   {"$imagepolicy": "a:b:tag"}`. Anything after the object makes it an ordinary
//! comment, as in Flux.

use std::borrow::Cow;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

/// The JSON member that names the setter.
pub(crate) const SHORTHAND: &str = "$imagepolicy";

/// A scalar field marked with a setter comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marked {
    /// The setter name from the comment (`flux-system:app`, `flux-system:app:tag`).
    pub setter: String,
    /// 1-based line of the scalar's first character.
    pub line: usize,
    /// Byte span of the scalar's text, without anchor or tag (quotes included).
    pub start: usize,
    /// End of the span (after the closing quote of a quoted scalar).
    pub end: usize,
    /// The scalar's current value.
    pub value: String,
    /// Its style.
    pub style: ScalarStyle,
    /// Whether it sits inside a flow collection.
    pub flow: bool,
    /// Why the field cannot be rewritten in place (a block scalar, a scalar over several
    /// lines, an empty value); `None` for fields that can.
    pub problem: Option<&'static str>,
}

/// Why a stream's markers could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// Not valid YAML.
    #[error("cannot parse the YAML: {message} (line {line}, column {column})")]
    Parse {
        /// What the parser said.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
}

impl From<ScanError> for MarkerError {
    fn from(e: ScanError) -> Self {
        MarkerError::Parse {
            message: e.info().to_owned(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
        }
    }
}

/// The collection a node is in, while walking the events.
enum Frame {
    Map { flow: bool, expect_key: bool },
    Seq { flow: bool },
}

/// Where a node sits in its parent.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Key,
    Value,
    BlockItem,
    FlowItem,
    Root,
}

/// Takes the next child's role from the innermost collection.
fn next_role(stack: &mut [Frame]) -> Role {
    match stack.last_mut() {
        None => Role::Root,
        Some(Frame::Map { expect_key, .. }) => {
            let role = if *expect_key { Role::Key } else { Role::Value };
            *expect_key = !*expect_key;
            role
        }
        Some(Frame::Seq { flow: true }) => Role::FlowItem,
        Some(Frame::Seq { flow: false }) => Role::BlockItem,
    }
}

/// Converts saphyr's character indices to byte offsets.
struct Offsets {
    /// Byte offset of every character (plus the end), only for non-ASCII text.
    table: Option<Vec<usize>>,
    len: usize,
}

impl Offsets {
    fn new(text: &str) -> Self {
        let table = (!text.is_ascii()).then(|| {
            let mut t: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            t.push(text.len());
            t
        });
        Self {
            table,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.table {
            None => char_index.min(self.len),
            Some(t) => t.get(char_index).copied().unwrap_or(self.len),
        }
    }
}

/// Every marked scalar of every document of `text`, in order. A scalar whose marker the
/// editor cannot honour (a block scalar, a scalar over several lines, an empty value) is
/// returned with its [`Marked::problem`].
pub(crate) fn find_markers(text: &str) -> Result<Vec<Marked>, MarkerError> {
    let offsets = Offsets::new(text);
    let b = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = Vec::new();
    let mut prev_end = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item?;
        let start = offsets.byte(span.start.index());
        let end = offsets.byte(span.end.index());
        match event {
            Event::StreamEnd => break,
            Event::Scalar(value, style, _, _) => {
                let role = next_role(&mut stack);
                if role != Role::Key {
                    let flow = role == Role::FlowItem
                        || stack.last().is_some_and(|f| {
                            matches!(f, Frame::Map { flow: true, .. } | Frame::Seq { flow: true })
                        });
                    if let Some(m) =
                        marked_scalar(text, b, prev_end, start, end, role, flow, value, style)?
                    {
                        out.push(m);
                    }
                }
            }
            Event::Alias(_) => {
                next_role(&mut stack);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                next_role(&mut stack);
                let flow = stack.last().is_some_and(|f| {
                    matches!(f, Frame::Map { flow: true, .. } | Frame::Seq { flow: true })
                }) || !span.is_empty();
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Map {
                        flow,
                        expect_key: true,
                    }
                } else {
                    Frame::Seq { flow }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::DocumentStart(_) | Event::DocumentEnd => stack.clear(),
            Event::Nothing | Event::StreamStart => {}
        }
        prev_end = end;
    }
    Ok(out)
}

/// The marker of one value scalar, if it has one.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all plain positions"
)]
fn marked_scalar(
    text: &str,
    b: &[u8],
    prev_end: usize,
    start: usize,
    end: usize,
    role: Role,
    flow: bool,
    value: Cow<'_, str>,
    style: ScalarStyle,
) -> Result<Option<Marked>, MarkerError> {
    let vstart = skip_props(b, start, end);
    let line = line_of(b, vstart);
    if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
        // go-yaml gives a block scalar the comment after its `|` / `>` header.
        let header = find_header(b, prev_end.min(start));
        if let Some(h) = header
            && let Some(setter) = comment_after(b, skip_word(b, h), false).and_then(setter_of)
        {
            return Ok(Some(Marked {
                setter,
                line: line_of(b, h),
                start: vstart,
                end: vstart,
                value: value.into_owned(),
                style,
                flow,
                problem: Some("is a block scalar (`|` or `>`); only one-line scalars can be set"),
            }));
        }
        return Ok(None);
    }
    let vend = match style {
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            closing_quote(b, vstart).map_or(end, |c| c + 1)
        }
        _ => end.max(vstart),
    };
    let line_comment = comment_after(b, vend, flow);
    let setter = match line_comment {
        Some(c) => setter_of(c),
        None if matches!(role, Role::BlockItem | Role::FlowItem | Role::Root) => {
            head_comment(b, vstart, role != Role::BlockItem).and_then(setter_of)
        }
        None => None,
    };
    let Some(setter) = setter else {
        return Ok(None);
    };
    let src = text.get(vstart..vend).unwrap_or_default();
    let problem = if vstart >= vend {
        Some("has an empty value; write the current image there first")
    } else if src.contains(['\n', '\r']) {
        Some("spans several lines; only one-line scalars can be set")
    } else {
        None
    };
    Ok(Some(Marked {
        problem,
        setter,
        line,
        start: vstart,
        end: vend,
        value: value.into_owned(),
        style,
        flow,
    }))
}

/// The setter named by a comment (`# {...}` with its `#`), if it is a marker.
pub(crate) fn setter_of(comment: &str) -> Option<String> {
    let json = comment.trim_start_matches('#');
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    if !object
        .values()
        .all(|v| matches!(v, serde_json::Value::String(_) | serde_json::Value::Null))
    {
        return None;
    }
    match object.get(SHORTHAND) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Skips an anchor and a tag at `pos` (and the blanks after them), not past `limit`.
fn skip_props(b: &[u8], mut pos: usize, limit: usize) -> usize {
    loop {
        while pos < limit && matches!(b[pos], b' ' | b'\t') {
            pos += 1;
        }
        if pos < limit && matches!(b[pos], b'&' | b'!') {
            pos = skip_word(b, pos);
        } else {
            return pos;
        }
    }
}

/// After the run of non-blank bytes at `pos`.
fn skip_word(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && !matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n') {
        pos += 1;
    }
    pos
}

/// The position of the closing quote of the quoted scalar opening at `open`.
fn closing_quote(b: &[u8], open: usize) -> Option<usize> {
    if !matches!(b.get(open), Some(b'\'' | b'"')) {
        return None;
    }
    crate::yaml::closing_quote(b, open)
}

/// The `|` or `>` of a block scalar header at or after `pos` (over blanks, comments,
/// indicators and properties).
fn find_header(b: &[u8], mut pos: usize) -> Option<usize> {
    let mut after_space = true;
    while pos < b.len() {
        let blank_next = b
            .get(pos + 1)
            .is_none_or(|n| matches!(n, b' ' | b'\t' | b'\r' | b'\n'));
        match b[pos] {
            b'|' | b'>' => return Some(pos),
            b' ' | b'\t' | b'\r' | b'\n' => {
                after_space = true;
                pos += 1;
                continue;
            }
            b'#' if after_space => {
                while pos < b.len() && b[pos] != b'\n' {
                    pos += 1;
                }
                continue;
            }
            b':' | b'-' | b'?' if blank_next => pos += 1,
            b'&' | b'!' => pos = skip_word(b, pos),
            _ => return None,
        }
        after_space = false;
    }
    None
}

/// The comment (from its `#` to the end of the line, without the line break) that follows
/// `pos` on the same line after blanks — in a flow collection also after one `,`.
fn comment_after(b: &[u8], pos: usize, flow: bool) -> Option<&str> {
    let mut i = pos;
    let blanks = |mut i: usize| {
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        i
    };
    i = blanks(i);
    if flow && b.get(i) == Some(&b',') {
        i = blanks(i + 1);
    }
    // A comment needs white space before it.
    if b.get(i) != Some(&b'#') || i == pos {
        return None;
    }
    comment_at(b, i)
}

/// The comment starting at `hash`, to the end of its line.
fn comment_at(b: &[u8], hash: usize) -> Option<&str> {
    let mut end = hash;
    while end < b.len() && b[end] != b'\n' {
        end += 1;
    }
    if end > hash && b[end - 1] == b'\r' {
        end -= 1;
    }
    std::str::from_utf8(&b[hash..end]).ok()
}

/// The head comment go-yaml gives the sequence item (or document scalar) starting at
/// `start`, when it is exactly one comment line. For a block-sequence item: the comment
/// between its `-` and the item, and the comment lines directly above the `-` line; for
/// a flow-sequence item or a document scalar that starts its line (`alone_on_line`): the
/// comment lines directly above it. Comment lines above stop at
/// a change of indentation (go-yaml starts a new comment block there). `None` when there
/// is none or there are several lines.
fn head_comment(b: &[u8], start: usize, alone_on_line: bool) -> Option<&str> {
    let ls = line_start(b, start);
    let before = &b[ls..start];
    let alone = before.iter().all(|c| matches!(c, b' ' | b'\t'));
    let mut comments: Vec<&str> = Vec::new();
    let above_from = if alone_on_line {
        if !alone {
            return None;
        }
        ls
    } else if alone {
        // The item is alone on its line: comment lines, then the `-` line, are above it.
        let mut l = ls;
        loop {
            if l == 0 {
                return None;
            }
            let prev = line_start(b, l - 1);
            let content = trim(&b[prev..l]);
            if content.first() == Some(&b'#') {
                comments.push(comment_at(b, prev + indent(&b[prev..l]))?);
                l = prev;
                continue;
            }
            if content.first() == Some(&b'-')
                && trim(&content[1..]).first().is_none_or(|c| *c == b'#')
            {
                let rest = trim(&content[1..]);
                if !rest.is_empty() {
                    let hash = prev + indent(&b[prev..l]) + (content.len() - rest.len());
                    comments.push(comment_at(b, hash)?);
                }
                break prev;
            }
            return None;
        }
    } else {
        if trim(before) != b"-" {
            return None;
        }
        ls
    };
    // Comment-only lines directly above, at one indentation.
    let mut l = above_from;
    let mut block_indent = None;
    while l > 0 {
        let prev = line_start(b, l - 1);
        let line = &b[prev..l];
        if trim(line).first() != Some(&b'#') {
            break;
        }
        let ind = indent(line);
        if block_indent.is_some_and(|i| i != ind) {
            break;
        }
        block_indent = Some(ind);
        comments.push(comment_at(b, prev + ind)?);
        l = prev;
    }
    match comments.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

fn indent(line: &[u8]) -> usize {
    line.iter()
        .take_while(|c| matches!(c, b' ' | b'\t'))
        .count()
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .map_or(start, |p| p + 1);
    &s[start..end.max(start)]
}

fn line_start(b: &[u8], pos: usize) -> usize {
    b[..pos.min(b.len())]
        .iter()
        .rposition(|c| *c == b'\n')
        .map_or(0, |p| p + 1)
}

/// 1-based line of `pos`.
pub(crate) fn line_of(b: &[u8], pos: usize) -> usize {
    b[..pos.min(b.len())]
        .iter()
        .filter(|c| **c == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, usize, String)> {
        find_markers(text)
            .unwrap()
            .into_iter()
            .map(|m| {
                assert_eq!(&text[m.start..m.end].trim_matches(['"', '\'']), &m.value);
                (m.setter, m.line, text[m.start..m.end].to_owned())
            })
            .collect()
    }

    fn s(setter: &str, line: usize, src: &str) -> (String, usize, String) {
        (setter.to_owned(), line, src.to_owned())
    }

    #[test]
    fn marker_comment_forms() {
        assert_eq!(
            setter_of(r#"# {"$imagepolicy": "ns:p"}"#).as_deref(),
            Some("ns:p")
        );
        assert_eq!(
            setter_of(r#"#{"$imagepolicy":"ns:p:tag"}"#).as_deref(),
            Some("ns:p:tag")
        );
        assert_eq!(
            setter_of(r#"##   {"$imagepolicy": "ns:p" }  "#).as_deref(),
            Some("ns:p")
        );
        assert_eq!(
            setter_of(r#"# {"other": "x", "$imagepolicy": "ns:p", "n": null}"#).as_deref(),
            Some("ns:p")
        );
        for not in [
            r#"# {"$imagepolicy": "ns:p"} trailing"#,
            r#"# {"$imagepolicy": ""}"#,
            r#"# {"$imagepolicy": 1}"#,
            r#"# {"$imagepolicy": "ns:p", "n": 1}"#,
            r#"# {"$ImagePolicy": "ns:p"}"#,
            r#"# $imagepolicy: ns:p"#,
            "# just a comment",
        ] {
            assert_eq!(setter_of(not), None, "{not}");
        }
    }

    #[test]
    fn line_comments_on_block_values_and_items() {
        let text = concat!(
            "a: x:1 # {\"$imagepolicy\": \"ns:a\"}\n",
            "b: \"x:1\" #{\"$imagepolicy\":\"ns:b\"}\n",
            "c: 'x:1'    ##   {\"$imagepolicy\": \"ns:c:tag\"}\n",
            "d: &anchor x:1 # {\"$imagepolicy\": \"ns:d\"}\n",
            "e: !!str x:1 # {\"$imagepolicy\": \"ns:e\"}\n",
            "f: x:1#{\"$imagepolicy\":\"ns:f\"}\n",
            "l:\n- i:1 # {\"$imagepolicy\": \"ns:l\"}\n",
            "  # {\"$imagepolicy\": \"ns:m\"}\n",
            "- j:2\n",
            "- k:3\n",
        );
        assert_eq!(
            found(text),
            vec![
                s("ns:a", 1, "x:1"),
                s("ns:b", 2, "\"x:1\""),
                s("ns:c:tag", 3, "'x:1'"),
                s("ns:d", 4, "x:1"),
                s("ns:e", 5, "x:1"),
                s("ns:l", 8, "i:1"),
                s("ns:m", 10, "j:2"),
            ]
        );
    }

    #[test]
    fn flow_collections() {
        let text = concat!(
            "f: [a, b] # {\"$imagepolicy\": \"ns:seq\"}\n",
            "g: [a, # {\"$imagepolicy\": \"ns:g1\"}\n",
            "  'b' # {\"$imagepolicy\": \"ns:g2\"}\n",
            "  ]\n",
            "h: {i: x, j: y} # {\"$imagepolicy\": \"ns:map\"}\n",
            "k: {i: x, # {\"$imagepolicy\": \"ns:k\"}\n",
            "  j: y}\n",
            "l: [1,\n",
            "  # {\"$imagepolicy\": \"ns:above\"}\n",
            "  2]\n",
        );
        assert_eq!(
            found(text),
            vec![
                s("ns:g1", 2, "a"),
                s("ns:g2", 3, "'b'"),
                s("ns:k", 6, "x"),
                s("ns:above", 10, "2")
            ]
        );
    }

    #[test]
    fn head_comments_only_for_block_items_and_one_line() {
        let text = concat!(
            "# {\"$imagepolicy\": \"ns:key\"}\n",
            "key: val\n",
            "seq:\n",
            "# {\"$imagepolicy\": \"ns:first\"}\n",
            "- a\n",
            "# other\n",
            "# {\"$imagepolicy\": \"ns:two-lines\"}\n",
            "- b\n",
            "- # {\"$imagepolicy\": \"ns:dash\"}\n",
            "  c\n",
            "-\n",
            "  # {\"$imagepolicy\": \"ns:below\"}\n",
            "  d\n",
            "# {\"$imagepolicy\": \"ns:head\"}\n",
            "- e # {\"$imagepolicy\": \"ns:line\"}\n",
            "# {\"$imagepolicy\": \"ns:mapitem\"}\n",
            "- name: x\n",
            "  # note\n",
            "# {\"$imagepolicy\": \"ns:indent\"}\n",
            "- f\n",
            "k: # {\"$imagepolicy\": \"ns:onkey\"}\n",
            "  v\n",
        );
        assert_eq!(
            found(text),
            vec![
                s("ns:first", 5, "a"),
                s("ns:dash", 10, "c"),
                s("ns:below", 13, "d"),
                s("ns:line", 15, "e"),
                s("ns:indent", 20, "f"),
            ]
        );
    }

    #[test]
    fn a_document_scalar_takes_its_line_and_head_comment() {
        let text = "# {\"$imagepolicy\": \"ns:a\"}\nx:1\n---\ny:2 # {\"$imagepolicy\": \"ns:b\"}\n";
        assert_eq!(found(text), vec![s("ns:a", 2, "x:1"), s("ns:b", 4, "y:2")]);
    }

    #[test]
    fn every_document_counts() {
        let text = "a: x # {\"$imagepolicy\": \"ns:a\"}\n---\n- b # {\"$imagepolicy\": \"ns:b\"}\n...\n---\nc: \"é\" # {\"$imagepolicy\": \"ns:c\"}\n";
        assert_eq!(
            found(text),
            vec![s("ns:a", 1, "x"), s("ns:b", 3, "b"), s("ns:c", 6, "\"é\"")]
        );
    }

    #[test]
    fn unsupported_marked_scalars_carry_their_problem() {
        let problem = |text: &str| {
            let m = find_markers(text).unwrap();
            assert_eq!(m.len(), 1, "{text}");
            (m[0].line, m[0].problem.unwrap_or_default())
        };
        let (line, p) = problem("x: 1\na: | # {\"$imagepolicy\": \"ns:a\"}\n  x\n");
        assert!(line == 2 && p.contains("block scalar"), "{line} {p}");
        let (line, p) = problem("a: x\n  y # {\"$imagepolicy\": \"ns:a\"}\n");
        assert!(line == 1 && p.contains("several lines"), "{line} {p}");
        assert!(matches!(
            find_markers("a: [\n"),
            Err(MarkerError::Parse { .. })
        ));
        // Block scalars without a marker are fine.
        assert!(
            find_markers("a: | # note\n  x\nb: >\n  y\n")
                .unwrap()
                .is_empty()
        );
    }
}
