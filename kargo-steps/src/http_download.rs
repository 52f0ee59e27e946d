//! `http-download`: downloads one URL to a file of the work directory, with Kargo's
//! configuration fields.
//!
//! ```yaml
//! - uses: http-download
//!   config:
//!     url: https://artifacts.example.com/releases/v1.2.3/app.tar.gz
//!     outPath: artifacts/app.tar.gz
//!     headers:
//!     - name: Authorization
//!       value: Bearer ${{ secret('artifacts').token }}
//!     queryParams:
//!     - name: arch
//!       value: amd64
//!     allowOverwrite: true
//!     timeout: 10m
//! ```
//!
//! A `GET` of `url` (with `queryParams` appended, URL-encoded); a 2xx response's body
//! becomes the file at `outPath`, streamed to disk. The file is written atomically
//! (`0600`, a temporary file beside it renamed into place once complete): a failed or
//! oversized download leaves no file, or the old one when it was allowed to be replaced.
//! Missing parent directories are created. No outputs.
//!
//! Errors: an existing file without `allowOverwrite`, a non-2xx status, a body over
//! [`MAX_DOWNLOAD_BYTES`] (100 MiB, Kargo's limit; [`HttpDownload::with_max_bytes`] sets another) and refused destinations are terminal;
//! network errors and timeouts are retryable. Destinations follow the SSRF rules of
//! [`crate::net`] (link-local and metadata addresses refused, also behind redirects).
//! Header values, the query and user info never appear in messages or logs.
//!
//! The step writes only in the work directory, so a dry run downloads as usual.

use std::time::Duration;

use async_trait::async_trait;
use kargo_core::model::Duration as KargoDuration;
use kargo_core::step::{Step, StepContext, StepError, StepErrorKind, StepOutcome};
use serde::Deserialize;

use crate::files::out_file;
use crate::net;

/// The default time limit of the whole download (Kargo's 5 minutes).
pub const DEFAULT_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The largest body downloaded (Kargo's 100 MiB); larger is a terminal error.
pub const MAX_DOWNLOAD_BYTES: u64 = 100 << 20;

/// Kargo's `http-download` step (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct HttpDownload {
    max_bytes: u64,
}

impl Default for HttpDownload {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpDownload {
    /// The step with Kargo's size limit ([`MAX_DOWNLOAD_BYTES`]).
    pub fn new() -> Self {
        Self {
            max_bytes: MAX_DOWNLOAD_BYTES,
        }
    }

    /// The step with another size limit (an operator's setting).
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        Self { max_bytes }
    }
}

/// A `name` / `value` pair of `headers` or `queryParams` (both required, non-empty).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadNameValue {
    /// The name.
    pub name: String,
    /// The value.
    pub value: String,
}

/// Configuration of [`HttpDownload`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpDownloadConfig {
    /// `url:` the URL to download (http or https). Required.
    pub url: String,
    /// `outPath:` the file to write, relative to the work directory. Required.
    pub out_path: String,
    /// `allowOverwrite:` replace an existing file (default false: an existing file is an
    /// error).
    #[serde(default)]
    pub allow_overwrite: bool,
    /// `headers: [{name, value}]`: request headers.
    #[serde(default)]
    pub headers: Vec<DownloadNameValue>,
    /// `queryParams: [{name, value}]`: appended to the URL's query, URL-encoded.
    #[serde(default)]
    pub query_params: Vec<DownloadNameValue>,
    /// `insecureSkipTLSVerify:` accept any TLS certificate.
    #[serde(default, rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: bool,
    /// `timeout:` the time limit of the whole download, a Go duration (default `5m`).
    #[serde(default)]
    pub timeout: Option<KargoDuration>,
}

