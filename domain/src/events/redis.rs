//! The distributed bus: Redis pub/sub through `fred`.
//!
//! Each API instance holds one publisher connection and one subscriber
//! connection (not one per websocket) and fans received events out in process
//! through a broadcast channel. The subscriber reconnects with backoff and
//! resubscribes by itself; meanwhile `healthy()` is false, so `/readyz` reports
//! the outage. A publish that Redis refuses is still delivered to this
//! instance's own subscribers, and counted.

use super::{DomainEvent, EventBus, EventEnvelope, metric};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

/// Redis pub/sub bus.
#[derive(Clone)]
pub struct RedisBus {
    publisher: Client,
    subscriber: SubscriberClient,
    channel: Arc<str>,
    local: broadcast::Sender<Arc<DomainEvent>>,
    _tasks: Arc<[AbortOnDrop; 2]>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// A background task that ends with the bus.
struct AbortOnDrop<T = ()>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisBus {
    /// Connects to `url` and subscribes to `channel`; receivers may fall
    /// `capacity` events behind before they lag.
    pub async fn connect(url: &str, channel: &str, capacity: usize) -> Result<Self, Error> {
        let config = Config::from_url(url)?;
        let mut builder = Builder::from_config(config);
        builder
            // Retry forever: 100 ms doubling to 5 s between attempts.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
                c.internal_command_timeout = Duration::from_secs(5);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = Duration::from_secs(2);
            });
        let publisher = builder.build()?;
        // fred hands received messages to `forward` through a broadcast channel
        // of 32 by default. While the instance is busy fanning an event out to
        // thousands of websockets, the forwarder may not run for a few seconds;
        // 32 messages of backlog then lagged and dropped whole events for every
        // subscriber (the fan-out bench lost 3-4 of 100). Give it the same room
        // as the local receivers. Only the subscriber: every broadcast channel
        // of a client is allocated at this size (~5 MB at idle for both clients).
        builder.with_performance_config(|p| p.broadcast_channel_capacity = capacity);
        let subscriber = builder.build_subscriber_client()?;
        publisher.init().await?;
        subscriber.init().await?;
        // Resubscribes after every reconnect.
        let resubscriber = subscriber.manage_subscriptions();
        let (local, _) = broadcast::channel(capacity);
        let forwarder = tokio::spawn(forward(subscriber.message_rx(), local.clone()));
        subscriber.subscribe(channel).await?;
        Ok(Self {
            publisher,
            subscriber,
            channel: channel.into(),
            local,
            _tasks: Arc::new([AbortOnDrop(forwarder), AbortOnDrop(resubscriber)]),
        })
    }
}

/// Moves events from the Redis subscriber to local receivers. A lag of the
/// Redis message channel is logged and counted; the loop never ends on it.
async fn forward(mut messages: broadcast::Receiver<Message>, local: broadcast::Sender<Arc<DomainEvent>>) {
    loop {
        match messages.recv().await {
            Ok(message) => {
                let decoded = message
                    .value
                    .convert::<String>()
                    .ok()
                    .and_then(|text: String| EventEnvelope::decode(&text));
                match decoded {
                    Some(event) => {
                        metrics::counter!(metric::RECEIVED).increment(1);
                        let _ = local.send(Arc::new(event));
                    }
                    None => {
                        metrics::counter!(metric::DROPPED, "reason" => "unreadable").increment(1);
                        tracing::warn!(channel = %message.channel, "skipped an event this release cannot read");
                    }
                }
            }
            Err(RecvError::Lagged(missed)) => {
                metrics::counter!(metric::DROPPED, "reason" => "redis_lagged").increment(missed);
                tracing::warn!(missed, "the Redis subscriber fell behind; events were skipped");
            }
            Err(RecvError::Closed) => {
                tracing::warn!("the Redis subscriber stopped");
                return;
            }
        }
    }
}

#[async_trait::async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: DomainEvent) {
        let span = tracing::info_span!(
            "redis.publish",
            otel.kind = "producer",
            messaging.system = "redis",
            messaging.destination.name = %self.channel,
        );
        self.publish_in_span(event).instrument(span).await;
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<DomainEvent>> {
        self.local.subscribe()
    }

    async fn healthy(&self) -> bool {
        self.publisher.is_connected() && self.subscriber.is_connected()
    }
}

impl RedisBus {
    async fn publish_in_span(&self, event: DomainEvent) {
        metrics::counter!(metric::PUBLISHED).increment(1);
        let text = match EventEnvelope::encode(&event) {
            Ok(text) => text,
            Err(err) => {
                tracing::error!(error = %err, "an event could not be serialized");
                return;
            }
        };
        let sent: Result<(), Error> = self.publisher.publish(self.channel.as_ref(), text).await;
        if let Err(err) = sent {
            metrics::counter!(metric::PUBLISH_FAILED).increment(1);
            tracing::warn!(error = %err, "Redis refused an event; delivering it to this instance only");
            let _ = self.local.send(Arc::new(event));
        }
    }
}
