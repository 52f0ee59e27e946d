//! Notifications end to end: manifests with MessageChannels and EventRouters, a
//! `Notifier` fed events, and real receivers: in-process HTTP servers on 127.0.0.1 (an
//! endpoint, a Slack-compatible incoming webhook, and a fake of Slack's Web API, which
//! cannot run here) and the SMTP server `ci/test.sh` starts (`TEST_SMTP_ADDR`, mail in
//! `TEST_SMTP_MAILDIR`; see ci/servers.d/70-smtp.sh).

#![cfg(feature = "notifications")]
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use chrono::{DateTime, Utc};
use kargo::notifications::{Notifier, NotifierOptions};
use kargo_core::events::{Event, EventSink, EventType, PromotionInfo};
use kargo_core::freight::{Freight, FreightOrigin, Image};
use kargo_core::loader::ManifestSet;
use serde_json::Value as Json;

// --- log capture: every test's logs, to check what they say and that no secret is in them.

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    let buf = LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let for_writer = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&for_writer)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buf
    });
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

// --- an HTTP receiver on 127.0.0.1 that records every request.

#[derive(Clone, Debug)]
struct Request {
    method: String,
    uri: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_default()
    }
}

type Answer = Arc<dyn Fn(usize, &Request) -> (StatusCode, String) + Send + Sync>;

#[derive(Clone)]
struct Receiver {
    requests: Arc<Mutex<Vec<Request>>>,
    count: Arc<AtomicUsize>,
    answer: Answer,
}

async fn record(
    State(r): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let req = Request {
        method: method.to_string(),
        uri: uri.to_string(),
        headers,
        body: body.to_vec(),
    };
    let n = r.count.fetch_add(1, Ordering::SeqCst);
    let (status, body) = (r.answer)(n, &req);
    r.requests.lock().unwrap().push(req);
    (status, [("content-type", "application/json")], body)
}

/// Starts a receiver; returns its base URL (`http://127.0.0.1:PORT`) and its requests.
async fn receiver(
    answer: impl Fn(usize, &Request) -> (StatusCode, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Request>>>) {
    let r = Receiver {
        requests: Arc::default(),
        count: Arc::default(),
        answer: Arc::new(answer),
    };
    let requests = Arc::clone(&r.requests);
    let app = Router::new().fallback(record).with_state(r);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (format!("http://{addr}"), requests)
}

// --- manifests and events.

fn set(docs: &str) -> ManifestSet {
    let text = format!(
        "apiVersion: kargo.akuity.io/v1alpha1\nkind: Project\nmetadata: {{name: demo}}\n{docs}"
    );
    ManifestSet::from_yaml_str("notifications.yaml", &text).unwrap()
}

fn fast() -> NotifierOptions {
    NotifierOptions {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        ..NotifierOptions::default()
    }
}

fn promotion_succeeded(stage: &str) -> Event {
    let t: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-03-08T06:59:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut e = Event::new(
        EventType::PromotionSucceeded,
        t,
        "demo",
        "all steps succeeded",
    );
    e.stage = Some(stage.to_owned());
    e.actor = Some("alice".to_owned());
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
    e.freight = Some(f);
    e.promotion = Some(PromotionInfo {
        name: format!("{stage}.01abc"),
        create_time: t,
        rollback: false,
        applications: vec![],
        verification_pending: Some(false),
    });
    e
}

// --- the tests.

#[tokio::test]
async fn http_channel_retries_after_a_500_and_delivers_one_cloudevent() {
    logs();
    let (url, requests) = receiver(|n, _| {
        if n == 0 {
            (StatusCode::INTERNAL_SERVER_ERROR, "{}".into())
        } else {
            (StatusCode::OK, "{}".into())
        }
    })
    .await;
    let manifests = set(&format!(
        r#"---
apiVersion: v1
kind: Secret
metadata: {{name: hook-auth, namespace: demo}}
stringData: {{bearerToken: s3cret-bearer-token}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: hook, namespace: demo}}
spec:
  secretRef: {{name: hook-auth}}
  http:
    url: {url}/events
    headers: [{{name: X-Team, value: ops}}]
    queryParams: [{{name: source, value: kargo}}]
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {{name: successes, namespace: demo}}
spec:
  types: [PromotionSucceeded]
  channels: [{{name: hook, kind: MessageChannel}}]
"#
    ));
    let notifier = Notifier::builder(&manifests, "demo")
        .with_options(fast())
        .build()
        .unwrap();
    let event = promotion_succeeded("prod");
    notifier.emit(&event);
    // Another type: not routed.
    notifier.emit(&Event::new(
        EventType::FreightCreated,
        Utc::now(),
        "demo",
        "x",
    ));
    notifier.flush().await;

    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one failed attempt, one retry");
    assert_eq!(notifier.delivered(), 1);
    assert_eq!(notifier.failed(), 0);
    let r = &requests[1];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri, "/events?source=kargo");
    assert_eq!(r.header("authorization"), "Bearer s3cret-bearer-token");
    assert_eq!(r.header("x-team"), "ops");
    assert_eq!(r.header("content-type"), "application/cloudevents+json");
    assert_eq!(
        requests[0].body, r.body,
        "the retry sends the same envelope"
    );
    let ce = r.json();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], event.id.as_str());
    assert_eq!(ce["source"], "kargo/demo");
    assert_eq!(ce["type"], "io.kargo.event.PromotionSucceeded");
    assert_eq!(ce["subject"], "prod");
    assert_eq!(ce["time"], "2026-03-08T06:59:00Z");
    assert_eq!(ce["datacontenttype"], "application/json");
    let data = &ce["data"];
    assert_eq!(data, &event.payload());
    assert_eq!(data["type"], "PromotionSucceeded");
    assert_eq!(data["stageName"], "prod");
    assert_eq!(data["name"], "prod.01abc");
    assert_eq!(data["actor"], "alice");
    assert_eq!(data["freight"]["alias"], "gentle-fox");
    assert_eq!(data["freight"]["images"][0]["tag"], "1.2.3");
    assert!(!logs().contains("s3cret-bearer-token"));
}

