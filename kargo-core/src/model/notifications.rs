//! The notification kinds of Kargo's commercial edition (`ee.kargo.akuity.io/v1alpha1`):
//! [`MessageChannel`] (namespaced) and [`ClusterMessageChannel`] (cluster-scoped) say where
//! a message goes (Slack, SMTP mail, HTTP); an [`EventRouter`] (namespaced) says which of a
//! Project's events go to which channels, with what text.
//!
//! Field names follow Kargo's documentation. kargo-rs adds one thing: a Slack channel
//! whose Secret holds `webhookURL` instead of `apiKey` posts to that Slack-compatible
//! incoming webhook (Slack, Mattermost, Rocket.Chat, ...), and needs no `channelID`.
//!
//! Deserialising checks shapes and types; [`MessageChannelSpec::validate`] and
//! [`EventRouter::validate`] check exactly one channel type, required fields, event type
//! names, encodings and channel kinds. Expressions and references between resources are
//! checked by [`validate`](crate::validate::validate).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Duration, FieldError, FieldErrors, ObjectMeta};
use crate::events::EventType;

/// The API group and version of the notification kinds: `ee.kargo.akuity.io/v1alpha1`.
pub const EE_API_VERSION: &str = "ee.kargo.akuity.io/v1alpha1";

/// The API group prefix of Kargo's commercial-edition kinds.
pub const EE_API_GROUP_PREFIX: &str = "ee.kargo.akuity.io/";

/// Kargo's default namespace of the Secrets that `ClusterMessageChannel`s name.
pub const CLUSTER_SECRETS_NAMESPACE: &str = "kargo-cluster-secrets";

/// The three notification kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NotificationKind {
    /// `MessageChannel` (namespaced).
    MessageChannel,
    /// `ClusterMessageChannel` (cluster-scoped).
    ClusterMessageChannel,
    /// `EventRouter` (namespaced).
    EventRouter,
}

impl NotificationKind {
    /// Every kind.
    pub const ALL: [NotificationKind; 3] = [
        NotificationKind::MessageChannel,
        NotificationKind::ClusterMessageChannel,
        NotificationKind::EventRouter,
    ];

    /// The kind as written in manifests.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotificationKind::MessageChannel => "MessageChannel",
            NotificationKind::ClusterMessageChannel => "ClusterMessageChannel",
            NotificationKind::EventRouter => "EventRouter",
        }
    }

    /// Whether resources of this kind live in a Project namespace.
    pub const fn is_namespaced(self) -> bool {
        !matches!(self, NotificationKind::ClusterMessageChannel)
    }
}

impl fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NotificationKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NotificationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown kind {s:?}: the kinds of {EE_API_VERSION} are MessageChannel, \
                     ClusterMessageChannel and EventRouter"
                )
            })
    }
}

/// Where a Project's messages go (`kind: MessageChannel`, namespaced).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageChannel {
    /// `ee.kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `MessageChannel`.
    pub kind: String,
    /// Name and namespace (the Project).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The channel.
    #[serde(default)]
    pub spec: MessageChannelSpec,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A channel every Project may use (`kind: ClusterMessageChannel`, cluster-scoped). Its
/// Secret lives in the cluster secrets namespace ([`CLUSTER_SECRETS_NAMESPACE`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMessageChannel {
    /// `ee.kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `ClusterMessageChannel`.
    pub kind: String,
    /// Its name.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The channel.
    #[serde(default)]
    pub spec: MessageChannelSpec,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// A reference to the Secret holding a channel's credentials.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelSecretRef {
    /// The Secret's name.
    #[serde(default)]
    pub name: String,
    /// Ignored (Kargo ignores it too): a MessageChannel's Secret is in its Project, a
    /// ClusterMessageChannel's in the cluster secrets namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The content of a (Cluster)MessageChannel: a Secret and exactly one channel type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessageChannelSpec {
    /// The Secret with the credentials: `apiKey` (a Slack bot token) or `webhookURL` (a
    /// Slack-compatible incoming webhook) for Slack; `username` / `password` for SMTP;
    /// `bearerToken` or `authorization` for HTTP (optional there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ChannelSecretRef>,
    /// Slack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackChannel>,
    /// SMTP mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpChannel>,
    /// An HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpChannel>,
}

