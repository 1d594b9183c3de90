//! Booking and rescheduling: the check and the write in one transaction under
//! the provider's lock, with PostgreSQL's exclusion constraint as the last word.

use super::availability::Interval;
use super::batch::PendingBooking;
use super::model::{Appointment, NewBooking};
use super::slots::Request;
use super::status::AppointmentStatus;
use crate::auth::{Actor, Role};
use crate::db::{is_exclusion_violation, is_unique_violation};
use crate::error::{ServiceError, ServiceResult};
use crate::events::{AppointmentEvent, AppointmentEventKind, DomainEvent, SlotChangeReason, SlotEvent, SlotStatus};
use crate::ids::{AppointmentId, ProviderId};
use crate::phi::{AuditAction, AuditRecord};
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::{appointment, appointment_history};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const MAX_KEY_LEN: usize = 200;

/// Metric: booking attempts by outcome (booked, conflict, rejected).
pub const BOOKINGS: &str = "careslot_bookings_total";

impl Services {
    /// Books a free interval, or the caller's own hold (PATIENT for themself,
    /// STAFF, ADMIN). With an idempotency key, a retry with the same input answers
    /// the first appointment; the same key with other input is refused.
    ///
    /// Counted in `careslot_bookings_total{outcome}`: booked, conflict (the
    /// interval was taken) or rejected (anything else).
    #[tracing::instrument(name = "booking.book", skip_all)]
    pub async fn book_appointment(&self, caller: &Caller, input: NewBooking) -> ServiceResult<Appointment> {
        let result = self.book_appointment_counted(caller, input).await;
        let outcome = match &result {
            Ok(_) => "booked",
            Err(ServiceError::SlotUnavailable(_)) => "conflict",
            Err(_) => "rejected",
        };
        metrics::counter!(BOOKINGS, "outcome" => outcome).increment(1);
        result
    }

