//! The notification kinds of Kargo's commercial edition (`ee.kargo.akuity.io/v1alpha1`:
//! `MessageChannel`, `ClusterMessageChannel`, `EventRouter`), kept typed beside Kargo's
//! resources. They are read with the same care: unknown fields and wrong types with their
//! path and line, each resource's `validate()`, a required namespace, duplicates, a Project
//! the set defines, and routers naming channels the set does not contain.

use std::sync::Arc;

use super::build::{Builder, DocRef, Header, parse_typed};
use super::{ManifestError, ManifestSet, SourceLocation, SourceText};
use crate::model::{
    ChannelReferenceKind, ClusterMessageChannel, EE_API_VERSION, EventRouter, FieldError,
    MessageChannel, NotificationKind, ResourceKind,
};

/// One notification resource.
#[derive(Clone, Debug, PartialEq)]
pub enum NotificationResource {
    /// A MessageChannel.
    MessageChannel(MessageChannel),
    /// A ClusterMessageChannel.
    ClusterMessageChannel(ClusterMessageChannel),
    /// An EventRouter.
    EventRouter(EventRouter),
}

impl NotificationResource {
    /// Its kind.
    pub fn kind(&self) -> NotificationKind {
        match self {
            NotificationResource::MessageChannel(_) => NotificationKind::MessageChannel,
            NotificationResource::ClusterMessageChannel(_) => {
                NotificationKind::ClusterMessageChannel
            }
            NotificationResource::EventRouter(_) => NotificationKind::EventRouter,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        match self {
            NotificationResource::MessageChannel(r) => &r.metadata.name,
            NotificationResource::ClusterMessageChannel(r) => &r.metadata.name,
            NotificationResource::EventRouter(r) => &r.metadata.name,
        }
    }

    /// Its namespace (its Project); `None` for a ClusterMessageChannel.
    pub fn namespace(&self) -> Option<&str> {
        match self {
            NotificationResource::MessageChannel(r) => r.metadata.namespace.as_deref(),
            NotificationResource::ClusterMessageChannel(_) => None,
            NotificationResource::EventRouter(r) => r.metadata.namespace.as_deref(),
        }
    }

    /// A label for messages: `EventRouter demo/failures`.
    pub fn label(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{} {ns}/{}", self.kind(), self.name()),
            None => format!("{} {}", self.kind(), self.name()),
        }
    }

    fn validate(&self) -> Vec<FieldError> {
        match self {
            NotificationResource::MessageChannel(r) => r.validate(),
            NotificationResource::ClusterMessageChannel(r) => r.validate(),
            NotificationResource::EventRouter(r) => r.validate(),
        }
    }
}

/// A notification resource with its place.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct NotificationEntry {
    pub(super) resource: NotificationResource,
    pub(super) location: SourceLocation,
    pub(super) text: Option<SourceText>,
}

impl ManifestSet {
    /// Every notification resource with its location, in load order.
    pub fn notification_resources(
        &self,
    ) -> impl Iterator<Item = (&NotificationResource, &SourceLocation)> {
        self.notifications
            .iter()
            .map(|e| (&e.resource, &e.location))
    }

