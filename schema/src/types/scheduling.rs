//! Slots, holds, appointments and their inputs.

use super::{AppointmentType, Patient, Provider};
use crate::error::service_error;
use crate::loaders::{LoadError, Loaders};
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use domain::ServiceError;
use domain::scheduling as d;
use uuid::Uuid;

/// FHIR R4/R5 Appointment.status.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(remote = "domain::scheduling::AppointmentStatus")]
pub enum AppointmentStatus {
    /// Suggested, not yet agreed.
    Proposed,
    /// Awaiting confirmation.
    Pending,
    /// Confirmed.
    Booked,
    /// The patient is here.
    Arrived,
    /// Checked in, waiting to be seen.
    CheckedIn,
    /// The visit took place.
    Fulfilled,
    /// Cancelled.
    Cancelled,
    /// The patient did not come.
    Noshow,
    /// Recorded by mistake.
    EnteredInError,
    /// On the waiting list.
    Waitlist,
}

use super::events::SlotStatus;

// Registered for its type information; `availableSlots` writes its values
// through `SlotList`.
/// A free interval of one provider.
#[derive(SimpleObject)]
pub struct Slot {
    provider_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    status: SlotStatus,
}

#[cfg(test)]
impl From<&d::Slot> for Slot {
    fn from(slot: &d::Slot) -> Self {
        Self {
            provider_id: slot.provider_id.0,
            start: slot.start,
            end: slot.end,
            status: SlotStatus::Free,
        }
    }
}

/// An interval reserved for the caller for a few minutes.
#[derive(SimpleObject)]
pub struct SlotHold {
    id: Uuid,
    provider_id: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<d::Hold> for SlotHold {
    fn from(hold: d::Hold) -> Self {
        Self {
            id: hold.id.0,
            provider_id: hold.provider_id.0,
            start: hold.start,
            end: hold.end,
            expires_at: hold.expires_at,
        }
    }
}

/// An appointment. Its patient is PHI: reading the appointment is audited.
pub struct Appointment(pub d::Appointment);

fn loaded<T>(result: std::result::Result<Option<T>, LoadError>, what: &'static str) -> Result<T> {
    match result {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(service_error(ServiceError::internal(anyhow::anyhow!(
            "{what} of an appointment is missing"
        )))),
        Err(err) => Err(service_error(ServiceError::internal(anyhow::anyhow!(
            "loading {what}: {err}"
        )))),
    }
}

#[Object]
impl Appointment {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn status(&self) -> AppointmentStatus {
        self.0.status.into()
    }
    async fn start(&self) -> DateTime<Utc> {
        self.0.start
    }
    async fn end(&self) -> DateTime<Utc> {
        self.0.end
    }
    async fn provider(&self, ctx: &Context<'_>) -> Result<Provider> {
        let loaders = ctx.data_unchecked::<Loaders>();
        loaded(loaders.providers.load_one(self.0.provider_id).await, "provider").map(Provider)
    }
    async fn patient(&self, ctx: &Context<'_>) -> Result<Patient> {
        let loaders = ctx.data_unchecked::<Loaders>();
        loaded(loaders.patients.load_one(self.0.patient_id).await, "patient").map(Patient)
    }
    async fn appointment_type(&self, ctx: &Context<'_>) -> Result<AppointmentType> {
        let loaders = ctx.data_unchecked::<Loaders>();
        loaded(
            loaders.appointment_types.load_one(self.0.appointment_type_id).await,
            "appointment type",
        )
        .map(AppointmentType)
    }
    async fn location_id(&self) -> Uuid {
        self.0.location_id.0
    }
    async fn cancellation_reason(&self) -> Option<&str> {
        self.0.cancellation_reason.as_deref()
    }
}

/// A weekly opening in the location's time zone. weekday is ISO 8601: 1 = Monday ... 7 = Sunday.
/// startTime and endTime are local wall-clock times "HH:MM", end exclusive, start before end.
#[derive(InputObject)]
pub struct WeeklyRuleInput {
    /// 1 = Monday ... 7 = Sunday.
    pub weekday: i32,
    /// "HH:MM".
    pub start_time: String,
    /// "HH:MM", up to "24:00".
    pub end_time: String,
}

impl From<WeeklyRuleInput> for d::WeeklyRuleInput {
    fn from(rule: WeeklyRuleInput) -> Self {
        Self {
            weekday: rule.weekday,
            start_time: rule.start_time,
            end_time: rule.end_time,
        }
    }
}

/// Input of `addTimeOff`.
#[derive(InputObject)]
pub struct TimeOffInput {
    /// Whose time.
    pub provider_id: Uuid,
    /// Start.
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
    /// Why (seen by staff only).
    pub reason: Option<String>,
}

/// Input of `availableSlots`.
#[derive(InputObject)]
pub struct AvailableSlotsInput {
    /// Omit to search every provider at the location who offers the type.
    pub provider_id: Option<Uuid>,
    /// The type's location when omitted.
    pub location_id: Option<Uuid>,
    /// What is to be booked.
    pub appointment_type_id: Uuid,
    /// Range start.
    pub from: DateTime<Utc>,
    /// Range end (exclusive); at most 31 days after `from`.
    pub to: DateTime<Utc>,
}

/// Input of `holdSlot`.
#[derive(InputObject)]
pub struct HoldSlotInput {
    /// Whose time.
    pub provider_id: Uuid,
    /// What is to be booked.
    pub appointment_type_id: Uuid,
    /// A slot start.
    pub start: DateTime<Utc>,
}

/// Input of `bookAppointment`.
#[derive(InputObject)]
pub struct BookAppointmentInput {
    /// Whose time.
    pub provider_id: Uuid,
    /// For whom.
    pub patient_id: Uuid,
    /// What.
    pub appointment_type_id: Uuid,
    /// A slot start that availableSlots would offer.
    pub start: DateTime<Utc>,
    /// Book the interval this caller holds.
    pub hold_id: Option<Uuid>,
    /// Retrying with the same key returns the first result instead of booking twice.
    pub idempotency_key: Option<String>,
}

impl From<BookAppointmentInput> for d::NewBooking {
    fn from(input: BookAppointmentInput) -> Self {
        Self {
            provider_id: input.provider_id.into(),
            patient_id: input.patient_id.into(),
            appointment_type_id: input.appointment_type_id.into(),
            start: input.start,
            hold_id: input.hold_id.map(Into::into),
            idempotency_key: input.idempotency_key,
        }
    }
}

/// Filter of `appointments`.
#[derive(InputObject)]
pub struct AppointmentFilter {
    /// At this location.
    pub location_id: Option<Uuid>,
    /// With this provider.
    pub provider_id: Option<Uuid>,
    /// For this patient.
    pub patient_id: Option<Uuid>,
    /// Ending after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Starting before this instant.
    pub to: Option<DateTime<Utc>>,
    /// In one of these statuses.
    pub statuses: Option<Vec<AppointmentStatus>>,
}

impl From<AppointmentFilter> for d::AppointmentFilter {
    fn from(filter: AppointmentFilter) -> Self {
        Self {
            location_id: filter.location_id.map(Into::into),
            provider_id: filter.provider_id.map(Into::into),
            patient_id: filter.patient_id.map(Into::into),
            from: filter.from,
            to: filter.to,
            statuses: filter.statuses.map(|s| s.into_iter().map(Into::into).collect()),
        }
    }
}
