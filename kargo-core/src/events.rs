//! The events of a project's pipeline, with Kargo's event types and payload fields (its
//! event reference: common fields `project`, `actor`, `message`, `id`; Freight fields;
//! Promotion fields; Freight verification fields), and the [`EventSink`] they are handed to.
//!
//! [`Event::payload`] is the JSON a notification channel, a router's `when` filter and a
//! message template see as `event`: Kargo's payload, plus `type` and `time`.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::freight::Freight;

/// Kargo's event types (the reason of the Kubernetes Event it records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// A promotion was created (queued).
    PromotionCreated,
    /// A promotion completed successfully.
    PromotionSucceeded,
    /// A promotion failed (a step failed).
    PromotionFailed,
    /// A promotion hit an unexpected error.
    PromotionErrored,
    /// A promotion was aborted before it completed.
    PromotionAborted,
    /// A promotion that never started was removed, with the reason it will not run.
    PromotionDiscarded,
    /// A Warehouse (or a person) created Freight.
    FreightCreated,
    /// Freight was approved for a Stage by hand.
    FreightApproved,
    /// Verification of Freight in a Stage succeeded.
    FreightVerificationSucceeded,
    /// Verification of Freight in a Stage failed.
    FreightVerificationFailed,
    /// Verification of Freight in a Stage hit an error.
    FreightVerificationErrored,
    /// Verification of Freight in a Stage was aborted.
    FreightVerificationAborted,
    /// Verification of Freight in a Stage was inconclusive.
    FreightVerificationInconclusive,
    /// Verification of Freight in a Stage ended in an unknown state.
    FreightVerificationUnknown,
}

impl EventType {
    /// Every type, in Kargo's order.
    pub const ALL: [EventType; 14] = [
        EventType::PromotionCreated,
        EventType::PromotionSucceeded,
        EventType::PromotionFailed,
        EventType::PromotionErrored,
        EventType::PromotionAborted,
        EventType::PromotionDiscarded,
        EventType::FreightCreated,
        EventType::FreightApproved,
        EventType::FreightVerificationSucceeded,
        EventType::FreightVerificationFailed,
        EventType::FreightVerificationErrored,
        EventType::FreightVerificationAborted,
        EventType::FreightVerificationInconclusive,
        EventType::FreightVerificationUnknown,
    ];

    /// The type's name, as Kargo spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PromotionCreated => "PromotionCreated",
            EventType::PromotionSucceeded => "PromotionSucceeded",
            EventType::PromotionFailed => "PromotionFailed",
            EventType::PromotionErrored => "PromotionErrored",
            EventType::PromotionAborted => "PromotionAborted",
            EventType::PromotionDiscarded => "PromotionDiscarded",
            EventType::FreightCreated => "FreightCreated",
            EventType::FreightApproved => "FreightApproved",
            EventType::FreightVerificationSucceeded => "FreightVerificationSucceeded",
            EventType::FreightVerificationFailed => "FreightVerificationFailed",
            EventType::FreightVerificationErrored => "FreightVerificationErrored",
            EventType::FreightVerificationAborted => "FreightVerificationAborted",
            EventType::FreightVerificationInconclusive => "FreightVerificationInconclusive",
            EventType::FreightVerificationUnknown => "FreightVerificationUnknown",
        }
    }

    /// The type named `name` (Kargo's spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Whether this is a promotion event (its payload carries Promotion fields) rather
    /// than a Freight event.
    pub fn is_promotion(self) -> bool {
        self.as_str().starts_with("Promotion")
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The promotion an event is about (Kargo's Promotion fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionInfo {
    /// The promotion's name.
    pub name: String,
    /// When the promotion was created.
    pub create_time: DateTime<Utc>,
    /// Whether the promotion is a rollback.
    pub rollback: bool,
    /// Argo CD applications the promotion's steps named, as `(namespace, name)`.
    pub applications: Vec<(String, String)>,
    /// `PromotionSucceeded` only: whether verification of the Freight is still to come.
    pub verification_pending: Option<bool>,
}

/// The verification an event is about (Kargo's Freight verification fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerificationInfo {
    /// When the verification started.
    pub start_time: Option<DateTime<Utc>>,
    /// When it finished.
    pub finish_time: Option<DateTime<Utc>>,
    /// The analysis run that verified, if any.
    pub analysis_run_name: Option<String>,
    /// The promotion whose success started the verification, if any.
    pub triggered_by_promotion: Option<String>,
}

/// One event of a project's pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's type.
    pub kind: EventType,
    /// A unique identifier.
    pub id: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The project.
    pub project: String,
    /// Who or what caused it (a person, or the controller for what it did by itself).
    pub actor: Option<String>,
    /// A human-readable description.
    pub message: String,
    /// The Stage it concerns, if any.
    pub stage: Option<String>,
    /// The Freight it concerns, if any.
    pub freight: Option<Freight>,
    /// For promotion events: the promotion.
    pub promotion: Option<PromotionInfo>,
    /// For verification events: the verification.
    pub verification: Option<VerificationInfo>,
}

