//! Fetches of one mirror shared by callers that waited for each other.
//!
//! Fetches into a mirror take its lock, one at a time. A caller that waited for the lock
//! while another fetch of the same refs ran needs no fetch of its own when that fetch
//! began after the caller asked: what it brought is at least as fresh as what the
//! caller's own fetch would have seen. Dozens of promotions cloning one repository at
//! once then cost one fetch, not one each.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use gix::ObjectId;

use crate::FetchSpec;

/// The newest fetch of a mirror: what it asked for, when it began, what it found.
#[derive(Debug, Clone)]
struct LastFetch {
    spec: FetchSpec,
    began: Instant,
    refs: BTreeMap<String, ObjectId>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, LastFetch>> {
    static LAST: OnceLock<Mutex<HashMap<PathBuf, LastFetch>>> = OnceLock::new();
    LAST.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The refs of a fetch of `spec` into `mirror` that began at or after `asked`, if the
/// newest fetch there is one. Call with the mirror's lock held.
pub(crate) fn fresh_result(
    mirror: &Path,
    spec: &FetchSpec,
    asked: Instant,
) -> Option<BTreeMap<String, ObjectId>> {
    let last = registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let l = last.get(mirror)?;
    (l.spec == *spec && l.began >= asked).then(|| l.refs.clone())
}

/// Records a fetch of `spec` into `mirror` that began at `began` and found `refs`. Call
/// with the mirror's lock held.
pub(crate) fn record(
    mirror: &Path,
    spec: &FetchSpec,
    began: Instant,
    refs: &BTreeMap<String, ObjectId>,
) {
    registry()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(
            mirror.to_path_buf(),
            LastFetch {
                spec: spec.clone(),
                began,
                refs: refs.clone(),
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_fetch_of_the_same_refs_that_began_after_the_ask_is_shared() {
        let dir = Path::new("/nonexistent/fetch-sharing-test.git");
        let main = FetchSpec::branch("main");
        let asked = Instant::now();
        assert!(fresh_result(dir, &main, asked).is_none());
        let refs = BTreeMap::from([(
            "refs/heads/main".to_owned(),
            ObjectId::from_bytes_or_panic(&[1; 20]),
        )]);
        record(dir, &main, Instant::now(), &refs);
        assert_eq!(fresh_result(dir, &main, asked), Some(refs.clone()));
        assert!(fresh_result(dir, &FetchSpec::branch("dev"), asked).is_none());
        assert!(fresh_result(dir, &main, Instant::now()).is_none());
    }
}
