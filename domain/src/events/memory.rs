//! The in-process bus, for a single instance (no `REDIS_URL`).

use super::{DomainEvent, EventBus, metric};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The in-process bus: a tokio broadcast channel.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    sender: broadcast::Sender<Arc<DomainEvent>>,
}

impl MemoryBus {
    /// A bus whose receivers may fall `capacity` events behind before they lag.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        Self { sender }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

#[async_trait::async_trait]
impl EventBus for MemoryBus {
    async fn publish(&self, event: DomainEvent) {
        metrics::counter!(metric::PUBLISHED).increment(1);
        // No receivers is not an error: nobody is listening right now.
        let _ = self.sender.send(Arc::new(event));
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<DomainEvent>> {
        self.sender.subscribe()
    }

    async fn healthy(&self) -> bool {
        true
    }
}
