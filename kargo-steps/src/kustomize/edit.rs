//! The format-preserving editor of a Kustomization's `images:` field.
//!
//! [`set_images`] applies Kargo's merge rule to the entries of `images:` and changes the
//! text as little as it can: values of existing `newName`/`newTag`/`digest` keys are
//! rewritten in place, encoded by the rules of [`yaml::set_values`](crate::yaml::set_values)
//! (see the [module docs](super)); keys, entries and
//! the `images:` field itself are added by textual insertion that copies the surrounding
//! layout (indentation, indented or non-indented sequences, block or flow entries, the
//! quoting of existing values, LF or CRLF line breaks); keys Kargo drops are removed with
//! their line. After such structural edits the result is parsed again and checked against
//! the intended content before it is returned, so a layout the editor does not understand
//! is an error, never a broken file.

use std::collections::{BTreeMap, HashMap};

use saphyr_parser::ScalarStyle;
use serde_json::Value as Json;

use super::tree::{Node, parse_first_document};
use crate::yaml::{KeyPath, YamlEditError, set_values};

/// One entry of a Kustomization's `images:` field, as Kargo's merge handles it
/// (kustomize's `types.Image` without `tagSuffix`). An empty string means "absent"; `*`
/// in a target means "keep the existing entry's value".
///
/// ```
/// use kargo_steps::kustomize::KustomizeImage;
/// let img = KustomizeImage::new("nginx").with_tag("1.27.0");
/// assert_eq!(img.reference(), "nginx:1.27.0");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KustomizeImage {
    /// `name`: the image name the entry matches in the manifests.
    pub name: String,
    /// `newName`: the replacement image name.
    pub new_name: String,
    /// `newTag`: the replacement tag.
    pub new_tag: String,
    /// `digest`: the replacement digest (`sha256:...`).
    pub digest: String,
}

impl KustomizeImage {
    /// An entry for `name` with nothing else set.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Sets `newName`.
    pub fn with_new_name(mut self, new_name: impl Into<String>) -> Self {
        self.new_name = new_name.into();
        self
    }

    /// Sets `newTag`.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.new_tag = tag.into();
        self
    }

    /// Sets `digest`.
    pub fn with_digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = digest.into();
        self
    }

    /// The value of one of [`FIELDS`] (`tagSuffix` is never set).
    fn field(&self, field: usize) -> &str {
        match field {
            NAME => &self.name,
            NEW_NAME => &self.new_name,
            NEW_TAG => &self.new_tag,
            DIGEST => &self.digest,
            _ => "",
        }
    }

    /// The reference Kargo's commit message shows: `newName` (else `name`), then `:newTag`
    /// and `@digest` when set.
    pub fn reference(&self) -> String {
        let mut r = if self.new_name.is_empty() {
            self.name.clone()
        } else {
            self.new_name.clone()
        };
        if !self.new_tag.is_empty() {
            r.push(':');
            r.push_str(&self.new_tag);
        }
        if !self.digest.is_empty() {
            r.push('@');
            r.push_str(&self.digest);
        }
        r
    }
}

/// The result of [`set_images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesUpdate {
    /// The new text of the Kustomization (equal to the input when nothing changed).
    pub text: String,
    /// Kargo's merged image map, by name: the targets (`*` resolved from a matching
    /// existing entry) plus every existing entry no target matched. Kargo's commit message
    /// lists exactly these.
    pub images: BTreeMap<String, KustomizeImage>,
}

/// Why [`set_images`] refused to edit a Kustomization.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KustomizeEditError {
    /// The text is not valid YAML.
    #[error("cannot parse the Kustomization: {message} (line {line}, column {column})")]
    Parse {
        /// What the parser said.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A node has the wrong type (e.g. the document is a sequence, `images` a string).
    #[error("{what} is a {kind} (line {line}), expected {expected}")]
    WrongType {
        /// Which node (`the document`, `images`, `images[2]`, `images[2].newTag`).
        what: String,
        /// What it is.
        kind: &'static str,
        /// What it should be.
        expected: &'static str,
        /// 1-based line.
        line: usize,
    },
    /// A layout the editor does not handle (a flow-style root mapping, duplicate keys...).
    #[error("cannot edit the Kustomization at line {line}: {reason}")]
    Unsupported {
        /// Why.
        reason: String,
        /// 1-based line.
        line: usize,
    },
    /// Rewriting a value failed.
    #[error(transparent)]
    Value(#[from] YamlEditError),
    /// The edited text did not read back as intended (nothing is returned).
    #[error("internal error: the edited Kustomization does not read back as intended: {0}")]
    Verify(String),
}

/// The keys of an `images:` entry, in kustomize's field order.
const FIELDS: [&str; 5] = ["name", "newName", "tagSuffix", "newTag", "digest"];
const NAME: usize = 0;
const NEW_NAME: usize = 1;
const NEW_TAG: usize = 3;
const DIGEST: usize = 4;
const PRESERVE: &str = "*";

/// An existing entry of `images:`.
struct Entry<'a> {
    map: &'a Node<'a>,
    flow: bool,
    /// Per field of [`FIELDS`]: the index of its pair in the mapping.
    fields: [Option<usize>; 5],
    pairs: &'a [(Node<'a>, Node<'a>)],
}

impl Entry<'_> {
    fn value(&self, field: usize) -> Option<&str> {
        self.fields[field].and_then(|p| self.pairs[p].1.scalar())
    }

    fn get(&self, field: usize) -> String {
        self.value(field).unwrap_or_default().to_owned()
    }

    fn image(&self) -> KustomizeImage {
        KustomizeImage {
            name: self.get(NAME),
            new_name: self.get(NEW_NAME),
            new_tag: self.get(NEW_TAG),
            digest: self.get(DIGEST),
        }
    }
}

