//! Holds: a caller reserves an interval for a few minutes while they decide.
//! An expired hold frees itself: every query ignores holds past `expires_at`;
//! a sweep may delete the rows later.

use super::model::Hold;
use super::slots::Request;
use crate::auth::Role;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{DomainEvent, SlotChangeReason, SlotEvent, SlotStatus};
use crate::ids::{AppointmentTypeId, HoldId, ProviderId};
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::hold;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter};

/// How many live holds one user may keep at once.
pub const MAX_LIVE_HOLDS: u64 = 5;

impl Services {
    /// Holds an interval for the caller (PATIENT, STAFF, ADMIN); others see it taken.
    #[tracing::instrument(name = "holds.hold", skip_all)]
    pub async fn hold_slot(
        &self,
        caller: &Caller,
        provider_id: ProviderId,
        appointment_type_id: AppointmentTypeId,
        start: DateTime<Utc>,
    ) -> ServiceResult<Hold> {
        let actor = caller.actor()?;
        actor.require(&[Role::Patient, Role::Staff, Role::Admin])?;
        super::slots::provider_exists(&self.db, provider_id).await?;
        let kind = self.appointment_type_row(&self.db, appointment_type_id.0).await?;
        if actor.role == Role::Staff {
            actor.require_manages(kind.location_id.into())?;
        }
        let now = self.clock.now();
        let (_turn, txn) = self.begin_as_writer_of(provider_id).await?;
        let mine = hold::Entity::find()
            .filter(hold::Column::HeldBy.eq(actor.user_id.0))
            .filter(hold::Column::ExpiresAt.gt(now));
        // Asking again for what one already holds (a double click, a retry) is the same hold.
        if let Some(existing) = mine
            .clone()
            .filter(hold::Column::ProviderId.eq(provider_id.0))
            .filter(hold::Column::AppointmentTypeId.eq(appointment_type_id.0))
            .filter(hold::Column::StartAt.eq(start))
            .one(&txn)
            .await?
        {
            return Ok(hold_from(existing));
        }
        let live = mine.count(&txn).await?;
        if live >= MAX_LIVE_HOLDS {
            return Err(ServiceError::bad_input(
                "input",
                format!("at most {MAX_LIVE_HOLDS} holds at a time"),
            ));
        }
        let bookable = self
            .check_bookable(
                &txn,
                Request {
                    provider: provider_id,
                    kind: &kind,
                    start,
                    user: actor.user_id.0,
                    moving: None,
                    start_field: "input.start",
                },
            )
            .await?;
        let row = hold::Model {
            id: HoldId::new().0,
            provider_id: provider_id.0,
            location_id: bookable.location_id.0,
            appointment_type_id: appointment_type_id.0,
            start_at: bookable.interval.start,
            end_at: bookable.interval.end,
            expires_at: now + self.policy.hold_ttl,
            held_by: actor.user_id.0,
            created_at: now,
        };
        row.clone().into_active_model().reset_all().insert(&txn).await?;
        txn.commit().await?;
        self.publish([slot_event(&row, SlotStatus::BusyTentative, SlotChangeReason::Held)])
            .await;
        Ok(hold_from(row))
    }

    /// Releases a hold of the caller's (or any hold at their locations, for
    /// STAFF and ADMIN).
    #[tracing::instrument(name = "holds.release", skip_all)]
    pub async fn release_hold(&self, caller: &Caller, id: HoldId) -> ServiceResult<bool> {
        let actor = caller.actor()?;
        let Some(row) = hold::Entity::find_by_id(id.0).one(&self.db).await? else {
            return Err(ServiceError::NotFound("hold"));
        };
        let allowed = row.held_by == actor.user_id.0
            || (actor.is_staff()
                && actor.manages_location(
                    self.appointment_type_row(&self.db, row.appointment_type_id)
                        .await?
                        .location_id
                        .into(),
                ));
        if !allowed {
            return Err(ServiceError::NotFound("hold"));
        }
        let deleted = hold::Entity::delete_by_id(row.id).exec(&self.db).await?;
        if deleted.rows_affected == 1 && row.expires_at > self.clock.now() {
            self.publish([slot_event(&row, SlotStatus::Free, SlotChangeReason::Released)])
                .await;
        }
        Ok(deleted.rows_affected == 1)
    }

    /// Deletes holds that expired before now and announces `HOLD_EXPIRED` for each
    /// (the periodic sweep; correctness never waits for it).
    #[tracing::instrument(name = "holds.sweep_expired", skip_all)]
    pub async fn sweep_expired_holds(&self) -> ServiceResult<u64> {
        let now = self.clock.now();
        let expired = hold::Entity::find()
            .filter(hold::Column::ExpiresAt.lte(now))
            .all(&self.db)
            .await?;
        let mut swept = 0;
        for row in expired {
            let deleted = hold::Entity::delete_by_id(row.id).exec(&self.db).await?;
            // Another sweeper may have taken it: announce only what this one deleted.
            if deleted.rows_affected == 1 {
                swept += 1;
                self.publish([slot_event(&row, SlotStatus::Free, SlotChangeReason::HoldExpired)])
                    .await;
            }
        }
        Ok(swept)
    }
}

fn hold_from(row: hold::Model) -> Hold {
    Hold {
        id: row.id.into(),
        provider_id: row.provider_id.into(),
        start: row.start_at,
        end: row.end_at,
        expires_at: row.expires_at,
    }
}

fn slot_event(row: &hold::Model, status: SlotStatus, reason: SlotChangeReason) -> DomainEvent {
    DomainEvent::Slot(SlotEvent {
        provider_id: row.provider_id.into(),
        start: row.start_at,
        end: row.end_at,
        status,
        reason,
    })
}