#[tokio::test]
async fn templated_body_and_when_filter() {
    let (url, requests) = receiver(|_, _| (StatusCode::OK, r#"{"accepted": true}"#.into())).await;
    let manifests = set(&format!(
        r#"---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: hook, namespace: demo}}
spec:
  http:
    url: {url}/templated
    method: PUT
    successExpression: response.status == 200 && response.body.accepted
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {{name: prod-only, namespace: demo}}
spec:
  types: [PromotionSucceeded, PromotionFailed]
  when: event.stageName == 'prod'
  encodingType: json
  output: |
    {{"body": {{"text": "Promoted ${{{{ event.freight.alias }}}} to ${{{{ event.stageName }}}}: ${{{{ escape_json_string(event.message) }}}}"}},
     "headers": {{"X-Kind": "${{{{ event.type }}}}"}}}}
  channels: [{{name: hook, kind: MessageChannel}}]
"#
    ));
    let notifier = Notifier::builder(&manifests, "demo")
        .with_options(fast())
        .build()
        .unwrap();
    notifier.emit(&promotion_succeeded("dev"));
    let mut prod = promotion_succeeded("prod");
    prod.message = "said \"done\"".into();
    notifier.emit(&prod);
    notifier.flush().await;

    let requests = requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "the dev event is filtered out by `when`");
    let r = &requests[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.header("x-kind"), "PromotionSucceeded");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!({"text": "Promoted gentle-fox to prod: said \"done\""})
    );
    assert_eq!(notifier.delivered(), 1);
}