    async fn book_appointment_counted(&self, caller: &Caller, input: NewBooking) -> ServiceResult<Appointment> {
        let actor = caller.actor()?.clone();
        match actor.role {
            Role::Admin | Role::Staff => {}
            Role::Patient if actor.patient_id == Some(input.patient_id) => {}
            Role::Patient | Role::Provider => return Err(ServiceError::Forbidden),
        }
        let fingerprint = fingerprint(&input);
        if let Some(key) = &input.idempotency_key {
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(ServiceError::bad_input(
                    "input.idempotencyKey",
                    format!("must be 1 to {MAX_KEY_LEN} characters"),
                ));
            }
            if let Some(existing) = self.replay(&actor, key, &fingerprint).await? {
                return Ok(existing);
            }
        }
        match self.book_once(caller, &actor, &input, &fingerprint).await {
            Ok(appointment) => Ok(appointment),
            // A concurrent retry with the same key may have won the race; its
            // booking can trip the exclusion constraint before the key's index.
            Err(err) => match (&input.idempotency_key, &err) {
                (Some(key), ServiceError::SlotUnavailable(_) | ServiceError::Internal(_)) => {
                    match self.replay(&actor, key, &fingerprint).await? {
                        Some(existing) => Ok(existing),
                        None => Err(err),
                    }
                }
                _ => Err(err),
            },
        }
    }

    /// One attempt at a booking. Under the provider's lock it costs a handful
    /// of statements: the lock (which also finds provider and patient), one
    /// snapshot of the provider's schedule and occupancy, the writes, and the
    /// commit; the type and the location come from the slot cache.
    async fn book_once(
        &self,
        caller: &Caller,
        actor: &Actor,
        input: &NewBooking,
        fingerprint: &str,
    ) -> ServiceResult<Appointment> {
        let kind = self.kind_for_write(&self.db, input.appointment_type_id.0).await?;
        if actor.role == Role::Staff {
            // A front desk books at its own locations, for patients it may see.
            actor.require_manages(kind.location_id.into())?;
            if !self.may_see_patient(actor, input.patient_id).await? {
                return Err(ServiceError::NotFound("patient"));
            }
        }
        let asked = Interval::new(
            input.start,
            input.start + chrono::Duration::minutes(kind.duration_minutes.into()),
        );
        // Held until the answer is in: a later booking racing for this
        // interval waits for it, then learns from its note, not from the database.
        let _turn = self.booking_turns.wait(input.provider_id.0, asked).await;
        if self.slot_cache.recently_taken(input.provider_id.0, asked) {
            return Err(ServiceError::SlotUnavailable("the interval is not available".into()));
        }
        let row = self
            .write_booking(PendingBooking {
                caller: caller.clone(),
                actor: actor.clone(),
                input: input.clone(),
                kind,
                fingerprint: fingerprint.to_owned(),
                trace_parent: telemetry::context::current_traceparent(),
            })
            .await?;
        let appointment = Appointment::try_from(row)?;
        let taken = Interval::new(appointment.start, appointment.end);
        self.slot_cache.note_taken(input.provider_id.0, taken);
        self.publish(events(
            &appointment,
            AppointmentEventKind::Created,
            &[(taken, SlotStatus::Busy, SlotChangeReason::Booked)],
        ))
        .await;
        Ok(appointment)
    }

    /// The appointment an earlier call with `key` made, if any; the same key with
    /// other input is the caller's error.
    async fn replay(&self, actor: &Actor, key: &str, fingerprint: &str) -> ServiceResult<Option<Appointment>> {
        let existing = appointment::Entity::find()
            .filter(appointment::Column::CreatedBy.eq(actor.user_id.0))
            .filter(appointment::Column::IdempotencyKey.eq(key))
            .one(&self.db)
            .await?;
        match existing {
            None => Ok(None),
            Some(row) if row.request_fingerprint.as_deref() == Some(fingerprint) => {
                Appointment::try_from(row).map(Some)
            }
            Some(_) => Err(ServiceError::bad_input(
                "input.idempotencyKey",
                "this idempotency key was used with different input",
            )),
        }
    }

    /// Moves an appointment in place (same id; the old interval stays in its
    /// history) under the booking rules. A PATIENT may not move their own inside
    /// the location's notice window; STAFF and ADMIN may, and that is recorded.
    #[tracing::instrument(name = "booking.reschedule", skip_all)]
    pub async fn reschedule_appointment(
        &self,
        caller: &Caller,
        id: AppointmentId,
        start: DateTime<Utc>,
    ) -> ServiceResult<Appointment> {
        let actor = caller.actor()?.clone();
        let current = self
            .appointment_for_change(&actor, id, &[Role::Admin, Role::Staff, Role::Patient])
            .await?;
        let status = AppointmentStatus::from_code(&current.status).unwrap_or(AppointmentStatus::EnteredInError);
        if !matches!(status, AppointmentStatus::Booked | AppointmentStatus::Pending) {
            return Err(ServiceError::InvalidTransition(format!(
                "an appointment in status {} cannot be rescheduled",
                status.code()
            )));
        }
        let note = self.notice_window_check(&actor, &current).await?;
        if current.start_at == start {
            return Appointment::try_from(current);
        }
        let kind = self.appointment_type_row(&self.db, current.appointment_type_id).await?;
        let (_turn, txn) = self.begin_as_writer_of(ProviderId(current.provider_id)).await?;
        let bookable = self
            .check_bookable(
                &txn,
                Request {
                    provider: ProviderId(current.provider_id),
                    kind: &kind,
                    start,
                    user: actor.user_id.0,
                    moving: Some(current.id),
                    start_field: "start",
                },
            )
            .await?;
        let old = Interval::new(current.start_at, current.end_at);
        let mut active = current.clone().into_active_model();
        active.start_at = Set(bookable.interval.start);
        active.end_at = Set(bookable.interval.end);
        active.version = Set(current.version + 1);
        active.updated_at = Set(self.clock.now());
        let updated = active.update(&txn).await.map_err(booking_conflict)?;
        record_history(&txn, &updated, &actor, "reschedule", Some(status), Some(old), note).await?;
        self.plan_rescheduled(&txn, &updated).await?;
        self.audit(
            &txn,
            caller,
            appointment_audit(AuditAction::Update, updated.id, Some("reschedule")),
        )
        .await?;
        txn.commit().await.map_err(booking_conflict)?;
        let appointment = Appointment::try_from(updated)?;
        let taken = Interval::new(appointment.start, appointment.end);
        self.publish(events(
            &appointment,
            AppointmentEventKind::Updated,
            &[
                (old, SlotStatus::Free, SlotChangeReason::Released),
                (taken, SlotStatus::Busy, SlotChangeReason::Booked),
            ],
        ))
        .await;
        Ok(appointment)
    }
}

/// Hash of everything a booking asked for, to tell a retry from a new request.
fn fingerprint(input: &NewBooking) -> String {
    let text = format!(
        "{}|{}|{}|{}|{}",
        input.provider_id,
        input.patient_id,
        input.appointment_type_id,
        input.start.timestamp(),
        input.hold_id.map(|h| h.to_string()).unwrap_or_default()
    );
    crate::phi::hex_digest(&Sha256::digest(text.as_bytes()))
}

