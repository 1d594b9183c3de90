//! One change of an appointment: status and interval before and after.

use sea_orm::entity::prelude::*;

/// A row of `appointment_history`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "appointment_history")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub appointment_id: Uuid,
    pub changed_at: DateTimeUtc,
    pub actor_user_id: Option<Uuid>,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub old_start_at: Option<DateTimeUtc>,
    pub old_end_at: Option<DateTimeUtc>,
    pub new_start_at: DateTimeUtc,
    pub new_end_at: DateTimeUtc,
    pub note: Option<String>,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