/// Where the entries live.
enum Container<'a> {
    /// No `images` key; `root` is the root mapping, if there is a document.
    Absent { root: Option<&'a Node<'a>> },
    /// `images:` with a null value.
    Null {
        key: &'a Node<'a>,
        value: &'a Node<'a>,
    },
    /// A block sequence.
    Block { seq: &'a Node<'a> },
    /// A flow sequence (`[...]`).
    Flow { seq: &'a Node<'a> },
}

/// One textual change: replace `start..end` with `text`; insertions at the same offset
/// keep their `order`.
struct Splice {
    start: usize,
    end: usize,
    text: String,
    order: usize,
}

/// A position of the final `images:` sequence.
#[derive(Clone)]
enum Slot {
    Existing(usize),
    New(String),
}

/// Applies Kargo's `kustomize-set-image` merge to the `images:` field of a Kustomization.
///
/// For every target (keyed by `name`):
///
/// * an existing entry with that `name` is replaced by the target, as Kargo does: its
///   `newName`, `newTag` and `digest` become the target's (a `*` keeps the entry's
///   value), and a key the target leaves empty — `newTag` when only a digest is set,
///   `newName` unless given, `tagSuffix` always — is removed;
/// * otherwise a new entry is added: at its sorted position when the existing entries are
///   sorted by name (Kargo sorts the whole list), else at the end.
///
/// Entries no target names are left untouched. Unlike Kargo, which re-serialises the whole
/// file (and sorts the entries), every byte outside the edited values, keys and entries is
/// kept: comments, blank lines, quoting, key order, other fields and documents, CRLF line
/// breaks, a missing final newline.
///
/// ```
/// use std::collections::BTreeMap;
/// use kargo_steps::kustomize::{set_images, KustomizeImage};
/// let text = "resources:\n  - deploy.yaml\nimages:\n  - name: nginx # web\n    newTag: \"1.25\"\n";
/// let mut targets = BTreeMap::new();
/// targets.insert("nginx".to_owned(), KustomizeImage::new("nginx").with_tag("1.27.0"));
/// targets.insert("redis".to_owned(), KustomizeImage::new("redis").with_digest("sha256:ab"));
/// let out = set_images(text, &targets).unwrap();
/// assert_eq!(
///     out.text,
///     "resources:\n  - deploy.yaml\nimages:\n  - name: nginx # web\n    newTag: \"1.27.0\"\n  - name: redis\n    digest: sha256:ab\n"
/// );
/// ```
pub fn set_images(
    text: &str,
    targets: &BTreeMap<String, KustomizeImage>,
) -> Result<ImagesUpdate, KustomizeEditError> {
    let root = parse_first_document(text)?;
    let container = find_container(root.as_ref())?;
    let entries = collect_entries(&container)?;

    // Kargo's merge (mergeImages): the merged map doubles as the commit message's list.
    let mut merged: BTreeMap<String, KustomizeImage> = targets.clone();
    for e in &entries {
        let existing = e.image();
        match merged.get(&existing.name) {
            Some(t) => {
                let mut t = t.clone();
                if t.new_name == PRESERVE {
                    t.new_name = existing.new_name.clone();
                }
                if t.new_tag == PRESERVE {
                    t.new_tag = existing.new_tag.clone();
                }
                if t.digest == PRESERVE {
                    t.digest = existing.digest.clone();
                }
                merged.insert(existing.name.clone(), t);
            }
            None => {
                merged.insert(existing.name.clone(), existing);
            }
        }
    }
    let unstar = |s: &str| {
        if s == PRESERVE {
            String::new()
        } else {
            s.to_owned()
        }
    };
    // The entry each target name ends up as (`*` resolved, or dropped when unmatched).
    let finals: HashMap<&str, KustomizeImage> = targets
        .keys()
        .filter_map(|n| merged.get(n).map(|t| (n.as_str(), t)))
        .map(|(n, t)| {
            (
                n,
                KustomizeImage {
                    name: t.name.clone(),
                    new_name: unstar(&t.new_name),
                    new_tag: unstar(&t.new_tag),
                    digest: unstar(&t.digest),
                },
            )
        })
        .collect();

    // Where new entries go.
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e.value(NAME).unwrap_or_default())
        .collect();
    let existing: std::collections::HashSet<&str> = names.iter().copied().collect();
    let sorted = names.windows(2).all(|w| w[0] <= w[1]);
    let mut new_at: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for name in targets.keys() {
        if existing.contains(name.as_str()) {
            continue;
        }
        let pos = if sorted {
            names.partition_point(|n| *n <= name.as_str())
        } else {
            names.len()
        };
        new_at.entry(pos).or_default().push(name.clone());
    }
    let mut slots: Vec<Slot> = Vec::with_capacity(entries.len() + targets.len());
    for i in 0..=entries.len() {
        if let Some(new) = new_at.get(&i) {
            slots.extend(new.iter().cloned().map(Slot::New));
        }
        if i < entries.len() {
            slots.push(Slot::Existing(i));
        }
    }
    let final_index: HashMap<usize, usize> = slots
        .iter()
        .enumerate()
        .filter_map(|(f, s)| match s {
            Slot::Existing(i) => Some((*i, f)),
            Slot::New(_) => None,
        })
        .collect();

    let layout = Layout::detect(text, root.as_ref(), &container, &entries);
    let mut splices: Vec<Splice> = Vec::new();
    let mut sets: Vec<(KeyPath, Json)> = Vec::new();
    let mut structural = false;
    let mut order = 0usize;
    let mut next_order = || {
        order += 1;
        order
    };

    // Existing entries that a target names.
    let mut removed_of: Vec<Vec<usize>> = vec![Vec::new(); entries.len()];
    for (i, e) in entries.iter().enumerate() {
        let name = e.value(NAME).unwrap_or_default();
        if !targets.contains_key(name) {
            continue;
        }
        let fin = final_of(&finals, name);
        let index = final_index.get(&i).copied().unwrap_or(i);
        let desired: [Option<&str>; 5] = [
            None,
            non_empty(&fin.new_name),
            None,
            non_empty(&fin.new_tag),
            non_empty(&fin.digest),
        ];
        let removed: Vec<usize> = (NEW_NAME..=DIGEST)
            .filter(|f| e.fields[*f].is_some() && desired[*f].is_none())
            .collect();
        let removed_pairs: Vec<usize> = removed.iter().filter_map(|f| e.fields[*f]).collect();
        for f in &removed {
            if let Some(p) = e.fields[*f] {
                splices.push(removal(text, e, p, &removed_pairs, next_order())?);
                structural = true;
            }
        }
        removed_of[i] = removed.clone();
        for f in [NEW_NAME, NEW_TAG, DIGEST] {
            let Some(want) = desired[f] else { continue };
            match e.value(f) {
                Some(have) if have == want => {}
                Some(_) => {
                    let node = e.fields[f].map(|p| &e.pairs[p].1);
                    match node.and_then(|n| inline_source(text, n)) {
                        // A one-line scalar: the editor encodes the value for the old
                        // scalar's style and context; the new bytes replace the old ones.
                        Some((start, end, src, style)) => splices.push(Splice {
                            start,
                            end,
                            text: match direct(style, e.flow, want) {
                                Some(d) => d,
                                None => encode_like(src, e.flow, want)?,
                            },
                            order: next_order(),
                        }),
                        // Anything else (block scalars, anchors, tags): the editor on the
                        // whole text.
                        None => sets.push((key_path(index, f)?, Json::String(want.to_owned()))),
                    }
                }
                None => {
                    let scalar = layout.scalar(f, want, e.flow)?;
                    splices.push(field_insertion(
                        text,
                        &layout,
                        e,
                        f,
                        &scalar,
                        &removed,
                        next_order(),
                    )?);
                    structural = true;
                }
            }
        }
    }

    // New entries.
    for (pos, new_names) in &new_at {
        structural = true;
        let images: Vec<KustomizeImage> = new_names
            .iter()
            .map(|n| final_of(&finals, n).clone())
            .collect();
        splices.extend(entry_insertions(
            text,
            &layout,
            &container,
            &entries,
            &removed_of,
            *pos,
            &images,
            &mut next_order,
        )?);
    }
    if let Container::Null { key, value } = &container
        && !new_at.is_empty()
        && value.end() > value.start()
    {
        // `images: ~` / `images: null`: the null goes, the entries follow the key's line.
        structural = true;
        splices.push(Splice {
            start: key.end(),
            end: value.end(),
            text: ":".to_owned(),
            order: 0,
        });
    }

    // Only structural edits (keys, entries, `images:` added or removed) are read back:
    // value rewrites are the editor's own encodings, checked there.
    let spliced = apply(text, splices)?;
    let out = if sets.is_empty() {
        spliced
    } else {
        set_values(&spliced, &sets)?
    };
    if structural {
        verify(root.as_ref(), &out, &entries, &slots, targets, &finals)?;
    }
    Ok(ImagesUpdate {
        text: out,
        images: merged,
    })
}

