//! The format-preserving YAML editor behind `yaml-update`.
//!
//! [`set_values`] finds each addressed scalar (with the fast scanner of `fast.rs`, or with
//! saphyr-parser's span events) and splices new bytes over the old value's bytes only. See
//! the [module docs](super) for the rules.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};
use serde_json::Value as Json;

use super::encode::{self, Block, Expect};
use super::path::{KeyPath, KeyPathError, parse_index};

/// Why [`set_values`] refused an edit. Every variant names the key path it was about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlEditError {
    /// The key path is not valid.
    #[error(transparent)]
    KeyPath(#[from] KeyPathError),
    /// The text is not valid YAML.
    #[error("cannot parse the YAML: {message} (line {line}, column {column})")]
    Parse {
        /// What the parser said.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
    },
    /// The key path does not exist in the first document.
    #[error("key {key:?} not found: {detail}")]
    NotFound {
        /// The key path.
        key: String,
        /// Which part is missing, and where.
        detail: String,
    },
    /// The key path addresses a mapping or a sequence; only scalars can be updated.
    #[error("key {key:?} addresses a {kind} (line {line}), not a scalar value")]
    NotScalar {
        /// The key path.
        key: String,
        /// `mapping` or `sequence`.
        kind: &'static str,
        /// 1-based line of the collection.
        line: usize,
    },
    /// The key path addresses, or passes through, an alias (`*name`).
    #[error(
        "key {key:?} {detail} at line {line}; aliases cannot be updated, update the anchored value instead"
    )]
    Alias {
        /// The key path.
        key: String,
        /// `is an alias` or `passes through the alias <prefix>`.
        detail: String,
        /// 1-based line of the alias.
        line: usize,
    },
    /// The new value cannot be written (a JSON object or array).
    #[error("key {key:?}: {reason}")]
    UnsupportedValue {
        /// The key path.
        key: String,
        /// Why.
        reason: String,
    },
    /// The old value is laid out in a way the editor cannot splice safely.
    #[error("key {key:?}: cannot edit the value at line {line}: {reason}")]
    Unsupported {
        /// The key path.
        key: String,
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
}

impl From<ScanError> for YamlEditError {
    fn from(e: ScanError) -> Self {
        YamlEditError::Parse {
            message: e.info().to_owned(),
            line: e.marker().line(),
            column: e.marker().col() + 1,
        }
    }
}

/// Sets the scalar at each key path of `updates` (in order; a later update of the same key
/// wins) in the first YAML document of `text`, changing only the bytes of the old values.
///
/// * Key paths use Kargo's syntax ([`KeyPath`]) and must address an existing scalar.
/// * A string keeps the old value's style (plain, `'single'`, `"double"`, `|` literal,
///   `>` folded) when that style can hold it without changing its type or content;
///   otherwise it is written double-quoted. Plain strings that a YAML 1.1/1.2 reader or
///   Kargo would read as a number, boolean, null, date or JSON are double-quoted.
/// * Numbers, booleans and `null` are written plain; objects and arrays are refused.
/// * Comments (including one on the edited line), indentation, key order, anchors,
///   aliases, other documents, `---`/`...`, CRLF line breaks and a missing final newline
///   are kept byte for byte.
///
/// The whole stream is parsed, so malformed YAML anywhere is an error; nothing is
/// returned partially. Files inside the common subset of YAML take a byte-level fast path
/// that gives the same result (see the [module docs](super)); anything else, and every
/// error, comes from saphyr-parser.
///
/// ```
/// use kargo_steps::yaml::{set_values, KeyPath};
/// use serde_json::json;
/// let text = "image:\n  repository: nginx # upstream\n  tag: \"1.9.3\"\n";
/// let out = set_values(text, &[(KeyPath::parse("image.tag").unwrap(), json!("1.10"))]).unwrap();
/// assert_eq!(out, "image:\n  repository: nginx # upstream\n  tag: \"1.10\"\n");
/// ```
pub fn set_values(text: &str, updates: &[(KeyPath, Json)]) -> Result<String, YamlEditError> {
    check_values(updates)?;
    if let Some(out) = set_values_fast(text, updates) {
        return Ok(out);
    }
    tracing::trace!("yaml edit: fast path declined, using saphyr-parser");
    set_values_saphyr_checked(text, updates)
}

