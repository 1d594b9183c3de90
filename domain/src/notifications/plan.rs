//! Which jobs a change of an appointment writes, in that change's transaction:
//! booking -> a confirmation and reminders; reschedule -> the pending reminders
//! move (cancelled and written anew) and a notice goes out; cancellation -> the
//! pending jobs are cancelled and a notice goes out. A reminder whose time has
//! already passed is not written.

use super::config::ReminderOffsets;
use crate::error::ServiceResult;
use crate::jobs::{JobKind, NewJob, NoticePayload, cancel_pending, enqueue};
use crate::scheduling::AppointmentStatus;
use crate::services::Services;
use chrono::Duration;
use entity::{appointment, appointment_type, location};
use sea_orm::{ConnectionTrait, EntityTrait};

impl Services {
    /// Jobs of a new booking.
    pub(crate) async fn plan_booked(&self, txn: &impl ConnectionTrait, row: &appointment::Model) -> ServiceResult<()> {
        self.plan_notice(txn, row, JobKind::Confirmation).await?;
        self.plan_reminders(txn, row).await
    }

    /// Jobs of a reschedule: reminders move, a notice goes out.
    pub(crate) async fn plan_rescheduled(
        &self,
        txn: &impl ConnectionTrait,
        row: &appointment::Model,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        cancel_pending(txn, row.id, &[JobKind::Reminder, JobKind::Rescheduled], now).await?;
        self.plan_notice(txn, row, JobKind::Rescheduled).await?;
        self.plan_reminders(txn, row).await
    }

    /// Jobs of a status change: a cancellation cancels what is pending and
    /// sends a notice; any status past BOOKED makes pending reminders moot.
    pub(crate) async fn plan_status_changed(
        &self,
        txn: &impl ConnectionTrait,
        row: &appointment::Model,
        to: AppointmentStatus,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        match to {
            AppointmentStatus::Cancelled => {
                cancel_pending(txn, row.id, &[], now).await?;
                self.plan_notice(txn, row, JobKind::Cancelled).await
            }
            // The version moved: plan the reminders anew for it.
            AppointmentStatus::Booked | AppointmentStatus::Pending => {
                cancel_pending(txn, row.id, &[JobKind::Reminder], now).await?;
                self.plan_reminders(txn, row).await
            }
            _ => {
                cancel_pending(txn, row.id, &[JobKind::Reminder], now).await?;
                Ok(())
            }
        }
    }

    async fn plan_notice(
        &self,
        txn: &impl ConnectionTrait,
        row: &appointment::Model,
        kind: JobKind,
    ) -> ServiceResult<()> {
        let dedupe_key = match kind {
            // One confirmation and one cancellation per appointment; one
            // reschedule notice per version.
            JobKind::Confirmation | JobKind::Cancelled => format!("{}:{}", kind.code(), row.id),
            JobKind::Rescheduled | JobKind::Reminder => format!("{}:{}:v{}", kind.code(), row.id, row.version),
        };
        let job = NewJob {
            kind,
            payload: NoticePayload {
                appointment_id: row.id,
                version: row.version,
                offset_minutes: None,
            },
            run_at: self.clock.now(),
            max_attempts: self.policy.job_max_attempts,
            dedupe_key,
        };
        enqueue(txn, job, self.clock.now()).await
    }

    async fn plan_reminders(&self, txn: &impl ConnectionTrait, row: &appointment::Model) -> ServiceResult<()> {
        let now = self.clock.now();
        for minutes in self.reminder_offsets_for(txn, row).await?.minutes() {
            let run_at = row.start_at - Duration::minutes(i64::from(*minutes));
            if run_at <= now {
                continue;
            }
            let job = NewJob {
                kind: JobKind::Reminder,
                payload: NoticePayload {
                    appointment_id: row.id,
                    version: row.version,
                    offset_minutes: Some(*minutes),
                },
                run_at,
                max_attempts: self.policy.job_max_attempts,
                dedupe_key: format!("{}:{}:v{}:{minutes}", JobKind::Reminder.code(), row.id, row.version),
            };
            enqueue(txn, job, now).await?;
        }
        Ok(())
    }

    /// The appointment type's offsets, else the location's, else the deployment's.
    async fn reminder_offsets_for(
        &self,
        txn: &impl ConnectionTrait,
        row: &appointment::Model,
    ) -> ServiceResult<ReminderOffsets> {
        let kind = appointment_type::Entity::find_by_id(row.appointment_type_id)
            .one(txn)
            .await?;
        let place = location::Entity::find_by_id(row.location_id).one(txn).await?;
        let configured = kind
            .and_then(|k| k.reminder_offsets_minutes)
            .or_else(|| place.and_then(|l| l.reminder_offsets_minutes));
        Ok(match configured.map(|text| text.parse::<ReminderOffsets>()) {
            Some(Ok(offsets)) => offsets,
            Some(Err(e)) => {
                // Values are validated on write; a bad stored one falls back, loudly.
                tracing::warn!(appointment = %row.id, error = %e, "invalid stored reminder offsets; using the default");
                self.policy.reminder_offsets.clone()
            }
            None => self.policy.reminder_offsets.clone(),
        })
    }
}
