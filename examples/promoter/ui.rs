//! Terminal output: colours, progress lines on stderr, results on stdout as text, JSON or
//! YAML.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::cli::{Failure, Output, Result};

/// ANSI colours, on only for a terminal and without `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paint(pub(crate) bool);

impl Paint {
    pub(crate) fn detect(terminal: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Paint(terminal && !no_color)
    }
    pub(crate) fn wrap(self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    pub(crate) fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
    pub(crate) fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }
    pub(crate) fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }
    pub(crate) fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }
    pub(crate) fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Ui {
    pub(crate) output: Output,
    pub(crate) out: Paint,
    pub(crate) err: Paint,
}

impl Ui {
    pub(crate) fn progress(&self, msg: &str) {
        eprintln!("{} {msg}", self.err.dim("•"));
    }

    /// Prints `value` as JSON or YAML, or calls `text` for the text form.
    pub(crate) fn emit(&self, value: &Json, text: impl FnOnce()) -> Result<()> {
        match self.output {
            Output::Text => text(),
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value)
                    .map_err(|e| Failure::Runtime(format!("cannot encode JSON: {e}")))?
            ),
            Output::Yaml => print!(
                "{}",
                yaml_serde::to_string(value)
                    .map_err(|e| Failure::Runtime(format!("cannot encode YAML: {e}")))?
            ),
        }
        Ok(())
    }

    /// Awaits `fut`, telling stderr what is going on: a start line, a heartbeat every
    /// 5 seconds, the time taken.
    pub(crate) async fn with_progress<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        self.progress(&format!("{what}…"));
        let start = Instant::now();
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        let out = loop {
            tokio::select! {
                out = &mut fut => break out,
                _ = tick.tick() => {
                    self.progress(&format!("{what}: still working ({}s)", start.elapsed().as_secs()));
                }
            }
        };
        self.progress(&format!(
            "{what}: finished after {:.1}s",
            start.elapsed().as_secs_f64()
        ));
        out
    }
}
