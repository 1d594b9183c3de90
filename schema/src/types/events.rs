//! Event payloads of the subscriptions.

use super::Appointment;
use async_graphql::{Enum, SimpleObject};
use chrono::{DateTime, Utc};
use domain::events as ev;
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
    /// Whose time.
    provider_id: Uuid,
    /// Interval start.
    start: DateTime<Utc>,
    /// Interval end (exclusive).
    end: DateTime<Utc>,
    /// The interval's new status.
    status: SlotStatus,
    /// Why it changed.
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

/// What happened to an appointment.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::events::AppointmentEventKind")]
pub enum AppointmentEventKind {
    /// Booked.
    Created,
    /// Status or time changed.
    Updated,
    /// Cancelled.
    Cancelled,
}

/// A change of one appointment at a location.
#[derive(SimpleObject)]
pub struct AppointmentEvent {
    /// What happened.
    pub kind: AppointmentEventKind,
    /// The appointment as it is now.
    pub appointment: Appointment,
}