    fn notification(
        &self,
        kind: NotificationKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&NotificationEntry> {
        let namespace = if kind.is_namespaced() {
            namespace
        } else {
            None
        };
        self.notifications.iter().find(|e| {
            e.resource.kind() == kind
                && e.resource.namespace() == namespace
                && e.resource.name() == name
        })
    }

    /// The MessageChannel `name` of `project`.
    pub fn message_channel(&self, project: &str, name: &str) -> Option<&MessageChannel> {
        match self.notification(NotificationKind::MessageChannel, Some(project), name) {
            Some(NotificationEntry {
                resource: NotificationResource::MessageChannel(c),
                ..
            }) => Some(c),
            _ => None,
        }
    }

    /// The MessageChannels of `project`, in load order.
    pub fn message_channels<'a>(
        &'a self,
        project: &'a str,
    ) -> impl Iterator<Item = &'a MessageChannel> {
        self.notifications
            .iter()
            .filter_map(move |e| match &e.resource {
                NotificationResource::MessageChannel(c)
                    if c.metadata.namespace.as_deref() == Some(project) =>
                {
                    Some(c)
                }
                _ => None,
            })
    }

    /// The ClusterMessageChannel `name`.
    pub fn cluster_message_channel(&self, name: &str) -> Option<&ClusterMessageChannel> {
        match self.notification(NotificationKind::ClusterMessageChannel, None, name) {
            Some(NotificationEntry {
                resource: NotificationResource::ClusterMessageChannel(c),
                ..
            }) => Some(c),
            _ => None,
        }
    }

    /// Every ClusterMessageChannel, in load order.
    pub fn cluster_message_channels(&self) -> impl Iterator<Item = &ClusterMessageChannel> {
        self.notifications.iter().filter_map(|e| match &e.resource {
            NotificationResource::ClusterMessageChannel(c) => Some(c),
            _ => None,
        })
    }

    /// The EventRouters of `project`, in load order.
    pub fn event_routers<'a>(&'a self, project: &'a str) -> impl Iterator<Item = &'a EventRouter> {
        self.notifications
            .iter()
            .filter_map(move |e| match &e.resource {
                NotificationResource::EventRouter(r)
                    if r.metadata.namespace.as_deref() == Some(project) =>
                {
                    Some(r)
                }
                _ => None,
            })
    }

    /// Where the field at `path` of a notification resource is (see
    /// [`field_location`](Self::field_location)).
    pub fn notification_field_location(
        &self,
        kind: NotificationKind,
        namespace: Option<&str>,
        name: &str,
        path: &str,
    ) -> Option<SourceLocation> {
        let entry = self.notification(kind, namespace, name)?;
        Some(super::field_location(
            &entry.location,
            entry.text.as_ref().map(|t| &*t.0),
            path,
        ))
    }
}

