//! Reading appointments: one by id, or a filtered keyset page by start.

use super::booking::{appointment_audit, sees};
use super::model::{Appointment, AppointmentFilter, MAX_APPOINTMENT_LENGTH};
use crate::auth::Role;
use crate::error::{ServiceError, ServiceResult};
use crate::ids::AppointmentId;
use crate::pagination::{Page, decode_cursor, encode_cursor, page_size};
use crate::phi::{AuditAction, AuditRecord};
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::appointment;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

impl Services {
    /// One appointment, or `None` when it does not exist or the caller may not
    /// see it. Audited: an appointment names its patient.
    #[tracing::instrument(name = "appointments.read", skip_all)]
    pub async fn appointment(&self, caller: &Caller, id: AppointmentId) -> ServiceResult<Option<Appointment>> {
        let actor = caller.actor()?;
        let Some(row) = appointment::Entity::find_by_id(id.0).one(&self.db).await? else {
            return Ok(None);
        };
        if !sees(actor, &row) {
            return Ok(None);
        }
        self.audit(&self.db, caller, appointment_audit(AuditAction::Read, row.id, None))
            .await?;
        Appointment::try_from(row).map(Some)
    }

    /// Appointments matching `filter` that the caller may see, by start, as a
    /// keyset page. A PATIENT sees their own, a PROVIDER their schedule.
    #[tracing::instrument(name = "appointments.list", skip_all)]
    pub async fn appointments(
        &self,
        caller: &Caller,
        filter: AppointmentFilter,
        first: i32,
        after: Option<&str>,
    ) -> ServiceResult<Page<Appointment>> {
        let actor = caller.actor()?;
        let first = page_size(first)?;
        let after: Option<(DateTime<Utc>, Uuid)> = decode_cursor(after)?;
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && to <= from
        {
            return Err(ServiceError::bad_input("filter.to", "to must be after from"));
        }
        let mut query = appointment::Entity::find()
            .order_by_asc(appointment::Column::StartAt)
            .order_by_asc(appointment::Column::Id)
            .limit(first + 1);
        match actor.role {
            Role::Admin => {}
            Role::Staff => {
                let scope = actor.staff_scope().unwrap_or_default();
                query = query.filter(appointment::Column::LocationId.is_in(scope));
            }
            Role::Patient => {
                let own = actor.patient_id.ok_or(ServiceError::Forbidden)?;
                if filter.patient_id.is_some_and(|p| p != own) {
                    return Err(ServiceError::Forbidden);
                }
                query = query.filter(appointment::Column::PatientId.eq(own.0));
            }
            Role::Provider => {
                let own = actor.provider_id.ok_or(ServiceError::Forbidden)?;
                if filter.provider_id.is_some_and(|p| p != own) {
                    return Err(ServiceError::Forbidden);
                }
                query = query.filter(appointment::Column::ProviderId.eq(own.0));
            }
        }
        if let Some(location) = filter.location_id {
            query = query.filter(appointment::Column::LocationId.eq(location.0));
        }
        if let Some(provider) = filter.provider_id {
            query = query.filter(appointment::Column::ProviderId.eq(provider.0));
        }
        if let Some(patient) = filter.patient_id {
            query = query.filter(appointment::Column::PatientId.eq(patient.0));
        }
        if let Some(from) = filter.from {
            // The start bound adds no answer (see `MAX_APPOINTMENT_LENGTH`);
            // it keeps the index range to the window.
            query = query
                .filter(appointment::Column::StartAt.gt(from - MAX_APPOINTMENT_LENGTH))
                .filter(appointment::Column::EndAt.gt(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(appointment::Column::StartAt.lt(to));
        }
        if let Some(statuses) = &filter.statuses {
            query = query.filter(appointment::Column::Status.is_in(statuses.iter().map(|s| s.code())));
        }
        if let Some((start, id)) = after {
            query = query.filter(
                Condition::any().add(appointment::Column::StartAt.gt(start)).add(
                    Condition::all()
                        .add(appointment::Column::StartAt.eq(start))
                        .add(appointment::Column::Id.gt(id)),
                ),
            );
        }
        let rows = query.all(&self.replica).await?;
        let page = Page::from_rows(
            rows,
            first,
            |r| encode_cursor(&(r.start_at, r.id)),
            Appointment::try_from,
        )?;
        let ids: Vec<String> = page.items.iter().map(|(_, a)| a.id.to_string()).collect();
        self.audit(
            &self.db,
            caller,
            AuditRecord {
                action: AuditAction::Search,
                entity_type: "appointment",
                entity_id: None,
                detail: Some(serde_json::json!({ "count": ids.len(), "ids": ids })),
            },
        )
        .await?;
        Ok(page)
    }

    /// An appointment by id without checks or audit, for event delivery to
    /// subscribers whose access was checked when they subscribed.
    pub async fn appointment_unchecked(&self, id: AppointmentId) -> ServiceResult<Option<Appointment>> {
        appointment::Entity::find_by_id(id.0)
            .one(&self.db)
            .await?
            .map(Appointment::try_from)
            .transpose()
    }
}
