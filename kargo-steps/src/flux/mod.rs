//! Flux image-automation markers: the `flux-update-images` step ([`FluxUpdateImages`])
//! and the format-preserving editor behind it ([`update_markers`]).
//!
//! Repositories automated by Flux's image-automation-controller mark the fields to update
//! with a *setter comment* naming an `ImagePolicy`:
//!
//! ```yaml
//! spec:
//!   containers:
//!   - name: app
//!     image: ghcr.io/acme/app:1.0.0 # {"$imagepolicy": "flux-system:app"}
//! ---
//! images:
//! - name: app
//!   newName: ghcr.io/acme/app # {"$imagepolicy": "flux-system:app:name"}
//!   newTag: 1.0.0 # {"$imagepolicy": "flux-system:app:tag"}
//!   digest: sha256:... # {"$imagepolicy": "flux-system:app:digest"}
//! ```
//!
//! The step sets those fields from the Freight being promoted instead of from the
//! policy's status: its configuration maps each `NAMESPACE:NAME` to an image repository,
//! and the Freight's image of that repository supplies the value.
//!
//! # Which files and fields
//!
//! As in Flux (`update.path`, `ScreeningLocalReader`): `path` is a file or a directory
//! walked recursively for `*.yaml`, `*.yml` and files named `Kustomization`; a file is
//! read only when it contains the literal `"$imagepolicy"`. Files that then do not parse
//! are left alone and listed (Flux's "problem files"). Every document of a multi-document
//! file counts. A file named directly in `path` is read whatever its name. Symbolic links
//! are not followed (Flux reads linked files) and `.git` directories are not entered.
//!
//! A scalar is marked by its line comment, or (block-sequence items only, when there is no
//! line comment) by a one-line comment directly above its `-` line, which is where go-yaml
//! v3 attaches the comments kyaml reads; see `markers.rs` for the exact rules. Mapping
//! keys are never set; a comment after a flow collection's closing bracket marks the
//! collection, not a scalar, and marks nothing.
//!
//! # Values
//!
//! | marker | value written |
//! |---|---|
//! | `NAMESPACE:NAME` | `<repoURL>:<tag>`; `<repoURL>:<tag>@<digest>` when the policy's `digest` (default: the step's `digests`, default `false`) is on |
//! | `NAMESPACE:NAME:tag` | `<tag>` |
//! | `NAMESPACE:NAME:name` | `<repoURL>` |
//! | `NAMESPACE:NAME:digest` | `<digest>` (always: the marker asks for it) |
//!
//! Flux writes a digest only for policies with a `digestReflectionPolicy` other than
//! `Never`; `digests` / `digest` is that switch here (Kargo's Freight always knows the
//! digest). A `:digest` marker is honoured whatever the switch says, and is an error when
//! the Freight's image has no digest (Flux would write an empty string).
//!
//! Markers naming a policy the configuration does not list are left alone and reported
//! (`unmatched`), as Flux leaves policies its automation does not select. A marker of a
//! configured policy whose image the Freight lacks is an error naming the step, file,
//! line and policy.
//!
//! # Bytes
//!
//! Only the bytes of a changed value are replaced, encoded in the value's old style by the
//! YAML editor of `yaml-update` ([`crate::yaml::set_values`]): a plain value stays plain
//! unless the new one would read as a number, boolean, date... (then double-quoted, as
//! kyaml quotes a string setter), and quoted values keep their quotes. Comments, the
//! marker itself, indentation, other documents, CRLF line breaks and a missing final
//! newline are kept. Flux re-serialises every file it updates; this step does not. After
//! editing, the text is parsed again and must read as the old one with exactly the
//! intended values changed, or nothing is written.

mod edit;
mod markers;
pub use markers::MarkerError;
mod step;

pub use edit::{
    FieldChange, ImagePart, MarkerUpdate, MarkerUpdateError, PolicyImage, Resolution, Unmatched,
    split_setter, update_markers,
};
pub use step::{FluxImagePolicy, FluxUpdateImages, FluxUpdateImagesConfig};