#[tokio::test]
async fn slack_web_api_and_incoming_webhook() {
    logs();
    // A fake of Slack's chat.postMessage: bearer token, JSON body, `ok` in the answer.
    let (slack, posts) = receiver(|n, r| {
        if r.uri != "/api/chat.postMessage" || r.header("authorization") != "Bearer xoxb-bot-token"
        {
            return (
                StatusCode::OK,
                r#"{"ok": false, "error": "invalid_auth"}"#.into(),
            );
        }
        if !r.header("content-type").starts_with("application/json") {
            return (
                StatusCode::OK,
                r#"{"ok": false, "error": "invalid_form_data"}"#.into(),
            );
        }
        let body: Json = serde_json::from_slice(&r.body).unwrap();
        if body["channel"] == "C0123456789" {
            (
                StatusCode::OK,
                format!(r#"{{"ok": true, "channel": "C0123456789", "ts": "1700000000.00010{n}"}}"#),
            )
        } else {
            (
                StatusCode::OK,
                r#"{"ok": false, "error": "channel_not_found"}"#.into(),
            )
        }
    })
    .await;
    let (hooks, hook_posts) = receiver(|_, _| (StatusCode::OK, "ok".into())).await;
    let manifests = set(&format!(
        r#"---
apiVersion: v1
kind: Secret
metadata: {{name: slack-bot, namespace: demo}}
stringData: {{apiKey: xoxb-bot-token}}
---
apiVersion: v1
kind: Secret
metadata: {{name: slack-hook, namespace: demo}}
stringData: {{webhookURL: "{hooks}/services/T000/B000/hook-secret-path"}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: team, namespace: demo}}
spec:
  secretRef: {{name: slack-bot}}
  slack: {{channelID: C0123456789}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: nowhere, namespace: demo}}
spec:
  secretRef: {{name: slack-bot}}
  slack: {{channelID: CNOSUCHCHAN}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: webhook, namespace: demo}}
spec:
  secretRef: {{name: slack-hook}}
  slack: {{}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {{name: promotions, namespace: demo}}
spec:
  types: [PromotionSucceeded]
  groupingKey: "${{{{ event.freight.name }}}}"
  channels:
  - {{name: team, kind: MessageChannel}}
  - {{name: nowhere, kind: MessageChannel}}
  - name: webhook
    kind: MessageChannel
    output: "*${{{{ event.stageName }}}}* has ${{{{ event.freight.alias }}}}"
"#
    ));
    let notifier = Notifier::builder(&manifests, "demo")
        .with_options(NotifierOptions {
            slack_api_url: format!("{slack}/api"),
            max_concurrent_deliveries: 1,
            ..fast()
        })
        .build()
        .unwrap();
    notifier.emit(&promotion_succeeded("prod"));
    notifier.flush().await;
    // The same Freight again: threaded under the first message.
    notifier.emit(&promotion_succeeded("prod"));
    notifier.flush().await;

    let posts = posts.lock().unwrap().clone();
    let to_team: Vec<Json> = posts
        .iter()
        .map(Request::json)
        .filter(|b| b["channel"] == "C0123456789")
        .collect();
    assert_eq!(to_team.len(), 2);
    assert_eq!(
        to_team[0]["text"],
        "[demo] Promotion prod.01abc of Freight gentle-fox to Stage prod succeeded.\nall steps succeeded\nBy: alice"
    );
    assert!(to_team[0].get("thread_ts").is_none());
    assert!(
        to_team[1]["thread_ts"]
            .as_str()
            .unwrap()
            .starts_with("1700000000.")
    );
    // channel_not_found: Slack's `ok: false` is a failure no retry fixes (one attempt each).
    let to_nowhere = posts
        .iter()
        .filter(|r| r.json()["channel"] == "CNOSUCHCHAN")
        .count();
    assert_eq!(to_nowhere, 2);
    assert_eq!(notifier.failed(), 2);
    assert_eq!(notifier.delivered(), 4);

    let hook_posts = hook_posts.lock().unwrap().clone();
    assert_eq!(hook_posts.len(), 2);
    assert_eq!(hook_posts[0].uri, "/services/T000/B000/hook-secret-path");
    assert_eq!(
        hook_posts[0].json(),
        serde_json::json!({"text": "*prod* has gentle-fox"})
    );
    let logs = logs();
    assert!(logs.contains("channel_not_found"), "{logs}");
    assert!(!logs.contains("xoxb-bot-token"));
    assert!(!logs.contains("hook-secret-path"));
}

