//! A token bucket: the per-registry request rate limit of [`super::ImageSource`].

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A token bucket allowing `rate` requests per second on average with bursts of up to
/// `burst` requests. [`TokenBucket::acquire`] reserves a token and sleeps until it is due,
/// so waiters are served in the order they arrived and nobody spins.
///
/// It measures time with [`tokio::time::Instant`], so tests can run it under paused time.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// Tokens available at `at`; negative when requests are queued.
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A bucket refilled at `rate` tokens per second (at least 0.001) holding at most `burst`
    /// tokens (at least 1). It starts full.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: if rate.is_finite() {
                rate.max(0.001)
            } else {
                f64::MAX
            },
            burst,
            state: Mutex::new(BucketState {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Takes one token, waiting until one is available.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(s.at).as_secs_f64();
            s.tokens = (s.tokens + elapsed * self.rate).min(self.burst);
            s.at = now;
            s.tokens -= 1.0;
            if s.tokens >= 0.0 {
                None
            } else {
                Some(Duration::from_secs_f64(-s.tokens / self.rate))
            }
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn limits_the_rate_after_the_burst() {
        let bucket = TokenBucket::new(10.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..100 {
            bucket.acquire().await;
        }
        // 100 tokens beyond the burst at 10/s: 10 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(9_990), "{took:?}");
        assert!(took <= Duration::from_millis(10_010), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_the_rate() {
        let bucket = Arc::new(TokenBucket::new(20.0, 1));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let b = bucket.clone();
            tasks.push(tokio::spawn(async move { b.acquire().await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 199 tokens beyond the burst of 1 at 20/s: 9.95 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(9_940), "{took:?}");
        assert!(took <= Duration::from_millis(10_000), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn refills_while_idle_up_to_the_burst() {
        let bucket = TokenBucket::new(1.0, 3);
        for _ in 0..3 {
            bucket.acquire().await;
        }
        tokio::time::sleep(Duration::from_secs(100)).await;
        let start = Instant::now();
        for _ in 0..3 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        bucket.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
