//! The fast path of the editor: a byte-level, span-aware scanner for the common subset of
//! YAML, used before falling back to saphyr-parser (the reference).
//!
//! The scanner reads the **whole** stream line by line and answers only when every line
//! is inside its subset grammar and every key path resolves to an editable scalar of the
//! first document. On anything else it answers [`None`] and [`set_values`](super::set_values)
//! runs the saphyr path, so errors (invalid YAML anywhere, missing keys, aliases...) always
//! come from saphyr. Because the whole stream is validated, a file the fast path answers
//! for is one saphyr parses without error; the located scalar is then handed to the same
//! edit planner the saphyr path uses, with byte positions identical to the ones saphyr
//! reports, so both paths produce the same bytes.
//!
//! The subset:
//!
//! * UTF-8 text with an optional byte-order mark at the start; `\n` or `\r\n` line breaks;
//!   no tabs, no control characters, no NEL/LS/PS, no other BOM, no U+FFFE/U+FFFF;
//! * documents separated by `---` / ended by `...` (alone on their line, or followed by a
//!   comment); no directives (`%`); every document is empty or a block mapping or a block
//!   sequence starting at column 0; after `...` only `---` may start a document;
//! * block mappings whose keys are single-line plain scalars (no indicator as first
//!   character, no `,[]{}`, at most 1000 bytes, not `<<`) or single-line quoted scalars
//!   (double-quoted keys without escapes) followed directly by `:`;
//! * block sequences (`- item`), including compact forms (`- key: v`, `- - x`) and
//!   sequences at the same column as their parent mapping's keys;
//! * values: single-line plain scalars (no `: `, no `:` at the end, not starting with an
//!   indicator except `-x`), single-line single- or double-quoted scalars (escapes are
//!   validated), empty values, the empty flow collections `{}` and `[]`, and literal or
//!   folded block scalars without an explicit indentation indicator (skipped by
//!   indentation);
//! * comments and blank lines anywhere between them.
//!
//! It falls back on anything else: anchors, aliases, tags, flow collections other than
//! `{}`/`[]`, multi-line plain or quoted scalars, complex keys (`? `), a scalar on its own
//! line as a value, a document that is a scalar, indentation it cannot follow, a key of a
//! mapping on a key path that appears twice. It also falls back when a key path is missing
//! or addresses a collection, when the target is a block scalar, an empty sequence item or
//! sits inside a flow collection, and when the edit planner refuses the edit — so every
//! error is reported by the saphyr path.

use saphyr_parser::ScalarStyle;

use super::edit::{LocateResult, Located, Trie};

/// Why the scanner gave up (it never carries details: the saphyr path reports errors).
struct Unsupported;

type Scan<T> = Result<T, Unsupported>;

/// A block collection being read.
enum Frame {
    Map {
        indent: usize,
        trie: Option<usize>,
        /// Trie children already seen as keys (duplicates make the scanner fall back).
        seen: Vec<usize>,
    },
    Seq {
        indent: usize,
        trie: Option<usize>,
        index: usize,
        /// A sequence at the same column as the keys of its parent mapping.
        in_map: bool,
    },
}

impl Frame {
    fn indent(&self) -> usize {
        match self {
            Frame::Map { indent, .. } | Frame::Seq { indent, .. } => *indent,
        }
    }
}

/// A value left empty on its line (`key:` or `-`): a nested collection may follow.
struct Pending {
    /// Column of the key or of the `-`.
    indent: usize,
    is_map: bool,
    trie: Option<usize>,
    /// Byte offset of the key's `:` (mapping values only).
    colon: usize,
    line: usize,
}

/// Content lines of a block scalar are being skipped.
struct BlockSkip {
    /// Indentation of the parent node: lines indented at most this much end the scalar.
    parent: usize,
    content: Option<usize>,
    max_blank: usize,
}

struct Scanner<'t> {
    text: &'t str,
    trie: &'t Trie,
    out: LocateResult,
    stack: Vec<Frame>,
    pending: Option<Pending>,
    block: Option<BlockSkip>,
    /// Documents started so far (the first one is the one key paths address).
    docs: usize,
    doc_open: bool,
    /// A `...` was read and no `---` since.
    ended: bool,
    /// The current document has its root collection.
    has_root: bool,
    line_no: usize,
}

