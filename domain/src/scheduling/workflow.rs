//! Status changes: cancel, arrived, checked in, fulfilled, no-show.

use super::availability::Interval;
use super::booking::{SlotChange, appointment_audit, events, record_history};
use super::model::Appointment;
use super::status::AppointmentStatus;
use crate::auth::Role;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{AppointmentEventKind, SlotChangeReason, SlotStatus};
use crate::ids::AppointmentId;
use crate::phi::AuditAction;
use crate::services::{Caller, Services};
use entity::appointment;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

const MAX_REASON_CHARS: usize = 500;

impl Services {
    /// Cancels an appointment that has not begun (PATIENT their own outside the
    /// notice window; STAFF, ADMIN always, an override being recorded).
    #[tracing::instrument(name = "booking.cancel", skip_all)]
    pub async fn cancel_appointment(
        &self,
        caller: &Caller,
        id: AppointmentId,
        reason: Option<String>,
    ) -> ServiceResult<Appointment> {
        let actor = *caller.actor()?;
        let row = self
            .appointment_for_change(&actor, id, &[Role::Admin, Role::Staff, Role::Patient])
            .await?;
        if reason.as_ref().is_some_and(|r| r.chars().count() > MAX_REASON_CHARS) {
            return Err(ServiceError::bad_input(
                "reason",
                format!("at most {MAX_REASON_CHARS} characters"),
            ));
        }
        let from = super::store::status_of(&row)?;
        if !from.can_become(AppointmentStatus::Cancelled) {
            return Err(refused(from, AppointmentStatus::Cancelled));
        }
        let note = self.notice_window_check(&actor, &row).await?;
        let reason = reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
        self.change_status(caller, row, AppointmentStatus::Cancelled, reason, note)
            .await
    }

    /// BOOKED -> ARRIVED (STAFF, ADMIN, the appointment's PROVIDER).
    pub async fn mark_arrived(&self, caller: &Caller, id: AppointmentId) -> ServiceResult<Appointment> {
        self.advance(caller, id, AppointmentStatus::Arrived).await
    }

    /// ARRIVED -> CHECKED_IN.
    pub async fn check_in_appointment(&self, caller: &Caller, id: AppointmentId) -> ServiceResult<Appointment> {
        self.advance(caller, id, AppointmentStatus::CheckedIn).await
    }

    /// CHECKED_IN -> FULFILLED.
    pub async fn complete_appointment(&self, caller: &Caller, id: AppointmentId) -> ServiceResult<Appointment> {
        self.advance(caller, id, AppointmentStatus::Fulfilled).await
    }

    /// BOOKED -> NOSHOW, not before the appointment's start.
    pub async fn mark_no_show(&self, caller: &Caller, id: AppointmentId) -> ServiceResult<Appointment> {
        self.advance(caller, id, AppointmentStatus::Noshow).await
    }

    async fn advance(&self, caller: &Caller, id: AppointmentId, to: AppointmentStatus) -> ServiceResult<Appointment> {
        let actor = *caller.actor()?;
        let row = self
            .appointment_for_change(&actor, id, &[Role::Admin, Role::Staff, Role::Provider])
            .await?;
        let from = super::store::status_of(&row)?;
        if !from.can_become(to) {
            return Err(refused(from, to));
        }
        if to == AppointmentStatus::Noshow && self.clock.now() < row.start_at {
            return Err(ServiceError::InvalidTransition(
                "a no-show can only be recorded after the start".into(),
            ));
        }
        self.change_status(caller, row, to, None, None).await
    }

    /// Writes a status change if nobody changed the status meanwhile.
    async fn change_status(
        &self,
        caller: &Caller,
        row: appointment::Model,
        to: AppointmentStatus,
        reason: Option<String>,
        note: Option<String>,
    ) -> ServiceResult<Appointment> {
        let actor = *caller.actor()?;
        let from = super::store::status_of(&row)?;
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let mut update = appointment::Entity::update_many()
            .col_expr(appointment::Column::Status, Expr::value(to.code()))
            .col_expr(appointment::Column::Version, Expr::value(row.version + 1))
            .col_expr(appointment::Column::UpdatedAt, Expr::value(now));
        if to == AppointmentStatus::Cancelled {
            update = update.col_expr(appointment::Column::CancellationReason, Expr::value(reason.clone()));
        }
        let changed = update
            .filter(appointment::Column::Id.eq(row.id))
            .filter(appointment::Column::Version.eq(row.version))
            .exec(&txn)
            .await?;
        if changed.rows_affected != 1 {
            return Err(ServiceError::InvalidTransition(
                "the appointment changed meanwhile; reload it".into(),
            ));
        }
        let updated = appointment::Model {
            status: to.code().to_owned(),
            version: row.version + 1,
            updated_at: now,
            cancellation_reason: if to == AppointmentStatus::Cancelled {
                reason
            } else {
                row.cancellation_reason.clone()
            },
            ..row
        };
        record_history(&txn, &updated, &actor, to.code(), Some(from), None, note).await?;
        self.plan_status_changed(&txn, &updated, to).await?;
        self.audit(
            &txn,
            caller,
            appointment_audit(AuditAction::Update, updated.id, Some(to.code())),
        )
        .await?;
        txn.commit().await?;
        let appointment = Appointment::try_from(updated)?;
        let kind = if to == AppointmentStatus::Cancelled {
            AppointmentEventKind::Cancelled
        } else {
            AppointmentEventKind::Updated
        };
        let interval = Interval::new(appointment.start, appointment.end);
        let freed: Vec<SlotChange> = if from.blocks_time() && !to.blocks_time() {
            vec![(interval, SlotStatus::Free, SlotChangeReason::Released)]
        } else {
            vec![]
        };
        self.publish(events(&appointment, kind, &freed)).await;
        Ok(appointment)
    }
}

fn refused(from: AppointmentStatus, to: AppointmentStatus) -> ServiceError {
    ServiceError::InvalidTransition(format!(
        "an appointment cannot go from {} to {}",
        from.code(),
        to.code()
    ))
}
