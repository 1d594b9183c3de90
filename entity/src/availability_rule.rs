//! A weekly opening of a provider at a location, in the location's wall-clock time.

use sea_orm::entity::prelude::*;

/// A row of `availability_rules`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "availability_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub provider_id: Uuid,
    pub location_id: Uuid,
    /// ISO weekday, 1 = Monday ... 7 = Sunday.
    pub weekday: i16,
    /// Minutes after local midnight, inclusive.
    pub start_minute: i32,
    /// Minutes after local midnight, exclusive (up to 1440).
    pub end_minute: i32,
    pub created_at: DateTimeUtc,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
