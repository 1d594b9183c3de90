//! `availableSlots`, and the same rules applied to one requested start
//! (holds, bookings and reschedules all ask through [`Services::check_bookable`]).

use super::availability::{GridPosition, Interval, free_slots, grid_position, is_free, windows};
use super::model::{Slot, SlotQuery};
use super::store;
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{LocationId, ProviderId};
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::{appointment_type, location, provider, provider_location};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

/// One requested start to check.
pub(super) struct Request<'a> {
    /// Whose time.
    pub provider: ProviderId,
    /// What is to be booked.
    pub kind: &'a appointment_type::Model,
    /// The requested start.
    pub start: DateTime<Utc>,
    /// Who asks (their own holds do not count against them).
    pub user: Uuid,
    /// The appointment being moved, which does not block itself.
    pub moving: Option<Uuid>,
    /// The argument path of `start`, for an off-grid error.
    pub start_field: &'a str,
}

/// What a requested interval was checked against.
pub(super) struct Bookable {
    /// The interval the visit occupies.
    pub interval: Interval,
    /// The type's location.
    pub location_id: LocationId,
}

impl Services {
    /// Free slots in `[from, to)` of one provider, or of every provider at the
    /// location who works there, ordered by start then provider (any signed-in caller).
    #[tracing::instrument(name = "availability.slots", skip_all)]
    pub async fn available_slots(&self, caller: &Caller, query: SlotQuery) -> ServiceResult<Vec<Slot>> {
        let actor = caller.actor()?;
        if query.to <= query.from {
            return Err(ServiceError::bad_input("input.to", "to must be after from"));
        }
        if query.to - query.from > self.policy.max_slot_range {
            return Err(ServiceError::bad_input(
                "input.to",
                format!(
                    "the range may span at most {} days",
                    self.policy.max_slot_range.num_days()
                ),
            ));
        }
        let kind = self.appointment_type_row(&self.db, query.appointment_type_id.0).await?;
        if query.location_id.is_some_and(|l| l.0 != kind.location_id) {
            return Err(ServiceError::bad_input(
                "input.locationId",
                "the appointment type is not offered at this location",
            ));
        }
        let location = location_row(&self.db, kind.location_id).await?;
        let providers: Vec<Uuid> = match query.provider_id {
            Some(p) => {
                provider_exists(&self.db, p).await?;
                vec![p.0]
            }
            None => provider_location::Entity::find()
                .filter(provider_location::Column::LocationId.eq(location.id))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|l| l.provider_id)
                .collect(),
        };
        let now = self.clock.now();
        let range = Interval::new(query.from, query.to);
        let spec = store::slot_spec(&kind, now);
        let schedules = store::schedules(&self.db, &location, &providers).await?;
        let with_rules: Vec<Uuid> = providers
            .iter()
            .copied()
            .filter(|p| schedules.contains_key(p))
            .collect();
        let occupancy = store::occupancy(&self.db, &with_rules, range, now, Some(actor.user_id.0), None).await?;
        let mut slots: Vec<Slot> = Vec::new();
        for provider in with_rules {
            let (Some(schedule), Some(occupied)) = (schedules.get(&provider), occupancy.get(&provider)) else {
                continue;
            };
            slots.extend(free_slots(schedule, &spec, occupied, range).into_iter().map(|s| Slot {
                provider_id: provider.into(),
                start: s.start,
                end: s.end,
            }));
        }
        slots.sort_by_key(|s| (s.start, s.provider_id));
        Ok(slots)
    }

    /// Checks that `start` is a free slot start of `provider` for `kind`, as
    /// `availableSlots` would offer it to `user` (whose own holds do not count),
    /// ignoring the appointment being moved. Off the grid is the caller's input
    /// error; anything else that is not free is `SLOT_UNAVAILABLE`.
    pub(super) async fn check_bookable(
        &self,
        conn: &impl ConnectionTrait,
        request: Request<'_>,
    ) -> ServiceResult<Bookable> {
        let Request {
            provider,
            kind,
            start,
            user,
            moving,
            start_field,
        } = request;
        let location = location_row(conn, kind.location_id).await?;
        let now = self.clock.now();
        let spec = store::slot_spec(kind, now);
        let interval = Interval::new(start, start + spec.duration);
        let schedules = store::schedules(conn, &location, &[provider.0]).await?;
        let Some(schedule) = schedules.get(&provider.0) else {
            return Err(ServiceError::SlotUnavailable(
                "the provider has no availability at this location".into(),
            ));
        };
        match grid_position(&windows(schedule, interval), &spec, start) {
            GridPosition::OnGrid => {}
            GridPosition::OffGrid => {
                return Err(ServiceError::bad_input(
                    start_field,
                    "start is not on the appointment type's slot grid",
                ));
            }
            GridPosition::Outside => {
                return Err(ServiceError::SlotUnavailable(
                    "the interval is outside the provider's availability".into(),
                ));
            }
        }
        let occupancy = store::occupancy(conn, &[provider.0], interval, now, Some(user), moving).await?;
        let occupied = occupancy.get(&provider.0).cloned().unwrap_or_default();
        if !is_free(&spec, &occupied, interval) {
            return Err(ServiceError::SlotUnavailable("the interval is not available".into()));
        }
        Ok(Bookable {
            interval,
            location_id: kind.location_id.into(),
        })
    }

    /// The appointment type row, or `NOT_FOUND`.
    pub(super) async fn appointment_type_row(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> ServiceResult<appointment_type::Model> {
        appointment_type::Entity::find_by_id(id)
            .one(conn)
            .await?
            .ok_or(ServiceError::NotFound("appointment type"))
    }
}

/// The location row, or `NOT_FOUND`.
pub(super) async fn location_row(conn: &impl ConnectionTrait, id: Uuid) -> ServiceResult<location::Model> {
    location::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(ServiceError::NotFound("location"))
}

/// `NOT_FOUND` unless the provider exists.
pub(super) async fn provider_exists(conn: &impl ConnectionTrait, id: ProviderId) -> ServiceResult<()> {
    provider::Entity::find_by_id(id.0)
        .one(conn)
        .await?
        .map(|_| ())
        .ok_or(ServiceError::NotFound("provider"))
}
