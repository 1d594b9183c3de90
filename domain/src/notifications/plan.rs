//! Which jobs a change of an appointment writes, in that change's transaction:
//! booking -> a confirmation and reminders; reschedule -> the pending reminders
//! move (cancelled and written anew) and a notice goes out; cancellation -> the
//! pending jobs are cancelled and a notice goes out. A reminder whose time has
//! already passed is not written.

use super::config::ReminderOffsets;
use crate::error::ServiceResult;
use crate::jobs::{JobKind, NewJob, NoticePayload, cancel_pending, enqueue_all};
use crate::scheduling::AppointmentStatus;
use crate::services::Services;
use chrono::Duration;
use entity::appointment;
use sea_orm::ConnectionTrait;

impl Services {
    /// The jobs of a new booking (its confirmation and its reminders), for
    /// the caller to write: a batch of bookings writes all of theirs at once.
    pub(crate) async fn booked_jobs(
        &self,
        conn: &impl ConnectionTrait,
        row: &appointment::Model,
    ) -> ServiceResult<Vec<NewJob>> {
        let mut jobs = vec![self.notice(row, JobKind::Confirmation)];
        jobs.extend(self.reminders(conn, row).await?);
        Ok(jobs)
    }

    /// Jobs of a reschedule: reminders move, a notice goes out.
    pub(crate) async fn plan_rescheduled(
        &self,
        txn: &impl ConnectionTrait,
        row: &appointment::Model,
    ) -> ServiceResult<()> {
        let now = self.clock.now();
        cancel_pending(txn, row.id, &[JobKind::Reminder, JobKind::Rescheduled], now).await?;
        let mut jobs = vec![self.notice(row, JobKind::Rescheduled)];
        jobs.extend(self.reminders(txn, row).await?);
        enqueue_all(txn, jobs, now).await
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
                enqueue_all(txn, vec![self.notice(row, JobKind::Cancelled)], now).await
            }
            // The version moved: plan the reminders anew for it.
            AppointmentStatus::Booked | AppointmentStatus::Pending => {
                cancel_pending(txn, row.id, &[JobKind::Reminder], now).await?;
                let reminders = self.reminders(txn, row).await?;
                enqueue_all(txn, reminders, now).await
            }
            _ => {
                cancel_pending(txn, row.id, &[JobKind::Reminder], now).await?;
                Ok(())
            }
        }
    }

    /// The notice job of `kind` about `row`, due now.
    fn notice(&self, row: &appointment::Model, kind: JobKind) -> NewJob {
        let dedupe_key = match kind {
            // One confirmation and one cancellation per appointment; one
            // reschedule notice per version.
            JobKind::Confirmation | JobKind::Cancelled => format!("{}:{}", kind.code(), row.id),
            JobKind::Rescheduled | JobKind::Reminder => format!("{}:{}:v{}", kind.code(), row.id, row.version),
        };
        NewJob {
            kind,
            payload: NoticePayload {
                appointment_id: row.id,
                version: row.version,
                offset_minutes: None,
            },
            run_at: self.clock.now(),
            max_attempts: self.policy.job_max_attempts,
            dedupe_key,
        }
    }

    /// The reminder jobs of `row`'s version whose time has not passed.
    async fn reminders(&self, txn: &impl ConnectionTrait, row: &appointment::Model) -> ServiceResult<Vec<NewJob>> {
        let now = self.clock.now();
        Ok(self
            .reminder_offsets_for(txn, row)
            .await?
            .minutes()
            .iter()
            .filter_map(|minutes| {
                let run_at = row.start_at - Duration::minutes(i64::from(*minutes));
                (run_at > now).then(|| NewJob {
                    kind: JobKind::Reminder,
                    payload: NoticePayload {
                        appointment_id: row.id,
                        version: row.version,
                        offset_minutes: Some(*minutes),
                    },
                    run_at,
                    max_attempts: self.policy.job_max_attempts,
                    dedupe_key: format!("{}:{}:v{}:{minutes}", JobKind::Reminder.code(), row.id, row.version),
                })
            })
            .collect())
    }

    /// The appointment type's offsets, else the location's, else the
    /// deployment's. Types and locations never change: they come from the
    /// slot cache when it has them.
    async fn reminder_offsets_for(
        &self,
        txn: &impl ConnectionTrait,
        row: &appointment::Model,
    ) -> ServiceResult<ReminderOffsets> {
        let kind = self.kind_for_write(txn, row.appointment_type_id).await?;
        let place = self.location_for_write(txn, row.location_id).await?;
        let configured = kind.reminder_offsets_minutes.or(place.reminder_offsets_minutes);
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
