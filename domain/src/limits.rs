//! Counters behind rate limits and login throttling: fixed windows kept in
//! process, or in Redis when configured so that limits hold across instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where hit counts live.
#[async_trait::async_trait]
pub trait CounterStore: Send + Sync + std::fmt::Debug {
    /// Counts a hit on `key`; a new window of `window` starts with the first
    /// hit. Answers the count so far (what is left of the window: [`Self::get`],
    /// or a [`CounterOp::Hit`] with a limit).
    async fn hit(&self, key: &str, window: Duration) -> u64 {
        let op = CounterOp::Hit {
            key,
            window,
            limit: u64::MAX,
        };
        match self.batch(&[op]).await[..] {
            [CounterAnswer::Hit { count, .. }] => count,
            _ => 0,
        }
    }
    /// Runs `ops` in order and answers each, in order. Stores that talk to a
    /// server do the whole batch in one round trip.
    async fn batch(&self, ops: &[CounterOp<'_>]) -> Vec<CounterAnswer>;
    /// The count and remaining window of `key`, if a window runs.
    async fn get(&self, key: &str) -> Option<(u64, Duration)>;
    /// True while a window of `key` runs (one round trip where `get` needs two).
    async fn exists(&self, key: &str) -> bool {
        self.get(key).await.is_some()
    }
    /// Forgets `key`.
    async fn reset(&self, key: &str);
}

/// One operation of a [`CounterStore::batch`].
#[derive(Clone, Copy, Debug)]
pub enum CounterOp<'a> {
    /// [`CounterStore::hit`].
    Hit {
        /// The counter.
        key: &'a str,
        /// Its window, when this hit starts one.
        window: Duration,
        /// The caller's limit: only a count past it needs to know how long
        /// the window still runs, and a store that pays a command for that
        /// (Redis) asks only then.
        limit: u64,
    },
    /// [`CounterStore::exists`].
    Exists {
        /// The counter.
        key: &'a str,
    },
}

/// What one [`CounterOp`] answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterAnswer {
    /// The count so far and how long the window still runs.
    Hit {
        /// Hits in this window, this one included.
        count: u64,
        /// What is left of the window: always when `count` passed the op's
        /// `limit`, otherwise only if the store knew it anyway.
        left: Option<Duration>,
    },
    /// Whether a window runs.
    Exists(bool),
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

