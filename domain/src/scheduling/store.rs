//! Loads what slot computation needs, a few queries for any number of providers.

use super::availability::{Busy, Interval, Schedule, SlotSpec, WeeklyRule};
use super::cache::RawOccupancy;
use super::model::MAX_APPOINTMENT_LENGTH;
use super::status::{ALL_STATUSES, AppointmentStatus};
use crate::error::{ServiceError, ServiceResult};
use chrono::{DateTime, Duration, Utc};
use entity::{appointment, appointment_type, availability_rule, hold, location, location_closed_date, time_off};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use std::collections::HashMap;
use uuid::Uuid;

/// How far around a range occupancy is loaded: buffers reach this far at most.
pub const OCCUPANCY_MARGIN: Duration = Duration::hours(8);

/// The time zone of a location row.
pub fn zone(location: &location::Model) -> ServiceResult<chrono_tz::Tz> {
    location
        .time_zone
        .parse()
        .map_err(|_| ServiceError::internal(anyhow::anyhow!("location {} has an invalid time zone", location.id)))
}

/// What booking `kind` at `now` looks like to the slot computation.
pub fn slot_spec(kind: &appointment_type::Model, now: DateTime<Utc>) -> SlotSpec {
    let duration = Duration::minutes(kind.duration_minutes.into());
    SlotSpec {
        duration,
        step: kind
            .slot_interval_minutes
            .map_or(duration, |m| Duration::minutes(m.into())),
        buffer_before: Duration::minutes(kind.buffer_before_minutes.into()),
        buffer_after: Duration::minutes(kind.buffer_after_minutes.into()),
        earliest_start: now + Duration::minutes(kind.min_notice_minutes.into()),
        latest_start: kind.max_advance_days.map(|d| now + Duration::days(d.into())),
    }
}

/// The weekly schedules of `providers` at `location` (providers with no rule
/// there are absent).
pub async fn schedules(
    conn: &impl ConnectionTrait,
    location: &location::Model,
    providers: &[Uuid],
) -> ServiceResult<HashMap<Uuid, Schedule>> {
    let zone = zone(location)?;
    let closed_dates: Vec<_> = location_closed_date::Entity::find()
        .filter(location_closed_date::Column::LocationId.eq(location.id))
        .all(conn)
        .await?
        .into_iter()
        .map(|d| d.closed_on)
        .collect();
    let rules = availability_rule::Entity::find()
        .filter(availability_rule::Column::LocationId.eq(location.id))
        .filter(availability_rule::Column::ProviderId.is_in(providers.iter().copied()))
        .all(conn)
        .await?;
    let mut schedules: HashMap<Uuid, Schedule> = HashMap::new();
    for rule in rules {
        schedules
            .entry(rule.provider_id)
            .or_insert_with(|| Schedule {
                zone,
                rules: Vec::new(),
                closed_dates: closed_dates.clone(),
            })
            .rules
            .push(WeeklyRule {
                weekday: rule.weekday.try_into().unwrap_or(0),
                start_minute: rule.start_minute.try_into().unwrap_or(0),
                end_minute: rule.end_minute.try_into().unwrap_or(0),
            });
    }
    Ok(schedules)
}

/// Codes of the statuses that occupy time.
pub fn blocking_codes() -> Vec<&'static str> {
    ALL_STATUSES
        .iter()
        .filter(|s| s.blocks_time())
        .map(|s| s.code())
        .collect()
}

/// What occupies each of `providers` around `range`, holds of everyone
/// included (live at `now`), for [`RawOccupancy::view`] to filter per caller.
/// Three statements: time off, appointments joined with their types'
/// buffers, holds.
pub async fn raw_occupancy(
    conn: &impl ConnectionTrait,
    providers: &[Uuid],
    range: Interval,
    now: DateTime<Utc>,
    moving: Option<Uuid>,
) -> ServiceResult<HashMap<Uuid, RawOccupancy>> {
    let from = range.start - OCCUPANCY_MARGIN;
    let to = range.end + OCCUPANCY_MARGIN;
    let mut result: HashMap<Uuid, RawOccupancy> = providers.iter().map(|p| (*p, RawOccupancy::default())).collect();

    for off in time_off::Entity::find()
        .filter(time_off::Column::ProviderId.is_in(providers.iter().copied()))
        .filter(time_off::Column::StartAt.lt(to))
        .filter(time_off::Column::EndAt.gt(from))
        .all(conn)
        .await?
    {
        if let Some(o) = result.get_mut(&off.provider_id) {
            o.time_off.push(Interval::new(off.start_at, off.end_at));
        }
    }

    let mut appointments = appointment::Entity::find()
        .filter(appointment::Column::ProviderId.is_in(providers.iter().copied()))
        .filter(appointment::Column::Status.is_in(blocking_codes()))
        // The lower bound adds no answer (nothing is longer); it keeps the
        // index range to the window instead of the provider's whole history.
        .filter(appointment::Column::StartAt.gt(from - MAX_APPOINTMENT_LENGTH))
        .filter(appointment::Column::StartAt.lt(to))
        .filter(appointment::Column::EndAt.gt(from));
    if let Some(moving) = moving {
        appointments = appointments.filter(appointment::Column::Id.ne(moving));
    }
    let appointments = appointments
        .find_also_related(appointment_type::Entity)
        .all(conn)
        .await?;
    for (a, kind) in appointments {
        let (before, after) = kind.map_or((Duration::zero(), Duration::zero()), |t| {
            (
                Duration::minutes(t.buffer_before_minutes.into()),
                Duration::minutes(t.buffer_after_minutes.into()),
            )
        });
        if let Some(o) = result.get_mut(&a.provider_id) {
            o.busy.push(Busy {
                interval: Interval::new(a.start_at, a.end_at),
                buffer_before: before,
                buffer_after: after,
            });
        }
    }

    for h in hold::Entity::find()
        .filter(hold::Column::ProviderId.is_in(providers.iter().copied()))
        .filter(hold::Column::ExpiresAt.gt(now))
        .filter(hold::Column::StartAt.gt(from - MAX_APPOINTMENT_LENGTH))
        .filter(hold::Column::StartAt.lt(to))
        .filter(hold::Column::EndAt.gt(from))
        .all(conn)
        .await?
    {
        if let Some(o) = result.get_mut(&h.provider_id) {
            o.holds
                .push((Interval::new(h.start_at, h.end_at), h.held_by, h.expires_at));
        }
    }
    Ok(result)
}

/// The status of a stored appointment row.
pub fn status_of(row: &appointment::Model) -> ServiceResult<AppointmentStatus> {
    AppointmentStatus::from_code(&row.status)
        .ok_or_else(|| ServiceError::internal(anyhow::anyhow!("unknown status in appointment {}", row.id)))
}
