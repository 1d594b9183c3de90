//! A date a location is closed (a holiday).

use sea_orm::entity::prelude::*;

/// A row of `location_closed_dates`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "location_closed_dates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub location_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub closed_on: Date,
    pub reason: Option<String>,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
