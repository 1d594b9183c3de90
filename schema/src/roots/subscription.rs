//! Live events over websockets.

use crate::{IntoGqlResult, caller, services};
use async_graphql::{Context, Enum, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use domain::events::{self as ev, DomainEvent};
use futures_util::Stream;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// FHIR Slot.status.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::events::SlotStatus")]
pub enum SlotStatus {
    /// Bookable.
    Free,
    /// Booked.
    Busy,
    /// Held for someone.
    BusyTentative,
    /// Unavailable (time off, closed).
    BusyUnavailable,
}

/// Why availability changed.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::events::SlotChangeReason")]
pub enum SlotChangeReason {
    /// An appointment took the interval.
    Booked,
    /// An appointment or hold let go of it.
    Released,
    /// A hold took it.
    Held,
    /// A hold ran out.
    HoldExpired,
    /// Weekly rules or time off changed.
    AvailabilityChanged,
}

/// BOOKED and HELD come with status BUSY or BUSY_TENTATIVE; RELEASED and HOLD_EXPIRED with FREE.
#[derive(SimpleObject, Clone, Debug)]
pub struct SlotsChangedEvent {
    provider_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    status: SlotStatus,
    reason: SlotChangeReason,
}

impl From<&ev::SlotEvent> for SlotsChangedEvent {
    fn from(e: &ev::SlotEvent) -> Self {
        Self {
            provider_id: e.provider_id.0,
            start: e.start,
            end: e.end,
            status: e.status.into(),
            reason: e.reason.into(),
        }
    }
}

/// Every subscription.
#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Availability changes of one provider inside [from, to). Carries no PHI.
    async fn slots_changed(
        &self,
        ctx: &Context<'_>,
        provider_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<impl Stream<Item = SlotsChangedEvent> + use<>> {
        caller(ctx).actor().gql()?;
        if from >= to {
            return Err(crate::service_error(domain::ServiceError::bad_input(
                "to",
                "to must be after from",
            )));
        }
        let receiver = services(ctx).bus.subscribe();
        Ok(events(receiver, move |event| match event.as_ref() {
            DomainEvent::Slot(slot) if slot.provider_id.0 == provider_id && slot.start < to && slot.end > from => {
                Some(SlotsChangedEvent::from(slot))
            }
            _ => None,
        }))
    }
}

/// The stream of bus events that `select` keeps. A receiver that falls behind
/// skips what it missed, logs it, and goes on; it never ends silently.
fn events<T: Send + 'static>(
    receiver: tokio::sync::broadcast::Receiver<Arc<DomainEvent>>,
    select: impl Fn(&Arc<DomainEvent>) -> Option<T> + Send + 'static,
) -> impl Stream<Item = T> {
    futures_util::stream::unfold((receiver, select), |(mut receiver, select)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    if let Some(item) = select(&event) {
                        return Some((item, (receiver, select)));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "subscriber lagged behind the event bus");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}
