//! A kind of visit offered at a location.

use sea_orm::entity::prelude::*;

/// A row of `appointment_types`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "appointment_types")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub location_id: Uuid,
    pub name: String,
    pub duration_minutes: i32,
    pub buffer_before_minutes: i32,
    pub buffer_after_minutes: i32,
    /// Start-time grid; the duration when absent.
    pub slot_interval_minutes: Option<i32>,
    pub min_notice_minutes: i32,
    pub max_advance_days: Option<i32>,
    /// Reminder offsets of this type, overriding the location's.
    pub reminder_offsets_minutes: Option<String>,
    pub created_at: DateTimeUtc,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