static NONE: KustomizeImage = KustomizeImage {
    name: String::new(),
    new_name: String::new(),
    new_tag: String::new(),
    digest: String::new(),
};

/// The entry a target name ends up as.
fn final_of<'a>(finals: &'a HashMap<&str, KustomizeImage>, name: &str) -> &'a KustomizeImage {
    finals.get(name).unwrap_or(&NONE)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn key_path(index: usize, field: usize) -> Result<KeyPath, KustomizeEditError> {
    Ok(
        KeyPath::parse(&format!("images.{index}.{}", FIELDS[field]))
            .map_err(YamlEditError::from)?,
    )
}

fn find_container<'a>(root: Option<&'a Node<'a>>) -> Result<Container<'a>, KustomizeEditError> {
    let Some(root) = root else {
        return Ok(Container::Absent { root: None });
    };
    let Node::Map { flow, pairs, .. } = root else {
        return Err(KustomizeEditError::WrongType {
            what: "the document".to_owned(),
            kind: root.kind_name(),
            expected: "a mapping",
            line: root.line(),
        });
    };
    if *flow {
        return Err(KustomizeEditError::Unsupported {
            reason: "the document is a flow-style mapping ({...})".to_owned(),
            line: root.line(),
        });
    }
    let mut found = pairs.iter().filter(|(k, _)| k.scalar() == Some("images"));
    let Some((key, value)) = found.next() else {
        return Ok(Container::Absent { root: Some(root) });
    };
    if let Some((dup, _)) = found.next() {
        return Err(KustomizeEditError::Unsupported {
            reason: "the key `images` appears twice".to_owned(),
            line: dup.line(),
        });
    }
    match value {
        v if v.is_null() => Ok(Container::Null { key, value }),
        Node::Seq { flow: false, .. } => Ok(Container::Block { seq: value }),
        Node::Seq { flow: true, .. } => Ok(Container::Flow { seq: value }),
        other => Err(KustomizeEditError::WrongType {
            what: "images".to_owned(),
            kind: other.kind_name(),
            expected: "a sequence",
            line: other.line(),
        }),
    }
}

