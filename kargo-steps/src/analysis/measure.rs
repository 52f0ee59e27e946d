//! What one provider call gives back, and the HTTP clients the providers share.

use kargo_core::expr::ExprEngine;
use minijinja::value::Value;

use super::condition::evaluate_result;
use super::report::AnalysisPhase;

/// One measurement's outcome before timing is added.
#[derive(Clone, Debug)]
pub(crate) struct Measured {
    pub phase: AnalysisPhase,
    pub value: Option<String>,
    pub message: Option<String>,
}

impl Measured {
    /// An `Error` measurement.
    pub(crate) fn error(message: impl Into<String>) -> Self {
        Self {
            phase: AnalysisPhase::Error,
            value: None,
            message: Some(message.into()),
        }
    }

    /// A value assessed with the metric's conditions.
    pub(crate) fn assessed(
        engine: &ExprEngine,
        success: &str,
        failure: &str,
        result: &Value,
        shown: String,
    ) -> Self {
        match evaluate_result(engine, success, failure, result) {
            Ok(phase) => Self {
                phase,
                value: Some(shown),
                message: None,
            },
            Err(message) => Self {
                phase: AnalysisPhase::Error,
                value: Some(shown),
                message: Some(message),
            },
        }
    }
}

/// The HTTP clients of a run: one verifying TLS, one for `insecure: true`.
#[derive(Clone, Debug)]
pub(crate) struct HttpClients {
    pub secure: reqwest::Client,
    pub insecure: reqwest::Client,
}

impl HttpClients {
    /// Guarded clients (link-local and metadata destinations refused, see
    /// [`crate::net`]).
    pub(crate) fn new() -> Result<Self, String> {
        let secure = crate::net::guarded_client_builder()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let insecure = crate::net::guarded_client_builder()
            .tls_danger_accept_invalid_certs(true)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self { secure, insecure })
    }

    pub(crate) fn pick(&self, insecure: bool) -> &reqwest::Client {
        if insecure {
            &self.insecure
        } else {
            &self.secure
        }
    }
}

/// Parses and checks a provider URL; the error never shows the URL's query or user info.
pub(crate) fn checked_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
    crate::net::check_url(&parsed).map_err(|e| e.to_string())?;
    Ok(parsed)
}
