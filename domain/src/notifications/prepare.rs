//! What a job's notice says and where it goes, read when it is sent: the
//! appointment as it is now, the patient's contact details (decrypted here,
//! audited, never stored in the job) and preferences, the location's zone and
//! quiet hours.

use super::config::QuietHours;
use super::content::{NoticeFacts, NoticeKind, RenderedNotice, render};
use crate::directory::Patient;
use crate::error::ServiceResult;
use crate::ids::PatientId;
use crate::jobs::{Job, JobKind};
use crate::phi::{AuditAction, AuditRecord, write_audits};
use crate::scheduling::AppointmentStatus;
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::{appointment, location};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::collections::{HashMap, HashSet};

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
    /// Reads what each job of a claimed batch should send now, or why it
    /// should send nothing, in order. The batch's appointments, locations and
    /// patients are read with one query each, and the reads of the patients'
    /// contact details are audited in one append for the batch (one turn at
    /// the audit chain's lock and one commit, not one per job).
    pub async fn prepare_notices(&self, jobs: &[&Job]) -> ServiceResult<Vec<Prepared>> {
        let now = self.clock.now();
        let appointments = by_id(
            appointment::Entity::find()
                .filter(appointment::Column::Id.is_in(unique(jobs.iter().map(|j| j.payload.appointment_id))))
                .all(&self.db)
                .await?,
            |a| a.id,
        );
        // Only appointments still worth a notice need their location and patient.
        let live: Vec<&appointment::Model> = jobs
            .iter()
            .filter_map(|job| {
                let row = appointments.get(&job.payload.appointment_id)?;
                moot(job, row, status_of(row), now).is_none().then_some(row)
            })
            .collect();
        let places = if live.is_empty() {
            HashMap::new()
        } else {
            by_id(
                location::Entity::find()
                    .filter(location::Column::Id.is_in(unique(live.iter().map(|a| a.location_id))))
                    .all(&self.db)
                    .await?,
                |l| l.id,
            )
        };
        let patient_ids: Vec<PatientId> = unique(live.iter().map(|a| a.patient_id)).map(PatientId::from).collect();
        let patients: HashMap<uuid::Uuid, Patient> = if patient_ids.is_empty() {
            HashMap::new()
        } else {
            by_id(self.patients_by_ids_unchecked(&patient_ids).await?, |p| p.id.0)
        };
        let mut prepared = Vec::with_capacity(jobs.len());
        let mut reads = Vec::new();
        for job in jobs {
            let row = appointments.get(&job.payload.appointment_id);
            let (notice, patient) = self.prepare_one(job, row, &places, &patients, now)?;
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

    /// What `job` should send, from the rows read for its batch, and whose
    /// contact details were read for it (to audit).
    fn prepare_one(
        &self,
        job: &Job,
        row: Option<&appointment::Model>,
        places: &HashMap<uuid::Uuid, location::Model>,
        patients: &HashMap<uuid::Uuid, Patient>,
        now: DateTime<Utc>,
    ) -> ServiceResult<(Prepared, Option<uuid::Uuid>)> {
        let Some(row) = row else {
            return Ok((Prepared::Skip("the appointment no longer exists".into()), None));
        };
        let kind = match job.kind {
            JobKind::Confirmation => NoticeKind::Confirmation,
            JobKind::Reminder => NoticeKind::Reminder,
            JobKind::Rescheduled => NoticeKind::Rescheduled,
            JobKind::Cancelled => NoticeKind::Cancelled,
        };
        if let Some(reason) = moot(job, row, status_of(row), now) {
            return Ok((Prepared::Skip(reason.into()), None));
        }
        let Some(place) = places.get(&row.location_id) else {
            return Ok((Prepared::Skip("the location no longer exists".into()), None));
        };
        let zone = crate::scheduling::location_zone(place)?;
        let Some(person) = patients.get(&row.patient_id) else {
            return Ok((Prepared::Skip("the patient no longer exists".into()), None));
        };
        let email = match &person.email {
            _ if !person.notify_by_email => Err("the patient opted out of email"),
            Some(address) => Ok(address.clone()),
            None => Err("the patient has no email address"),
        };
        let phone = match &person.phone {
            _ if !person.notify_by_sms => Err("the patient opted out of SMS"),
            Some(number) => Ok(number.clone()),
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

fn status_of(row: &appointment::Model) -> AppointmentStatus {
    AppointmentStatus::from_code(&row.status).unwrap_or(AppointmentStatus::EnteredInError)
}

/// `ids` without repeats, in first-seen order.
fn unique(ids: impl Iterator<Item = uuid::Uuid>) -> impl Iterator<Item = uuid::Uuid> {
    let mut seen = HashSet::new();
    ids.filter(move |id| seen.insert(*id))
}

fn by_id<T>(rows: Vec<T>, id: impl Fn(&T) -> uuid::Uuid) -> HashMap<uuid::Uuid, T> {
    rows.into_iter().map(|row| (id(&row), row)).collect()
}
