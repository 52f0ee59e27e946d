//! A real headless Chromium for browser tests, driven over WebDriver (fantoccini) through
//! the chromedriver `ci/test.sh` starts (ci/servers.d/50-chromedriver.sh,
//! `TEST_CHROMEDRIVER_URL`).
//!
//! ```ignore
//! let Some(browser) = Browser::start("my_test").await else { return };
//! browser.goto(&format!("http://{addr}/")).await;
//! browser.click("#promote").await;
//! browser.wait_for_text("#status", "Succeeded").await;
//! browser.close().await;
//! ```
//!
//! Every helper panics with a message naming the selector, the page's URL and the start
//! of its visible text, so a test reads as a list of steps. Waiting is polling (every
//! [`POLL_INTERVAL`]) up to the browser's timeout ([`DEFAULT_TIMEOUT`], see
//! [`Browser::set_timeout`]), never a fixed sleep.
//!
//! Ending the session: call [`Browser::close`] at the end of the test. fantoccini's own
//! clean-up on drop is a task on the test's tokio runtime, which is gone when a test fails
//! (or returns without closing); so `Drop` ends a session that was not closed with a
//! blocking `DELETE /session/{id}` to chromedriver, which also quits the browser. Either
//! way no Chromium outlives the test, and the profile directory is removed after the
//! browser quit.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The Chromium binary (Debian package chromium).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Every browser's window size (CSS pixels): fixed, so screenshots and layouts are
/// reproducible.
pub const WINDOW_SIZE: (u32, u32) = (1400, 900);

/// How long the waiting helpers poll before they fail, unless set otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How often the waiting helpers look again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Chromium's command line: headless (the new headless mode, the real browser), no sandbox
/// (the tests run as root in CI, where Chromium refuses to start sandboxed; the pages are
/// the tests' own on 127.0.0.1), no GPU, and nothing that talks to the network on its own
/// (QUIC, component updates, sync, background requests), /tmp instead of a small /dev/shm.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
];

/// One WebDriver session: one headless Chromium with a fresh profile.
pub struct Browser {
    client: Client,
    /// chromedriver's address (`127.0.0.1:PORT`) and the session's id, for `Drop`.
    webdriver: String,
    session_id: String,
    timeout: Duration,
    closed: bool,
    /// The browser's `--user-data-dir`; removed (dropped) after the browser quit.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser from the chromedriver at `TEST_CHROMEDRIVER_URL`, or `None` after a skip
    /// message when that variable is not set (with `CI=true` it panics instead, like every
    /// test that needs a server: `kargo_core::testing::server_env`). `test` names the test
    /// in those messages.
    pub async fn start(test: &str) -> Option<Browser> {
        let url = kargo_core::testing::server_env(test, "TEST_CHROMEDRIVER_URL")?;
        Some(Self::connect(&url).await)
    }

