//! A Stage: its card, its actions (promote, roll back, re-verify, hold or resume, abort
//! the running promotion), its promotions (who, when, Freight, result, rollback or not),
//! its verifications and its Freight history with re-promote.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use kargo_core::pipeline::PromotionTrigger;

use super::Ui;
use super::html::{action_button, ago, artifact_list, badge, esc, url};
use super::pipeline_page::stage_actions;
use super::stage_summary::{NewestFreight, summarize};
use crate::server::access::Action;
use crate::server::views::artifacts;

/// The tone of a promotion's phase.
pub(super) fn phase_tone(phase: kargo_core::runner::PromotionPhase) -> &'static str {
    use kargo_core::runner::PromotionPhase as P;
    match phase {
        P::Succeeded => "ok",
        P::Failed | P::Errored => "bad",
        P::Running | P::Pending => "busy",
        P::Aborted => "warn",
    }
}

pub(super) async fn stage(
    State(ui): State<Arc<Ui>>,
    UrlPath((project, name)): UrlPath<(String, String)>,
    original: OriginalUri,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let r = match ui.request(&original, &uri, &headers, Some(&project)) {
        Ok(r) => r,
        Err(page) => return page,
    };
    let c = ui.handle.controller();
    let Some(spec) = c.manifests().stage(&project, &name) else {
        return ui.error_page(
            &r,
            StatusCode::NOT_FOUND,
            &format!("stage {name:?} not found"),
        );
    };
    let state = c.snapshot().await.unwrap_or_default();
    let now = c.now();
    let pipeline = c.pipeline();
    let newest = NewestFreight::of(&state);
    let soaks = pipeline.soak_deadlines(&state, now);
    let sum = summarize(&pipeline, spec, &state, &newest, &soaks, now);
    let st = state.stages.get(&name);
    let base = esc(&r.base);
    let pu = url(&project);
    let nu = url(&name);
    let api = format!("/v1beta1/projects/{pu}/stages/{nu}");
    let mut actions = stage_actions(&r, &project, &name, &sum, spec.is_control_flow());
    if r.may(Action::Rollback, &project, Some(&name))
        && st.is_some_and(|s| s.freight_history.len() > 1)
    {
        actions.push_str(&action_button(
            "Roll back",
            "POST",
            &format!("{api}/rollback"),
            "{}",
            "promotion",
            "danger rollback",
        ));
    }
    if spec.spec.verification.is_some()
        && r.may(Action::Reverify, &project, Some(&name))
        && !sum.current.is_empty()
    {
        actions.push_str(&action_button(
            "Re-verify",
            "POST",
            &format!("{api}/reverify"),
            "{}",
            "reload",
            "secondary reverify",
        ));
    }
    if let Some((promotion, _, _)) = &sum.running
        && r.may(Action::Abort, &project, Some(&name))
    {
        actions.push_str(&action_button(
            "Abort",
            "POST",
            &format!("/v1beta1/projects/{pu}/promotions/{}/abort", url(promotion)),
            "{}",
            "reload",
            "danger abort",
        ));
    }
    let mut main = format!(
        "<div class=\"toolbar\"><h1>{n}</h1>{badge}<span class=\"spacer\"></span>{actions}</div><dl class=\"facts\">",
        n = esc(&name),
        badge = badge(sum.phase.tone(), sum.phase.word()),
    );
    let freight: Vec<String> = sum
        .current
        .iter()
        .map(|(alias, _, arts)| {
            format!(
                "<b class=\"freight-alias\">{}</b>{}",
                esc(alias),
                artifact_list(arts)
            )
        })
        .collect();
    let _ = write!(
        main,
        "<dt>Freight</dt><dd>{}</dd><dt>verification</dt><dd>{}</dd><dt>auto-promotion</dt><dd>{}</dd><dt>waits for</dt><dd>{}</dd><dt>promoted</dt><dd>{}</dd></dl>",
        if freight.is_empty() {
            "none yet".to_owned()
        } else {
            freight.join("")
        },
        match (&sum.verification, spec.spec.verification.is_some()) {
            (Some((p, m)), _) => format!("{p:?} {}", esc(m)),
            (None, true) => "pending".to_owned(),
            (None, false) => "none configured (verified on promotion)".to_owned(),
        },
        esc(&sum.auto_promotion),
        if sum.waits.is_empty() {
            "nothing".to_owned()
        } else {
            esc(&sum.waits.join("; "))
        },
        sum.promoted_at
            .map(|t| ago(t, now))
            .unwrap_or_else(|| "never".to_owned()),
    );
    if let Some(s) = st
        && let Some(a) = &s.abort_requested
    {
        let _ = write!(
            main,
            "<p class=\"badge warn\">abort of {} requested by {}</p>",
            esc(&a.promotion),
            esc(a.actor.as_deref().unwrap_or("someone"))
        );
    }

    // Promotion windows and approvals: why the Stage waits, and the answers it takes.
    let window = c.promotion_window_status_at(&name, now);
    if window.closed {
        let _ = write!(
            main,
            "<p class=\"badge warn window-closed\">promotion window closed: {}{}</p>",
            esc(&window.reason),
            window
                .next_open
                .map(|t| format!(
                    "; opens {}",
                    esc(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                ))
                .unwrap_or_default()
        );
    }
    if let Some(head) = st.and_then(|s| s.queue.first())
        && let Some(status) = pipeline.approval_status(head, now)
        && !status.satisfied()
    {
        let _ = write!(
            main,
            "<p class=\"badge warn awaiting-approval\">{} waits for approval: {} of {}{}</p>",
            esc(&head.name),
            status.approved_by.len(),
            status.required,
            if status.approved_by.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&status.approved_by.join(", ")))
            }
        );
        if r.may(Action::Approve, &project, Some(&name)) {
            let path = format!("{api}/promotions/{}", url(&head.name));
            main.push_str(&action_button(
                "Approve",
                "POST",
                &format!("{path}/approve"),
                "{}",
                "reload",
                "approve-promotion",
            ));
            main.push_str(&action_button(
                "Reject",
                "POST",
                &format!("{path}/reject"),
                "{}",
                "reload",
                "danger reject-promotion",
            ));
        }
    }

    // Promotions: running and queued first, then finished, newest first.
    main.push_str("<h2>Promotions</h2><table class=\"promotions\"><tr><th>promotion</th><th>Freight</th><th>result</th><th>by</th><th>when</th><th>rollback</th></tr>");
    let alias_of = |id: &kargo_core::freight::FreightId| {
        state
            .freight
            .get(id)
            .and_then(|f| f.freight.alias.clone())
            .unwrap_or_else(|| id.short().to_owned())
    };
    let row = |main: &mut String,
               promotion: &str,
               freight: &str,
               result: String,
               by: &str,
               when: String,
               rollback: bool| {
        let _ = write!(
            main,
            "<tr data-promotion=\"{p}\"><td><a href=\"{base}/ui/projects/{pu}/promotions/{pl}\">{p}</a></td><td>{f}</td><td>{result}</td><td>{by}</td><td>{when}</td><td>{rb}</td></tr>",
            p = esc(promotion),
            pl = url(promotion),
            f = esc(freight),
            by = esc(by),
            rb = if rollback { "yes" } else { "" },
        );
    };
    if let Some(s) = st {
        for (i, p) in s.pending().enumerate() {
            let word = if i == 0 && s.current_promotion.is_some() {
                "Running"
            } else {
                "Pending"
            };
            row(
                &mut main,
                &p.name,
                &alias_of(&p.freight),
                badge("busy", word),
                p.actor.as_deref().unwrap_or("auto-promotion"),
                ago(p.requested_at, now),
                p.trigger == PromotionTrigger::Rollback,
            );
        }
    }
    for p in state
        .promotions
        .iter()
        .rev()
        .filter(|p| p.stage == name)
        .take(50)
    {
        row(
            &mut main,
            &p.name,
            &alias_of(&p.freight),
            format!(
                "{} <span class=\"muted\">{}</span>",
                badge(phase_tone(p.phase), &p.phase.to_string()),
                esc(&p.message)
            ),
            p.actor.as_deref().unwrap_or("auto-promotion"),
            ago(p.finished_at, now),
            p.trigger == PromotionTrigger::Rollback,
        );
    }
    main.push_str("</table>");

    // Verifications of the Freight it holds.
    if let Some(entry) = st.and_then(|s| s.freight_history.first())
        && !entry.verification_history.is_empty()
    {
        main.push_str("<h2>Verifications</h2><table class=\"verifications\"><tr><th>result</th><th>message</th><th>finished</th></tr>");
        for v in entry.verification_history.iter().rev() {
            let tone = match v.phase {
                kargo_core::pipeline::VerificationPhase::Successful => "ok",
                kargo_core::pipeline::VerificationPhase::Failed
                | kargo_core::pipeline::VerificationPhase::Error => "bad",
                _ => "warn",
            };
            let _ = write!(
                main,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                badge(tone, &format!("{:?}", v.phase)),
                esc(&v.message),
                ago(v.finished_at, now)
            );
        }
        main.push_str("</table>");
    }

    // Freight history with re-promote.
    main.push_str("<h2>Freight history</h2><table class=\"history\"><tr><th>Freight</th><th>artifacts</th><th>promoted</th><th></th></tr>");
    let may_promote = r.may(Action::Promote, &project, Some(&name)) && !spec.is_control_flow();
    for (i, h) in st
        .map(|s| s.freight_history.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        for reference in h.collection.references() {
            let repromote = if may_promote && i > 0 {
                format!(
                    "<a class=\"button secondary repromote\" href=\"{base}/ui/projects/{pu}/stages/{nu}/promote?freight={}\">Promote again</a>",
                    url(reference.name.as_str())
                )
            } else if i == 0 {
                "<span class=\"muted\">current</span>".to_owned()
            } else {
                String::new()
            };
            let _ = write!(
                main,
                "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{repromote}</td></tr>",
                esc(&alias_of(&reference.name)),
                artifact_list(&artifacts(reference)),
                ago(h.promoted_at, now),
            );
        }
    }
    main.push_str("</table>");
    let frame = r.frame(Some(&project), "Stage,Promotion");
    r.render(&frame, &name, &main)
}