/// Maps the database's refusal of an overlapping or duplicate row.
pub(super) fn booking_conflict(err: DbErr) -> ServiceError {
    if is_exclusion_violation(&err) || is_unique_violation(&err) {
        ServiceError::SlotUnavailable("the interval was taken".into())
    } else {
        err.into()
    }
}

/// The audit record of a change to an appointment (which names its patient).
pub(super) fn appointment_audit(action: AuditAction, id: Uuid, what: Option<&str>) -> AuditRecord {
    AuditRecord {
        action,
        entity_type: "appointment",
        entity_id: Some(id),
        detail: what.map(|w| serde_json::json!({ "change": w })),
    }
}

/// Appends a history row for `row`'s new state.
pub(super) async fn record_history(
    txn: &DatabaseTransaction,
    row: &appointment::Model,
    actor: &Actor,
    action: &str,
    from_status: Option<AppointmentStatus>,
    old: Option<Interval>,
    note: Option<String>,
) -> ServiceResult<()> {
    history_row(row, actor, action, from_status, old, note)
        .insert(txn)
        .await?;
    Ok(())
}

/// The history row of `row`'s new state, to insert.
pub(super) fn history_row(
    row: &appointment::Model,
    actor: &Actor,
    action: &str,
    from_status: Option<AppointmentStatus>,
    old: Option<Interval>,
    note: Option<String>,
) -> appointment_history::ActiveModel {
    appointment_history::ActiveModel {
        id: Set(Uuid::now_v7()),
        appointment_id: Set(row.id),
        changed_at: Set(row.updated_at),
        actor_user_id: Set(Some(actor.user_id.0)),
        action: Set(action.to_owned()),
        from_status: Set(from_status.map(|s| s.code().to_owned())),
        to_status: Set(row.status.clone()),
        old_start_at: Set(old.map(|o| o.start)),
        old_end_at: Set(old.map(|o| o.end)),
        new_start_at: Set(row.start_at),
        new_end_at: Set(row.end_at),
        note: Set(note),
    }
}

/// A change of the provider's availability caused by an appointment change.
pub(super) type SlotChange = (Interval, SlotStatus, SlotChangeReason);

/// The events of a committed change: the slot changes it causes, then the
/// appointment's own event.
pub(super) fn events(appointment: &Appointment, kind: AppointmentEventKind, slots: &[SlotChange]) -> Vec<DomainEvent> {
    slots
        .iter()
        .map(|(interval, status, reason)| {
            DomainEvent::Slot(SlotEvent {
                provider_id: appointment.provider_id,
                start: interval.start,
                end: interval.end,
                status: *status,
                reason: *reason,
            })
        })
        .chain([DomainEvent::Appointment(AppointmentEvent {
            kind,
            appointment_id: appointment.id,
            location_id: appointment.location_id,
            provider_id: appointment.provider_id,
            patient_id: appointment.patient_id,
        })])
        .collect()
}

impl Services {
    /// Reads an appointment row for a change by `actor`: `NOT_FOUND` when they may
    /// not see it, `FORBIDDEN` when they see it but their role may not do this.
    pub(super) async fn appointment_for_change(
        &self,
        actor: &Actor,
        id: AppointmentId,
        roles: &[Role],
    ) -> ServiceResult<appointment::Model> {
        let row = appointment::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .ok_or(ServiceError::NotFound("appointment"))?;
        if !sees(actor, &row) {
            return Err(ServiceError::NotFound("appointment"));
        }
        actor.require(roles)?;
        Ok(row)
    }

    /// Refuses a PATIENT's change inside the location's notice window; answers the
    /// history note when STAFF or ADMIN override it.
    pub(super) async fn notice_window_check(
        &self,
        actor: &Actor,
        row: &appointment::Model,
    ) -> ServiceResult<Option<String>> {
        let location = super::slots::location_row(&self.db, row.location_id).await?;
        let deadline = row.start_at - chrono::Duration::minutes(location.cancel_notice_minutes.into());
        if self.clock.now() < deadline {
            return Ok(None);
        }
        if actor.role == Role::Patient {
            return Err(ServiceError::InvalidTransition(format!(
                "changes within {} minutes of the start must go through the clinic",
                location.cancel_notice_minutes
            )));
        }
        Ok(Some(format!(
            "override: inside the {}-minute notice window",
            location.cancel_notice_minutes
        )))
    }
}

/// True when `actor` may see the appointment `row`.
pub(super) fn sees(actor: &Actor, row: &appointment::Model) -> bool {
    match actor.role {
        Role::Admin | Role::Staff => actor.manages_location(row.location_id.into()),
        Role::Patient => actor.patient_id.is_some_and(|p| p.0 == row.patient_id),
        Role::Provider => actor.provider_id.is_some_and(|p| p.0 == row.provider_id),
    }
}