fn collect_entries<'a>(container: &Container<'a>) -> Result<Vec<Entry<'a>>, KustomizeEditError> {
    let items: &[Node<'a>] = match container {
        Container::Block { seq } | Container::Flow { seq } => match seq {
            Node::Seq { items, .. } => items,
            _ => &[],
        },
        _ => &[],
    };
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Node::Map { flow, pairs, .. } = item else {
            return Err(KustomizeEditError::WrongType {
                what: format!("images[{i}]"),
                kind: item.kind_name(),
                expected: "a mapping",
                line: item.line(),
            });
        };
        let mut fields = [None; 5];
        for (p, (k, v)) in pairs.iter().enumerate() {
            let Some(f) = k.scalar().and_then(|k| FIELDS.iter().position(|f| *f == k)) else {
                continue;
            };
            if fields[f].is_some() {
                return Err(KustomizeEditError::Unsupported {
                    reason: format!("images[{i}] has the key `{}` twice", FIELDS[f]),
                    line: k.line(),
                });
            }
            if v.scalar().is_none() {
                return Err(KustomizeEditError::WrongType {
                    what: format!("images[{i}].{}", FIELDS[f]),
                    kind: v.kind_name(),
                    expected: "a string",
                    line: v.line(),
                });
            }
            fields[f] = Some(p);
        }
        entries.push(Entry {
            map: item,
            flow: *flow,
            fields,
            pairs,
        });
    }
    Ok(entries)
}

/// How new lines and values are written, copied from the document.
struct Layout {
    eol: &'static str,
    /// Column of the `-` of `images:` items.
    dash_col: usize,
    /// Distance from the `-` to the entry's first key (2 for `- `).
    offset: usize,
    /// New entries of a block sequence as flow mappings (`- {name: a}`).
    flow_entries: bool,
    /// The quoting of each field's values.
    styles: [ScalarStyle; 5],
}

impl Layout {
    fn detect(
        text: &str,
        root: Option<&Node<'_>>,
        container: &Container<'_>,
        entries: &[Entry<'_>],
    ) -> Self {
        let eol = match text.find('\n') {
            Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
            _ => "\n",
        };
        let root_col = root.map_or(0, Node::col);
        let (dash_col, offset, flow_entries) = match container {
            Container::Block { seq } => {
                let first = match seq {
                    Node::Seq { items, .. } => items.first(),
                    _ => None,
                };
                let last = entries.last();
                match first.and_then(|f| dash_of(text, f).map(|d| (d, f.col()))) {
                    Some((d, c)) => (d, c.saturating_sub(d).max(2), last.is_some_and(|e| e.flow)),
                    None => (root_col, 2, last.is_some_and(|e| e.flow)),
                }
            }
            _ => {
                let (indent, offset) = root.and_then(|r| seq_style(text, r)).unwrap_or((0, 2));
                let key_col = match container {
                    Container::Null { key, .. } => key.col(),
                    _ => root_col,
                };
                (key_col + indent, offset, false)
            }
        };
        // Quoting: per field from existing entries, else that of any existing value.
        let mut styles: [Option<ScalarStyle>; 5] = [None; 5];
        let mut any: Option<ScalarStyle> = None;
        for e in entries {
            for (f, p) in e.fields.iter().enumerate() {
                if let Some(Node::Scalar { style, .. }) = p.map(|p| &e.pairs[p].1) {
                    let s = match style {
                        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => *style,
                        _ => ScalarStyle::Plain,
                    };
                    styles[f].get_or_insert(s);
                    any.get_or_insert(s);
                }
            }
        }
        let fallback = any.unwrap_or(ScalarStyle::Plain);
        Self {
            eol,
            dash_col,
            offset,
            flow_entries,
            styles: styles.map(|s| s.unwrap_or(fallback)),
        }
    }

    /// The text of a new scalar for `field`. A value that is plainly a string in every YAML
    /// reader (and for Kargo's quoting rule) is written directly in the field's style; any
    /// other is encoded by the editor ([`set_values`]) for a scalar of that style, which
    /// keeps the style when the value allows it.
    fn scalar(&self, field: usize, value: &str, flow: bool) -> Result<String, KustomizeEditError> {
        let style = self.styles[field];
        match direct(style, flow, value) {
            Some(d) => Ok(d),
            None => {
                let placeholder = match style {
                    ScalarStyle::SingleQuoted => "'x'",
                    ScalarStyle::DoubleQuoted => "\"x\"",
                    _ => "x",
                };
                encode_like(placeholder, flow, value)
            }
        }
    }

    /// The keys of a new entry: `(field, scalar text)`.
    fn entry_scalars(
        &self,
        img: &KustomizeImage,
        flow: bool,
    ) -> Result<Vec<(usize, String)>, KustomizeEditError> {
        [NAME, NEW_NAME, NEW_TAG, DIGEST]
            .into_iter()
            .filter(|f| !img.field(*f).is_empty())
            .map(|f| Ok((f, self.scalar(f, img.field(f), flow)?)))
            .collect()
    }

    fn flow_entry(&self, img: &KustomizeImage) -> Result<String, KustomizeEditError> {
        let parts: Vec<String> = self
            .entry_scalars(img, true)?
            .into_iter()
            .map(|(f, text)| format!("{}: {text}", FIELDS[f]))
            .collect();
        Ok(format!("{{{}}}", parts.join(", ")))
    }

    /// The lines of a new block-sequence entry (without line breaks).
    fn block_entry(&self, img: &KustomizeImage) -> Result<Vec<String>, KustomizeEditError> {
        let dash = format!(
            "{}-{}",
            " ".repeat(self.dash_col),
            " ".repeat(self.offset - 1)
        );
        if self.flow_entries {
            return Ok(vec![format!("{dash}{}", self.flow_entry(img)?)]);
        }
        let indent = " ".repeat(self.dash_col + self.offset);
        Ok(self
            .entry_scalars(img, false)?
            .into_iter()
            .enumerate()
            .map(|(i, (f, text))| {
                let lead = if i == 0 { &dash } else { &indent };
                format!("{lead}{}: {text}", FIELDS[f])
            })
            .collect())
    }
}

/// The span and source of a scalar the value editor can re-encode on its own: plain,
/// single- or double-quoted, on one line, not empty, without anchor or tag.
fn inline_source<'t>(
    text: &'t str,
    node: &Node<'_>,
) -> Option<(usize, usize, &'t str, ScalarStyle)> {
    let Node::Scalar {
        style, start, end, ..
    } = node
    else {
        return None;
    };
    if !matches!(
        style,
        ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted
    ) {
        return None;
    }
    let src = text.get(*start..*end)?;
    if src.is_empty() || src.contains(['\n', '\r']) || src.starts_with(['&', '!', '*']) {
        return None;
    }
    Some((*start, *end, src, *style))
}