fn time(t: &DateTime<Utc>) -> Json {
    Json::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl Event {
    /// A new event with a fresh `id` (the type, the time and a process-wide counter).
    pub fn new(
        kind: EventType,
        time: DateTime<Utc>,
        project: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let project = project.into();
        let id = format!(
            "{project}.{}.{}.{n}",
            kind.as_str(),
            time.timestamp_nanos_opt().unwrap_or_default()
        );
        Event {
            kind,
            id,
            time,
            project,
            actor: None,
            message: message.into(),
            stage: None,
            freight: None,
            promotion: None,
            verification: None,
        }
    }

    /// Kargo's Freight fields of `freight` in `stage`.
    fn freight_fields(freight: &Freight, stage: Option<&str>) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert("name".into(), Json::String(freight.name.to_string()));
        m.insert(
            "stageName".into(),
            Json::String(stage.unwrap_or_default().to_owned()),
        );
        if let Some(t) = &freight.discovered_at {
            m.insert("createTime".into(), time(t));
        }
        if let Some(a) = &freight.alias {
            m.insert("alias".into(), Json::String(a.clone()));
        }
        m.insert(
            "warehouse".into(),
            Json::String(freight.origin.name.clone()),
        );
        let commits: Vec<Json> = freight
            .commits
            .iter()
            .map(|c| {
                json!({
                    "repoURL": c.repo_url, "id": c.id, "branch": c.branch, "tag": c.tag,
                    "message": c.message, "author": c.author, "committer": c.committer,
                })
            })
            .collect();
        let images: Vec<Json> = freight
            .images
            .iter()
            .map(|i| {
                json!({
                    "repoURL": i.repo_url, "tag": i.tag, "digest": i.digest,
                    "annotations": i.annotations,
                })
            })
            .collect();
        let charts: Vec<Json> = freight
            .charts
            .iter()
            .map(|c| json!({"repoURL": c.repo_url, "name": c.name, "version": c.version}))
            .collect();
        let artifacts: Vec<Json> = freight
            .artifacts
            .iter()
            .map(|a| serde_json::to_value(a).unwrap_or(Json::Null))
            .collect();
        m.insert("commits".into(), Json::Array(commits));
        m.insert("images".into(), Json::Array(images));
        m.insert("charts".into(), Json::Array(charts));
        m.insert("artifacts".into(), Json::Array(artifacts));
        m
    }

    /// The event as a notification sees it (`event` in a router's `when` and in message
    /// templates): Kargo's payload (common fields, then the Promotion fields of a
    /// promotion event, or the Freight fields, with the verification fields, of a Freight
    /// event), plus `type` and `time`.
    pub fn payload(&self) -> Json {
        let mut m = Map::new();
        m.insert("type".into(), Json::String(self.kind.as_str().to_owned()));
        m.insert("id".into(), Json::String(self.id.clone()));
        m.insert("time".into(), time(&self.time));
        m.insert("project".into(), Json::String(self.project.clone()));
        m.insert(
            "actor".into(),
            self.actor.clone().map(Json::String).unwrap_or(Json::Null),
        );
        m.insert("message".into(), Json::String(self.message.clone()));
        let stage = self.stage.as_deref();
        if self.kind.is_promotion() {
            if let Some(p) = &self.promotion {
                m.insert("name".into(), Json::String(p.name.clone()));
                m.insert("createTime".into(), time(&p.create_time));
                m.insert("rollback".into(), Json::Bool(p.rollback));
                m.insert(
                    "applications".into(),
                    Json::Array(
                        p.applications
                            .iter()
                            .map(|(ns, name)| json!({"namespace": ns, "name": name}))
                            .collect(),
                    ),
                );
                if let Some(v) = p.verification_pending {
                    m.insert("verificationPending".into(), Json::Bool(v));
                }
            }
            m.insert(
                "stageName".into(),
                Json::String(stage.unwrap_or_default().to_owned()),
            );
            if let Some(f) = &self.freight {
                m.insert(
                    "freight".into(),
                    Json::Object(Self::freight_fields(f, stage)),
                );
            }
        } else {
            if let Some(f) = &self.freight {
                m.extend(Self::freight_fields(f, stage));
            }
            if let Some(v) = &self.verification {
                if let Some(t) = &v.start_time {
                    m.insert("verificationStartTime".into(), time(t));
                }
                if let Some(t) = &v.finish_time {
                    m.insert("verificationFinishTime".into(), time(t));
                }
                if let Some(n) = &v.analysis_run_name {
                    m.insert("analysisRunName".into(), Json::String(n.clone()));
                }
                if let Some(n) = &v.triggered_by_promotion {
                    m.insert(
                        "analysisTriggeredByPromotion".into(),
                        Json::String(n.clone()),
                    );
                }
            }
        }
        Json::Object(m)
    }
}

