//! The push integration policies' unsafe-rebase path: a signed commit to replay (which
//! kargo-rs cannot make itself, so the test writes one into the checkout) makes
//! `RebaseOrFail` fail without pushing and `RebaseOrMerge` merge, keeping the signature.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::{CheckoutOptions, CheckoutTarget, Edit, EditResult, GitConfig, PushIntegrationPolicy};

struct Fixture {
    _dir: tempfile::TempDir,
    remote: PathBuf,
    checkout: Checkout,
    signed: ObjectId,
}

fn sig() -> Signature {
    Signature::new("t", "t@example.com")
}

fn remote_main(remote: &Path) -> ObjectId {
    let repo = gix::open(remote).unwrap();
    repo.find_reference("refs/heads/main")
        .unwrap()
        .target()
        .try_id()
        .unwrap()
        .to_owned()
}

fn write(m: &Mirror, parent: Option<ObjectId>, path: &str, content: &str) -> ObjectId {
    let edits = [Edit::Write {
        path: path.into(),
        content: content.as_bytes().to_vec(),
    }];
    match m
        .write_commit(parent, &edits, content, &sig(), &sig())
        .unwrap()
    {
        EditResult::Committed { commit, .. } => commit,
        other => panic!("{other:?}"),
    }
}

/// A remote whose `main` moved after the checkout made one signed commit of its own.
fn fixture(policy: PushIntegrationPolicy) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let remote = dir.path().join("remote.git");
    gix::init_bare(&remote).unwrap();
    let mut config = GitConfig::new(dir.path().join("cache"));
    config.push_integration_policy = policy;
    config.retry_initial = std::time::Duration::from_millis(1);
    config.retry_max = std::time::Duration::from_millis(2);
    let git = crate::Git::new(config, Arc::new(crate::NoAuth));
    let url = format!("file://{}", remote.display());
    let mirror = git.mirror(&url).unwrap();
    let seed = write(&mirror, None, "a.txt", "seed\n");
    assert_eq!(
        mirror
            .push_raw(&[format!("{seed}:refs/heads/main")], false)
            .unwrap(),
        PushResult::Ok
    );
    let checkout = mirror
        .checkout(
            &CheckoutTarget::Branch("main".into()),
            &dir.path().join("work"),
            &CheckoutOptions::default(),
        )
        .unwrap();
    // A signed commit of the checkout's own (a commit kargo-rs would replay).
    let repo = mirror.open().unwrap();
    let ours = {
        let edited = write(&mirror, Some(seed), "b.txt", "ours\n");
        commit_tree(&repo, edited).unwrap()
    };
    let actor = sig().to_gix();
    let commit = gix::objs::Commit {
        tree: ours,
        parents: vec![seed].into(),
        author: actor.clone(),
        committer: actor,
        encoding: None,
        message: "signed change\n".into(),
        extra_headers: vec![(
            "gpgsig".into(),
            "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----".into(),
        )],
    };
    let signed = repo.write_object(&commit).unwrap().detach();
    {
        let mut st = checkout.lock();
        st.head = Some(signed);
        st.head_tree = ours;
        st.own = vec![signed];
    }
    // Someone else moves main.
    let moved = write(&mirror, Some(seed), "c.txt", "theirs\n");
    assert_eq!(
        mirror
            .push_raw(&[format!("{moved}:refs/heads/main")], false)
            .unwrap(),
        PushResult::Ok
    );
    Fixture {
        _dir: dir,
        remote,
        checkout,
        signed,
    }
}

#[test]
fn rebase_or_fail_refuses_to_rewrite_a_signed_commit_and_pushes_nothing() {
    let f = fixture(PushIntegrationPolicy::RebaseOrFail);
    let before = remote_main(&f.remote);
    let e = f.checkout.push(None, false, Some(3)).unwrap_err();
    assert_eq!(e.kind, GitErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("RebaseOrFail"), "{e}");
    assert!(e.to_string().contains("nothing was pushed"), "{e}");
    assert_eq!(remote_main(&f.remote), before);
}

#[test]
fn rebase_or_merge_merges_and_keeps_the_signed_commit() {
    let f = fixture(PushIntegrationPolicy::RebaseOrMerge);
    let moved = remote_main(&f.remote);
    let out = f.checkout.push(None, false, Some(3)).unwrap();
    let head = remote_main(&f.remote);
    assert_eq!(out.commit, head);
    let repo = gix::open(&f.remote).unwrap();
    let merge = repo.find_commit(head).unwrap();
    let parents: Vec<ObjectId> = merge.parent_ids().map(|p| p.detach()).collect();
    assert_eq!(parents, vec![f.signed, moved]);
    // The signed commit reached the remote unchanged (same ID, so same signature).
    assert!(repo.find_commit(f.signed).is_ok());
}

#[test]
fn always_rebase_rewrites_it() {
    let f = fixture(PushIntegrationPolicy::AlwaysRebase);
    let moved = remote_main(&f.remote);
    f.checkout.push(None, false, Some(3)).unwrap();
    let head = remote_main(&f.remote);
    let repo = gix::open(&f.remote).unwrap();
    let c = repo.find_commit(head).unwrap();
    assert_eq!(
        c.parent_ids().map(|p| p.detach()).collect::<Vec<_>>(),
        vec![moved]
    );
    assert_ne!(head, f.signed);
}
