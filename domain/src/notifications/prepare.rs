//! What a job's notice says and where it goes, read when it is sent: the
//! appointment as it is now, the patient's contact details (decrypted here,
//! audited, never stored in the job) and preferences, the location's zone and
//! quiet hours.

use super::config::QuietHours;
use super::content::{NoticeFacts, NoticeKind, RenderedNotice, render};
use crate::error::ServiceResult;
use crate::jobs::{Job, JobKind};
use crate::phi::{AuditAction, AuditRecord, write_audits};
use crate::scheduling::AppointmentStatus;
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::{appointment, location, patient};
use sea_orm::EntityTrait;

/// A notice ready to send.
#[derive(Clone)]
pub struct PreparedNotice {
    /// Which notice.
    pub kind: NoticeKind,
    /// The rendered text.
    pub rendered: RenderedNotice,
    /// Where the email goes, or why there is none.
    pub email: Result<String, &'static str>,
    /// Where the SMS goes, or why there is none.
    pub phone: Result<String, &'static str>,
    /// When quiet hours at the location hold the SMS back, until when.
    pub sms_wait_until: Option<DateTime<Utc>>,
}

// Contact details are PHI: never in a log line, not even by accident.
impl std::fmt::Debug for PreparedNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedNotice")
            .field("kind", &self.kind)
            .field("email", &self.email.as_ref().map(|_| "[redacted]"))
            .field("phone", &self.phone.as_ref().map(|_| "[redacted]"))
            .field("sms_wait_until", &self.sms_wait_until)
            .finish_non_exhaustive()
    }
}

/// What a job comes to.
#[derive(Clone, Debug)]
pub enum Prepared {
    /// Nothing to send, and why (the appointment changed, it is too late).
    Skip(String),
    /// Send this.
    Send(Box<PreparedNotice>),
}

impl Services {
    /// Reads what `job` should send now, or why it should send nothing.
    pub async fn prepare_notice(&self, job: &Job) -> ServiceResult<Prepared> {
        let mut prepared = self.prepare_notices(&[job]).await?;
        Ok(prepared
            .pop()
            .unwrap_or_else(|| Prepared::Skip("nothing prepared".into())))
    }

    /// [`Services::prepare_notice`] for a claimed batch, in order: the reads of
    /// the patients' contact details are audited in one append for the batch
    /// (one turn at the audit chain's lock and one commit, not one per job).
    pub async fn prepare_notices(&self, jobs: &[&Job]) -> ServiceResult<Vec<Prepared>> {
        let mut prepared = Vec::with_capacity(jobs.len());
        let mut reads = Vec::new();
        for job in jobs {
            let (notice, patient) = self.prepare_unaudited(job).await?;
            if let Some(patient) = patient {
                reads.push(AuditRecord {
                    action: AuditAction::Read,
                    entity_type: "patient",
                    entity_id: Some(patient),
                    detail: Some(serde_json::json!({ "purpose": "notification", "job": job.id.to_string() })),
                });
            }
            prepared.push(notice);
        }
        // Written before anything is sent: no contact detail leaves unrecorded.
        let caller = Caller::default();
        write_audits(
            &self.db,
            self.clock.as_ref(),
            caller.actor.as_ref(),
            &caller.meta,
            reads,
        )
        .await?;
        Ok(prepared)
    }

    /// What `job` should send, and whose contact details were read for it (to audit).
    async fn prepare_unaudited(&self, job: &Job) -> ServiceResult<(Prepared, Option<uuid::Uuid>)> {
        let now = self.clock.now();
        let Some(row) = appointment::Entity::find_by_id(job.payload.appointment_id)
            .one(&self.db)
            .await?
        else {
            return Ok((Prepared::Skip("the appointment no longer exists".into()), None));
        };
        let status = AppointmentStatus::from_code(&row.status).unwrap_or(AppointmentStatus::EnteredInError);
        let kind = match job.kind {
            JobKind::Confirmation => NoticeKind::Confirmation,
            JobKind::Reminder => NoticeKind::Reminder,
            JobKind::Rescheduled => NoticeKind::Rescheduled,
            JobKind::Cancelled => NoticeKind::Cancelled,
        };
        if let Some(reason) = moot(job, &row, status, now) {
            return Ok((Prepared::Skip(reason.into()), None));
        }
        let Some(place) = location::Entity::find_by_id(row.location_id).one(&self.db).await? else {
            return Ok((Prepared::Skip("the location no longer exists".into()), None));
        };
        let zone = crate::scheduling::location_zone(&place)?;
        let Some(person) = patient::Entity::find_by_id(row.patient_id).one(&self.db).await? else {
            return Ok((Prepared::Skip("the patient no longer exists".into()), None));
        };
        let contact = self
            .patients_by_ids_unchecked(&[row.patient_id.into()])
            .await?
            .into_iter()
            .next();
        let email = match contact.as_ref().and_then(|c| c.email.clone()) {
            _ if !person.notify_email => Err("the patient opted out of email"),
            Some(address) => Ok(address),
            None => Err("the patient has no email address"),
        };
        let phone = match contact.as_ref().and_then(|c| c.phone.clone()) {
            _ if !person.notify_sms => Err("the patient opted out of SMS"),
            Some(number) => Ok(number),
            None => Err("the patient has no phone number"),
        };
        let quiet = match place.sms_quiet_hours.as_deref() {
            Some(text) => QuietHours::parse_setting(text).unwrap_or(self.policy.sms_quiet_hours),
            None => self.policy.sms_quiet_hours,
        };
        let sms_wait_until = quiet.and_then(|q| q.wait_until(now, &zone));
        // Held past the start, an SMS about the visit is no use.
        let phone = match (phone, sms_wait_until) {
            (Ok(_), Some(until)) if until >= row.start_at && kind != NoticeKind::Cancelled => {
                Err("quiet hours last until after the start")
            }
            (phone, _) => phone,
        };
        let rendered = render(&NoticeFacts {
            kind,
            appointment_id: row.id,
            version: row.version,
            clinic: &place.name,
            zone,
            start: row.start_at,
            end: row.end_at,
            now,
        });
        let notice = Prepared::Send(Box::new(PreparedNotice {
            kind,
            rendered,
            email,
            phone,
            sms_wait_until,
        }));
        Ok((notice, Some(row.patient_id)))
    }
}

/// Why a job has become pointless, if it has.
fn moot(job: &Job, row: &appointment::Model, status: AppointmentStatus, now: DateTime<Utc>) -> Option<&'static str> {
    let upcoming = matches!(status, AppointmentStatus::Booked | AppointmentStatus::Pending);
    match job.kind {
        JobKind::Cancelled if status != AppointmentStatus::Cancelled => Some("the appointment is no longer cancelled"),
        JobKind::Cancelled => None,
        _ if !upcoming => Some("the appointment is no longer booked"),
        JobKind::Reminder if job.payload.version != row.version => Some("the appointment changed after planning"),
        JobKind::Rescheduled if job.payload.version != row.version => Some("a later change superseded this notice"),
        JobKind::Reminder if now >= row.start_at => Some("the appointment has started"),
        _ if now >= row.end_at => Some("the appointment is over"),
        _ => None,
    }
}
