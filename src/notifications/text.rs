//! The default message of each event type, for routers without an `output`.

use kargo_core::events::EventType;
use serde_json::Value as Json;

fn field<'a>(payload: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut v = payload;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// The Freight an event is about: its alias, else its name.
fn freight(kind: EventType, payload: &Json) -> String {
    let base: &[&str] = if kind.is_promotion() {
        &["freight"]
    } else {
        &[]
    };
    let get = |key: &str| {
        let mut path = base.to_vec();
        path.push(key);
        field(payload, &path).map(str::to_owned)
    };
    get("alias")
        .or_else(|| get("name"))
        .unwrap_or_else(|| "(unknown)".to_owned())
}

/// One line saying what happened, e.g. `Promotion prod.01abc of Freight gentle-fox to Stage
/// prod succeeded`.
pub(super) fn summary(kind: EventType, payload: &Json) -> String {
    let stage = field(payload, &["stageName"]).unwrap_or("(none)");
    let freight = freight(kind, payload);
    let promotion = || {
        format!(
            "Promotion {} of Freight {freight} to Stage {stage}",
            field(payload, &["name"]).unwrap_or("(unnamed)")
        )
    };
    let verification = || format!("Verification of Freight {freight} in Stage {stage}");
    match kind {
        EventType::PromotionCreated => format!("{} was created", promotion()),
        EventType::PromotionSucceeded => format!("{} succeeded", promotion()),
        EventType::PromotionFailed => format!("{} failed", promotion()),
        EventType::PromotionErrored => format!("{} errored", promotion()),
        EventType::PromotionAborted => format!("{} was aborted", promotion()),
        EventType::PromotionDiscarded => format!("{} was discarded", promotion()),
        EventType::FreightCreated => format!(
            "Freight {freight} was created by Warehouse {}",
            field(payload, &["warehouse"]).unwrap_or("(unknown)")
        ),
        EventType::FreightApproved => format!("Freight {freight} was approved for Stage {stage}"),
        EventType::FreightVerificationSucceeded => format!("{} succeeded", verification()),
        EventType::FreightVerificationFailed => format!("{} failed", verification()),
        EventType::FreightVerificationErrored => format!("{} errored", verification()),
        EventType::FreightVerificationAborted => format!("{} was aborted", verification()),
        EventType::FreightVerificationInconclusive => {
            format!("{} was inconclusive", verification())
        }
        EventType::FreightVerificationUnknown => {
            format!("{} ended in an unknown state", verification())
        }
    }
}

/// The default message text: `[project] summary`, then the event's message and actor.
pub(super) fn default_text(kind: EventType, payload: &Json) -> String {
    let project = field(payload, &["project"]).unwrap_or_default();
    let mut text = format!("[{project}] {}.", summary(kind, payload));
    if let Some(m) = field(payload, &["message"]) {
        text.push('\n');
        text.push_str(m);
    }
    if let Some(a) = field(payload, &["actor"]) {
        text.push_str(&format!("\nBy: {a}"));
    }
    text
}

/// The default mail subject: `[Kargo] project: summary`.
pub(super) fn default_subject(kind: EventType, payload: &Json) -> String {
    let project = field(payload, &["project"]).unwrap_or_default();
    format!("[Kargo] {project}: {}", summary(kind, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_text() {
        let p = serde_json::json!({
            "project": "demo", "name": "prod.01", "stageName": "prod",
            "freight": {"alias": "gentle-fox"}, "alias": "calm-owl", "warehouse": "app",
            "message": "step 2 failed", "actor": null,
        });
        for t in EventType::ALL {
            let text = default_text(t, &p);
            assert!(text.starts_with("[demo] "), "{text}");
        }
        assert_eq!(
            default_text(EventType::PromotionFailed, &p),
            "[demo] Promotion prod.01 of Freight gentle-fox to Stage prod failed.\nstep 2 failed"
        );
        assert_eq!(
            summary(EventType::FreightCreated, &p),
            "Freight calm-owl was created by Warehouse app"
        );
    }
}