/// Locates the scalars at the key paths of `trie` in the first document of `text`, or
/// `None` when the text or a key path is outside what the fast path handles.
pub(super) fn locate(text: &str, trie: &Trie, n_updates: usize) -> Option<LocateResult> {
    let b = text.as_bytes();
    let start = if b.starts_with("\u{feff}".as_bytes()) {
        3
    } else {
        0
    };
    if !characters_supported(text, start) {
        return None;
    }
    let mut s = Scanner {
        text,
        trie,
        out: LocateResult {
            scalars: Vec::new(),
            results: (0..n_updates).map(|_| None).collect(),
        },
        stack: Vec::new(),
        pending: None,
        block: None,
        docs: 0,
        doc_open: false,
        ended: false,
        has_root: false,
        line_no: 0,
    };
    let mut pos = start;
    while pos < b.len() {
        let nl = memchr::memchr(b'\n', &b[pos..]);
        let end = nl.map_or(b.len(), |p| pos + p);
        let content_end = if end > pos && b[end - 1] == b'\r' {
            end - 1
        } else {
            end
        };
        s.line_no += 1;
        s.line(pos, &b[pos..content_end]).ok()?;
        pos = end + 1;
    }
    s.end_document().ok()?;
    let out = s.out;
    out.results
        .iter()
        .all(|r| matches!(r, Some(Ok(_))))
        .then_some(out)
}

/// Whether `text` (from byte `from`) holds only characters the scanner accepts: printable
/// ones, `\n`, and `\r` directly before `\n`.
fn characters_supported(text: &str, from: usize) -> bool {
    let b = text.as_bytes();
    let mut i = from;
    while i < b.len() {
        // Blocks of printable ASCII and `\n` are checked without branches.
        let block = &b[i..b.len().min(i + 64)];
        let unusual = block.iter().fold(false, |acc, &c| {
            acc | ((c < 0x20) & (c != b'\n')) | (c >= 0x7f)
        });
        if !unusual {
            i += block.len();
            continue;
        }
        let stop = i + block.len();
        while i < stop {
            let c = b[i];
            if (0x20..0x7f).contains(&c) || c == b'\n' {
                i += 1;
                continue;
            }
            if c == b'\r' {
                if b.get(i + 1) != Some(&b'\n') {
                    return false;
                }
                i += 1;
                continue;
            }
            if c < 0x80 {
                return false;
            }
            let Some(ch) = text.get(i..).and_then(|t| t.chars().next()) else {
                return false;
            };
            if matches!(
                ch,
                '\u{80}'
                    ..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            ) {
                return false;
            }
            i += ch.len_utf8();
        }
    }
    true
}

fn is_blank_at(line: &[u8], i: usize) -> bool {
    line.get(i).is_none_or(|c| *c == b' ')
}

/// `- ` or a lone `-` at the start of `rest`.
fn is_seq_entry(rest: &[u8]) -> bool {
    rest.first() == Some(&b'-') && is_blank_at(rest, 1)
}

fn skip_spaces(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && line[i] == b' ' {
        i += 1;
    }
    i
}

/// Whether the line is over from `i`: only spaces, then nothing or a comment. `i` must
/// follow a space or the end of a token that a comment may follow after a space.
fn only_comment_from(line: &[u8], i: usize) -> bool {
    let j = skip_spaces(line, i);
    j == line.len() || (line[j] == b'#' && j > i)
}

/// A document marker (`---` or `...`) at the start of a line.
fn marker(line: &[u8], m: &[u8; 3]) -> bool {
    line.starts_with(m) && is_blank_at(line, 3)
}

const INDICATORS: &[u8] = b"-?:,[]{}#&*!|>'\"%@`";

/// The end of the single-quoted scalar opening at `open` (the index of its closing quote).
fn single_quoted_end(line: &[u8], open: usize) -> Scan<usize> {
    let mut i = open + 1;
    while i < line.len() {
        if line[i] == b'\'' {
            if line.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return Ok(i);
        }
        i += 1;
    }
    Err(Unsupported)
}