    /// A browser from the chromedriver at `webdriver_url` (`http://127.0.0.1:PORT`).
    pub async fn connect(webdriver_url: &str) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("kargo-browser-profile.")
            .tempdir()
            .expect("cannot create a temporary Chromium profile directory");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| (*a).to_owned()).collect();
        args.push(format!("--window-size={},{}", WINDOW_SIZE.0, WINDOW_SIZE.1));
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.set_nodelay(true);
        let client = ClientBuilder::new(http)
            .capabilities(capabilities)
            .connect(webdriver_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a Chromium session at chromedriver {webdriver_url}: {e} \
                     ({e:?}); is {CHROMIUM} installed (Debian package chromium)?"
                )
            });
        let session_id = match client.session_id().await {
            Ok(Some(id)) => id,
            other => panic!("chromedriver {webdriver_url} gave no session id: {other:?}"),
        };
        let webdriver = webdriver_url
            .trim_end_matches('/')
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("chromedriver URL {webdriver_url} is not http://HOST:PORT"))
            .to_owned();
        Browser {
            client,
            webdriver,
            session_id,
            timeout: DEFAULT_TIMEOUT,
            closed: false,
            _profile: profile,
        }
    }

    /// The fantoccini client, for what the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How long the waiting helpers poll before they fail (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Opens `url` and returns when its `load` event has fired.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            panic!("browser: cannot open {url}: {e}");
        }
    }

    /// The first element matching `css`, once there is one (polling).
    pub async fn wait_for(&self, css: &str) -> Element {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(el) => return el,
                Err(e) if e.is_no_such_element() => {}
                Err(e) => panic!(
                    "{}",
                    self.failure(&format!("looking for `{css}`: {e}")).await
                ),
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "no element matches `{css}` after {:?}",
                        self.timeout
                    ))
                    .await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the first element matching `css` shows text containing `text` (its
    /// rendered text, as a user sees it) and returns that whole text.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = match self.try_text(css).await {
                Ok(Some(t)) if t.contains(text) => return t,
                Ok(seen) => seen,
                Err(e) => panic!("{}", self.failure(&format!("reading `{css}`: {e}")).await),
            };
            if Instant::now() >= deadline {
                let seen = match last {
                    Some(t) => format!("its text is {t:?}"),
                    None => "no element matches it".to_owned(),
                };
                panic!(
                    "{}",
                    self.failure(&format!(
                        "`{css}` does not show {text:?} after {:?}: {seen}",
                        self.timeout
                    ))
                    .await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Clicks the first element matching `css`, waiting until there is one and it takes
    /// the click (not hidden, not covered, not replaced while clicking).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + self.timeout;
        loop {
            let result = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.click().await,
                Err(e) => Err(e),
            };
            let last = match result {
                Ok(()) => return,
                Err(e) if e.is_no_such_element() => "no element matches it".to_owned(),
                Err(e) if is_transient(&e) => e.to_string(),
                Err(e) => panic!("{}", self.failure(&format!("clicking `{css}`: {e}")).await),
            };
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "cannot click `{css}` after {:?}: {last}",
                        self.timeout
                    ))
                    .await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The rendered text of the first element matching `css`, once there is one.
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.try_text(css).await {
                Ok(Some(t)) => return t,
                Ok(None) => {}
                Err(e) => panic!("{}", self.failure(&format!("reading `{css}`: {e}")).await),
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "no element matches `{css}` after {:?}",
                        self.timeout
                    ))
                    .await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Whether an element matches `css` now (no waiting: for "is not shown" checks, after
    /// waiting for something that proves the page is complete).
    pub async fn exists(&self, css: &str) -> bool {
        match self.client.find_all(Locator::Css(css)).await {
            Ok(found) => !found.is_empty(),
            Err(e) => panic!(
                "{}",
                self.failure(&format!("looking for `{css}`: {e}")).await
            ),
        }
    }

    /// Saves a PNG of the viewport to `path`, creating its directory.
    pub async fn screenshot(&self, path: &Path) {
        let png = match self.client.screenshot().await {
            Ok(png) => png,
            Err(e) => panic!(
                "{}",
                self.failure(&format!("screenshot for {}: {e}", path.display()))
                    .await
            ),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// Runs `js` in the page as the body of a function (`return` gives the value) and
    /// returns its JSON value.
    pub async fn eval(&self, js: &str) -> Value {
        match self.client.execute(js, Vec::new()).await {
            Ok(v) => v,
            Err(e) => panic!(
                "{}",
                self.failure(&format!("script failed: {e}\nscript: {js}"))
                    .await
            ),
        }
    }

    /// When the current page became interactive (its DOM parsed: `domInteractive` of the
    /// Navigation Timing API), from the start of its navigation.
    pub async fn time_to_interactive(&self) -> Duration {
        let deadline = Instant::now() + self.timeout;
        loop {
            let v = self
                .eval(
                    "const n = performance.getEntriesByType('navigation')[0]; \
                     return n ? n.domInteractive : null;",
                )
                .await;
            if let Some(ms) = v.as_f64().filter(|ms| *ms > 0.0) {
                return Duration::from_secs_f64(ms / 1000.0);
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "the page has no navigation timing (domInteractive: {v}) after {:?}",
                        self.timeout
                    ))
                    .await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Ends the session: the browser quits and its profile is removed.
    pub async fn close(mut self) {
        if let Err(e) = self.client.clone().close().await {
            // Drop tries once more.
            panic!("browser: ending the WebDriver session failed: {e}");
        }
        self.closed = true;
    }

    /// The rendered text of the first element matching `css`, `None` when there is none
    /// (an element replaced while being read counts as none yet).
    async fn try_text(&self, css: &str) -> Result<Option<String>, CmdError> {
        let el = match self.client.find(Locator::Css(css)).await {
            Ok(el) => el,
            Err(e) if e.is_no_such_element() => return Ok(None),
            Err(e) => return Err(e),
        };
        match el.text().await {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.is_stale_element_reference() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A failure message: `what`, the page's URL and the start of its visible text.
    async fn failure(&self, what: &str) -> String {
        let url = match self.client.current_url().await {
            Ok(u) => u.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let text = match self
            .client
            .execute(
                "return document.body ? document.body.innerText : ''",
                Vec::new(),
            )
            .await
        {
            Ok(Value::String(t)) => t.chars().take(600).collect::<String>(),
            other => format!("(unreadable: {other:?})"),
        };
        format!("browser: {what}\n  page: {url}\n  page text: {text:?}")
    }
}

/// Errors a retry can cure: the element is being replaced, hidden or covered for now.
fn is_transient(e: &CmdError) -> bool {
    e.is_stale_element_reference()
        || e.is_element_not_interactable()
        || matches!(e, CmdError::Standard(w) if w.error == ErrorStatus::ElementClickIntercepted)
}

impl Drop for Browser {
    /// Ends a session that was not closed (the test failed or forgot): a blocking
    /// `DELETE /session/{id}` to chromedriver, which answers once the browser quit. Works
    /// without the (possibly gone) tokio runtime; errors are ignored.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let Ok(mut conn) = std::net::TcpStream::connect(&self.webdriver) else {
            return;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            self.session_id, self.webdriver
        );
        if conn.write_all(request.as_bytes()).is_ok() {
            // chromedriver answers when the session is gone (it keeps the connection open:
            // the status line is enough).
            let mut answer = [0u8; 64];
            let _ = conn.read(&mut answer);
        }
    }
}