/// The bytes the value editor writes for `value` over the scalar `src` (see
/// [`crate::yaml::encode_like`]).
fn encode_like(src: &str, flow: bool, value: &str) -> Result<String, KustomizeEditError> {
    Ok(crate::yaml::encode_like(src, flow, value)?)
}

/// The encoding of `value` in `style` when it needs no decision: a plain string that no
/// reader takes for anything else, or a quoted one without characters to escape. `None`:
/// ask the editor ([`encode_like`]). Tested to be byte for byte the editor's encoding.
fn direct(style: ScalarStyle, flow: bool, value: &str) -> Option<String> {
    match style {
        ScalarStyle::SingleQuoted => quotable(value).then(|| format!("'{value}'")),
        ScalarStyle::DoubleQuoted => quotable(value).then(|| format!("\"{value}\"")),
        ScalarStyle::Plain => safe_plain(value, flow).then(|| value.to_owned()),
        _ => None,
    }
}

/// Whether `s` is a version with at least three numeric parts (`1.27.0`, `2.0.1-rc.1`,
/// `1.2.3+build.5`): no YAML reader, Go or JSON takes that for a number or a date.
fn version_like(s: &str) -> bool {
    let (core, suffix) = match s.find(['-', '+']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() >= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && suffix.is_none_or(|x| {
            x.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        })
}

/// Whether `s` may be written plain without any reader taking it for something other
/// than that string: a [`version_like`] value, or one that starts with a letter, holds
/// only `A-Z a-z 0-9 . _ / @ + : -` (no `:` inside flow collections), and is none of the
/// words YAML 1.1/1.2, Go's `ParseBool`/`ParseFloat` or JSON read as booleans, nulls or
/// numbers. (Anything else goes through the editor's encoder.)
fn safe_plain(s: &str, flow: bool) -> bool {
    if version_like(s) {
        return true;
    }
    const WORDS: [&str; 14] = [
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "t", "f", "inf", "infinity",
        "nan",
    ];
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '.' | '_' | '/' | '@' | '+' | '-')
                || (c == ':' && !flow)
        })
        && !WORDS.iter().any(|w| w.eq_ignore_ascii_case(s))
}

/// Whether `s` can be put between quotes as is (printable ASCII, no quote or backslash).
fn quotable(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, ' '..='~') && !matches!(c, '\'' | '"' | '\\'))
}

/// The byte position of the `-` in front of a block-sequence item: on the item's line, or
/// on an earlier line with only white space between (`-` alone on its line).
fn dash_pos(text: &str, item: &Node<'_>) -> Option<usize> {
    let before = text.get(..item.start())?;
    let trimmed = before.trim_end_matches([' ', '\t', '\r', '\n']);
    if !trimmed.ends_with('-') {
        return None;
    }
    let dash = trimmed.len() - 1;
    let ls = line_start(text, dash);
    text.get(ls..dash)?
        .chars()
        .all(|c| c == ' ')
        .then_some(dash)
}

/// The column of the `-` in front of a block-sequence item.
fn dash_of(text: &str, item: &Node<'_>) -> Option<usize> {
    let dash = dash_pos(text, item)?;
    Some(dash - line_start(text, dash))
}

/// The sequence style of the document: (dash column minus key column, item offset), from
/// the first block sequence that is the value of a block-mapping key.
fn seq_style(text: &str, node: &Node<'_>) -> Option<(usize, usize)> {
    let Node::Map {
        flow: false, pairs, ..
    } = node
    else {
        return None;
    };
    for (k, v) in pairs {
        if let Node::Seq {
            flow: false, items, ..
        } = v
            && let Some(first) = items.first()
            && let Some(d) = dash_of(text, first)
            && d >= k.col()
        {
            return Some((d - k.col(), first.col().saturating_sub(d).max(2)));
        }
    }
    pairs.iter().find_map(|(_, v)| seq_style(text, v))
}

fn line_start(text: &str, pos: usize) -> usize {
    text.get(..pos)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1)
}

/// The end of the line holding `pos`, before its line break (`\n` or `\r\n`).
fn content_end(text: &str, pos: usize) -> usize {
    let nl = text.get(pos..).and_then(|t| t.find('\n')).map(|i| pos + i);
    match nl {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => i - 1,
        Some(i) => i,
        None => text.len(),
    }
}

/// The end of the line holding the last character before `end` (a node's end), before
/// its line break.
fn content_end_of_node(text: &str, end: usize) -> usize {
    let mut p = end;
    if p > 0 && text.as_bytes().get(p - 1) == Some(&b'\n') {
        p -= 1;
    }
    content_end(text, p)
}

/// After the line holding `pos`, including its line break.
fn after_line(text: &str, pos: usize) -> usize {
    text.get(pos..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |i| pos + i + 1)
}