/// Where a pipeline's events go. `emit` must not block for long: a sink that delivers
/// over the network queues the event and returns (a slow or failing delivery never holds
/// up a promotion).
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Takes one event.
    fn emit(&self, event: &Event);
}

/// A sink that drops every event (the default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: &Event) {}
}

/// A sink that keeps every event in memory, for tests and for embedders that poll.
#[derive(Debug, Default, Clone)]
pub struct CollectedEvents {
    events: Arc<std::sync::Mutex<Vec<Event>>>,
}

impl CollectedEvents {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The types of every event so far, oldest first.
    pub fn kinds(&self) -> Vec<EventType> {
        self.events().iter().map(|e| e.kind).collect()
    }
}

impl EventSink for CollectedEvents {
    fn emit(&self, event: &Event) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.clone());
    }
}

/// Several sinks as one: each event goes to every one of them.
#[derive(Debug, Default, Clone)]
pub struct EventSinks(pub Vec<Arc<dyn EventSink>>);

impl EventSink for EventSinks {
    fn emit(&self, event: &Event) {
        for sink in &self.0 {
            sink.emit(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::freight::{FreightOrigin, Image};

    fn freight() -> Freight {
        let mut f = Freight::new(
            FreightOrigin::warehouse("app"),
            vec![],
            vec![Image {
                repo_url: "ghcr.io/acme/app".into(),
                tag: "1.2.3".into(),
                digest: "sha256:abc".into(),
                ..Image::default()
            }],
            vec![],
            vec![],
        );
        f.alias = Some("gentle-fox".into());
        f
    }

    #[test]
    fn promotion_payload_has_kargos_fields() {
        let t = DateTime::parse_from_rfc3339("2026-03-08T06:59:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut e = Event::new(EventType::PromotionSucceeded, t, "demo", "done");
        e.stage = Some("prod".into());
        e.actor = Some("alice".into());
        e.freight = Some(freight());
        e.promotion = Some(PromotionInfo {
            name: "prod.01abc".into(),
            create_time: t,
            rollback: true,
            applications: vec![("argocd".into(), "app-prod".into())],
            verification_pending: Some(true),
        });
        let p = e.payload();
        assert_eq!(p["type"], "PromotionSucceeded");
        assert_eq!(p["project"], "demo");
        assert_eq!(p["actor"], "alice");
        assert_eq!(p["name"], "prod.01abc");
        assert_eq!(p["stageName"], "prod");
        assert_eq!(p["createTime"], "2026-03-08T06:59:00Z");
        assert_eq!(p["rollback"], true);
        assert_eq!(p["verificationPending"], true);
        assert_eq!(p["applications"][0]["name"], "app-prod");
        assert_eq!(p["freight"]["alias"], "gentle-fox");
        assert_eq!(p["freight"]["stageName"], "prod");
        assert_eq!(p["freight"]["images"][0]["tag"], "1.2.3");
        assert!(
            p["id"]
                .as_str()
                .unwrap()
                .starts_with("demo.PromotionSucceeded.")
        );
    }

    #[test]
    fn freight_payload_is_flat_with_verification_fields() {
        let t = Utc::now();
        let mut e = Event::new(EventType::FreightVerificationFailed, t, "demo", "failed");
        e.stage = Some("staging".into());
        e.freight = Some(freight());
        e.verification = Some(VerificationInfo {
            start_time: Some(t),
            finish_time: Some(t),
            analysis_run_name: Some("run-1".into()),
            triggered_by_promotion: Some("staging.01".into()),
        });
        let p = e.payload();
        assert_eq!(p["alias"], "gentle-fox");
        assert_eq!(p["stageName"], "staging");
        assert_eq!(p["analysisRunName"], "run-1");
        assert_eq!(p["analysisTriggeredByPromotion"], "staging.01");
        assert_eq!(p["actor"], Json::Null);
        assert!(p.get("freight").is_none());
    }

    #[test]
    fn type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_name(t.as_str()), Some(t));
        }
        assert_eq!(EventType::from_name("Nope"), None);
        assert!(EventType::PromotionDiscarded.is_promotion());
        assert!(!EventType::FreightApproved.is_promotion());
    }

    #[test]
    fn ids_are_unique() {
        let t = Utc::now();
        let a = Event::new(EventType::FreightCreated, t, "p", "");
        let b = Event::new(EventType::FreightCreated, t, "p", "");
        assert_ne!(a.id, b.id);
    }
}
