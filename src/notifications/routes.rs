//! The routing table of one project: which events go to which channels, with what message.

use std::collections::BTreeSet;
use std::sync::Arc;

use kargo_core::events::{Event, EventType};
use kargo_core::expr::{ExprEngine, Scope};
use kargo_core::loader::ManifestSet;
use kargo_core::model::{ChannelReferenceKind, EncodingType, MessageChannelSpec};
use kargo_core::secret::SecretStore;
use serde_json::{Map, Value as Json};

use super::NotifierError;

/// A channel as deliveries use it: its spec and where its Secret is looked up.
pub(super) struct Channel {
    /// `MessageChannel demo/team-slack`, for logs.
    pub(super) label: String,
    pub(super) spec: MessageChannelSpec,
    pub(super) secrets: Arc<dyn SecretStore>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The rendered message of one delivery.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Message {
    /// No `output`: the channel type's default form (a text per event type, or for HTTP
    /// the CloudEvents envelope).
    Default,
    /// Plain text, sent as it is.
    Text(String),
    /// XML text, sent as it is.
    Xml(String),
    /// JSON or YAML output: the channel type's structured fields.
    Structured(Json),
}

/// One message for one channel.
#[derive(Debug)]
pub(super) struct Delivery {
    pub(super) router: String,
    pub(super) channel: Arc<Channel>,
    pub(super) event_type: EventType,
    pub(super) event_id: String,
    /// The event's payload (`event` in expressions).
    pub(super) payload: Arc<Json>,
    pub(super) message: Message,
    /// The rendered `groupingKey`, if any (Slack threads).
    pub(super) grouping_key: Option<String>,
}

struct Target {
    channel: Arc<Channel>,
    output: String,
    encoding: EncodingType,
}

struct Route {
    router: String,
    types: BTreeSet<EventType>,
    when: String,
    grouping_key: String,
    targets: Vec<Target>,
}

/// The routers of one project.
pub(super) struct Routes {
    project: String,
    routes: Vec<Route>,
}

/// The variables of `when`, `output` and `groupingKey`: `event` (the payload) and `type`.
pub(super) fn event_scope(payload: &Json) -> Scope {
    let mut vars = Map::new();
    vars.insert("event".into(), payload.clone());
    vars.insert(
        "type".into(),
        payload.get("type").cloned().unwrap_or(Json::Null),
    );
    Scope::from_json(&vars)
}

impl Routes {
    pub(super) fn from_manifests(
        set: &ManifestSet,
        project: &str,
        secrets: Arc<dyn SecretStore>,
        cluster_secrets: Arc<dyn SecretStore>,
    ) -> Result<Self, NotifierError> {
        let mut routes = Vec::new();
        let mut channels: Vec<(ChannelReferenceKind, String, Arc<Channel>)> = Vec::new();
        for router in set.event_routers(project) {
            let name = router.metadata.name.clone();
            let mut targets = Vec::new();
            for c in &router.spec.channels {
                let existing = channels
                    .iter()
                    .find(|(k, n, _)| *k == c.kind && *n == c.name)
                    .map(|(_, _, ch)| Arc::clone(ch));
                let channel = match existing {
                    Some(ch) => ch,
                    None => {
                        let (spec, label, store) = match c.kind {
                            ChannelReferenceKind::MessageChannel => (
                                set.message_channel(project, &c.name)
                                    .map(|m| m.spec.clone()),
                                format!("MessageChannel {project}/{}", c.name),
                                Arc::clone(&secrets),
                            ),
                            ChannelReferenceKind::ClusterMessageChannel => (
                                set.cluster_message_channel(&c.name).map(|m| m.spec.clone()),
                                format!("ClusterMessageChannel {}", c.name),
                                Arc::clone(&cluster_secrets),
                            ),
                        };
                        let Some(spec) = spec else {
                            return Err(NotifierError::Router {
                                project: project.to_owned(),
                                router: name,
                                message: format!("{label} not found"),
                            });
                        };
                        let ch = Arc::new(Channel {
                            label,
                            spec,
                            secrets: store,
                        });
                        channels.push((c.kind, c.name.clone(), Arc::clone(&ch)));
                        ch
                    }
                };
                targets.push(Target {
                    channel,
                    output: c
                        .output
                        .clone()
                        .unwrap_or_else(|| router.spec.output.clone()),
                    encoding: c.encoding_type.unwrap_or(router.spec.encoding_type),
                });
            }
            routes.push(Route {
                router: name,
                types: router.event_types().into_iter().collect(),
                when: router.spec.when.clone(),
                grouping_key: router.spec.grouping_key.clone(),
                targets,
            });
        }
        Ok(Self {
            project: project.to_owned(),
            routes,
        })
    }