impl Builder {
    /// Reads a document of `ee.kargo.akuity.io/`: one of the notification kinds, else an
    /// error naming them.
    pub(super) fn keep_notification<'de, D>(
        &mut self,
        header: &Header,
        doc: D,
        docref: &DocRef,
        location: &SourceLocation,
    ) where
        D: serde::Deserializer<'de, Error = yaml_serde::Error>,
    {
        let root = location.line.zip(location.column);
        let kind = match header.kind.parse::<NotificationKind>() {
            Ok(kind) => kind,
            Err(message) => {
                let pos = self.locate_in(docref, "kind");
                self.push_error(
                    docref.file,
                    ManifestError {
                        location: location.at(pos.or(root)),
                        resource: None,
                        field: "kind".to_owned(),
                        message,
                    },
                );
                return;
            }
        };
        let label = match (&header.namespace, kind.is_namespaced()) {
            (Some(ns), true) => format!(
                "{kind} {ns}/{}",
                header.name.as_deref().unwrap_or("<unnamed>")
            ),
            _ => format!("{kind} {}", header.name.as_deref().unwrap_or("<unnamed>")),
        };
        let error = |b: &mut Builder, field: &str, message: String| {
            let pos = b.locate_in(docref, field);
            b.push_error(
                docref.file,
                ManifestError {
                    location: location.at(pos.or(root)),
                    resource: Some(label.clone()),
                    field: field.to_owned(),
                    message,
                },
            );
        };
        if header.api_version != EE_API_VERSION {
            error(
                self,
                "apiVersion",
                format!(
                    "unsupported apiVersion {:?} for kind {kind}: expected {EE_API_VERSION}",
                    header.api_version
                ),
            );
            return;
        }
        let parsed = match kind {
            NotificationKind::MessageChannel => {
                parse_typed(doc).map(NotificationResource::MessageChannel)
            }
            NotificationKind::ClusterMessageChannel => {
                parse_typed(doc).map(NotificationResource::ClusterMessageChannel)
            }
            NotificationKind::EventRouter => {
                parse_typed(doc).map(NotificationResource::EventRouter)
            }
        };
        let resource = match parsed {
            Ok(r) => r,
            Err((field, message, pos)) => {
                let pos = pos.or_else(|| self.locate_in(docref, &field));
                self.push_error(
                    docref.file,
                    ManifestError {
                        location: location.at(pos.or(root)),
                        resource: Some(label),
                        field,
                        message,
                    },
                );
                return;
            }
        };
        let mut bad = false;
        if resource.name().is_empty() {
            error(
                self,
                "metadata.name",
                "metadata.name is required".to_owned(),
            );
            bad = true;
        }
        if kind.is_namespaced() && resource.namespace().is_none() {
            error(
                self,
                "metadata.namespace",
                format!(
                    "metadata.namespace is required: it names the Project this {kind} belongs to"
                ),
            );
            bad = true;
        }
        for fe in resource.validate() {
            error(self, &fe.path, fe.message);
        }
        if bad {
            return;
        }
        if let Some(first) =
            self.set
                .notification(resource.kind(), resource.namespace(), resource.name())
        {
            let message = format!(
                "duplicate {}: first defined at {}, defined again at {location}",
                resource.label(),
                first.location
            );
            error(self, "metadata.name", message);
            return;
        }
        let text = self
            .files
            .get(docref.file)
            .and_then(|f| f.as_ref())
            .map(|(_, t)| SourceText(Arc::clone(t)));
        self.set.notifications.push(NotificationEntry {
            resource,
            location: location.clone(),
            text,
        });
    }

    /// Notification resources of Projects the set does not define (when it defines
    /// any), and routers naming channels the set does not contain.
    pub(super) fn check_notifications(&mut self) {
        let have_projects = self
            .declared
            .iter()
            .any(|(k, _, _)| *k == ResourceKind::Project);
        let projects = self.known(ResourceKind::Project, None);
        let mut problems: Vec<(usize, String, String)> = Vec::new();
        for (i, e) in self.set.notifications.iter().enumerate() {
            if let Some(ns) = e.resource.namespace()
                && have_projects
                && !self.is_declared(ResourceKind::Project, None, ns)
            {
                problems.push((
                    i,
                    "metadata.namespace".to_owned(),
                    format!(
                        "Project {ns:?} is not defined in this manifest set (a set that defines \
                         Projects must define the Project of every resource; defined: {})",
                        projects.join(", ")
                    ),
                ));
            }
            let NotificationResource::EventRouter(router) = &e.resource else {
                continue;
            };
            let ns = router.metadata.namespace.as_deref().unwrap_or_default();
            for (j, c) in router.spec.channels.iter().enumerate() {
                if c.name.is_empty() {
                    continue;
                }
                let (found, what) = match c.kind {
                    ChannelReferenceKind::MessageChannel => (
                        self.set.message_channel(ns, &c.name).is_some(),
                        format!("MessageChannel {:?} not found in Project {ns:?}", c.name),
                    ),
                    ChannelReferenceKind::ClusterMessageChannel => (
                        self.set.cluster_message_channel(&c.name).is_some(),
                        format!("ClusterMessageChannel {:?} not found", c.name),
                    ),
                };
                if !found {
                    let mut known: Vec<&str> = match c.kind {
                        ChannelReferenceKind::MessageChannel => self
                            .set
                            .message_channels(ns)
                            .map(|m| m.metadata.name.as_str())
                            .collect(),
                        ChannelReferenceKind::ClusterMessageChannel => self
                            .set
                            .cluster_message_channels()
                            .map(|m| m.metadata.name.as_str())
                            .collect(),
                    };
                    known.sort_unstable();
                    let known = if known.is_empty() {
                        " (the set has none)".to_owned()
                    } else {
                        format!(" (known: {})", known.join(", "))
                    };
                    problems.push((i, format!("spec.channels[{j}].name"), what + &known));
                }
            }
        }
        for (i, field, message) in problems {
            let Some(e) = self.set.notifications.get(i) else {
                continue;
            };
            let location =
                super::field_location(&e.location, e.text.as_ref().map(|t| &*t.0), &field);
            let error = ManifestError {
                location,
                resource: Some(e.resource.label()),
                field,
                message,
            };
            let file = self.file_of(&e.location);
            self.push_error(file, error);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::expr::ExprEngine;
    use crate::loader::ManifestSet;

    const BASE: &str = r#"
apiVersion: kargo.akuity.io/v1alpha1
kind: Project
metadata: {name: demo}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {name: hook, namespace: demo}
spec:
  http:
    url: http://127.0.0.1:9/notify
    successExpression: response.status == 200
"#;

    fn router(spec: &str) -> String {
        format!(
            "{BASE}---\napiVersion: ee.kargo.akuity.io/v1alpha1\nkind: EventRouter\nmetadata: {{name: r, namespace: demo}}\nspec:\n{spec}"
        )
    }

    #[test]
    fn loads_channels_and_routers() {
        let text = router(
            "  types: [PromotionFailed]\n  channels: [{name: hook, kind: MessageChannel}]\n  when: event.stageName == 'prod'\n",
        );
        let set = ManifestSet::from_yaml_str("n.yaml", &text).unwrap();
        assert!(set.message_channel("demo", "hook").is_some());
        assert_eq!(set.event_routers("demo").count(), 1);
        assert!(set.skipped().is_empty());
        crate::validate::validate(&set, &ExprEngine::new(), None).unwrap();
        let again = ManifestSet::from_yaml_str("again.yaml", &set.to_yaml().unwrap()).unwrap();
        assert_eq!(
            again.event_routers("demo").next(),
            set.event_routers("demo").next()
        );
        assert_eq!(
            again.message_channel("demo", "hook"),
            set.message_channel("demo", "hook")
        );
    }

    #[test]
    fn unknown_channel_and_type_are_errors_with_lines() {
        let text = router(
            "  types: [PromotionFailed, Nope]\n  channels:\n  - {name: hook, kind: MessageChannel}\n  - {name: missing, kind: ClusterMessageChannel}\n",
        );
        let err = ManifestSet::from_yaml_str("n.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.types[1]"), "{err}");
        assert!(err.contains("unknown event type \"Nope\""), "{err}");
        assert!(
            err.contains("ClusterMessageChannel \"missing\" not found"),
            "{err}"
        );
        assert!(err.contains("n.yaml:21"), "{err}");
    }

    #[test]
    fn a_channel_with_two_kinds_or_a_typo_is_an_error() {
        let text = format!(
            "{BASE}---\napiVersion: ee.kargo.akuity.io/v1alpha1\nkind: MessageChannel\nmetadata: {{name: two, namespace: demo}}\nspec:\n  http: {{url: 'http://x'}}\n  smtp: {{from: a@b.c, host: h, port: 25, tls: true}}\n"
        );
        let err = ManifestSet::from_yaml_str("n.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.smtp.tls"), "{err}");
        let text = format!(
            "{BASE}---\napiVersion: ee.kargo.akuity.io/v1alpha1\nkind: MessageChannel\nmetadata: {{name: two, namespace: demo}}\nspec:\n  http: {{url: 'http://x'}}\n  smtp: {{from: a@b.c, host: h, port: 25}}\n"
        );
        let err = ManifestSet::from_yaml_str("n.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exactly one of slack, smtp or http"), "{err}");
        let text = format!(
            "{BASE}---\napiVersion: ee.kargo.akuity.io/v1alpha1\nkind: MesageChannel\nmetadata: {{name: x, namespace: demo}}\n"
        );
        let err = ManifestSet::from_yaml_str("n.yaml", &text)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown kind \"MesageChannel\""), "{err}");
    }

    #[test]
    fn bad_expressions_are_reported_by_validate() {
        let text = router(
            "  types: [PromotionFailed]\n  channels: [{name: hook, kind: MessageChannel, output: 'x ${{ event. }}'}]\n  when: event.stageName ==\n  output: '${{ event.stageName'\n",
        );
        let set = ManifestSet::from_yaml_str("n.yaml", &text).unwrap();
        let err = crate::validate::validate(&set, &ExprEngine::new(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("spec.when"), "{err}");
        assert!(err.contains("spec.output"), "{err}");
        assert!(err.contains("spec.channels[0].output"), "{err}");
    }
}
