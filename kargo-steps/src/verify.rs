//! [`HttpVerifier`]: a built-in [`Verifier`] that checks a Stage's collection by asking
//! HTTP endpoints (a health or version endpoint of the deployed application), for Stages
//! with `verification` when there is no Argo Rollouts to run analyses.
//!
//! Each Stage gets a list of [`HttpProbe`]s. A probe passes when a `GET` answers with a
//! status in its range and, if set, a body containing a text; `{tag}`, `{digest}`,
//! `{version}` and `{commit}` in that text are replaced by the collection's first image
//! tag / digest, chart version and commit ID, so "the endpoint reports the version just
//! promoted" is one line. A probe is tried up to `attempts` times, `interval` apart
//! (deployments take a while to roll out). The collection is `Successful` when every probe
//! passes, `Failed` when one answers wrongly to the end, `Error` when one could not be
//! reached at all.
//!
//! ```
//! use std::time::Duration;
//! use kargo_steps::verify::{HttpProbe, HttpVerifier};
//!
//! let verifier = HttpVerifier::new().with_probe(
//!     "dev",
//!     HttpProbe::new("http://guestbook.dev.svc/version")
//!         .expect_body("{tag}")
//!         .attempts(30)
//!         .interval(Duration::from_secs(10)),
//! );
//! # let _ = verifier;
//! ```

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use async_trait::async_trait;
use kargo_core::FreightCollection;
use kargo_core::model::Stage;
use kargo_core::pipeline::{VerificationInfo, VerificationPhase, Verifier};

/// One HTTP check.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    url: String,
    status: RangeInclusive<u16>,
    body: Option<String>,
    attempts: u32,
    interval: Duration,
    timeout: Duration,
}

impl HttpProbe {
    /// A `GET url` expecting a 2xx status, one attempt, 10 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            status: 200..=299,
            body: None,
            attempts: 1,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
        }
    }

    /// The accepted statuses.
    pub fn expect_status(mut self, status: RangeInclusive<u16>) -> Self {
        self.status = status;
        self
    }

    /// Text the body must contain (`{tag}`, `{digest}`, `{version}`, `{commit}` are
    /// replaced from the collection).
    pub fn expect_body(mut self, text: impl Into<String>) -> Self {
        self.body = Some(text.into());
        self
    }

    /// How many times to try (at least 1).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = n.max(1);
        self
    }

    /// The wait between attempts.
    pub fn interval(mut self, d: Duration) -> Self {
        self.interval = d;
        self
    }

    /// The timeout of one request.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

/// The built-in HTTP [`Verifier`] (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct HttpVerifier {
    probes: BTreeMap<String, Vec<HttpProbe>>,
}

impl HttpVerifier {
    /// A verifier with no probes (every Stage verifies successfully).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a probe for `stage`.
    pub fn with_probe(mut self, stage: impl Into<String>, probe: HttpProbe) -> Self {
        self.probes.entry(stage.into()).or_default().push(probe);
        self
    }
}

fn expected_text(template: &str, collection: &FreightCollection) -> String {
    let refs = collection.references();
    let image = refs.iter().find_map(|r| r.images.first());
    let chart = refs.iter().find_map(|r| r.charts.first());
    let commit = refs.iter().find_map(|r| r.commits.first());
    template
        .replace("{tag}", image.map_or("", |i| i.tag.as_str()))
        .replace("{digest}", image.map_or("", |i| i.digest.as_str()))
        .replace("{version}", chart.map_or("", |c| c.version.as_str()))
        .replace("{commit}", commit.map_or("", |c| c.id.as_str()))
}

/// The URL without user info or query, for messages.
fn shown(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

enum ProbeResult {
    Passed,
    Wrong(String),
    Unreachable(String),
}

async fn probe_once(
    client: &reqwest::Client,
    p: &HttpProbe,
    expected: Option<&str>,
) -> ProbeResult {
    let url = shown(&p.url);
    let resp = match client.get(&p.url).timeout(p.timeout).send().await {
        Ok(r) => r,
        Err(e) => {
            let e = e.without_url();
            return ProbeResult::Unreachable(format!("GET {url}: {e}"));
        }
    };
    let status = resp.status().as_u16();
    if !p.status.contains(&status) {
        return ProbeResult::Wrong(format!(
            "GET {url}: status {status}, expected {}..={}",
            p.status.start(),
            p.status.end()
        ));
    }
    if let Some(text) = expected {
        let body = match resp.text().await {
            Ok(b) => b,
            Err(e) => return ProbeResult::Unreachable(format!("GET {url}: {}", e.without_url())),
        };
        if !body.contains(text) {
            return ProbeResult::Wrong(format!("GET {url}: the body does not contain {text:?}"));
        }
    }
    ProbeResult::Passed
}

#[async_trait]
impl Verifier for HttpVerifier {
    async fn verify(&self, stage: &Stage, collection: &FreightCollection) -> VerificationInfo {
        let done = |phase, message: String| VerificationInfo {
            phase,
            message,
            finished_at: chrono::Utc::now(),
        };
        let Some(probes) = self.probes.get(&stage.metadata.name) else {
            return done(VerificationPhase::Successful, String::new());
        };
        let client = match reqwest::Client::builder().build() {
            Ok(c) => c,
            Err(e) => return done(VerificationPhase::Error, format!("HTTP client: {e}")),
        };
        for p in probes {
            let expected = p.body.as_deref().map(|t| expected_text(t, collection));
            let mut last = ProbeResult::Passed;
            for attempt in 1..=p.attempts {
                last = probe_once(&client, p, expected.as_deref()).await;
                if matches!(last, ProbeResult::Passed) {
                    break;
                }
                tracing::debug!(stage = %stage.metadata.name, attempt, "HTTP verification probe not passing yet");
                if attempt < p.attempts {
                    tokio::time::sleep(p.interval).await;
                }
            }
            match last {
                ProbeResult::Passed => {}
                ProbeResult::Wrong(m) => return done(VerificationPhase::Failed, m),
                ProbeResult::Unreachable(m) => return done(VerificationPhase::Error, m),
            }
        }
        done(
            VerificationPhase::Successful,
            format!("{} HTTP probe(s) passed", probes.len()),
        )
    }
}