    /// The deliveries `event` makes. Problems (a `when` or `output` that does not
    /// evaluate, an output that does not parse as its encoding) are logged and skip that
    /// router or channel.
    pub(super) fn route(&self, event: &Event, engine: &ExprEngine) -> Vec<Delivery> {
        let mut out = Vec::new();
        if event.project != self.project {
            tracing::warn!(project = %self.project, event_project = %event.project,
                event = %event.kind, "event of another project ignored");
            return out;
        }
        let payload = Arc::new(event.payload());
        let scope = event_scope(&payload);
        for route in &self.routes {
            if !route.types.contains(&event.kind) {
                continue;
            }
            if !route.when.trim().is_empty() {
                let pass = engine
                    .compile_kargo_expression(&route.when)
                    .and_then(|e| e.eval_bool(&scope));
                match pass {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(router = %route.router, event = %event.kind,
                            "event filtered out by `when`");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(project = %self.project, router = %route.router,
                            event = %event.kind, error = %e,
                            "EventRouter `when` did not evaluate: event not routed");
                        continue;
                    }
                }
            }
            let grouping_key = if route.grouping_key.is_empty() {
                None
            } else {
                match engine
                    .compile(&route.grouping_key)
                    .and_then(|t| t.render_text(&scope))
                {
                    Ok(k) => Some(k),
                    Err(e) => {
                        tracing::warn!(project = %self.project, router = %route.router,
                            error = %e, "EventRouter `groupingKey` did not render: not grouped");
                        None
                    }
                }
            };
            for target in &route.targets {
                match render(engine, &target.output, target.encoding, &scope) {
                    Ok(message) => out.push(Delivery {
                        router: route.router.clone(),
                        channel: Arc::clone(&target.channel),
                        event_type: event.kind,
                        event_id: event.id.clone(),
                        payload: Arc::clone(&payload),
                        message,
                        grouping_key: grouping_key.clone(),
                    }),
                    Err(e) => {
                        tracing::warn!(project = %self.project, router = %route.router,
                            channel = %target.channel.label, event = %event.kind, error = %e,
                            "message did not render: not sent");
                    }
                }
            }
        }
        out
    }
}

/// Renders `output` in `scope` and reads it as `encoding`.
fn render(
    engine: &ExprEngine,
    output: &str,
    encoding: EncodingType,
    scope: &Scope,
) -> Result<Message, String> {
    if output.trim().is_empty() {
        return Ok(Message::Default);
    }
    let text = engine
        .compile(output)
        .and_then(|t| t.render_text(scope))
        .map_err(|e| e.to_string())?;
    Ok(match encoding {
        EncodingType::Plain => Message::Text(text),
        EncodingType::Xml => Message::Xml(text),
        EncodingType::Json => Message::Structured(
            serde_json::from_str(&text).map_err(|e| format!("the output is not JSON: {e}"))?,
        ),
        EncodingType::Yaml => Message::Structured(
            yaml_serde::from_str(&text).map_err(|e| format!("the output is not YAML: {e}"))?,
        ),
    })
}