/// Refuses JSON objects and arrays as new values.
fn check_values(updates: &[(KeyPath, Json)]) -> Result<(), YamlEditError> {
    for (key, value) in updates {
        if value.is_object() || value.is_array() {
            return Err(YamlEditError::UnsupportedValue {
                key: key.to_string(),
                reason: format!(
                    "the new value is a JSON {}; only strings, numbers, booleans and null can be written",
                    if value.is_object() { "object" } else { "array" }
                ),
            });
        }
    }
    Ok(())
}

/// The fast path alone ([`super::fast`]): `None` when it does not answer (the text or a
/// key path is outside its subset, or the edit fails), never an error of its own.
pub(crate) fn set_values_fast(text: &str, updates: &[(KeyPath, Json)]) -> Option<String> {
    if check_values(updates).is_err() {
        return None;
    }
    let trie = Trie::new(updates.iter().map(|(k, _)| k));
    let located = super::fast::locate(text, &trie, updates.len())?;
    apply(text, updates, &trie, &located, &ByteMap::identity()).ok()
}

/// [`set_values`] without its fast path: always walks saphyr-parser's events (the
/// reference implementation). It returns exactly what [`set_values`] returns, only
/// slower on the files the fast path handles; it exists to check that agreement (tests,
/// fuzzing) and as a fallback should the fast path ever be in doubt.
///
/// ```
/// use kargo_steps::yaml::{set_values, set_values_saphyr, KeyPath};
/// use serde_json::json;
/// let text = "image:\n  tag: v1 # pinned\n";
/// let updates = [(KeyPath::parse("image.tag").unwrap(), json!("v2"))];
/// let out = set_values_saphyr(text, &updates).unwrap();
/// assert_eq!(out, "image:\n  tag: v2 # pinned\n");
/// assert_eq!(set_values(text, &updates).unwrap(), out);
/// ```
pub fn set_values_saphyr(text: &str, updates: &[(KeyPath, Json)]) -> Result<String, YamlEditError> {
    check_values(updates)?;
    set_values_saphyr_checked(text, updates)
}

fn set_values_saphyr_checked(
    text: &str,
    updates: &[(KeyPath, Json)],
) -> Result<String, YamlEditError> {
    let mut trie = Trie::new(updates.iter().map(|(k, _)| k));
    let located = locate(text, &mut trie, updates.len())?;
    let mut needed: Vec<usize> = Vec::with_capacity(located.scalars.len() * 3);
    for s in &located.scalars {
        needed.extend([s.start, s.end, s.prev_end]);
    }
    let bytes = ByteMap::new(text, needed);
    let out = apply(text, updates, &trie, &located, &bytes)?;
    read_back(&out, updates)?;
    Ok(out)
}