/// The end of the double-quoted scalar opening at `open` (the index of its closing quote),
/// validating its escapes.
fn double_quoted_end(line: &[u8], open: usize) -> Scan<usize> {
    let mut i = open + 1;
    while i < line.len() {
        match line[i] {
            b'"' => return Ok(i),
            b'\\' => {
                let e = *line.get(i + 1).ok_or(Unsupported)?;
                let hex = match e {
                    b'0' | b'a' | b'b' | b't' | b'n' | b'v' | b'f' | b'r' | b'e' | b' ' | b'"'
                    | b'/' | b'\\' | b'N' | b'_' | b'L' | b'P' => 0,
                    b'x' => 2,
                    b'u' => 4,
                    b'U' => 8,
                    _ => return Err(Unsupported),
                };
                if hex > 0 {
                    let digits = line.get(i + 2..i + 2 + hex).ok_or(Unsupported)?;
                    let mut v: u32 = 0;
                    for d in digits {
                        let x = (*d as char).to_digit(16).ok_or(Unsupported)?;
                        v = v * 16 + x;
                    }
                    char::from_u32(v).ok_or(Unsupported)?;
                }
                i += 2 + hex;
            }
            _ => i += 1,
        }
    }
    Err(Unsupported)
}

/// A mapping key found at the start of an entry.
struct Key {
    /// Byte range of the key's text in the line (inside the quotes for quoted keys).
    start: usize,
    end: usize,
    /// Single-quoted (`''` must be unescaped to compare it).
    single: bool,
    /// Index of the first character after the `:`.
    after_colon: usize,
}

/// Reads `key:` at `p`. `Ok(None)`: the entry is not a mapping entry (it may be a scalar).
fn scan_key(line: &[u8], p: usize) -> Scan<Option<Key>> {
    let c = line[p];
    if c == b'\'' || c == b'"' {
        let close = if c == b'\'' {
            single_quoted_end(line, p)?
        } else {
            double_quoted_end(line, p)?
        };
        if line.get(close + 1) == Some(&b':') && is_blank_at(line, close + 2) {
            if c == b'"' && line[p + 1..close].contains(&b'\\') {
                return Err(Unsupported);
            }
            if close - p > 1000 {
                return Err(Unsupported);
            }
            return Ok(Some(Key {
                start: p + 1,
                end: close,
                single: c == b'\'',
                after_colon: close + 2,
            }));
        }
        return Ok(None);
    }
    if INDICATORS.contains(&c) {
        return Ok(None);
    }
    let mut i = p;
    while let Some(off) = memchr::memchr2(b':', b'#', &line[i..]) {
        i += off;
        match line[i] {
            b':' if is_blank_at(line, i + 1) => {
                let mut end = i;
                while end > p && line[end - 1] == b' ' {
                    end -= 1;
                }
                let key = &line[p..end];
                if key.len() > 1000
                    || key == b"<<"
                    || key
                        .iter()
                        .any(|c| matches!(c, b',' | b'[' | b']' | b'{' | b'}'))
                {
                    return Err(Unsupported);
                }
                return Ok(Some(Key {
                    start: p,
                    end,
                    single: false,
                    after_colon: i + 1,
                }));
            }
            b'#' if line[i - 1] == b' ' => return Ok(None),
            _ => i += 1,
        }
    }
    Ok(None)
}

