//! One analysis run: measures each metric when it is due (after `initialDelay`, then
//! every `interval`, or 10 s after an `Error`), assesses it after each measurement, and
//! stops when every metric is complete or one is `Failed`, `Error` or `Inconclusive` (then
//! the others are terminated, as Argo Rollouts terminates a run).
//!
//! A metric's phase (Argo Rollouts' `assessMetricStatus`): `Failed` when `failed >
//! failureLimit`, `Inconclusive` when `inconclusive > inconclusiveLimit`, `Error` when
//! `consecutiveErrors > consecutiveErrorLimit`, `Successful` when its effective count of
//! (non-error) measurements is reached or the run is terminating. A negative limit never
//! trips. The run's phase is the worst phase of its metrics that are not dry runs
//! (Successful < Inconclusive < Error < Failed).

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kargo_core::expr::ExprEngine;

use super::clock::AnalysisClock;
use super::measure::{HttpClients, Measured};
use super::report::{
    AnalysisPhase, AnalysisRunReport, MAX_MEASUREMENTS, Measurement, MetricReport,
};
use super::template::{MetricSpec, ProviderSpec};
use super::{AnalysisOptions, provider_prometheus, provider_web};

/// A metric of a run.
#[derive(Clone, Debug)]
pub(crate) struct RunMetric {
    pub spec: MetricSpec,
    pub template: String,
    pub dry_run: bool,
}

struct MetricState {
    report: MetricReport,
    next_at: Option<DateTime<Utc>>,
    measurements: VecDeque<Measurement>,
    taken: u32,
}

fn limit_exceeded(n: u32, limit: i64) -> bool {
    limit >= 0 && i64::from(n) > limit
}

/// Assesses a metric (see the module documentation); sets its phase and message.
fn assess(spec: &MetricSpec, st: &mut MetricState, terminating: bool) {
    let r = &mut st.report;
    if r.phase.is_completed() {
        return;
    }
    if st.taken == 0 {
        r.phase = if terminating {
            AnalysisPhase::Successful
        } else {
            AnalysisPhase::Pending
        };
        return;
    }
    let (phase, message) = if limit_exceeded(r.failed, spec.failure_limit) {
        (
            AnalysisPhase::Failed,
            format!(
                "failed ({}) > failureLimit ({})",
                r.failed, spec.failure_limit
            ),
        )
    } else if limit_exceeded(r.inconclusive, spec.inconclusive_limit) {
        (
            AnalysisPhase::Inconclusive,
            format!(
                "inconclusive ({}) > inconclusiveLimit ({})",
                r.inconclusive, spec.inconclusive_limit
            ),
        )
    } else if limit_exceeded(r.consecutive_error, spec.consecutive_error_limit) {
        (
            AnalysisPhase::Error,
            format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({})",
                r.consecutive_error, spec.consecutive_error_limit
            ),
        )
    } else if spec.count.is_some_and(|c| r.count >= c) || terminating {
        (AnalysisPhase::Successful, String::new())
    } else {
        (AnalysisPhase::Running, String::new())
    };
    r.phase = phase;
    r.message = message;
}

fn redact(text: String, secrets: &[String]) -> String {
    let mut t = text;
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        if t.contains(s.as_str()) {
            t = t.replace(s.as_str(), "*****");
        }
    }
    t
}

