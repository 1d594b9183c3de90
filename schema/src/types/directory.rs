//! Locations, providers, patients, appointment types.

use crate::scalars::Date;
use async_graphql::{InputObject, MaybeUndefined, Object};
use domain::directory as d;
use uuid::Uuid;

/// A clinic location.
pub struct Location(pub d::Location);

#[Object]
impl Location {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// IANA time zone; weekly availability is expressed in it.
    async fn time_zone(&self) -> &str {
        &self.0.time_zone
    }
    /// Within this many minutes of the start a patient can no longer cancel or
    /// reschedule by themself.
    async fn cancel_notice_minutes(&self) -> i32 {
        self.0.cancel_notice_minutes
    }
}

/// A clinician whose time is booked.
pub struct Provider(pub d::Provider);

#[Object]
impl Provider {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn location_ids(&self) -> Vec<Uuid> {
        self.0.location_ids.iter().map(|l| l.0).collect()
    }
}

/// Protected health information: every read is audited; stored encrypted.
pub struct Patient(pub d::Patient);

#[Object]
impl Patient {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn birth_date(&self) -> Date {
        Date(self.0.birth_date)
    }
    async fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    /// Whether reminders may go by email (set with `updatePatient`).
    async fn notify_by_email(&self) -> bool {
        self.0.notify_by_email
    }
    /// Whether reminders may go by SMS (set with `updatePatient`).
    async fn notify_by_sms(&self) -> bool {
        self.0.notify_by_sms
    }
}

/// A kind of visit offered at a location.
pub struct AppointmentType(pub d::AppointmentType);

#[Object]
impl AppointmentType {
    async fn id(&self) -> Uuid {
        self.0.id.0
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn duration_minutes(&self) -> i32 {
        self.0.duration_minutes
    }
    async fn location_id(&self) -> Uuid {
        self.0.location_id.0
    }
    /// Free time kept before each visit.
    async fn buffer_before_minutes(&self) -> i32 {
        self.0.buffer_before_minutes
    }
    /// Free time kept after each visit.
    async fn buffer_after_minutes(&self) -> i32 {
        self.0.buffer_after_minutes
    }
    /// Start-time grid in minutes; the duration when null.
    async fn slot_interval_minutes(&self) -> Option<i32> {
        self.0.slot_interval_minutes
    }
    /// How long before its start a visit can still be booked.
    async fn min_notice_minutes(&self) -> i32 {
        self.0.min_notice_minutes
    }
    /// How many days ahead a visit can be booked; unlimited when null.
    async fn max_advance_days(&self) -> Option<i32> {
        self.0.max_advance_days
    }
}

/// Input of `createLocation`.
#[derive(InputObject)]
pub struct CreateLocationInput {
    /// Display name.
    pub name: String,
    /// IANA time zone, e.g. `America/New_York`.
    pub time_zone: String,
    /// Patients' cancellation and rescheduling notice window in minutes (default 1440).
    pub cancel_notice_minutes: Option<i32>,
    /// Reminders this many minutes before the start (up to 5); the deployment's
    /// default (24 h and 2 h) when absent, none when empty.
    pub reminder_offsets_minutes: Option<Vec<i32>>,
    /// Local hours with no SMS, `HH:MM-HH:MM` (e.g. `21:00-08:00`) or `off`;
    /// the deployment's default when absent.
    pub sms_quiet_hours: Option<String>,
}

/// Input of `createProvider`.
#[derive(InputObject)]
pub struct CreateProviderInput {
    /// Display name.
    pub name: String,
    /// Sign-in email.
    pub email: String,
    /// Initial password (12 characters or more).
    pub password: String,
    /// Locations they work at.
    pub location_ids: Vec<Uuid>,
}

/// Input of `createPatient`.
#[derive(InputObject)]
pub struct CreatePatientInput {
    /// Full name.
    pub name: String,
    /// Date of birth.
    pub birth_date: Date,
    /// Contact email; with a password, also the sign-in.
    pub email: Option<String>,
    /// Contact phone in international form.
    pub phone: Option<String>,
    /// Creates a PATIENT sign-in when given.
    pub password: Option<String>,
    /// Where the patient registers; STAFF of that location see them. STAFF
    /// working at a single location may omit it.
    pub location_id: Option<Uuid>,
}

/// Input of `updatePatient`: an absent field is left alone; `null` clears email or phone.
#[derive(InputObject)]
pub struct UpdatePatientInput {
    /// New full name.
    pub name: Option<String>,
    /// New contact email, or null to clear.
    pub email: MaybeUndefined<String>,
    /// New contact phone, or null to clear.
    pub phone: MaybeUndefined<String>,
    /// Accept (true) or refuse (false) appointment emails.
    pub notify_by_email: Option<bool>,
    /// Accept (true) or refuse (false) appointment SMS.
    pub notify_by_sms: Option<bool>,
}

/// Input of `createAppointmentType`.
#[derive(InputObject)]
pub struct CreateAppointmentTypeInput {
    /// Display name.
    pub name: String,
    /// Length of the visit (5 to 480).
    pub duration_minutes: i32,
    /// Where it is offered.
    pub location_id: Uuid,
    /// Free time kept before each visit.
    pub buffer_before_minutes: Option<i32>,
    /// Free time kept after each visit.
    pub buffer_after_minutes: Option<i32>,
    /// Start-time grid in minutes; the duration when absent.
    pub slot_interval_minutes: Option<i32>,
    /// How long before its start a visit can still be booked.
    pub min_notice_minutes: Option<i32>,
    /// How many days ahead a visit can be booked.
    pub max_advance_days: Option<i32>,
    /// Reminders this many minutes before the start (up to 5), overriding the
    /// location's; none when empty.
    pub reminder_offsets_minutes: Option<Vec<i32>>,
}

fn maybe(value: MaybeUndefined<String>) -> Option<Option<String>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

impl From<UpdatePatientInput> for d::PatientUpdate {
    fn from(input: UpdatePatientInput) -> Self {
        Self {
            name: input.name,
            email: maybe(input.email),
            phone: maybe(input.phone),
            notify_email: input.notify_by_email,
            notify_sms: input.notify_by_sms,
        }
    }
}

impl From<CreatePatientInput> for d::NewPatient {
    fn from(input: CreatePatientInput) -> Self {
        Self {
            name: input.name,
            birth_date: input.birth_date.0,
            email: input.email,
            phone: input.phone,
            password: input.password,
            location_id: input.location_id.map(Into::into),
        }
    }
}

impl From<CreateAppointmentTypeInput> for d::NewAppointmentType {
    fn from(input: CreateAppointmentTypeInput) -> Self {
        Self {
            name: input.name,
            duration_minutes: input.duration_minutes,
            location_id: input.location_id.into(),
            buffer_before_minutes: input.buffer_before_minutes,
            buffer_after_minutes: input.buffer_after_minutes,
            slot_interval_minutes: input.slot_interval_minutes,
            min_notice_minutes: input.min_notice_minutes,
            max_advance_days: input.max_advance_days,
            reminder_offsets_minutes: input.reminder_offsets_minutes,
        }
    }
}