/// Removes the pair `p` of an entry.
fn removal(
    text: &str,
    e: &Entry<'_>,
    p: usize,
    removed_pairs: &[usize],
    order: usize,
) -> Result<Splice, KustomizeEditError> {
    let (k, v) = &e.pairs[p];
    // The next key that stays (the one that moves up behind a dash).
    let next_staying = (p + 1..e.pairs.len())
        .find(|q| !removed_pairs.contains(q))
        .map(|q| e.pairs[q].0.start());
    let (start, end) = if e.flow {
        match (p.checked_sub(1).map(|q| e.pairs[q].1.end()), next_staying) {
            (Some(prev_end), _) => (prev_end, v.end()),
            (None, Some(next_start)) => (k.start(), next_start),
            (None, None) => (k.start(), v.end()),
        }
    } else {
        let ls = line_start(text, k.start());
        let own_line = text
            .get(ls..k.start())
            .is_some_and(|s| s.chars().all(|c| c == ' ' || c == '\t'));
        if own_line {
            let last = content_end_of_node(text, v.end());
            (ls, after_line(text, last))
        } else if let Some(next_start) = next_staying {
            // The first key, on the `- ` line: the next key that stays moves up behind
            // the dash.
            (k.start(), next_start)
        } else {
            return Err(KustomizeEditError::Unsupported {
                reason: format!(
                    "cannot remove `{}`, the only key of its entry",
                    k.scalar().unwrap_or_default()
                ),
                line: k.line(),
            });
        }
    };
    Ok(Splice {
        start,
        end,
        text: String::new(),
        order,
    })
}

/// Inserts `field` into an existing entry after the closest key that precedes it in
/// kustomize's field order (among the keys that stay), else after the entry's last key.
fn field_insertion(
    text: &str,
    layout: &Layout,
    e: &Entry<'_>,
    field: usize,
    scalar: &str,
    removed: &[usize],
    order: usize,
) -> Result<Splice, KustomizeEditError> {
    let stays = |f: &usize| e.fields[*f].is_some() && !removed.contains(f);
    let anchor_pair = (0..field)
        .rev()
        .find(stays)
        .and_then(|f| e.fields[f])
        .or_else(|| {
            (0..e.pairs.len())
                .rev()
                .find(|p| !removed.iter().any(|f| e.fields[*f] == Some(*p)))
        })
        .ok_or_else(|| KustomizeEditError::Unsupported {
            reason: "an images entry without keys".to_owned(),
            line: e.map.line(),
        })?;
    let anchor = &e.pairs[anchor_pair].1;
    let entry = format!("{}: {scalar}", FIELDS[field]);
    if e.flow {
        return Ok(Splice {
            start: anchor.end(),
            end: anchor.end(),
            text: format!(", {entry}"),
            order,
        });
    }
    let at = content_end_of_node(text, anchor.end());
    let key_col = e.pairs.first().map_or(0, |(k, _)| k.col());
    Ok(Splice {
        start: at,
        end: at,
        text: format!("{}{}{entry}", layout.eol, " ".repeat(key_col)),
        order,
    })
}

