//! Kustomize steps: `kustomize-set-image` ([`KustomizeSetImage`]) and the
//! format-preserving editor of a Kustomization's `images:` field behind it
//! ([`set_images`]). `kustomize-build` lives in [`render`](crate::render).
//!
//! # How `images:` is edited
//!
//! | change | how |
//! |---|---|
//! | a value of an existing `newName` / `newTag` / `digest` | only the value's bytes are rewritten, encoded by the YAML editor's rules ([`yaml::set_values`](crate::yaml::set_values)): a plain value stays plain unless it would read as a number, boolean, date...; quoted values keep their quotes; a value equal to the old one (as a string) is left alone |
//! | a key added to an existing entry | a new line after the closest preceding key in kustomize's order (`name`, `newName`, `tagSuffix`, `newTag`, `digest`), at the entry's key column; in a flow entry (`{...}`), `, key: value` |
//! | a key Kargo drops (`newTag` when only a digest is set, `newName` not configured, `tagSuffix`) | its line is removed (on the `- ` line, the next key moves up behind the dash) |
//! | a new entry | at its sorted position if the entries are sorted by name, else at the end; with the dash column and key offset of the existing entries (indented or not), block or flow like the last entry |
//! | no `images:` field | appended after the document's last field, with the sequence style of the document's other block sequences (non-indented by default) |
//! | `images:` / `images: ~` / `images: []` | entries added below the key / inside the brackets |
//!
//! New values copy the quoting of existing values of the same key (else of any existing
//! value, else plain, quoted when needed). Line breaks are the document's (CRLF stays
//! CRLF).
//!
//! Values are encoded without a second pass over the whole file: a one-line scalar's new
//! bytes come from `set_values` run on that scalar alone (same style, block or flow
//! context), or — for strings no YAML reader can mistake (`nginx`, `1.27.0`,
//! `sha256:...`) — are written directly, which unit tests check is byte for byte what
//! `set_values` writes. Multi-line, anchored or tagged scalars go through `set_values` on
//! the whole text. After a structural edit (a key, an entry or `images:` added or removed) the text
//! is parsed again and compared with the intended result: every other field must be
//! unchanged and `images` must hold exactly the expected entries, or the edit is refused.

mod edit;
mod set_image;
mod tree;

pub use edit::{ImagesUpdate, KustomizeEditError, KustomizeImage, set_images};
pub use set_image::{
    KUSTOMIZATION_FILE_NAMES, KustomizeSetImage, KustomizeSetImageConfig, KustomizeSetImageEntry,
};