fn check_pairs(field: &str, pairs: &[DownloadNameValue]) -> Result<(), StepError> {
    for (i, p) in pairs.iter().enumerate() {
        if p.name.is_empty() {
            return Err(StepError::invalid_config(
                format!("{field}[{i}].name"),
                "must not be empty",
            ));
        }
        if p.value.is_empty() {
            return Err(StepError::invalid_config(
                format!("{field}[{i}].value"),
                "must not be empty",
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Step for HttpDownload {
    const KIND: &'static str = "http-download";
    type Config = HttpDownloadConfig;

    fn defaults(&self) -> kargo_core::step::StepDefaults {
        crate::with_effect(kargo_core::step::StepEffect::Local)
    }

    async fn run(
        &self,
        ctx: &StepContext,
        cfg: HttpDownloadConfig,
    ) -> Result<StepOutcome, StepError> {
        check_pairs("headers", &cfg.headers)?;
        check_pairs("queryParams", &cfg.query_params)?;
        let url = crate::http::build_url(
            &cfg.url,
            cfg.query_params
                .iter()
                .map(|p| (p.name.as_str(), p.value.as_str())),
        )?;
        let shown = net::shown_url(&url);
        let mut headers = reqwest::header::HeaderMap::new();
        for (i, h) in cfg.headers.iter().enumerate() {
            let name =
                reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                    StepError::invalid_config(
                        format!("headers[{i}].name"),
                        "not a valid header name",
                    )
                })?;
            let mut value = reqwest::header::HeaderValue::from_str(&h.value).map_err(|_| {
                StepError::invalid_config(format!("headers[{i}].value"), "not a valid header value")
            })?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        let out = out_file::prepare(ctx, &cfg.out_path, cfg.allow_overwrite).await?;
        net::check_url(&url).map_err(|e| StepError::terminal(e.to_string()))?;

        let timeout = cfg.timeout.map_or(DEFAULT_DOWNLOAD_TIMEOUT, |d| d.0);
        let client = net::guarded_client_builder()
            .timeout(timeout)
            .danger_accept_invalid_certs(cfg.insecure_skip_tls_verify)
            .build()
            .map_err(|e| StepError::terminal(format!("cannot build the HTTP client: {e}")))?;
        tracing::debug!(url = %shown, out = %out.shown, "downloading");
        let size = tokio::select! {
            r = fetch(&client, url, headers, &shown, self.max_bytes, &out) => r?,
            () = ctx.cancellation().cancelled() => {
                return Err(StepError::new(StepErrorKind::Cancelled, "the download was cancelled"));
            }
        };
        tracing::info!(url = %shown, out = %out.shown, bytes = size, "downloaded");
        Ok(StepOutcome::succeeded())
    }
}

/// Sends the request and streams the body into `out` (atomically), capped at
/// `max_bytes`; returns the size.
async fn fetch(
    client: &reqwest::Client,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    shown: &str,
    max_bytes: u64,
    out: &out_file::OutFile,
) -> Result<u64, StepError> {
    let mut resp = match client.get(url).headers(headers).send().await {
        Ok(r) => r,
        Err(e) => {
            let (msg, blocked) = net::describe_reqwest_error(e);
            let msg = format!("GET {shown}: {msg}");
            return Err(if blocked.is_some() {
                StepError::terminal(msg)
            } else {
                StepError::retryable(msg)
            });
        }
    };
    let status = resp.status();
    if !status.is_success() {
        return Err(StepError::failed(format!(
            "GET {shown}: HTTP request failed with status {}",
            status.as_u16()
        )));
    }
    if resp.content_length().is_some_and(|n| n > max_bytes) {
        return Err(StepError::terminal(format!(
            "GET {shown}: download exceeds limit of {max_bytes} bytes"
        )));
    }
    let mut file = out.stream();
    match copy_body(&mut resp, &mut file, shown, max_bytes).await {
        Ok(size) => {
            file.finish().await?;
            Ok(size)
        }
        Err(e) => {
            file.abort().await;
            Err(e)
        }
    }
}

/// Streams the response body into `file`; the size, or an error past `max_bytes`.
async fn copy_body(
    resp: &mut reqwest::Response,
    file: &mut out_file::StreamingFile,
    shown: &str,
    max_bytes: u64,
) -> Result<u64, StepError> {
    let mut size: u64 = 0;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(StepError::terminal(format!(
                        "GET {shown}: download exceeds limit of {max_bytes} bytes"
                    )));
                }
                file.write(&chunk).await?;
            }
            Ok(None) => break,
            Err(e) => {
                let (msg, _) = net::describe_reqwest_error(e);
                return Err(StepError::retryable(format!(
                    "GET {shown}: error reading the response body: {msg}"
                )));
            }
        }
    }
    Ok(size)
}
