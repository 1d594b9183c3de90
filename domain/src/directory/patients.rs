//! Patients: every PHI field encrypted at rest, every read and write audited.
//!
//! Search never decrypts the table: an email or phone is matched through its
//! keyed hash, a name through keyed hashes of its words (whole words, any order).

use crate::auth::{Actor, NewUser, Role};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::PatientId;
use crate::pagination::{Page, decode_cursor, encode_cursor, page_size};
use crate::phi::{AuditAction, AuditRecord};
use crate::services::{Caller, Services};
use crate::validate;
use chrono::NaiveDate;
use entity::{appointment, patient, patient_name_token};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait, sea_query::Func,
};
use uuid::Uuid;

/// A patient as shown to clients (decrypted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patient {
    /// Id.
    pub id: PatientId,
    /// Full name.
    pub name: String,
    /// Date of birth.
    pub birth_date: NaiveDate,
    /// Contact email.
    pub email: Option<String>,
    /// Contact phone, E.164.
    pub phone: Option<String>,
    /// Whether reminders may go by email.
    pub notify_by_email: bool,
    /// Whether reminders may go by SMS.
    pub notify_by_sms: bool,
}

/// Input of `createPatient`.
#[derive(Clone, Debug)]
pub struct NewPatient {
    /// Full name.
    pub name: String,
    /// Date of birth.
    pub birth_date: NaiveDate,
    /// Contact email (also the sign-in when a password is given).
    pub email: Option<String>,
    /// Contact phone.
    pub phone: Option<String>,
    /// Creates a PATIENT sign-in with the email when present.
    pub password: Option<String>,
}

/// Input of `updatePatient`: `None` leaves a field alone; `Some(None)` clears it.
#[derive(Clone, Debug, Default)]
pub struct PatientUpdate {
    /// New name.
    pub name: Option<String>,
    /// New contact email, or clear it.
    pub email: Option<Option<String>>,
    /// New contact phone, or clear it.
    pub phone: Option<Option<String>>,
    /// Accept (or refuse) email notifications.
    pub notify_email: Option<bool>,
    /// Accept (or refuse) SMS notifications.
    pub notify_sms: Option<bool>,
}

const NAME: &str = "patients.name";
const BIRTH_DATE: &str = "patients.birth_date";
const EMAIL: &str = "patients.email";
const PHONE: &str = "patients.phone";

