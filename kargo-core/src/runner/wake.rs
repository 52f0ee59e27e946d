//! Waking `Running` steps before their poll interval: an event the step waits for (a pull
//! request merged or closed, announced by a webhook) makes the runner poll it again at
//! once, as Kargo refreshes the Promotions waiting in `git-wait-for-pr` when a
//! pull-request webhook arrives.
//!
//! A step names what it waits for with [`StepOutcome::with_wake_on`] (keys such as
//! [`pull_request_wake_key`]); whoever learns of the event calls [`Runner::wake`] with the
//! same key. Only the runners sharing this board (clones of one [`Runner`]) are woken; a
//! wake nobody waits for is dropped.
//!
//! [`StepOutcome::with_wake_on`]: crate::step::StepOutcome::with_wake_on
//! [`Runner::wake`]: super::Runner::wake
//! [`Runner`]: super::Runner

use tokio::sync::broadcast;

use crate::freight::normalize_git_url;

/// How many wakes a waiting step may fall behind before it just polls (a lagging receiver
/// polls again, which is always correct).
const CAPACITY: usize = 256;

/// The wake key of pull request `number` of the git repository `repo_url` (any form of
/// the URL Kargo normalises to the same repository gives the same key).
pub fn pull_request_wake_key(repo_url: &str, number: i64) -> String {
    format!("pull-request {}#{number}", normalize_git_url(repo_url))
}

/// The broadcast board the runner's waiting steps listen on.
#[derive(Debug)]
pub(crate) struct WakeBoard {
    tx: broadcast::Sender<String>,
}

impl Default for WakeBoard {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl WakeBoard {
    /// Wakes the steps waiting for `key`; returns how many listeners heard it (steps
    /// that wait for another key ignore it).
    pub(crate) fn wake(&self, key: &str) -> usize {
        self.tx.send(key.to_owned()).unwrap_or(0)
    }

    /// A listener: subscribe before the step runs, so an event during the attempt is kept.
    pub(crate) fn listen(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}

/// Waits until `rx` hears one of `keys` (or fell behind, or the board is gone: then the
/// caller polls, which is always safe). Never returns when `keys` is empty.
pub(crate) async fn woken(rx: &mut broadcast::Receiver<String>, keys: &[String]) {
    if keys.is_empty() {
        return std::future::pending().await;
    }
    loop {
        match rx.recv().await {
            Ok(key) if keys.contains(&key) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalise_the_repository() {
        assert_eq!(
            pull_request_wake_key("https://GitHub.com/acme/gitops.git", 7),
            pull_request_wake_key("https://github.com/acme/gitops", 7)
        );
        assert_ne!(
            pull_request_wake_key("https://github.com/acme/gitops", 7),
            pull_request_wake_key("https://github.com/acme/gitops", 8)
        );
    }

    #[tokio::test]
    async fn only_the_awaited_key_wakes() {
        let board = WakeBoard::default();
        let mut rx = board.listen();
        let keys = vec!["a".to_owned()];
        board.wake("b");
        board.wake("a");
        tokio::time::timeout(std::time::Duration::from_secs(5), woken(&mut rx, &keys))
            .await
            .unwrap_or_else(|_| panic!("not woken"));
        let mut rx = board.listen();
        board.wake("b");
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), woken(&mut rx, &keys)).await;
        assert!(waited.is_err(), "woken by another key");
    }
}
