//! The offline test harnesses (feature `testing`), with no network and no cluster:
//!
//! - [`PromotionTest`] runs one Stage's promotion against a fixture GitOps directory and
//!   shows the files, diffs and commit messages it pushed: a unit test of a Stage's
//!   promotion steps and PromotionTasks.
//! - [`PipelineTest`] runs a whole project's pipeline on the real
//!   [`Controller`](crate::Controller), with an in-memory registry the test publishes to, a
//!   [`ManualClock`] and verification verdicts the test decides ([`Verdict`]): which
//!   Freight each Stage holds, which promotions ran, why a Stage waits ([`Wait`]: an
//!   approval, a soak, a hold, an upstream verification), and what was pushed.
//!
//! Both make the fixture GitOps repository the same way: the fixture directory becomes a
//! temporary bare git repository (its files committed on `main` as one commit), and
//! **every occurrence of [`GITOPS_URL`] in the manifests** (or of the placeholder given to
//! `gitops_url`) is replaced by that repository's `file://` URL before they are loaded. A
//! process makes the repository for given files once and copies it for later tests. The
//! `git` command must be installed (pushes use it). Pushes are the main cost of a test
//! (tens of milliseconds each in a debug build): a temporary directory on a memory file
//! system (`TMPDIR=/dev/shm` on Linux) makes them faster.
//!
//! [`PromotionTest`] takes Kargo manifests (at least the Stage and the PromotionTasks it
//! uses: Warehouses the Stage requests but the manifests lack are made up, subscribed to
//! the artifacts given to the builder), the Stage to promote, Freight (whole, or built from [`PromotionTest::image`],
//! [`PromotionTest::chart`] and [`PromotionTest::commit`]) and a fixture directory. The
//! directory becomes a temporary bare git repository (its files committed on `main` as
//! one commit); **every occurrence of [`GITOPS_URL`] in the manifests**
//! (`https://git.example/gitops.git`, or the placeholder given to
//! [`PromotionTest::gitops_url`]) is replaced by that repository's `file://` URL before
//! they are loaded. The promotion then runs with the built-in steps (plus any custom step
//! given to [`PromotionTest::step`]); git mirrors live in the test's temporary directory.
//! Nothing leaves the machine, but the `git` command must be installed (pushes use it).
//!
//! The [`Outcome`] holds the tree of the branch the promotion pushed, per-file unified
//! diffs against the fixture, the messages of the pushed commits, and the runner's
//! [`PromotionResult`](kargo_core::runner::PromotionResult).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kargo::testing::TestError> {
//! use kargo::testing::PromotionTest;
//!
//! let manifests = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/manifests.yaml"));
//! let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fixtures/gitops");
//! let outcome = PromotionTest::new(manifests)
//!     .stage("dev")
//!     .image("ghcr.io/acme/guestbook", "1.2.3")
//!     .gitops_dir(fixture)
//!     .run()
//!     .await?;
//! assert!(outcome.succeeded(), "{:?}", outcome.result.message);
//! assert!(outcome.files["env/dev/values.yaml"].contains("tag: \"1.2.3\""));
//! assert!(outcome.diffs["env/dev/values.yaml"].contains("+  tag: \"1.2.3\""));
//! assert!(!outcome.diffs.contains_key("env/prod/values.yaml"));
//! assert_eq!(outcome.commits.len(), 1);
//! # Ok(())
//! # }
//! ```

mod fixture;
mod pipeline;
mod promotion;

pub use crate::clock::{IntoTimeDelta, ManualClock};
pub use pipeline::{Answer, PipelineRun, PipelineTest, TestVerifier, Verdict, Wait, WaitReason};
pub use promotion::{Outcome, PromotionTest};

use crate::controller::ControllerError;
use kargo_core::loader::ManifestErrors;
use kargo_core::runner::PlanError;
use kargo_core::step::DuplicateStep;
use kargo_git::GitError;

/// The placeholder repository URL replaced by the fixture repository's URL (see the
/// module documentation).
pub const GITOPS_URL: &str = "https://git.example/gitops.git";

/// The branch the fixture directory is committed to.
pub const FIXTURE_BRANCH: &str = "main";

/// Why a [`PromotionTest`] could not run (a promotion that runs and fails is not an
/// error: see [`Outcome::result`]), a [`PipelineTest`] could not be built, or a
/// [`PipelineRun`] could not read the fixture repository.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// The manifests did not load.
    #[error("the manifests do not load: {0}")]
    Manifests(#[from] ManifestErrors),
    /// No Stage was named.
    #[error("no Stage given: call .stage(name)")]
    NoStage,
    /// The Stage is not in the manifests (or is in several projects and none was named).
    #[error("Stage {0:?} is not in the manifests (or in several projects: call .project(name))")]
    UnknownStage(String),
    /// The Stage's promotion could not be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A custom step's name is taken.
    #[error(transparent)]
    DuplicateStep(#[from] DuplicateStep),
    /// The fixture directory could not be read, or a temporary directory made.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Making or reading the fixture repository failed.
    #[error("fixture repository: {0}")]
    Git(#[from] GitError),
    /// The project is not in the manifests, or none was named and the manifests have
    /// several (or none).
    #[error("project {0:?} is not in the manifests (or there are several: call .project(name))")]
    UnknownProject(String),
    /// No project was named and the manifests do not name exactly one (these are the
    /// ones they name).
    #[error("the manifests name {} projects ({}), not one: call .project(name)", .0.len(), .0.join(", "))]
    NoProject(Vec<String>),
    /// The controller refused the manifests.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// A [`PipelineRun`] was asked about the fixture repository but has none.
    #[error("no fixture repository: call .gitops_dir(dir)")]
    NoFixture,
    /// The branch is not in the fixture repository.
    #[error("branch {0:?} is not in the fixture repository")]
    NoBranch(String),
    /// The file is not on the branch.
    #[error("{path} is not on branch {branch:?} of the fixture repository")]
    NoFile {
        /// The branch.
        branch: String,
        /// The file.
        path: String,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestError {
    let context = context.into();
    move |source| TestError::Io { context, source }
}