impl Scanner<'_> {
    fn trie_has_children(&self, t: Option<usize>) -> Option<usize> {
        t.filter(|t| self.trie.has_children(*t))
    }

    /// A collection starts for trie node `t`: refused if a key path ends here.
    fn collection(&self, t: Option<usize>) -> Scan<Option<usize>> {
        if let Some(t) = t
            && !self.trie.nodes[t].targets.is_empty()
        {
            return Err(Unsupported);
        }
        Ok(self.trie_has_children(t))
    }

    /// A scalar at trie node `t`, with the bytes `start..end` of the text.
    fn scalar(
        &mut self,
        t: Option<usize>,
        start: usize,
        end: usize,
        style: ScalarStyle,
    ) -> Scan<()> {
        let Some(t) = t else { return Ok(()) };
        let node = &self.trie.nodes[t];
        if self.trie.has_children(t) {
            return Err(Unsupported);
        }
        self.out.scalars.push(Located {
            start,
            end,
            prev_end: start,
            style,
            value: String::new(),
            line: self.line_no,
            flow: false,
        });
        let idx = self.out.scalars.len() - 1;
        for u in &node.targets {
            self.out.results[*u] = Some(Ok(idx));
        }
        Ok(())
    }

    /// A pending empty value turned out to be null.
    fn null_value(&mut self, p: Pending) -> Scan<()> {
        let Some(t) = p.trie else { return Ok(()) };
        if !p.is_map {
            // saphyr places an empty item's span after its comment; leave it to saphyr.
            return Err(Unsupported);
        }
        let line = std::mem::replace(&mut self.line_no, p.line);
        let r = self.scalar(Some(t), p.colon, p.colon, ScalarStyle::Plain);
        self.line_no = line;
        r
    }

    fn end_document(&mut self) -> Scan<()> {
        self.block = None;
        if let Some(p) = self.pending.take() {
            self.null_value(p)?;
        }
        self.stack.clear();
        self.has_root = false;
        self.doc_open = false;
        Ok(())
    }

    /// One line, without its line break; `abs` is its byte offset in the text.
    fn line(&mut self, abs: usize, line: &[u8]) -> Scan<()> {
        let indent = skip_spaces(line, 0);
        let blank = indent == line.len();
        if let Some(block) = self.block.as_mut() {
            if blank {
                if block.content.is_none() {
                    block.max_blank = block.max_blank.max(indent);
                }
                return Ok(());
            }
            if indent > block.parent {
                match block.content {
                    None => {
                        if block.max_blank > indent {
                            return Err(Unsupported);
                        }
                        block.content = Some(indent);
                    }
                    Some(c) if indent < c => return Err(Unsupported),
                    Some(_) => {}
                }
                return Ok(());
            }
            if block.content.is_none() && block.max_blank > block.parent {
                return Err(Unsupported);
            }
            self.block = None;
        }
        if blank || line[indent] == b'#' {
            return Ok(());
        }
        if indent == 0 {
            if marker(line, b"---") {
                if !only_comment_from(line, 3) {
                    return Err(Unsupported);
                }
                self.end_document()?;
                self.docs += 1;
                self.doc_open = true;
                self.ended = false;
                return Ok(());
            }
            if marker(line, b"...") {
                if !only_comment_from(line, 3) {
                    return Err(Unsupported);
                }
                self.end_document()?;
                self.ended = true;
                return Ok(());
            }
            if line.starts_with(b"---") || line.starts_with(b"...") || line[0] == b'%' {
                return Err(Unsupported);
            }
        }
        if !self.doc_open {
            if self.ended {
                return Err(Unsupported);
            }
            self.docs += 1;
            self.doc_open = true;
        }
        self.content_line(abs, line, indent)
    }

    fn content_line(&mut self, abs: usize, line: &[u8], indent: usize) -> Scan<()> {
        let rest = &line[indent..];
        if let Some(p) = self.pending.take() {
            if indent > p.indent {
                let tracked = self.collection(p.trie)?;
                return self.start_collection(abs, line, indent, tracked, false);
            }
            if p.is_map && indent == p.indent && is_seq_entry(rest) {
                let tracked = self.collection(p.trie)?;
                return self.start_collection(abs, line, indent, tracked, true);
            }
            self.null_value(p)?;
        }
        while let Some(top) = self.stack.last() {
            let pop = top.indent() > indent
                || matches!(top, Frame::Seq { indent: i, in_map: true, .. }
                    if *i == indent && !is_seq_entry(rest));
            if !pop {
                break;
            }
            self.stack.pop();
        }
        match self.stack.last() {
            None => {
                if self.has_root || indent != 0 {
                    return Err(Unsupported);
                }
                self.has_root = true;
                let root = (self.docs == 1).then_some(0);
                let tracked = self.collection(root)?;
                self.start_collection(abs, line, 0, tracked, false)
            }
            Some(top) if top.indent() == indent => self.entries(abs, line, indent),
            Some(_) => Err(Unsupported),
        }
    }

    /// A block collection starts at column `col` of the line.
    fn start_collection(
        &mut self,
        abs: usize,
        line: &[u8],
        col: usize,
        trie: Option<usize>,
        in_map: bool,
    ) -> Scan<()> {
        if is_seq_entry(&line[col..]) {
            self.stack.push(Frame::Seq {
                indent: col,
                trie,
                index: 0,
                in_map,
            });
        } else {
            self.stack.push(Frame::Map {
                indent: col,
                trie,
                seen: Vec::new(),
            });
        }
        self.entries(abs, line, col)
    }

    /// The entry at column `col` of the collection on top of the stack (and any compact
    /// collections it opens on the same line).
    fn entries(&mut self, abs: usize, line: &[u8], mut col: usize) -> Scan<()> {
        loop {
            match self.stack.last_mut() {
                Some(Frame::Seq { trie, index, .. }) => {
                    if !is_seq_entry(&line[col..]) {
                        return Err(Unsupported);
                    }
                    let item = trie.and_then(|t| self.trie.child_index(t, *index));
                    *index += 1;
                    let p = skip_spaces(line, col + 1);
                    if p == line.len() || line[p] == b'#' {
                        self.pending = Some(Pending {
                            indent: col,
                            is_map: false,
                            trie: item,
                            colon: 0,
                            line: self.line_no,
                        });
                        return Ok(());
                    }
                    if is_seq_entry(&line[p..]) {
                        let tracked = self.collection(item)?;
                        self.stack.push(Frame::Seq {
                            indent: p,
                            trie: tracked,
                            index: 0,
                            in_map: false,
                        });
                        col = p;
                        continue;
                    }
                    if scan_key(line, p)?.is_some() {
                        let tracked = self.collection(item)?;
                        self.stack.push(Frame::Map {
                            indent: p,
                            trie: tracked,
                            seen: Vec::new(),
                        });
                        col = p;
                        continue;
                    }
                    return self.value(abs, line, p, item, col);
                }
                Some(Frame::Map { trie, seen, .. }) => {
                    let key = scan_key(line, col)?.ok_or(Unsupported)?;
                    let mut child = None;
                    if let Some(t) = *trie {
                        let raw = self
                            .text
                            .get(abs + key.start..abs + key.end)
                            .ok_or(Unsupported)?;
                        child = if key.single && raw.contains('\'') {
                            self.trie.child_key(t, &raw.replace("''", "'"))
                        } else {
                            self.trie.child_key(t, raw)
                        };
                        if let Some(c) = child {
                            if seen.contains(&c) {
                                return Err(Unsupported);
                            }
                            seen.push(c);
                        }
                    }
                    let p = skip_spaces(line, key.after_colon);
                    if p == line.len() || line[p] == b'#' {
                        self.pending = Some(Pending {
                            indent: col,
                            is_map: true,
                            trie: child,
                            colon: abs + key.after_colon - 1,
                            line: self.line_no,
                        });
                        return Ok(());
                    }
                    return self.value(abs, line, p, child, col);
                }
                None => return Err(Unsupported),
            }
        }
    }

    /// A value starting at `p` (not empty, not a comment) of a node whose parent
    /// collection's entries are at column `parent`.
    fn value(
        &mut self,
        abs: usize,
        line: &[u8],
        p: usize,
        t: Option<usize>,
        parent: usize,
    ) -> Scan<()> {
        match line[p] {
            b'\'' | b'"' => {
                let close = if line[p] == b'\'' {
                    single_quoted_end(line, p)?
                } else {
                    double_quoted_end(line, p)?
                };
                if !only_comment_from(line, close + 1) {
                    return Err(Unsupported);
                }
                let style = if line[p] == b'\'' {
                    ScalarStyle::SingleQuoted
                } else {
                    ScalarStyle::DoubleQuoted
                };
                self.scalar(t, abs + p, abs + close + 1, style)
            }
            b'|' | b'>' => {
                // Explicit indentation indicators are left to saphyr.
                let mut i = p + 1;
                if matches!(line.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                if !is_blank_at(line, i) || !only_comment_from(line, i) {
                    return Err(Unsupported);
                }
                if t.is_some() {
                    // Block scalar targets (and paths through them) go to saphyr.
                    return Err(Unsupported);
                }
                self.block = Some(BlockSkip {
                    parent,
                    content: None,
                    max_blank: 0,
                });
                Ok(())
            }
            b'{' | b'[' => {
                let close = if line[p] == b'{' { b'}' } else { b']' };
                if line.get(p + 1) != Some(&close) || !only_comment_from(line, p + 2) {
                    return Err(Unsupported);
                }
                if t.is_some() {
                    return Err(Unsupported);
                }
                Ok(())
            }
            b'-' if !is_blank_at(line, p + 1) => self.plain(abs, line, p, t),
            c if INDICATORS.contains(&c) => Err(Unsupported),
            _ => self.plain(abs, line, p, t),
        }
    }

    /// A single-line plain scalar starting at `p`.
    fn plain(&mut self, abs: usize, line: &[u8], p: usize, t: Option<usize>) -> Scan<()> {
        let mut i = p;
        let mut stop = line.len();
        while let Some(off) = memchr::memchr2(b':', b'#', &line[i..]) {
            i += off;
            match line[i] {
                b':' if is_blank_at(line, i + 1) => return Err(Unsupported),
                b'#' if line[i - 1] == b' ' => {
                    stop = i;
                    break;
                }
                _ => i += 1,
            }
        }
        let mut end = stop;
        while end > p && line[end - 1] == b' ' {
            end -= 1;
        }
        self.scalar(t, abs + p, abs + end, ScalarStyle::Plain)
    }
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
