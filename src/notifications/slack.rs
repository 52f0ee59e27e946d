//! Slack channels: the Web API's `chat.postMessage` with the Secret's bot token `apiKey`,
//! or, when the Secret holds `webhookURL` instead, a Slack-compatible incoming webhook.

use serde_json::{Map, Value as Json};

use super::deliver::{Deliverer, DeliveryError, describe_reqwest};
use super::routes::{Delivery, Message};
use super::text::default_text;

/// Slack Web API errors another attempt may get past.
const TRANSIENT_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// The message's fields: `text`, `blocks`, `icon_emoji`, `icon_url`, `channel`, ...
fn message_body(d: &Delivery) -> Map<String, Json> {
    match &d.message {
        Message::Default => {
            let mut m = Map::new();
            m.insert(
                "text".into(),
                Json::String(default_text(d.event_type, &d.payload)),
            );
            m
        }
        Message::Text(t) | Message::Xml(t) => {
            let mut m = Map::new();
            m.insert("text".into(), Json::String(t.clone()));
            m
        }
        Message::Structured(Json::Object(m)) => m.clone(),
        Message::Structured(other) => {
            let mut m = Map::new();
            m.insert("text".into(), Json::String(other.to_string()));
            m
        }
    }
}

pub(super) async fn send(dl: &Deliverer, d: &Delivery) -> Result<(), DeliveryError> {
    let Some(slack) = &d.channel.spec.slack else {
        return Err(DeliveryError::permanent("not a Slack channel"));
    };
    let Some(secret) = dl.secret(d)? else {
        return Err(DeliveryError::permanent(format!(
            "{} names no Secret: Slack needs apiKey or webhookURL",
            d.channel.label
        )));
    };
    let mut body = message_body(d);
    if let Some(token) = secret.get("apiKey") {
        if !body.contains_key("channel") {
            if slack.channel_id.is_empty() {
                return Err(DeliveryError::permanent(
                    "spec.slack.channelID is required with an apiKey",
                ));
            }
            body.insert("channel".into(), Json::String(slack.channel_id.clone()));
        }
        let channel = body
            .get("channel")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned();
        let thread_key = d
            .grouping_key
            .as_ref()
            .map(|k| (format!("{}#{channel}", d.channel.label), k.clone()));
        if let Some(key) = &thread_key
            && !body.contains_key("thread_ts")
            && let Some(ts) = dl
                .threads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(key)
        {
            body.insert("thread_ts".into(), Json::String(ts.clone()));
        }
        let url = format!(
            "{}/chat.postMessage",
            dl.options.slack_api_url.trim_end_matches('/')
        );
        let resp = dl
            .client(false)
            .post(url)
            .timeout(dl.slack_timeout())
            .bearer_auth(token.expose())
            .header("Content-Type", "application/json; charset=utf-8")
            .body(Json::Object(body).to_string())
            .send()
            .await
            .map_err(|e| DeliveryError::transient(describe_reqwest(e)))?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(DeliveryError::transient(format!("Slack answered {status}")));
        }
        let answer: Json = resp
            .json_value()
            .await
            .map_err(|e| DeliveryError::transient(format!("Slack's answer: {e}")))?;
        if answer.get("ok").and_then(Json::as_bool) == Some(true) {
            if let (Some(key), Some(ts)) = (thread_key, answer.get("ts").and_then(Json::as_str)) {
                dl.threads
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(key)
                    .or_insert_with(|| ts.to_owned());
            }
            return Ok(());
        }
        let error = answer
            .get("error")
            .and_then(Json::as_str)
            .unwrap_or("no error given")
            .to_owned();
        let message = format!("Slack chat.postMessage: {error}");
        return if TRANSIENT_ERRORS.contains(&error.as_str()) {
            Err(DeliveryError::transient(message))
        } else {
            Err(DeliveryError::permanent(message))
        };
    }
    let Some(webhook) = secret.get("webhookURL") else {
        return Err(DeliveryError::permanent(format!(
            "the Secret of {} has neither apiKey nor webhookURL",
            d.channel.label
        )));
    };
    // An incoming webhook posts to the channel it was made for.
    body.remove("channel");
    let url = reqwest::Url::parse(webhook.expose())
        .map_err(|_| DeliveryError::permanent("webhookURL is not a valid URL"))?;
    let resp = dl
        .client(false)
        .post(url)
        .timeout(dl.slack_timeout())
        .header("Content-Type", "application/json")
        .body(Json::Object(body).to_string())
        .send()
        .await
        .map_err(|e| DeliveryError::transient(describe_reqwest(e)))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    let message = format!("the incoming webhook answered {status}: {}", text.trim());
    if status == 429 || status >= 500 {
        Err(DeliveryError::transient(message))
    } else {
        Err(DeliveryError::permanent(message))
    }
}

/// reqwest without its `json` feature: the body read as JSON.
trait JsonValue {
    async fn json_value(self) -> Result<Json, String>;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Result<Json, String> {
        let bytes = self.bytes().await.map_err(describe_reqwest)?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    }
}
