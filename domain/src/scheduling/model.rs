//! The values the scheduling services take and answer.

use super::status::AppointmentStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{AppointmentId, AppointmentTypeId, HoldId, LocationId, PatientId, ProviderId};
use chrono::{DateTime, Duration, Utc};
use entity::appointment;

/// The longest an appointment type may last, in minutes: appointments and
/// holds are never longer (an interval is one type's length), and the
/// database refuses longer ones (migration 000010).
pub const MAX_APPOINTMENT_MINUTES: i32 = 480;

/// How far before a window the start of anything that overlaps it can lie:
/// reads of appointments and holds bound their index range from below with
/// it (`start_at > from - MAX_APPOINTMENT_LENGTH`), so they read the window,
/// not the provider's whole history.
pub const MAX_APPOINTMENT_LENGTH: Duration = Duration::minutes(MAX_APPOINTMENT_MINUTES as i64);

/// A bookable interval of one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Whose time.
    pub provider_id: ProviderId,
    /// Start.
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
}

/// A live reservation of an interval for one caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Id.
    pub id: HoldId,
    /// Whose time.
    pub provider_id: ProviderId,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// When it frees itself.
    pub expires_at: DateTime<Utc>,
}

/// An appointment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appointment {
    /// Id.
    pub id: AppointmentId,
    /// FHIR status.
    pub status: AppointmentStatus,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Provider.
    pub provider_id: ProviderId,
    /// Patient.
    pub patient_id: PatientId,
    /// Type.
    pub appointment_type_id: AppointmentTypeId,
    /// Location.
    pub location_id: LocationId,
    /// Why it was cancelled.
    pub cancellation_reason: Option<String>,
}

impl TryFrom<appointment::Model> for Appointment {
    type Error = ServiceError;

    fn try_from(row: appointment::Model) -> ServiceResult<Self> {
        let status = AppointmentStatus::from_code(&row.status).ok_or_else(|| {
            ServiceError::internal(anyhow::anyhow!(
                "unknown status {:?} in appointment {}",
                row.status,
                row.id
            ))
        })?;
        Ok(Self {
            id: row.id.into(),
            status,
            start: row.start_at,
            end: row.end_at,
            provider_id: row.provider_id.into(),
            patient_id: row.patient_id.into(),
            appointment_type_id: row.appointment_type_id.into(),
            location_id: row.location_id.into(),
            cancellation_reason: row.cancellation_reason,
        })
    }
}

/// Input of `availableSlots`.
#[derive(Clone, Debug)]
pub struct SlotQuery {
    /// One provider, or every provider at the location.
    pub provider_id: Option<ProviderId>,
    /// The location (the type's location when absent).
    pub location_id: Option<LocationId>,
    /// What is to be booked.
    pub appointment_type_id: AppointmentTypeId,
    /// Range start.
    pub from: DateTime<Utc>,
    /// Range end (exclusive).
    pub to: DateTime<Utc>,
}

/// Input of `bookAppointment`.
#[derive(Clone, Debug)]
pub struct NewBooking {
    /// Provider.
    pub provider_id: ProviderId,
    /// Patient.
    pub patient_id: PatientId,
    /// Type.
    pub appointment_type_id: AppointmentTypeId,
    /// Start (a slot start).
    pub start: DateTime<Utc>,
    /// The caller's hold on this interval, if any.
    pub hold_id: Option<HoldId>,
    /// Retrying with the same key answers the first result.
    pub idempotency_key: Option<String>,
}

/// One weekly rule as clients send it.
#[derive(Clone, Debug)]
pub struct WeeklyRuleInput {
    /// ISO weekday, 1 = Monday.
    pub weekday: i32,
    /// `HH:MM`.
    pub start_time: String,
    /// `HH:MM` (up to `24:00`), after the start.
    pub end_time: String,
}

/// Input of `addTimeOff`.
#[derive(Clone, Debug)]
pub struct NewTimeOff {
    /// Provider.
    pub provider_id: ProviderId,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Why (shown to staff only).
    pub reason: Option<String>,
}

/// Filter of `appointments`.
#[derive(Clone, Debug, Default)]
pub struct AppointmentFilter {
    /// Location.
    pub location_id: Option<LocationId>,
    /// Provider.
    pub provider_id: Option<ProviderId>,
    /// Patient.
    pub patient_id: Option<PatientId>,
    /// Appointments ending after this.
    pub from: Option<DateTime<Utc>>,
    /// Appointments starting before this.
    pub to: Option<DateTime<Utc>>,
    /// Only these statuses.
    pub statuses: Option<Vec<AppointmentStatus>>,
}
