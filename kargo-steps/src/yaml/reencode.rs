//! The bytes the value editor writes for one scalar, on its own: for steps that find the
//! scalars to change themselves (Flux setter markers, Kustomize image entries) and splice
//! the editor's encoding in.

use serde_json::Value as Json;

use super::KeyPath;
use super::{YamlEditError, set_values};

/// The bytes the YAML editor ([`set_values`]) writes for `value` over the one-line scalar
/// `src` (its source text) in a block or flow context: the editor runs on a one-line
/// document holding just that scalar, and only the scalar's bytes are taken.
pub(crate) fn encode_like(src: &str, flow: bool, value: &str) -> Result<String, YamlEditError> {
    let (prefix, suffix, key) = if flow {
        ("k: [", "]\n", "k.0")
    } else {
        ("k: ", "\n", "k")
    };
    let doc = format!("{prefix}{src}{suffix}");
    let key = KeyPath::parse(key)?;
    let out = set_values(&doc, &[(key, Json::String(value.to_owned()))])?;
    out.strip_prefix(prefix)
        .and_then(|o| o.strip_suffix(suffix))
        .map(str::to_owned)
        .ok_or_else(|| YamlEditError::Unsupported {
            key: "k".to_owned(),
            line: 1,
            reason: format!("cannot encode {value:?}"),
        })
}
