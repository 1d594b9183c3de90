//! Appointment types: what can be booked at a location, and how long it takes.

use crate::error::{ServiceError, ServiceResult};
use crate::ids::{AppointmentTypeId, LocationId};
use crate::scheduling::MAX_APPOINTMENT_MINUTES;
use crate::services::{Caller, Services};
use crate::validate;
use entity::{appointment_type, location};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder};

/// An appointment type as shown to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppointmentType {
    /// Id.
    pub id: AppointmentTypeId,
    /// Name.
    pub name: String,
    /// Length of the visit.
    pub duration_minutes: i32,
    /// Where it is offered.
    pub location_id: LocationId,
    /// Free time kept before the visit.
    pub buffer_before_minutes: i32,
    /// Free time kept after the visit.
    pub buffer_after_minutes: i32,
    /// Start-time grid; the duration when absent.
    pub slot_interval_minutes: Option<i32>,
    /// How long before its start a visit can still be booked.
    pub min_notice_minutes: i32,
    /// How many days ahead it can be booked.
    pub max_advance_days: Option<i32>,
}

impl From<appointment_type::Model> for AppointmentType {
    fn from(row: appointment_type::Model) -> Self {
        Self {
            id: row.id.into(),
            name: row.name,
            duration_minutes: row.duration_minutes,
            location_id: row.location_id.into(),
            buffer_before_minutes: row.buffer_before_minutes,
            buffer_after_minutes: row.buffer_after_minutes,
            slot_interval_minutes: row.slot_interval_minutes,
            min_notice_minutes: row.min_notice_minutes,
            max_advance_days: row.max_advance_days,
        }
    }
}

/// Input of `createAppointmentType`.
#[derive(Clone, Debug, Default)]
pub struct NewAppointmentType {
    /// Name.
    pub name: String,
    /// Length in minutes (5 to [`MAX_APPOINTMENT_MINUTES`], 480).
    pub duration_minutes: i32,
    /// Location.
    pub location_id: LocationId,
    /// Buffer before, minutes.
    pub buffer_before_minutes: Option<i32>,
    /// Buffer after, minutes.
    pub buffer_after_minutes: Option<i32>,
    /// Start-time grid, minutes.
    pub slot_interval_minutes: Option<i32>,
    /// Minimum notice, minutes.
    pub min_notice_minutes: Option<i32>,
    /// Furthest bookable day, days from now.
    pub max_advance_days: Option<i32>,
    /// Reminder offsets in minutes before the start; the location's when absent.
    pub reminder_offsets_minutes: Option<Vec<i32>>,
}

fn minutes(field: &str, value: Option<i32>, range: std::ops::RangeInclusive<i32>) -> ServiceResult<Option<i32>> {
    match value {
        Some(v) if !range.contains(&v) => Err(ServiceError::bad_input(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        )),
        other => Ok(other),
    }
}

impl Services {
    /// Creates an appointment type (ADMIN, STAFF).
    pub async fn create_appointment_type(
        &self,
        caller: &Caller,
        input: NewAppointmentType,
    ) -> ServiceResult<AppointmentType> {
        caller.actor()?.require_manages(input.location_id)?;
        let name = validate::name("input.name", &input.name, 200)?;
        let duration = minutes(
            "input.durationMinutes",
            Some(input.duration_minutes),
            5..=MAX_APPOINTMENT_MINUTES,
        )?
        .unwrap_or(input.duration_minutes);
        let row = appointment_type::Model {
            id: AppointmentTypeId::new().0,
            location_id: input.location_id.0,
            name,
            duration_minutes: duration,
            buffer_before_minutes: minutes("input.bufferBeforeMinutes", input.buffer_before_minutes, 0..=240)?
                .unwrap_or(0),
            buffer_after_minutes: minutes("input.bufferAfterMinutes", input.buffer_after_minutes, 0..=240)?
                .unwrap_or(0),
            slot_interval_minutes: minutes("input.slotIntervalMinutes", input.slot_interval_minutes, 5..=480)?,
            min_notice_minutes: minutes("input.minNoticeMinutes", input.min_notice_minutes, 0..=60 * 24 * 90)?
                .unwrap_or(0),
            max_advance_days: minutes("input.maxAdvanceDays", input.max_advance_days, 1..=730)?,
            reminder_offsets_minutes: input
                .reminder_offsets_minutes
                .as_deref()
                .map(|m| crate::notifications::config::offsets_input("input.reminderOffsetsMinutes", m))
                .transpose()?,
            created_at: self.clock.now(),
        };
        if location::Entity::find_by_id(row.location_id)
            .one(&self.db)
            .await?
            .is_none()
        {
            return Err(ServiceError::bad_input("input.locationId", "no such location"));
        }
        appointment_type::Entity::insert(row.clone().into_active_model().reset_all())
            .exec_without_returning(&self.db)
            .await?;
        Ok(row.into())
    }

    /// Appointment types, of one location or all (any signed-in caller).
    pub async fn appointment_types(
        &self,
        caller: &Caller,
        location_id: Option<LocationId>,
    ) -> ServiceResult<Vec<AppointmentType>> {
        caller.actor()?;
        let mut query = appointment_type::Entity::find()
            .order_by_asc(appointment_type::Column::Name)
            .order_by_asc(appointment_type::Column::Id);
        if let Some(location_id) = location_id {
            query = query.filter(appointment_type::Column::LocationId.eq(location_id.0));
        }
        Ok(query.all(&self.replica).await?.into_iter().map(Into::into).collect())
    }

    /// One appointment type by id, if it exists.
    pub async fn appointment_types_by_ids(&self, ids: &[AppointmentTypeId]) -> ServiceResult<Vec<AppointmentType>> {
        Ok(appointment_type::Entity::find()
            .filter(appointment_type::Column::Id.is_in(ids.iter().map(|i| i.0)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }
}
