//! Promotion windows: whether a Stage may be promoted at a given instant, and when that
//! next changes.
//!
//! A Stage's schedule is the union of the `promotionWindows` of its ProjectConfig and of
//! the ClusterConfig whose selectors match it (`stageSelector` against the Stage's name
//! and labels, `projectSelector` — ClusterConfig only — against the Project's). The
//! schedule is **open** at an instant when no matching Deny window is active and, if any
//! Allow window matches, at least one of them is active. A window is active during each
//! of its occurrences, `[start, start + (dtend - dtstart))`.
//!
//! [`PromotionWindows::status_at`] reports Kargo's `promotionWindowStatus`: whether the
//! schedule is closed and why, and the next instant it opens (when closed) or closes
//! (when open), searched up to [`SEARCH_HORIZON_DAYS`] ahead. The clock is the caller's:
//! nothing here reads the system time.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use kargo_core::model::ProjectConfig;
//! use kargo_core::pipeline::{PromotionWindows, WindowTarget};
//!
//! let config: ProjectConfig = yaml_serde::from_str(r#"
//! apiVersion: kargo.akuity.io/v1alpha1
//! kind: ProjectConfig
//! metadata: {name: demo, namespace: demo}
//! spec:
//!   promotionWindows:
//!   - name: business-hours
//!     kind: Allow
//!     rrule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR
//!     dtstart: TZID=Europe/Berlin:20260105T090000
//!     dtend: TZID=Europe/Berlin:20260105T170000
//! "#).unwrap();
//! let windows = PromotionWindows::for_stage(
//!     Some(&config), None, &WindowTarget::new("demo", "prod"),
//! ).unwrap();
//! // Saturday 7 March 2026, noon UTC: closed until Monday 09:00 in Berlin (08:00 UTC).
//! let status = windows.status_at(Utc.with_ymd_and_hms(2026, 3, 7, 12, 0, 0).unwrap());
//! assert!(status.closed);
//! assert_eq!(status.next_open, Some(Utc.with_ymd_and_hms(2026, 3, 9, 8, 0, 0).unwrap()));
//! ```

use chrono::{DateTime, TimeDelta, Utc};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::name_matches;
use crate::model::{
    ClusterConfig, Project, ProjectConfig, PromotionPolicySelector, PromotionWindow,
    PromotionWindowKind, Stage,
};
use crate::recurrence::{Schedule, ScheduleError};

/// How far ahead `nextOpen` and `nextClose` are looked for. A schedule that stays as it
/// is for longer (a freeze lasting more than 400 days, a window that never comes back)
/// reports none.
pub const SEARCH_HORIZON_DAYS: i64 = 400;

/// Kargo's `Stage.status.promotionWindowStatus`: what the promotion windows say about a
/// Stage at one instant. Advisory: it is computed when the Stage is looked at, and a
/// promotion is checked against the windows again when it is admitted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromotionWindowStatus {
    /// Whether the windows forbid promoting the Stage now.
    pub closed: bool,
    /// Why, naming the windows responsible; set whenever `closed` is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When promotions are next allowed, while closed; absent when no opening is known
    /// within [`SEARCH_HORIZON_DAYS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_open: Option<DateTime<Utc>>,
    /// When promotions next become forbidden, while open; absent when no closing is known
    /// within [`SEARCH_HORIZON_DAYS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_close: Option<DateTime<Utc>>,
    /// Why the schedule closes at `nextClose`; set whenever `nextClose` is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub next_close_reason: String,
}

/// The Stage (and its Project) whose windows are wanted.
#[derive(Clone, Debug, Default)]
pub struct WindowTarget<'a> {
    /// The Project's name.
    pub project: &'a str,
    /// The Project's labels (for ClusterConfig `projectSelector.matchLabels`); none when
    /// the Project resource is not at hand.
    pub project_labels: Option<&'a IndexMap<String, String>>,
    /// The Stage's name.
    pub stage: &'a str,
    /// The Stage's labels.
    pub stage_labels: Option<&'a IndexMap<String, String>>,
}

impl<'a> WindowTarget<'a> {
    /// A Stage by name, without labels.
    pub fn new(project: &'a str, stage: &'a str) -> Self {
        Self {
            project,
            stage,
            ..Self::default()
        }
    }

    /// A Stage resource (its namespace is its Project) with its labels, and the Project
    /// resource when there is one.
    pub fn of_stage(stage: &'a Stage, project: Option<&'a Project>) -> Self {
        let project_name = project
            .map(|p| p.metadata.name.as_str())
            .or(stage.metadata.namespace.as_deref())
            .unwrap_or_default();
        Self {
            project: project_name,
            project_labels: project.map(|p| &p.metadata.labels),
            stage: &stage.metadata.name,
            stage_labels: Some(&stage.metadata.labels),
        }
    }
}

