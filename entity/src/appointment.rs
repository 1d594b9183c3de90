//! An appointment; `status` holds the FHIR Appointment.status code.

use sea_orm::entity::prelude::*;

/// A row of `appointments`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "appointments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider_id: Uuid,
    pub patient_id: Uuid,
    pub location_id: Uuid,
    pub appointment_type_id: Uuid,
    pub status: String,
    pub start_at: DateTimeUtc,
    pub end_at: DateTimeUtc,
    pub cancellation_reason: Option<String>,
    pub idempotency_key: Option<String>,
    /// Hash of the booking input, to refuse a reused key with other input.
    pub request_fingerprint: Option<String>,
    pub created_by: Option<Uuid>,
    /// Bumped on every change (optimistic concurrency, cache keys).
    pub version: i32,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// The type, joined by slot search for its buffers; other relations are
/// resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::appointment_type::Entity",
        from = "Column::AppointmentTypeId",
        to = "super::appointment_type::Column::Id"
    )]
    AppointmentType,
}

impl Related<super::appointment_type::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AppointmentType.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