/// A Slack channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackChannel {
    /// The channel ID messages are posted to with the Web API (`chat.postMessage`).
    /// Required with an `apiKey`; an incoming webhook is bound to its channel and needs
    /// none.
    #[serde(
        default,
        rename = "channelID",
        skip_serializing_if = "String::is_empty"
    )]
    pub channel_id: String,
}

/// An SMTP mail channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpChannel {
    /// The `From` address.
    #[serde(default)]
    pub from: String,
    /// The default recipients: the first is `To`, the others `Cc`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// The server's host name.
    #[serde(default)]
    pub host: String,
    /// The server's port.
    #[serde(default)]
    pub port: u16,
    /// Whether to use TLS (default `true`): implicit TLS on port 465, STARTTLS on any
    /// other port. With `false`, plain SMTP.
    #[serde(default = "super::default_true", rename = "useTLS")]
    pub use_tls: bool,
    /// Whether to skip TLS certificate verification (tests with self-signed certificates
    /// only).
    #[serde(default, skip_serializing_if = "super::is_false")]
    pub insecure_skip_verify: bool,
}

impl Default for SmtpChannel {
    fn default() -> Self {
        Self {
            from: String::new(),
            to: Vec::new(),
            host: String::new(),
            port: 0,
            use_tls: true,
            insecure_skip_verify: false,
        }
    }
}

/// A name and a value (an HTTP header or query parameter).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameValue {
    /// The name.
    #[serde(default)]
    pub name: String,
    /// The value.
    #[serde(default)]
    pub value: String,
}

/// An HTTP endpoint channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpChannel {
    /// The endpoint.
    #[serde(default)]
    pub url: String,
    /// The method: `GET`, `POST` (default), `PUT`, `PATCH` or `DELETE`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<NameValue>,
    /// Query parameters added to the URL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<NameValue>,
    /// How long a request may take (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Whether to skip TLS certificate verification.
    #[serde(
        default,
        rename = "insecureSkipTLSVerify",
        skip_serializing_if = "super::is_false"
    )]
    pub insecure_skip_tls_verify: bool,
    /// An expression over `response.status`, `response.body`, `response.headers` that
    /// says the request succeeded (default: a 2xx status).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub success_expression: String,
    /// An expression over the response that says the request failed (default: not a 2xx
    /// status).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_expression: String,
}

/// The HTTP methods an HTTP channel may use.
pub const HTTP_CHANNEL_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Which type a channel is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelType {
    /// Slack.
    Slack,
    /// SMTP mail.
    Smtp,
    /// HTTP.
    Http,
}

impl MessageChannelSpec {
    /// The channel's type, when exactly one is set.
    pub fn channel_type(&self) -> Option<ChannelType> {
        match (&self.slack, &self.smtp, &self.http) {
            (Some(_), None, None) => Some(ChannelType::Slack),
            (None, Some(_), None) => Some(ChannelType::Smtp),
            (None, None, Some(_)) => Some(ChannelType::Http),
            _ => None,
        }
    }

    /// The name of the channel's Secret, if it names one.
    pub fn secret_name(&self) -> Option<&str> {
        self.secret_ref
            .as_ref()
            .map(|r| r.name.as_str())
            .filter(|n| !n.is_empty())
    }