/// Where a window was declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowSource {
    /// A Project's ProjectConfig (its name).
    ProjectConfig(String),
    /// The ClusterConfig.
    ClusterConfig,
}

impl std::fmt::Display for WindowSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WindowSource::ProjectConfig(name) => write!(f, "ProjectConfig {name:?}"),
            WindowSource::ClusterConfig => f.write_str("ClusterConfig"),
        }
    }
}

/// A window that could not be evaluated (validation reports the same problems earlier).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{config}: spec.promotionWindows[{index}] ({name:?}).{problem}")]
pub struct PromotionWindowError {
    /// Where the window was declared.
    pub config: WindowSource,
    /// Its index in that list.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The problem (`dtstart: ...`).
    pub problem: ScheduleError,
}

/// One window that matches the Stage, parsed.
#[derive(Clone, Debug)]
struct MatchedWindow {
    name: String,
    kind: PromotionWindowKind,
    source: WindowSource,
    schedule: Schedule,
}

impl MatchedWindow {
    fn label(&self) -> String {
        format!("{:?} ({})", self.name, self.source)
    }
}

/// The active intervals of one window over the searched range.
struct Activity {
    /// Merged, sorted, disjoint `[start, end)` intervals.
    intervals: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Known up to here (see [`crate::recurrence::Occurrences::complete_until`]).
    known_until: DateTime<Utc>,
}

impl Activity {
    fn active_at(&self, t: DateTime<Utc>) -> bool {
        let i = self.intervals.partition_point(|(_, end)| *end <= t);
        self.intervals.get(i).is_some_and(|(start, _)| *start <= t)
    }
}

/// The promotion windows that apply to one Stage.
#[derive(Clone, Debug, Default)]
pub struct PromotionWindows {
    windows: Vec<MatchedWindow>,
}

fn selector_matches(
    sel: Option<&PromotionPolicySelector>,
    name: &str,
    labels: Option<&IndexMap<String, String>>,
) -> bool {
    let Some(sel) = sel else {
        return true;
    };
    let empty = IndexMap::new();
    name_matches(&sel.name, name) && sel.label_selector().matches(labels.unwrap_or(&empty))
}

impl PromotionWindows {
    /// The windows of `project_config` and `cluster_config` whose selectors match
    /// `target`. Fails on the first matching window whose `dtstart`, `dtend` or `rrule`
    /// does not parse (manifest validation rejects those before).
    pub fn for_stage(
        project_config: Option<&ProjectConfig>,
        cluster_config: Option<&ClusterConfig>,
        target: &WindowTarget<'_>,
    ) -> Result<Self, PromotionWindowError> {
        let mut windows = Vec::new();
        let project_windows = project_config.into_iter().flat_map(|c| {
            c.spec
                .promotion_windows
                .iter()
                .enumerate()
                .map(|(i, w)| (WindowSource::ProjectConfig(c.metadata.name.clone()), i, w))
        });
        let cluster_windows = cluster_config.into_iter().flat_map(|c| {
            c.spec
                .promotion_windows
                .iter()
                .enumerate()
                .map(|(i, w)| (WindowSource::ClusterConfig, i, w))
        });
        for (source, index, w) in project_windows.chain(cluster_windows) {
            if !window_matches(w, &source, target) {
                continue;
            }
            let schedule = Schedule::parse(&w.dtstart, &w.dtend, &w.rrule).map_err(|mut e| {
                PromotionWindowError {
                    config: source.clone(),
                    index,
                    name: w.name.clone(),
                    problem: e.remove(0),
                }
            })?;
            windows.push(MatchedWindow {
                name: w.name.clone(),
                kind: w.kind,
                source,
                schedule,
            });
        }
        Ok(Self { windows })
    }

