//! Keyed hash of one word of a patient's name, for search without decryption.

use sea_orm::entity::prelude::*;

/// A row of `patient_name_tokens`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "patient_name_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub patient_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_bidx: String,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