    /// Checks the spec (paths start at `spec`): exactly one type, its required fields.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        let set: Vec<&str> = [
            self.slack.as_ref().map(|_| "slack"),
            self.smtp.as_ref().map(|_| "smtp"),
            self.http.as_ref().map(|_| "http"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match set.len() {
            0 => errs.push(
                "spec",
                "a channel needs exactly one of slack, smtp or http; none is set",
            ),
            1 => {}
            _ => errs.push(
                format!("spec.{}", set[1]),
                format!(
                    "a channel needs exactly one of slack, smtp or http; this one sets {}",
                    set.join(" and ")
                ),
            ),
        }
        if let Some(r) = &self.secret_ref
            && r.name.is_empty()
        {
            errs.push("spec.secretRef.name", "secretRef.name is required");
        }
        if self.slack.is_some() && self.secret_name().is_none() {
            errs.push(
                "spec.secretRef",
                "a Slack channel needs a secretRef: a Secret with apiKey (a bot token) or \
                 webhookURL (an incoming webhook)",
            );
        }
        if let Some(s) = &self.smtp {
            if s.from.trim().is_empty() {
                errs.push("spec.smtp.from", "from is required");
            }
            if s.host.trim().is_empty() {
                errs.push("spec.smtp.host", "host is required");
            }
            if s.port == 0 {
                errs.push("spec.smtp.port", "port is required (1-65535)");
            }
            for (i, to) in s.to.iter().enumerate() {
                if !to.contains('@') {
                    errs.push(
                        format!("spec.smtp.to[{i}]"),
                        format!("{to:?} is not an email address"),
                    );
                }
            }
            if !s.from.trim().is_empty() && !s.from.contains('@') {
                errs.push(
                    "spec.smtp.from",
                    format!("{:?} is not an email address", s.from),
                );
            }
        }
        if let Some(h) = &self.http {
            if h.url.trim().is_empty() {
                errs.push("spec.http.url", "url is required");
            } else if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                errs.push(
                    "spec.http.url",
                    format!("{:?} is not an http:// or https:// URL", h.url),
                );
            }
            if !h.method.is_empty() && !HTTP_CHANNEL_METHODS.contains(&h.method.as_str()) {
                errs.push(
                    "spec.http.method",
                    format!(
                        "unsupported method {:?}: expected one of {}",
                        h.method,
                        HTTP_CHANNEL_METHODS.join(", ")
                    ),
                );
            }
            for (i, hd) in h.headers.iter().enumerate() {
                if hd.name.trim().is_empty() {
                    errs.push(format!("spec.http.headers[{i}].name"), "name is required");
                }
            }
            for (i, q) in h.query_params.iter().enumerate() {
                if q.name.trim().is_empty() {
                    errs.push(
                        format!("spec.http.queryParams[{i}].name"),
                        "name is required",
                    );
                }
            }
        }
        errs.0
    }
}

fn validate_ee_type_meta(errs: &mut FieldErrors, api_version: &str, kind: &str, expected: &str) {
    if api_version != EE_API_VERSION {
        errs.push(
            "apiVersion",
            format!("unsupported apiVersion {api_version:?}: expected {EE_API_VERSION:?}"),
        );
    }
    if kind != expected {
        errs.push("kind", format!("kind is {kind:?}, expected {expected:?}"));
    }
}

impl MessageChannel {
    /// Checks the resource; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_ee_type_meta(&mut errs, &self.api_version, &self.kind, "MessageChannel");
        errs.0.extend(self.spec.validate());
        errs.0
    }
}

impl ClusterMessageChannel {
    /// Checks the resource; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_ee_type_meta(
            &mut errs,
            &self.api_version,
            &self.kind,
            "ClusterMessageChannel",
        );
        errs.0.extend(self.spec.validate());
        errs.0
    }
}

/// Routes a Project's events to channels (`kind: EventRouter`, namespaced).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventRouter {
    /// `ee.kargo.akuity.io/v1alpha1`.
    pub api_version: String,
    /// `EventRouter`.
    pub kind: String,
    /// Name and namespace (the Project).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The routing.
    #[serde(default)]
    pub spec: EventRouterSpec,
    /// Status of an exported resource: accepted, kept opaque, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// How a message's `output` is to be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingType {
    /// Plain text (empty or omitted).
    #[default]
    #[serde(rename = "")]
    Plain,
    /// JSON: the channel type's structured fields.
    Json,
    /// YAML: the channel type's structured fields.
    Yaml,
    /// XML: sent verbatim.
    Xml,
}