#[tokio::test]
async fn a_channel_failing_forever_is_dropped_and_others_still_deliver() {
    logs();
    let (bad, bad_requests) =
        receiver(|_, _| (StatusCode::SERVICE_UNAVAILABLE, "down".into())).await;
    let (good, good_requests) = receiver(|_, _| (StatusCode::NO_CONTENT, String::new())).await;
    let manifests = set(&format!(
        r#"---
apiVersion: v1
kind: Secret
metadata: {{name: down-auth, namespace: demo}}
stringData: {{authorization: "Token never-log-this"}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: down, namespace: demo}}
spec:
  secretRef: {{name: down-auth}}
  http: {{url: "{bad}/down"}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: up, namespace: demo}}
spec:
  http: {{url: "{good}/up"}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {{name: failures, namespace: demo}}
spec:
  types: [PromotionFailed]
  channels: [{{name: down, kind: MessageChannel}}, {{name: up, kind: MessageChannel}}]
"#
    ));
    let notifier = Notifier::builder(&manifests, "demo")
        .with_options(fast())
        .build()
        .unwrap();
    let mut e = promotion_succeeded("prod");
    e.kind = EventType::PromotionFailed;
    notifier.emit(&e);
    notifier.shutdown().await;

    assert_eq!(bad_requests.lock().unwrap().len(), 3, "max_attempts");
    assert_eq!(
        bad_requests.lock().unwrap()[0].header("authorization"),
        "Token never-log-this"
    );
    assert_eq!(good_requests.lock().unwrap().len(), 1);
    assert_eq!(notifier.failed(), 1);
    assert_eq!(notifier.delivered(), 1);
    let logs = logs();
    assert!(
        logs.contains("notification not delivered: dropped")
            && logs.contains("the endpoint answered 503"),
        "{logs}"
    );
    assert!(!logs.contains("never-log-this"));
    // After shutdown, events are dropped (and counted), never queued.
    notifier.emit(&e);
    assert_eq!(notifier.dropped(), 1);
    assert!(!format!("{notifier:?}").contains("never-log-this"));
}