    /// Counts a hit: the count so far and what is left of the window.
    fn count(&self, key: &str, window: Duration) -> (u64, Duration) {
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
}

#[async_trait::async_trait]
impl CounterStore for MemoryCounters {
    async fn batch(&self, ops: &[CounterOp<'_>]) -> Vec<CounterAnswer> {
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            answers.push(match *op {
                CounterOp::Hit { key, window, .. } => {
                    let (count, left) = self.count(key, window);
                    CounterAnswer::Hit {
                        count,
                        left: Some(left),
                    }
                }
                CounterOp::Exists { key } => CounterAnswer::Exists(self.exists(key).await),
            });
        }
        answers
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
    async fn batch(&self, ops: &[CounterOp<'_>]) -> Vec<CounterAnswer> {
        use fred::prelude::*;
        use fred::types::ExpireOptions;
        // One pipeline, one round trip. A hit is INCR, then PEXPIRE NX (a window
        // starts with its first hit, and a key never lives without an expiry);
        // a check is EXISTS. What is left of a window (PTTL) is asked in a
        // second trip, only for counts past their limit: a refused request.
        let pipeline = self.client.pipeline();
        let queued: Result<(), Error> = async {
            for op in ops {
                match *op {
                    CounterOp::Hit { key, window, .. } => {
                        let key = self.key(key);
                        pipeline.incr::<(), _>(&key).await?;
                        pipeline
                            .pexpire::<(), _>(&key, window.as_millis() as i64, Some(ExpireOptions::NX))
                            .await?;
                    }
                    CounterOp::Exists { key } => pipeline.exists::<(), _>(self.key(key)).await?,
                }
            }
            Ok(())
        }
        .await;
        let replies = match queued {
            Ok(()) => pipeline.try_all::<i64>().await,
            Err(e) => vec![Err(e)],
        };
        let reply = |i: usize| replies.get(i).and_then(|r| r.as_ref().ok().copied());
        let mut next = 0;
        let mut unavailable = false;
        let mut answers: Vec<CounterAnswer> = ops
            .iter()
            .map(|op| match *op {
                CounterOp::Hit { window, .. } => {
                    let count = reply(next);
                    next += 2;
                    match count {
                        Some(count) => CounterAnswer::Hit {
                            count: u64::try_from(count).unwrap_or(0),
                            left: None,
                        },
                        // Redis is down: fail open rather than lock every user out.
                        None => {
                            unavailable = true;
                            CounterAnswer::Hit {
                                count: 0,
                                left: Some(window),
                            }
                        }
                    }
                }
                CounterOp::Exists { .. } => {
                    let found = reply(next);
                    next += 1;
                    unavailable |= found.is_none();
                    CounterAnswer::Exists(found.is_some_and(|n| n > 0))
                }
            })
            .collect();
        for (op, answer) in ops.iter().zip(answers.iter_mut()) {
            if let (
                CounterOp::Hit { key, window, limit },
                CounterAnswer::Hit {
                    count,
                    left: left @ None,
                },
            ) = (*op, &mut *answer)
                && *count > limit
            {
                let ttl: Option<i64> = self.client.pttl(self.key(key)).await.ok();
                // A key that just expired (or a failed read): the whole window.
                *left = Some(match ttl {
                    Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
                    _ => window,
                });
            }
        }
        if unavailable {
            tracing::warn!("rate-limit and session counters unavailable (Redis)");
        }
        answers
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
        // Expired keys are gone in Redis, so existence is a running window.
        matches!(
            self.batch(&[CounterOp::Exists { key }]).await[..],
            [CounterAnswer::Exists(true)]
        )
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
        assert_eq!(counters.hit("a", Duration::from_secs(60)).await, 1);
        assert_eq!(counters.hit("a", Duration::from_secs(60)).await, 2);
        assert_eq!(counters.get("a").await.map(|(n, _)| n), Some(2));
        counters.reset("a").await;
        assert_eq!(counters.get("a").await, None);
        assert_eq!(counters.hit("b", Duration::from_millis(20)).await, 1);
        let left = counters.get("b").await.map(|(_, left)| left);
        assert!(left.is_some_and(|left| left <= Duration::from_millis(20)), "{left:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(counters.hit("b", Duration::from_millis(20)).await, 1, "a new window");
        assert_eq!(retry_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_seconds(Duration::ZERO), 1);
    }

    /// The same batch answers the same on both stores: hits count within a
    /// window that starts with the first hit, checks see running windows only,
    /// and a count past its op's limit says how long its window still runs.
    async fn batches_count_hits_and_check_marks(store: &dyn CounterStore, prefix: &str) {
        let (a, b, mark) = (format!("{prefix}a"), format!("{prefix}b"), format!("{prefix}mark"));
        let minute = Duration::from_secs(60);
        let ops = [
            CounterOp::Hit {
                key: &a,
                window: minute,
                limit: 1,
            },
            CounterOp::Exists { key: &mark },
            CounterOp::Hit {
                key: &b,
                window: Duration::from_millis(300),
                limit: 100,
            },
        ];
        let first = store.batch(&ops).await;
        assert!(matches!(first[0], CounterAnswer::Hit { count: 1, .. }));
        assert_eq!(first[1], CounterAnswer::Exists(false));
        assert!(matches!(first[2], CounterAnswer::Hit { count: 1, .. }));
        store.hit(&mark, minute).await;
        let second = store.batch(&ops).await;
        assert!(
            matches!(second[0], CounterAnswer::Hit { count: 2, left: Some(left) } if left <= minute && left > minute / 2),
            "past the limit of 1, the window's rest: {second:?}"
        );
        assert_eq!(second[1], CounterAnswer::Exists(true));
        assert!(matches!(second[2], CounterAnswer::Hit { count: 2, .. }));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let third = store.batch(&ops).await;
        assert!(matches!(third[0], CounterAnswer::Hit { count: 3, .. }));
        assert!(
            matches!(third[2], CounterAnswer::Hit { count: 1, .. }),
            "b's window ended: {third:?}"
        );
        assert!(store.exists(&mark).await);
        store.reset(&mark).await;
        assert!(!store.exists(&mark).await);
    }

    #[tokio::test]
    async fn memory_batches() {
        batches_count_hits_and_check_marks(&MemoryCounters::default(), "").await;
    }

    #[tokio::test]
    async fn redis_batches_in_one_pipeline() {
        let url = std::env::var("CARESLOT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let namespace = format!("careslot-test-{}", uuid::Uuid::new_v4().simple());
        let store = RedisCounters::connect(&url, &namespace)
            .await
            .expect("Redis must be running for the tests (see README)");
        batches_count_hits_and_check_marks(&store, "").await;
        // Under its limit a hit costs no PTTL: what is left is not read.
        let fresh = format!("fresh-{}", uuid::Uuid::new_v4().simple());
        let op = CounterOp::Hit {
            key: &fresh,
            window: Duration::from_secs(60),
            limit: 5,
        };
        assert_eq!(
            store.batch(&[op]).await,
            vec![CounterAnswer::Hit { count: 1, left: None }]
        );
        // Past it, the window's rest is read.
        let past = CounterOp::Hit {
            key: &fresh,
            window: Duration::from_secs(60),
            limit: 1,
        };
        let answer = store.batch(&[past]).await;
        assert!(
            matches!(answer[..], [CounterAnswer::Hit { count: 2, left: Some(left) }]
                if left > Duration::from_secs(30) && left <= Duration::from_secs(60)),
            "{answer:?}"
        );
        assert_eq!(store.hit(&fresh, Duration::from_secs(60)).await, 3, "hit counts on");
        // Keys live under the namespace only.
        assert_eq!(store.key("x"), format!("{namespace}:limit:x"));
    }
}