impl Services {
    /// Creates a patient (ADMIN, STAFF), with a PATIENT sign-in when a password is given.
    #[tracing::instrument(name = "patients.create", skip_all)]
    pub async fn create_patient(&self, caller: &Caller, input: NewPatient) -> ServiceResult<Patient> {
        caller.actor()?.require_staff()?;
        let name = validate::name("input.name", &input.name, 200)?;
        let today = self.clock.now().date_naive();
        if input.birth_date > today || input.birth_date < NaiveDate::from_ymd_opt(1880, 1, 1).unwrap_or(NaiveDate::MIN)
        {
            return Err(ServiceError::bad_input(
                "input.birthDate",
                "birth date must be in the past",
            ));
        }
        let email = input
            .email
            .as_deref()
            .map(|e| validate::email("input.email", e))
            .transpose()?;
        let phone = input
            .phone
            .as_deref()
            .map(|p| validate::phone("input.phone", p))
            .transpose()?;
        if input.password.is_some() && email.is_none() {
            return Err(ServiceError::bad_input(
                "input.email",
                "an email is required to create a sign-in",
            ));
        }
        let patient = Patient {
            id: PatientId::new(),
            name,
            birth_date: input.birth_date,
            email,
            phone,
            notify_by_email: true,
            notify_by_sms: true,
        };
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let id = patient.id.0;
        patient::ActiveModel {
            id: Set(id),
            phi_key_id: Set(self.keyring.current_key_id().to_owned()),
            name_enc: Set(self.seal(NAME, id, &patient.name)?),
            birth_date_enc: Set(self.seal(BIRTH_DATE, id, &patient.birth_date.to_string())?),
            email_enc: Set(patient.email.as_deref().map(|e| self.seal(EMAIL, id, e)).transpose()?),
            phone_enc: Set(patient.phone.as_deref().map(|p| self.seal(PHONE, id, p)).transpose()?),
            email_bidx: Set(patient.email.as_deref().map(|e| self.keyring.blind_index("email", e))),
            phone_bidx: Set(patient.phone.as_deref().map(|p| self.keyring.blind_index("phone", p))),
            notify_email: Set(true),
            notify_sms: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        self.index_name(&txn, id, &patient.name).await?;
        if let (Some(password), Some(email)) = (&input.password, &patient.email) {
            self.insert_user(
                &txn,
                NewUser {
                    email,
                    password,
                    role: Role::Patient,
                    provider_id: None,
                    patient_id: Some(id),
                },
                "input.email",
            )
            .await?;
        }
        self.audit(
            &txn,
            caller,
            AuditRecord {
                action: AuditAction::Create,
                entity_type: "patient",
                entity_id: Some(id),
                detail: Some(serde_json::json!({ "signIn": input.password.is_some() })),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(patient)
    }

    /// Changes a patient's contact details (ADMIN, STAFF, or the patient themself).
    #[tracing::instrument(name = "patients.update", skip_all)]
    pub async fn update_patient(&self, caller: &Caller, id: PatientId, input: PatientUpdate) -> ServiceResult<Patient> {
        let actor = caller.actor()?;
        match actor.role {
            Role::Admin | Role::Staff => {}
            Role::Patient if actor.patient_id == Some(id) => {}
            // A provider may see their patients but not change them.
            Role::Provider if self.may_see_patient(actor, id).await? => return Err(ServiceError::Forbidden),
            // Existence is not revealed to callers who may not see the record.
            _ => return Err(ServiceError::NotFound("patient")),
        }
        let name = input
            .name
            .as_deref()
            .map(|n| validate::name("input.name", n, 200))
            .transpose()?;
        let email = input
            .email
            .as_ref()
            .map(|e| e.as_deref().map(|e| validate::email("input.email", e)).transpose())
            .transpose()?;
        let phone = input
            .phone
            .as_ref()
            .map(|p| p.as_deref().map(|p| validate::phone("input.phone", p)).transpose())
            .transpose()?;
        let txn = self.db.begin().await?;
        let row = patient::Entity::find_by_id(id.0)
            .one(&txn)
            .await?
            .ok_or(ServiceError::NotFound("patient"))?;
        let mut current = self.open_patient(&row)?;
        // Re-encrypt every field with the current key so the row has one key id.
        let mut changed = Vec::new();
        if let Some(name) = name {
            current.name = name;
            changed.push("name");
        }
        if let Some(email) = email {
            current.email = email;
            changed.push("email");
        }
        if let Some(phone) = phone {
            current.phone = phone;
            changed.push("phone");
        }
        let mut active = row.into_active_model();
        active.phi_key_id = Set(self.keyring.current_key_id().to_owned());
        active.name_enc = Set(self.seal(NAME, id.0, &current.name)?);
        active.birth_date_enc = Set(self.seal(BIRTH_DATE, id.0, &current.birth_date.to_string())?);
        active.email_enc = Set(current
            .email
            .as_deref()
            .map(|e| self.seal(EMAIL, id.0, e))
            .transpose()?);
        active.phone_enc = Set(current
            .phone
            .as_deref()
            .map(|p| self.seal(PHONE, id.0, p))
            .transpose()?);
        active.email_bidx = Set(current.email.as_deref().map(|e| self.keyring.blind_index("email", e)));
        active.phone_bidx = Set(current.phone.as_deref().map(|p| self.keyring.blind_index("phone", p)));
        if let Some(accept) = input.notify_email {
            current.notify_by_email = accept;
            active.notify_email = Set(accept);
            changed.push("notifyEmail");
        }
        if let Some(accept) = input.notify_sms {
            current.notify_by_sms = accept;
            active.notify_sms = Set(accept);
            changed.push("notifySms");
        }
        active.updated_at = Set(self.clock.now());
        active.update(&txn).await?;
        if changed.contains(&"name") {
            patient_name_token::Entity::delete_many()
                .filter(patient_name_token::Column::PatientId.eq(id.0))
                .exec(&txn)
                .await?;
            self.index_name(&txn, id.0, &current.name).await?;
        }
        self.audit(
            &txn,
            caller,
            AuditRecord {
                action: AuditAction::Update,
                entity_type: "patient",
                entity_id: Some(id.0),
                detail: Some(serde_json::json!({ "fields": changed })),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(current)
    }

    /// One patient, or `None` when it does not exist or the caller may not see it.
    #[tracing::instrument(name = "patients.read", skip_all)]
    pub async fn patient(&self, caller: &Caller, id: PatientId) -> ServiceResult<Option<Patient>> {
        let actor = caller.actor()?;
        if !self.may_see_patient(actor, id).await? {
            return Ok(None);
        }
        let Some(row) = patient::Entity::find_by_id(id.0).one(&self.db).await? else {
            return Ok(None);
        };
        let patient = self.open_patient(&row)?;
        self.audit(
            &self.db,
            caller,
            AuditRecord {
                action: AuditAction::Read,
                entity_type: "patient",
                entity_id: Some(id.0),
                detail: None,
            },
        )
        .await?;
        Ok(Some(patient))
    }

    /// Patients by id, decrypted, without access checks or audit: for callers that
    /// have checked and will audit (loaders of appointments' patients).
    #[tracing::instrument(name = "patients.read_many", skip_all)]
    pub async fn patients_by_ids_unchecked(&self, ids: &[PatientId]) -> ServiceResult<Vec<Patient>> {
        patient::Entity::find()
            .filter(patient::Column::Id.is_in(ids.iter().map(|p| p.0)))
            .all(&self.db)
            .await?
            .iter()
            .map(|row| self.open_patient(row))
            .collect()
    }

    /// Patients the caller may see, matching `search` (an email, a phone number, or
    /// whole words of the name), as a keyset page by id (ADMIN, STAFF, PROVIDER).
    #[tracing::instrument(name = "patients.list", skip_all)]
    pub async fn patients(
        &self,
        caller: &Caller,
        search: Option<&str>,
        first: i32,
        after: Option<&str>,
    ) -> ServiceResult<Page<Patient>> {
        let actor = caller.actor()?;
        actor.require(&[Role::Admin, Role::Staff, Role::Provider])?;
        let first = page_size(first)?;
        let after: Option<Uuid> = decode_cursor(after)?;
        let mut query = patient::Entity::find()
            .order_by_asc(patient::Column::Id)
            .limit(first + 1);
        if let Some(after) = after {
            query = query.filter(patient::Column::Id.gt(after));
        }
        if let Some(provider_id) = actor.provider_id.filter(|_| actor.role == Role::Provider) {
            query = query.filter(
                patient::Column::Id.in_subquery(
                    Query::select()
                        .column(appointment::Column::PatientId)
                        .from(appointment::Entity)
                        .and_where(Expr::col(appointment::Column::ProviderId).eq(provider_id.0))
                        .to_owned(),
                ),
            );
        }
        match search.map(str::trim).filter(|s| !s.is_empty()) {
            None => {}
            Some(term) if term.contains('@') => {
                let email = term.to_lowercase();
                query = query.filter(patient::Column::EmailBidx.eq(self.keyring.blind_index("email", &email)));
            }
            Some(term) if term.starts_with('+') || term.chars().all(|c| c.is_ascii_digit() || " -().".contains(c)) => {
                let phone = validate::phone("search", term)?;
                query = query.filter(patient::Column::PhoneBidx.eq(self.keyring.blind_index("phone", &phone)));
            }
            Some(term) => {
                let tokens: Vec<String> = validate::name_tokens(term)
                    .iter()
                    .map(|t| self.keyring.blind_index("name", t))
                    .collect();
                if tokens.len() > 8 {
                    return Err(ServiceError::bad_input("search", "at most 8 words"));
                }
                let count = tokens.len() as i64;
                query = query.filter(
                    patient::Column::Id.in_subquery(
                        Query::select()
                            .column(patient_name_token::Column::PatientId)
                            .from(patient_name_token::Entity)
                            .and_where(Expr::col(patient_name_token::Column::TokenBidx).is_in(tokens))
                            .group_by_col(patient_name_token::Column::PatientId)
                            .and_having(
                                Expr::expr(Func::count(Expr::col(patient_name_token::Column::TokenBidx))).eq(count),
                            )
                            .to_owned(),
                    ),
                );
            }
        }
        let rows = query.all(&self.db).await?;
        let page = Page::from_rows(rows, first, |r| encode_cursor(&r.id), |r| self.open_patient(&r))?;
        let ids: Vec<String> = page.items.iter().map(|(_, p)| p.id.to_string()).collect();
        self.audit(
            &self.db,
            caller,
            AuditRecord {
                action: AuditAction::Search,
                entity_type: "patient",
                entity_id: None,
                detail: Some(serde_json::json!({ "count": ids.len(), "ids": ids })),
            },
        )
        .await?;
        Ok(page)
    }

    /// True when `actor` may see the patient: staff always, a patient their own
    /// record, a provider the patients they have appointments with.
    pub async fn may_see_patient(&self, actor: &Actor, id: PatientId) -> ServiceResult<bool> {
        Ok(match actor.role {
            Role::Admin | Role::Staff => true,
            Role::Patient => actor.patient_id == Some(id),
            Role::Provider => match actor.provider_id {
                Some(provider_id) => appointment::Entity::find()
                    .filter(appointment::Column::ProviderId.eq(provider_id.0))
                    .filter(appointment::Column::PatientId.eq(id.0))
                    .one(&self.db)
                    .await?
                    .is_some(),
                None => false,
            },
        })
    }

    fn seal(&self, field: &str, row: Uuid, value: &str) -> ServiceResult<Vec<u8>> {
        self.keyring.encrypt(field, row, value).map_err(ServiceError::internal)
    }

    fn open(&self, row: &patient::Model, field: &str, data: &[u8]) -> ServiceResult<String> {
        self.keyring
            .decrypt(&row.phi_key_id, field, row.id, data)
            .map_err(ServiceError::internal)
    }

    fn open_patient(&self, row: &patient::Model) -> ServiceResult<Patient> {
        let birth = self.open(row, BIRTH_DATE, &row.birth_date_enc)?;
        Ok(Patient {
            id: row.id.into(),
            name: self.open(row, NAME, &row.name_enc)?,
            birth_date: birth.parse().map_err(ServiceError::internal)?,
            email: row.email_enc.as_deref().map(|e| self.open(row, EMAIL, e)).transpose()?,
            phone: row.phone_enc.as_deref().map(|p| self.open(row, PHONE, p)).transpose()?,
            notify_by_email: row.notify_email,
            notify_by_sms: row.notify_sms,
        })
    }

    async fn index_name(&self, conn: &impl ConnectionTrait, id: Uuid, name: &str) -> ServiceResult<()> {
        let tokens = validate::name_tokens(name);
        if tokens.is_empty() {
            return Ok(());
        }
        patient_name_token::Entity::insert_many(tokens.iter().map(|t| patient_name_token::ActiveModel {
            patient_id: Set(id),
            token_bidx: Set(self.keyring.blind_index("name", t)),
        }))
        .exec_without_returning(conn)
        .await?;
        Ok(())
    }
}