async fn measure(clients: &HttpClients, engine: &ExprEngine, spec: &MetricSpec) -> Measured {
    match &spec.provider {
        ProviderSpec::Web(w) => provider_web::measure(clients, engine, spec, w).await,
        ProviderSpec::Prometheus(p) => provider_prometheus::measure(clients, engine, spec, p).await,
    }
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Runs the metrics to a verdict.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    name: String,
    metrics: Vec<RunMetric>,
    clock: &dyn AnalysisClock,
    options: &AnalysisOptions,
    clients: &HttpClients,
    engine: &ExprEngine,
    secrets: &[String],
) -> AnalysisRunReport {
    let started_at = clock.now();
    let deadline = options.max_duration.map(|d| after(started_at, d));
    let mut states: Vec<MetricState> = metrics
        .iter()
        .map(|m| MetricState {
            report: MetricReport {
                name: m.spec.name.clone(),
                template: m.template.clone(),
                provider: m.spec.provider.name().to_owned(),
                phase: AnalysisPhase::Pending,
                message: String::new(),
                count: 0,
                successful: 0,
                failed: 0,
                inconclusive: 0,
                error: 0,
                consecutive_error: 0,
                dry_run: m.dry_run,
                measurements: Vec::new(),
            },
            next_at: Some(after(started_at, m.spec.initial_delay.unwrap_or_default())),
            measurements: VecDeque::new(),
            taken: 0,
        })
        .collect();
    let mut terminating = false;
    let mut note = String::new();
    loop {
        for (m, st) in metrics.iter().zip(states.iter_mut()) {
            assess(&m.spec, st, terminating);
        }
        let bad = states.iter().any(|s| {
            !s.report.dry_run
                && matches!(
                    s.report.phase,
                    AnalysisPhase::Failed | AnalysisPhase::Error | AnalysisPhase::Inconclusive
                )
        });
        if bad && !terminating {
            terminating = true;
            continue;
        }
        if states.iter().all(|s| s.report.phase.is_completed()) {
            break;
        }
        let due = states
            .iter()
            .filter(|s| !s.report.phase.is_completed())
            .filter_map(|s| s.next_at)
            .min();
        let Some(due) = due else {
            terminating = true;
            continue;
        };
        if let Some(deadline) = deadline
            && due > deadline
        {
            if let Some(max) = options.max_duration {
                note = format!(
                    "the run was terminated after its time limit of {}s",
                    max.as_secs()
                );
            }
            tracing::info!(run = %name, "analysis run reached its time limit: terminating it");
            terminating = true;
            continue;
        }
        let now = clock.now();
        if due > now
            && let Ok(wait) = (due - now).to_std()
        {
            clock.sleep(wait).await;
        }
        // The metrics due now are measured together, as Argo Rollouts does.
        let now = clock.now();
        let due: Vec<usize> = states
            .iter()
            .enumerate()
            .filter(|(_, st)| {
                !st.report.phase.is_completed() && st.next_at.is_some_and(|t| t <= now)
            })
            .map(|(i, _)| i)
            .collect();
        let at = clock.now();
        let results = futures::future::join_all(
            due.iter()
                .filter_map(|i| metrics.get(*i))
                .map(|m| measure(clients, engine, &m.spec)),
        )
        .await;
        let finished = clock.now();
        for (i, measured) in due.into_iter().zip(results) {
            let (Some(m), Some(st)) = (metrics.get(i), states.get_mut(i)) else {
                continue;
            };
            let r = &mut st.report;
            match measured.phase {
                AnalysisPhase::Successful => r.successful += 1,
                AnalysisPhase::Failed => r.failed += 1,
                AnalysisPhase::Inconclusive => r.inconclusive += 1,
                _ => r.error += 1,
            }
            if measured.phase == AnalysisPhase::Error {
                r.consecutive_error += 1;
            } else {
                r.count += 1;
                r.consecutive_error = 0;
            }
            st.taken += 1;
            tracing::debug!(
                run = %name, metric = %m.spec.name, phase = %measured.phase,
                "analysis measurement"
            );
            st.next_at = if measured.phase == AnalysisPhase::Error {
                Some(after(finished, options.error_retry_interval))
            } else {
                m.spec.interval.map(|i| after(finished, i))
            };
            st.measurements.push_back(Measurement {
                phase: measured.phase,
                value: measured.value.map(|v| redact(v, secrets)),
                message: measured.message.map(|v| redact(v, secrets)),
                started_at: at,
                finished_at: finished,
            });
            while st.measurements.len() > MAX_MEASUREMENTS {
                st.measurements.pop_front();
            }
        }
    }
    let mut phase = AnalysisPhase::Successful;
    let mut message = String::new();
    for st in &states {
        let r = &st.report;
        if r.dry_run {
            continue;
        }
        if r.phase.severity() > phase.severity() {
            phase = r.phase;
            message = if r.message.is_empty() {
                String::new()
            } else {
                format!(
                    "Metric {:?} assessed {} due to {}",
                    r.name, r.phase, r.message
                )
            };
        }
    }
    if !note.is_empty() {
        message = if message.is_empty() {
            note
        } else {
            format!("{message}; {note}")
        };
    }
    let metrics = states
        .into_iter()
        .map(|mut st| {
            st.report.measurements = st.measurements.into_iter().collect();
            st.report
        })
        .collect();
    AnalysisRunReport {
        name,
        phase,
        message,
        metrics,
        started_at,
        finished_at: clock.now(),
    }
}