impl EncodingType {
    fn is_plain(&self) -> bool {
        *self == EncodingType::Plain
    }
}

/// The content of an EventRouter.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventRouterSpec {
    /// The event types routed (Kargo's names, e.g. `PromotionFailed`).
    #[serde(default)]
    pub types: Vec<String>,
    /// The channels they go to.
    #[serde(default)]
    pub channels: Vec<ChannelReference>,
    /// An expression over `event` that must be true for an event to be routed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub when: String,
    /// The message, with `${{ }}` expressions (default: a text per event type).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// How `output` is to be read.
    #[serde(default, skip_serializing_if = "EncodingType::is_plain")]
    pub encoding_type: EncodingType,
    /// Groups related messages (Slack threads), with `${{ }}` expressions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub grouping_key: String,
}

/// The kinds a router's channel reference may name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelReferenceKind {
    /// A MessageChannel of the router's Project (the default).
    #[default]
    MessageChannel,
    /// A ClusterMessageChannel.
    ClusterMessageChannel,
}

/// A channel an EventRouter routes to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelReference {
    /// The channel's name.
    #[serde(default)]
    pub name: String,
    /// `MessageChannel` or `ClusterMessageChannel`.
    #[serde(default)]
    pub kind: ChannelReferenceKind,
    /// This channel's message, in place of the router's `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// How this channel's `output` is to be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<EncodingType>,
}

impl EventRouter {
    /// The router's event types that are known ([`EventType`]); unknown names are
    /// reported by [`validate`](Self::validate).
    pub fn event_types(&self) -> Vec<EventType> {
        self.spec
            .types
            .iter()
            .filter_map(|t| EventType::from_name(t))
            .collect()
    }

    /// Checks the resource; returns every problem found.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = FieldErrors::default();
        validate_ee_type_meta(&mut errs, &self.api_version, &self.kind, "EventRouter");
        if self.spec.types.is_empty() {
            errs.push("spec.types", "at least one event type is required");
        }
        for (i, t) in self.spec.types.iter().enumerate() {
            if EventType::from_name(t).is_none() {
                let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                errs.push(
                    format!("spec.types[{i}]"),
                    format!(
                        "unknown event type {t:?}: expected one of {}",
                        names.join(", ")
                    ),
                );
            }
        }
        if self.spec.channels.is_empty() {
            errs.push("spec.channels", "at least one channel is required");
        }
        for (i, c) in self.spec.channels.iter().enumerate() {
            if c.name.is_empty() {
                errs.push(format!("spec.channels[{i}].name"), "name is required");
            }
        }
        errs.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_needs_exactly_one_type() {
        let none = MessageChannelSpec::default();
        assert_eq!(none.validate()[0].path, "spec");
        let two = MessageChannelSpec {
            smtp: Some(SmtpChannel {
                from: "a@b".into(),
                host: "h".into(),
                port: 25,
                ..SmtpChannel::default()
            }),
            http: Some(HttpChannel {
                url: "http://x".into(),
                ..HttpChannel::default()
            }),
            ..MessageChannelSpec::default()
        };
        let errs = two.validate();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec.http");
        assert!(errs[0].message.contains("smtp and http"));
    }

    #[test]
    fn router_types_are_kargos() {
        let r: EventRouter = yaml_serde::from_str(
            "apiVersion: ee.kargo.akuity.io/v1alpha1\nkind: EventRouter\nmetadata: {name: r, namespace: p}\nspec:\n  types: [PromotionFailed, PromotionExploded]\n  channels: [{name: c, kind: MessageChannel}]\n",
        )
        .unwrap();
        let errs = r.validate();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].path, "spec.types[1]");
        assert_eq!(r.event_types(), vec![EventType::PromotionFailed]);
    }
}
