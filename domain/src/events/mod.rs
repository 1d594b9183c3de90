//! Domain events and the bus that carries them to every API instance.
//!
//! Events are published only after the change that caused them has committed.
//! Each carries enough (provider, location, interval, status) for a subscriber to
//! filter without a database round-trip.

use crate::ids::{AppointmentId, LocationId, PatientId, ProviderId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::broadcast;

mod memory;
mod redis;

pub use memory::MemoryBus;
pub use redis::RedisBus;

/// Version of the serialized event format; instances of two releases can share a
/// channel as long as they agree on it.
pub const EVENT_FORMAT_VERSION: u32 = 1;

/// FHIR Slot.status, as seen by subscribers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlotStatus {
    /// Bookable.
    Free,
    /// Booked.
    Busy,
    /// Held for someone.
    BusyTentative,
    /// Not available for other reasons (time off, closed).
    BusyUnavailable,
}

/// Why availability changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlotChangeReason {
    /// An appointment took the interval.
    Booked,
    /// An appointment or hold let go of the interval.
    Released,
    /// A hold took the interval.
    Held,
    /// A hold ran out.
    HoldExpired,
    /// Weekly rules or time off changed.
    AvailabilityChanged,
}

/// A change of one provider's availability over an interval.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotEvent {
    /// Whose time.
    pub provider_id: ProviderId,
    /// Interval start.
    pub start: DateTime<Utc>,
    /// Interval end (exclusive).
    pub end: DateTime<Utc>,
    /// The interval's new status.
    pub status: SlotStatus,
    /// Why.
    pub reason: SlotChangeReason,
}

/// What happened to an appointment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppointmentEventKind {
    /// Booked.
    Created,
    /// Status or time changed.
    Updated,
    /// Cancelled.
    Cancelled,
}

/// A change of one appointment, for front-desk calendars.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentEvent {
    /// What happened.
    pub kind: AppointmentEventKind,
    /// The appointment.
    pub appointment_id: AppointmentId,
    /// Its location (the subscription filter).
    pub location_id: LocationId,
    /// Its provider.
    pub provider_id: ProviderId,
    /// Its patient.
    pub patient_id: PatientId,
}

/// Everything that travels on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DomainEvent {
    /// Availability changed.
    Slot(SlotEvent),
    /// An appointment changed.
    Appointment(AppointmentEvent),
}

/// The wire form of an event: versioned, so mixed releases can tell what they read.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// [`EVENT_FORMAT_VERSION`] of the writer.
    pub v: u32,
    /// The event.
    pub event: DomainEvent,
}

impl EventEnvelope {
    /// Serializes `event` for the wire.
    pub fn encode(event: &DomainEvent) -> serde_json::Result<String> {
        serde_json::to_string(&EventEnvelope {
            v: EVENT_FORMAT_VERSION,
            event: event.clone(),
        })
    }

    /// Reads an event written by any release; `None` for a newer format this
    /// release cannot read (it is skipped and counted, not misread).
    pub fn decode(text: &str) -> Option<DomainEvent> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        if value.get("v").and_then(serde_json::Value::as_u64) != Some(u64::from(EVENT_FORMAT_VERSION)) {
            return None;
        }
        serde_json::from_value::<EventEnvelope>(value).ok().map(|e| e.event)
    }
}

/// Carries events to subscribers of this instance (and, for a distributed bus,
/// of every other instance).
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Publishes an event; failures are logged and counted, never returned: the
    /// change has committed already and must not be reported as failed.
    async fn publish(&self, event: DomainEvent);
    /// A receiver of every event from now on.
    fn subscribe(&self) -> broadcast::Receiver<Arc<DomainEvent>>;
    /// True while the bus can deliver (for readiness).
    async fn healthy(&self) -> bool;
}

/// Shared handle to the bus.
pub type SharedBus = Arc<dyn EventBus>;

/// Metric names of the bus, shared by both implementations.
pub mod metric {
    /// Events handed to the bus by services.
    pub const PUBLISHED: &str = "careslot_bus_events_published_total";
    /// Events the bus could not send to Redis (delivered locally instead).
    pub const PUBLISH_FAILED: &str = "careslot_bus_publish_failures_total";
    /// Events received from Redis.
    pub const RECEIVED: &str = "careslot_bus_events_received_total";
    /// Events skipped: unreadable, of another format version, or missed by a lagging receiver.
    pub const DROPPED: &str = "careslot_bus_events_dropped_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_and_version_check() {
        let event = DomainEvent::Slot(SlotEvent {
            provider_id: crate::ids::ProviderId::new(),
            start: chrono::Utc::now(),
            end: chrono::Utc::now(),
            status: SlotStatus::Busy,
            reason: SlotChangeReason::Booked,
        });
        let text = EventEnvelope::encode(&event).expect("encodes");
        assert_eq!(EventEnvelope::decode(&text), Some(event));
        let newer = text.replace("\"v\":1", "\"v\":2");
        assert_eq!(EventEnvelope::decode(&newer), None);
        assert_eq!(EventEnvelope::decode("not json"), None);
    }
}
