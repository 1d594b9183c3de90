//! Counters behind rate limits and login throttling: fixed windows kept in
//! process, or in Redis when configured so that limits hold across instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where hit counts live.
#[async_trait::async_trait]
pub trait CounterStore: Send + Sync + std::fmt::Debug {
    /// Counts a hit on `key`; a new window of `window` starts with the first
    /// hit. Answers the count so far and how long the window still runs.
    async fn hit(&self, key: &str, window: Duration) -> (u64, Duration);
    /// The count and remaining window of `key`, if a window runs.
    async fn get(&self, key: &str) -> Option<(u64, Duration)>;
    /// True while a window of `key` runs (one round trip where `get` needs two).
    async fn exists(&self, key: &str) -> bool {
        self.get(key).await.is_some()
    }
    /// Forgets `key`.
    async fn reset(&self, key: &str);
}

/// Counters in this process.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    windows: Mutex<HashMap<String, (u64, Instant)>>,
}

impl MemoryCounters {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (u64, Instant)>) -> T) -> T {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        // Keep memory bounded: drop finished windows now and then.
        if windows.len() > 100_000 {
            let now = Instant::now();
            windows.retain(|_, (_, end)| *end > now);
        }
        f(&mut windows)
    }
}

#[async_trait::async_trait]
impl CounterStore for MemoryCounters {
    async fn hit(&self, key: &str, window: Duration) -> (u64, Duration) {
        let now = Instant::now();
        self.with(|windows| {
            let entry = windows.entry(key.to_owned()).or_insert((0, now + window));
            if entry.1 <= now {
                *entry = (0, now + window);
            }
            entry.0 += 1;
            (entry.0, entry.1 - now)
        })
    }

    async fn get(&self, key: &str) -> Option<(u64, Duration)> {
        let now = Instant::now();
        self.with(|windows| {
            windows
                .get(key)
                .filter(|(_, end)| *end > now)
                .map(|(n, end)| (*n, *end - now))
        })
    }

    async fn reset(&self, key: &str) {
        self.with(|windows| windows.remove(key));
    }
}

/// Counters in Redis (INCR with an expiry), shared by every instance of one
/// deployment. Keys live under the deployment's namespace, so deployments (or
/// test runs) sharing a Redis server never share limits or revocations.
#[derive(Clone)]
pub struct RedisCounters {
    client: fred::prelude::Client,
    namespace: String,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisCounters")
    }
}

impl RedisCounters {
    /// Connects to `url`; keys go under `namespace` (the deployment's channel).
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, fred::error::Error> {
        use fred::prelude::*;
        let client = Builder::from_config(Config::from_url(url)?)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()?;
        client.init().await?;
        Ok(Self {
            client,
            namespace: namespace.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:limit:{key}", self.namespace)
    }
}

#[async_trait::async_trait]
impl CounterStore for RedisCounters {
    async fn hit(&self, key: &str, window: Duration) -> (u64, Duration) {
        use fred::prelude::*;
        let key = self.key(key);
        let count: Result<u64, _> = self.client.incr(&key).await;
        let Ok(count) = count else {
            // Redis is down: fail open rather than lock every user out; counted in the log.
            tracing::warn!("rate-limit counter unavailable (Redis)");
            return (0, window);
        };
        if count == 1 {
            let _: Result<(), _> = self.client.pexpire(&key, window.as_millis() as i64, None).await;
            return (1, window);
        }
        let ttl: i64 = self.client.pttl(&key).await.unwrap_or(window.as_millis() as i64);
        if ttl < 0 {
            // A key without expiry (a crash between INCR and PEXPIRE) must not live forever.
            let _: Result<(), _> = self.client.pexpire(&key, window.as_millis() as i64, None).await;
        }
        (count, Duration::from_millis(ttl.max(0) as u64))
    }

    async fn get(&self, key: &str) -> Option<(u64, Duration)> {
        use fred::prelude::*;
        let key = self.key(key);
        let count: Option<u64> = self.client.get(&key).await.ok().flatten();
        let ttl: i64 = self.client.pttl(&key).await.ok()?;
        count
            .filter(|_| ttl > 0)
            .map(|c| (c, Duration::from_millis(ttl as u64)))
    }

    async fn exists(&self, key: &str) -> bool {
        use fred::prelude::*;
        // Expired keys are gone in Redis, so existence is a running window.
        let found: Result<u64, _> = self.client.exists(self.key(key)).await;
        found.is_ok_and(|n| n > 0)
    }

    async fn reset(&self, key: &str) {
        use fred::prelude::*;
        let _: Result<(), _> = self.client.del(self.key(key)).await;
    }
}

/// Shared handle to a counter store.
pub type SharedCounters = Arc<dyn CounterStore>;

/// Whole seconds to wait, at least one.
pub fn retry_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0).max(u64::from(wait.is_zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn windows_count_and_reset() {
        let counters = MemoryCounters::default();
        assert_eq!(counters.hit("a", Duration::from_secs(60)).await.0, 1);
        assert_eq!(counters.hit("a", Duration::from_secs(60)).await.0, 2);
        assert_eq!(counters.get("a").await.map(|(n, _)| n), Some(2));
        counters.reset("a").await;
        assert_eq!(counters.get("a").await, None);
        let (n, left) = counters.hit("b", Duration::from_millis(20)).await;
        assert_eq!(n, 1);
        assert!(left <= Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(counters.hit("b", Duration::from_millis(20)).await.0, 1, "a new window");
        assert_eq!(retry_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_seconds(Duration::ZERO), 1);
    }
}