/// Checks that every string written reads back from `out` as exactly that string. The
/// splices follow saphyr's spans and the block-scalar encoder checks its own output, but a
/// layout the planner does not model (a lone `\r` line break inside a block scalar, a
/// block scalar ending the file without a line break) could still change the value or
/// swallow the text after it; such an edit is refused instead of written.
///
/// It also refuses a result that does not parse: where a span does not cover exactly the
/// old value (a tagged empty value in a flow mapping, `{a: !t}`), the splice would break
/// the YAML. One pass of saphyr-parser over the result does both checks.
fn read_back(out: &str, updates: &[(KeyPath, Json)]) -> Result<(), YamlEditError> {
    let mut trie = Trie::new(updates.iter().map(|(k, _)| k));
    let located = match locate(out, &mut trie, updates.len()) {
        Ok(l) => l,
        Err(YamlEditError::Parse { message, line, .. }) => {
            return Err(YamlEditError::Unsupported {
                key: updates
                    .first()
                    .map(|(k, _)| k.to_string())
                    .unwrap_or_default(),
                line,
                reason: format!(
                    "the edited YAML would not parse ({message}); the value's layout is not supported"
                ),
            });
        }
        Err(e) => return Err(e),
    };
    // A later update of the same value wins (two key paths may name one value).
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (u, r) in located.results.iter().enumerate() {
        if let Some(Ok(idx)) = r {
            last.insert(*idx, u);
        }
    }
    for (u, (key, value)) in updates.iter().enumerate() {
        let Json::String(expected) = value else {
            continue;
        };
        if let Some(Ok(idx)) = &located.results[u]
            && last.get(idx) == Some(&u)
        {
            let s = &located.scalars[*idx];
            if s.value != *expected {
                return Err(YamlEditError::Unsupported {
                    key: key.to_string(),
                    line: s.line,
                    reason: "the edited value would not read back as written (a line-break \
                             layout the editor does not support); nothing was changed"
                        .to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Plans and applies the edits for the located scalars. `bytes` maps the scalars'
/// positions to byte offsets.
fn apply(
    text: &str,
    updates: &[(KeyPath, Json)],
    trie: &Trie,
    located: &LocateResult,
    bytes: &ByteMap,
) -> Result<String, YamlEditError> {
    // Resolve each update to a located scalar, reporting the first failure in order.
    let mut by_scalar: HashMap<usize, usize> = HashMap::new();
    for (u, (key, _)) in updates.iter().enumerate() {
        match &located.results[u] {
            Some(Ok(idx)) => {
                by_scalar.insert(*idx, u);
            }
            Some(Err(e)) => return Err(e.clone().with_key(key)),
            None => return Err(trie.explain(key)),
        }
    }

    let mut edits: Vec<Edit> = Vec::new();
    let mut order: Vec<(&usize, &usize)> = by_scalar.iter().collect();
    order.sort();
    for (idx, u) in order {
        let (key, value) = &updates[*u];
        let s = &located.scalars[*idx];
        plan_edit(text, bytes, s, key, value, &mut edits)?;
    }
    edits.sort_by_key(|e| e.start);
    let mut out = String::with_capacity(text.len() + 64);
    let mut pos = 0usize;
    for e in &edits {
        // Defensive: edits never overlap and always fall on character boundaries.
        let kept = text
            .get(pos..e.start)
            .filter(|_| e.end >= e.start && text.is_char_boundary(e.end))
            .ok_or_else(|| YamlEditError::Unsupported {
                key: e.key.clone(),
                line: e.line,
                reason: "internal error: overlapping or misaligned edits".to_owned(),
            })?;
        out.push_str(kept);
        out.push_str(&e.replacement);
        pos = e.end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    Ok(out)
}

impl YamlEditError {
    /// Names `key` in an error recorded before the key was known.
    fn with_key(mut self, k: &KeyPath) -> Self {
        match &mut self {
            YamlEditError::NotScalar { key, .. } | YamlEditError::Alias { key, .. } => {
                *key = k.to_string();
            }
            _ => {}
        }
        self
    }
}

/// One splice, in bytes.
struct Edit {
    start: usize,
    end: usize,
    replacement: String,
    key: String,
    line: usize,
}

/// A scalar found at a target key path (positions in characters as saphyr reports them,
/// or in bytes from the fast path; see [`ByteMap`]).
pub(super) struct Located {
    /// Start of the scalar's span (its properties, quote or first character).
    pub(super) start: usize,
    /// End of the span.
    pub(super) end: usize,
    /// End of the previous event's span (where a block scalar's header is searched from).
    pub(super) prev_end: usize,
    /// The scalar's style.
    pub(super) style: ScalarStyle,
    /// The scalar's value (only read for block scalars).
    pub(super) value: String,
    /// 1-based line of the span's start.
    pub(super) line: usize,
    /// Inside a flow collection.
    pub(super) flow: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Mapping,
    Sequence,
    Scalar,
    Alias,
}

#[derive(Debug, Clone, Copy)]
struct Reached {
    kind: Kind,
    line: usize,
    /// Items of a sequence.
    len: usize,
}

#[derive(Default)]
pub(super) struct TrieNode {
    /// (segment, segment as an index, child node)
    children: Vec<(String, Option<usize>, usize)>,
    /// The updates whose key path ends here.
    pub(super) targets: Vec<usize>,
    reached: Option<Reached>,
}

/// The key paths being looked for, as a tree of segments.
pub(super) struct Trie {
    /// Node 0 is the document root.
    pub(super) nodes: Vec<TrieNode>,
}

impl Trie {
    /// The trie of `keys`; the updates are numbered in order.
    pub(super) fn new<'a>(keys: impl Iterator<Item = &'a KeyPath>) -> Self {
        let mut nodes = vec![TrieNode::default()];
        for (u, key) in keys.enumerate() {
            let mut at = 0usize;
            for seg in key.segments() {
                let existing = nodes[at]
                    .children
                    .iter()
                    .find(|(s, _, _)| s == seg)
                    .map(|c| c.2);
                at = match existing {
                    Some(c) => c,
                    None => {
                        nodes.push(TrieNode::default());
                        let id = nodes.len() - 1;
                        nodes[at].children.push((seg.clone(), parse_index(seg), id));
                        id
                    }
                };
            }
            nodes[at].targets.push(u);
        }
        Self { nodes }
    }

    /// The child of `node` for the mapping key `key`.
    pub(super) fn child_key(&self, node: usize, key: &str) -> Option<usize> {
        self.nodes[node]
            .children
            .iter()
            .find(|(s, _, _)| s == key)
            .map(|c| c.2)
    }

    /// The child of `node` for the sequence index `index`.
    pub(super) fn child_index(&self, node: usize, index: usize) -> Option<usize> {
        self.nodes[node]
            .children
            .iter()
            .find(|(_, i, _)| *i == Some(index))
            .map(|c| c.2)
    }

    /// Whether a key path continues below `node`.
    pub(super) fn has_children(&self, node: usize) -> bool {
        !self.nodes[node].children.is_empty()
    }

    /// Why `key` was not found: the deepest part of it that exists, and what it is.
    fn explain(&self, key: &KeyPath) -> YamlEditError {
        let not_found = |detail: String| YamlEditError::NotFound {
            key: key.to_string(),
            detail,
        };
        let mut at = 0usize;
        for (depth, seg) in key.segments().iter().enumerate() {
            let Some(r) = self.nodes[at].reached else {
                return not_found("the document is empty".to_owned());
            };
            let here = if depth == 0 {
                "the document root".to_owned()
            } else {
                format!("{:?}", key.prefix(depth))
            };
            let next = self.child_key(at, seg);
            let next_reached = next.and_then(|n| self.nodes[n].reached);
            if let (Some(n), Some(_)) = (next, next_reached) {
                at = n;
                continue;
            }
            return match r.kind {
                Kind::Mapping => not_found(format!(
                    "the mapping {here} (line {}) has no key {seg:?}",
                    r.line
                )),
                Kind::Sequence => match parse_index(seg) {
                    None => not_found(format!(
                        "{here} is a sequence (line {}) and {seg:?} is not an index",
                        r.line
                    )),
                    Some(i) => not_found(format!(
                        "index {i} is out of range: the sequence {here} (line {}) has {} item{}",
                        r.line,
                        r.len,
                        if r.len == 1 { "" } else { "s" }
                    )),
                },
                Kind::Scalar => not_found(format!(
                    "{here} is a scalar (line {}), it has no key {seg:?}",
                    r.line
                )),
                Kind::Alias => YamlEditError::Alias {
                    key: key.to_string(),
                    detail: format!("passes through the alias {here}"),
                    line: r.line,
                },
            };
        }
        not_found("the document is empty".to_owned())
    }
}

enum Frame {
    Map {
        trie: Option<usize>,
        flow: bool,
        expect_key: bool,
        value_trie: Option<usize>,
        seen: Vec<usize>,
    },
    Seq {
        trie: Option<usize>,
        flow: bool,
        index: usize,
    },
}

impl Frame {
    fn flow(&self) -> bool {
        match self {
            Frame::Map { flow, .. } | Frame::Seq { flow, .. } => *flow,
        }
    }
}

/// The scalars found, and for each update the index of its scalar or why it has none
/// (`None`: not reached).
pub(super) struct LocateResult {
    pub(super) scalars: Vec<Located>,
    pub(super) results: Vec<Option<Result<usize, YamlEditError>>>,
}

/// The trie node the next node (in value position) corresponds to.
fn node_trie(stack: &[Frame], trie: &Trie, first_doc: bool) -> Option<usize> {
    match stack.last() {
        None => first_doc.then_some(0),
        Some(Frame::Map {
            expect_key: true, ..
        }) => None,
        Some(Frame::Map { value_trie, .. }) => *value_trie,
        Some(Frame::Seq {
            trie: Some(t),
            index,
            ..
        }) => trie.child_index(*t, *index),
        Some(Frame::Seq { trie: None, .. }) => None,
    }
}

/// Called when a node is complete: a key becomes a value, a value the next key, a
/// sequence item the next item.
fn complete_child(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map {
            expect_key,
            value_trie,
            ..
        }) => {
            if !*expect_key {
                *value_trie = None;
            }
            *expect_key = !*expect_key;
        }
        Some(Frame::Seq { index, .. }) => *index += 1,
        None => {}
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Mapping => "mapping",
        Kind::Sequence => "sequence",
        Kind::Scalar => "scalar",
        Kind::Alias => "alias",
    }
}

/// Walks the events of the whole stream, recording the scalars at the target paths of the
/// first document.
fn locate(text: &str, trie: &mut Trie, n_updates: usize) -> Result<LocateResult, YamlEditError> {
    let mut out = LocateResult {
        scalars: Vec::new(),
        results: (0..n_updates).map(|_| None).collect(),
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut docs = 0usize;
    let mut prev_end = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item?;
        let line = span.start.line();
        match event {
            Event::DocumentStart(_) => docs += 1,
            Event::StreamEnd => break,
            Event::Scalar(value, style, _, _) => {
                if let Some(Frame::Map {
                    expect_key: true,
                    trie: Some(mt),
                    value_trie,
                    seen,
                    ..
                }) = stack.last_mut()
                {
                    let child = trie.child_key(*mt, &value).filter(|c| !seen.contains(c));
                    if let Some(c) = child {
                        seen.push(c);
                    }
                    *value_trie = child;
                } else if let Some(t) = node_trie(&stack, trie, docs == 1) {
                    let node = &mut trie.nodes[t];
                    node.reached.get_or_insert(Reached {
                        kind: Kind::Scalar,
                        line,
                        len: 0,
                    });
                    if !node.targets.is_empty() {
                        out.scalars.push(Located {
                            start: span.start.index(),
                            end: span.end.index(),
                            prev_end,
                            style,
                            value: value.into_owned(),
                            line,
                            flow: stack.last().is_some_and(Frame::flow),
                        });
                        let idx = out.scalars.len() - 1;
                        for u in &node.targets {
                            out.results[*u] = Some(Ok(idx));
                        }
                    }
                }
                complete_child(&mut stack);
            }
            Event::Alias(_) => {
                if let Some(Frame::Map {
                    expect_key: true,
                    value_trie,
                    ..
                }) = stack.last_mut()
                {
                    *value_trie = None;
                } else if let Some(t) = node_trie(&stack, trie, docs == 1) {
                    let node = &mut trie.nodes[t];
                    node.reached.get_or_insert(Reached {
                        kind: Kind::Alias,
                        line,
                        len: 0,
                    });
                    for u in &node.targets {
                        out.results[*u] = Some(Err(YamlEditError::Alias {
                            key: String::new(),
                            detail: "is an alias".to_owned(),
                            line,
                        }));
                    }
                }
                complete_child(&mut stack);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                let flow = stack.last().is_some_and(Frame::flow) || !span.is_empty();
                let t = match stack.last_mut() {
                    Some(Frame::Map {
                        expect_key: true,
                        value_trie,
                        ..
                    }) => {
                        *value_trie = None;
                        None
                    }
                    _ => node_trie(&stack, trie, docs == 1),
                };
                if let Some(t) = t {
                    let kind = if is_map {
                        Kind::Mapping
                    } else {
                        Kind::Sequence
                    };
                    let node = &mut trie.nodes[t];
                    node.reached.get_or_insert(Reached { kind, line, len: 0 });
                    for u in &node.targets {
                        out.results[*u] = Some(Err(YamlEditError::NotScalar {
                            key: String::new(),
                            kind: kind_name(kind),
                            line,
                        }));
                    }
                }
                let tracked = t.filter(|t| trie.has_children(*t));
                stack.push(if is_map {
                    Frame::Map {
                        trie: tracked,
                        flow,
                        expect_key: true,
                        value_trie: None,
                        seen: Vec::new(),
                    }
                } else {
                    Frame::Seq {
                        trie: tracked,
                        flow,
                        index: 0,
                    }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    trie: Some(t),
                    index,
                    ..
                }) = stack.pop()
                    && let Some(r) = trie.nodes[t].reached.as_mut()
                {
                    r.len = index;
                }
                complete_child(&mut stack);
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        prev_end = span.end.index();
    }
    Ok(out)
}

/// Character index → byte offset, for the few positions the editor needs.
struct ByteMap {
    /// Positions are byte offsets already (ASCII text, or the fast path's positions).
    ascii: bool,
    map: HashMap<usize, usize>,
}

impl ByteMap {
    /// Positions that are byte offsets already.
    fn identity() -> Self {
        Self {
            ascii: true,
            map: HashMap::new(),
        }
    }

    fn new(text: &str, mut needed: Vec<usize>) -> Self {
        if text.is_ascii() {
            return Self {
                ascii: true,
                map: HashMap::new(),
            };
        }
        needed.sort_unstable();
        needed.dedup();
        let mut map = HashMap::with_capacity(needed.len());
        let mut want = needed.into_iter().peekable();
        for (ci, (bi, _)) in text.char_indices().enumerate() {
            while want.peek() == Some(&ci) {
                map.insert(ci, bi);
                want.next();
            }
            if want.peek().is_none() {
                break;
            }
        }
        for rest in want {
            map.insert(rest, text.len());
        }
        Self { ascii: false, map }
    }

    fn byte(&self, text: &str, ci: usize) -> usize {
        if self.ascii {
            ci.min(text.len())
        } else {
            self.map
                .get(&ci)
                .copied()
                .unwrap_or(text.len())
                .min(text.len())
        }
    }
}

/// Skips anchors, tags, blanks, line breaks and comments from `pos`.
fn skip_props(b: &[u8], mut pos: usize) -> usize {
    let mut after_space = true;
    while pos < b.len() {
        match b[pos] {
            b' ' | b'\t' | b'\r' | b'\n' => {
                after_space = true;
                pos += 1;
            }
            b'#' if after_space => {
                while pos < b.len() && b[pos] != b'\n' {
                    pos += 1;
                }
            }
            b'&' | b'!' => {
                while pos < b.len() && !matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n') {
                    pos += 1;
                }
            }
            _ => break,
        }
    }
    pos
}

/// Finds the `|` or `>` of a block scalar header, scanning forward from the end of the
/// previous event over blanks, comments, indicators and node properties.
fn find_block_header(b: &[u8], mut pos: usize, limit: usize) -> Option<usize> {
    let mut after_space = true;
    while pos < b.len() && pos <= limit {
        let c = b[pos];
        let next_blank = b
            .get(pos + 1)
            .is_none_or(|n| matches!(n, b' ' | b'\t' | b'\r' | b'\n'));
        match c {
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
            b':' | b'-' | b'?' if next_blank => pos += 1,
            b'&' | b'!' => {
                while pos < b.len() && !matches!(b[pos], b' ' | b'\t' | b'\r' | b'\n') {
                    pos += 1;
                }
            }
            _ => return None,
        }
        after_space = false;
    }
    None
}

/// The position of the closing quote of the quoted scalar whose opening quote is at `open`.
pub(crate) fn closing_quote(b: &[u8], open: usize) -> Option<usize> {
    let q = *b.get(open)?;
    let mut i = open + 1;
    while i < b.len() {
        match b[i] {
            b'\\' if q == b'"' => i += 2,
            c if c == q => {
                if q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                    i += 2;
                } else {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The inline (one-line) text for `value` replacing a scalar of `style`.
fn inline_text(value: &Json, style: ScalarStyle, flow: bool) -> Option<String> {
    let s = match value {
        Json::Null => return Some("null".to_owned()),
        Json::Bool(b) => return Some(b.to_string()),
        Json::Number(n) => return Some(n.to_string()),
        Json::String(s) => s,
        Json::Array(_) | Json::Object(_) => return None,
    };
    let candidate = match style {
        ScalarStyle::Plain => encode::plain(s, flow).filter(|p| {
            let doc = if flow {
                format!("[{p}]")
            } else {
                format!("k: {p}")
            };
            encode::verify(&doc, s, Expect::Plain)
        }),
        ScalarStyle::SingleQuoted => encode::single_quoted(s)
            .filter(|q| encode::verify(&format!("k: {q}"), s, Expect::Single)),
        _ => None,
    };
    candidate.or_else(|| {
        let d = encode::double_quoted(s);
        encode::verify(&format!("k: {d}"), s, Expect::Double).then_some(d)
    })
}

fn leading_spaces(line: &[u8]) -> usize {
    line.iter().take_while(|c| **c == b' ').count()
}

/// Plans the splices that replace the scalar `s` with `value`.
fn plan_edit(
    text: &str,
    bytes: &ByteMap,
    s: &Located,
    key: &KeyPath,
    value: &Json,
    edits: &mut Vec<Edit>,
) -> Result<(), YamlEditError> {
    let b = text.as_bytes();
    let unsupported = |reason: &str| YamlEditError::Unsupported {
        key: key.to_string(),
        line: s.line,
        reason: reason.to_owned(),
    };
    let cannot_encode = || unsupported("the new value cannot be encoded");
    let start = bytes.byte(text, s.start);
    let end = bytes.byte(text, s.end);
    let mut push = |start: usize, end: usize, replacement: String| {
        edits.push(Edit {
            start,
            end,
            replacement,
            key: key.to_string(),
            line: s.line,
        });
    };
    match s.style {
        ScalarStyle::Plain => {
            let text_new = inline_text(value, s.style, s.flow).ok_or_else(cannot_encode)?;
            if start == end {
                // An implicit null: `key:` or `-` with nothing after it.
                if b.get(start) == Some(&b':') {
                    push(start + 1, start + 1, format!(" {text_new}"));
                } else if start > 0 && b.get(start - 1) == Some(&b'-') {
                    push(start, start, format!(" {text_new}"));
                } else {
                    return Err(unsupported("the empty value has no `:` or `-` before it"));
                }
                return Ok(());
            }
            let vstart = skip_props(b, start);
            if s.flow && matches!(b.get(vstart), Some(b',' | b'}' | b']')) {
                // saphyr's span of an empty value in a flow collection (`{a: !t}`,
                // `{a, b}`) covers the next indicator, which is not the value's to replace.
                return Err(unsupported("an empty value in a flow collection"));
            }
            if vstart >= end {
                // Only properties (`key: &anchor`): the value follows them.
                push(end, end, format!(" {text_new}"));
            } else {
                push(vstart, end, text_new);
            }
        }
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let open = skip_props(b, start);
            let quote = if s.style == ScalarStyle::SingleQuoted {
                b'\''
            } else {
                b'"'
            };
            if b.get(open) != Some(&quote) {
                return Err(unsupported("the opening quote was not found"));
            }
            let close = closing_quote(b, open)
                .ok_or_else(|| unsupported("the closing quote was not found"))?;
            let text_new = inline_text(value, s.style, s.flow).ok_or_else(cannot_encode)?;
            push(open, close + 1, text_new);
        }
        ScalarStyle::Literal | ScalarStyle::Folded => {
            let prev = bytes.byte(text, s.prev_end).min(start);
            let h = find_block_header(b, prev, end.max(start))
                .ok_or_else(|| unsupported("the block scalar header was not found"))?;
            let content_ok = |content_start: usize| {
                start <= h
                    || b.get(content_start..start)
                        .is_some_and(|gap| gap.iter().all(|c| matches!(c, b' ' | b'\r' | b'\n')))
            };
            let mut ind_end = h + 1;
            let mut digit = None;
            while ind_end < b.len() && ind_end < h + 3 {
                match b[ind_end] {
                    c @ b'1'..=b'9' => digit = Some(c as char),
                    b'+' | b'-' => {}
                    _ => break,
                }
                ind_end += 1;
            }
            let nl_pos = b[ind_end..]
                .iter()
                .position(|c| *c == b'\n')
                .map(|p| p + ind_end);
            let content_start = nl_pos.map_or(b.len(), |p| p + 1);
            if !content_ok(content_start) {
                return Err(unsupported("the block scalar header was not found"));
            }
            // The span may end at the next token, after its indentation: stop at the last
            // line break instead.
            let mut content_end = end.max(content_start);
            if let Some(p) = b[content_start..content_end]
                .iter()
                .rposition(|c| *c == b'\n')
            {
                let last_nl = content_start + p;
                if b[last_nl + 1..content_end]
                    .iter()
                    .all(|c| matches!(c, b' ' | b'\t'))
                {
                    content_end = last_nl + 1;
                }
            } else if b[content_start..content_end]
                .iter()
                .all(|c| matches!(c, b' ' | b'\t'))
            {
                content_end = content_start;
            }
            let nl = match nl_pos {
                Some(p) if p > 0 && b[p - 1] == b'\r' => "\r\n",
                Some(_) => "\n",
                None if text.contains("\r\n") => "\r\n",
                None => "\n",
            };
            // Trailing empty lines are not the value's (unless the new value keeps them).
            let mut body_end = content_end;
            while body_end > content_start && b[body_end - 1] == b'\n' {
                let mut line_end = body_end - 1;
                if line_end > content_start && b[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                let empty = line_end == content_start || b[line_end - 1] == b'\n';
                if !empty {
                    break;
                }
                body_end = line_end;
            }
            // Indentation of the content: from the first non-empty old line, minus the
            // leading spaces that belong to the old value itself.
            let header_line_start = b[..h]
                .iter()
                .rposition(|c| *c == b'\n')
                .map_or(0, |p| p + 1);
            let first_line = b[content_start..body_end]
                .split(|c| *c == b'\n')
                .find(|l| l.iter().any(|c| !matches!(c, b' ' | b'\r')));
            let indent = match first_line {
                Some(l) => {
                    let lv = s
                        .value
                        .split('\n')
                        .find(|v| !v.trim_start_matches(' ').is_empty())
                        .map_or(0, |v| leading_spaces(v.as_bytes()));
                    leading_spaces(l).saturating_sub(lv)
                }
                None => leading_spaces(&b[header_line_start..h]) + 2,
            };
            let digit = digit.filter(|_| first_line.is_some());
            // A value ending in a line break always gets one written after its last line,
            // even where the old block ended the file without one: at the end of input,
            // clip chomping reads no final line break (libyaml; saphyr-parser differs).
            let final_nl = (body_end > 0 && b[body_end - 1] == b'\n')
                || matches!(value, Json::String(v) if v.ends_with('\n'));
            let block_style = if s.style == ScalarStyle::Literal {
                Block::Literal
            } else {
                Block::Folded
            };
            let encoded = match value {
                Json::String(v) => encode::block(v, block_style, indent, digit, nl, final_nl)
                    .filter(|enc| {
                        let mut mini = String::from(&enc.header[..1]);
                        if digit.is_some() {
                            if indent > 9 {
                                return false;
                            }
                            mini.push_str(&indent.to_string());
                        }
                        mini.push_str(if enc.keep {
                            "+"
                        } else if enc.header.ends_with('-') {
                            "-"
                        } else {
                            ""
                        });
                        let doc = format!("k: {mini}{nl}{}", enc.body);
                        let expect = if block_style == Block::Literal {
                            Expect::Literal
                        } else {
                            Expect::Folded
                        };
                        encode::verify(&doc, v, expect)
                    }),
                _ => None,
            };
            match encoded {
                Some(enc) => {
                    push(h, ind_end, enc.header);
                    let region_end = if enc.keep { content_end } else { body_end };
                    let lead = if nl_pos.is_none() && !enc.body.is_empty() {
                        nl
                    } else {
                        ""
                    };
                    push(content_start, region_end, format!("{lead}{}", enc.body));
                }
                None => {
                    let text_new = inline_text(value, ScalarStyle::DoubleQuoted, false)
                        .ok_or_else(cannot_encode)?;
                    push(h, ind_end, text_new);
                    push(content_start, body_end, String::new());
                }
            }
        }
    }
    Ok(())
}
