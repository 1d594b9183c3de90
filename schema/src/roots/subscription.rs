//! Live events over websockets.

use crate::types::{Appointment, AppointmentEvent, SlotsChangedEvent};
use crate::{IntoGqlResult, caller, services};
use async_graphql::{Context, Result, Subscription};
use chrono::{DateTime, Utc};
use domain::events::DomainEvent;
use futures_util::{Stream, StreamExt};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

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
    ) -> Result<impl Stream<Item = Result<SlotsChangedEvent>> + use<>> {
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

    /// Every appointment change at a location, for front-desk calendars (ADMIN,
    /// and STAFF who work at the location).
    async fn appointments_changed(
        &self,
        ctx: &Context<'_>,
        location_id: Uuid,
    ) -> Result<impl Stream<Item = Result<AppointmentEvent>> + use<>> {
        caller(ctx).actor().gql()?.require_manages(location_id.into()).gql()?;
        let services = services(ctx).clone();
        let receiver = services.bus.subscribe();
        let selected = events(receiver, move |event| match event.as_ref() {
            DomainEvent::Appointment(change) if change.location_id.0 == location_id => Some(change.clone()),
            _ => None,
        });
        Ok(selected.filter_map(move |change| {
            let services = services.clone();
            async move {
                // A missed-events error goes through as it is (the stream ends after it).
                let change = match change {
                    Ok(change) => change,
                    Err(missed) => return Some(Err(missed)),
                };
                // The event names the appointment; its current state is read once per
                // event per subscriber, so a late subscriber never sees stale data.
                match services.appointment_unchecked(change.appointment_id).await {
                    Ok(Some(appointment)) => Some(Ok(AppointmentEvent {
                        kind: change.kind.into(),
                        appointment: Appointment(appointment),
                    })),
                    Ok(None) => None,
                    Err(err) => {
                        tracing::warn!(error = %err, "appointment event dropped: reading it failed");
                        None
                    }
                }
            }
        }))
    }
}

/// Metric: subscriptions open on this instance.
pub const ACTIVE_SUBSCRIPTIONS: &str = "careslot_subscriptions_active";
/// Metric: events delivered to subscribers.
pub const DELIVERED: &str = "careslot_subscription_events_delivered_total";
/// Metric: events a subscriber missed because it fell behind the bus.
pub const DROPPED: &str = "careslot_subscription_events_dropped_total";

/// Counts one open subscription while it lives, and the events it delivers.
struct Active {
    /// The delivery counter, looked up once rather than per event.
    delivered: metrics::Counter,
}

impl Active {
    fn new() -> Self {
        metrics::gauge!(ACTIVE_SUBSCRIPTIONS).increment(1.0);
        Self {
            delivered: metrics::counter!(DELIVERED),
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        metrics::gauge!(ACTIVE_SUBSCRIPTIONS).decrement(1.0);
    }
}

/// The stream of bus events that `select` keeps.
///
/// A receiver that falls behind the bus (more than its capacity of events
/// unread) has lost events for good. It never goes on silently: the client gets
/// one error saying how many it missed (code `INTERNAL`, so generic clients treat
/// it as a failed subscription), then the subscription completes, so the client
/// subscribes again and refetches. The loss is logged and counted as well.
fn events<T: Send + 'static>(
    receiver: tokio::sync::broadcast::Receiver<Arc<DomainEvent>>,
    select: impl Fn(&Arc<DomainEvent>) -> Option<T> + Send + 'static,
) -> impl Stream<Item = Result<T>> {
    futures_util::stream::unfold(Some((receiver, select, Active::new())), |state| async move {
        let (mut receiver, select, active) = state?;
        loop {
            match receiver.recv().await {
                Ok(event) => {
                    if let Some(item) = select(&event) {
                        active.delivered.increment(1);
                        return Some((Ok(item), Some((receiver, select, active))));
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    metrics::counter!(DROPPED).increment(missed);
                    tracing::warn!(
                        missed,
                        "a subscriber fell behind the event bus; ending its subscription"
                    );
                    return Some((Err(missed_events(missed)), None));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// The error a subscription ends with when it fell behind the bus.
fn missed_events(missed: u64) -> async_graphql::Error {
    use async_graphql::ErrorExtensions as _;
    async_graphql::Error::new(format!(
        "this subscription fell behind and missed {missed} events; subscribe again and refetch"
    ))
    .extend_with(|_, ext| {
        ext.set("code", crate::ErrorCode::Internal.as_str());
        ext.set("missedEvents", missed);
    })
}
