//! `availableSlots`, and the same rules applied to one requested start
//! (holds, bookings and reschedules all ask through [`Services::check_bookable`]).

use super::availability::{Busy, GridPosition, Interval, Schedule, free_slots, grid_position, is_free, windows};
use super::cache::RawOccupancy;
use super::model::{Slot, SlotQuery};
use super::snapshot::{self, Around};
use super::store;
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{LocationId, ProviderId};
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::{appointment_type, location, provider, provider_location};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use std::collections::HashMap;
use std::sync::Arc;
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
    /// Whether the asking user holds part of the interval (live or expired):
    /// a booking clears those holds.
    pub own_holds: bool,
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
        // A search may lag the primary by the replication delay, and the
        // cache by an event in flight; booking re-checks on the primary.
        let db = &self.replica;
        let kind = self.cached_kind(query.appointment_type_id.0).await?;
        if query.location_id.is_some_and(|l| l.0 != kind.location_id) {
            return Err(ServiceError::bad_input(
                "input.locationId",
                "the appointment type is not offered at this location",
            ));
        }
        let location = self.cached_location(kind.location_id).await?;
        let providers: Vec<Uuid> = match query.provider_id {
            Some(p) => vec![p.0],
            None => provider_location::Entity::find()
                .filter(provider_location::Column::LocationId.eq(location.id))
                .all(db)
                .await?
                .into_iter()
                .map(|l| l.provider_id)
                .collect(),
        };
        let now = self.clock.now();
        let range = Interval::new(query.from, query.to);
        let spec = store::slot_spec(&kind, now);
        let schedules = self.cached_schedules(&location, &providers).await?;
        if let Some(p) = query.provider_id
            && !schedules.contains_key(&p.0)
        {
            // No rule here: an unknown provider is the caller's error.
            provider_exists(db, p).await?;
        }
        let with_rules: Vec<Uuid> = providers
            .iter()
            .copied()
            .filter(|p| schedules.contains_key(p))
            .collect();
        let occupancy = self.cached_occupancy(&with_rules, range, now).await?;
        let mut slots: Vec<Slot> = Vec::new();
        for provider in with_rules {
            let (Some(schedule), Some(occupied)) = (schedules.get(&provider), occupancy.get(&provider)) else {
                continue;
            };
            let occupied = occupied.view(now, Some(actor.user_id.0));
            slots.extend(free_slots(schedule, &spec, &occupied, range).into_iter().map(|s| Slot {
                provider_id: provider.into(),
                start: s.start,
                end: s.end,
            }));
        }
        slots.sort_by_key(|s| (s.start, s.provider_id));
        Ok(slots)
    }

    /// An appointment type, from the cache or the replica.
    async fn cached_kind(&self, id: Uuid) -> ServiceResult<appointment_type::Model> {
        if let Some(kind) = self.slot_cache.kind(id) {
            return Ok(kind);
        }
        let kind = self.appointment_type_row(&self.replica, id).await?;
        self.slot_cache.fill_kind(&kind);
        Ok(kind)
    }

    /// A location, from the cache or the replica.
    async fn cached_location(&self, id: Uuid) -> ServiceResult<location::Model> {
        if let Some(location) = self.slot_cache.location(id) {
            return Ok(location);
        }
        let location = location_row(&self.replica, id).await?;
        self.slot_cache.fill_location(&location);
        Ok(location)
    }

    /// The schedules of `providers` at `location` (absent: no rule there),
    /// loading what the cache lacks in one go.
    async fn cached_schedules(
        &self,
        location: &location::Model,
        providers: &[Uuid],
    ) -> ServiceResult<HashMap<Uuid, Schedule>> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for provider in providers {
            match self.slot_cache.schedule(location.id, *provider) {
                Some(Some(schedule)) => {
                    found.insert(*provider, schedule);
                }
                Some(None) => {}
                None => missing.push((*provider, self.slot_cache.generation(*provider))),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let ids: Vec<Uuid> = missing.iter().map(|(p, _)| *p).collect();
        let mut loaded = store::schedules(&self.replica, location, &ids).await?;
        for (provider, generation) in missing {
            let schedule = loaded.remove(&provider);
            self.slot_cache
                .fill_schedule(location.id, provider, generation, schedule.clone());
            if let Some(schedule) = schedule {
                found.insert(provider, schedule);
            }
        }
        Ok(found)
    }

    /// What occupies each of `providers` around `range`, loading what the
    /// cache lacks in one go.
    async fn cached_occupancy(
        &self,
        providers: &[Uuid],
        range: Interval,
        now: DateTime<Utc>,
    ) -> ServiceResult<HashMap<Uuid, Arc<RawOccupancy>>> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for provider in providers {
            match self.slot_cache.occupancy(*provider, range) {
                Some(occupancy) => {
                    found.insert(*provider, occupancy);
                }
                None => missing.push((*provider, self.slot_cache.generation(*provider))),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let ids: Vec<Uuid> = missing.iter().map(|(p, _)| *p).collect();
        let mut loaded = store::raw_occupancy(&self.replica, &ids, range, now, None).await?;
        for (provider, generation) in missing {
            let occupancy = Arc::new(loaded.remove(&provider).unwrap_or_default());
            self.slot_cache
                .fill_occupancy(provider, range, generation, occupancy.clone());
            found.insert(provider, occupancy);
        }
        Ok(found)
    }

    /// Checks that `start` is a free slot start of `provider` for `kind`, as
    /// `availableSlots` would offer it to `user` (whose own holds do not count),
    /// ignoring the appointment being moved. Off the grid is the caller's input
    /// error; anything else that is not free is `SLOT_UNAVAILABLE`. Everything
    /// is read in one statement on `conn` (see `snapshot`), under the caller's
    /// provider lock.
    pub(super) async fn check_bookable(
        &self,
        conn: &impl ConnectionTrait,
        request: Request<'_>,
    ) -> ServiceResult<Bookable> {
        let mut checked = self.check_bookable_many(conn, std::slice::from_ref(&request)).await?;
        checked.pop().unwrap_or_else(|| {
            Err(ServiceError::internal(anyhow::anyhow!(
                "no answer for the requested start"
            )))
        })
    }

    /// [`Services::check_bookable`] for several requests (each provider under
    /// its lock) at once: their snapshots are read in one statement. Requests
    /// are judged in order, and one a request earlier in the list was granted
    /// occupies its provider for the requests after it, as if written (a batch
    /// may hold several bookings of one provider). The outer error is the
    /// database's; each request's own answer is inside, in order.
    pub(super) async fn check_bookable_many(
        &self,
        conn: &impl ConnectionTrait,
        requests: &[Request<'_>],
    ) -> ServiceResult<Vec<ServiceResult<Bookable>>> {
        let now = self.clock.now();
        let mut locations = Vec::with_capacity(requests.len());
        for request in requests {
            locations.push(self.location_for_write(conn, request.kind.location_id).await?);
        }
        let specs: Vec<_> = requests.iter().map(|r| store::slot_spec(r.kind, now)).collect();
        let arounds: Vec<Around> = requests
            .iter()
            .zip(&locations)
            .zip(&specs)
            .map(|((request, location), spec)| Around {
                location,
                provider: request.provider.0,
                interval: Interval::new(request.start, request.start + spec.duration),
                now,
                user: request.user,
                moving: request.moving,
            })
            .collect();
        let snapshots = snapshot::read_many(conn, &arounds).await?;
        let mut granted: Vec<(ProviderId, Busy)> = Vec::new();
        Ok(requests
            .iter()
            .zip(specs)
            .zip(snapshots)
            .map(|((request, spec), mut snapshot)| {
                let earlier = granted.iter().filter(|(provider, _)| *provider == request.provider);
                snapshot.occupancy.busy.extend(earlier.map(|(_, busy)| *busy));
                let answer = judge(request, &spec, &snapshot, now);
                if let Ok(bookable) = &answer {
                    let busy = Busy {
                        interval: bookable.interval,
                        buffer_before: spec.buffer_before,
                        buffer_after: spec.buffer_after,
                    };
                    granted.push((request.provider, busy));
                }
                answer
            })
            .collect())
    }

    /// An appointment type for a write: the cache, else `conn` (the primary).
    /// Types never change once created, so a cached one is never stale.
    pub(crate) async fn kind_for_write(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> ServiceResult<appointment_type::Model> {
        if let Some(kind) = self.slot_cache.kind(id) {
            return Ok(kind);
        }
        let kind = self.appointment_type_row(conn, id).await?;
        self.slot_cache.fill_kind(&kind);
        Ok(kind)
    }

    /// A location for a write: the cache, else `conn` (locations never change either).
    pub(crate) async fn location_for_write(
        &self,
        conn: &impl ConnectionTrait,
        id: Uuid,
    ) -> ServiceResult<location::Model> {
        if let Some(location) = self.slot_cache.location(id) {
            return Ok(location);
        }
        let location = location_row(conn, id).await?;
        self.slot_cache.fill_location(&location);
        Ok(location)
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

/// `NOT_FOUND` unless the location exists.
pub(crate) async fn location_exists(conn: &impl ConnectionTrait, id: crate::ids::LocationId) -> ServiceResult<()> {
    location_row(conn, id.0).await.map(|_| ())
}

/// `NOT_FOUND` unless the provider exists.
pub(super) async fn provider_exists(conn: &impl ConnectionTrait, id: ProviderId) -> ServiceResult<()> {
    provider::Entity::find_by_id(id.0)
        .one(conn)
        .await?
        .map(|_| ())
        .ok_or(ServiceError::NotFound("provider"))
}

/// Whether `request` may have its interval, given its provider's `snapshot`.
fn judge(
    request: &Request<'_>,
    spec: &super::availability::SlotSpec,
    snapshot: &snapshot::Snapshot,
    now: DateTime<Utc>,
) -> ServiceResult<Bookable> {
    let interval = Interval::new(request.start, request.start + spec.duration);
    let Some(schedule) = &snapshot.schedule else {
        return Err(ServiceError::SlotUnavailable(
            "the provider has no availability at this location".into(),
        ));
    };
    match grid_position(&windows(schedule, interval), spec, request.start) {
        GridPosition::OnGrid => {}
        GridPosition::OffGrid => {
            return Err(ServiceError::bad_input(
                request.start_field,
                "start is not on the appointment type's slot grid",
            ));
        }
        GridPosition::Outside => {
            return Err(ServiceError::SlotUnavailable(
                "the interval is outside the provider's availability".into(),
            ));
        }
    }
    if !is_free(spec, &snapshot.occupancy.view(now, Some(request.user)), interval) {
        return Err(ServiceError::SlotUnavailable("the interval is not available".into()));
    }
    let own_holds = snapshot
        .occupancy
        .holds
        .iter()
        .any(|(held, holder, _)| *holder == request.user && held.overlaps(&interval));
    Ok(Bookable {
        interval,
        location_id: request.kind.location_id.into(),
        own_holds,
    })
}
