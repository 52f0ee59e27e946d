//! Sending one message to one channel, with retries and exponential backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use kargo_core::expr::ExprEngine;
use kargo_core::model::ChannelType;
use kargo_core::secret::Redacted;

use super::routes::Delivery;
use super::{NotifierError, NotifierOptions};

/// Why an attempt failed. The message never holds a secret.
#[derive(Debug)]
pub(super) struct DeliveryError {
    pub(super) message: String,
    /// Whether another attempt may succeed.
    pub(super) retry: bool,
}

impl DeliveryError {
    /// A failure another attempt may fix (network, 5xx, 429).
    pub(super) fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: true,
        }
    }

    /// A failure no retry fixes (a missing Secret, a rejected request).
    pub(super) fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry: false,
        }
    }
}

/// A reqwest error's text without its URL (a webhook URL's path is a secret).
pub(super) fn describe_reqwest(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if timeout {
        text.push_str(" (timed out)");
    }
    text
}

/// Sends messages; shared by every delivery of a notifier.
pub(super) struct Deliverer {
    pub(super) project: String,
    pub(super) options: NotifierOptions,
    engine: ExprEngine,
    pub(super) client: reqwest::Client,
    pub(super) insecure_client: reqwest::Client,
    /// Slack threads by (channel, grouping key): the `ts` of the first message. Held in
    /// memory only, as Kargo does.
    pub(super) threads: Mutex<HashMap<(String, String), String>>,
}

impl Deliverer {
    pub(super) fn new(project: &str, options: NotifierOptions) -> Result<Self, NotifierError> {
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| NotifierError::Client(describe_reqwest(e)))?;
        let insecure_client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| NotifierError::Client(describe_reqwest(e)))?;
        let mut engine = ExprEngine::new();
        // Kargo's notification helper: a string's JSON escaping, without the quotes.
        engine.add_function("escape_json_string", |s: String| -> String {
            let quoted = serde_json::Value::String(s).to_string();
            quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default()
                .to_owned()
        });
        Ok(Self {
            project: project.to_owned(),
            options,
            engine,
            client,
            insecure_client,
            threads: Mutex::new(HashMap::new()),
        })
    }

    /// The engine routes and templates are evaluated with.
    pub(super) fn engine(&self) -> &ExprEngine {
        &self.engine
    }

    /// The channel's Secret, if it names one. A named Secret that is missing is a
    /// permanent failure.
    pub(super) fn secret(
        &self,
        d: &Delivery,
    ) -> Result<Option<BTreeMap<String, Redacted<String>>>, DeliveryError> {
        let Some(name) = d.channel.spec.secret_name() else {
            return Ok(None);
        };
        match d.channel.secrets.secret(name) {
            Some(s) => Ok(Some(s)),
            None => Err(DeliveryError::permanent(format!(
                "Secret {name:?} of {} not found",
                d.channel.label
            ))),
        }
    }

    async fn deliver(&self, d: &Delivery) -> Result<(), DeliveryError> {
        match d.channel.spec.channel_type() {
            Some(ChannelType::Http) => super::http::send(self, d).await,
            Some(ChannelType::Slack) => super::slack::send(self, d).await,
            Some(ChannelType::Smtp) => super::smtp::send(self, d).await,
            None => Err(DeliveryError::permanent(
                "the channel needs exactly one of slack, smtp or http",
            )),
        }
    }

    /// Tries `d` up to `max_attempts` times, waiting `initial_backoff`, doubled each
    /// time up to `max_backoff`, between attempts. Returns whether it was delivered; a
    /// delivery given up is logged (without secrets).
    pub(super) async fn deliver_with_retries(&self, d: &Delivery) -> bool {
        let max = self.options.max_attempts.max(1);
        let mut wait = self.options.initial_backoff;
        for attempt in 1..=max {
            match self.deliver(d).await {
                Ok(()) => {
                    tracing::info!(project = %self.project, router = %d.router,
                        channel = %d.channel.label, event = %d.event_type, id = %d.event_id,
                        attempt, "notification delivered");
                    return true;
                }
                Err(e) if e.retry && attempt < max => {
                    tracing::info!(project = %self.project, router = %d.router,
                        channel = %d.channel.label, event = %d.event_type, attempt,
                        error = %e.message, retry_in = ?wait, "notification attempt failed");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(self.options.max_backoff);
                }
                Err(e) => {
                    tracing::warn!(project = %self.project, router = %d.router,
                        channel = %d.channel.label, event = %d.event_type, id = %d.event_id,
                        attempts = attempt, error = %e.message,
                        "notification not delivered: dropped");
                    return false;
                }
            }
        }
        false
    }

    /// The HTTP client for a channel that may or may not verify TLS certificates.
    pub(super) fn client(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.insecure_client
        } else {
            &self.client
        }
    }

    /// The default timeout of HTTP requests to Slack.
    pub(super) fn slack_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }
}