#[tokio::test]
async fn a_full_queue_drops_events_without_blocking() {
    let manifests = set(r#"---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {name: hook, namespace: demo}
spec:
  http: {url: "http://127.0.0.1:9/never"}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {name: r, namespace: demo}
spec:
  types: [FreightApproved]
  channels: [{name: hook, kind: MessageChannel}]
"#);
    let notifier = Notifier::builder(&manifests, "demo")
        .with_options(NotifierOptions {
            queue_capacity: 2,
            ..fast()
        })
        .build()
        .unwrap();
    // The current-thread runtime runs the delivery task only when this test awaits, so
    // the queue holds two events and the other three are dropped at once.
    for _ in 0..5 {
        notifier.emit(&Event::new(
            EventType::FreightCreated,
            Utc::now(),
            "demo",
            "",
        ));
    }
    assert_eq!(notifier.dropped(), 3);
    notifier.flush().await;
    assert_eq!(notifier.pending(), 0);
    assert_eq!(notifier.delivered(), 0, "FreightCreated is not routed");
}

#[tokio::test]
async fn smtp_mail_reaches_a_real_server() {
    let Some(addr) =
        kargo_core::testing::server_env("smtp_mail_reaches_a_real_server", "TEST_SMTP_ADDR")
    else {
        return;
    };
    let maildir = std::env::var("TEST_SMTP_MAILDIR").expect("TEST_SMTP_MAILDIR");
    let (host, port) = addr.rsplit_once(':').unwrap();
    let unique = format!(
        "ops-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap()
    );
    let manifests = set(&format!(
        r#"---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: mail, namespace: demo}}
spec:
  smtp:
    from: kargo@example.test
    to: ["{unique}@example.test", "lead@example.test"]
    host: {host}
    port: {port}
    useTLS: false
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {{name: mail, namespace: demo}}
spec:
  types: [PromotionSucceeded]
  channels:
  - name: mail
    kind: MessageChannel
    encodingType: yaml
    output: |
      subject: "Promoted ${{{{ event.freight.alias }}}} to ${{{{ event.stageName }}}}"
      body: "Promotion ${{{{ event.name }}}} by ${{{{ event.actor }}}} succeeded."
"#
    ));
    let notifier = Notifier::builder(&manifests, "demo")
        .with_options(fast())
        .build()
        .unwrap();
    notifier.emit(&promotion_succeeded("prod"));
    notifier.flush().await;
    assert_eq!(notifier.delivered(), 1, "{}", logs());

    let mut found = None;
    for entry in std::fs::read_dir(std::path::Path::new(&maildir).join("new")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        if text.contains(&format!("{unique}@example.test")) {
            found = Some(text);
        }
    }
    let mail = found.expect("the mail is in the server's Maildir");
    let mail = mail.replace("\r\n", "\n");
    assert!(
        mail.contains("Subject: Promoted gentle-fox to prod\n"),
        "{mail}"
    );
    assert!(mail.contains("From: kargo@example.test\n"), "{mail}");
    assert!(
        mail.contains(&format!("To: {unique}@example.test\n")),
        "{mail}"
    );
    assert!(mail.contains("Cc: lead@example.test\n"), "{mail}");
    assert!(mail.contains("X-MailFrom: kargo@example.test"), "{mail}");
    assert!(
        mail.contains("Content-Type: text/plain; charset=utf-8"),
        "{mail}"
    );
    assert!(
        mail.contains("Promotion prod.01abc by alice succeeded."),
        "{mail}"
    );
    let _ = std::io::stderr().flush();
}

#[tokio::test]
async fn smtp_channel_authenticates_with_its_secret() {
    let Some(vars) = kargo_core::testing::server_envs(
        "smtp_channel_authenticates_with_its_secret",
        &[
            "TEST_SMTP_ADDR",
            "TEST_SMTP_MAILDIR",
            "TEST_SMTP_USER",
            "TEST_SMTP_PASSWORD",
        ],
    ) else {
        return;
    };
    let [addr, maildir, user, password] = <[String; 4]>::try_from(vars).unwrap();
    logs();
    let (host, port) = addr.rsplit_once(':').unwrap();
    let unique = format!(
        "auth-{}-{}",
        std::process::id(),
        Utc::now().timestamp_nanos_opt().unwrap()
    );
    let manifests = set(&format!(
        r#"---
apiVersion: v1
kind: Secret
metadata: {{name: smtp-good, namespace: demo}}
stringData: {{username: "{user}", password: "{password}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: smtp-bad, namespace: demo}}
stringData: {{username: "{user}", password: wrong-password-never-logged}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: good, namespace: demo}}
spec:
  secretRef: {{name: smtp-good}}
  smtp: {{from: kargo@example.test, to: ["{unique}@example.test"], host: {host}, port: {port}, useTLS: false}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: MessageChannel
metadata: {{name: bad, namespace: demo}}
spec:
  secretRef: {{name: smtp-bad}}
  smtp: {{from: kargo@example.test, to: ["{unique}-bad@example.test"], host: {host}, port: {port}, useTLS: false}}
---
apiVersion: ee.kargo.akuity.io/v1alpha1
kind: EventRouter
metadata: {{name: mail, namespace: demo}}
spec:
  types: [PromotionSucceeded]
  channels: [{{name: good, kind: MessageChannel}}, {{name: bad, kind: MessageChannel}}]
"#
    ));
    let notifier = Notifier::builder(&manifests, "demo")
        .with_options(fast())
        .build()
        .unwrap();
    notifier.emit(&promotion_succeeded("prod"));
    notifier.flush().await;
    assert_eq!(notifier.delivered(), 1, "{}", logs());
    assert_eq!(notifier.failed(), 1, "wrong credentials are refused (535)");

    let mails: Vec<String> = std::fs::read_dir(std::path::Path::new(&maildir).join("new"))
        .unwrap()
        .map(|e| {
            // Unfolded: a long header continues on lines starting with a space.
            std::fs::read_to_string(e.unwrap().path())
                .unwrap()
                .replace("\r\n", "\n")
                .replace("\n ", " ")
        })
        .filter(|m| m.contains(&unique))
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert!(
        mail.contains(&format!("To: {unique}@example.test\n")),
        "{mail}"
    );
    // No output: the default subject and text.
    assert!(
        mail.contains(
            "Subject: [Kargo] demo: Promotion prod.01abc of Freight gentle-fox to Stage prod succeeded\n"
        ),
        "{mail}"
    );
    assert!(
        mail.contains("[demo] Promotion prod.01abc of Freight gentle-fox to Stage prod succeeded."),
        "{mail}"
    );
    let logs = logs();
    assert!(logs.contains("535"), "{logs}");
    assert!(!logs.contains("wrong-password-never-logged"));
    assert!(!logs.contains(&password));
}
