//! What an analysis run found: the run's phase, each metric's phase and counters, and
//! its latest measurements; [`AnalysisRunReport::verification_info`] turns it into the
//! Stage's [`VerificationInfo`].

use chrono::{DateTime, Utc};
use kargo_core::pipeline::{VerificationInfo, VerificationPhase};
use serde::{Deserialize, Serialize};

/// The phase of a measurement, a metric or a run (Argo Rollouts' `AnalysisPhase`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AnalysisPhase {
    /// Nothing measured yet.
    Pending,
    /// Measuring.
    Running,
    /// Good.
    Successful,
    /// Neither condition decided (`inconclusiveLimit` exceeded).
    Inconclusive,
    /// The measurements could not be taken (`consecutiveErrorLimit` exceeded).
    Error,
    /// Bad (`failureLimit` exceeded).
    Failed,
}

impl AnalysisPhase {
    /// Whether the phase is final.
    pub fn is_completed(self) -> bool {
        !matches!(self, AnalysisPhase::Pending | AnalysisPhase::Running)
    }

    /// Argo Rollouts' order of completed phases, best first: Successful, Inconclusive,
    /// Error, Failed.
    pub(crate) fn severity(self) -> u8 {
        match self {
            AnalysisPhase::Pending => 0,
            AnalysisPhase::Running => 1,
            AnalysisPhase::Successful => 2,
            AnalysisPhase::Inconclusive => 3,
            AnalysisPhase::Error => 4,
            AnalysisPhase::Failed => 5,
        }
    }

    /// The Stage verification phase this run phase gives.
    pub fn verification_phase(self) -> VerificationPhase {
        match self {
            AnalysisPhase::Successful => VerificationPhase::Successful,
            AnalysisPhase::Failed => VerificationPhase::Failed,
            AnalysisPhase::Inconclusive => VerificationPhase::Inconclusive,
            AnalysisPhase::Error | AnalysisPhase::Pending | AnalysisPhase::Running => {
                VerificationPhase::Error
            }
        }
    }
}

impl std::fmt::Display for AnalysisPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One measurement of a metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// `Successful`, `Failed`, `Inconclusive` or `Error`.
    pub phase: AnalysisPhase,
    /// The measured value as text (the web result as JSON, a Prometheus vector as
    /// `[0.99,0.98]`), when one was read.
    pub value: Option<String>,
    /// Why the measurement is an `Error`.
    pub message: Option<String>,
    /// When it was taken.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

/// One metric's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricReport {
    /// The metric's name.
    pub name: String,
    /// The template it comes from (`AnalysisTemplate demo/health`).
    pub template: String,
    /// Its provider (`web`, `prometheus`).
    pub provider: String,
    /// Its phase.
    pub phase: AnalysisPhase,
    /// Why it is not `Successful` (`failed (2) > failureLimit (1)`), empty otherwise.
    pub message: String,
    /// Measurements that were not errors.
    pub count: u32,
    /// `Successful` measurements.
    pub successful: u32,
    /// `Failed` measurements.
    pub failed: u32,
    /// `Inconclusive` measurements.
    pub inconclusive: u32,
    /// `Error` measurements.
    pub error: u32,
    /// `Error` measurements since the last other one.
    pub consecutive_error: u32,
    /// A dry-run metric: measured and reported, but its phase does not count.
    pub dry_run: bool,
    /// The latest measurements (at most [`MAX_MEASUREMENTS`]), oldest first.
    pub measurements: Vec<Measurement>,
}

/// How many measurements a [`MetricReport`] keeps (Argo Rollouts keeps 10 by default).
pub const MAX_MEASUREMENTS: usize = 10;

/// The outcome of one analysis run (an `AnalysisRun` in Argo Rollouts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRunReport {
    /// The run's name: `<stage>.<first 7 characters of the collection ID>`.
    pub name: String,
    /// The run's phase: the worst phase of its (non-dry-run) metrics.
    pub phase: AnalysisPhase,
    /// Why the run is not `Successful` (`Metric "error-rate" assessed Failed due to
    /// failed (2) > failureLimit (1)`), or a problem that kept it from running (a missing
    /// argument).
    pub message: String,
    /// Each metric, in template order.
    pub metrics: Vec<MetricReport>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
}

impl AnalysisRunReport {
    /// One line per metric: `error-rate: Failed (count 3: 1 successful, 2 failed, 0
    /// inconclusive, 0 errors; last value [0.5])`, after the run's phase and message.
    pub fn summary(&self) -> String {
        let mut out = format!("AnalysisRun {}: {}", self.name, self.phase);
        if !self.message.is_empty() {
            out.push_str(": ");
            out.push_str(&self.message);
        }
        for m in &self.metrics {
            out.push_str(&format!(
                "\n- metric {:?} ({}): {}{} (count {}: {} successful, {} failed, {} inconclusive, {} errors",
                m.name,
                m.provider,
                m.phase,
                if m.dry_run { ", dry run" } else { "" },
                m.count,
                m.successful,
                m.failed,
                m.inconclusive,
                m.error
            ));
            if let Some(last) = m.measurements.last() {
                if let Some(v) = &last.value {
                    out.push_str(&format!("; last value {}", clip(v, 200)));
                }
                if let Some(msg) = &last.message {
                    out.push_str(&format!("; last error: {}", clip(msg, 300)));
                }
            }
            out.push(')');
        }
        out
    }

    /// The Stage's verification record of this run: its phase and [`summary`](Self::summary).
    pub fn verification_info(&self) -> VerificationInfo {
        VerificationInfo {
            phase: self.phase.verification_phase(),
            message: self.summary(),
            finished_at: self.finished_at,
        }
    }

    /// The metric called `name`.
    pub fn metric(&self, name: &str) -> Option<&MetricReport> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}