    /// Whether no window applies (the Stage is always open).
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// The names of the windows that apply, in declaration order (ProjectConfig first).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.windows.iter().map(|w| w.name.as_str())
    }

    /// Whether the Stage may be promoted at `now`.
    pub fn is_open_at(&self, now: DateTime<Utc>) -> bool {
        !self.status_at(now).closed
    }

    /// The status at `now`: closed or open, why, and the next change within
    /// [`SEARCH_HORIZON_DAYS`].
    pub fn status_at(&self, now: DateTime<Utc>) -> PromotionWindowStatus {
        if self.windows.is_empty() {
            return PromotionWindowStatus::default();
        }
        let horizon = now + TimeDelta::days(SEARCH_HORIZON_DAYS);
        let activity: Vec<Activity> = self
            .windows
            .iter()
            .map(|w| activity(&w.schedule, now, horizon))
            .collect();
        // A window too dense to expand even up to `now` cannot be judged: count it as
        // closing the schedule rather than guess.
        let unknown: Vec<&MatchedWindow> = self
            .windows
            .iter()
            .zip(&activity)
            .filter(|(_, a)| a.known_until <= now)
            .map(|(w, _)| w)
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(
                windows = %self.labels(&unknown),
                "promotion window recurrence too dense to evaluate"
            );
            return PromotionWindowStatus {
                closed: true,
                reason: format!(
                    "promotion window {} recurs too densely to evaluate",
                    self.labels(&unknown)
                ),
                ..PromotionWindowStatus::default()
            };
        }
        let search_end = activity
            .iter()
            .map(|a| a.known_until)
            .min()
            .unwrap_or(horizon)
            .min(horizon);
        let now_reason = self.closed_reason(&activity, now);
        let mut boundaries: Vec<DateTime<Utc>> = activity
            .iter()
            .flat_map(|a| a.intervals.iter().flat_map(|(s, e)| [*s, *e]))
            .filter(|t| *t > now && *t <= search_end)
            .collect();
        boundaries.sort_unstable();
        boundaries.dedup();
        let mut status = PromotionWindowStatus {
            closed: now_reason.is_some(),
            reason: now_reason.clone().unwrap_or_default(),
            ..PromotionWindowStatus::default()
        };
        for t in boundaries {
            let reason = self.closed_reason(&activity, t);
            match (&now_reason, reason) {
                (Some(_), None) => {
                    status.next_open = Some(t);
                    break;
                }
                (None, Some(why)) => {
                    status.next_close = Some(t);
                    status.next_close_reason = why;
                    break;
                }
                _ => {}
            }
        }
        status
    }

    /// `Some(why)` when the schedule is closed at `t`.
    fn closed_reason(&self, activity: &[Activity], t: DateTime<Utc>) -> Option<String> {
        let active = |kind: PromotionWindowKind| -> (Vec<&MatchedWindow>, usize) {
            let of_kind: Vec<(&MatchedWindow, &Activity)> = self
                .windows
                .iter()
                .zip(activity)
                .filter(|(w, _)| w.kind == kind)
                .collect();
            let total = of_kind.len();
            let active = of_kind
                .into_iter()
                .filter(|(_, a)| a.active_at(t))
                .map(|(w, _)| w)
                .collect();
            (active, total)
        };
        let (denying, _) = active(PromotionWindowKind::Deny);
        if !denying.is_empty() {
            let noun = if denying.len() == 1 {
                "window"
            } else {
                "windows"
            };
            return Some(format!(
                "promotions are denied by promotion {noun} {}",
                self.labels(&denying)
            ));
        }
        let (allowing, allow_total) = active(PromotionWindowKind::Allow);
        if allow_total > 0 && allowing.is_empty() {
            let all: Vec<&MatchedWindow> = self
                .windows
                .iter()
                .filter(|w| w.kind == PromotionWindowKind::Allow)
                .collect();
            return Some(format!(
                "outside every Allow promotion window: {}",
                self.labels(&all)
            ));
        }
        None
    }

    fn labels(&self, windows: &[&MatchedWindow]) -> String {
        windows
            .iter()
            .map(|w| w.label())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether a window's selectors match the target; a ProjectConfig's windows never have a
/// `projectSelector` (validation rejects it) and one there is ignored.
fn window_matches(w: &PromotionWindow, source: &WindowSource, target: &WindowTarget<'_>) -> bool {
    let project_ok = match source {
        WindowSource::ClusterConfig => selector_matches(
            w.project_selector.as_ref(),
            target.project,
            target.project_labels,
        ),
        WindowSource::ProjectConfig(_) => true,
    };
    project_ok && selector_matches(w.stage_selector.as_ref(), target.stage, target.stage_labels)
}

/// The merged active intervals of a schedule over `[now, horizon)`.
fn activity(schedule: &Schedule, now: DateTime<Utc>, horizon: DateTime<Utc>) -> Activity {
    let occ = schedule.occurrences(now, horizon);
    let mut intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut sorted = occ.intervals;
    sorted.sort_unstable();
    for (s, e) in sorted {
        match intervals.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => intervals.push((s, e)),
        }
    }
    Activity {
        intervals,
        known_until: occ.complete_until,
    }
}

#[cfg(test)]
#[path = "promotion_windows_tests.rs"]
mod tests;