/// Inserts new entries before the existing entry `pos` (or at the end).
fn entry_insertions(
    text: &str,
    layout: &Layout,
    container: &Container<'_>,
    entries: &[Entry<'_>],
    removed_of: &[Vec<usize>],
    pos: usize,
    images: &[KustomizeImage],
    next_order: &mut impl FnMut() -> usize,
) -> Result<Vec<Splice>, KustomizeEditError> {
    let eol = layout.eol;
    let block_lines = || -> Result<Vec<String>, KustomizeEditError> {
        let mut all = Vec::new();
        for i in images {
            all.extend(layout.block_entry(i)?);
        }
        Ok(all)
    };
    let splice_lines_after = |at: usize, lines: Vec<String>, order: usize| Splice {
        start: at,
        end: at,
        text: lines.iter().map(|l| format!("{eol}{l}")).collect(),
        order,
    };
    Ok(match container {
        Container::Absent { root } => {
            let mut all = vec![format!(
                "{}images:",
                " ".repeat(root.map_or(0, |r| r.col()))
            )];
            all.extend(block_lines()?);
            match root {
                Some(r) => vec![splice_lines_after(
                    content_end_of_node(text, r.end()),
                    all,
                    next_order(),
                )],
                None if text.is_empty() || text.ends_with('\n') => vec![Splice {
                    start: text.len(),
                    end: text.len(),
                    text: all.iter().map(|l| format!("{l}{eol}")).collect(),
                    order: next_order(),
                }],
                None => vec![splice_lines_after(text.len(), all, next_order())],
            }
        }
        Container::Null { value, .. } => {
            vec![splice_lines_after(
                content_end(text, value.start()),
                block_lines()?,
                next_order(),
            )]
        }
        Container::Block { .. } => {
            if pos > 0 {
                // After the previous entry's last key that stays.
                let prev = &entries[pos - 1];
                let removed = removed_of.get(pos - 1).map_or(&[][..], Vec::as_slice);
                let end = prev
                    .pairs
                    .iter()
                    .enumerate()
                    .filter(|(p, _)| !removed.iter().any(|f| prev.fields[*f] == Some(*p)))
                    .map(|(_, (_, v))| v.end())
                    .max()
                    .unwrap_or_else(|| prev.map.end());
                let end = if prev.flow { prev.map.end() } else { end };
                vec![splice_lines_after(
                    content_end_of_node(text, end),
                    block_lines()?,
                    next_order(),
                )]
            } else {
                let first = entries
                    .first()
                    .ok_or_else(|| KustomizeEditError::Unsupported {
                        reason: "an empty block sequence".to_owned(),
                        line: 0,
                    })?;
                let ls = line_start(
                    text,
                    dash_pos(text, first.map).unwrap_or_else(|| first.map.start()),
                );
                if ls == 0 {
                    vec![Splice {
                        start: 0,
                        end: 0,
                        text: block_lines()?.iter().map(|l| format!("{l}{eol}")).collect(),
                        order: next_order(),
                    }]
                } else {
                    let at = content_end(text, ls - 1);
                    vec![splice_lines_after(at, block_lines()?, next_order())]
                }
            }
        }
        Container::Flow { seq } => {
            let flows: Vec<String> = images
                .iter()
                .map(|i| layout.flow_entry(i))
                .collect::<Result<_, _>>()?;
            let joined = flows.join(", ");
            if entries.is_empty() {
                let open = text
                    .get(seq.start()..)
                    .and_then(|t| t.find('['))
                    .map(|i| seq.start() + i + 1)
                    .ok_or_else(|| KustomizeEditError::Unsupported {
                        reason: "cannot find the `[` of images".to_owned(),
                        line: seq.line(),
                    })?;
                vec![Splice {
                    start: open,
                    end: open,
                    text: joined,
                    order: next_order(),
                }]
            } else if pos == 0 {
                let at = entries[0].map.start();
                vec![Splice {
                    start: at,
                    end: at,
                    text: format!("{joined}, "),
                    order: next_order(),
                }]
            } else {
                let at = entries[pos - 1].map.end();
                vec![Splice {
                    start: at,
                    end: at,
                    text: format!(", {joined}"),
                    order: next_order(),
                }]
            }
        }
    })
}

fn apply(text: &str, splices: Vec<Splice>) -> Result<String, KustomizeEditError> {
    // Removals that touch merge; a run of removed lines at the end of a file without a
    // final newline takes the line break before it instead, so the file still ends
    // without one.
    let (mut removals, mut splices): (Vec<Splice>, Vec<Splice>) = splices
        .into_iter()
        .partition(|s| s.text.is_empty() && s.end > s.start);
    removals.sort_by_key(|s| (s.start, s.end));
    let mut merged: Vec<Splice> = Vec::with_capacity(removals.len());
    for r in removals {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    if let Some(last) = merged.last_mut()
        && last.end == text.len()
        && !text.ends_with('\n')
        && let Some(before) = text.get(..last.start)
        && before.ends_with('\n')
    {
        last.start -= if before.ends_with("\r\n") { 2 } else { 1 };
    }
    splices.extend(merged);
    // Insertions (empty ranges) go before a removal starting at the same offset.
    splices.sort_by_key(|s| (s.start, s.end, s.order));
    let mut out =
        String::with_capacity(text.len() + splices.iter().map(|s| s.text.len()).sum::<usize>());
    let mut pos = 0usize;
    for s in &splices {
        let kept = text
            .get(pos..s.start)
            .filter(|_| s.end >= s.start && text.is_char_boundary(s.end))
            .ok_or_else(|| {
                KustomizeEditError::Verify("overlapping or misaligned edits".to_owned())
            })?;
        out.push_str(kept);
        out.push_str(&s.text);
        pos = s.end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    Ok(out)
}

/// Whether two nodes hold the same content (positions aside).
fn same(a: &Node<'_>, b: &Node<'_>) -> bool {
    match (a, b) {
        (
            Node::Scalar {
                value: va,
                style: sa,
                ..
            },
            Node::Scalar {
                value: vb,
                style: sb,
                ..
            },
        ) => va == vb && sa == sb,
        (Node::Map { pairs: pa, .. }, Node::Map { pairs: pb, .. }) => {
            pa.len() == pb.len()
                && pa
                    .iter()
                    .zip(pb)
                    .all(|((ka, va), (kb, vb))| same(ka, kb) && same(va, vb))
        }
        (Node::Seq { items: ia, .. }, Node::Seq { items: ib, .. }) => {
            ia.len() == ib.len() && ia.iter().zip(ib).all(|(x, y)| same(x, y))
        }
        (Node::Alias { .. }, Node::Alias { .. }) => true,
        _ => false,
    }
}

/// Reads the edited text back and checks that only `images` changed, and as intended.
fn verify(
    before: Option<&Node<'_>>,
    after: &str,
    entries: &[Entry<'_>],
    slots: &[Slot],
    targets: &BTreeMap<String, KustomizeImage>,
    finals: &HashMap<&str, KustomizeImage>,
) -> Result<(), KustomizeEditError> {
    let fail = |m: String| Err(KustomizeEditError::Verify(m));
    let parsed = parse_first_document(after)?;
    let empty: &[(Node<'_>, Node<'_>)] = &[];
    let before_pairs = match before {
        Some(Node::Map { pairs, .. }) => pairs.as_slice(),
        _ => empty,
    };
    let Some(Node::Map {
        pairs: after_pairs, ..
    }) = parsed.as_ref()
    else {
        return fail("the document is not a mapping".to_owned());
    };
    let not_images = |(k, _): &&(Node<'_>, Node<'_>)| k.scalar() != Some("images");
    let old_rest: Vec<&(Node<'_>, Node<'_>)> = before_pairs.iter().filter(not_images).collect();
    let new_rest: Vec<&(Node<'_>, Node<'_>)> = after_pairs.iter().filter(not_images).collect();
    if old_rest.len() != new_rest.len()
        || !old_rest
            .iter()
            .zip(&new_rest)
            .all(|(a, b)| same(&a.0, &b.0) && same(&a.1, &b.1))
    {
        return fail("a field other than `images` changed".to_owned());
    }
    let Some((_, Node::Seq { items, .. })) = after_pairs
        .iter()
        .find(|(k, _)| k.scalar() == Some("images"))
    else {
        return fail("`images` is not a sequence".to_owned());
    };
    if items.len() != slots.len() {
        return fail(format!(
            "`images` has {} entries, expected {}",
            items.len(),
            slots.len()
        ));
    }
    for (index, (slot, got)) in slots.iter().zip(items).enumerate() {
        let Node::Map {
            pairs: got_pairs, ..
        } = got
        else {
            return fail(format!("images[{index}] is not a mapping"));
        };
        let field_of = |k: &Node<'_>| k.scalar().and_then(|k| FIELDS.iter().position(|f| *f == k));
        // The image fields as they read back, and the other keys.
        let mut got_fields: [Option<&str>; 5] = [None; 5];
        let mut got_other: Vec<&(Node<'_>, Node<'_>)> = Vec::new();
        for pair in got_pairs {
            match field_of(&pair.0) {
                Some(f) => got_fields[f] = pair.1.scalar(),
                None => got_other.push(pair),
            }
        }
        let (want_fields, want_other): ([Option<&str>; 5], Vec<&(Node<'_>, Node<'_>)>) = match slot
        {
            Slot::Existing(i) => {
                let e = &entries[*i];
                let name = e.value(NAME).unwrap_or_default();
                let other: Vec<&(Node<'_>, Node<'_>)> = e
                    .pairs
                    .iter()
                    .filter(|(k, _)| field_of(k).is_none())
                    .collect();
                if targets.contains_key(name) {
                    let fin = final_of(finals, name);
                    (
                        [
                            e.value(NAME),
                            non_empty(&fin.new_name),
                            None,
                            non_empty(&fin.new_tag),
                            non_empty(&fin.digest),
                        ],
                        other,
                    )
                } else {
                    ([0, 1, 2, 3, 4].map(|f| e.value(f)), other)
                }
            }
            Slot::New(name) => {
                let fin = final_of(finals, name);
                (
                    [
                        Some(fin.name.as_str()),
                        non_empty(&fin.new_name),
                        None,
                        non_empty(&fin.new_tag),
                        non_empty(&fin.digest),
                    ],
                    Vec::new(),
                )
            }
        };
        let fields_ok = want_fields == got_fields;
        let other_ok = want_other.len() == got_other.len()
            && want_other
                .iter()
                .zip(&got_other)
                .all(|(a, b)| same(&a.0, &b.0) && same(&a.1, &b.1));
        if !fields_ok || !other_ok {
            return fail(format!(
                "images[{index}] reads back as {got_fields:?}, expected {want_fields:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New values and re-encoded values are byte for byte what `set_values` writes.
    #[test]
    fn direct_scalars_match_set_values() {
        let values = [
            "nginx",
            "ghcr.io/acme/api",
            "registry.local:5000/team/app",
            "sha256:0123abcd",
            "v2.0.0-rc.1",
            "latest",
            "1.27.0",
            "1.10",
            "7",
            "true",
            "True",
            "on",
            "Off",
            "y",
            "No",
            "null",
            "nan",
            "Inf",
            "infinity",
            "t",
            "F",
            "a b",
            "a: b",
            "it's",
            "say \"hi\"",
            "back\\slash",
            "-x",
            ".5",
            "2024-01-01",
            "x#y",
            "ünïcode",
            "",
            "1.2.3",
            "10.20.30-rc.1",
            "1.2.3+build.5",
            "1.2.3.4",
            "0.0.1",
            "01.02.03",
            "1.2.3e5",
            "1.2.3-",
            "1..2",
            "2.0",
            "1.2.3-rc:1",
        ];
        for (style, placeholder) in [
            (ScalarStyle::Plain, "x"),
            (ScalarStyle::SingleQuoted, "'x'"),
            (ScalarStyle::DoubleQuoted, "\"x\""),
        ] {
            let layout = Layout {
                eol: "\n",
                dash_col: 0,
                offset: 2,
                flow_entries: false,
                styles: [style; 5],
            };
            for flow in [false, true] {
                for v in values {
                    let text = layout.scalar(NEW_TAG, v, flow).unwrap();
                    let key = KeyPath::parse("k.0.t").unwrap();
                    let doc = |s: &str| {
                        if flow {
                            format!("k: [{{t: {s}}}]\n")
                        } else {
                            format!("k:\n- t: {s}\n")
                        }
                    };
                    let via_editor =
                        set_values(&doc(placeholder), &[(key, Json::String(v.to_owned()))])
                            .unwrap();
                    assert_eq!(doc(&text), via_editor, "{style:?} {flow} {v:?}");
                    // Re-encoding an existing scalar gives the editor's bytes too.
                    assert_eq!(
                        doc(&encode_like(placeholder, flow, v).unwrap()),
                        via_editor,
                        "{style:?} {flow} {v:?}"
                    );
                }
            }
        }
        assert!(safe_plain("sha256:ab", false) && !safe_plain("sha256:ab", true));
        assert!(
            safe_plain("1.27.0", false) && !safe_plain("2.0", false) && !safe_plain("ON", false)
        );
    }

    /// The read-back check refuses every kind of unintended result.
    #[test]
    fn verify_refuses_unintended_results() {
        let before = "kind: K\nimages:\n- name: a\n  newTag: \"1\"\n  extra: e\n";
        let root = parse_first_document(before).unwrap();
        let container = find_container(root.as_ref()).unwrap();
        let entries = collect_entries(&container).unwrap();
        let mut targets = BTreeMap::new();
        targets.insert("a".to_owned(), KustomizeImage::new("a").with_tag("2"));
        let mut finals = HashMap::new();
        finals.insert("a", KustomizeImage::new("a").with_tag("2"));
        let slots = [Slot::Existing(0)];
        let check = |after: &str| verify(root.as_ref(), after, &entries, &slots, &targets, &finals);
        assert!(check("kind: K\nimages:\n- name: a\n  newTag: \"2\"\n  extra: e\n").is_ok());
        for bad in [
            "kind: X\nimages:\n- name: a\n  newTag: \"2\"\n  extra: e\n",
            "kind: K\nimages:\n- name: a\n  newTag: \"3\"\n  extra: e\n",
            "kind: K\nimages:\n- name: a\n  newTag: \"2\"\n  extra: f\n",
            "kind: K\nimages:\n- name: a\n  newTag: \"2\"\n  extra: e\n  kind2: K\n",
            "kind: K\nimages:\n- name: a\n  newTag: \"2\"\n  extra: e\n- name: b\n",
            "kind: K\nimages:\n- name: a\n  newTag: \"2\"\n  digest: d\n  extra: e\n",
            "kind: K\nimages: []\n",
            "kind: K\n",
            "- a\n",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
